"""CNN train step (forward + backward + SGD, ReLU, max pooling, softmax cross-entropy,
float32, NCHW): symgrad's compiled step beside NumPy by hand (im2col + GEMM, the textbook
vectorisation), the im2col GEMM floor (the step's matrix products, each timed alone with
NumPy), and PyTorch (eager, 2 threads) and JAX (jit of value_and_grad) where they are
installed, measured in one run; all start from the same weights and their first losses are
checked to agree. symgrad's step runs in lanes (its batch split between the cores,
compiler/lanes.py) where the work per call is large enough; benchmarks/batch_lanes.py times
it with lanes on and off. Each system is timed after 0.3 s of sleep, so the threads of the
one before have stopped spinning.

Configurations (as the team's peer benchmark defines them):
  small: 8×8×1 input, conv 3×3 8 (pad 1) → ReLU → max pool 2 → conv 3×3 16 (pad 1) → ReLU →
         max pool 2 → dense 32 → ReLU → dense 10, batch 128;
  lenet: 28×28×1, conv 5×5 6 (pad 2) → ReLU → pool 2 → conv 5×5 16 → ReLU → pool 2 →
         dense 120 → ReLU → dense 84 → ReLU → dense 10, batch 128.

Usage: python benchmarks/cnn_train_step.py [--configs small,lenet]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import LR, jax_sgd_step, timeit  # noqa: E402

import symgrad as sg  # noqa: E402

CONFIGS = {
    # name: (batch, (C, H, W), [(out channels, kernel, padding, pool)], dense sizes)
    "small": (128, (1, 8, 8), [(8, 3, 1, 2), (16, 3, 1, 2)], [32, 10]),
    "lenet": (128, (1, 28, 28), [(6, 5, 2, 2), (16, 5, 0, 2)], [120, 84, 10]),
}


def layers(cfg):
    """Per conv layer (C, H, W, out channels, k, pad, pooled H, pooled W, pool), and the
    flattened size after the last."""
    _, (c, h, w), convs, _ = cfg
    out = []
    for oc, k, p, q in convs:
        oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
        out.append((c, h, w, oc, k, p, oh, ow, q))
        c, h, w = oc, oh // q, ow // q
    return out, c * h * w


def init(cfg, seed=0):
    rng = np.random.default_rng(seed)
    convs, flat = layers(cfg)
    params = []
    for c, _, _, oc, k, _, _, _, _ in convs:
        params += [(rng.standard_normal((oc, c, k, k)) * np.sqrt(2.0 / (c * k * k))).astype(np.float32),
                   np.zeros(oc, np.float32)]
    sizes = [flat] + cfg[3]
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32),
                   np.zeros(b, np.float32)]
    return params


def data(cfg, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg[0],) + cfg[1]).astype(np.float32)
    y = np.zeros((cfg[0], cfg[3][-1]), np.float32)
    y[np.arange(cfg[0]), rng.integers(0, cfg[3][-1], cfg[0])] = 1
    return x, y


def symgrad_model(cfg):
    """The network as a symgrad graph: (x, y, parameters, logits, loss)."""
    convs, flat = layers(cfg)
    x = sg.placeholder("x", (None,) + cfg[1], "float32")
    y = sg.placeholder("y", (None, cfg[3][-1]), "float32")
    params = [sg.Variable(p, name=f"p{k}") for k, p in enumerate(init(cfg))]
    h = x
    for l, (_, _, _, oc, _, p, _, _, q) in enumerate(convs):
        h = sg.conv2d(h, params[2 * l], padding=p) + sg.reshape(params[2 * l + 1], (1, oc, 1, 1))
        h = sg.max_pool2d(sg.relu(h), q)
    h = sg.reshape(h, (-1, flat))
    first = 2 * len(convs)
    dense = (len(params) - first) // 2
    for l in range(dense):
        h = h @ params[first + 2 * l] + params[first + 2 * l + 1]
        if l < dense - 1:
            h = sg.relu(h)
    return x, y, params, h, sg.nn.softmax_cross_entropy(h, y, labels_sum_to_one=True)


def symgrad_step(cfg):
    x, y, params, _, loss = symgrad_model(cfg)
    return sg.function([x, y], loss, updates=[(p, p - LR * sg.grad(loss, p)) for p in params],
                       background=False)


def _im2col(x, k, p):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = h + 2 * p - k + 1, w + 2 * p - k + 1
    s = xp.strides
    cols = np.lib.stride_tricks.as_strided(xp, (n, oh, ow, c, k, k), (s[0], s[2], s[3], s[1], s[2], s[3]))
    return cols.reshape(n * oh * ow, c * k * k)


def _col2im(cols, shape, k, p, oh, ow):
    n, c, h, w = shape
    g = np.zeros((n, c, h + 2 * p, w + 2 * p), np.float32)
    cols = cols.reshape(n, oh, ow, c, k, k)
    for i in range(k):
        for j in range(k):
            g[:, :, i:i + oh, j:j + ow] += cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return g[:, :, p:p + h, p:p + w]


def numpy_step(cfg):
    """By hand: im2col + GEMM convolutions, pooling by reshapes, backprop, SGD."""
    ps = init(cfg)
    convs, _ = layers(cfg)
    nconv = len(convs)

    def step(x, y):
        n, h, cache = x.shape[0], x, []
        for l, (c, _, _, oc, k, p, oh, ow, q) in enumerate(convs):
            cols = _im2col(h, k, p)
            z = (cols @ ps[2 * l].reshape(oc, -1).T + ps[2 * l + 1]).reshape(n, oh, ow, oc).transpose(0, 3, 1, 2)
            r = np.maximum(z, 0)
            windows = r[:, :, :oh // q * q, :ow // q * q].reshape(n, oc, oh // q, q, ow // q, q)
            m = windows.max(axis=(3, 5))
            hit = windows == m[:, :, :, None, :, None]
            cache.append((h.shape, cols, z, hit / hit.sum(axis=(3, 5), keepdims=True)))
            h = m
        acts = [h.reshape(n, -1)]
        dense = (len(ps) - 2 * nconv) // 2
        for l in range(dense):
            a = acts[-1] @ ps[2 * nconv + 2 * l] + ps[2 * nconv + 2 * l + 1]
            acts.append(np.maximum(a, 0) if l < dense - 1 else a)
        z = acts[-1] - acts[-1].max(1, keepdims=True)
        log_q = z - np.log(np.exp(z).sum(1, keepdims=True))
        loss = -np.sum(y * log_q) / n
        g = (np.exp(log_q) - y) / n
        for l in reversed(range(dense)):
            i = 2 * nconv + 2 * l
            gW, gb = acts[l].T @ g, g.sum(0)
            g = g @ ps[i].T
            if l > 0:
                g = g * (acts[l] > 0)
            ps[i] -= LR * gW
            ps[i + 1] -= LR * gb
        g = g.reshape(h.shape)
        for l in reversed(range(nconv)):
            c, _, _, oc, k, p, oh, ow, q = convs[l]
            shape, cols, z, weights = cache[l]
            gr = np.zeros(z.shape, np.float32)
            spread = weights * g[:, :, :, None, :, None]
            gr[:, :, :oh // q * q, :ow // q * q] = spread.reshape(n, oc, oh // q * q, ow // q * q)
            gr *= z > 0
            g2 = gr.transpose(0, 2, 3, 1).reshape(-1, oc)
            gW, gb = (g2.T @ cols).reshape(ps[2 * l].shape), g2.sum(0)
            if l > 0:
                g = _col2im(g2 @ ps[2 * l].reshape(oc, -1), shape, k, p, oh, ow)
            ps[2 * l] -= LR * gW
            ps[2 * l + 1] -= LR * gb
        return loss
    return step


def gemm_floor(cfg, reps=30):
    """The im2col formulation's matrix products (forward, weight gradient, and input gradient
    but for the first layer; the dense layers' three), each timed alone with NumPy into a
    preallocated output: what an im2col implementation cannot beat on this machine."""
    rng = np.random.default_rng(2)
    batch, (convs, flat) = cfg[0], layers(cfg)
    dims = []
    for l, (c, _, _, oc, k, _, oh, ow, _) in enumerate(convs):
        m, taps = batch * oh * ow, c * k * k
        dims += [(m, taps, oc), (oc, m, taps)] + ([(m, oc, taps)] if l > 0 else [])
    sizes = [flat] + cfg[3]
    for a, b in zip(sizes[:-1], sizes[1:]):
        dims += [(batch, a, b), (a, batch, b), (batch, b, a)]
    total = 0.0
    for m, k, n in dims:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        total += timeit(lambda: np.matmul(a, b, out=out), (), reps)
    return total


def torch_step(cfg):
    """The same network in PyTorch (eager, F.conv2d and F.max_pool2d, 2 threads); None if
    PyTorch is not installed."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(2)
    convs, _ = layers(cfg)
    nconv = len(convs)
    params = [torch.tensor(p, requires_grad=True) for p in init(cfg)]

    def step(x, y):
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        h = x
        for l, (_, _, _, _, _, p, _, _, q) in enumerate(convs):
            h = F.max_pool2d(F.relu(F.conv2d(h, params[2 * l], params[2 * l + 1], padding=p)), q)
        h = h.reshape(h.shape[0], -1)
        dense = (len(params) - 2 * nconv) // 2
        for l in range(dense):
            h = h @ params[2 * nconv + 2 * l] + params[2 * nconv + 2 * l + 1]
            if l < dense - 1:
                h = F.relu(h)
        loss = -(y * F.log_softmax(h, dim=1)).sum() / x.shape[0]
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= float(LR) * p.grad
                p.grad = None
        return loss.item()
    return step


