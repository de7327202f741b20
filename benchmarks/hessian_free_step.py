"""What one Hessian-free step costs on the mnist-size MLP: the figure the README quotes.

In: nothing (random images and labels of MNIST's shapes, batch 128, a 784-256-128-10 tanh
MLP with softmax cross-entropy, float32). Out: printed, for `symgrad.optim_hf.HessianFree`
with up to 20 CG iterations and the Gauss-Newton matrix or the Hessian, the median time per
step, its CG iterations, and the time of one compiled gradient on the same batch (the
baseline taken in the same run). Each optimiser is checked to lower the loss on its batch.
Run: python benchmarks/hessian_free_step.py [--steps N]
"""
import argparse
import time

import numpy as np

import symgrad as sg
from symgrad import nn
from symgrad.optim_hf import HessianFree

BATCH, SIZES = 128, [784, 256, 128, 10]


def problem(seed=0):
    rng = np.random.default_rng(seed)
    x = sg.placeholder("x", (None, SIZES[0]), "float32")
    y = sg.placeholder("y", (None, SIZES[-1]), "float32")
    model = nn.MLP(SIZES, activation="tanh", seed=seed)
    z = model(x)
    loss = nn.softmax_cross_entropy(z, y, labels_sum_to_one=True)
    xb = rng.random((BATCH, SIZES[0]), dtype=np.float32)
    yb = nn.one_hot(rng.integers(0, SIZES[-1], BATCH), SIZES[-1], "float32")
    return x, y, model, z, loss, xb, yb


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    steps = parser.parse_args().steps
    x, y, model, z, loss, xb, yb = problem()
    gradient = sg.function([x, y], sg.gradients(loss, model.params))
    gradient(xb, yb)
    times = []
    for _ in range(30):
        started = time.perf_counter()
        gradient(xb, yb)
        times.append(time.perf_counter() - started)
    print(f"one compiled gradient: {np.median(times) * 1e3:.2f} ms (median of 30)")
    for curvature in ("gauss_newton", "hessian"):
        x, y, model, z, loss, xb, yb = problem()
        options = dict(z=z, loss_kind="softmax_cross_entropy") if curvature == "gauss_newton" else {}
        opt = HessianFree(loss, model.params, [x, y], curvature=curvature, cg_max_iter=20,
                          **options)
        opt.step(xb, yb)  # compiles
        times, iterations, losses = [], [], []
        for _ in range(steps):
            started = time.perf_counter()
            losses.append(opt.step(xb, yb))
            times.append(time.perf_counter() - started)
            iterations.append(opt.last.cg_iterations)
        final = float(opt.loss(xb, yb))
        assert final < losses[0], f"{curvature}: the loss did not fall ({losses[0]} -> {final})"
        print(f"HessianFree ({curvature}, up to 20 CG iterations): {np.median(times) * 1e3:.1f} ms "
              f"per step (median of {steps}), {np.median(iterations):.0f} CG iterations; "
              f"loss {losses[0]:.3f} -> {final:.3f}")


if __name__ == "__main__":
    main()
