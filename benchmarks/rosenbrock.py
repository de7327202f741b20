"""Rosenbrock, N = 1e6, float64: symgrad's compiled gradient and Hessian-vector product beside
NumPy by hand and the memory-bandwidth floor (reading x, writing g; reading x and v, writing
Hv), all measured in one run, as ../shared/bench/hvp.py measures the peers.

Usage: python benchmarks/rosenbrock.py [N]
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import copy_bandwidth, timeit  # noqa: E402

import symgrad as sg  # noqa: E402


def numpy_grad(x):
    g = np.zeros_like(x)
    a = x[1:] - x[:-1] ** 2
    g[1:] += 200 * a
    g[:-1] += -400 * a * x[:-1] - 2 * (1 - x[:-1])
    return g


def numpy_hvp(x, v):
    hv = np.zeros_like(x)
    xm, xp, vm, vp = x[:-1], x[1:], v[:-1], v[1:]
    hv[:-1] += (1200 * xm ** 2 - 400 * xp + 2) * vm - 400 * xm * vp
    hv[1:] += -400 * xm * vm + 200 * vp
    return hv


def main():
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 1_000_000
    rng = np.random.default_rng(0)
    xv, vv = rng.standard_normal(n), rng.standard_normal(n)
    x = sg.placeholder("x", (n,), "float64")
    v = sg.placeholder("v", (n,), "float64")
    f = sg.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    grad = sg.function([x], sg.grad(f, x), background=False)
    hvp = sg.function([x, v], sg.hessian_vector_product(f, x, v), background=False)
    assert np.allclose(grad(xv), numpy_grad(xv)) and np.allclose(hvp(xv, vv), numpy_hvp(xv, vv))
    bandwidth = copy_bandwidth()
    floor_grad = 2 * xv.nbytes / bandwidth * 1e6
    floor_hvp = 3 * xv.nbytes / bandwidth * 1e6
    rows = [("symgrad", timeit(grad, (xv,), 20) * 1e6, timeit(hvp, (xv, vv), 20) * 1e6),
            ("numpy by hand", timeit(numpy_grad, (xv,), 20) * 1e6,
             timeit(numpy_hvp, (xv, vv), 20) * 1e6)]
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s; floors: grad {floor_grad:.0f} us, "
          f"hvp {floor_hvp:.0f} us")
    print("who,grad_us,hvp_us,grad/floor,hvp/floor,hvp/grad")
    for who, g, h in rows:
        print(f"{who},{g:.0f},{h:.0f},{g / floor_grad:.2f},{h / floor_hvp:.2f},{h / g:.2f}")


if __name__ == "__main__":
    main()
