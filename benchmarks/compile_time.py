"""Compile time: seconds from model definition to a compiled train step, and to its first
result (served by the interpreter while a long compile goes on in the background), in a fresh
process (imports excluded): cold (empty cache), a new model with the library warm (a model one
layer deeper compiled before), and warm (the same model compiled before), for a depth-D tanh
MLP (width 32, batch 16, softmax cross-entropy, SGD), as ../shared/bench/scaling.py measures
the peers. JAX and PyTensor (mode NUMBA, its compile directory fresh for the cold case and
warmed by the deeper model for the new-model case) are measured in the same run if installed
(install them in a separate virtual environment with symgrad: ../shared/bench/README.md).

Usage: python benchmarks/compile_time.py [depths, default 2,8,32,128]

SYMGRAD_BENCH_PYTHON names the interpreter symgrad's processes run (default: this one). JAX and
PyTensor bring SciPy into their environment, and Numba imports SciPy in every process where it
is installed (0.06-0.15 s), so symgrad as a user installs it (no SciPy) is measured in a
virtual environment of its own: `SYMGRAD_BENCH_PYTHON=/path/to/venv/bin/python`.
"""
import os
import subprocess
import sys
import tempfile

MODEL = r"""
import time, numpy as np
import symgrad as sg
t0 = time.perf_counter()
D, W = {D}, 32
rng = np.random.default_rng(0)
x = sg.placeholder("x", (None, W), "float32")
y = sg.placeholder("y", (None, W), "float32")
ps = [sg.Variable((rng.standard_normal((W, W)) / 6).astype(np.float32), name=f"W{{k}}") for k in range(D)]
h = x
for p in ps:
    h = sg.tanh(h @ p)
loss = sg.nn.softmax_cross_entropy(h, y, labels_sum_to_one=True)
grads = sg.gradients(loss, ps)
step = sg.function([x, y], loss, updates=[(p, p - 0.01 * g) for p, g in zip(ps, grads)])
step(np.ones((16, W), np.float32), np.eye(16, W, dtype=np.float32))
first = time.perf_counter() - t0   # the first result (from the interpreter if still compiling)
step.wait()
print(first, time.perf_counter() - t0)
"""

JAX = r"""
import time, numpy as np
import jax, jax.numpy as jnp
D, W = {D}, 32
ps = [jnp.asarray(np.random.standard_normal((W, W)).astype(np.float32) / 6) for _ in range(D)]
x = jnp.ones((16, W), jnp.float32); y = jnp.eye(16, W, dtype=jnp.float32)
def loss(ps):
    h = x
    for p in ps: h = jnp.tanh(h @ p)
    return -jnp.sum(y * jax.nn.log_softmax(h))
t1 = time.perf_counter(); g = jax.jit(jax.grad(loss))(ps); jax.block_until_ready(g)
print(time.perf_counter() - t1)
"""


PYTENSOR = r"""
import time, numpy as np
import pytensor, pytensor.tensor as pt
D, W = {D}, 32
t1 = time.perf_counter()
ps = [pt.matrix(dtype="float32") for _ in range(D)]
x = pt.matrix(dtype="float32"); y = pt.matrix(dtype="float32")
h = x
for p in ps: h = pt.tanh(h @ p)
loss = -pt.sum(y * pt.special.log_softmax(h, axis=1))
f = pytensor.function([x, y] + ps, pytensor.grad(loss, ps), mode="NUMBA")
vals = [np.random.standard_normal((W, W)).astype(np.float32) / 6 for _ in range(D)]
f(np.ones((16, W), np.float32), np.eye(16, W, dtype=np.float32), *vals)
print(time.perf_counter() - t1)
"""


SYMGRAD_PYTHON = os.environ.get("SYMGRAD_BENCH_PYTHON", sys.executable)


def run(code, cache_dir, python=sys.executable):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir,
               PYTENSOR_FLAGS=f"compiledir={os.path.join(cache_dir, 'pytensor')}")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env,
                         timeout=1800)
    if out.returncode != 0:
        return float("nan"), float("nan")
    values = [float(v) for v in out.stdout.strip().splitlines()[-1].split()]
    return values[0], values[-1]


def main():
    depths = [int(d) for d in (sys.argv[1] if len(sys.argv) > 1 else "2,8,32,128").split(",")]
    have_jax, have_pytensor = _installed("jax"), _installed("pytensor")
    print("depth,cold_s,cold_first_result_s,new_model_s,new_model_first_result_s,warm_s"
          + (",jax_s,new_model/jax" if have_jax else "")
          + (",pytensor_numba_cold_s,pytensor_numba_new_model_s" if have_pytensor else ""))
    for depth in depths:
        with tempfile.TemporaryDirectory() as cache:
            cold_first, cold = run(MODEL.format(D=depth), cache, SYMGRAD_PYTHON)
            warm_first, warm = run(MODEL.format(D=depth), cache, SYMGRAD_PYTHON)
        with tempfile.TemporaryDirectory() as cache:  # the library warm: another model first
            run(MODEL.format(D=depth + 1), cache, SYMGRAD_PYTHON)
            new_first, new = run(MODEL.format(D=depth), cache, SYMGRAD_PYTHON)
        row = f"{depth},{cold:.2f},{cold_first:.2f},{new:.2f},{new_first:.2f},{warm:.3f}"
        if have_jax:
            j = run(JAX.format(D=depth), "")[0]
            row += f",{j:.2f},{new / j:.2f}"
        if have_pytensor:
            with tempfile.TemporaryDirectory() as cache:
                cold_pt = run(PYTENSOR.format(D=depth), cache)[0]
            with tempfile.TemporaryDirectory() as cache:
                run(PYTENSOR.format(D=depth + 1), cache)
                new_pt = run(PYTENSOR.format(D=depth), cache)[0]
            row += f",{cold_pt:.2f},{new_pt:.2f}"
        print(row, flush=True)


def _installed(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
