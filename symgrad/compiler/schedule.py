"""Scheduling: from output nodes to a flat `Program`, with NetworkX.

In: the nodes a function must compute (outputs and update values) and its declared inputs.
Out: a `Program`: the leaves in argument order, a list of `Step`s in a deterministic
topological order keyed by the graph's structure (a value's last reader runs as soon as it
is ready: release_first_order; nodes no output needs are never visited: dead-code
elimination; update values come last), each value's last use, the memory plan
(workspace slots shared by values whose lifetimes do not overlap), and a `networkx.DiGraph`
of the scheduled graph for inspection.

After this stage nothing looks at the node graph's shape of things again: codegen reads the
Program only, as a jaxpr is read.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import heapq
import math

import networkx as nx
import numpy as np

from ..core import dims
from ..core.graph import Node, topological_order
from ..core.ops import OPS
from ..core.sizes import introduced_sizes, stated_sizes


@dataclass(frozen=True)
class Decision:
    """One choice of a compiler pass: `pass_` (its name), the value (`name` in the generated
    code) it concerns, and what was chosen. The schedule's workspace plan and codegen's
    passes log them (f.decisions, viz.decisions)."""
    pass_: str
    name: str
    detail: str

    def __str__(self):
        return f"{self.pass_}: {self.name} {self.detail}"


@dataclass(frozen=True)
class Step:
    node: Node
    out: str
    args: tuple


@dataclass
class Program:
    inputs: list            # placeholders (and Variables) passed positionally by the caller
    state: list             # Variables read from, and written back to, their .value
    constants: list         # array constants, passed as arguments
    steps: list             # Steps in execution order
    outputs: list           # nodes returned
    updates: list           # (Variable, node) written after everything is computed
    names: dict             # node -> name of its value in generated code
    last_use: dict          # name -> index of the last step reading it (len(steps) if returned)
    graph: nx.DiGraph = field(repr=False)
    # size symbol -> (its name in generated code, the argument and axis it is read from), for
    # the sizes the arguments' shapes give, in argument order (the same names in any process)
    sizes: dict = field(default_factory=dict)
    workspace: dict = field(default_factory=dict)  # name -> slot index, for values in the workspace
    slots: list = field(default_factory=list)      # (dtype, element count: an expression of `sizes`)
    decisions: list = field(default_factory=list)  # Decisions of plan_workspace

    def step_index(self):
        """{value name: the index of the step computing it}."""
        return {step.out: k for k, step in enumerate(self.steps)}

    def aliases_argument(self, node):
        """Whether `node`'s value may share memory with an argument array (leaf or view of one)."""
        return OPS[self.base(node).op].leaf is not None

    def base(self, node):
        """The node whose memory `node`'s value may be (itself unless it is a view: reshape and
        the identities always are; a slice, transpose or broadcast when the result is already
        contiguous or is read in place)."""
        while OPS[node.op].view:
            node = node.inputs[0]
        return node

    def storage(self, node):
        """The node whose memory is read when `node`'s value is read (storage)."""
        return storage(node)

    def workspace_bytes(self, bindings):
        """Bytes of workspace for run-time sizes {size symbol: size}."""
        return sum(np.dtype(dtype).itemsize * dims.evaluate(count, bindings)
                   for dtype, count in self.slots)

    def peak_bytes(self, batch=1):
        """Bytes of intermediate values alive at once at worst, with unknown sizes = `batch`."""
        sizes = {s.out: bytes_at(s.node, batch) for s in self.steps}
        alive, peak = 0, 0
        ends = {}
        for name, last in self.last_use.items():
            ends.setdefault(last, []).append(name)
        for k, s in enumerate(self.steps):
            alive += sizes[s.out]
            peak = max(peak, alive)
            alive -= sum(sizes.get(n, 0) for n in ends.get(k, []))
        return peak


def reads_through(node):
    """Whether reading `node`'s value reads its input 0's memory: a view, or an op whose value
    codegen may leave to the loops that use it (an unslice, read as its input padded with
    zeros)."""
    return OPS[node.op].view or OPS[node.op].lazy_read


def storage(node):
    """The node whose memory is read when `node`'s value is read: its base, also through ops
    read through (reads_through). Lifetimes follow storage: the input of such an op must
    outlive the op's own last reader."""
    while reads_through(node):
        node = node.inputs[0]
    return node


def bytes_at(node, batch):
    """The bytes of `node`'s value with every size known only at call time = `batch`."""
    every = {symbol: batch for symbol in dims.symbols_of(node.shape)}
    return math.prod(dims.evaluate(d, every) for d in node.shape) * np.dtype(node.dtype).itemsize


