"""The notebook views: SVG pictures, text, formulas, rewrites and traced source."""
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest

import symgrad as sg
from symgrad import viz
from symgrad.viz import describe, layout

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def softmax_regression():
    x = sg.placeholder("x", ("N", 4), "float32")  # N: one batch size, shared
    y = sg.placeholder("y", ("N", 3), "float32")
    W = sg.Variable(np.zeros((4, 3), np.float32), name="W")
    b = sg.Variable(np.zeros(3, np.float32), name="b")
    z = x @ W + b
    loss = sg.nn.softmax_cross_entropy(z, y, labels_sum_to_one=True)
    gW, gb = sg.gradients(loss, [W, b])
    return dict(x=x, y=y, W=W, b=b, z=z, loss=loss, gW=gW, gb=gb)


@pytest.fixture(scope="module")
def compiled(softmax_regression):
    m = softmax_regression
    return sg.function([m["x"], m["y"]], [m["loss"], m["gW"], m["gb"]])


def parse_svg(text):
    root = ET.fromstring(text)  # well-formed XML, or this raises
    assert root.tag == SVG + "svg"
    return root


def texts(root):
    return [t.text for t in root.iter(SVG + "text")]


class _Checker(HTMLParser):
    """Fails on unbalanced tags (void elements aside)."""
    VOID = {"br", "img", "hr", "meta", "input", "rect", "path", "polygon"}

    def __init__(self):
        super().__init__()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()


def check_html(text):
    checker = _Checker()
    checker.feed(text)
    assert checker.stack == []


# ------------------------------------------------------------------------------ pictures

def test_node_repr_svg_is_well_formed(softmax_regression):
    root = parse_svg(softmax_regression["loss"]._repr_svg_())
    labels = texts(root)
    assert "x" in labels and "W" in labels and "log_softmax axis=1" in labels
    assert any(t and "output" in t for t in labels)


def test_forward_and_derivative_nodes_are_told_apart(softmax_regression, tmp_path):
    m = softmax_regression
    picture = viz.graph([m["loss"], m["gW"], m["gb"]], forward=m["loss"])
    svg = picture.svg
    assert ".save('graph.svg')" in repr(picture)  # what a script prints says how to see it
    picture.save(tmp_path / "graph.svg")
    assert (tmp_path / "graph.svg").read_text(encoding="utf-8") == svg
    root = parse_svg(svg)
    legend = " ".join(t for t in texts(root) if t)
    assert "forward op" in legend and "derivative op" in legend and "fused elementwise" in legend
    fills = {r.get("fill") for r in root.iter(SVG + "rect")}
    assert "#dbeafe" in fills and "#ffedd5" in fills     # blue forward, orange derivative
    assert any(True for _ in root.iter(SVG + "polygon"))  # a fused node is a hexagon
    assert "N×3" in " ".join(t for t in texts(root) if t)  # shapes on edges
    fused = [t for t in texts(root) if t and "·" in t and "a" in t]
    assert fused and {"a", "b"} <= set(texts(root))  # body letters written on the input edges


def test_forward_copies_made_by_gradients_stay_forward(softmax_regression):
    # gradients() differentiates a simplified copy of the forward graph; the copy is forward
    m = softmax_regression
    forward = describe.forward_set(m["loss"], [m["gW"]])
    from symgrad.core.graph import topological_order
    ops_of = {n.op for n in topological_order([m["gW"]]) if n not in forward}
    assert "log_softmax" not in ops_of and "softmax" in ops_of


def test_no_forward_roots_means_no_derivative_colour(softmax_regression):
    svg = viz.graph(softmax_regression["gW"]).svg
    assert "#ffedd5" not in svg and "derivative op" not in svg


