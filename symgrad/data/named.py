"""Data sets by name, split for training: what `symgrad train --dataset NAME` and sweeps load.

In: a name ("digits", a playground set, or "mnist:FOLDER"), a seed. Out: (train, val, test)
(x, y) pairs.
"""
import os

import numpy as np

from .batching import split
from .datasets import PLAYGROUND, load_digits, playground, shifted_copies
from .idx import load_mnist

DATASETS = ("digits",) + PLAYGROUND + ("mnist:PATH",)


def load_dataset(spec, seed=0, augment=False, n=2000, noise=0.05):
    """(train, val, test) (x, y) pairs for a dataset name: "digits", a playground set, or
    "mnist:FOLDER" (MNIST's IDX files; its test files become the test split)."""
    if spec == "digits":
        x, y = load_digits()
        train, val, test = split(x, y, val=0.15, test=0.2, seed=seed)
        if augment:
            train = shifted_copies(*train, image_shape=(8, 8))
        return train, val, test
    if spec in PLAYGROUND:
        x, y = playground(spec, n=n, noise=noise, seed=seed)
        return split(x, y, val=0.2, test=0.2, seed=seed)
    if spec.startswith("mnist:") or os.path.isdir(spec):
        folder = spec[len("mnist:"):] if spec.startswith("mnist:") else spec
        x, y = load_mnist(folder, "train")
        train, val, _ = split(x, y, val=0.1, test=0.0, seed=seed)
        try:
            test = load_mnist(folder, "test")
        except FileNotFoundError:
            train, val, test = split(x, y, val=0.1, test=0.1, seed=seed)
        if augment:
            side = int(round(np.sqrt(train[0].shape[1])))
            train = shifted_copies(*train, image_shape=(side, side))
        return train, val, test
    raise ValueError(f"unknown dataset {spec!r}; choose one of {', '.join(DATASETS)}")
