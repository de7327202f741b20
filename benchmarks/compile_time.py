"""Compile time: seconds from model definition to a compiled train step, and to its first
result (served by the interpreter while a long compile goes on in the background), in a fresh
process (imports excluded): cold (empty cache), a new model with the library warm (a model one
layer deeper compiled before), and warm (the same model compiled before), for a depth-D tanh
MLP (width 32, batch 16, softmax cross-entropy, SGD), as ../shared/bench/scaling.py measures
the peers. JAX is measured in the same run if installed.

Usage: python benchmarks/compile_time.py [depths, default 2,8,32,128]
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


def run(code, cache_dir):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=1800)
    if out.returncode != 0:
        return float("nan"), float("nan")
    values = [float(v) for v in out.stdout.strip().splitlines()[-1].split()]
    return values[0], values[-1]


def main():
    depths = [int(d) for d in (sys.argv[1] if len(sys.argv) > 1 else "2,8,32,128").split(",")]
    try:
        import jax  # noqa: F401
        have_jax = True
    except ImportError:
        have_jax = False
    print("depth,cold_s,cold_first_result_s,new_model_s,new_model_first_result_s,warm_s"
          + (",jax_s,new_model/jax" if have_jax else ""))
    for depth in depths:
        with tempfile.TemporaryDirectory() as cache:
            cold_first, cold = run(MODEL.format(D=depth), cache)
            warm_first, warm = run(MODEL.format(D=depth), cache)
        with tempfile.TemporaryDirectory() as cache:  # the library warm: another model first
            run(MODEL.format(D=depth + 1), cache)
            new_first, new = run(MODEL.format(D=depth), cache)
        row = f"{depth},{cold:.2f},{cold_first:.2f},{new:.2f},{new_first:.2f},{warm:.3f}"
        if have_jax:
            j = run(JAX.format(D=depth), "")[0]
            row += f",{j:.2f},{new / j:.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
