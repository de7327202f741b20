"""Losses and layers of the course notes, built from symgrad ops.

In: symbolic tensors. Out: symbolic tensors (losses are means over the batch, axis 0).
"""
from __future__ import annotations

from . import ops


def softmax_cross_entropy(logits, labels, axis=-1):
    """Mean over the batch of -sum(labels * log_softmax(logits)); labels are one-hot or
    distributions (rows summing to 1)."""
    per_example = -ops.sum(labels * ops.log_softmax(logits, axis), axis=axis)
    return ops.mean(per_example)


def sigmoid_binary_cross_entropy(logits, labels):
    """Mean binary cross-entropy from logits, in the stable form softplus(z) - y·z."""
    return ops.mean(ops.softplus(logits) - labels * logits)


def mean_squared_error(predictions, targets):
    """Mean over all elements of (predictions - targets)²."""
    return ops.mean(ops.square(predictions - targets))
