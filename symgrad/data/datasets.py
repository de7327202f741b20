"""Small data sets: XOR, the 2-D "playground" sets, and the bundled 8×8 handwritten digits.

In: sizes, noise levels and seeds. Out: `(x, y)` pairs of NumPy arrays: `x` float32 with one
example per row, `y` int64 class labels. Nothing here touches the network.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

DIGITS_PATH = os.path.join(os.path.dirname(__file__), "digits.csv.gz")
PLAYGROUND = ("circle", "gaussians", "xor", "spiral")


def xor():
    """The four points of XOR: x in {0,1}², y = x1 xor x2."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    return x, np.array([0, 1, 1, 0], np.int64)


def _noise(rng, n, noise):
    return rng.normal(0.0, noise, (n, 2)) if noise > 0 else np.zeros((n, 2))


def circle(n=200, noise=0.0, seed=0):
    """Class 1 inside a disc of radius 0.5, class 0 in a ring from 0.7 to 1.0 around it."""
    rng = np.random.default_rng(seed)
    inner = n // 2
    radius = np.concatenate([rng.uniform(0, 0.5, inner), rng.uniform(0.7, 1.0, n - inner)])
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)]) + _noise(rng, n, noise)
    y = np.concatenate([np.ones(inner), np.zeros(n - inner)]).astype(np.int64)
    return _shuffled(rng, x, y)


def gaussians(n=200, noise=0.0, seed=0):
    """Two Gaussian blobs centred at (0.5, 0.5) (class 1) and (-0.5, -0.5) (class 0), std
    0.2 + noise."""
    rng = np.random.default_rng(seed)
    half = n // 2
    std = 0.2 + noise
    x = np.concatenate([rng.normal(0.5, std, (half, 2)), rng.normal(-0.5, std, (n - half, 2))])
    y = np.concatenate([np.ones(half), np.zeros(n - half)]).astype(np.int64)
    return _shuffled(rng, x, y)


def xor_quadrants(n=200, noise=0.0, seed=0):
    """Uniform points in [-1, 1]² away from the axes; class 1 where x1·x2 > 0."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 1.0, (n, 2)) * rng.choice([-1.0, 1.0], (n, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return _shuffled(rng, x + _noise(rng, n, noise), y)


def spiral(n=200, noise=0.0, seed=0, turns=1.5):
    """Two interleaved spirals (class 0 and class 1), radius growing from 0 to 1."""
    rng = np.random.default_rng(seed)
    half = n // 2
    xs, ys = [], []
    for label, count in ((0, half), (1, n - half)):
        t = np.linspace(0.0, 1.0, count, endpoint=False) + rng.uniform(0, 1.0 / max(count, 1), count)
        angle = 2 * np.pi * turns * t + label * np.pi
        xs.append(np.column_stack([t * np.cos(angle), t * np.sin(angle)]))
        ys.append(np.full(count, label))
    x = np.concatenate(xs) + _noise(rng, n, noise)
    return _shuffled(rng, x, np.concatenate(ys).astype(np.int64))


def _shuffled(rng, x, y):
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


_GENERATORS = {"circle": circle, "gaussians": gaussians, "xor": xor_quadrants, "spiral": spiral}


def playground(name, n=200, noise=0.0, seed=0):
    """One of the 2-D playground sets by name: "circle", "gaussians", "xor" (quadrants) or
    "spiral"."""
    if name not in _GENERATORS:
        raise ValueError(f"unknown playground set {name!r}; choose one of {', '.join(PLAYGROUND)}")
    return _GENERATORS[name](n=n, noise=noise, seed=seed)


def load_digits(scale=True, dtype="float32"):
    """The 1,797 8×8 handwritten digits bundled with symgrad (UCI "Optical Recognition of
    Handwritten Digits", test set; see symgrad/data/README.md for attribution and licence).
    Returns x of shape (1797, 64), pixel counts 0..16 divided by 16 when `scale`, and y, int64
    labels 0..9."""
    with gzip.open(DIGITS_PATH, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    if scale:
        x = x / 16.0
    return x.astype(dtype), y


def shifted_copies(x, y, image_shape=(8, 8), shifts=((0, 1), (0, -1), (1, 0), (-1, 0))):
    """Data augmentation for small images: `x` (rows of flattened images) and `y` with, for each
    (down, right) shift, a copy of every image moved by that many pixels (zeros fill in).
    A digit moved by one pixel is still the same digit, so this adds data that teaches the
    model some translation invariance."""
    images = np.asarray(x).reshape((-1,) + tuple(image_shape))
    copies, labels = [images], [np.asarray(y)]
    for down, right in shifts:
        moved = np.roll(images, (down, right), axis=(1, 2))
        if down > 0:
            moved[:, :down, :] = 0
        elif down < 0:
            moved[:, down:, :] = 0
        if right > 0:
            moved[:, :, :right] = 0
        elif right < 0:
            moved[:, :, right:] = 0
        copies.append(moved)
        labels.append(np.asarray(y))
    return np.concatenate(copies).reshape(-1, images[0].size).astype(np.asarray(x).dtype), np.concatenate(labels)
