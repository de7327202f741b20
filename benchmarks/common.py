"""Shared pieces of the benchmarks: timing, the MLP configurations of the peer benchmarks,
NumPy-by-hand baselines, and the floors (GEMM, memory bandwidth) measured in the same run."""
import time

import numpy as np

CONFIGS = {
    # name: (batch, layer sizes), as in ../shared/bench/peers.py
    "small": (32, [64, 32, 10]),
    "digits": (128, [64, 128, 64, 10]),
    "mnist": (128, [784, 256, 128, 10]),
    "big": (512, [784, 1024, 1024, 10]),
}
LR = np.float32(0.01)


def timeit(fn, args=(), reps=30, min_time=0.3):
    """Median seconds per call, after two warm-up calls."""
    fn(*args)
    fn(*args)
    times, n = [], 0
    t_end = time.perf_counter() + min_time
    while n < reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
        n += 1
        if n > 20000:
            break
    return float(np.median(times))


def jax_sgd_step(loss_of, params):
    """A train step for JAX: `loss_of(params, x, y)`'s value and gradient, jitted, and an SGD
    update of `params` (JAX arrays) kept between calls; the step returns the loss, computed."""
    import jax
    state = {"params": params}

    @jax.jit
    def update(params, x, y):
        value, grads = jax.value_and_grad(loss_of)(params, x, y)
        return [p - LR * g for p, g in zip(params, grads)], value

    def step(x, y):
        state["params"], value = update(state["params"], x, y)
        return value.block_until_ready()
    return step


def init(sizes, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params.append((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32))
        params.append(np.zeros(b, np.float32))
    return params


def data(batch, sizes, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y = np.zeros((batch, sizes[-1]), np.float32)
    y[np.arange(batch), rng.integers(0, sizes[-1], batch)] = 1
    return x, y


def numpy_step(sizes):
    """Hand-written NumPy backprop with SGD (tanh hidden layers, softmax cross-entropy)."""
    ps = init(sizes)

    def step(x, y):
        hs, h = [x], x
        L = len(ps) // 2
        for l in range(L):
            z = h @ ps[2 * l] + ps[2 * l + 1]
            h = np.tanh(z) if l < L - 1 else z
            hs.append(h)
        z = hs[-1] - hs[-1].max(axis=1, keepdims=True)
        e = np.exp(z)
        q = e / e.sum(axis=1, keepdims=True)
        loss = -np.sum(y * np.log(q)) / len(x)
        g = (q - y) / len(x)
        for l in reversed(range(L)):
            W = ps[2 * l]
            gW = hs[l].T @ g
            gb = g.sum(0)
            if l > 0:
                g = (g @ W.T) * (1 - hs[l] ** 2)
            W -= LR * gW
            ps[2 * l + 1] -= LR * gb
        return loss
    return step


def gemm_floor(batch, sizes, reps=50):
    """Sum of the train step's matrix products, each timed alone with NumPy into a
    preallocated output: no implementation of the step can beat it on this machine."""
    rng = np.random.default_rng(2)
    total = 0.0
    for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        H = rng.standard_normal((batch, a)).astype(np.float32)
        W = rng.standard_normal((a, b)).astype(np.float32)
        G = rng.standard_normal((batch, b)).astype(np.float32)
        o1, o2, o3 = (np.empty((batch, b), np.float32), np.empty((a, b), np.float32),
                      np.empty((batch, a), np.float32))
        total += timeit(lambda: np.matmul(H, W, out=o1), (), reps)
        total += timeit(lambda: np.matmul(H.T, G, out=o2), (), reps)
        if l > 0:
            total += timeit(lambda: np.matmul(G, W.T, out=o3), (), reps)
    return total


def copy_bandwidth(n=8_000_000):
    """Bytes per second that one array copy moves (read + write), measured now."""
    a, b = np.empty(n), np.empty(n)
    a[:] = 1.0
    return 2 * a.nbytes / timeit(lambda: np.copyto(b, a), (), 20)