def to_networkx(outputs):
    """The graph behind `outputs` as a DiGraph; each node carries op, shape, dtype, label."""
    graph = nx.DiGraph()
    for node in topological_order(outputs):
        graph.add_node(node, op=node.op, shape=node.shape, dtype=node.dtype,
                       label=node.name or node.op)
        for k, parent in enumerate(node.inputs):
            graph.add_edge(parent, node, index=k)
    return graph


def schedule(inputs, outputs, updates=()):
    """Order the computation of `outputs` and the update values into a Program."""
    roots = list(outputs) + [value for _, value in updates]
    graph = to_networkx(roots)
    # The key is each node's place in a depth-first walk from the roots: it depends on the
    # graph's structure only, so the same model gives the same source (and cache entry) in
    # any process, whatever was built before it.
    place = {node: k for k, node in enumerate(topological_order(roots))}
    # Update values come last, after every other step (and every run-time check), so codegen
    # can write them straight into their Variables without risking a half-done update.
    for _, value in updates:
        if value.inputs and value not in outputs:
            place[value] += len(place)
    ordering = graph
    introduced = introduced_sizes(place)
    if introduced:  # what states a size a value brings (a size node) comes after that value
        ordering = graph.copy()
        for node in place:
            for symbol in stated_sizes(node) & introduced.keys():
                if introduced[symbol] is not node:
                    ordering.add_edge(introduced[symbol], node)
    order, moved = release_first_order(ordering, place, {value for _, value in updates})
    names, state, constants, steps = {}, [], [], []
    for k, node in enumerate(inputs):
        names[node] = f"arg{k}"
    for node in order:
        if node in names:
            continue
        if node.op == "placeholder":
            raise ValueError(f"function: placeholder '{node.name}' is needed but not listed in inputs")
        if node.op == "variable":
            names[node] = f"state{len(state)}"
            state.append(node)
        elif node.op == "constant" and node.shape != ():
            names[node] = f"const{len(constants)}"
            constants.append(node)
        elif node.op == "constant":
            names[node] = f"c{len(names)}"
            steps.append(Step(node, names[node], ()))
        else:
            names[node] = f"v{len(names)}"
            steps.append(Step(node, names[node], tuple(names[i] for i in node.inputs)))
    last_use = {}
    for k, step in enumerate(steps):
        for arg in step.args:
            last_use[arg] = k
    for node in roots:
        last_use[names[node]] = len(steps)
    program = Program(list(inputs), state, constants, steps, list(outputs), list(updates), names,
                      last_use, graph, _argument_sizes(inputs, names))
    for node, ended in moved:
        values = ", ".join(f"{names[value]} ({_bytes_text(size)})" for value, size in ended)
        detail = (f"runs before steps the depth-first walk puts first: it is the last reader "
                  f"of {values}, at batch {NOMINAL_SIZE}")
        program.decisions.append(Decision("release_first", names[node], detail))
    plan_workspace(program)
    return program


# Unknown sizes (the batch) count as this many when the schedule weighs values against each
# other: only their ratios matter, and a typical batch keeps an activation heavier than a
# weight of the same shape.
NOMINAL_SIZE = 128
# False: the plain depth-first order, for measuring what release_first_order gains.
RELEASE_FIRST = True