def test_function_graph_links_boxes_to_code(compiled):
    card = viz.inspect(compiled).html
    check_html(card)
    svg = card[card.index("<svg"):card.index("</svg>") + 6]
    root = parse_svg(svg)
    links = [a.get("href") for a in root.iter(SVG + "a")]
    assert links and all(re.fullmatch(r"#sgf\d+-v\d+", h) for h in links)
    # every box links to its block of source, and every block back to its box
    for href in links:
        uid, value = href[1:].split("-")
        assert f'id="{uid}-{value}"' in card
        assert f'href="#{uid}-node-{value}"' in card and f'id="{uid}-node-{value}"' in card
    assert compiled._repr_html_() is not None


def test_update_targets_and_outputs_are_tagged():
    x = sg.placeholder("x", (None, 2), "float64")
    w = sg.Variable(np.ones((2, 1)), name="w")
    loss = sg.mean(sg.square(x @ w))
    step = sg.function([x], loss, updates=[(w, w - 0.1 * sg.grad(loss, w))])
    labels = " ".join(t for t in texts(parse_svg(viz.graph(step).svg)) if t)
    assert "out 0" in labels and "→ w" in labels and "derivative op" in labels


def test_large_graphs_are_cut_at_a_depth():
    x = sg.placeholder("x", (None, 3), "float64")
    h = x
    for k in range(400):
        h = sg.tanh(h) + float(k)
    root = parse_svg(viz.graph(h, max_nodes=40).svg)
    boxes = [g for g in root.iter(SVG + "g") if g.find(SVG + "title") is not None]
    assert len(boxes) <= 40
    assert any(t and "showing" in t and "of 801 nodes" in t for t in texts(root))
    assert h._repr_svg_().count("<title>") <= 61


def test_layout_keeps_boxes_apart_and_edges_between_layers():
    import networkx as nx
    graph = nx.DiGraph()
    nodes = [f"n{k}" for k in range(12)]
    sizes = {n: (40 + 7 * k, 30) for k, n in enumerate(nodes)}
    edges = [(0, 3), (1, 3), (2, 4), (3, 5), (4, 5), (0, 6), (6, 7), (5, 7), (1, 8), (8, 9),
             (9, 10), (2, 10), (10, 11), (7, 11), (0, 11)]
    graph.add_nodes_from(nodes)
    graph.add_edges_from((nodes[a], nodes[b]) for a, b in edges)
    result = layout.layered_layout(graph, sizes, key=lambda n: int(n[1:]))
    by_row = {}
    for n, (x, y) in result.centers.items():
        by_row.setdefault(y, []).append((x - sizes[n][0] / 2, x + sizes[n][0] / 2))
    for boxes in by_row.values():
        boxes.sort()
        for (l1, r1), (l2, r2) in zip(boxes, boxes[1:]):
            assert r1 <= l2  # no overlap within a layer
    for (u, v), points in result.edges.items():
        assert points[0][1] < points[-1][1]  # data flows downward
        assert math.isclose(points[0][1], result.centers[u][1] + sizes[u][1] / 2)
        assert math.isclose(points[-1][1], result.centers[v][1] - sizes[v][1] / 2)
    again = layout.layered_layout(graph, sizes, key=lambda n: int(n[1:]))
    assert again.centers == result.centers  # deterministic


# ------------------------------------------------------------------------------ text

def test_debugprint_marks_derivative_and_fused_nodes(softmax_regression, capsys):
    m = softmax_regression
    sg.debugprint([m["loss"], m["gW"]], forward=m["loss"])
    text = capsys.readouterr().out
    assert "log_softmax axis=1" in text and "∇" in text and "⬡" in text
    assert "↑ #" in text  # shared nodes are referred to, not repeated
    assert "… 2 input(s) not shown" in viz.debugformat(m["gW"], depth=0)


def test_debugprint_of_a_function_lists_its_program(compiled):
    text = viz.debugformat(compiled)
    for step in compiled.program.steps:
        assert f"{step.out} = " in text
    assert text.splitlines()[0].startswith("function(arg0:x")


