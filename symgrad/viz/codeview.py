"""Generated code, each line traced to the graph node it computes.

In: a compiled Function (its `.source` and `.program`).
Out: `source_lines(f)`: (line number, text, Step or None) for every line of the source;
`source_html(f)`: the source as an HTML table whose blocks are tinted by pass (the graph's
colours), each block headed by the node it computes, with anchors so the graph can link to a
block and the block back to the graph; `lines_of(f, node)`: the line numbers computing a node.

How lines are traced: codegen emits the steps in program order, each starting with the
assignment of its value (`v7 = ...`, possibly preceded by its run-time checks
`step.check(...)`); every line up to the next step's start belongs to the step. This reads
only the generated text and `Program.steps` (step.out, step.node), so it survives changes to how each
op is emitted; lines before the first step (the header) and after the last (outputs,
updates) belong to no step.
"""
from __future__ import annotations

import re
from html import escape

from . import describe

_ASSIGN = re.compile(r"^\s+([A-Za-z_]\w*)\s*=(?!=)")
_CHECK = re.compile(r"^\s+step\.check\(")
_CLOSING = re.compile(r"^\s+(# every value is computed|step\.output\()")


def source_lines(function):
    """[(line number from 1, text, Step or None)] for `function.source`."""
    lines = function.source.splitlines()
    steps = {step.out: step for step in function.program.steps}
    owner = [None] * len(lines)
    current, started, pending = None, set(), []
    in_body = False
    for k, text in enumerate(lines):
        if text.startswith("def plan("):
            in_body = True
            continue
        if not in_body:
            continue
        if _CLOSING.match(text):
            current, pending = None, []
            in_body = False
            continue
        match = _ASSIGN.match(text)
        if match and match.group(1) in steps and match.group(1) not in started:
            current = steps[match.group(1)]
            started.add(current.out)
            for j in pending:   # its size checks came just before it
                owner[j] = current
            pending = []
            owner[k] = current
            continue
        if _CHECK.match(text):
            pending.append(k)
            continue
        for j in pending:
            owner[j] = current
        pending = []
        owner[k] = current
    return [(k + 1, text, owner[k]) for k, text in enumerate(lines)]


def lines_of(function, node):
    """Line numbers of `function.source` that compute `node` (a scheduled node or its value
    name such as 'v7')."""
    return [n for n, _, step in source_lines(function)
            if step is not None and (step.node is node or step.out == node)]


_TINT = {describe.FORWARD: "#eff6ff", describe.DERIVATIVE: "#fff7ed",
         describe.OPERATION: "#f8fafc"}
_BAR = {describe.FORWARD: "#2563eb", describe.DERIVATIVE: "#ea580c",
        describe.OPERATION: "#94a3b8"}


def source_html(function, forward_nodes=None, uid="sg", graph_anchors=False):
    """The annotated source as an HTML table (see the module doc). `forward_nodes`: the set
    of forward nodes (describe.forward_set), to tint blocks by pass."""
    rows = []
    previous = None
    cell = "padding:0 8px;vertical-align:top;white-space:pre;border:none;text-align:left;"
    for number, text, step in source_lines(function):
        colour, bar, note, row_id, rule = "#ffffff", "#ffffff", "", "", ""
        if step is not None:
            pass_ = describe.pass_of(step.node, forward_nodes)
            colour, bar = _TINT[pass_], _BAR[pass_]
        if step is not None and step is not previous:
            # the first line of a block names the node it computes
            row_id = f' id="{uid}-{step.out}"'
            rule = "border-top:1px solid #d1d5db;"
            node = step.node
            note = escape(f"{step.out} {describe.label(node, 22)} {describe.shape_text(node.shape)}")
            if graph_anchors:
                note = f'<a href="#{uid}-node-{step.out}" style="color:inherit;text-decoration:none">{note}</a>'
        previous = step
        rows.append(
            f'<tr{row_id} style="background:{colour};border:none">'
            f'<td style="{cell}{rule}color:#374151;border-left:3px solid {bar}">{note}</td>'
            f'<td style="{cell}{rule}color:#9ca3af;text-align:right">{number}</td>'
            f'<td style="{cell}{rule}color:#111827">{escape(text)}</td></tr>')
    return ('<table style="border-collapse:collapse;font-family:DejaVu Sans Mono,Menlo,Consolas,'
            'monospace;font-size:12px;line-height:1.35;border:none">' + "".join(rows) + "</table>")
