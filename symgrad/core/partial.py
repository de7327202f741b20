"""Partial evaluation: split a graph into the part fixed now and the part that varies.

In: output nodes and the placeholders among their inputs that will vary (`varying`).
Out: a `Split`: the `residuals` (nodes that do not depend on `varying` but feed nodes that do),
a placeholder standing in for each, and the outputs rebuilt to read those placeholders.
Evaluating the residuals once, then the rebuilt outputs for many values of `varying`, gives
the values of the original graph while doing the fixed work once. This is how a Krylov method
takes many Hessian-vector products at one point: the forward pass and the primal backward
pass are residuals, and each product computes only tangents (JAX's `linearize` does the same).

Some fixed nodes are not stored but rebuilt on the varying side from their own inputs:
constants and placeholders (passed as they are), cheap views and sizes (a transpose, a
broadcast bias), which codegen reads in place, and expansions (im2col's columns: the image is
stored instead). Variables are residuals: their values at the
time the residuals are evaluated are part of the point, so later updates do not mix in.

Some varying nodes do work on a fixed input that can be split off (an op's `split_fixed`):
max pooling's gradient and tangent at a fixed x find every window's maximum again on each
call; split, they read the routing (each tap's share of its window) computed once as a
residual, and each call is a product and a sum.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import make, placeholder, topological_order
from .ops import OPS
from .sizes import unbound_symbols

__all__ = ["Split", "split"]


def _rebuilt(node):
    """Fixed nodes recomputed on the varying side instead of stored: free to compute (views,
    sizes), and storing them would turn a view (a transposed weight, a spread bias) into a
    copy; or expansions of their input (im2col's columns, kh·kw times the image: a direct
    convolution on the varying side never writes them, and a product reads them about as fast
    as they are written again)."""
    return OPS[node.op].free or OPS[node.op].expands


def _passed(node):
    """Leaves passed as they are: placeholders and constants (a Variable's value is part of the
    point, so it is a residual)."""
    return OPS[node.op].leaf in ("input", "constant")


@dataclass
class Split:
    """residuals: nodes to evaluate now; placeholders: their stand-ins, in the same order;
    outputs: the outputs in terms of `varying`, the placeholders, and the graph's other
    placeholders and constants; size_inputs: placeholders of the graph whose sizes (known
    only at call time) the outputs need, though not their values; specialised: (node, its
    replacement) for each varying node whose work on its fixed input was split off
    (Op.split_fixed)."""
    residuals: list
    placeholders: list
    outputs: list
    size_inputs: list
    specialised: list


def _depending(order, varying):
    """The nodes of `order` (inputs first) that `varying` reaches."""
    depends = set()
    for node in order:
        if node in varying or any(i in depends for i in node.inputs):
            depends.add(node)
    return depends


def _split_fixed_work(outputs, varying):
    """`outputs` rebuilt with each varying node whose input 0 is fixed replaced by what its op's
    split_fixed gives (an equal node whose work on input 0 alone is a node of its own, which
    the split then makes a residual: max pooling's routing), and the (node, replacement) pairs."""
    order = topological_order(outputs)
    depends = _depending(order, varying)
    new, specialised = {}, []
    for node in order:
        inputs = [new.get(i, i) for i in node.inputs]
        rebuilt = node if inputs == list(node.inputs) else make(node.op, inputs, node.attrs)
        hook = OPS[node.op].split_fixed
        if hook is not None and node in depends and node.inputs[0] not in depends:
            replacement = hook(rebuilt)
            if replacement is not None:
                specialised.append((node, replacement))
                rebuilt = replacement
        new[node] = rebuilt
    return [new.get(o, o) for o in outputs], specialised


def split(outputs, varying, prefix="residual"):
    """Split `outputs` at the boundary between what `varying` changes and what it does not
    (see the module docstring). Each residual's placeholder is named `prefix` + its index,
    and for a Variable ':' + its name after that.

    Sizes known only at call time that the outputs need are read from the stand-ins where
    they state them, else from the graph's placeholders (`size_inputs`)."""
    outputs, varying = list(outputs), set(varying)
    for node in varying:
        if node.op != "placeholder":
            raise TypeError(f"split: what varies must be placeholders, got {node!r}")
    outputs, specialised = _split_fixed_work(outputs, varying)
    order = topological_order(outputs)
    depends = _depending(order, varying)
    # The fixed nodes the varying side reads, directly or through views it rebuilds.
    needed = {o for o in outputs if o not in depends}
    for node in reversed(order):
        if node in depends or (node in needed and _rebuilt(node)):
            needed.update(i for i in node.inputs if i not in depends)
    stand_in, residuals, placeholders = {}, [], []
    for node in order:
        if node in varying or (node in needed and _passed(node)):
            stand_in[node] = node
        elif node in depends or (node in needed and _rebuilt(node)):
            inputs = [stand_in[i] for i in node.inputs]
            stand_in[node] = node if inputs == list(node.inputs) else make(node.op, inputs, node.attrs)
        elif node in needed:
            label = f"{prefix}{len(residuals)}" + (f":{node.name}" if node.op == "variable" else "")
            stand_in[node] = placeholder(label, node.shape, node.dtype)
            residuals.append(node)
            placeholders.append(stand_in[node])
    new_outputs = [stand_in[o] for o in outputs]
    rebuilt = topological_order(new_outputs)
    missing = unbound_symbols(rebuilt, [n for n in rebuilt if OPS[n.op].leaf == "input"])
    size_inputs = [n for n in order if OPS[n.op].leaf == "input" and n not in stand_in.values()
                   and missing & set(n.shape)]
    return Split(residuals, placeholders, new_outputs, size_inputs, specialised)
