"""Splitting data sets and cutting them into minibatches.

In: arrays `x` (examples along axis 0) and `y` (labels or targets, same length), seeds.
Out: index arrays, (x, y) pairs of splits, minibatch generators, one-hot label rows.
Every shuffle is reproducible from (seed, epoch), so a training run can resume mid-epoch.
"""
from __future__ import annotations

import numpy as np


def check_pair(x, y, what="data"):
    """`x` and `y` as arrays, or a clear error if they do not have one row per example each."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"{what}: x and y need a leading example axis, got shapes {x.shape} and {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{what}: x has {len(x)} examples but y has {len(y)}; they must match")
    return x, y


def one_hot(labels, num_classes, dtype="float32"):
    """Integer class labels (shape (n,)) -> one-hot rows (n, num_classes). Every label must be
    an integer in 0..num_classes-1; the first offending one is named in the error."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"one_hot: labels must be a 1-D array of class indices, got shape {labels.shape}")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            bad = labels[~(np.isfinite(labels) & (labels == np.round(labels)))][0]
            raise ValueError(f"one_hot: label {bad} is not a whole number")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iub":
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    outside = (labels < 0) | (labels >= num_classes)
    if np.any(outside):
        where = int(np.flatnonzero(outside)[0])
        raise ValueError(f"one_hot: label {labels[where]} (example {where}) is outside the class "
                         f"range 0..{num_classes - 1}")
    rows = np.zeros((len(labels), num_classes), dtype)
    rows[np.arange(len(labels)), labels.astype(np.int64)] = 1
    return rows


def split(x, y, val=0.15, test=0.15, seed=0, stratify=True):
    """Shuffle and split into (train, val, test), each an (x, y) pair; `val` and `test` are
    fractions. With `stratify` (and integer labels) each class is split in the same
    proportions, so a small test set still has every class."""
    x, y = check_pair(x, y, "split")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"split: val={val} and test={test} must be fractions with val + test < 1")
    rng = np.random.default_rng(seed)
    if stratify and y.ndim == 1 and y.dtype.kind in "iu":
        groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    else:
        groups = [np.arange(len(y))]
    parts = ([], [], [])
    for idx in groups:
        idx = rng.permutation(idx)
        n_test, n_val = int(round(test * len(idx))), int(round(val * len(idx)))
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    out = []
    for chunks in parts:
        idx = rng.permutation(np.concatenate(chunks)) if chunks else np.arange(0)
        out.append((x[idx], y[idx]))
    return tuple(out)


def epoch_order(n, seed, epoch, shuffle=True):
    """The order of the n examples in epoch `epoch` of a run seeded `seed`."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batch_indices(n, batch_size, seed=0, epoch=0, shuffle=True, drop_last=False):
    """The index arrays of one epoch's minibatches (the last may be smaller unless
    `drop_last`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = epoch_order(n, seed, epoch, shuffle)
    stop = n - n % batch_size if drop_last else n
    return [order[start:start + batch_size] for start in range(0, stop, batch_size)]


def minibatches(x, y, batch_size, seed=0, epoch=0, shuffle=True, drop_last=False):
    """Yield (x_batch, y_batch) for one epoch, in a shuffled order reproducible from
    (seed, epoch)."""
    x, y = check_pair(x, y, "minibatches")
    for idx in batch_indices(len(x), batch_size, seed, epoch, shuffle, drop_last):
        yield x[idx], y[idx]
