"""How much a compiled Hessian-vector product costs next to a compiled gradient.

In: nothing (random data and weights). Out: printed median times of the compiled gradient
and the compiled HVP (forward-over-reverse, and reverse-over-reverse), and their ratios, for
the mnist-size MLP: batch 128, 784-256-128-10, tanh, softmax cross-entropy, float32.
The goal (issue 6) is HVP <= ~1.5 × gradient. All are timed in the same process, on the same
data, as the median and the minimum of many calls (interleaved) after a warm-up: on a
shared machine the minimum is the steadier figure. Under load, multi-threaded BLAS makes
medians jump (a GEMM waits for a descheduled thread); OPENBLAS_NUM_THREADS=1 steadies them.
For this net the layer-1 matmuls bound the ratio: 3 (x·W, x·V, xᵀ·ġ) against 2 (x·W, xᵀ·g),
so about 1.5 is the floor.
Run: OPENBLAS_NUM_THREADS=1 python benchmarks/hvp_vs_grad.py [--repeats N]
"""
import argparse
import time

import numpy as np

import symgrad as sg


def mlp(sizes, rng):
    x = sg.placeholder("x", (None, sizes[0]), "float32")
    y = sg.placeholder("y", (None, sizes[-1]), "float32")
    params, h = [], x
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = sg.Variable((rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32), name=f"W{k}")
        b = sg.Variable(np.zeros(n, np.float32), name=f"b{k}")
        params += [W, b]
        h = h @ W + b
        if k < len(sizes) - 2:
            h = sg.tanh(h)
    return x, y, params, h, sg.nn.softmax_cross_entropy(h, y)


def seconds(functions, repeats):
    """(median, minimum) seconds per call of each (f, args), calls interleaved round-robin so that
    a change in machine load (other processes) affects every function alike."""
    for f, args in functions:
        for _ in range(5):
            f(*args)
    times = [[] for _ in functions]
    for _ in range(repeats):
        for (f, args), bucket in zip(functions, times):
            start = time.perf_counter()
            f(*args)
            bucket.append(time.perf_counter() - start)
    return [(float(np.median(bucket)), float(np.min(bucket))) for bucket in times]


def main(repeats=200, batch=128, sizes=(784, 256, 128, 10), seed=0):
    rng = np.random.default_rng(seed)
    x, y, params, logits, loss = mlp(sizes, rng)
    xb = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    yb = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], batch)]

    started = time.perf_counter()
    grad = sg.function([x, y], [loss] + sg.gradients(loss, params), name="loss and gradient")
    print(f"compiled the gradient in {time.perf_counter() - started:.1f} s")
    hessians = {}
    for mode in ("forward", "reverse"):
        started = time.perf_counter()
        hessians[mode] = sg.linalg.HessianOperator(loss, params, [x, y], mode=mode)
        print(f"compiled the {mode} HVP in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    gauss_newton = sg.linalg.GaussNewtonOperator(logits, "softmax_cross_entropy", params, [x, y])
    print(f"compiled the Gauss-Newton product in {time.perf_counter() - started:.1f} s")

    vs = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    rows = [(f"HVP, {mode}-over-reverse", op) for mode, op in hessians.items()]
    rows.append(("Gauss-Newton product", gauss_newton))
    timed = [(grad, (xb, yb))] + [(op.function, (*vs, xb, yb)) for _, op in rows]
    (grad_median, grad_min), *t_rows = seconds(timed, repeats)
    print(f"{'':30s} {'median':>9s} {'min':>9s}   ratio to gradient (median, min)")
    print(f"{'gradient (with loss)':30s} {grad_median * 1e3:6.3f} ms {grad_min * 1e3:6.3f} ms")
    for (label, _), (median, least) in zip(rows, t_rows):
        print(f"{label:30s} {median * 1e3:6.3f} ms {least * 1e3:6.3f} ms   "
              f"{median / grad_median:5.2f}  {least / grad_min:5.2f}")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    main(parser.parse_args().repeats)
