"""Lanes: one call's batch split between the cores, where the graph proves that it may be.

In: a function's inputs, its (simplified) outputs and updates. Out: a `Lanes` (the lane
graph, which each core runs on its part of the batch; the finish graph, which runs once on
the lanes' results added up) or, where the graph mixes examples, None and the reason.

A compiled step runs its plan on one thread; only BLAS products use more cores. In a CNN
half the step is im2col, col2im, pooling and elementwise loops, on one core. Most of a train
step treats every example alone, though, until the gradients sum over the examples; so the
batch can be cut in two, each part run on its own core (BLAS on one thread in each), and the
parts' sums added, as data-parallel training does across machines (distributed.py). Here it
is proved per graph, from every op's `rows` rule (ops.py), not assumed:

- the inputs split are the placeholders whose axis 0 is a size known only at call time (the
  batch n); a value depends on the examples along one axis of size c·n, or not at all;
- an op passes each example's values along (elementwise, matmul by a weight, conv, pooling,
  softmax along the classes...), or sums over the examples (the weight gradients: `SUMMED`),
  or mixes them (a max over the batch, batch norm's statistics, dropout's draws: no split);
- a value computed from sums (an update, the loss) is computed once, after the lanes, and no
  lane may read it (batch norm would need that: no split).
- sizes that count the whole batch (the n a mean divides by) are worked out from the call's
  shapes and passed to the lanes and the finish as inputs.

Each lane is the same compiled program on other rows (a lane of 64 examples computes what
the whole would for those 64), so lanes give the results of the whole call up to the order
in which float sums are added.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..core import dims
from ..core.graph import make, placeholder, topological_order
from ..core.ops import MIXED, OPS, SUMMED, fmt
from ..core.sizes import attribute_sizes, unbound_symbols

__all__ = ["Lanes", "split", "FULL", "AFTER"]

# States of a value beyond an axis of examples (an int), no dependence on them (None), and
# the op's SUMMED and MIXED: FULL, a value of the whole batch's sizes alone (a mean's count),
# passed to the lanes as an input; AFTER, computed from sums, once the lanes are done.
FULL, AFTER = "full", "after"


def _attrs_mention(node, batch):
    """Whether node's attributes state a batch size (a target shape, a mean's count)."""
    return not attribute_sizes(node).isdisjoint(batch)


def _counts_examples(d, batch):
    """Whether a size is c·n: n a batch symbol, c free of every batch symbol."""
    if dims.is_known(d):
        return False
    found = d.free_symbols & batch
    if len(found) != 1:
        return False
    return sympy.cancel(d / found.pop()).free_symbols.isdisjoint(batch)


def _spread(node, batch):
    """The one axis of node's shape that counts examples; None if none; MIXED if the batch
    shows anywhere else."""
    axes = [k for k, d in enumerate(node.shape)
            if not dims.is_known(d) and not d.free_symbols.isdisjoint(batch)]
    if not axes:
        return None
    if len(axes) > 1 or not _counts_examples(node.shape[axes[0]], batch):
        return MIXED
    return axes[0]


def _state(node, states, batch):
    """The node's state from its inputs' states (see the module docstring)."""
    inputs = [states[i] for i in node.inputs]
    if MIXED in inputs:
        return MIXED
    spread = _spread(node, batch)
    if any(s in (SUMMED, AFTER) for s in inputs):
        # computed once from the lanes' sums: examples may not meet them (in one op, or
        # spread back over the batch, as a mean subtracted from every example)
        alone = all(not isinstance(s, int) for s in inputs)
        return AFTER if alone and spread is None and not _attrs_mention(node, batch) else MIXED
    axes = [None if s == FULL else s for s in inputs]
    if all(a is None for a in axes):
        if not node.inputs and spread is None and _attrs_mention(node, batch):
            return FULL
        if spread is None and not _attrs_mention(node, batch):
            return None
    if spread == MIXED or OPS[node.op].rows is None:
        return MIXED
    out = OPS[node.op].rows(node, axes, spread)
    if out == SUMMED:
        return SUMMED if spread is None else MIXED
    return out if isinstance(out, int) and out == spread else MIXED


@dataclass
class Lanes:
    """A function's graph cut for lanes. Each graph's inputs come with their sources, what
    the caller passes for each: ("input", k), the function's input k (its part of the batch
    where k is in `split`); ("full", j), the value of `full[j]` for the whole call's sizes;
    ("sum", j), lane output j added up over the lanes.

    split: the function's inputs cut along axis 0. lane: (placeholders, sources, outputs):
    the sums the finish reads, then the function's outputs that have examples. full: nodes
    whose values come from the whole call's sizes alone. finish: (placeholders, sources,
    outputs, updates). assemble: per output of the function, ("lane", j, axis) (lane output
    j of every lane, joined along axis) or ("finish", j). sums: how many of the lane's
    outputs (the first) are sums."""
    split: list
    lane: tuple
    full: list
    finish: tuple
    assemble: list
    sums: int

    def describe(self):
        joined = sum(1 for a in self.assemble if a[0] == "lane")
        return (f"the batch splits: each lane returns {self.sums} sums over its examples"
                + (f" and {joined} outputs per example" if joined else "")
                + f"; the finish computes {len(self.finish[2])} outputs and "
                  f"{len(self.finish[3])} updates from the sums")


def _rebuild(roots, stand_in):
    """`roots` rebuilt with the nodes of `stand_in` replaced by their stand-ins."""
    new = dict(stand_in)
    for node in topological_order(roots, stop=frozenset(stand_in)):
        if node not in new:
            inputs = [new.get(i, i) for i in node.inputs]
            new[node] = node if inputs == list(node.inputs) else make(node.op, inputs, node.attrs)
    return [new[r] for r in roots]


def split(inputs, outputs, updates):
    """The function's graph cut into lanes and a finish (Lanes, None), or (None, why not)."""
    roots = list(outputs) + [v for _, v in updates]
    order = topological_order(roots)
    used = set(order)
    split_inputs = [k for k, p in enumerate(inputs) if p in used and p.op == "placeholder"
                    and p.ndim and not dims.is_known(p.shape[0]) and p.shape[0].is_Symbol]
    if not split_inputs:
        return None, "no input has a batch (an axis 0 whose size is known only at call time)"
    batch = {inputs[k].shape[0] for k in split_inputs}
    cut_nodes = {inputs[k] for k in split_inputs}
    states = {}  # (filled in topological order)
    for node in order:
        if OPS[node.op].leaf is not None:
            spread = _spread(node, batch)
            states[node] = None if spread is None else 0 if spread == 0 and node in cut_nodes else MIXED
        else:
            states[node] = _state(node, states, batch)
        if states[node] == MIXED:
            return None, f"{node.op} {fmt(node.shape)} mixes the examples of the batch"
    for variable, value in updates:
        if isinstance(states[value], int):
            return None, f"the update of Variable '{variable.name}' has a value per example"
    if not any(isinstance(s, int) for s in states.values()):
        return None, "nothing depends on the batch"
    return _cut(inputs, outputs, updates, states, split_inputs), None