def test_debugprint_of_a_deep_chain_does_not_recurse():
    h = sg.placeholder("x", (2,), "float64")
    for _ in range(3000):
        h = sg.sin(h)
    text = viz.debugformat(h)
    assert len(text.splitlines()) == 3001 and "[3000] #" in text


# ------------------------------------------------------------------------------ formulas

def test_softmax_cross_entropy_gradient_reads_q_minus_p(softmax_regression):
    m = softmax_regression
    math_ = viz.derivative(m["loss"], m["z"], names={m["loss"]: "L", m["z"]: "z", m["y"]: "p"})
    assert str(math_) == "∂L/∂z = (softmax(z) - p)/N"
    assert math_.latex == (r"\frac{\partial L}{\partial z} = "
                           r"\frac{\operatorname{softmax}\left(z\right) - p}{N}")
    assert math_._repr_latex_().startswith("$")


def test_names_follow_nodes_the_simplifier_rebuilt(softmax_regression):
    m = softmax_regression
    text = str(viz.derivative(m["loss"], m["W"], names={m["z"]: "z", m["y"]: "p"}))
    assert "softmax(z)" in text and "xᵀ" in text and "#" not in text


def test_elementwise_bodies_and_their_derivatives():
    x = sg.placeholder("x", (3,), "float64")
    t = sg.tanh(x)
    assert str(viz.op_derivatives(t)) == r"\frac{\partial y}{\partial x} = 1 - y^{2}"
    assert viz.latex(sg.sigmoid(x)).latex == r"\sigma\left(x\right)"
    assert "cases" in viz.latex(sg.leaky_relu(x)).latex
    # a product of two tensors is elementwise: ⊙, not juxtaposition (a matrix product)
    assert str(viz.derivative(sg.sin(x) * x, x)) == "∂y/∂x = x ⊙ cos(x) + sin(x)"
    assert "x^{\\top}" not in viz.derivative(sg.sin(x) * x, x).latex
    fused = sg.simplify([sg.exp(x) * 2.0 + 1.0])[0][0]
    assert fused.op == "elementwise" and str(viz.body(fused)) == "2*exp(x) + 1"


# ------------------------------------------------------------------------------ rewrites, code

def test_rewrites_table_names_each_rule(compiled):
    table = viz.rewrites(compiled)
    check_html(table.html)
    for rule in {r.rule for r in compiled.rewrites}:
        assert rule in table.html and rule in str(table)
    assert "sum_of_distribution" in table.html and "softmax" in table.html
    for line in str(table).splitlines()[1:]:   # no row reads as a no-op
        before, after = line.split(": ", 1)[1].split("  ⟶  ")
        assert before != after, line


def test_each_value_is_traced_to_its_lines(compiled):
    lines = viz.source_lines(compiled)
    assert [n for n, _, _ in lines] == list(range(1, len(lines) + 1))
    for number, text, step in lines:
        assigned = re.match(r"\s+(v\d+) = ", text)
        if assigned:
            assert step is not None and step.out == assigned.group(1)
    matmul = next(s for s in compiled.program.steps if s.node.op == "matmul"
                  and s.node.shape == (4, 3))
    numbers = viz.lines_of(compiled, matmul.node)
    assert numbers and any("kernels.product(" in lines[n - 1][1] for n in numbers)
    assert viz.lines_of(compiled, matmul.out) == numbers
    html = viz.source(compiled).html
    check_html(html)
    assert f"{matmul.out} matmul" in html


def test_gradient_table_of_the_course_notes_example():
    x1 = sg.placeholder("x1", (), "float64")
    x2 = sg.placeholder("x2", (), "float64")
    z = sg.sin(x1) + x1 * x2
    table = viz.gradient_table(z, {x1: 1.5, x2: 0.5}, tangents={x1: 1.0, x2: 0.0})
    check_html(table.html)
    rows = {line.split("  ")[0]: line.split("  ") for line in str(table).splitlines()[1:]}
    assert float(rows["x1"][3]) == pytest.approx(math.cos(1.5) + 0.5, rel=1e-5)
    assert float(rows["x2"][3]) == pytest.approx(1.5)
    assert rows["v1"][1] == "sin(x1)" and rows["v3"][1] == "v1 + v2"
    assert float(rows["v3"][4]) == pytest.approx(math.cos(1.5) + 0.5, rel=1e-5)  # ż along x1


