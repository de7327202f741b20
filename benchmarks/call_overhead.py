"""Per-call overhead of a compiled function: the wrapper's argument checks around the one call
into Numba, measured on a function that does almost no work, beside a direct call of its
compiled plan run with the same arrays in the same run.

Usage: python benchmarks/call_overhead.py
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import timeit  # noqa: E402

import symgrad as sg  # noqa: E402


def main():
    x = sg.placeholder("x", (None, 4), "float32")
    y = sg.placeholder("y", (None, 4), "float32")
    params = [sg.Variable(np.zeros((4, 4), np.float32), name=f"W{k}") for k in range(4)]
    out = sg.sum(x[:1, :1]) + sg.sum(y[:1, :1])
    f = sg.function([x, y], out, updates=[(p, p) for p in params[:1]], background=False)

    xb, yb = np.ones((2, 4), np.float32), np.ones((2, 4), np.float32)
    t_fn = timeit(f, (xb, yb), reps=20000, min_time=0.5) * 1e6
    plan, _ = f._plans[(xb.shape, yb.shape)]  # made by the calls above
    outputs = [np.empty(shape, dtype) for shape, dtype in plan.outputs]
    t_run = timeit(f._runner, (plan.table, xb, yb, *outputs), reps=20000, min_time=0.5) * 1e6
    if not np.array_equal(np.asarray(outputs[0]).reshape(()), np.asarray(f(xb, yb)).reshape(())):
        raise SystemExit("the plan run directly and the function call give different results")
    print("what,us")
    print(f"symgrad function call,{t_fn:.2f}")
    print(f"its compiled plan run directly,{t_run:.2f}")
    print(f"wrapper overhead,{t_fn - t_run:.2f}")


if __name__ == "__main__":
    main()
