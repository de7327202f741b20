"""What a picture of a graph shows: which nodes, how each is labelled, where it is cut.

In: output nodes (or a compiled Function), optional forward roots, value names and limits.
Out: a `Scene`: a `networkx.DiGraph` of the nodes to draw (edges from input to user) with, per
node, its kind, pass, label, sub-label, tooltip, output tags, and whether it is elided (drawn
as a stub because the depth limit cut off what lies above it).

Readability choices: scalar constants feeding elementwise ops are not drawn as nodes (their
value is in the op's label); plumbing (broadcasts and reshapes: ops that only spread or
reshape a value) is folded into the edges it lies on, drawn dashed, unless `plumbing=True`;
in a compiled Function's picture of more than SCOPES_ABOVE boxes, an optimizer (or a
trainer) is one box per name scope (`adam`: its moment Variables, their updates, its step
count, and the parameters' new values it computes; see `_state_scopes`), and if that leaves
more than `max_nodes`, each layer's forward nodes are one box too (`mlp/0`: its Variables,
product, bias add and activation; `_layer_scopes`), unless `scopes=False`; large graphs are
cut at a depth from the outputs so that at most `max_nodes` boxes are drawn, and the caption
says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from ..core.graph import Node, topological_order
from ..core.ops import OPS
from . import describe

MAX_LABEL = 34
SCOPES_ABOVE = 40   # boxes: a Function's picture with more draws its state scopes collapsed


@dataclass
class Item:
    kind: str              # describe.INPUT, VARIABLE, CONSTANT, FUSED or an op pass
    pass_: str             # FORWARD, DERIVATIVE or OPERATION (leaves: their kind)
    label: str
    sub: str               # second line: the value's name in generated code, or #serial
    tooltip: str
    tags: list = field(default_factory=list)   # "out 0", "→ W"
    elided: bool = False   # its inputs are not drawn


class Scope:
    """A name scope drawn as one box in place of its `members` (nodes of the graph)."""

    def __init__(self, name, members):
        self.name, self.members = name, members
        self.serial = min(m.serial for m in members)  # (layout and drawing order)

    def __repr__(self):
        return f"Scope({self.name!r}, {len(self.members)} nodes)"


@dataclass
class Scene:
    graph: nx.DiGraph      # node -> Item as attribute "item"
    total: int             # nodes that would be drawn without a depth limit
    depth: int | None      # the depth limit applied, if any
    forward_nodes: set | None   # the forward set colours were chosen by (None: unknown)
    title: str = ""

    @property
    def forward_known(self):
        return self.forward_nodes is not None


def _distances(roots):
    """Fewest edges from any root to each node (walking toward inputs)."""
    dist = {r: 0 for r in roots}
    frontier = list(roots)
    while frontier:
        nxt = []
        for node in frontier:
            for i in node.inputs:
                if i not in dist:
                    dist[i] = dist[node] + 1
                    nxt.append(i)
        frontier = nxt
    return dist


def _drawn(node, users):
    """Scalar constants are drawn only where a label cannot carry their value."""
    if not describe.is_scalar_constant(node):
        return True
    return any(not describe.is_elementwise(u) for u in users.get(node, ()))


def _choose_depth(dist, max_nodes):
    """The deepest cut (None: no cut) that draws at most `max_nodes` boxes, the stubs at
    depth + 1 included."""
    deepest = max(dist.values(), default=0)
    per_level = [0] * (deepest + 2)
    for d in dist.values():
        per_level[d] += 1
    drawn = 0
    for depth in range(deepest + 1):
        drawn += per_level[depth]
        if drawn + per_level[depth + 1] > max_nodes:
            return max(depth - 1, 0)
    return None


def _folded(order, roots, plumbing):
    """node -> the value it carries, for the plumbing nodes folded into edges (none if
    `plumbing`: then every node is drawn)."""
    through = {}
    if plumbing:
        return through
    for node in order:  # inputs first: a chain of plumbing folds to its first real value
        if OPS[node.op].plumbing and node not in roots:
            source = node.inputs[0]
            through[node] = through.get(source, source)
    return through


def build_scene(roots, forward=None, value_names=None, tags=None, depth=None,
                max_nodes=120, title="", plumbing=False):
    """The Scene for `roots` (see the module doc). `tags`: node -> list of output tags."""
    roots = [roots] if isinstance(roots, Node) else list(roots)
    value_names = value_names or {}
    if tags is None:
        tags = {r: [f"out {k}" if len(roots) > 1 else "output"] for k, r in enumerate(roots)}
    forward_nodes = describe.forward_set(forward, roots)
    order = topological_order(roots)
    through = _folded(order, roots, plumbing)
    users = {}
    for node in order:
        for i in node.inputs:
            users.setdefault(through.get(i, i), []).append(node)
    shown = [n for n in order if n not in through and (_drawn(n, users) or n in roots)]
    dist = _distances(roots)
    if depth is None and max_nodes and len(shown) > max_nodes:
        depth = _choose_depth({n: dist[n] for n in shown}, max_nodes)
    graph = nx.DiGraph()
    for node in shown:
        if depth is not None and dist[node] > depth + 1:
            continue
        leaf = describe.leaf_kind(node)
        pass_ = leaf or describe.pass_of(node, forward_nodes)
        kind = leaf or (describe.FUSED if node.op == "elementwise" else pass_)
        sub = value_names.get(node) or f"#{node.serial}"
        item = Item(kind, pass_, describe.label(node, MAX_LABEL), sub,
                    describe.tooltip(node, value_names.get(node)), list(tags.get(node, [])),
                    elided=depth is not None and dist[node] == depth + 1 and bool(node.inputs))
        graph.add_node(node, item=item)
    for node in list(graph):
        if graph.nodes[node]["item"].elided:
            continue
        # the letters a, b, ... of a fused body's label, written on its input edges
        operands = describe.operand_names(node) if node.op == "elementwise" else []
        for k, i in enumerate(node.inputs):
            source = through.get(i, i)
            if source in graph and not (describe.is_scalar_constant(source) and describe.is_elementwise(node)):
                operand = operands[k] if operands and len(operands[k]) == 1 and operands[k] != i.name else ""
                graph.add_edge(source, node, index=k, operand=operand, folded=source is not i)
    return Scene(graph, len(shown), depth, forward_nodes, title)


def _state_scopes(program, forward_nodes):
    """scope name -> the nodes of a train step's optimizer (or trainer) by the name scope of
    its Variables outside the forward graph (adam/first_moment/mlp/0/W, adam/learning_rate
    are in `adam`): those Variables, the values written into them, each parameter's new value
    when it is computed from one scope's Variables (Adam's step: the update rule, drawn once
    for all parameters), and the nodes computed from the scope's Variables whose every user
    is in the scope (the bias corrections). Never a forward node, and never the gradients
    (they read no state)."""
    forward_nodes = forward_nodes or set()
    roots = list(program.outputs) + [value for _, value in program.updates]
    order = topological_order(roots)
    scope_of = {}
    for node in order:
        if OPS[node.op].leaf == "state" and node not in forward_nodes and "/" in (node.name or ""):
            scope_of[node] = node.name.split("/")[0]
    users, reads = {}, {}  # reads: node -> the scopes whose Variables it is computed from
    for node in order:
        reads[node] = {scope_of[node]} if node in scope_of else set()
        for i in node.inputs:
            users.setdefault(i, set()).add(node)
            reads[node] |= reads[i]
    for variable, value in program.updates:
        if value in forward_nodes or OPS[value.op].leaf:
            continue
        if variable in scope_of:
            scope_of[value] = scope_of[variable]
        elif len(reads[value]) == 1:  # a parameter's step, computed by one optimizer
            scope_of[value] = next(iter(reads[value]))
    for node in reversed(order):  # users before their inputs
        if node in scope_of or node in forward_nodes or node in roots or not users.get(node):
            continue
        scopes = {scope_of.get(u) for u in users[node]}
        if len(scopes) == 1 and None not in scopes and scopes <= reads[node]:
            scope_of[node] = scopes.pop()
    return _grouped(scope_of)


def _grouped(scope_of):
    """node -> scope name, as scope name -> its set of nodes."""
    scopes = {}
    for node, scope in scope_of.items():
        scopes.setdefault(scope, set()).add(node)
    return scopes


def _carried(node):
    """The value a chain of plumbing (broadcasts, reshapes) carries."""
    while OPS[node.op].plumbing:
        node = node.inputs[0]
    return node


def _layer_scopes(scene):
    """scope name -> the forward nodes of each layer, by the name scope of the Variables it
    reads (mlp/0/W and mlp/0/b are in `mlp/0`): those Variables, the ops that read them,
    and the ops after them that read only that layer's values (its activation)."""
    forward_nodes = scene.forward_nodes or set()
    scope_of = {}
    for node in topological_order([n for n in scene.graph if isinstance(n, Node)]):
        if node not in scene.graph or node not in forward_nodes:
            continue
        if OPS[node.op].leaf == "state" and "/" in (node.name or ""):
            scope_of[node] = node.name.rsplit("/", 1)[0]
        elif not OPS[node.op].leaf:
            inputs = [_carried(i) for i in node.inputs]  # a bias through its broadcast
            direct = {scope_of.get(i) for i in inputs if OPS[i.op].leaf == "state"}
            if not direct:  # an activation: the layer of everything it reads
                direct = {scope_of.get(i) for i in inputs if not OPS[i.op].leaf}
            if len(direct) == 1 and None not in direct:
                scope_of[node] = direct.pop()
    return _grouped(scope_of)


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _collapse_scopes(scene, scopes):
    """`scene` with each scope's drawn nodes replaced by one Scope box, edges to and from
    the rest kept (one per neighbour)."""
    graph = scene.graph
    for name, members in sorted(scopes.items()):
        members = {m for m in members if m in graph}
        if len(members) < 2:
            continue
        box = Scope(name, members)
        variables = sum(1 for m in members if describe.leaf_kind(m) == describe.VARIABLE)
        tags = [t for m in members for t in graph.nodes[m]["item"].tags]
        item = Item(describe.SCOPE, describe.SCOPE, f"{name}  ({len(members)} nodes)",
                    _count(variables, "Variable") + (f", {len(tags)} updated" if tags else ""),
                    f"name scope {name}: " + ", ".join(sorted(m.name for m in members if m.name)),
                    [f"→ {_count(len(tags), 'Variable')}"] if tags else [])
        graph.add_node(box, item=item)
        for m in members:
            for u, _, data in list(graph.in_edges(m, data=True)):
                if u not in members:
                    graph.add_edge(u, box, **dict(data, operand=""))
            for _, v, data in list(graph.out_edges(m, data=True)):
                if v not in members:
                    graph.add_edge(box, v, **dict(data, operand=""))
        graph.remove_nodes_from(members)
    return scene


