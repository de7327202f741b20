"""MLP train step (forward + backward + SGD update, tanh, softmax cross-entropy, float32):
symgrad's compiled step beside NumPy by hand, PyTorch and JAX (each where it is installed: peers
live in a venv of their own, never a dependency: `python3 -m venv /tmp/peers &&
/tmp/peers/bin/pip install jax jaxlib torch && /tmp/peers/bin/pip install -e .`, then run this
with /tmp/peers/bin/python) and the GEMM floor (NumPy's BLAS), measured in one
run, calls interleaved over three rounds (medians of the rounds' medians), after checking
that the steps train alike (their first three losses agree).

Usage: python benchmarks/mlp_train_step.py [--configs small,digits,mnist,big]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import CONFIGS, LR, data, gemm_floor, init, jax_sgd_step, numpy_step, timeit  # noqa: E402

import symgrad as sg  # noqa: E402


def symgrad_model(sizes):
    """The MLP as a symgrad graph: (x, y, parameters, loss)."""
    x = sg.placeholder("x", (None, sizes[0]), "float32")
    y = sg.placeholder("y", (None, sizes[-1]), "float32")
    params = [sg.Variable(p, name=f"p{k}") for k, p in enumerate(init(sizes))]
    h = x
    L = len(params) // 2
    for l in range(L):
        h = h @ params[2 * l] + params[2 * l + 1]
        if l < L - 1:
            h = sg.tanh(h)
    return x, y, params, sg.nn.softmax_cross_entropy(h, y, labels_sum_to_one=True)


def symgrad_step(sizes):
    x, y, params, loss = symgrad_model(sizes)
    grads = sg.gradients(loss, params)
    started = time.perf_counter()
    step = sg.function([x, y], loss, updates=[(p, p - LR * g) for p, g in zip(params, grads)],
                       background=False)
    return step, time.perf_counter() - started


def torch_step(sizes):
    """The same step in PyTorch (autograd, SGD by hand) on tensors sharing the arrays' memory,
    or None if it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    params = [torch.tensor(p, requires_grad=True) for p in init(sizes)]

    def step(x, y):
        h = x
        L = len(params) // 2
        for l in range(L):
            h = h @ params[2 * l] + params[2 * l + 1]
            if l < L - 1:
                h = torch.tanh(h)
        loss = -torch.sum(y * torch.log_softmax(h, 1)) / x.shape[0]
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= LR * p.grad
                p.grad = None
        return loss.item()
    return step, torch.from_numpy


def jax_step(sizes):
    """The same step in JAX, jitted, on arrays already on its device, or None if it is not
    installed."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    def loss_of(params, x, y):
        h = x
        L = len(params) // 2
        for l in range(L):
            h = h @ params[2 * l] + params[2 * l + 1]
            if l < L - 1:
                h = jnp.tanh(h)
        return -jnp.sum(y * jax.nn.log_softmax(h)) / x.shape[0]
    return jax_sgd_step(loss_of, [jnp.asarray(p) for p in init(sizes)]), jnp.asarray


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
    print("config,symgrad_us,numpy_us,torch_us,jax_us,gemm_floor_us,symgrad/floor,"
          "symgrad/numpy,symgrad/torch,symgrad/jax,compile_s")
    for name in args.configs.split(","):
        batch, sizes = CONFIGS[name]
        x, y = data(batch, sizes)
        step, compile_s = symgrad_step(sizes)
        same = lambda a: a  # noqa: E731
        steps = {"symgrad": (step, same), "numpy": (numpy_step(sizes), same),
                 "torch": torch_step(sizes), "jax": jax_step(sizes)}
        steps = {who: (f, convert) for who, (f, convert) in
                 ((w, pair) for w, pair in steps.items() if pair is not None)}
        for who, (f, convert) in steps.items():
            if who != "symgrad":  # each peer from the same weights as a fresh symgrad step
                check_same_training(symgrad_step(sizes)[0], lambda a, b: f(convert(a), convert(b)), x, y)
        rounds = {who: [] for who in steps}
        floors = []
        for _ in range(3):  # interleaved: the machine's speed drifts
            for who, (f, convert) in steps.items():
                rounds[who].append(timeit(f, (convert(x), convert(y))) * 1e6)
            floors.append(gemm_floor(batch, sizes) * 1e6)
        t = {who: float(np.median(rounds[who])) if who in rounds else float("nan")
             for who in ("symgrad", "numpy", "torch", "jax")}
        floor = float(np.median(floors))
        ours = t["symgrad"]
        print(f"{name},{ours:.1f},{t['numpy']:.1f},{t['torch']:.1f},{t['jax']:.1f},{floor:.1f},"
              f"{ours / floor:.2f},{ours / t['numpy']:.2f},{ours / t['torch']:.2f},"
              f"{ours / t['jax']:.2f},{compile_s:.2f}", flush=True)


if __name__ == "__main__":
    main()
