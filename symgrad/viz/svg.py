"""Drawing a Scene as SVG text, written by hand (no Graphviz).

In: a `select.Scene`. Out: one well-formed, self-contained SVG document (a string) with a
legend, boxes coloured by pass and shaped by kind, edges as smooth curves with arrowheads, the
shape of each value written where its edges leave, output tags, and hover tooltips (<title>).
`links` (node -> URL fragment) turns boxes into links, which the Function view uses to jump
from a box to the lines of generated code that compute it.
"""
from __future__ import annotations

import itertools
from xml.sax.saxutils import escape, quoteattr

from . import describe
from .layout import layered_layout
from .select import Item

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
CHAR_W = 7.3       # width of one character at 12px in the monospace font
SUB_CHAR_W = 6.1   # at 10px
BOX_H = 34
PAD = 10

# fill, stroke per pass or leaf kind: blue forward, orange derivative, green inputs...
COLOURS = {
    describe.FORWARD: ("#dbeafe", "#2563eb"),
    describe.OPERATION: ("#dbeafe", "#2563eb"),
    describe.DERIVATIVE: ("#ffedd5", "#ea580c"),
    describe.INPUT: ("#dcfce7", "#16a34a"),
    describe.VARIABLE: ("#fef3c7", "#b45309"),
    describe.CONSTANT: ("#f3f4f6", "#6b7280"),
    describe.SCOPE: ("#ede9fe", "#7c3aed"),
    "neutral": ("#ffffff", "#374151"),
}
TEXT = "#111827"
MUTED = "#6b7280"
EDGE = "#94a3b8"

_ids = itertools.count()


def _sub_text(item, inside):
    """The second line: the value's name, and its output tags when edges leave from below
    (where a tag under the box would sit on them)."""
    return item.sub + "".join(f" · {t}" for t in item.tags) if inside else item.sub


def _box_size(item, inside=False):
    width = max(len(item.label) * CHAR_W, len(_sub_text(item, inside)) * SUB_CHAR_W) + 2 * PAD
    if item.kind == describe.FUSED:
        width += 14  # the hexagon's points
    return (max(width, 44), BOX_H)


def _shape(item, x, y, w, h):
    """The outline of a box: pill for leaves, hexagon for fused ops, rectangle for the rest."""
    fill, stroke = COLOURS[item.pass_]
    dash = ' stroke-dasharray="4 3"' if item.elided else ""
    width = 2.6 if item.tags else 1.3
    style = f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}'
    left, top = x - w / 2, y - h / 2
    if item.kind in (describe.INPUT, describe.VARIABLE, describe.CONSTANT):
        return f'<rect x="{left:.1f}" y="{top:.1f}" width="{w:.1f}" height="{h}" rx="{h / 2}" {style}/>'
    if item.kind == describe.FUSED:
        inset = 9
        points = [(left, y), (left + inset, top), (left + w - inset, top), (left + w, y),
                  (left + w - inset, top + h), (left + inset, top + h)]
        text = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        return f'<polygon points="{text}" {style}/>'
    return f'<rect x="{left:.1f}" y="{top:.1f}" width="{w:.1f}" height="{h}" rx="4" {style}/>'


def _spread(points_by_edge, layout, sizes, incoming):
    """Attach several edges to distinct points along a box side (ports), in the order of
    where they come from, so arrows into one box do not pile on one spot."""
    sides = {}
    for (u, v), points in points_by_edge.items():
        node = v if incoming else u
        neighbour = points[-2] if incoming else points[1]
        sides.setdefault(node, []).append((neighbour[0], (u, v)))
    for node, ends in sides.items():
        ends.sort(key=lambda e: e[0])
        width = sizes[node][0]
        step = min(14.0, (width - 16) / max(len(ends), 1))
        cx = layout.centers[node][0]
        for k, (_, edge) in enumerate(ends):
            offset = (k - (len(ends) - 1) / 2) * step
            points = points_by_edge[edge]
            index = -1 if incoming else 0
            points[index] = (cx + offset, points[index][1])


def _path(points):
    x0, y0 = points[0]
    parts = [f"M{x0:.1f},{y0:.1f}"]
    for (xa, ya), (xb, yb) in zip(points, points[1:]):
        dy = (yb - ya) / 2
        parts.append(f"C{xa:.1f},{ya + dy:.1f} {xb:.1f},{yb - dy:.1f} {xb:.1f},{yb:.1f}")
    return " ".join(parts)