def function_scene(function, forward="auto", depth=None, max_nodes=120, plumbing=False,
                   scopes="auto"):
    """The Scene of a compiled Function: its scheduled (simplified) graph, values named as in
    its source, outputs and updates tagged. forward="auto": the first output when the
    function has several outputs or updates (else none); or give output indices or nodes."""
    program = function.program
    roots = list(program.outputs) + [value for _, value in program.updates]
    tags = {}
    for k, node in enumerate(program.outputs):
        tags.setdefault(node, []).append(f"out {k}")
    for variable, value in program.updates:
        tags.setdefault(value, []).append(f"→ {variable.name}")
    if isinstance(forward, str) and forward == "auto":
        several = len(program.outputs) > 1 or program.updates
        forward = [program.outputs[0]] if several and program.outputs else None
    elif forward is not None:
        forward = [forward] if not isinstance(forward, (list, tuple)) else list(forward)
        forward = [_scheduled(function, f) for f in forward]
    def scene_of(limit):
        return build_scene(roots, forward, dict(program.names), tags, depth, limit,
                           plumbing=plumbing)
    if scopes is False:
        return scene_of(max_nodes)
    scene = scene_of(None)  # every box: whether to collapse, and what is left after it
    if scopes == "auto" and scene.graph.number_of_nodes() <= SCOPES_ABOVE:
        return scene_of(max_nodes)
    state = _state_scopes(program, scene.forward_nodes)
    _collapse_scopes(scene, state)
    if depth is None and max_nodes and scene.graph.number_of_nodes() > max_nodes:
        _collapse_scopes(scene, _layer_scopes(scene))  # still too many: the layers too
    if depth is None and max_nodes and scene.graph.number_of_nodes() > max_nodes:
        scene = _collapse_scopes(scene_of(max_nodes), state)  # and still: cut
    return scene


def _scheduled(function, which):
    """An output index, or a node the user passed as an output, as its scheduled node."""
    if isinstance(which, int):
        return function.program.outputs[which]
    for user_node, node in zip(function.outputs, function.program.outputs):
        if user_node is which:
            return node
    return which