def release_first_order(ordering, place, last):
    """The steps' order, and the nodes it runs earlier than the depth-first walk would, each
    with the values (and their bytes) it is the last reader of. Of the nodes ready to run (all
    their inputs computed): a view first (it costs nothing and lets its readers become ready);
    else the one whose run ends the most bytes of values (it is their last reader, through
    views too); else the first in `place` (the depth-first walk). The nodes in `last` (the
    update values) run only when nothing else is ready, in `place` order (which update's loop
    reads a Variable another writes is the order they were listed in). Running a value's last reader as soon
    as it can keeps the value in cache for it and frees its memory early: LeNet's second filter
    gradient, which reads a 7.7 MB column matrix, runs right after its cotangent rather than
    after the first layer's whole backward pass (step 5 % faster, peak memory 31 -> 29 MB).
    Deterministic: it depends on the graph's structure only."""
    if not RELEASE_FIRST:
        return list(nx.lexicographical_topological_sort(ordering, key=place.__getitem__)), []

    computed = {node for node in ordering if OPS[node.op].leaf is None}
    reads = {node: {storage(i) for i in node.inputs} & computed
             for node in ordering if not reads_through(node)}
    readers = {}  # value -> the nodes still to run that read it
    for node, sources in reads.items():
        for source in sources:
            readers.setdefault(source, set()).add(node)
    weights = {source: bytes_at(source, NOMINAL_SIZE) for source in readers}

    def priority(node):
        if reads_through(node):
            return (0, 0, place[node])
        if node in last:  # the updates, in the walk's order (the order they were listed in)
            return (2, 0, place[node])
        ended = sum(weights[s] for s in reads[node] if len(readers[s]) == 1)
        return (1, -ended, place[node])

    # a heap of the ready nodes; a node's priority only rises (when it becomes the last reader
    # of a value), and is then pushed again: entries not matching `current` are stale
    waiting = {node: ordering.in_degree(node) for node in ordering}
    current = {node: priority(node) for node, count in waiting.items() if count == 0}
    heap = [(key, node) for node, key in current.items()]
    heapq.heapify(heap)
    by_place = [(place[node], node) for node in current]  # the ready nodes, walk order first
    heapq.heapify(by_place)
    order, moved = [], []
    while heap:
        key, node = heapq.heappop(heap)
        if current.get(node) != key:
            continue
        while by_place[0][1] not in current:
            heapq.heappop(by_place)
        if key[1] < 0 and by_place[0][0] < place[node]:
            moved.append((node, [(s, weights[s]) for s in sorted(reads[node], key=place.get)
                                 if len(readers[s]) == 1]))
        del current[node]
        order.append(node)
        for source in reads.get(node, ()):
            readers[source].discard(node)
            if len(readers[source]) == 1:
                (last_reader,) = readers[source]
                if last_reader in current:
                    current[last_reader] = priority(last_reader)
                    heapq.heappush(heap, (current[last_reader], last_reader))
        for user in ordering.successors(node):
            waiting[user] -= 1
            if waiting[user] == 0:
                current[user] = priority(user)
                heapq.heappush(heap, (current[user], user))
                heapq.heappush(by_place, (place[user], user))
    return order, moved


def _bytes_text(size):
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def _argument_sizes(inputs, names):
    """{size symbol: (code name, argument name, axis)} for the symbols the arguments' shapes
    state as one of their sizes, named size0, size1... in argument order."""
    sizes = {}
    for node in inputs:
        for axis, d in enumerate(node.shape):
            if not dims.is_known(d) and d.is_Symbol and d not in sizes:
                sizes[d] = (f"size{len(sizes)}", names[node], axis)
    return sizes


def _element_count(program, node):
    """`node`'s element count as an expression of the sizes the arguments give, or None
    when it has a size they cannot state."""
    count = dims.element_count(node.shape)
    return count if dims.is_known(count) or count.free_symbols <= program.sizes.keys() else None


def plan_workspace(program, in_place=(), early=None):
    """Assign workspace slots: a value whose memory is dead (after its last use, and that of
    every view of it and every value read through it: Program.storage) hands its slot to a
    later value of the same dtype and size. Returned
    values never live in the workspace: the next call would overwrite them; nor do the values
    `in_place` names, which codegen writes straight into their Variables (it plans again once
    it knows them). `early` ({name: step index}) gives values whose memory is written from an
    earlier step than their own (a sum its products accumulate into): their slot is taken
    there."""
    early = early or {}
    program.workspace, program.slots = {}, []
    program.decisions = [d for d in program.decisions if d.pass_ != "workspace_slot"]
    names = program.names
    end = len(program.steps)
    last = {}
    for step in program.steps:
        for node_in in step.node.inputs:
            base = program.storage(node_in)
            last[base] = max(last.get(base, -1), program.last_use.get(names[node_in], -1))
    for node in program.outputs:
        last[program.storage(node)] = end + 1  # never freed
    for _, value in program.updates:
        base = program.storage(value)
        last[base] = max(last.get(base, -1), end)
    free, releases = {}, {}

    def take_slot(step, k):
        """Give the value of `step` a slot at step index `k`, if it lives in the workspace."""
        node = step.node
        if not OPS[node.op].writes_output or step.out in in_place:  # (see the docstring)
            return
        if last.get(node, -1) > end or node.shape == ():
            return
        count = _element_count(program, node)
        if count is None:
            return
        signature = (node.dtype, count)
        if free.get(signature):
            slot = free[signature].pop()
            reuse = "reused"
        else:
            slot = len(program.slots)
            program.slots.append(signature)
            reuse = "new"
        program.workspace[step.out] = slot
        program.decisions.append(Decision("workspace_slot", step.out,
                                          f"lives in workspace slot {slot} ({reuse})"))
        releases.setdefault(last.get(node, k), []).append((slot, signature))

    taken_at = {}  # step index -> the steps whose values take a slot there
    for k, step in enumerate(program.steps):
        taken_at.setdefault(early.get(step.out, k), []).append(step)
    for k in range(len(program.steps)):
        for slot, signature in releases.pop(k - 1, []):
            free.setdefault(signature, []).append(slot)
        for step in taken_at.get(k, []):
            take_slot(step, k)

