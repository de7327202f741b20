"""HTML views: the simplifier's rewrites, the gradient table of a small graph, and the card
shown for a compiled Function in a notebook.

In: a Function or a rewrite log (simplify.Rewrite list); a scalar output with input values.
Out: objects with `_repr_html_` (and a plain `__str__`), so a notebook cell shows a table.
Styles are inline (notebook sanitizers drop <style> blocks), in the graph's colours.
"""
from __future__ import annotations

import itertools
from html import escape

import numpy as np

from ..core.autodiff import gradients, jvp
from ..core.graph import is_named_leaf, topological_order
from ..core.interpreter import evaluate
from . import describe
from .codeview import source_html, source_lines
from .maths import formula
from .select import Scope, function_scene
from .svg import render
from .text import format_function

CELL = "padding:3px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #e5e7eb"
MONO = "font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;font-size:12px"
_uids = itertools.count()


class HTML:
    """An HTML fragment for notebooks, with a text form for terminals."""

    def __init__(self, html, text=""):
        self.html = html
        self.text = text

    def _repr_html_(self):
        return self.html

    def __str__(self):
        return self.text

    def __repr__(self):
        return self.text or "<symgrad.viz.HTML>"


def _table(header, rows, mono_columns=()):
    head = "".join(f'<th style="{CELL};background:#f3f4f6">{escape(h)}</th>' for h in header)
    body = []
    for row in rows:
        cells = []
        for k, value in enumerate(row):
            style = CELL + (";" + MONO if k in mono_columns else "")
            cells.append(f'<td style="{style}">{value}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table style="border-collapse:collapse;font-size:13px"><thead><tr>{head}</tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table>')


# ------------------------------------------------------------------------------ rewrites

def _describe_rewritten(node):
    """A node in a rewrite: its formula two levels deep; then the op on its input nodes
    (some rules change only an input read for its shape, which the formula does not show)."""
    _, text = formula(node, depth=2, tidy=False)
    inputs = ", ".join(f"{describe.label(i, 16)} #{i.serial}" for i in node.inputs)
    return text, f"#{node.serial} {node.op}({inputs})  {describe.shape_text(node.shape)}"


def _merged(log):
    """Consecutive repeats of one rewrite (same rule, same nodes) as one entry with a count."""
    merged = []
    for entry in log:
        if merged and merged[-1][0] == entry:
            merged[-1][1] += 1
        else:
            merged.append([entry, 1])
    return merged


def _summary(log, kind, noun):
    """'14 rewrites: reshape_of_reshape ×5, fuse_elementwise ×6': how many entries of each `kind`."""
    counts = {}
    for entry in log:
        counts[kind(entry)] = counts.get(kind(entry), 0) + 1
    listed = ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in counts.items())
    return f"{len(log)} {noun}: {listed}" if log else f"no {noun}"


def rewrites(log, limit=60):
    """The simplifier's log as a before/after table, rule by rule, with a summary of which
    rules fired. `log`: a Function (its .rewrites) or a list of simplify.Rewrite."""
    log = list(getattr(log, "rewrites", log))
    summary = _summary(log, lambda entry: entry.rule, "rewrites")
    rows, lines = [], [summary]
    merged = _merged(log)
    for k, (entry, count) in enumerate(merged[:limit], start=1):
        before, after = _describe_rewritten(entry.before), _describe_rewritten(entry.after)
        rule = escape(entry.rule) + (f" <span style='color:#6b7280'>×{count}</span>" if count > 1 else "")
        cells = [f"{escape(f)}<br><span style='color:#6b7280;font-size:11px'>{escape(o)}</span>"
                 for f, o in (before, after)]
        rows.append((str(k), f"<b>{rule}</b>", *cells))
        # where the formulas read alike (a rule that changes how a value is read, not what
        # it is), the text shows the ops instead, so no row reads as a no-op
        shown = 1 if before[0] == after[0] else 0
        lines.append(f"{k:3d}. {entry.rule}: {before[shown]}  ⟶  {after[shown]}")
    more = ""
    if len(merged) > limit:
        more = f'<p style="color:#6b7280">… {len(merged) - limit} more (pass limit=None)</p>'
    html = (f'<div><p style="margin:4px 0"><b>{escape(summary)}</b></p>'
            + _table(["#", "rule", "before", "after"], rows, mono_columns=(2, 3)) + more + "</div>")
    return HTML(html, "\n".join(lines))


# ------------------------------------------------------------------------------ decisions

