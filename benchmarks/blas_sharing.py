"""A compiled train step with NumPy matrix products between its calls, as user code makes them
(metrics, logging, data preparation), through NumPy's BLAS (symgrad's default, blas.py) and
through SciPy's (Numba's np.dot, SYMGRAD_SCIPY_BLAS=1). Each runs in its own process, since the
library is chosen at import.

In: nothing (random data, the mnist-size MLP: batch 128, 784-256-128-10). Out: per library, the
median microseconds of a step alone and with a NumPy product (128×784 · 784×256) between
steps, and their ratio. Two OpenBLAS libraries each leave threads spinning after a call, so
alternating them slows both; one shared library does not.
Run: python benchmarks/blas_sharing.py
"""
import os
import subprocess
import sys
import time

import numpy as np


def measure(steps=300):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import CONFIGS, data
    from mlp_train_step import symgrad_step
    batch, sizes = CONFIGS["mnist"]
    x, y = data(batch, sizes)
    step, _ = symgrad_step(sizes)
    W = np.random.default_rng(0).standard_normal((sizes[0], 256)).astype(np.float32)

    def median_step(between):
        times = []
        for _ in range(steps):
            started = time.perf_counter()
            step(x, y)
            times.append(time.perf_counter() - started)
            if between:
                x @ W
        return float(np.median(times)) * 1e6

    median_step(False)  # warm-up
    alone, mixed = median_step(False), median_step(True)
    print(f"{alone:.0f},{mixed:.0f}")


def main():
    print("BLAS of compiled code,step alone (us),with NumPy products between (us),ratio")
    for label, flag in (("NumPy's (shared)", ""), ("SciPy's (Numba np.dot)", "1")):
        env = dict(os.environ, SYMGRAD_SCIPY_BLAS=flag)
        if not flag:
            env.pop("SYMGRAD_SCIPY_BLAS")
        out = subprocess.run([sys.executable, __file__, "--measure"], env=env, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        alone, mixed = map(float, out.split(","))
        print(f"{label},{alone:.0f},{mixed:.0f},{mixed / alone:.2f}", flush=True)


if __name__ == "__main__":
    measure() if "--measure" in sys.argv else main()
