"""Inspecting graphs in notebooks and terminals: pictures, formulas, rewrites, generated code.

In: nodes, compiled Functions, rewrite logs. Out: display objects (a notebook shows them as
SVG, LaTeX or HTML; `str()` gives text) and plain strings. Nothing here changes a graph.

    graph(nodes or f, forward=...)   the graph as SVG: inputs, forward, derivative and fused
                                     nodes told apart by colour and shape, shapes on edges
    debugprint(nodes or f)           the same as compact text, for terminals
    latex(node), derivative(y, x)    formulas: a node's computation, ∂y/∂x simplified
    body(node), op_derivatives(node) an elementwise body and its partial derivatives
    rewrites(f)                      the simplifier's log, before/after, rule by rule
    decisions(f)                     the compiler's choices: lazy reads, views, in-place
                                     updates, workspace slots, pass by pass
    source(f), lines_of(f, node)     generated code, each line traced to its node
    inspect(f)                       all of it for one compiled Function
    gradient_table(y, feed)          the course notes' forward/reverse mode table

Nodes display as their graph in notebooks (`Node._repr_svg_`), and Functions as `inspect(f)`.
Forward vs derivative: see describe.py. The layout is our own (layout.py): no Graphviz.
"""
from __future__ import annotations

from ..compiler.function import Function
from ..core.graph import Node
from .codeview import lines_of, source_html, source_lines
from .describe import forward_set
from .html import HTML, decisions, function_card, gradient_table, rewrites
from .maths import Math, body, derivative, latex, op_derivatives
from .select import build_scene, function_scene
from .svg import render
from .text import debugformat, debugprint

__all__ = ["Graph", "graph", "debugprint", "debugformat", "latex", "derivative", "body",
           "op_derivatives", "rewrites", "decisions", "source", "lines_of", "source_lines", "inspect",
           "gradient_table", "forward_set", "Math", "HTML"]


class Graph:
    """A picture of a graph: shown as SVG in notebooks; `.svg` is the document text."""

    def __init__(self, scene):
        self.scene = scene
        self._svg = None

    @property
    def svg(self):
        if self._svg is None:
            self._svg = render(self.scene)
        return self._svg

    def _repr_svg_(self):
        return self.svg

    def save(self, path):
        with open(path, "w", encoding="utf-8") as out:
            out.write(self.svg)

    def __repr__(self):
        # what a script or a terminal shows: say how to see the picture there
        return (f"<symgrad.viz.Graph of {self.scene.graph.number_of_nodes()} nodes: a notebook "
                f"shows it; .save('graph.svg') writes it, .svg is its text>")


def graph(obj, forward=None, depth=None, max_nodes=120, plumbing=False, scopes="auto"):
    """The graph of a node, a list of nodes or a compiled Function, as a picture.

    forward: the forward graph's roots (e.g. the loss): nodes they depend on are forward
    nodes, the other operations derivative nodes. For a Function, output indices or the
    nodes given as its outputs; by default its first output when it has several outputs or
    updates. depth: levels of inputs shown above the outputs (by default as many as fit in
    max_nodes boxes; max_nodes=None draws everything). plumbing: draw broadcasts and
    reshapes as boxes (by default they are folded into dashed edges). scopes: for a Function,
    draw an optimizer's state as one box per name scope ("auto": above 40 boxes; True; False)."""
    if isinstance(obj, Function):
        return Graph(function_scene(obj, "auto" if forward is None else forward, depth, max_nodes,
                                    plumbing, scopes))
    return Graph(build_scene(obj, forward, depth=depth, max_nodes=max_nodes, plumbing=plumbing))


def source(function, forward="auto"):
    """The generated source of a compiled Function, each block of lines headed by the node
    it computes and tinted by pass (blue forward, orange derivative)."""
    scene = function_scene(function, forward, max_nodes=None)
    return HTML(source_html(function, scene.forward_nodes), function.source)


def inspect(function, forward="auto", depth=None, max_nodes=120):
    """Summary, graph, program, rewrites and annotated source of a compiled Function."""
    return function_card(function, forward, depth, max_nodes)


def node_svg(node):
    """What `Node._repr_svg_` shows: the node's graph, cut to a readable size."""
    return render(build_scene([node], max_nodes=60))


# The notebook views (installed here: the graph and the compiler know nothing of pictures).
Node._repr_svg_ = node_svg
Function._repr_html_ = lambda function: function_card(function).html
Function._repr_html_.__doc__ = "The notebook view: summary, graph, program, rewrites and traced source."
