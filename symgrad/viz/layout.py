"""A layered (Sugiyama-style) layout of a DAG, in pure Python with NetworkX.

In: a `networkx.DiGraph` whose edges point from an input to its user, each node's box size
`(width, height)`, and a sort key that makes the result deterministic.
Out: a `Layout`: the centre of every box, and each edge as a polyline of points from the bottom
of its source box to the top of its target box (data flows top to bottom).

The classic four steps, each kept simple:
1. layers: each operation one layer below its deepest input (longest path); leaves sit just
   above their first user, so a weight does not hang at the top with a long edge;
2. long edges are split by invisible dummy nodes, one per layer crossed, so they can bend
   around boxes;
3. order within layers: barycentre sweeps down and up, keeping the order with fewest crossings;
4. x positions: each node pulled toward the mean of its neighbours, solved per layer as an
   isotonic regression (order and spacing kept, squared displacement least), alternating
   down and up sweeps.
No Graphviz binary needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

H_GAP = 24      # between boxes in a layer
V_GAP = 46      # between layers: room for the edge labels
DUMMY_WIDTH = 12
MARGIN = 12


@dataclass
class Layout:
    centers: dict        # node -> (x, y) of its box centre
    sizes: dict          # node -> (width, height)
    edges: dict          # (u, v) -> [(x, y), ...] from u's bottom to v's top
    width: float
    height: float


class _Dummy:
    """A bend point of a long edge."""
    __slots__ = ("edge", "k")

    def __init__(self, edge, k):
        self.edge, self.k = edge, k


def _layers(graph, key):
    layer = {}
    for node in nx.lexicographical_topological_sort(graph, key=key):
        preds = list(graph.predecessors(node))
        layer[node] = max((layer[p] + 1 for p in preds), default=0)
    for node in graph:
        if graph.in_degree(node) == 0 and graph.out_degree(node) > 0:
            layer[node] = min(layer[s] for s in graph.successors(node)) - 1
    return layer


def _split_long_edges(graph, layer):
    """A graph where every edge joins adjacent layers; and each original edge's chain."""
    proper = nx.DiGraph()
    proper.add_nodes_from(graph)
    chains = {}
    for u, v in graph.edges:
        chain = [u] + [_Dummy((u, v), k) for k in range(1, layer[v] - layer[u])] + [v]
        for k, d in enumerate(chain[1:-1], start=1):
            layer[d] = layer[u] + k
        nx.add_path(proper, chain)
        chains[(u, v)] = chain
    return proper, chains


def _crossings(upper, lower, graph):
    position = {n: k for k, n in enumerate(lower)}
    ends = [(i, position[s]) for i, n in enumerate(upper) for s in graph.successors(n)
            if s in position]
    ends.sort()
    count = 0
    for a in range(len(ends)):
        for b in range(a + 1, len(ends)):
            if ends[a][0] < ends[b][0] and ends[a][1] > ends[b][1]:
                count += 1
    return count


def _total_crossings(rows, graph):
    return sum(_crossings(rows[k], rows[k + 1], graph) for k in range(len(rows) - 1))


def _sweep(rows, graph, downward):
    indices = range(1, len(rows)) if downward else range(len(rows) - 2, -1, -1)
    for k in indices:
        fixed = {n: i for i, n in enumerate(rows[k - 1] if downward else rows[k + 1])}
        current = {n: i for i, n in enumerate(rows[k])}

        def barycentre(n):
            near = graph.predecessors(n) if downward else graph.successors(n)
            positions = [fixed[m] for m in near if m in fixed]
            # nodes with no neighbour there keep their place
            return sum(positions) / len(positions) if positions else current[n]
        rows[k] = sorted(rows[k], key=lambda n: (barycentre(n), current[n]))


def _order(proper, layer, key):
    depth = max(layer.values(), default=0) + 1
    rows = [[] for _ in range(depth)]
    for node in nx.lexicographical_topological_sort(proper, key=key):
        rows[layer[node]].append(node)
    best, best_count = [list(r) for r in rows], _total_crossings(rows, proper)
    for iteration in range(8):
        _sweep(rows, proper, downward=iteration % 2 == 0)
        count = _total_crossings(rows, proper)
        if count < best_count:
            best, best_count = [list(r) for r in rows], count
        if best_count == 0:
            break
    return best