def _legend(scene):
    """Sample boxes for the kinds present, left to right; returns (svg, height)."""
    items = {scene.graph.nodes[n]["item"].kind for n in scene.graph}
    passes = {scene.graph.nodes[n]["item"].pass_ for n in scene.graph}
    entries = []
    for kind, text in ((describe.INPUT, "input"), (describe.VARIABLE, "variable"),
                       (describe.CONSTANT, "constant")):
        if kind in items:
            entries.append((kind, kind, text))
    if describe.FORWARD in passes:
        entries.append((describe.FORWARD, describe.FORWARD, "forward op"))
    if describe.OPERATION in passes:
        entries.append((describe.OPERATION, describe.OPERATION, "op"))
    if describe.DERIVATIVE in passes:
        entries.append((describe.DERIVATIVE, describe.DERIVATIVE, "derivative op"))
    # shapes and borders say what a node is, whatever its pass: their samples are uncoloured
    if describe.FUSED in items:
        entries.append((describe.FUSED, "neutral", "fused elementwise"))
    if describe.SCOPE in items:
        entries.append((describe.SCOPE, describe.SCOPE, "name scope (scopes=False draws it)"))
    if any(scene.graph.nodes[n]["item"].tags for n in scene.graph):
        entries.append(("output", "neutral", "output (bold)"))
    parts, x = [], 12.0
    for kind, pass_, text in entries:
        sample = Item(kind if kind != "output" else describe.OPERATION, pass_, "", "", "",
                      tags=["x"] if kind == "output" else [])
        parts.append(_shape(sample, x + 15, 14, 30, 16))
        parts.append(f'<text x="{x + 36:.1f}" y="18" font-size="11" fill="{TEXT}">{escape(text)}</text>')
        x += 36 + len(text) * 6.7 + 16
    notes = ["edges: value shapes (names: sizes known at call time)"]
    if any(folded for _, _, folded in scene.graph.edges(data="folded")):
        notes.append("dashed: through broadcasts and reshapes (plumbing=True draws them)")
    if scene.depth is not None:
        notes.append(f"showing {scene.graph.number_of_nodes()} of {scene.total} nodes, "
                     f"{scene.depth} steps up from the outputs (dashed boxes: inputs not shown)")
    note = " · ".join(notes)
    parts.append(f'<text x="12" y="40" font-size="10.5" fill="{MUTED}">{escape(note)}</text>')
    return "\n".join(parts), max(x, 12 + len(note) * 6.4), 52


def render(scene, links=None, anchors=None):
    """The SVG document for `scene`. `links`: node -> URL its box links to; `anchors`:
    node -> id of its box, so other views can link to it."""
    uid = f"sg{next(_ids)}"
    links, anchors = links or {}, anchors or {}
    graph = scene.graph
    items = {n: graph.nodes[n]["item"] for n in graph}
    inside = {n for n in graph if items[n].tags and graph.out_degree(n)}
    sizes = {n: _box_size(items[n], n in inside) for n in graph}
    layout = layered_layout(graph, sizes, key=lambda n: n.serial)
    legend, legend_width, top = _legend(scene)
    edges = {e: list(p) for e, p in layout.edges.items()}
    _spread(edges, layout, sizes, incoming=False)
    _spread(edges, layout, sizes, incoming=True)
    width = max(layout.width, legend_width) + 10
    height = layout.height + top + 16
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{FONT}">',
           f'<defs><marker id="{uid}-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
           f'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
           f'<path d="M0,0 L10,5 L0,10 z" fill="{EDGE}"/></marker></defs>',
           '<rect width="100%" height="100%" fill="white"/>']
    if scene.title:
        out.append(f'<title>{escape(scene.title)}</title>')
    out.append(legend)
    out.append(f'<g transform="translate(0,{top})">')
    for (u, v), points in sorted(edges.items(), key=lambda e: (e[0][0].serial, e[0][1].serial)):
        dashes = ' stroke-dasharray="5 3"' if graph.edges[u, v].get("folded") else ""
        out.append(f'<path d="{_path(points)}" fill="none" stroke="{EDGE}" stroke-width="1.3"'
                   f'{dashes} marker-end="url(#{uid}-arrow)"/>')
    for node in graph:
        item = items[node]
        if graph.out_degree(node) and not item.tags and item.kind != describe.SCOPE:
            x, y = layout.centers[node]
            y += sizes[node][1] / 2
            out.append(f'<text x="{x + 6:.1f}" y="{y + 12:.1f}" font-size="10" fill="{MUTED}">'
                       f'{escape(describe.shape_text(node.shape))}</text>')
    for (u, v), points in edges.items():
        operand = graph.edges[u, v].get("operand")
        if operand:  # which edge is which letter of the body in v's label
            x, y = points[-1]
            out.append(f'<text x="{x - 3:.1f}" y="{y - 5:.1f}" text-anchor="end" font-size="10" '
                       f'font-style="italic" fill="{TEXT}">{escape(operand)}</text>')
    for node in sorted(graph, key=lambda n: n.serial):
        out.append(_node_svg(node, items[node], layout.centers[node], sizes[node], links.get(node),
                             anchors.get(node), inside=node in inside))
    out.append("</g></svg>")
    return "\n".join(out)


def _node_svg(node, item, center, size, link, anchor, inside=False):
    """One box with its label, sub-label and output tags (under the box, or `inside` it on
    the second line when edges leave from below)."""
    x, y = center
    w, h = size
    colour = MUTED if item.elided else TEXT
    ident = f" id={quoteattr(anchor)}" if anchor else ""
    parts = [f"<g{ident}><title>{escape(item.tooltip)}</title>", _shape(item, x, y, w, h),
             f'<text x="{x:.1f}" y="{y - 1:.1f}" text-anchor="middle" font-size="12" '
             f'fill="{colour}">{escape(item.label)}</text>',
             f'<text x="{x:.1f}" y="{y + 11:.1f}" text-anchor="middle" font-size="10" '
             f'fill="{MUTED}">{escape(_sub_text(item, inside) + (" …" if item.elided else ""))}</text>']
    if item.tags and not inside:
        shape = "" if item.kind == describe.SCOPE else "  " + describe.shape_text(node.shape)
        tag = escape(" · ".join(item.tags) + shape)
        parts.append(f'<text x="{x:.1f}" y="{y + h / 2 + 13:.1f}" text-anchor="middle" '
                     f'font-size="10.5" font-weight="bold" fill="{TEXT}">{tag}</text>')
    parts.append("</g>")
    body = "\n".join(parts)
    if link:
        body = f'<a href={quoteattr(link)}>{body}</a>'
    return body