def jax_step(cfg):
    """The same network in JAX (lax.conv_general_dilated, reduce_window), jitted; None if
    JAX is not installed."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    convs, _ = layers(cfg)
    nconv = len(convs)
    def loss_of(params, x, y):
        h = x
        for l, (_, _, _, oc, _, p, _, _, q) in enumerate(convs):
            h = jax.lax.conv_general_dilated(h, params[2 * l], (1, 1), [(p, p), (p, p)],
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            h = jax.nn.relu(h + params[2 * l + 1][None, :, None, None])
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, q, q), (1, 1, q, q), "VALID")
        h = h.reshape(h.shape[0], -1)
        dense = (len(params) - 2 * nconv) // 2
        for l in range(dense):
            h = h @ params[2 * nconv + 2 * l] + params[2 * nconv + 2 * l + 1]
            if l < dense - 1:
                h = jax.nn.relu(h)
        return -jnp.sum(y * jax.nn.log_softmax(h)) / x.shape[0]
    return jax_sgd_step(loss_of, [jnp.asarray(p) for p in init(cfg)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small,lenet")
    args = parser.parse_args()
    print("config,symgrad_us,numpy_us,torch_us,jax_us,gemm_floor_us,symgrad/torch,symgrad/jax,"
          "symgrad/floor,first_losses_agree")
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        x, y = data(cfg)
        steps = {"symgrad": symgrad_step(cfg), "numpy": numpy_step(cfg), "torch": torch_step(cfg),
                 "jax": jax_step(cfg)}
        steps = {k: step for k, step in steps.items() if step is not None}
        first = {k: float(step(x, y)) for k, step in steps.items()}
        agree = all(np.isclose(first["symgrad"], v, rtol=1e-4) for v in first.values())
        us = {}
        for k, step in steps.items():
            time.sleep(0.3)  # (the threads of the system timed before spin for ~0.1 s)
            us[k] = timeit(step, (x, y), reps=10 if k == "numpy" else 20) * 1e6
        floor = gemm_floor(cfg) * 1e6
        t = {k: us.get(k, float("nan")) for k in ("symgrad", "numpy", "torch", "jax")}
        print(f"{name},{t['symgrad']:.0f},{t['numpy']:.0f},{t['torch']:.0f},{t['jax']:.0f},"
              f"{floor:.0f},{t['symgrad'] / t['torch']:.2f},{t['symgrad'] / t['jax']:.2f},"
              f"{t['symgrad'] / floor:.2f},{agree}", flush=True)


if __name__ == "__main__":
    main()
