"""Compile time of big graphs: seconds from `sg.function` to a compiled function (value and
gradient), in a fresh process, for a chain of N elementwise ops (sin, tanh·0.5 + 0.25
alternating, on a vector of 3) and a sum of N small terms (x[k] · w_k, each of its own
slice), with an empty cache and with the library warm (the same graph with N + 1 compiled
before). Linear in N is the goal.

Usage: python benchmarks/big_graphs.py [sizes, default 100,300,1000]
"""
import os
import subprocess
import sys
import tempfile

CHAIN = r"""
import time, numpy as np, symgrad as sg
n = {N}
x = sg.placeholder("x", (3,), "float64")
y = x
for k in range(n):
    y = sg.tanh(y) * 0.5 + 0.25 if k % 2 else sg.sin(y)
t = time.perf_counter()
f = sg.function([x], [y, sg.grad(sg.sum(y), x)], background=False)
f(np.array([0.1, 0.2, 0.3]))
print(time.perf_counter() - t)
"""

SUM = r"""
import time, numpy as np, symgrad as sg
n = {N}
x = sg.placeholder("x", (n,), "float64")
total = None
for k in range(n):
    term = sg.sum(x[k:k + 1] * float(k + 1))
    total = term if total is None else total + term
t = time.perf_counter()
f = sg.function([x], [total, sg.grad(total, x)], background=False)
f(np.ones(n))
print(time.perf_counter() - t)
"""


def run(code, cache):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, SYMGRAD_CACHE_DIR=cache), timeout=3600)
    return float(out.stdout.split()[-1]) if out.returncode == 0 else float("nan")


def main():
    sizes = [int(n) for n in (sys.argv[1] if len(sys.argv) > 1 else "100,300,1000").split(",")]
    print("graph,N,cold_s,library_warm_s")
    for name, code in (("chain", CHAIN), ("sum", SUM)):
        for n in sizes:
            with tempfile.TemporaryDirectory() as cache:
                cold = run(code.format(N=n), cache)
            with tempfile.TemporaryDirectory() as cache:
                run(code.format(N=n + 1), cache)
                warm = run(code.format(N=n), cache)
            print(f"{name},{n},{cold:.2f},{warm:.2f}", flush=True)


if __name__ == "__main__":
    main()
