"""MLP train step (forward + backward + SGD update, tanh, softmax cross-entropy, float32):
symgrad's compiled step beside NumPy by hand and the GEMM floor, measured in one run, after
checking that the two steps train alike (their first three losses agree).

Usage: python benchmarks/mlp_train_step.py [--configs small,digits,mnist,big]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import CONFIGS, LR, data, gemm_floor, init, numpy_step, timeit  # noqa: E402

import symgrad as sg  # noqa: E402


def symgrad_step(sizes):
    x = sg.placeholder("x", (None, sizes[0]), "float32")
    y = sg.placeholder("y", (None, sizes[-1]), "float32")
    params = [sg.Variable(p, name=f"p{k}") for k, p in enumerate(init(sizes))]
    h = x
    L = len(params) // 2
    for l in range(L):
        h = h @ params[2 * l] + params[2 * l + 1]
        if l < L - 1:
            h = sg.tanh(h)
    loss = sg.nn.softmax_cross_entropy(h, y, labels_sum_to_one=True)
    grads = sg.gradients(loss, params)
    started = time.perf_counter()
    step = sg.function([x, y], loss, updates=[(p, p - LR * g) for p, g in zip(params, grads)],
                       background=False)
    return step, time.perf_counter() - started


def check_same_training(step, reference, x, y, steps=3):
    """Both steps start from the same weights (common.init): their losses over the first
    steps must agree, or the timings compare different computations."""
    for k in range(steps):
        ours, theirs = float(step(x, y)), float(reference(x, y))
        if not np.isclose(ours, theirs, rtol=1e-4, atol=1e-6):
            raise SystemExit(f"step {k}: symgrad's loss {ours} differs from NumPy by hand's {theirs}")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default="small,digits,mnist,big")
    args = parser.parse_args()
    print("config,symgrad_us,numpy_us,gemm_floor_us,symgrad/floor,symgrad/numpy,compile_s")
    for name in args.configs.split(","):
        batch, sizes = CONFIGS[name]
        x, y = data(batch, sizes)
        step, compile_s = symgrad_step(sizes)
        reference = numpy_step(sizes)
        check_same_training(step, reference, x, y)
        ours = timeit(step, (x, y)) * 1e6
        by_hand = timeit(reference, (x, y)) * 1e6
        floor = gemm_floor(batch, sizes) * 1e6
        print(f"{name},{ours:.1f},{by_hand:.1f},{floor:.1f},{ours / floor:.2f},{ours / by_hand:.2f},"
              f"{compile_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