def test_compiler_decisions_are_logged_by_pass_and_shown():
    x = sg.placeholder("x", (None, 3), "float32")
    y = sg.placeholder("y", (None, 2), "float32")
    W = sg.Variable(np.full((3, 2), 0.1, np.float32), name="W")
    b = sg.Variable(np.zeros(2, np.float32), name="b")
    z = sg.placeholder("z", (4, 3), "float32")  # known sizes: its slice is read in place
    loss = sg.nn.softmax_cross_entropy(x @ W + b, y, labels_sum_to_one=True) + sg.sum(z[:, 1:] * 2.0)
    f = sg.function([x, y, z], loss, updates=[(v, v - 0.1 * sg.grad(loss, v)) for v in (W, b)])
    passes = {d.pass_ for d in f.decisions}
    assert {"workspace_slot", "lazy_broadcast", "lazy_slice", "transpose_view",
            "in_place_update", "lanes"} <= passes, passes
    values = set(f.program.names.values())
    for d in f.decisions:  # each names a value of the program; lazy (or inlined) ones never
        assert d.name in values, d  # get a line
        # (lazy and inlined values have no line; nor do arguments, which lanes split)
        never_stored = d.pass_.startswith("lazy_") or d.pass_ == "inline_producer" or \
            d.name.startswith("arg")
        assert bool(re.search(rf"\b{d.name} = ", f.source)) != never_stored, d
    in_place = {d.name for d in f.decisions if d.pass_ in ("in_place_update", "gemm_epilogue")}
    assert len(in_place) == 2 and all(f"{name} = state" in f.source for name in in_place)
    # a value written into its Variable takes no workspace slot (its memory is the Variable's)
    assert not in_place & {d.name for d in f.decisions if d.pass_ == "workspace_slot"}
    shown = viz.decisions(f)
    assert str(shown).startswith(f"{len(f.decisions)} decisions: ") and "lazy_slice" in shown.html
    assert "Compiler decisions" in f._repr_html_()


def test_float32_constants_print_as_the_float32_they_are():
    # Adam's 0.9, 0.999 and 1e-8 are float32 here: printed with float64 digits they read as
    # 0.899999976158142 and 9.99999993922529e-9, and cut the demo's SVG labels off
    from symgrad import nn, optim
    x = sg.placeholder("x", ("N", 4), "float32")
    y = sg.placeholder("y", ("N", 3), "float32")
    model = nn.MLP([4, 3])
    loss = nn.softmax_cross_entropy(model(x), y, labels_sum_to_one=True)
    f = sg.function([x, y], loss, updates=optim.Adam(1e-3).updates(loss, model.params))
    text = viz.debugformat(f)
    assert "0.9·" in text and "0.999·" in text and "1e-08 + sqrt" in text, text
    assert "0.8999" not in text and "9.9999" not in text
    assert "0.8999" not in viz.graph(f).svg
    assert "“mlp/0/W” - " in viz.graph(f, scopes=False).svg  # a slashed name in a label, quoted
    from symgrad.viz.describe import number_text
    assert [number_text(v) for v in (np.float32(0.1), 0.1, 2.0, np.float32(1e-8), 1 / 3)] == \
        ["0.1", "0.1", "2", "1e-08", "0.3333333333333333"]
    latex = viz.derivative(sg.sum(sg.constant(np.float32(0.9)) * x * x), x).latex
    assert latex.endswith("= 1.8 x"), latex   # 2 · 0.9, still a float32


