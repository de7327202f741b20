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
from .ops import OPS, _like_axes, _reshape_plan, fmt, is_elementwise


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


_SAME_SHAPE_OPS = ("softmax", "log_softmax", "distribution", "stop_gradient", "cast")


def _size_source_step(node, axes):
    """An input of `node` whose sizes at some axes equal `node`'s at `axes`: (input, axes),
    or None. Following these steps leads from a value to where its unknown sizes come from,
    usually a placeholder, so shape-only inputs stop keeping computed values alive."""
    if is_elementwise(node):
        for i in node.inputs:
            if i.ndim == node.ndim and all(i.shape[a] is None for a in axes):
                return i, axes
        return None
    if node.op in _SAME_SHAPE_OPS:
        return node.inputs[0], axes
    if node.op in ("sum", "max", "logsumexp"):
        cut = node.attrs["axis"]
        return node.inputs[0], tuple(a if a < cut else a + 1 for a in axes)
    if node.op == "matmul":
        if all(a == 0 for a in axes):
            return node.inputs[0], axes
        if all(a == 1 for a in axes):
            return node.inputs[1], axes
        return None
    if node.op == "transpose":
        return node.inputs[0], tuple(node.attrs["perm"][a] for a in axes)
    if node.op == "broadcast_to":
        x = node.inputs[0]
        lead = node.ndim - x.ndim
        if all(a >= lead and x.shape[a - lead] is None for a in axes):
            return x, tuple(a - lead for a in axes)
        if len(node.inputs) > 1 and all(a < lead or x.shape[a - lead] == 1 for a in axes):
            like_axes = _like_axes(node.attrs, node.ndim)
            return node.inputs[1], tuple(like_axes[a] for a in axes)
        return None
    if node.op == "unslice" and len(node.inputs) > 1:
        like_axes = _like_axes(node.attrs, node.ndim)
        return node.inputs[1], tuple(like_axes[a] for a in axes)
    if node.op == "reshape":
        plan = _reshape_plan(node.attrs["in_shape"], node.shape)
        if all(isinstance(plan[a], tuple) for a in axes):
            return node.inputs[0], tuple(plan[a][1] for a in axes)
        return None
    if node.op == "slice":
        index = node.attrs["index"]
        if all(index[a][1:] == (None, None, None) for a in axes):
            return node.inputs[0], axes
    return None


def size_source(node, axes):
    """The earliest node known to have `node`'s sizes at `axes`, and its matching axes."""
    axes = tuple(axes)
    while node.inputs:
        step = _size_source_step(node, axes)
        if step is None:
            break
        node, axes = step
    return node, axes