def _cut(inputs, outputs, updates, states, split_inputs):
    finish_roots = [o for o in outputs if not isinstance(states[o], int)] + [v for _, v in updates]
    # the sums the finish reads: the SUMMED inputs of AFTER values, and SUMMED results
    sums = []
    for node in topological_order(finish_roots):
        for value in (node.inputs if states[node] == AFTER else ()) + (node,) * (node in finish_roots):
            if states[value] == SUMMED and value not in sums:
                sums.append(value)
    full = [n for n, state in states.items() if state == FULL]
    full_in = {n: placeholder(f"lanes:whole-batch size {j}", n.shape, n.dtype) for j, n in enumerate(full)}
    sum_in = {n: placeholder(f"lanes:sum {j}", n.shape, n.dtype) for j, n in enumerate(sums)}
    per_example = [o for o in outputs if isinstance(states[o], int)]

    def graph(roots, stand_ins):
        """roots rebuilt on the stand-ins, and the placeholders it reads with their sources."""
        built = _rebuild(roots, stand_ins)
        nodes = topological_order(built)
        read = set(nodes)
        # (and the inputs whose shapes state sizes it needs but nothing it reads has)
        missing = unbound_symbols(nodes, [p for p in list(stand_ins.values()) + inputs if p in read])
        given = [(p, ("input", k)) for k, p in enumerate(inputs)
                 if p in read or (p.op == "placeholder" and missing & set(p.shape))]
        given += [(p, ("full", j)) for j, p in enumerate(full_in.values()) if p in read]
        given += [(p, ("sum", j)) for j, p in enumerate(sum_in.values()) if p in read]
        return built, [p for p, _ in given], [s for _, s in given]

    lane_outputs, lane_inputs, lane_sources = graph(sums + per_example, full_in)
    finish, finish_inputs, finish_sources = graph(finish_roots, {**full_in, **sum_in})
    kept = len(finish_roots) - len(updates)
    assemble, lane_k, finish_k = [], len(sums), 0
    for o in outputs:
        if isinstance(states[o], int):
            assemble.append(("lane", lane_k, states[o]))
            lane_k += 1
        else:
            assemble.append(("finish", finish_k))
            finish_k += 1
    return Lanes(split_inputs, (lane_inputs, lane_sources, lane_outputs), full,
                 (finish_inputs, finish_sources, finish[:kept],
                  [(var, v) for (var, _), v in zip(updates, finish[kept:])]),
                 assemble, len(sums))