def decisions(function, limit=80):
    """The compiler's choices for a Function (`f.decisions`), pass by pass: values left to the
    loops that read them, transposes read as views, updates written in place, workspace
    slots; each names the value as the generated code does."""
    log = list(getattr(function, "decisions", function))
    summary = _summary(log, lambda entry: entry.pass_, "decisions")
    rows = [(str(k), f"<b>{escape(d.pass_)}</b>", escape(d.name), escape(d.detail))
            for k, d in enumerate(log[:limit], start=1)]
    lines = [summary] + [f"{k:3d}. {d}" for k, d in enumerate(log[:limit], start=1)]
    more = f"<div style='color:#6b7280'>… {len(log) - limit} more</div>" if len(log) > limit else ""
    html = (f"<div><div style='margin:4px 0'>{escape(summary)}</div>"
            + _table(["#", "pass", "value", "choice"], rows, mono_columns=(2, 3)) + more + "</div>")
    return HTML(html, "\n".join(lines))


# ------------------------------------------------------------------------------ gradient table

def _value_text(value):
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.6g}"
    flat = ", ".join(f"{v:.4g}" for v in value.ravel()[:4])
    return f"[{flat}{', …' if value.size > 4 else ''}] {describe.shape_text(value.shape)}"


def gradient_table(y, feed, tangents=None, names=None):
    """The course notes' table for a small graph: every node of `y` in evaluation order, as
    a Wengert list (v1 = sin(x1), ...), with its value, its adjoint ∂y/∂v (reverse mode) and,
    given `tangents` ({input: direction}), its tangent (forward mode). Computed by symgrad's
    own derivative graphs, evaluated with the NumPy interpreter."""
    order = [n for n in topological_order([y]) if not describe.is_scalar_constant(n)]
    names = dict(names or {})
    counter = itertools.count(1)
    for node in order:
        if node not in names:
            names[node] = node.name if is_named_leaf(node) and node.name \
                else f"v{next(counter)}"
    values = evaluate(order, feed)
    adjoints = evaluate(gradients(y, order, disconnected="zero"), feed)
    header = ["node", "definition", "value", f"adjoint ∂{names[y]}/∂v"]
    columns = [adjoints]
    if tangents:
        leaves = list(tangents)
        tangent_nodes = jvp(order, leaves, [tangents[x] for x in leaves])
        header.append("tangent v̇")
        columns.append(evaluate(tangent_nodes, feed))
    rows, lines = [], ["  ".join(header)]
    for k, node in enumerate(order):
        if node.inputs:
            _, definition = formula(node, {i: names[i] for i in node.inputs}, depth=1, tidy=False)
        else:
            definition = "input"
        cells = [names[node], definition, _value_text(values[k])] + [_value_text(c[k]) for c in columns]
        rows.append([escape(c) for c in cells])
        lines.append("  ".join(cells))
    return HTML(_table(header, rows, mono_columns=(0, 1)), "\n".join(lines))


# ------------------------------------------------------------------------------ Function card

def function_card(function, forward="auto", depth=None, max_nodes=120):
    """Everything about a compiled Function in one notebook cell: a summary, the graph
    (boxes link to their code), the program, the rewrites and the annotated source (blocks
    link back to their boxes)."""
    program = function.program
    scene = function_scene(function, forward, depth, max_nodes)
    forward_nodes = scene.forward_nodes
    uid = f"sgf{next(_uids)}"
    # values fused into their users' loops (broadcasts, views) have no lines of their own
    coded = {step.out for _, _, step in source_lines(function) if step is not None}
    links = {n: f"#{uid}-{program.names[n]}" for n in scene.graph if program.names.get(n) in coded}
    anchors = {n: f"{uid}-node-{program.names[n]}" for n in scene.graph if n in program.names}
    svg = render(scene, links=links, anchors=anchors)
    steps = len(program.steps)
    summary = (f"<b>symgrad.Function</b> {len(function.inputs)} inputs → {len(function.outputs)} "
               f"outputs, {len(function.updates)} updates · {steps} steps · "
               f"{len(function.rewrites)} rewrites · compiled in {function.compile_seconds:.2f} s · "
               f"peak temporaries {program.peak_bytes(batch=1)} bytes at batch size 1")
    sections = [("Graph", svg, True)]
    if any(isinstance(n, Scope) for n in scene.graph):  # the collapsed scopes, opened
        full = function_scene(function, forward, depth, max_nodes, scopes=False)
        sections.append(("Graph with every scope drawn", render(full, links=links, anchors={}),
                         False))
    sections += [
        ("Program", f'<pre style="{MONO}">{escape(format_function(function, forward))}</pre>', False),
        ("Rewrites", rewrites(function).html, False),
        ("Compiler decisions", decisions(function).html, False),
        ("Generated source", source_html(function, forward_nodes, uid, graph_anchors=True), False),
    ]
    parts = [f'<div style="font-size:13px"><p style="margin:4px 0">{summary}</p>']
    for title, content, is_open in sections:
        parts.append(f'<details{" open" if is_open else ""}><summary style="cursor:pointer">'
                     f'<b>{title}</b></summary><div style="overflow-x:auto">{content}</div></details>')
    parts.append("</div>")
    return HTML("".join(parts), repr(function))

