"""Call-time sizes: every value's shape, worked out from the shapes of the arguments.

In: the nodes of a graph in topological order, and the shapes given for its placeholders
(or for any node fed directly). Out: `Sizes`: the concrete shape of every node and the value
of every size symbol (dims.py), or a `ValueError` that names the op whose size assumption the
given shapes break, and the arguments the sizes came from.

A graph is built with sizes known only at call time (symbols), and ops unify them: a
`(None, 3)` placeholder times a `(3, 3)` constant assumes the unknown size is 3; `x[1:] * y`
assumes y is one shorter than x. Each op's shape rule (ops.py), run again on concrete shapes,
checks every such assumption, and every node's static shape, worked out from the symbols'
values, must be the shape its rule gives. Compiled code indexes arrays by the sizes the graph
assumed and does no bounds checks, so a call whose shapes fail here never reaches it; the
interpreter refuses the same calls, so the two agree on what is valid.
"""
from __future__ import annotations

from . import dims
from .graph import ShapeError
from .ops import OPS, fmt

__all__ = ["Sizes", "concrete_shapes", "unbound_symbols", "stated_sizes", "attribute_sizes",
           "introduced_sizes",
           "in_size_order"]


class _Sized:
    """What a shape rule reads of an input: its op, concrete shape and dtype."""

    __slots__ = ("op", "shape", "dtype")

    def __init__(self, op, shape, dtype):
        self.op, self.shape, self.dtype = op, tuple(shape), dtype

    @property
    def ndim(self):
        return len(self.shape)


class Sizes:
    """The outcome of `concrete_shapes`: `shapes` {node: shape}, `bindings` {size symbol: int},
    `origins` {size symbol: "'x' axis 0 = 4"}, the argument each value was read from, and
    `order`, the nodes in an order that computes every size before a node states it."""

    def __init__(self, order):
        self.shapes, self.bindings, self.origins, self.order = {}, {}, {}, order

    def __getitem__(self, node):
        return self.shapes[node]

    def attrs(self, node):
        """`node`'s attributes with their symbolic sizes worked out (a broadcast's target)."""
        return dims.evaluate_attrs(node.attrs, self.bindings)

    def bind(self, node, shape, what):
        """`node` has `shape` (read from `what`): bind its bare size symbols; ValueError where
        a size it states already differs."""
        new = [d for d in node.shape if not dims.is_known(d) and d not in self.bindings]
        axis = dims.bind(node.shape, shape, self.bindings) if len(shape) == node.ndim else -1
        for k, d in enumerate(node.shape):
            if d in new and d in self.bindings:
                self.origins[d] = f"{what} axis {k} = {shape[k]}"
        if axis is not None:
            raise ValueError(f"{node.op}: the graph has shape {fmt(node.shape)} here, but the "
                             f"arguments give {fmt(shape)}{self.where_from(node.shape)}")
        self.shapes[node] = shape

    def where_from(self, shape):
        """' (sizes from 'x' axis 0 = 4, ...)': the arguments the sizes of `shape` come from."""
        wanted = dims.symbols_of(shape)
        found = [text for symbol, text in self.origins.items() if symbol in wanted]
        return f" (sizes from {', '.join(found)})" if found else ""


def concrete_shapes(order, given):
    """The `Sizes` of every node of `order` (inputs before users), from `given` ({node: shape}
    for placeholders and fed nodes). Raises ValueError where a shape rule fails or a size the
    graph states differs from the one the arguments imply."""
    sizes = Sizes(in_size_order(order))
    for node, shape in given.items():  # the arguments first: the sizes come from them
        sizes.bind(node, tuple(shape), f"'{node.name}'" if node.name else repr(node))
    for node in sizes.order:
        if node in given:
            continue
        elif OPS[node.op].leaf is not None:
            if OPS[node.op].leaf == "input":
                raise ValueError(f"placeholder '{node.name}' needs a value")
            shape, what = node.shape, None  # Variables and constants: sizes fixed when made
        else:
            inputs = [_Sized(i.op, sizes.shapes[i], i.dtype) for i in node.inputs]
            try:
                shape, _ = OPS[node.op].infer(inputs, sizes.attrs(node))
            except KeyError as error:  # a size no argument gives
                raise ValueError(f"{node.op}: {error.args[0]}; give the value it comes from "
                                 f"as an argument") from None
            except ShapeError as error:  # an assumption of the graph is broken
                shapes = tuple(d for i in node.inputs for d in i.shape)
                raise ValueError(f"{error.problem}{sizes.where_from(shapes)}, but "
                                 f"the graph was built assuming they fit") from None
            shape = tuple(shape)
            if not all(dims.is_known(d) for d in shape):
                raise AssertionError(f"{node.op}: shape rule left a size unknown: {fmt(shape)}")
            what = f"the value of {node.op}"
        sizes.bind(node, shape, what)
    return sizes


def attribute_sizes(node):
    """The size symbols `node`'s attributes state (a target shape)."""
    return dims.symbols_of(tuple(v for v in node.attrs.values() if isinstance(v, tuple)))


def stated_sizes(node):
    """The size symbols `node` states: in its shape and its attributes."""
    return dims.symbols_of(node.shape) | attribute_sizes(node)


def introduced_sizes(order):
    """{size symbol: the node whose value brings it}: a size of a computed value that
    neither its inputs nor its attributes state (an extension op's rule left it None)."""
    introducer = {}
    for node in order:
        if node.inputs:
            known = dims.symbols_of(tuple(i.shape for i in node.inputs)) | attribute_sizes(node)
            for d in node.shape:
                if not dims.is_known(d) and d.is_Symbol and d not in known:
                    introducer.setdefault(d, node)
    return introducer


def in_size_order(order):
    """`order` (inputs before users) with every node that states a size some value brings
    (introduced_sizes) moved after that value: a size node, which has no inputs, may
    otherwise come first."""
    introducer = introduced_sizes(order)
    if not introducer:
        return order
    needs = {node: {introducer[s] for s in stated_sizes(node) if s in introducer} - {node}
             for node in order}
    members, done, result, remaining = set(order), set(), [], list(order)
    while remaining:
        waiting = []
        for node in remaining:
            if needs[node] <= done and all(i in done or i not in members for i in node.inputs):
                result.append(node)
                done.add(node)
            else:
                waiting.append(node)
        if len(waiting) == len(remaining):
            raise ValueError("sizes: values whose sizes depend on each other in a cycle")
        remaining = waiting
    return result


def unbound_symbols(nodes, inputs):
    """The size symbols that `nodes` state (in shapes or attributes) but no placeholder of
    `inputs` has as one of its sizes: a function of `inputs` could not read them."""
    bound = {d for node in inputs for d in node.shape if not dims.is_known(d) and d.is_Symbol}
    needed = set()
    for node in nodes:
        needed |= stated_sizes(node)
    return needed - bound
