"""Call-time sizes: every value's shape, worked out from the shapes of the arguments.

In: the nodes of a graph in topological order, and the shapes given for its placeholders
(or for any node fed directly). Out: the concrete shape of every node, or a `ValueError` that
names the op whose size assumption the given shapes break.

A graph is built with unknown sizes (None), and ops unify them: a `(None, 3)` placeholder times
a `(3, 3)` constant assumes the unknown size is 3; `x[1:] * y` assumes y is one shorter than x.
Each op's shape rule (ops.py), run again on concrete shapes, checks every such assumption.
Compiled code indexes arrays by the sizes the graph assumed and does no bounds checks, so a
call whose shapes fail here never reaches it; the interpreter refuses the same calls, so the
two agree on what is valid.
"""
from __future__ import annotations

from .graph import ShapeError
from .ops import OPS, fmt


class _Sized:
    """What a shape rule reads of an input: its op, concrete shape and dtype."""

    __slots__ = ("op", "shape", "dtype")

    def __init__(self, op, shape, dtype):
        self.op, self.shape, self.dtype = op, tuple(shape), dtype

    @property
    def ndim(self):
        return len(self.shape)


def _fits(static, concrete):
    return len(static) == len(concrete) and all(s is None or s == c for s, c in zip(static, concrete))


def _where_sizes_come_from(node, sized):
    """' (sizes from 'x' axis 0 = 4, ...)': the placeholders' sizes that `node`'s unknown
    input sizes come from, so an error names the arguments to fix."""
    found = []
    for node_in in node.inputs:
        for axis, d in enumerate(node_in.shape):
            if d is None:
                leaf, (leaf_axis,) = size_source(node_in, (axis,))
                text = f"'{leaf.name}' axis {leaf_axis} = {sized[leaf].shape[leaf_axis]}" \
                    if leaf.op == "placeholder" and leaf in sized else None
                if text and text not in found:
                    found.append(text)
    return f" (sizes from {', '.join(found)})" if found else ""


def concrete_shapes(order, given):
    """{node: shape} for every node of `order` (inputs before users), from `given`
    ({node: shape} for placeholders and fed nodes). Raises ValueError where a shape rule
    fails or a size the graph knows statically differs from the one the arguments imply."""
    sized = {}
    for node in order:
        if node in given:
            shape = tuple(given[node])
        elif not node.inputs:
            if node.op == "placeholder":
                raise ValueError(f"placeholder '{node.name}' needs a value")
            shape = node.shape  # Variables and constants: sizes fixed when they were made
        else:
            op = OPS[node.op]
            try:
                shape, _ = op.infer([sized[i] for i in node.inputs], node.attrs)
            except ShapeError as error:  # an assumption of the graph is broken
                raise ValueError(f"{error.problem}{_where_sizes_come_from(node, sized)}, but "
                                 f"the graph was built assuming they fit") from None
            if None in shape:
                raise AssertionError(f"{node.op}: shape rule left a size unknown: {fmt(shape)}")
        if not _fits(node.shape, shape):
            raise ValueError(f"{node.op}: the graph has shape {fmt(node.shape)} here, but the "
                             f"arguments give {fmt(shape)}")
        sized[node] = _Sized(node.op, shape, node.dtype)
    return {node: s.shape for node, s in sized.items()}


# ----------------------------------------------------------- where unknown sizes come from


def size_source(node, axes):
    """The earliest node known to have `node`'s sizes at `axes`, and its matching axes."""
    axes = tuple(axes)
    while node.inputs:
        rule = OPS[node.op].size_source  # which input has the output's sizes (ops.py)
        step = rule(node, axes) if rule else None
        if step is None:
            break
        node, axes = step
    return node, axes