def test_formulas_read_unambiguously():
    # a slashed name is quoted (not a division), the batch size is N, a matrix product is
    # parenthesised as a power's base or a factor, and a mean's 2·N count as a divisor
    x = sg.placeholder("x", (None, 3), "float32")
    W = sg.Variable(np.ones((3, 2), np.float32), name="logreg/W")
    loss = sg.mean(sg.square(x @ W))
    assert str(viz.latex(loss)) == "sum_0((x @ “logreg/W”)^2)/(2·N)"
    derivative = viz.derivative(loss, W)
    assert str(derivative) == "∂L/∂“logreg/W” = xᵀ @ (2·(x @ “logreg/W”)/(2·N))"
    assert r"\partial \text{“logreg/W”}" in derivative.latex and "2 N" in derivative.latex
    p = sg.placeholder("p", (None, 3), "float32")
    z = x @ sg.Variable(np.ones((3, 3), np.float32), name="W")
    cross_entropy = sg.nn.softmax_cross_entropy(z, p, labels_sum_to_one=True)
    assert str(viz.derivative(cross_entropy, z, names={z: "z", p: "p"})) == \
        "∂L/∂z = (softmax(z) - p)/N"


def test_formulas_typeset_offline_as_svg():
    # exported HTML opened without a network has no MathJax: formulas carry an SVG picture
    # typeset by matplotlib's mathtext (dev installs matplotlib), the same on every call
    x = sg.placeholder("x", (None, 3), "float64")
    formula = viz.derivative(sg.sum(sg.tanh(x) * x), x)
    html = formula._repr_html_()
    assert "<svg" in html and "<metadata>" not in html and html == viz.derivative(
        sg.sum(sg.tanh(x) * x), x)._repr_html_()
    assert "Cmr10" in html  # Computer Modern glyphs, drawn as paths: no font needed
    assert viz.Math(r"\begin{cases} x & x > 0 \\ 0 & \text{otherwise} \end{cases}")._repr_html_() is None
    assert formula._repr_latex_().startswith("$\\displaystyle")  # still there for MathJax


def test_broadcasts_and_reshapes_fold_into_dashed_edges(softmax_regression):
    # plumbing (ops that only spread or reshape a value) crowds real graphs: by default it is
    # an edge, dashed, from the value it carries; plumbing=True draws every box
    m = softmax_regression
    roots = [m["loss"], m["gW"], m["gb"]]
    folded = viz.graph(roots, forward=m["loss"])
    drawn = viz.graph(roots, forward=m["loss"], plumbing=True)
    ops = lambda picture: [n.op for n in picture.scene.graph]  # noqa: E731
    assert "broadcast_to" in ops(drawn) and "reshape" in ops(drawn)
    assert "broadcast_to" not in ops(folded) and "reshape" not in ops(folded)
    assert len(ops(folded)) < len(ops(drawn))
    assert 'stroke-dasharray="5 3"' in folded.svg and 'stroke-dasharray="5 3"' not in drawn.svg
    assert "dashed: through broadcasts and reshapes" in folded.svg
    # the bias reaches the add it is broadcast into, as an edge
    add = next(n for n in folded.scene.graph if n.op == "add")
    assert folded.scene.graph.has_edge(m["b"], add) and folded.scene.graph.edges[m["b"], add]["folded"]


