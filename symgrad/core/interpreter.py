"""The reference interpreter: runs any graph with NumPy, op by op.

In: output nodes and a feed dict {placeholder (or any node): array}. Out: NumPy arrays.
It is the oracle that every compiled result is tested against, so it is plain and direct:
each op's `numpy` rule, in topological order, with feeds checked as the compiled wrapper does.
"""
from __future__ import annotations

import numpy as np

from .dims import is_known
from .graph import Node, topological_order
from .ops import OPS, fmt
from .sizes import concrete_shapes

__all__ = ["evaluate", "check_value"]


def check_value(node, value, what):
    """`value` as an array of `node`'s dtype and shape, or a clear error naming `what`."""
    if not isinstance(value, np.ndarray):
        # Python numbers and (nested) lists are converted to the declared dtype; NumPy arrays
        # must already have it (a silent float64 -> float32 copy would hide a costly mistake)
        try:
            if value is None or isinstance(value, (str, bytes)):
                raise TypeError("not a number or a list of numbers")
            value = np.asarray(value, dtype=node.dtype)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{what}: expected an array of {node.dtype} with shape "
                            f"{fmt(node.shape)}, got {type(value).__name__} {value!r:.40} "
                            f"({error})") from None
    if value.dtype != node.dtype:
        raise TypeError(f"{what}: expected dtype {node.dtype}, got {value.dtype} "
                        f"(convert with .astype(np.{node.dtype}))")
    if value.ndim != node.ndim or any(is_known(d) and d != v for d, v in zip(node.shape, value.shape)):
        raise ValueError(f"{what}: expected shape {fmt(node.shape)}, got {fmt(value.shape)}")
    return value


def evaluate(outputs, feed_dict=None):
    """Values of `outputs` (a node or a list) given `feed_dict`; Variables use their `.value`."""
    single = isinstance(outputs, Node)
    outputs = [outputs] if single else list(outputs)
    values = {}
    for node, value in (feed_dict or {}).items():
        values[node] = check_value(node, value, f"feed for {node.name or node!r}")
    order = topological_order(outputs, stop=frozenset(values))
    for node in order:
        if node.op == "placeholder" and node not in values:
            raise ValueError(f"evaluate: placeholder '{node.name}' needs a value in feed_dict")
    sizes = concrete_shapes(order, {node: value.shape for node, value in values.items()})
    with np.errstate(all="ignore"):
        for node in sizes.order:  # (a value that brings a size before what states it)
            if node in values:
                continue
            if node.op == "variable":
                values[node] = node.value
            elif node.op == "constant":
                values[node] = node.attrs["value"]
            else:
                result = OPS[node.op].numpy([values[i] for i in node.inputs], sizes.attrs(node))
                values[node] = np.asarray(result, dtype=node.dtype)
    results = [np.array(values[o], copy=True) for o in outputs]
    return results[0] if single else results
