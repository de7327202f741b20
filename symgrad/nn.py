"""Losses and layers of the course notes, built from symgrad ops.

In: symbolic tensors. Out: symbolic tensors (losses are means over the batch, axis 0).
"""
from __future__ import annotations

from . import ops


def softmax_cross_entropy(logits, labels, axis=-1, labels_sum_to_one=True):
    """Mean over the batch of -sum(labels * log_softmax(logits)). Labels are one-hot or
    probability rows; `labels_sum_to_one` declares it, so the gradient simplifies to
    softmax(logits) - labels (scaled by 1/batch)."""
    if labels_sum_to_one:
        labels = ops.distribution(labels, axis)
    per_example = -ops.sum(labels * ops.log_softmax(logits, axis), axis=axis)
    return ops.mean(per_example)


def sigmoid_binary_cross_entropy(logits, labels):
    """Mean binary cross-entropy from logits, in the stable form softplus(z) - y·z."""
    return ops.mean(ops.softplus(logits) - labels * logits)


def mean_squared_error(predictions, targets):
    """Mean over all elements of (predictions - targets)²."""
    return ops.mean(ops.square(predictions - targets))
