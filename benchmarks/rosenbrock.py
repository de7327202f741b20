"""Rosenbrock, N = 1e6, float64: symgrad's compiled gradient and Hessian-vector product beside
NumPy by hand, JAX (where it is installed: peers live in a venv of their own, never a dependency:
`python3 -m venv /tmp/peers && /tmp/peers/bin/pip install jax jaxlib torch && /tmp/peers/bin/pip
install -e .`, then run this with /tmp/peers/bin/python) and two
memory-bandwidth floors (reading x, writing g; reading x and v, writing Hv): one from the
bandwidth of a copy of 64 MB arrays, as ../shared/bench/hvp.py measures it, and one from a
copy of arrays of N elements, which stay in this machine's last-level cache (8 MB). All
measured in one run, calls interleaved.

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


def jax_functions():
    """JAX's jitted gradient and HVP (forward-over-reverse), or None where JAX is not installed."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def rosen(x):
        return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    grad = jax.jit(jax.grad(rosen))
    hvp = jax.jit(lambda x, v: jax.jvp(jax.grad(rosen), (x,), (v,))[1])
    return (lambda x: grad(x).block_until_ready()), (lambda x, v: hvp(x, v).block_until_ready()), jnp.asarray


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
    cached = copy_bandwidth(n)
    floor_grad = 2 * xv.nbytes / bandwidth * 1e6
    floor_hvp = 3 * xv.nbytes / bandwidth * 1e6
    peers = [("symgrad", grad, hvp, xv, vv), ("numpy by hand", numpy_grad, numpy_hvp, xv, vv)]
    jax = jax_functions()
    if jax is not None:
        jgrad, jhvp, to_jax = jax
        assert np.allclose(np.asarray(jhvp(to_jax(xv), to_jax(vv))), numpy_hvp(xv, vv))
        peers.append(("jax", jgrad, jhvp, to_jax(xv), to_jax(vv)))
    times = {who: ([], []) for who, *_ in peers}
    for _ in range(3):  # interleaved: the machine's speed drifts
        for who, g, h, a, b in peers:
            times[who][0].append(timeit(g, (a,), 10))
            times[who][1].append(timeit(h, (a, b), 10))
    print(f"copy bandwidth {bandwidth / 1e9:.1f} GB/s (64 MB arrays), {cached / 1e9:.1f} GB/s "
          f"({xv.nbytes / 1e6:.0f} MB, in cache); floors: grad {floor_grad:.0f} us "
          f"({2 * xv.nbytes / cached * 1e6:.0f} in cache), hvp {floor_hvp:.0f} us "
          f"({3 * xv.nbytes / cached * 1e6:.0f} in cache)")
    print("who,grad_us,hvp_us,grad/floor,hvp/floor,grad/cached_floor,hvp/cached_floor,hvp/grad")
    for who, (gs, hs) in times.items():
        g, h = np.median(gs) * 1e6, np.median(hs) * 1e6
        print(f"{who},{g:.0f},{h:.0f},{g / floor_grad:.2f},{h / floor_hvp:.2f},"
              f"{g * cached / (2 * xv.nbytes * 1e6):.2f},{h * cached / (3 * xv.nbytes * 1e6):.2f},"
              f"{h / g:.2f}")


if __name__ == "__main__":
    main()
