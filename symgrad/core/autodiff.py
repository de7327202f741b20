"""Differentiation as graph construction (symbol-to-symbol).

In: output nodes, the nodes to differentiate with respect to, and seeds. Out: new nodes,
appended to the same graph, that compute derivatives; they can be evaluated, compiled and
differentiated again.

`gradients` is reverse mode (Goodfellow's Algorithm 6.2): one walk in reverse topological
order with a table of gradients, each node's gradient built once from its users' contributions,
so the cost is linear in the number of edges. `jvp` is forward mode, one walk forward. Second
order comes from composing them: `hessian_vector_product` is forward-over-reverse by default.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .dims import compatible
from .graph import Node, as_node, constant, topological_order
from .ops import OPS
from .simplify import STABILITY_PHASES, simplify

__all__ = ["DisconnectedInputError", "gradients", "grad", "jvp", "hessian_vector_product", "hvp",
           "jacobian", "hessian"]


class DisconnectedInputError(ValueError):
    """An input to differentiate with respect to does not influence the output."""


def _as_list(xs):
    return (list(xs), True) if isinstance(xs, (list, tuple)) else ([xs], False)


def _tensors(values, what):
    """`values` (one or a list) as a list of nodes and whether it was a list; anything that
    is not a symgrad tensor is named in a TypeError."""
    values, is_list = _as_list(values)
    for k, value in enumerate(values):
        if not isinstance(value, Node):
            where = f" {k}" if is_list else ""
            raise TypeError(f"{what}{where} must be a symgrad tensor (a placeholder, Variable or "
                            f"an expression of them), got {type(value).__name__} {value!r:.40}")
    return values, is_list


def _between(outputs, inputs):
    """Nodes in topological order that lie on some path from an input to an output."""
    order = topological_order(outputs)
    reaches = set(inputs)
    for node in order:
        if node not in reaches and any(i in reaches for i in node.inputs):
            reaches.add(node)
    return [n for n in order if n in reaches]


def _total(contributions):
    return contributions[0] if len(contributions) == 1 else ops.add(*contributions)


def _describe(x):
    return f"'{x.name}'" if x.name else repr(x)


def _stable_forms(ys, xs):
    """`ys` with the simplifier's rules applied (no fusion) before differentiating, so that
    derivatives come from stable forms: log(1 + exp(z)) is differentiated as softplus(z),
    giving sigmoid(z) rather than exp(z) / (1 + exp(z)), which is NaN at z = 1000."""
    return simplify(ys, fusion=False, keep=xs, phases=STABILITY_PHASES)[0]


def gradients(ys, xs, grad_ys=None, disconnected="raise"):
    """d(sum of ys)/d x for each x, as graph nodes (TF1 semantics). `grad_ys` seeds the outputs
    (default: ones). An x that does not influence ys raises DisconnectedInputError, unless
    `disconnected="zero"` (its gradient is then zeros)."""
    ys, _ = _tensors(ys, "gradients: ys")
    xs, xs_is_list = _tensors(xs, "gradients: xs")
    if grad_ys is None:
        seeds = [ops.ones_like(y) for y in ys]
    else:
        seeds, _ = _as_list(grad_ys)
        seeds = [as_node(s, y) for s, y in zip(seeds, ys)]
        for s, y in zip(seeds, ys):
            if not compatible(s.shape, y.shape) or s.dtype != y.dtype:
                raise ValueError(f"grad_ys: seed {ops.fmt(s.shape)} {s.dtype} does not match "
                                 f"output {ops.fmt(y.shape)} {y.dtype}")
    ys = _stable_forms(ys, xs)
    table: dict[Node, list[Node]] = {}
    for y, s in zip(ys, seeds):
        table.setdefault(y, []).append(s)
    relevant = _between(ys, xs)
    wanted_nodes = set(relevant)
    for node in reversed(relevant):
        contributions = table.get(node)
        if not contributions:
            continue
        g = _total(contributions)
        table[node] = [g]
        op = OPS[node.op]
        if op.vjp is None:
            continue
        wanted = tuple(i in wanted_nodes for i in node.inputs)
        if not any(wanted):
            continue
        for parent, grad, want in zip(node.inputs, op.vjp(node, g, wanted), wanted):
            if want and grad is not None:
                table.setdefault(parent, []).append(grad)
    results = []
    for x in xs:
        contributions = table.get(x)
        if contributions:
            results.append(_total(contributions))
        elif disconnected == "zero":
            results.append(ops.zeros_like(x))
        else:
            raise DisconnectedInputError(
                f"gradients: {_describe(x)} does not influence the output, so its gradient is "
                f"undefined; pass disconnected='zero' to get zeros instead")
    return results if xs_is_list else results[0]


def grad(y, x, disconnected="raise"):
    """dy/dx for one scalar y and one (or a list of) x."""
    _tensors(y, "grad: y")
    _tensors(x, "grad: x")
    if y.shape != ():
        raise ValueError(f"grad: y must be a scalar, got shape {ops.fmt(y.shape)}; "
                         f"use sg.gradients (sums the outputs) or sg.jacobian")
    return gradients(y, x, disconnected=disconnected)


def jvp(ys, xs, tangents):
    """Forward mode: the directional derivatives J·t of ys along `tangents` (one per x)."""
    ys, ys_is_list = _tensors(ys, "jvp: ys")
    xs, _ = _tensors(xs, "jvp: xs")
    tangents, _ = _as_list(tangents)
    if len(xs) != len(tangents):
        raise ValueError(f"jvp: {len(xs)} inputs but {len(tangents)} tangents")
    table = {}
    for x, t in zip(xs, tangents):
        t = as_node(t, x)
        if not compatible(t.shape, x.shape) or t.dtype != x.dtype:
            raise ValueError(f"jvp: tangent {ops.fmt(t.shape)} {t.dtype} for {_describe(x)} "
                             f"must have its shape {ops.fmt(x.shape)} and dtype {x.dtype}")
        table[x] = t
    ys = _stable_forms(ys, xs)
    for node in _between(ys, xs):
        if node in table:
            continue
        op = OPS[node.op]
        tangents_in = tuple(table.get(i) for i in node.inputs)
        if all(t is None for t in tangents_in) or op.jvp is None:  # (no jvp: piecewise
            continue                                                  # constant, as argmax)
        tangent = ops._linear_jvp(node, tangents_in) if op.linear else op.jvp(node, tangents_in)
        if tangent is not None:
            table[node] = tangent
    results = [table.get(y) if table.get(y) is not None else ops.zeros_like(y) for y in ys]
    return results if ys_is_list else results[0]


def hessian_vector_product(y, xs, vs, mode="forward"):
    """H·v for scalar y: the derivative of ∇y along v. mode="forward" is forward-over-reverse
    (jvp of the gradient graph); mode="reverse" is reverse-over-reverse, ∇ₓ(∇ₓy · v)."""
    xs, xs_is_list = _tensors(xs, "hessian_vector_product: xs")
    vs, _ = _as_list(vs)
    g = grad(y, xs, disconnected="zero")
    if mode == "forward":
        hv = jvp(g, xs, vs)
    elif mode == "reverse":
        vs = [as_node(v, x) for v, x in zip(vs, xs)]
        inner = ops.add(*[ops.sum(gi * vi) for gi, vi in zip(g, vs)])
        hv = gradients(inner, xs, disconnected="zero")
    else:
        raise ValueError(f"hessian_vector_product: mode must be 'forward' or 'reverse', not {mode!r}")
    return hv if xs_is_list else hv[0]


hvp = hessian_vector_product


def _static_size(x, what):
    if None in x.shape:
        raise ValueError(f"{what}: needs a fully known shape, got {ops.fmt(x.shape)}")
    return int(np.prod(x.shape, dtype=int))


def jacobian(y, x):
    """dy/dx as a tensor of shape y.shape + x.shape, one reverse pass per element of y
    (for small outputs: the graph grows with y's size)."""
    n = _static_size(y, "jacobian")
    _static_size(x, "jacobian")
    flat = ops.reshape(y, (n,))
    rows = [ops.reshape(gradients(flat[i], x, disconnected="zero"), (1,) + x.shape) for i in range(n)]
    return ops.reshape(ops.concatenate(rows, axis=0), y.shape + x.shape)


def hessian(y, x):
    """d²y/dx² for scalar y, shape x.shape + x.shape, as one HVP per element of x
    (for small inputs)."""
    n = _static_size(x, "hessian")
    rows = []
    for i in range(n):
        e = np.zeros(n, x.dtype)
        e[i] = 1
        hv = hessian_vector_product(y, x, constant(e.reshape(x.shape)))
        rows.append(ops.reshape(hv, (1,) + x.shape))
    return ops.reshape(ops.concatenate(rows, axis=0), x.shape + x.shape)
