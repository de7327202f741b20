"""`debugprint`: graphs and compiled functions as compact text, for terminals.

In: a node, a list of nodes, or a compiled Function; optional forward roots and depth.
Out: a string. Nodes print as a tree, outputs at the left, inputs indented below their user
(as PyTensor's debugprint does); a node already printed is referred to by its id (`↑ #12`)
instead of being printed again, so shared subgraphs and deep graphs stay short. A Function
prints as its program, one line per step in execution order with the value names of its
generated source (`v7 = add(v4, v6)`), like a jaxpr.

Marks: `∇` a derivative node, `⬡` a fused elementwise node (see describe.py).
"""
from __future__ import annotations

from ..compiler.function import Function
from ..core.graph import Node
from . import describe
from .select import _scheduled

MAX_INDENT = 24


def _mark(node, forward_nodes):
    marks = ""
    if describe.leaf_kind(node) is None and describe.pass_of(node, forward_nodes) == describe.DERIVATIVE:
        marks += "∇"
    if node.op == "elementwise":
        marks += "⬡"
    return marks


def _line(node, ident, forward_nodes):
    mark = _mark(node, forward_nodes)
    mark = f" {mark}" if mark else ""
    return f"{ident} {describe.label(node)}  {describe.shape_text(node.shape)}{mark}"


def format_nodes(roots, forward=None, depth=None, names=None):
    """The tree text of `roots` (see the module doc). `names`: node -> id to print."""
    roots = [roots] if isinstance(roots, Node) else list(roots)
    names = names or {}
    forward_nodes = describe.forward_set(forward, roots)
    lines, printed = [], set()

    def ident(node):
        return names.get(node) or f"#{node.serial}"

    for root in roots:
        # iterative walk: (node, prefix for its line, prefix for its children, level)
        stack = [(root, "", "", 0)]
        while stack:
            node, lead, child_lead, level = stack.pop()
            if level > MAX_INDENT:  # deep chains: stop indenting, say the level instead
                lead = child_lead = f"[{level}] "
            if node in printed and node.inputs:
                lines.append(f"{lead}↑ {ident(node)} {describe.label(node, 40)}")
                continue
            printed.add(node)
            lines.append(lead + _line(node, ident(node), forward_nodes))
            inputs = [i for i in node.inputs
                      if not (describe.is_scalar_constant(i) and describe.is_elementwise(node))]
            if depth is not None and level >= depth and inputs:
                lines.append(f"{child_lead}└─ … {len(inputs)} input(s) not shown")
                continue
            for k in range(len(inputs) - 1, -1, -1):
                last = k == len(inputs) - 1
                stack.append((inputs[k], child_lead + ("└─ " if last else "├─ "),
                              child_lead + ("   " if last else "│  "), level + 1))
    return "\n".join(lines)


def format_function(function, forward="auto"):
    """The program of a compiled Function, one step a line, named as in its source."""
    program = function.program
    names = program.names
    if forward == "auto":
        several = len(program.outputs) > 1 or program.updates
        forward = [program.outputs[0]] if several and program.outputs else None
    elif forward is not None:
        forward = [_scheduled(function, f) for f in
                   (forward if isinstance(forward, (list, tuple)) else [forward])]
    forward_nodes = describe.forward_set(forward, list(program.outputs) + [v for _, v in program.updates])
    leaves = program.inputs + program.state + program.constants
    head = ", ".join(f"{names[n]}:{n.name or 'const'} {describe.shape_text(n.shape)}" for n in leaves)
    lines = [f"function({head})"]
    width = max((len(s.out) for s in program.steps), default=2)
    for step in program.steps:
        node = step.node
        args = ", ".join(step.args)
        text = describe.label(node)
        if node.op == "elementwise":
            operands = [describe.constant_text(i) if describe.is_scalar_constant(i) else a
                        for i, a in zip(node.inputs, step.args)]
            call = describe.body_text(node.attrs["body"], operands)
        else:
            call = f"{text}({args})" if args else text
        mark = _mark(node, forward_nodes)
        lines.append(f"  {step.out:>{width}} = {call}   {describe.shape_text(node.shape)}"
                     + (f"  {mark}" if mark else ""))
    outputs = ", ".join(names[n] for n in program.outputs)
    lines.append(f"  return ({outputs})")
    for variable, value in program.updates:
        lines.append(f"  {variable.name} ← {names[value]}")
    return "\n".join(lines)


def debugformat(obj, forward=None, depth=None):
    """The text `debugprint` prints, as a string."""
    if isinstance(obj, Function):
        return format_function(obj, forward if forward is not None else "auto")
    return format_nodes(obj, forward, depth)


def debugprint(obj, forward=None, depth=None, file=None):
    """Print a node, nodes or compiled Function as compact text (see the module doc).
    `forward`: roots of the forward graph, so derivative nodes are marked ∇; `depth`: levels
    of inputs to show below each output."""
    print(debugformat(obj, forward, depth), file=file)
