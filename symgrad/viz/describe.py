"""What the views say about one node: its kind, which pass built it, its label and shape text.

In: nodes (graph.py) and, optionally, the forward roots of the graph being shown.
Out: plain strings and small records that every view (SVG, text, HTML) shares, so a node reads
the same in the picture, in `debugprint` and in the table of rewrites.

Which nodes are "derivative" nodes? Differentiation does not mark the nodes it builds (they
are ordinary nodes, shared with the forward graph where equal). So the views take the forward
roots (e.g. the loss): every node the forward roots depend on is a forward node, and every
other operation is a derivative node (built by `gradients`/`jvp`, or an update computed from
them). With no forward roots given, nothing is called derivative: operations are just
"operations". A compiled `Function` with several outputs or with updates treats its first
output as the forward root (the usual `[loss, grads...]` and train-step shapes).
"""
from __future__ import annotations

import numpy as np
import sympy
from sympy.printing.str import StrPrinter

from ..core.dims import text as dim_text
from ..core.graph import Node, is_named_leaf, topological_order
from ..core.ops import is_elementwise

# Kinds of node, each drawn differently (colour for the pass, shape for the kind).
INPUT, VARIABLE, CONSTANT = "input", "variable", "constant"
FORWARD, DERIVATIVE, OPERATION, FUSED = "forward", "derivative", "operation", "fused"
SCOPE = "scope"  # a name scope's nodes drawn as one box (select.py)

_ATTR_NAMES = {"axis": "axis", "axes": "axes", "perm": "perm", "dtype": "", "alpha": "α"}
_LETTERS = "abcdefghijklmnopqrstuvw"


def is_scalar_constant(node):
    return node.op == "constant" and node.shape == ()


def leaf_kind(node):
    """INPUT, VARIABLE or CONSTANT for leaves; None for operations."""
    return {"placeholder": INPUT, "variable": VARIABLE, "constant": CONSTANT}.get(node.op)


def value_keys(roots):
    """node -> a key equal for nodes that compute the same value: the same op and
    attributes on the same values. Needed because the simplifier (which `gradients` runs on
    the forward graph first, for stable forms) may rebuild forward nodes: the copy is still
    forward."""
    keys = {}
    for node in topological_order(roots):
        if not node.inputs:
            keys[node] = node
            continue
        attrs = tuple(sorted(node.attrs.items(), key=lambda item: item[0]))
        inputs = tuple(keys[i] for i in node.inputs)
        keys[node] = (node.op, attrs, inputs)
    return keys


def forward_set(forward, shown=()):
    """The forward nodes: every node the forward roots depend on, and every node of the
    `shown` graph computing the same value as one of them. None if no roots are given."""
    if forward is None:
        return None
    roots = [forward] if isinstance(forward, Node) else list(forward)
    if not roots:
        return None
    shown = [shown] if isinstance(shown, Node) else list(shown)
    keys = value_keys(roots + shown)
    forward_nodes = set(topological_order(roots))
    forward_keys = {keys[n] for n in forward_nodes}
    return {n for n, key in keys.items() if key in forward_keys}


def pass_of(node, forward_nodes):
    """FORWARD, DERIVATIVE, or OPERATION when the forward roots are unknown."""
    if forward_nodes is None:
        return OPERATION
    return FORWARD if node in forward_nodes else DERIVATIVE


def shape_text(shape):
    """(x.0, 10) -> 'x.0×10'; () -> 'scalar'. A size known only at call time prints as its
    symbol (dims.py)."""
    if len(shape) == 0:
        return "scalar"
    return "×".join(dim_text(d) for d in shape)


def number_text(value):
    """A number as its shortest text: a float32 constant as the float32 it is (0.9, 1e-08;
    not 0.899999976158142, the float64 that holds it), any other as its shortest float64
    round trip."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    single = np.float32(value)
    return str(single) if np.isfinite(single) and float(single) == value else repr(value)


def constant_text(node):
    value = node.attrs["value"]
    if node.shape == ():
        return f"{float(value):.4g}"
    return f"const {shape_text(node.shape)}"


class _BodyPrinter(StrPrinter):
    """Bodies as short readable text: [a > 0] for gt, (c ? a : b) for select."""

    def _print_gt(self, e):
        return f"[{self._print(e.args[0])} > {self._print(e.args[1])}]"

    def _print_eq(self, e):
        return f"[{self._print(e.args[0])} = {self._print(e.args[1])}]"

    def _print_select(self, e):
        c, a, b = (self._print(x) for x in e.args)
        return f"({c} ? {a} : {b})"

    def _print_Float(self, e):
        return number_text(e)


def body_text(body, names):
    """A SymPy body as text, with x0, x1, ... replaced by `names` (a list of strings)."""
    symbols = {f"x{k}": sympy.Symbol(name) for k, name in enumerate(names)}
    body = body.xreplace({s: symbols[s.name] for s in body.free_symbols if s.name in symbols})
    text = _BodyPrinter({"order": "none"}).doprint(body)
    return text.replace("**", "^").replace("*", "·")


def operand_names(node):
    """Names for an elementwise node's operands: a named leaf's name (quoted if it has a
    slash, so mlp/0/W does not read as a division), else a, b, c..."""
    names, letters = [], iter(_LETTERS)
    for i in node.inputs:
        if is_named_leaf(i) and i.name:
            names.append(f"“{i.name}”" if "/" in i.name else i.name)
        elif is_scalar_constant(i):
            names.append(constant_text(i))
        else:
            names.append(next(letters, "?"))
    return names


def attrs_text(node):
    """The attributes a reader needs (axis=1), not the bookkeeping (a body, a window)."""
    parts = []
    for key, label in _ATTR_NAMES.items():
        if key in node.attrs and not (node.op == "cast" and key != "dtype"):
            value = node.attrs[key]
            if isinstance(value, tuple) and len(value) == 1:
                value = value[0]
            parts.append(f"{label}={value}" if label else str(value))
    return " ".join(parts)


def label(node, max_chars=None):
    """One line naming what the node computes: 'W', 'softmax axis=1', 'b·(a − c)'."""
    if is_named_leaf(node):
        text = node.name or node.op
    elif node.op == "constant":
        text = constant_text(node)
    elif node.op == "elementwise":
        text = body_text(node.attrs["body"], operand_names(node))
    else:
        text = node.op
        extra = attrs_text(node)
        constants = [constant_text(i) for i in node.inputs if is_scalar_constant(i)]
        if constants and is_elementwise(node):
            extra = (extra + " " + ", ".join(constants)).strip()
        if extra:
            text = f"{text} {extra}"
        if node.name and node.name != node.op:
            text = f"{node.name} = {text}"
    if max_chars and len(text) > max_chars:
        text = text[:max_chars - 1] + "…"
    return text


def tooltip(node, value_name=None):
    """Everything about a node, for hover text: repr, full body, operands."""
    lines = [repr(node)]
    if value_name:
        lines.append(f"value {value_name} in the generated code")
    if node.op == "elementwise":
        names = operand_names(node)
        lines.append("body: " + body_text(node.attrs["body"], names))
        for name, i in zip(names, node.inputs):
            if not is_scalar_constant(i):
                lines.append(f"  {name} = {i!r}")
    return "\n".join(lines)