def _isotonic(targets, gaps):
    """Positions x (in order) nearest to `targets` with x[i+1] - x[i] >= gaps[i]."""
    offsets = [0.0]
    for g in gaps:
        offsets.append(offsets[-1] + g)
    values = [t - o for t, o in zip(targets, offsets)]
    blocks = []  # pool adjacent violators: [mean, count]
    for v in values:
        blocks.append([v, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    fitted = [m for m, c in blocks for _ in range(c)]
    return [f + o for f, o in zip(fitted, offsets)]


def _x_positions(rows, proper, width_of):
    x = {}
    for row in rows:
        position = 0.0
        for n in row:
            x[n] = position + width_of(n) / 2
            position += width_of(n) + H_GAP
    for iteration in range(12):
        downward = iteration % 2 == 0
        for row in (rows if downward else reversed(rows)):
            if not row:
                continue
            targets = []
            for n in row:
                near = list(proper.predecessors(n) if downward else proper.successors(n))
                targets.append(sum(x[m] for m in near) / len(near) if near else x[n])
            gaps = [(width_of(a) + width_of(b)) / 2 + H_GAP for a, b in zip(row, row[1:])]
            for n, value in zip(row, _isotonic(targets, gaps)):
                x[n] = value
    return x


def _straighten(chains, rows, x, width_of):
    """Make each long edge one vertical line where that fits between its neighbours: the
    averaging above leaves bends that read as noise."""
    place = {n: (row, k) for row in rows for k, n in enumerate(row)}

    def fits(d, value):
        row, k = place[d]
        half = width_of(d) / 2
        if k > 0 and x[row[k - 1]] + width_of(row[k - 1]) / 2 + H_GAP / 2 > value - half:
            return False
        if k + 1 < len(row) and x[row[k + 1]] - width_of(row[k + 1]) / 2 - H_GAP / 2 < value + half:
            return False
        return True

    for chain in chains.values():
        dummies = chain[1:-1]
        if len(dummies) < 2:
            continue
        xs = sorted(x[d] for d in dummies)
        for value in (xs[len(xs) // 2], x[dummies[0]], x[dummies[-1]], x[chain[0]], x[chain[-1]]):
            if all(fits(d, value) for d in dummies):
                for d in dummies:
                    x[d] = value
                break


def layered_layout(graph, sizes, key):
    """Lay out `graph` (a DAG) with boxes of `sizes` top to bottom (see the module doc)."""
    layer = _layers(graph, key)
    proper, chains = _split_long_edges(graph, layer)

    def sort_key(n):
        return (1, key(n.edge[0]), key(n.edge[1]), n.k) if isinstance(n, _Dummy) else (0, key(n))

    rows = _order(proper, layer, sort_key)

    def width_of(n):
        return DUMMY_WIDTH if isinstance(n, _Dummy) else sizes[n][0]

    x = _x_positions(rows, proper, width_of)
    _straighten(chains, rows, x, width_of)
    left = min((x[n] - width_of(n) / 2 for n in x), default=0.0)
    heights = [max((sizes[n][1] for n in row if not isinstance(n, _Dummy)), default=10)
               for row in rows]
    y, top = {}, MARGIN
    for row, h in zip(rows, heights):
        for n in row:
            y[n] = top + h / 2
        top += h + V_GAP
    centers = {n: (x[n] - left + MARGIN, y[n]) for n in graph}
    edges = {}
    for (u, v), chain in chains.items():
        ux, uy = centers[u]
        vx, vy = centers[v]
        points = [(ux, uy + sizes[u][1] / 2)]
        points += [(x[d] - left + MARGIN, y[d]) for d in chain[1:-1]]
        points.append((vx, vy - sizes[v][1] / 2))
        edges[(u, v)] = points
    width = max((centers[n][0] + sizes[n][0] / 2 for n in graph), default=0) + MARGIN
    width = max([width] + [p[0] + MARGIN for pts in edges.values() for p in pts])
    height = top - V_GAP + MARGIN
    return Layout(centers, dict(sizes), edges, width, height)