def test_an_optimizers_state_is_one_box_per_name_scope():
    # a train step's picture: Adam (its moments, their updates, its step count, and the
    # parameters' steps it computes, the update rule drawn once) is one `adam` box; the
    # forward and backward passes stay drawn
    from symgrad import nn, optim
    from symgrad.viz.select import Scope
    x = sg.placeholder("x", ("N", 4), "float32")
    y = sg.placeholder("y", ("N", 3), "float32")
    model = nn.MLP([4, 5, 3])
    loss = nn.softmax_cross_entropy(model(x), y, labels_sum_to_one=True)
    step = sg.function([x, y], loss, updates=optim.Adam(1e-3).updates(loss, model.params))
    collapsed, full = viz.graph(step, scopes=True), viz.graph(step, scopes=False)
    boxes = [n for n in collapsed.scene.graph if isinstance(n, Scope)]
    assert [b.name for b in boxes] == ["adam"] and not any(isinstance(n, Scope) for n in full.scene.graph)
    members = boxes[0].members
    names = {m.name for m in members if m.name}
    assert {f"adam/{kind}/{p.name}" for kind in ("first_moment", "second_moment")
            for p in model.params} <= names and {"adam/step", "adam/learning_rate"} <= names
    updates = {value for variable, value in step.program.updates if variable in model.params}
    assert updates <= members                                  # the rule, drawn once
    assert not any(m.op == "matmul" for m in members)          # gradients stay outside
    assert not members & collapsed.scene.forward_nodes
    assert collapsed.scene.graph.nodes[boxes[0]]["item"].tags == ["→ 13 Variables"]
    assert collapsed.scene.graph.number_of_nodes() + len(members) - 1 == full.scene.graph.number_of_nodes()
    assert "adam  (" in collapsed.svg and "name scope" in collapsed.svg
    assert any(n.op == "matmul" and collapsed.scene.graph.has_edge(n, boxes[0])
               for n in collapsed.scene.graph if not isinstance(n, Scope))  # gradients flow in
    card = viz.inspect(step).html  # the notebook view: collapsed, and opened beneath
    assert "Graph with every scope drawn" in card and card.count("<svg") == 2


def test_scopes_collapse_before_the_picture_is_cut():
    # a five-layer train step has 135 boxes: with Adam as one box it fits whole in 120,
    # where drawing every box would cut it two levels above the outputs
    from symgrad import nn, optim
    x = sg.placeholder("x", ("N", 16), "float32")
    y = sg.placeholder("y", ("N", 10), "float32")
    model = nn.MLP([16, 16, 16, 16, 16, 10])
    loss = nn.softmax_cross_entropy(model(x), y, labels_sum_to_one=True) + \
        nn.l2_weight_decay(model, 1e-4)
    step = sg.function([x, y], loss, updates=optim.Adam(1e-3).updates(loss, model.params))
    whole, cut = viz.graph(step), viz.graph(step, scopes=False)
    assert whole.scene.depth is None and whole.scene.graph.number_of_nodes() <= 120
    assert cut.scene.depth is not None and "showing" in cut.svg
    assert {n.name for n in whole.scene.graph if getattr(n, "op", None) == "variable"} >= \
        {p.name for p in model.weights}  # every layer's weights drawn


def test_layers_collapse_when_the_optimizer_alone_is_not_enough():
    # nine layers: 231 boxes, still over 120 with Adam as one box, so each layer's forward
    # nodes (its Variables, its product, its bias add, its activation) are one box too
    from symgrad import nn, optim
    from symgrad.viz.select import Scope
    x = sg.placeholder("x", ("N", 16), "float32")
    y = sg.placeholder("y", ("N", 10), "float32")
    model = nn.MLP([16] * 9 + [10])
    loss = nn.softmax_cross_entropy(model(x), y, labels_sum_to_one=True) + \
        nn.l2_weight_decay(model, 1e-4)
    step = sg.function([x, y], loss, updates=optim.Adam(1e-3).updates(loss, model.params))
    picture = viz.graph(step)
    assert picture.scene.depth is None and picture.scene.graph.number_of_nodes() <= 120
    layers = {n.name: n for n in picture.scene.graph if isinstance(n, Scope) and n.name != "adam"}
    assert sorted(layers) == [f"mlp/{k}" for k in range(9)]
    for k in range(8):  # hidden layers: W, b, matmul, and the bias add and ReLU (one fused
        # elementwise node: relu's gradient reads its output, so nothing else reads the sum),
        # and W's weight-decay terms
        ops = sorted(m.op for m in layers[f"mlp/{k}"].members)
        assert {"matmul", "elementwise"} <= set(ops) and ops.count("variable") == 2, ops
    assert not any(isinstance(n, Scope) for n in viz.graph(step, scopes=False).scene.graph)
