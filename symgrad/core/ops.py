"""Every operation, one record each, and the functions users call to build them.

In: nodes (graph.py) and Python values. Out: `OPS`, a table from op name to `Op`, whose fields
are everything symgrad knows about that op, declared by keyword where the op is defined:

- `infer(inputs, attrs) -> (shape, dtype)`: the shape rule, checked at build time;
- `numpy(arrays, attrs) -> array`: the reference semantics (the interpreter runs this);
- `vjp(node, g, wanted) -> [Node | None]`: cotangents for the inputs, as graph nodes;
- `jvp(node, tangents) -> Node | None`: the tangent of the output (`linear=True` supplies it);
- `emit(code, node, out, args)`: the lowering, steps of the plan (see codegen.py's `Code`);
- traits that the later stages ask instead of keeping lists of op names: `leaf` (a value given,
  not computed: "input", "state" or "constant"), `view` (the output may be input 0's memory),
  `writes_output` (the lowering writes into memory it is given, so the value can live in the
  workspace), `free` (no work: partial evaluation rebuilds it rather than storing it; every
  view is free), `transparent` (formulas show it as its input), `plumbing` (it only
  reshapes or spreads its input's values: pictures fold it into an edge),
  `sums_to_one` (the output sums to 1 along its `axis` attribute: a fact rewrites may use),
  `lazy_read` (codegen may leave the value to the loops that use it, which then read input 0:
  that input must live as long as they do), `integer_inputs` (the positions of inputs that may
  be int64: labels, indices; every other op refuses integers), `draws` (a random draw: input 0
  is a generator's state, which each compiled call advances: random.py), `split_fixed` (where
  input 0 is fixed and the others vary, an equal node whose work on input 0 alone is a node of
  its own, which partial evaluation computes once: max pooling's routing; partial.py).

Every op is checked when it is registered (`register`): a traits combination that cannot hold
is a `TypeError` at import, not a wrong number later.

Elementwise ops are one SymPy scalar body each (scalar.py); their derivatives, NumPy form and
generated loop all come from that body. Broadcasting is explicit: the builders insert
`broadcast_to` nodes, so no gradient rule ever has to undo a broadcast.
"""
from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sympy

from . import scalar
from .dims import as_dim, compatible, is_known, may_equal
from .dims import merge as _merge_dim
from .dims import text as dim_text
from .graph import OPS, Node, ShapeError, as_node, constant, is_integer, make
from .scalar import X, Y

# The builders users call as sg.<name> (symgrad/__init__.py exports these): a new op is
# defined, and made public, in this file alone (random draws, which users call as
# sg.random.<name>, are defined in random.py, beside their generator).
__all__ = ["abs", "add", "argmax", "argmin", "avg_pool2d", "broadcast_to", "cast", "concatenate", "conv1d",
           "conv2d", "cos", "distribution", "divide", "dot", "equal", "exp", "greater",
           "greater_equal", "hard_tanh", "leaky_relu", "log", "log_softmax", "logsumexp",
           "matmul", "max", "max_pool2d", "maximum", "mean", "minimum", "multiply", "negative",
           "one_hot", "ones_like", "power", "relu", "reshape", "sigmoid", "sin", "size", "softmax", "softplus",
           "softsign", "sqrt", "square", "stop_gradient", "subtract", "sum", "take", "tanh",
           "transpose", "where", "zeros_like"]

LEAF_KINDS = ("input", "state", "constant")


@dataclass(frozen=True)
class Op:
    name: str
    infer: Callable | None = None
    numpy: Callable | None = None
    vjp: Callable | None = None
    jvp: Callable | None = None
    emit: Callable | None = None
    linear: bool = False
    body: Callable | None = None          # elementwise: attrs -> SymPy body over x0, x1, ...
    derivatives: Callable | None = None   # elementwise: attrs -> {i: d body/d x_i} overrides
    leaf: str | None = None
    view: bool = False
    writes_output: bool = False
    free: bool = False
    expands: bool = False                 # its output repeats input 0's values (im2col: each
                                          # up to kh·kw times): to keep it, keep input 0 and
                                          # compute it again (partial.py)
    transparent: bool = False
    plumbing: bool = False                # only reshapes or spreads input 0 (pictures fold it)
    sums_to_one: bool = False             # the output sums to 1 along attrs["axis"]
    lazy_read: bool = False               # codegen may leave it to its loops, which read input 0
    integer_inputs: tuple = ()            # the inputs that may be int64 (labels, indices, keys)
    draws: bool = False                   # input 0 is a generator's state (random.py): every
                                          # compiled call advances it
    split_fixed: Callable | None = None   # node -> an equal node whose work on input 0 alone
                                          # is a node of its own, or None (partial.py)
    rows: Callable | None = None          # how the examples of a batch pass through it, for
                                          # splitting a call's batch into lanes (lanes.py);
                                          # None: it mixes them (see ROWS below)

    def __post_init__(self):
        if self.linear and self.jvp is None:
            object.__setattr__(self, "jvp", _linear_jvp)
        if self.view:
            object.__setattr__(self, "free", True)
        if self.body is not None:  # every elementwise op is one loop writing its output
            object.__setattr__(self, "writes_output", True)
            object.__setattr__(self, "rows", _rows_elementwise)
        for problem in self._problems():
            raise TypeError(f"op {self.name!r}: {problem}")

    def _problems(self):
        """What this record lacks for the traits it declares (empty when it is whole)."""
        if self.leaf is not None:
            if self.leaf not in LEAF_KINDS:
                yield f"leaf must be one of {LEAF_KINDS}, not {self.leaf!r}"
            if self.numpy or self.vjp or self.jvp or self.body:
                yield "a leaf is given, not computed: it has no numpy, vjp, jvp or body"
            if self.emit is None:
                yield "a leaf needs an emit (how generated code names its value)"
            return
        for field in ("infer", "numpy", "emit"):
            if getattr(self, field) is None:
                yield f"needs `{field}` (see the fields in symgrad/core/ops.py)"
        if (self.vjp is None) != (self.jvp is None):
            yield ("has a derivative in one mode only: give both vjp and jvp (or linear=True), "
                   "or neither for an op nothing differentiates through")
        if self.view and self.writes_output:
            yield "a view shares its input's memory, so it cannot also write its own output"
        if self.plumbing and not (self.view and self.transparent):
            yield "plumbing only reshapes or spreads its input: it must be a transparent view"
        if self.sums_to_one and self.body is not None:
            yield "sums_to_one is a fact along an `axis` attribute; an elementwise op has none"
        if self.derivatives is not None and self.body is None:
            yield "`derivatives` overrides the derivatives of a `body`; it has none"


# ROWS: an op's `rows(node, axes, spread)` says where the examples of a batch are in its output,
# given where they are in its inputs: axes[i] is the axis of input i whose size counts the
# examples (c·n for a batch of n), None where input i does not depend on them; spread is that
# axis of the output's own shape, None where it has none. It returns the output's axis of
# examples (each example's output computed from that example's inputs alone, so a part of
# the batch gives that part of the output), SUMMED (a sum over the examples: the parts'
# outputs add up to the whole's), or MIXED (anything else: the batch is not split). The
# caller (lanes.py) checks an axis against `spread`.
SUMMED, MIXED = "summed", "mixed"


def _rows_elementwise(node, axes, spread):
    """Inputs broadcast against each other: the examples' axes must line up, and an input
    without them must be spread (size 1) along that axis."""
    found = set()
    for x, axis in zip(node.inputs, axes):
        lead = node.ndim - x.ndim
        if axis is not None:
            found.add(axis + lead)
        elif spread is not None and spread >= lead and x.shape[spread - lead] != 1:
            return MIXED
    return found.pop() if len(found) == 1 else MIXED


def _rows_same(node, axes, spread):
    """The identity on input 0 (a cast, a view carrying a fact)."""
    return axes[0] if axes[0] is not None else MIXED


def _rows_along(node, axes, spread):
    """An op along attrs["axis"] alone (softmax): the examples stay where they are, unless
    the op runs along them."""
    return axes[0] if axes[0] != node.attrs["axis"] else MIXED


def _rows_reduce(along):
    """A reduction along attrs["axis"]: the examples' axis shifts down past it; `along`
    where the reduction runs along them (SUMMED for a sum, MIXED for a max)."""
    def rows(node, axes, spread):
        axis, a = node.attrs["axis"], axes[0]
        return along if a == axis else a - (a > axis)
    return rows


def _rows_by_image(node, axes, spread):
    """Convolution and pooling work image by image: examples along axis 0 of every input."""
    return 0 if all(a == 0 for a in axes) else MIXED


def _whole_span(index, axis):
    """Whether a slice index takes all of `axis`."""
    _, start, stop, step = index[axis]
    return start in (None, 0) and stop is None and step in (None, 1)


def _rows_slice(node, axes, spread):
    return axes[0] if _whole_span(node.attrs["index"], axes[0]) else MIXED


def register(op):
    """Add `op` to OPS (checked when it was made); an op name is defined once."""
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is defined already; pick another name")
    OPS[op.name] = op
    return op


def fmt(shape):
    return "(" + ", ".join(dim_text(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _same_dtype(op, inputs):
    dtypes = {i.dtype for i in inputs}
    if len(dtypes) > 1:
        raise ShapeError(f"{op}: inputs have different dtypes {sorted(dtypes)}; "
                         f"convert one with sg.cast(x, dtype)")
    return dtypes.pop()


# ============================================================================ elementwise

def _infer_elementwise(name):
    def infer(inputs, attrs):
        dtype = _same_dtype(name, inputs)
        shape = None
        for node in inputs:
            if node.shape == () and node.op == "constant":
                continue  # scalar constants are folded into the loop body
            if shape is None:
                shape = list(node.shape)
                continue
            merged = [_merge_dim(a, b) for a, b in zip(shape, node.shape)]
            if len(node.shape) != len(shape) or any(m is False for m in merged):
                shapes = " and ".join(fmt(i.shape) for i in inputs)
                raise ShapeError(f"{name}: shapes {shapes} do not match",
                                 "broadcast them first, or use the operators, which broadcast")
            shape = merged
        return tuple(shape if shape is not None else ()), dtype
    return infer


def is_elementwise(node):
    return OPS[node.op].body is not None


def elementwise_body(node):
    return OPS[node.op].body(node.attrs)


def elementwise_derivative(node, i):
    """d node / d input_i as a SymPy expression over x0.. and y (the node's own output)."""
    op = OPS[node.op]
    overrides = op.derivatives(node.attrs) if op.derivatives else {}
    if i in overrides:
        return overrides[i]
    return scalar.derivative(op.body(node.attrs), X[i])


def _np_elementwise(name):
    def run(arrays, attrs):
        body = OPS[name].body(attrs)
        out = scalar.numpy_function(body, len(arrays))(*arrays)
        return out
    return run


def _emit_elementwise(code, node, out, args):
    body = elementwise_body(node)
    code.elementwise_loop(node, out, args, body)


def operand_key(node):
    """What identifies `node`'s value as an operand of an elementwise node. The operands of
    one elementwise node have one shape at call time, so two broadcasts of one source to the
    same rank are one value there (their symbolic sizes may differ: x's batch and the
    labels' batch, which the node assumes equal)."""
    return ("spread", node.inputs[0], node.ndim) if node.op == "broadcast_to" else node


def fuse(body, inputs):
    """The generic elementwise node computing `body` (over x0, x1, ..., and y meaning the
    last input) from `inputs`: scalar constants are folded into the body, repeated and unused
    inputs dropped. The one constructor of bodies built by differentiation and rewriting.

    Repeated inputs become one symbol, unless that makes an operand the body reads cancel
    out (x - x, or 0 · (x - x) · f(y)): op by op, those give NaN where x or f(y) is NaN or
    infinite, so the repeats then stay apart (and SymPy cannot cancel them)."""
    numbers, repeats, kept, position, read = {}, {}, [], {}, set()
    names = {s.name for s in body.free_symbols}
    for i, node in enumerate(inputs):
        sym = X[i]
        key = operand_key(node)
        if node.op == "constant" and node.shape == ():
            numbers[sym] = scalar.number(node.attrs["value"])
            continue
        if sym.name in names:
            read.add(key)
        if key in position:
            repeats[sym] = position[key]
        else:
            position[key] = sym
            kept.append((sym, node))
    merged = body.xreplace({**numbers, **repeats})
    used = {s.name for s in merged.free_symbols}
    if any(position[key].name not in used for key in read):  # a repeat cancelled
        kept = [(X[i], node) for i, node in enumerate(inputs) if X[i] not in numbers]
        merged = body.xreplace(numbers)
        used = {s.name for s in merged.free_symbols}
    body = merged
    kept = [(s, n) for s, n in kept if s.name in used]
    if not kept:
        # the body is a number: a constant broadcast to the shape of the inputs
        full = builtins.max(inputs, key=lambda node: node.ndim)
        return broadcast_to(constant(np.asarray(scalar.value_of(body), full.dtype)), full.shape)
    renaming = {s: X[k] for k, (s, _) in enumerate(kept)}
    body = body.xreplace(renaming)
    nodes = [n for _, n in kept]
    if body == X[0] and len(nodes) == 1:
        return nodes[0]
    return make("elementwise", nodes, {"body": body})


def _with_output(expr, node):
    """Substitute the output symbol y by an extra operand after the node's inputs."""
    return expr.xreplace({Y: X[len(node.inputs)]}), list(node.inputs) + [node]


def _masked_body(condition, value, taken):
    """where(condition, value, 0) if `taken`, else where(condition, 0, value)."""
    return scalar.select(condition, value, 0) if taken else scalar.select(condition, 0, value)


def _masked(g):
    """(condition, value, taken) where cotangent `g` is _masked_body(condition, value, taken),
    as the gradient of `where` is; else None."""
    if not is_elementwise(g) or not isinstance(elementwise_body(g), scalar.select):
        return None
    c, a, b = elementwise_body(g).args
    for value, zero, taken in ((a, b, True), (b, a, False)):
        if c.is_Symbol and value.is_Symbol and zero == 0:
            return g.inputs[int(c.name[1:])], g.inputs[int(value.name[1:])], taken
    return None


def _vjp_elementwise(node, g, wanted):
    """Cotangents g·∂node/∂x_i. The zeros of `where`'s gradient are structural: where g is
    where(c, h, 0), the cotangent is where(c, h·∂node/∂x_i, 0), so a partial derivative that is
    inf or NaN in the branch not taken (d log(x)/dx at 0 in where(x > 0, log(x), 0)) never
    meets them. Interpreter and compiled code evaluate this same graph."""
    grads = []
    mask = _masked(g)
    for i, want in enumerate(wanted):
        if not want:
            grads.append(None)
            continue
        d = elementwise_derivative(node, i)
        if d == 0:
            grads.append(None)
            continue
        expr, inputs = _with_output(d, node)
        n = len(inputs)
        if mask is not None:
            condition, value, taken = mask
            grads.append(fuse(_masked_body(X[n], X[n + 1] * expr, taken),
                              inputs + [condition, value]))
        elif isinstance(expr, scalar.select) and expr.args[1:] in ((1, 0), (0, 1)):
            # the gradient of where itself: the cotangent masked, where(c, g, 0) or where(c, 0, g)
            grads.append(fuse(_masked_body(expr.args[0], X[n], expr.args[1] == 1), inputs + [g]))
        else:
            grads.append(fuse(X[n] * expr, inputs + [g]))
    return grads


def _jvp_elementwise(node, tangents):
    terms, inputs = 0, list(node.inputs) + [node]
    for i, t in enumerate(tangents):
        if t is None:
            continue
        d = elementwise_derivative(node, i)
        if d == 0:
            continue
        t_sym = X[len(inputs)]
        inputs.append(t)
        terms = terms + t_sym * d.xreplace({Y: X[len(node.inputs)]})
    if terms == 0:
        return None
    return fuse(terms, inputs)


def _elementwise_op(name, body, derivatives=None):
    return register(Op(name, infer=_infer_elementwise(name), numpy=_np_elementwise(name),
                       vjp=_vjp_elementwise, jvp=_jvp_elementwise, emit=_emit_elementwise,
                       body=body, derivatives=derivatives))


x0, x1, x2 = X[0], X[1], X[2]
_elementwise_op("elementwise", lambda a: a["body"])
_elementwise_op("add", lambda a: x0 + x1)
_elementwise_op("subtract", lambda a: x0 - x1)
_elementwise_op("multiply", lambda a: x0 * x1)
_elementwise_op("divide", lambda a: x0 / x1)
_elementwise_op("power", lambda a: x0 ** x1)
_elementwise_op("negative", lambda a: -x0)
_elementwise_op("exp", lambda a: sympy.exp(x0), lambda a: {0: Y})
_elementwise_op("log", lambda a: sympy.log(x0))
_elementwise_op("tanh", lambda a: sympy.tanh(x0), lambda a: {0: 1 - Y ** 2})
_elementwise_op("sigmoid", lambda a: scalar.sigmoid(x0), lambda a: {0: Y * (1 - Y)})
_elementwise_op("relu", lambda a: sympy.Max(x0, 0), lambda a: {0: scalar.gt(Y, 0)})
_elementwise_op("leaky_relu",
                lambda a: scalar.select(scalar.gt(x0, 0), x0, sympy.Float(a["alpha"]) * x0))
_elementwise_op("softplus", lambda a: scalar.softplus(x0))
# hard tanh (Goodfellow et al. §6.3.3): tanh's shape, cut to straight lines; gradient 1
# inside (-1, 1) and 0 outside
_elementwise_op("hard_tanh", lambda a: sympy.Max(-1, sympy.Min(1, x0)))
_elementwise_op("softsign", lambda a: scalar.softsign(x0),
                lambda a: {0: 1 / (1 + sympy.Abs(x0)) ** 2})
_elementwise_op("abs", lambda a: sympy.Abs(x0))
_elementwise_op("sin", lambda a: sympy.sin(x0))
_elementwise_op("cos", lambda a: sympy.cos(x0))
_elementwise_op("sqrt", lambda a: sympy.sqrt(x0), lambda a: {0: 1 / (2 * Y)})
_elementwise_op("square", lambda a: x0 ** 2)
# Where the operands tie, maximum's and minimum's gradient is split evenly between them (as
# JAX does, and as the max reduction splits among ties); relu'(0) = 0 by convention.
_elementwise_op("maximum", lambda a: sympy.Max(x0, x1),
                lambda a: {0: scalar.gt(x0, x1) + scalar.eq(x0, x1) / 2,
                           1: scalar.gt(x1, x0) + scalar.eq(x0, x1) / 2})
_elementwise_op("minimum", lambda a: sympy.Min(x0, x1),
                lambda a: {0: scalar.gt(x1, x0) + scalar.eq(x0, x1) / 2,
                           1: scalar.gt(x0, x1) + scalar.eq(x0, x1) / 2})
_elementwise_op("greater", lambda a: scalar.gt(x0, x1))
_elementwise_op("greater_equal", lambda a: 1 - scalar.gt(x1, x0))
_elementwise_op("equal", lambda a: scalar.eq(x0, x1))
_elementwise_op("where", lambda a: scalar.select(x0, x1, x2))


# ============================================================================ helpers

def _linear_jvp(node, tangents):
    """Tangent of a linear op: the op itself applied to the tangents (zeros where absent)."""
    if all(t is None for t in tangents):
        return None
    inputs = [t if t is not None else zeros_like(node.inputs[i]) for i, t in enumerate(tangents)]
    return make(node.op, inputs, node.attrs)


def _runtime_dims(node, name):
    """The sizes of `node`'s array `name` as code: ints where known, `name.shape[d]` if not."""
    return [d if is_known(d) else f"{name}.shape[{k}]" for k, d in enumerate(node.shape)]


def _product(dims):
    dims = [str(d) for d in dims]
    return " * ".join(dims) if dims else "1"


def _axis_split(node, name, axis):
    dims = _runtime_dims(node, name)
    return _product(dims[:axis]), str(dims[axis]), _product(dims[axis + 1:])


def _normalize_axis(axis, ndim, op):
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{op}: axis {axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def _normalize_axes(axis, ndim, op):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = tuple(sorted({_normalize_axis(int(a), ndim, op) for a in axes}))
    return axes


# ============================================================================ leaves

def _no_infer(inputs, attrs):
    raise AssertionError("leaves are built by placeholder/Variable/constant")


def _emit_leaf(code, node, out, args):
    code.leaf(node, out)


for _leaf, _kind in (("placeholder", "input"), ("variable", "state"), ("constant", "constant")):
    register(Op(_leaf, infer=_no_infer, emit=_emit_leaf, leaf=_kind))


# ============================================================================ structure

def _infer_broadcast(inputs, attrs):
    """The target shape; each axis of the input is 1 (spread) or the target's size."""
    x, shape = inputs[0], tuple(attrs["shape"])
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ShapeError(f"broadcast_to: cannot broadcast {fmt(x.shape)} to fewer dimensions {fmt(shape)}")
    for d, t in zip(x.shape, shape[lead:]):
        if not (d == 1 or _merge_dim(d, t) is not False):
            raise ShapeError(f"broadcast_to: cannot broadcast {fmt(x.shape)} to {fmt(shape)}")
    return shape, x.dtype


def _rows_broadcast(node, axes, spread):
    """The input's examples move right by the axes added in front; a value without them,
    spread over a batch, is the same for every example."""
    return spread if axes[0] is None else axes[0] + node.ndim - node.inputs[0].ndim


def _vjp_broadcast(node, g, wanted):
    x = node.inputs[0]
    lead = node.ndim - x.ndim
    axes = [k for k in range(node.ndim)
            if k < lead or (x.shape[k - lead] == 1 and node.shape[k] != 1)]
    summed = sum(g, axis=tuple(axes)) if axes else g
    return [reshape(summed, x.shape)]


def _emit_broadcast(code, node, out, args):
    x, lead = node.inputs[0], node.ndim - node.inputs[0].ndim
    # a size the input has (not spread) is read from it; the others are known, or worked
    # out from the call's sizes (Code.size)
    dims = [f"{args[0]}.shape[{k - lead}]" if k >= lead and not is_known(x.shape[k - lead])
            and x.shape[k - lead] == t else code.size(t) for k, t in enumerate(node.shape)]
    code.spread_dims[out] = dims
    code.broadcast(node, out, args[0], dims)


register(Op("broadcast_to", infer=_infer_broadcast,
            numpy=lambda arrays, attrs: np.broadcast_to(arrays[0], attrs["shape"]),
            vjp=_vjp_broadcast, linear=True, emit=_emit_broadcast, view=True, transparent=True,
            plumbing=True, rows=_rows_broadcast))


def _infer_reshape(inputs, attrs):
    """The target shape, if it may hold as many elements as the input (sizes known only at
    call time are checked then)."""
    x, shape = inputs[0], tuple(attrs["shape"])
    if not may_equal(math.prod(x.shape), math.prod(shape)):
        raise ShapeError(f"reshape: cannot reshape {fmt(x.shape)} ({dim_text(math.prod(x.shape))} "
                         f"elements) to {fmt(shape)} ({dim_text(math.prod(shape))} elements)")
    return shape, x.dtype


def _emit_reshape(code, node, out, args):
    x = node.inputs[0]
    same = {d: f"{args[0]}.shape[{k}]" for k, d in enumerate(x.shape) if not is_known(d)}
    target = [same.get(d) or code.size(d) for d in node.shape]
    code.line(f"{out} = {args[0]}.reshape({code.shape(target)})")


register(Op("reshape", infer=_infer_reshape,
            numpy=lambda arrays, attrs: arrays[0].reshape(attrs["shape"]),
            vjp=lambda node, g, wanted: [reshape(g, node.inputs[0].shape)],
            linear=True, emit=_emit_reshape, view=True, transparent=True, plumbing=True,
            # (C order keeps each example's elements together where both shapes lead with
            # the examples: (N, 16, 5, 5) as (N, 400), (N·P, K) as (N, P·K))
            rows=lambda node, axes, spread: 0 if axes[0] == 0 and spread == 0 else MIXED))


def _inverse_permutation(perm):
    """The axes that undo `perm`, as Python ints (they are printed into generated steps)."""
    return tuple(int(p) for p in np.argsort(perm))


def _infer_transpose(inputs, attrs):
    x, perm = inputs[0], attrs["perm"]
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"transpose: axes {perm} are not a permutation of {x.ndim} dimensions")
    return tuple(x.shape[p] for p in perm), x.dtype


def _emit_transpose(code, node, out, args):
    if node.attrs["perm"] == (1, 0) and code.consumed_only_by(out, lambda user: user.op == "matmul"):
        code.line(f"{out} = {args[0]}.T  # a view: BLAS reads it transposed, no copy")
        code.decide("transpose_view", out, f"= {args[0]}.T, read by matrix products as a view")
    elif not code.read_transposed(node, out, args[0], node.attrs["perm"]):
        dims = _runtime_dims(node.inputs[0], args[0])
        runs, perm = _axis_runs(node.attrs["perm"])
        code.line(f"{out} = {code.alloc(node, out, [dims[p] for p in node.attrs['perm']])}")
        if len(runs) == node.ndim:
            code.call(f"kernels.copy_view({{0}}.transpose({perm}), {{1}})", args[0], out)
            return
        # axes that stay side by side copy as one: (N, O, H, W) -> (N, H, W, O) is (N, O, H·W)
        # -> (N, H·W, O), whose planes are H·W rows long, not W
        merged = [_product(dims[a] for a in run) for run in runs]
        code.call(f"kernels.copy_view({{0}}.transpose({perm}), {{1}})",
                  f"{args[0]}.reshape({', '.join(merged)})",
                  f"{out}.reshape({', '.join(merged[k] for k in perm)})")


def _axis_runs(perm):
    """The source axes of a transpose by `perm` in runs that stay side by side, in order (for
    (0, 2, 3, 1): [0], [1], [2, 3]), and the permutation of the runs ((0, 2, 1))."""
    runs = []  # in output order
    for axis in perm:
        if runs and runs[-1][-1] + 1 == axis:
            runs[-1].append(axis)
        else:
            runs.append([axis])
    by_source = sorted(runs)
    return by_source, tuple(by_source.index(run) for run in runs)


register(Op("transpose", infer=_infer_transpose,
            numpy=lambda arrays, attrs: np.transpose(arrays[0], attrs["perm"]),
            vjp=lambda node, g, wanted: [transpose(g, _inverse_permutation(node.attrs["perm"]))],
            linear=True, emit=_emit_transpose, view=True,
            rows=lambda node, axes, spread: node.attrs["perm"].index(axes[0])))


def _slices(index):
    return tuple(slice(*s[1:]) for s in index)


def _slice_text(index):
    def part(v):
        return "" if v is None else str(v)
    return ", ".join(f"{part(s[1])}:{part(s[2])}" + (f":{s[3]}" if s[3] is not None else "")
                     for s in index)


def _infer_slice(inputs, attrs):
    x, index = inputs[0], _slices(attrs["index"])
    if len(index) != x.ndim:
        raise ShapeError(f"slice: {len(index)} indices for an array of {x.ndim} dimensions")
    return tuple(_window_length(s, d) for d, s in zip(x.shape, index)), x.dtype


def _window_length(s, d):
    """The length of slice `s` of an axis of size `d`. Where `d` is known only at call time:
    a number where the length does not depend on it as long as the axis holds the window
    (x[2:5], x[-3:], x[k] as x[k:k+1]; a call whose axis is too short is refused, as NumPy
    refuses x[k] there), else an expression in `d` that is exactly Python's slice length."""
    if is_known(d):
        return len(range(*s.indices(d)))
    start, stop, step = s.start, s.stop, s.step or 1
    if step == 1 and (start or 0) >= 0 and stop is not None and stop >= (start or 0):
        return stop - (start or 0)
    if step == 1 and start is not None and start < 0 and (stop is None or start <= stop < 0):
        return (0 if stop is None else stop) - start
    if step == 1 and (start or 0) >= 0 and stop is None:
        return as_dim(sympy.Max(d - (start or 0), 0))
    if step > 0:
        low = 0 if start is None else sympy.Max(d + start, 0) if start < 0 else sympy.Min(start, d)
        high = d if stop is None else sympy.Max(d + stop, 0) if stop < 0 else sympy.Min(stop, d)
        span, stride = high - low, step
    else:
        low = d - 1 if start is None else sympy.Max(d + start, -1) if start < 0 else sympy.Min(start, d - 1)
        high = -1 if stop is None else sympy.Max(d + stop, -1) if stop < 0 else sympy.Min(stop, d - 1)
        span, stride = low - high, -step
    return as_dim(sympy.Max(span if stride == 1 else sympy.floor((span + stride - 1) / stride), 0))


def _emit_slice(code, node, out, args):
    index = node.attrs["index"]
    # Read in place by elementwise loops when every start is known: element i of axis d is
    # at start + step * i of the input.
    starts = [s[1] or 0 for s in index]
    steps = [s[3] or 1 for s in index]
    if all(isinstance(a, int) and a >= 0 for a in starts) and all(t > 0 for t in steps):
        if code.read_in_place(node, out, args[0], list(zip(starts, steps))):
            return
    code.line(f"{out} = step.new(step.window_shape({args[0]}, {tuple(index)!r}), {node.dtype!r})")
    code.call(f"kernels.copy_view({{0}}[{_slice_text(index)}], {{1}})", args[0], out)


register(Op("slice", infer=_infer_slice,
            numpy=lambda arrays, attrs: arrays[0][_slices(attrs["index"])],
            vjp=lambda node, g, wanted: [make("unslice", [g], {"index": node.attrs["index"],
                                                                "shape": node.inputs[0].shape})],
            linear=True, emit=_emit_slice, view=True, rows=_rows_slice))


def _infer_unslice(inputs, attrs):
    """The shape of the array the slice was taken from; the slice of it must have the shape
    of the gradient placed into it."""
    g, shape = inputs[0], tuple(attrs["shape"])
    for d, s, gd in zip(shape, _slices(attrs["index"]), g.shape):
        if not may_equal(_window_length(s, d), gd):
            raise ShapeError(f"unslice: a slice [{_slice_text(attrs['index'])}] of {fmt(shape)} "
                             f"does not have the gradient's shape {fmt(g.shape)}")
    return shape, g.dtype


def _np_unslice(arrays, attrs):
    out = np.zeros(attrs["shape"], arrays[0].dtype)
    out[_slices(attrs["index"])] = arrays[0]
    return out


def _emit_unslice(code, node, out, args):
    index = node.attrs["index"]
    # Read in place by elementwise loops when every start is known and every step is 1:
    # element i of axis d is g[i - start] inside [start, start + g's length) and 0 outside
    # (the window's end may be a size known at run time: x[1:] of an x of any length).
    starts = [s[1] or 0 for s in index]
    windows = [(a, a + d) for a, d in zip(starts, node.inputs[0].shape)]
    if all(s[3] in (None, 1) for s in index) and all(isinstance(a, int) and a >= 0 for a in starts):
        if code.read_padded(node, out, args[0], windows):
            return
    code.line(f"{out} = step.new({code.shape([code.size(d) for d in node.shape])}, {node.dtype!r})")
    code.call("kernels.fill({0}, 0)", out)
    code.call(f"kernels.copy_view({{0}}, {{1}}[{_slice_text(node.attrs['index'])}])", args[0], out)


register(Op("unslice", infer=_infer_unslice, numpy=_np_unslice,
            vjp=lambda node, g, wanted: [make("slice", [g], {"index": node.attrs["index"]})],
            linear=True, emit=_emit_unslice, lazy_read=True, rows=_rows_slice))


def _infer_concatenate(inputs, attrs):
    axis = attrs["axis"]
    first = inputs[0]
    dtype = _same_dtype("concatenate", inputs)
    for node in inputs[1:]:
        same = node.ndim == first.ndim and all(
            k == axis or _merge_dim(a, b) is not False for k, (a, b) in enumerate(zip(first.shape, node.shape)))
        if not same:
            raise ShapeError(f"concatenate: shapes {fmt(first.shape)} and {fmt(node.shape)} differ "
                             f"outside axis {axis}")
    sizes = [n.shape[axis] for n in inputs]
    shape = list(first.shape)
    shape[axis] = builtins.sum(sizes)
    return tuple(shape), dtype


def _vjp_concatenate(node, g, wanted):
    axis, grads, start = node.attrs["axis"], [], 0
    for node_in, want in zip(node.inputs, wanted):
        size = node_in.shape[axis]
        if not is_known(size):
            raise ShapeError("concatenate: the gradient needs the sizes along the joined axis to be known")
        if want:
            index = [slice(None)] * node.ndim
            index[axis] = slice(start, start + size)
            grads.append(make("slice", [g], {"index": tuple(index)}))
        else:
            grads.append(None)
        start += size
    return grads


def _emit_concatenate(code, node, out, args):
    axis = node.attrs["axis"]
    dims = _runtime_dims(node.inputs[0], args[0])
    dims[axis] = " + ".join(f"{a}.shape[{axis}]" for a in args)
    joined = ", ".join(f"{{{k}}}" for k in range(len(args)))
    code.compute(node, out, dims, f"kernels.copy(np.concatenate(({joined},), axis={axis}), {{{len(args)}}})", *args)


register(Op("concatenate", infer=_infer_concatenate,
            numpy=lambda arrays, attrs: np.concatenate(arrays, axis=attrs["axis"]),
            vjp=_vjp_concatenate, linear=True, emit=_emit_concatenate,
            rows=lambda node, axes, spread: axes[0] if len(set(axes)) == 1 and
            axes[0] not in (None, node.attrs["axis"]) else MIXED))


def _infer_cast(inputs, attrs):
    return inputs[0].shape, attrs["dtype"]


register(Op("cast", infer=_infer_cast,
            numpy=lambda arrays, attrs: arrays[0].astype(attrs["dtype"]),
            # (integers, in or out, carry no derivative: labels and indices are data)
            vjp=lambda node, g, wanted: [None if is_integer(node.inputs[0]) or is_integer(node)
                                         else cast(g, node.inputs[0].dtype)],
            jvp=lambda node, tangents: None if tangents[0] is None or is_integer(node)
            else cast(tangents[0], node.dtype),
            emit=lambda code, node, out, args: code.compute(node, out, _runtime_dims(node, args[0]),
                                                            "kernels.copy({0}, {1})", args[0]),
            transparent=True, integer_inputs=(0,), rows=_rows_same))

register(Op("stop_gradient", infer=lambda inputs, attrs: (inputs[0].shape, inputs[0].dtype),
            numpy=lambda arrays, attrs: arrays[0], vjp=lambda node, g, wanted: [None],
            jvp=lambda node, tangents: None,
            emit=lambda code, node, out, args: code.line(f"{out} = {args[0]}"),
            view=True, transparent=True, rows=_rows_same))


def _check_cotangents(cotangents, inputs):
    cotangents = list(cotangents)
    if len(cotangents) != len(inputs):
        raise ValueError(f"with_gradient: vjp returned {len(cotangents)} cotangents for "
                         f"{len(inputs)} inputs; return one per input (None for none)")
    checked = []
    for k, (c, x) in enumerate(zip(cotangents, inputs)):
        if c is not None:
            c = as_node(c)
            if not compatible(c.shape, x.shape):
                raise ShapeError(f"with_gradient: the cotangent for input {k} has shape "
                                 f"{fmt(c.shape)}, but the input has {fmt(x.shape)}")
        checked.append(c)
    return checked


def _vjp_custom(node, g, wanted):
    inputs = node.inputs[1:]
    return [None] + _check_cotangents(node.attrs["vjp"](g), inputs)


def _jvp_custom(node, tangents):
    jvp = node.attrs["jvp"]
    if jvp is None:
        raise NotImplementedError(
            "with_gradient: forward mode (sg.jvp, and forward-over-reverse Hessian-vector "
            "products) needs the tangent rule too: with_gradient(value, inputs, vjp, jvp=...)")
    if all(t is None for t in tangents[1:]):
        return None
    given = [t if t is not None else zeros_like(x) for t, x in zip(tangents[1:], node.inputs[1:])]
    return as_node(jvp(*given), like=node)


# The identity on its first input, whose derivatives with respect to the other inputs are the
# user's rules (extend.with_gradient): nothing flows back into the value's own graph.
register(Op("custom_gradient",
            infer=lambda inputs, attrs: (inputs[0].shape, inputs[0].dtype),
            numpy=lambda arrays, attrs: arrays[0],
            vjp=_vjp_custom, jvp=_jvp_custom,
            emit=lambda code, node, out, args: code.line(f"{out} = {args[0]}"),
            view=True, transparent=True, rows=_rows_same))


def with_gradient(value, inputs, vjp, jvp=None):
    """`value`, whose derivative with respect to `inputs` is `vjp` instead of what
    differentiating `value`'s own graph gives: vjp(g) -> one cotangent node (or None) per
    input, for the cotangent g of `value`. jvp(*tangents) -> the tangent of `value`, for
    forward mode (which fails with a clear error without it).
    The derivative rules are graph expressions, so they are differentiated again as usual.

    Gradient clipping: with_gradient(x, [x], lambda g: [sg.minimum(sg.maximum(g, -1), 1)]).
    A straight-through estimator: with_gradient(sg.greater(x, 0), [x], lambda g: [g])."""
    value = as_node(value)
    inputs = [as_node(x) for x in inputs]
    return make("custom_gradient", [value] + inputs, {"vjp": vjp, "jvp": jvp})


def _infer_distribution(inputs, attrs):
    x = inputs[0]
    if not 0 <= attrs["axis"] < x.ndim:
        raise ShapeError(f"distribution: axis {attrs['axis']} is out of range for shape {fmt(x.shape)}")
    return x.shape, x.dtype


def distribution_tolerance(dtype):
    """How far from 1 a declared distribution's sums may be: rounding of a sum of one-hot or
    smoothed rows stays far below it; masked (zero) or unnormalised rows are far above it."""
    return float(np.sqrt(np.finfo(dtype).eps))


def _distribution_message(attrs, dtype):
    return (f"distribution: the values do not sum to 1 along axis {attrs['axis']} (within "
            f"{distribution_tolerance(dtype):.1e}) in every slice; declare only one-hot or "
            f"probability rows (for masked or unnormalised labels call "
            f"softmax_cross_entropy with labels_sum_to_one=False)")


def _np_distribution(arrays, attrs):
    x = arrays[0]
    with np.errstate(invalid="ignore"):
        sums = np.sum(x, axis=attrs["axis"], dtype=np.float64)
        if not np.all(np.abs(sums - 1.0) <= distribution_tolerance(x.dtype)):
            raise ValueError(_distribution_message(attrs, x.dtype))
    return x


def _emit_distribution(code, node, out, args):
    a, r, b = _axis_split(node.inputs[0], args[0], node.attrs["axis"])
    tolerance = distribution_tolerance(node.dtype)
    code.check(f"kernels.distribution_violation({{0}}, {{1}}, {{2}}, {{3}}, {tolerance!r}) < 0",
               [f"{args[0]}.reshape(-1)", a, r, b], _distribution_message(node.attrs, node.dtype))
    code.line(f"{out} = {args[0]}")


# The identity, carrying a fact for the simplifier: x sums to 1 along `axis`. The fact is
# checked on every call (compiled and interpreted alike), so a rewrite that uses it can never
# give a wrong number for data that breaks it.
register(Op("distribution", infer=_infer_distribution, numpy=_np_distribution,
            vjp=lambda node, g, wanted: [g],
            # not `linear`: a tangent of a distribution sums to 0, so it must not carry the fact
            jvp=lambda node, tangents: tangents[0],
            emit=_emit_distribution, view=True, transparent=True,
            sums_to_one=True, rows=_rows_along))


def _emit_size(code, node, out, args):
    code.line(f"{out} = step.new((1,), {node.dtype!r})")
    code.call("kernels.fill({0}, {1})", out, code.size(math.prod(node.attrs["sizes"])))


# The number of elements `sizes` hold, sizes known only at call time among them (the count
# a mean over an unknown batch divides by): it has no inputs, only the call's sizes.
register(Op("size", infer=lambda inputs, attrs: ((), attrs["dtype"]),
            numpy=lambda arrays, attrs: np.asarray(math.prod(attrs["sizes"]), attrs["dtype"]),
            emit=_emit_size, free=True))


# ============================================================================ matmul

def _infer_matmul(inputs, attrs):
    a, b = inputs
    dtype = _same_dtype("matmul", inputs)
    if a.ndim != 2 or b.ndim != 2 or _merge_dim(a.shape[1], b.shape[0]) is False:
        raise ShapeError(f"matmul: shapes {fmt(a.shape)} and {fmt(b.shape)} are not aligned "
                         f"({a.shape[-1] if a.ndim else '?'} != {b.shape[0] if b.ndim else '?'})")
    return (a.shape[0], b.shape[1]), dtype


def _vjp_matmul(node, g, wanted):
    a, b = node.inputs
    return [matmul(g, transpose(b)) if wanted[0] else None,
            matmul(transpose(a), g) if wanted[1] else None]


def _jvp_matmul(node, tangents):
    a, b = node.inputs
    ta, tb = tangents
    terms = ([matmul(ta, b)] if ta is not None else []) + ([matmul(a, tb)] if tb is not None else [])
    return add(*terms) if len(terms) == 2 else terms[0]


def _emit_matmul(code, node, out, args):
    a, b = node.inputs
    dims = [_runtime_dims(a, args[0])[0], _runtime_dims(b, args[1])[1]]
    code.compute(node, out, dims, "kernels.product({0}, {1}, {2})", args[0], args[1])


# Examples along the rows of a (or the columns of b) stay there; along a's columns and b's
# rows they are summed over.
_MATMUL_ROWS = {(0, None): 0, (None, 1): 1, (1, 0): SUMMED}

register(Op("matmul", infer=_infer_matmul, numpy=lambda arrays, attrs: arrays[0] @ arrays[1],
            vjp=_vjp_matmul, jvp=_jvp_matmul, emit=_emit_matmul, writes_output=True,
            rows=lambda node, axes, spread: _MATMUL_ROWS.get(tuple(axes), MIXED)))


# ============================================================================ reductions

def _infer_reduce(name):
    def infer(inputs, attrs):
        x = inputs[0]
        axis = attrs["axis"]
        if not 0 <= axis < x.ndim:
            raise ShapeError(f"{name}: axis {axis} is out of range for shape {fmt(x.shape)}")
        return x.shape[:axis] + x.shape[axis + 1:], x.dtype
    return infer


def _emit_reduce(kernel):
    """Emit a call of kernels.<kernel> on the input viewed as (before, axis, after)."""
    def emit(code, node, out, args):
        x = node.inputs[0]
        axis = node.attrs["axis"]
        a, r, b = _axis_split(x, args[0], axis)
        out_dims = [d for k, d in enumerate(_runtime_dims(x, args[0])) if k != axis]
        code.line(f"{out} = {code.alloc(node, out, out_dims)}")
        code.call(f"kernels.{kernel}({{0}}, {{1}}, {{2}}, {{3}}, {{4}})", f"{args[0]}.reshape(-1)", a, r, b,
                  f"{out}.reshape(({a}, {b}))")
    return emit


def _expand(g, node):
    """`g`, the cotangent of a reduction along `axis`, broadcast back to the input's shape."""
    x, axis = node.inputs[0], node.attrs["axis"]
    kept = g.shape[:axis] + (1,) + g.shape[axis:]
    return broadcast_to(reshape(g, kept), x.shape)


register(Op("sum", infer=_infer_reduce("sum"),
            numpy=lambda arrays, attrs: np.sum(arrays[0], axis=attrs["axis"]),
            vjp=lambda node, g, wanted: [_expand(g, node)], linear=True,
            emit=_emit_reduce("sum_axis"), writes_output=True, rows=_rows_reduce(SUMMED)))


def _max_mask(node):
    """Where x attains its max along the axis, split evenly among ties (as JAX does)."""
    x, axis = node.inputs[0], node.attrs["axis"]
    hit = equal(x, _expand(node, node))
    return hit / _expand(make("sum", [hit], {"axis": axis}), node)


register(Op("max", infer=_infer_reduce("max"),
            # (the max of nothing is -inf, max's identity, as in the kernel)
            numpy=lambda arrays, attrs: np.max(arrays[0], axis=attrs["axis"], initial=-np.inf),
            vjp=lambda node, g, wanted: [multiply(_expand(g, node), _max_mask(node))],
            jvp=lambda node, tangents: make("sum", [multiply(tangents[0], _max_mask(node))],
                                            {"axis": node.attrs["axis"]}),
            emit=_emit_reduce("max_axis"), writes_output=True, rows=_rows_reduce(MIXED)))


def _np_max_and_log_sum(x, axis):
    """(m, s) with keepdims, as kernels._max_and_log_sum: m the max (0 where it is not finite),
    s = log Σ exp(x - m)."""
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore", over="ignore"):
        return m, np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _np_logsumexp(x, axis):
    m, s = _np_max_and_log_sum(x, axis)
    return np.squeeze(m + s, axis)


register(Op("logsumexp", infer=_infer_reduce("logsumexp"),
            numpy=lambda arrays, attrs: _np_logsumexp(arrays[0], attrs["axis"]),
            vjp=lambda node, g, wanted: [multiply(_expand(g, node), softmax(node.inputs[0], node.attrs["axis"]))],
            jvp=lambda node, tangents: make("sum", [multiply(tangents[0], softmax(node.inputs[0], node.attrs["axis"]))],
                                            {"axis": node.attrs["axis"]}),
            emit=_emit_reduce("logsumexp_axis"), writes_output=True, rows=_rows_reduce(MIXED)))


def _infer_same(name):
    def infer(inputs, attrs):
        x = inputs[0]
        if not 0 <= attrs["axis"] < x.ndim:
            raise ShapeError(f"{name}: axis {attrs['axis']} is out of range for shape {fmt(x.shape)}")
        return x.shape, x.dtype
    return infer


def _emit_along_axis(kernel):
    def emit(code, node, out, args):
        a, r, b = _axis_split(node.inputs[0], args[0], node.attrs["axis"])
        code.line(f"{out} = {code.alloc(node, out, _runtime_dims(node, args[0]))}")
        code.call(f"kernels.{kernel}({{0}}, {{1}}, {{2}}, {{3}}, {{4}})", f"{args[0]}.reshape(-1)", a, r, b,
                  f"{out}.reshape(({a}, {r}, {b}))")
    return emit


def _np_log_softmax(x, axis):
    # (x - m) - s: subtracting m + s at once would round away the digits of s where |m| is
    # large (float32 logits of -1e4)
    m, s = _np_max_and_log_sum(x, axis)
    return (x - m) - s


def _vjp_softmax(node, g, wanted):
    axis = node.attrs["axis"]
    return [node * (g - sum(g * node, axis=axis, keepdims=True))]


def _jvp_softmax(node, tangents):
    return _vjp_softmax(node, tangents[0], (True,))[0]  # the Jacobian is symmetric


register(Op("softmax", infer=_infer_same("softmax"),
            numpy=lambda arrays, attrs: np.exp(_np_log_softmax(arrays[0], attrs["axis"])),
            vjp=_vjp_softmax, jvp=_jvp_softmax, emit=_emit_along_axis("softmax_axis"),
            writes_output=True, sums_to_one=True, rows=_rows_along))


def _vjp_log_softmax(node, g, wanted):
    axis = node.attrs["axis"]
    return [g - softmax(node.inputs[0], axis) * sum(g, axis=axis, keepdims=True)]


def _jvp_log_softmax(node, tangents):
    axis, t = node.attrs["axis"], tangents[0]
    return t - sum(softmax(node.inputs[0], axis) * t, axis=axis, keepdims=True)


register(Op("log_softmax", infer=_infer_same("log_softmax"),
            numpy=lambda arrays, attrs: _np_log_softmax(arrays[0], attrs["axis"]),
            vjp=_vjp_log_softmax, jvp=_jvp_log_softmax, emit=_emit_along_axis("log_softmax_axis"),
            writes_output=True, rows=_rows_along))


# ============================================================================ convolution

# NCHW: x is (batch, channels, height, width), a filter bank (out channels, in channels,
# kernel height, kernel width). Attributes are pairs of ints: window (kh, kw), stride (sh, sw),
# padding (ph, pw) of zeros on each side, and for ops that produce an image, its (C, H, W) or
# (H, W). A convolution is not an op: sg.conv2d builds it from im2col, matmul and layout ops,
# so its gradients, and theirs, come from those. Pooling ops are linear (average) or linear
# between the points where a window's maximum changes hands (max): avg_pool2d's vjp is
# avg_pool2d_grad and back; max_pool2d routes its cotangent to where each window attains its
# maximum (max_pool2d_grad) and its tangent is read from there (max_pool2d_select), a
# cotangent or tangent split evenly among tied maxima, as the max reduction does.

def _pair(value, name, op):
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ShapeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in pair)


def _out_size(op, axis, n, k, s, p):
    """(n + 2p - k) // s + 1, the number of windows along an axis, checked."""
    if s < 1 or p < 0 or k < 1:
        raise ShapeError(f"{op}: stride must be >= 1, padding >= 0 and the window >= 1 "
                         f"along {axis}, got stride {s}, padding {p}, window {k}")
    size = (n + 2 * p - k) // s + 1
    if size < 1:
        raise ShapeError(f"{op}: no window fits along {axis}: (n + 2p - k) // s + 1 = "
                         f"({n} + 2·{p} - {k}) // {s} + 1 = {size}",
                         "pad the input, or use a smaller window")
    return size


def _image(op, x, what="input"):
    """The (C, H, W) of a 4-d NCHW value, known sizes required (the batch may be unknown)."""
    if x.ndim != 4 or not all(is_known(d) for d in x.shape[1:]):
        raise ShapeError(f"{op}: the {what} must be NCHW (batch, channels, height, width) with "
                         f"known channels and sizes, got {fmt(x.shape)}")
    return x.shape[1:]


def _span(window, dilation=(1, 1)):
    """The extent of a window whose taps are `dilation` apart: d·(k - 1) + 1 per axis."""
    return tuple(d * (k - 1) + 1 for k, d in zip(window, dilation))


def _windows_out(op, hw, window, attrs):
    (kh, kw) = _span(window, attrs.get("dilation", (1, 1)))
    (sh, sw), (ph, pw) = attrs["stride"], attrs["padding"]
    return (_out_size(op, "height", hw[0], kh, sh, ph), _out_size(op, "width", hw[1], kw, sw, pw))


def _padded_windows(x, window, stride, padding, fill=0.0, dilation=(1, 1)):
    """(N, C, Ho, Wo, kh, kw): every window of x (padded with `fill`), as a view."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    span = _span(window, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ho = (xp.shape[2] - span[0]) // sh + 1
    wo = (xp.shape[3] - span[1]) // sw + 1
    view = np.lib.stride_tricks.sliding_window_view(xp, span, axis=(2, 3))
    return view[:, :, ::sh, ::sw][:, :, :ho, :wo, ::dh, ::dw]


def _scatter_windows(values, shape, window, stride, padding, dilation=(1, 1)):
    """The adjoint of _padded_windows: values (N, C, Ho, Wo, kh, kw) added into an array of
    `shape` (N, C, H, W) at the positions they were read from (padding dropped)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = window, stride, padding, dilation
    n, c, h, w = shape
    ho, wo = values.shape[2:4]
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), values.dtype)
    for i in range(kh):
        for j in range(kw):
            r, q = i * dh, j * dw
            out[:, :, r:r + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw] += values[..., i, j]
    return out[:, :, ph:ph + h, pw:pw + w]


def _batch_dims(node, args):
    """The output's sizes as code: only the batch may be unknown, and input 0 has it."""
    return [d if is_known(d) else f"{args[0]}.shape[0]" for d in node.shape]


def _infer_im2col(inputs, attrs):
    x = inputs[0]
    c, h, w = _image("im2col", x)
    ho, wo = _windows_out("im2col", (h, w), attrs["window"], attrs)
    rows = x.shape[0] * ho * wo
    return (rows, c * attrs["window"][0] * attrs["window"][1]), x.dtype


def _infer_col2im(inputs, attrs):
    cols = inputs[0]
    c, h, w = attrs["image"]
    (kh, kw) = attrs["window"]
    ho, wo = _windows_out("col2im", (h, w), attrs["window"], attrs)
    if cols.ndim != 2 or cols.shape[1] != c * kh * kw or \
            (is_known(cols.shape[0]) and cols.shape[0] % (ho * wo)):
        raise ShapeError(f"col2im: columns {fmt(cols.shape)} are not the windows of "
                         f"{c}×{h}×{w} images ({ho * wo} rows per image, {c * kh * kw} taps)")
    return (cols.shape[0] // (ho * wo), c, h, w), cols.dtype


def _np_im2col(arrays, attrs):
    x = arrays[0]
    windows = _padded_windows(x, attrs["window"], attrs["stride"], attrs["padding"],
                              dilation=attrs["dilation"])
    n, c, ho, wo, kh, kw = windows.shape
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)


def _np_col2im(arrays, attrs):
    cols = arrays[0]
    c, h, w = attrs["image"]
    (kh, kw) = attrs["window"]
    ho, wo = _windows_out("col2im", (h, w), attrs["window"], attrs)
    n = cols.shape[0] // (ho * wo)
    values = cols.reshape(n, ho, wo, c, kh, kw).transpose(0, 3, 1, 2, 4, 5)
    return _scatter_windows(values, (n, c, h, w), attrs["window"], attrs["stride"],
                            attrs["padding"], attrs["dilation"])


def _window_attrs(node):
    return {k: node.attrs[k] for k in ("window", "stride", "padding", "dilation")}


def _geometry(node):
    """The window's numbers as kernels.im2col/col2im take them."""
    return ", ".join(str(v) for k in ("window", "stride", "padding", "dilation") for v in node.attrs[k])


def _emit_im2col(code, node, out, args):
    ho, wo = _windows_out("im2col", node.inputs[0].shape[2:], node.attrs["window"], node.attrs)
    code.compute(node, out, [f"{args[0]}.shape[0] * {ho * wo}", node.shape[1]],
                 f"kernels.im2col({{0}}, {{1}}, {_geometry(node)})", args[0])


def _emit_col2im(code, node, out, args):
    c, h, w = node.attrs["image"]
    per_image = _windows_out("col2im", (h, w), node.attrs["window"], node.attrs)
    batch = node.shape[0] if is_known(node.shape[0]) else \
        f"{args[0]}.shape[0] // {per_image[0] * per_image[1]}"
    code.compute(node, out, [batch, c, h, w],
                 f"kernels.col2im({{0}}, {{1}}, {_geometry(node)})", args[0])


# im2col lays every window of an image out as a row (N·Ho·Wo rows of C·kh·kw taps), so a
# convolution is one matrix product (sg.conv2d builds it from these ops and matmul), and its
# gradients are products too: the filter gradient reuses the forward's columns, and the
# input gradient is a product scattered back by col2im, im2col's adjoint. Both are linear.
register(Op("im2col", infer=_infer_im2col, numpy=_np_im2col,
            vjp=lambda node, g, wanted: [make("col2im", [g],
                                              dict(_window_attrs(node), image=node.inputs[0].shape[1:]))],
            linear=True, emit=_emit_im2col, writes_output=True, expands=True, rows=_rows_by_image))
register(Op("col2im", infer=_infer_col2im, numpy=_np_col2im,
            vjp=lambda node, c, wanted: [make("im2col", [c], _window_attrs(node))],
            linear=True, emit=_emit_col2im, writes_output=True, rows=_rows_by_image))


# ---------------------------------------------------------------------------- pooling

def _infer_pool(op):
    def infer(inputs, attrs):
        x = inputs[0]
        _, h, w = _image(op, x)
        (kh, kw), (ph, pw) = attrs["window"], attrs["padding"]
        if ph > kh // 2 or pw > kw // 2:
            raise ShapeError(f"{op}: padding {attrs['padding']} is more than half the window "
                             f"{attrs['window']}: a window could hold padding alone")
        ho, wo = _windows_out(op, (h, w), attrs["window"], attrs)
        return x.shape[:2] + (ho, wo), x.dtype
    return infer


def _infer_pool_grad(op):
    def infer(inputs, attrs):
        x, g = inputs[0], inputs[-1]
        h, w = attrs["in_hw"]
        if _windows_out(op, (h, w), attrs["window"], attrs) != tuple(g.shape[2:]) or g.ndim != 4:
            raise ShapeError(f"{op}: a cotangent {fmt(g.shape)} does not come from pooling an "
                             f"input of size {h}×{w}")
        return g.shape[:2] + (h, w), g.dtype
    return infer


def _pool_attrs(node):
    return {k: node.attrs[k] for k in ("window", "stride", "padding")}


def _np_avg_pool2d(arrays, attrs):
    windows = _padded_windows(arrays[0], attrs["window"], attrs["stride"], attrs["padding"])
    return windows.mean(axis=(4, 5))  # the padding counts as zeros (the divisor is the window)


def _np_avg_pool2d_grad(arrays, attrs):
    g = arrays[0]
    kh, kw = attrs["window"]
    values = np.broadcast_to((g / (kh * kw))[..., None, None], g.shape + (kh, kw))
    return _scatter_windows(values, g.shape[:2] + tuple(attrs["in_hw"]), attrs["window"],
                            attrs["stride"], attrs["padding"])


def _max_weights(x, attrs):
    """(N, C, Ho, Wo, kh, kw): 1/k where a window attains its maximum k times (padding
    never counts), else 0; NaN throughout a window whose maximum is NaN."""
    window, stride, padding = attrs["window"], attrs["stride"], attrs["padding"]
    windows = _padded_windows(x, window, stride, padding, -np.inf)
    real = _padded_windows(np.ones((1, 1) + x.shape[2:], bool), window, stride, padding, False)
    hit = ((windows == windows.max(axis=(4, 5), keepdims=True)) & real).astype(x.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hit / hit.sum(axis=(4, 5), keepdims=True)


def _np_max_pool2d(arrays, attrs):
    windows = _padded_windows(arrays[0], attrs["window"], attrs["stride"], attrs["padding"], -np.inf)
    return windows.max(axis=(4, 5))


def _np_max_pool2d_grad(arrays, attrs):
    x, g = arrays
    values = _max_weights(x, attrs) * g[..., None, None]
    return _scatter_windows(values, x.shape, attrs["window"], attrs["stride"], attrs["padding"])


def _np_max_pool2d_select(arrays, attrs):
    x, t = arrays
    windows = _padded_windows(t, attrs["window"], attrs["stride"], attrs["padding"])
    return (_max_weights(x, attrs) * windows).sum(axis=(4, 5))


def _emit_pool(kernel, arity):
    def emit(code, node, out, args):
        (kh, kw), (sh, sw), (ph, pw) = (node.attrs[k] for k in ("window", "stride", "padding"))
        numbers = f"{kh}, {kw}, {sh}, {sw}, {ph}, {pw}"
        operands = ", ".join(f"{{{k}}}" for k in range(arity + 1))
        code.compute(node, out, _batch_dims(node, args),
                     f"kernels.{kernel}({operands}, {numbers})", *args)
    return emit


def _pool_grad_attrs(node):
    return dict(_pool_attrs(node), in_hw=node.inputs[0].shape[2:])


register(Op("avg_pool2d", infer=_infer_pool("avg_pool2d"), numpy=_np_avg_pool2d,
            vjp=lambda node, g, wanted: [make("avg_pool2d_grad", [g], _pool_grad_attrs(node))],
            linear=True, emit=_emit_pool("avg_pool2d", 1), writes_output=True, rows=_rows_by_image))
register(Op("avg_pool2d_grad", infer=_infer_pool_grad("avg_pool2d_grad"),
            numpy=_np_avg_pool2d_grad,
            vjp=lambda node, c, wanted: [make("avg_pool2d", [c], _pool_attrs(node))],
            linear=True, emit=_emit_pool("avg_pool2d_grad", 1), writes_output=True, rows=_rows_by_image))
register(Op("max_pool2d", infer=_infer_pool("max_pool2d"), numpy=_np_max_pool2d,
            vjp=lambda node, g, wanted: [make("max_pool2d_grad", [node.inputs[0], g],
                                              _pool_grad_attrs(node))],
            jvp=lambda node, tangents: make("max_pool2d_select", [node.inputs[0], tangents[0]],
                                            _pool_attrs(node)) if tangents[0] is not None else None,
            emit=_emit_pool("max_pool2d", 1), writes_output=True, rows=_rows_by_image))
def _tangent_shaped_like(op, t, x, whose):
    """A pooling tangent t must have the shape of x (the input, or its routing)."""
    if t.ndim != x.ndim or any(_merge_dim(a, b) is False for a, b in zip(x.shape, t.shape)):
        raise ShapeError(f"{op}: the tangent {fmt(t.shape)} is not of the {whose} shape "
                         f"{fmt(x.shape)}")


def _infer_max_pool2d_select(inputs, attrs):
    x, t = inputs
    _tangent_shaped_like("max_pool2d_select", t, x, "input's")
    return _infer_pool("max_pool2d_select")([x], attrs)


def _jvp_routing(node, tangents):
    """Where each window attains its maximum is constant almost everywhere: no derivative
    flows to x through max_pool2d_grad and max_pool2d_select, which are linear in their
    second input."""
    return make(node.op, [node.inputs[0], tangents[1]], node.attrs) if tangents[1] is not None else None


# Max pooling's routing, for disjoint windows (stride >= window): each tap's share of its
# window's cotangent, as an array of x's shape. Given the routing R, max_pool2d_grad(x, g) is
# routed_pool2d_grad(R, g) = R · g spread to the taps, and max_pool2d_select(x, t) is
# routed_pool2d(R, t) = each window's Σ R · t: products and sums, with no window's maximum
# found again. Where x is fixed and g or t vary (the Hessian-vector products of a bound
# operator), partial evaluation computes R once (split_fixed, partial.py).

def _windows_disjoint(attrs):
    return all(s >= k for s, k in zip(attrs["stride"], attrs["window"]))


def _disjoint(op, attrs):
    if not _windows_disjoint(attrs):
        (kh, kw), (sh, sw) = attrs["window"], attrs["stride"]
        raise ShapeError(f"{op}: windows {kh}×{kw} moved by {sh}×{sw} overlap; routing weights "
                         f"are one per tap, so the windows must not (stride >= window)")


def _infer_max_pool2d_routing(inputs, attrs):
    _infer_pool("max_pool2d_routing")(inputs, attrs)
    _disjoint("max_pool2d_routing", attrs)
    return inputs[0].shape, inputs[0].dtype


def _np_max_pool2d_routing(arrays, attrs):
    x = arrays[0]
    return _scatter_windows(_max_weights(x, attrs), x.shape, attrs["window"], attrs["stride"],
                            attrs["padding"])


def _infer_routed_pool2d(inputs, attrs):
    routing, t = inputs
    _tangent_shaped_like("routed_pool2d", t, routing, "routing's")
    _disjoint("routed_pool2d", attrs)
    return _infer_pool("routed_pool2d")([routing], attrs)


def _np_routed_pool2d(arrays, attrs):
    windows = [_padded_windows(a, attrs["window"], attrs["stride"], attrs["padding"]) for a in arrays]
    return (windows[0] * windows[1]).sum(axis=(4, 5))


def _infer_routed_pool2d_grad(inputs, attrs):
    routing, g = inputs
    _disjoint("routed_pool2d_grad", attrs)
    _, h, w = _image("routed_pool2d_grad", routing)
    pooled = routing.shape[:2] + _windows_out("routed_pool2d_grad", (h, w), attrs["window"], attrs)
    if g.ndim != 4 or any(_merge_dim(p, q) is False for p, q in zip(pooled, g.shape)):
        raise ShapeError(f"routed_pool2d_grad: a cotangent {fmt(g.shape)} does not come from "
                         f"pooling an input of size {h}×{w} (expected {fmt(pooled)})")
    return routing.shape, routing.dtype


def _np_routed_pool2d_grad(arrays, attrs):
    routing, g = arrays
    window, stride, padding = attrs["window"], attrs["stride"], attrs["padding"]
    values = _padded_windows(routing, window, stride, padding) * g[..., None, None]
    return _scatter_windows(values, routing.shape, window, stride, padding)


def _bilinear_jvp(node, tangents):
    """Both routed ops are linear in each input: the tangent is op(ṙ, b) + op(r, ḃ)."""
    r, b = node.inputs
    dr, db = tangents
    terms = ([make(node.op, [dr, b], node.attrs)] if dr is not None else []) + \
            ([make(node.op, [r, db], node.attrs)] if db is not None else [])
    return None if not terms else terms[0] if len(terms) == 1 else make("add", terms)


def _split_routing(node):
    """max_pool2d_grad(x, g) or max_pool2d_select(x, t) with x fixed: the routed op reading
    max_pool2d_routing(x), which partial evaluation then computes once (None where windows
    overlap)."""
    attrs = _pool_attrs(node)
    if not _windows_disjoint(attrs):
        return None
    routed = "routed_pool2d_grad" if node.op == "max_pool2d_grad" else "routed_pool2d"
    return make(routed, [make("max_pool2d_routing", [node.inputs[0]], attrs), node.inputs[1]], attrs)


# Piecewise constant in x: no derivative (as argmax).
register(Op("max_pool2d_routing", infer=_infer_max_pool2d_routing, numpy=_np_max_pool2d_routing,
            emit=_emit_pool("max_pool2d_routing", 1), writes_output=True, rows=_rows_by_image))
register(Op("routed_pool2d", infer=_infer_routed_pool2d, numpy=_np_routed_pool2d,
            vjp=lambda node, c, wanted: [
                make("routed_pool2d_grad", [node.inputs[1], c], node.attrs) if wanted[0] else None,
                make("routed_pool2d_grad", [node.inputs[0], c], node.attrs) if wanted[1] else None],
            jvp=_bilinear_jvp, emit=_emit_pool("routed_pool2d", 2), writes_output=True, rows=_rows_by_image))
register(Op("routed_pool2d_grad", infer=_infer_routed_pool2d_grad, numpy=_np_routed_pool2d_grad,
            vjp=lambda node, c, wanted: [
                make("routed_pool2d_grad", [c, node.inputs[1]], node.attrs) if wanted[0] else None,
                make("routed_pool2d", [node.inputs[0], c], node.attrs) if wanted[1] else None],
            jvp=_bilinear_jvp, emit=_emit_pool("routed_pool2d_grad", 2), writes_output=True, rows=_rows_by_image))


register(Op("max_pool2d_grad", infer=_infer_pool_grad("max_pool2d_grad"),
            numpy=_np_max_pool2d_grad,
            vjp=lambda node, c, wanted: [None, make("max_pool2d_select", [node.inputs[0], c],
                                                    _pool_attrs(node)) if wanted[1] else None],
            jvp=_jvp_routing, emit=_emit_pool("max_pool2d_grad", 2), writes_output=True, rows=_rows_by_image,
            split_fixed=_split_routing))
register(Op("max_pool2d_select", infer=_infer_max_pool2d_select,
            numpy=_np_max_pool2d_select,
            vjp=lambda node, c, wanted: [None, make("max_pool2d_grad", [node.inputs[0], c],
                                                    _pool_grad_attrs(node)) if wanted[1] else None],
            jvp=_jvp_routing, emit=_emit_pool("max_pool2d_select", 2), writes_output=True, rows=_rows_by_image,
            split_fixed=_split_routing))


# ============================================================================ indexing

# Integer tensors (int64: class labels, token ids) select; they are never differentiated.
# Every index is checked against the size it indexes on every call, compiled and interpreted
# alike, so generated code never reads or writes outside an array, whatever the caller passes.

def _index_message(op, size):
    last = size - 1 if is_known(size) else f"{dim_text(size)} - 1"
    return (f"{op}: an index is outside 0..{last}; indices count from 0 (negative ones are "
            f"refused) and stay below {dim_text(size)}")


def _np_check_indices(op, indices, size):
    if indices.size and not (indices.min() >= 0 and indices.max() < size):
        raise ValueError(_index_message(op, size))


def _check_indices(code, op, arg, size):
    code.check("kernels.index_violation({0}, {1}) < 0", [f"{arg}.reshape(-1)", code.size(size)],
               _index_message(op, size))


def _integers(op, node, what):
    if not is_integer(node):
        raise ShapeError(f"{op}: {what} must be an int64 tensor, got {node.dtype}",
                         "give labels and indices as int64 arrays")


def _infer_take(inputs, attrs):
    x, indices = inputs
    _integers("take", indices, "indices")
    axis = attrs["axis"]
    return x.shape[:axis] + indices.shape + x.shape[axis + 1:], x.dtype


def _infer_take_add(inputs, attrs):
    """The shape of the array taken from (attribute `shape`, as a broadcast's target)."""
    g, indices = inputs
    _integers("take_add", indices, "indices")
    axis, shape = attrs["axis"], tuple(attrs["shape"])
    around = shape[:axis] + shape[axis + 1:]
    given = g.shape[:axis] + g.shape[axis + indices.ndim:]
    if len(around) != len(given) or any(_merge_dim(a, b) is False for a, b in zip(around, given)):
        raise ShapeError(f"take_add: a cotangent {fmt(g.shape)} of indices {fmt(indices.shape)} "
                         f"does not fit an array {fmt(shape)} along axis {axis}")
    return shape, g.dtype


def _np_take(arrays, attrs):
    x, indices = arrays
    _np_check_indices("take", indices, x.shape[attrs["axis"]])
    return np.take(x, indices, axis=attrs["axis"])


def _np_take_add(arrays, attrs):
    g, indices = arrays
    axis, size = attrs["axis"], attrs["shape"][attrs["axis"]]
    _np_check_indices("take_add", indices, size)
    rows = g.reshape(g.shape[:axis] + (indices.size,) + g.shape[axis + indices.ndim:])
    out = np.zeros(rows.shape[:axis] + (size,) + rows.shape[axis + 1:], g.dtype)
    np.add.at(out, (slice(None),) * axis + (indices.reshape(-1),), rows)
    return out


def _gather_call(code, kernel, source, indices, out, before, rows_in, rows_out, after):
    code.call(f"kernels.{kernel}({{0}}, {{1}}, {{2}})",
              f"{source}.reshape(({before}, {rows_in}, {after}))", f"{indices}.reshape(-1)",
              f"{out}.reshape(({before}, {rows_out}, {after}))")


def _emit_take(code, node, out, args):
    x, indices = node.inputs
    axis = node.attrs["axis"]
    _check_indices(code, "take", args[1], x.shape[axis])
    xd, nd = _runtime_dims(x, args[0]), _runtime_dims(indices, args[1])
    code.line(f"{out} = {code.alloc(node, out, xd[:axis] + nd + xd[axis + 1:])}")
    _gather_call(code, "take_rows", args[0], args[1], out, _product(xd[:axis]), xd[axis],
                 _product(nd), _product(xd[axis + 1:]))


def _emit_take_add(code, node, out, args):
    g, indices = node.inputs
    axis = node.attrs["axis"]
    size = code.size(node.shape[axis])
    _check_indices(code, "take_add", args[1], node.shape[axis])
    gd, nd = _runtime_dims(g, args[0]), _runtime_dims(indices, args[1])
    tail = gd[axis + indices.ndim:]
    code.line(f"{out} = {code.alloc(node, out, gd[:axis] + [size] + tail)}")
    _gather_call(code, "add_rows", args[0], args[1], out, _product(gd[:axis]), _product(nd),
                 size, _product(tail))


def _rows_take(node, axes, spread):
    """Examples among the indices land where the indices go; examples of x off the picked
    axis stay there (shifted by the indices' extra axes)."""
    x, indices = axes
    axis, extra = node.attrs["axis"], node.inputs[1].ndim - 1
    if x is None and indices is not None:
        return axis + indices
    if indices is None and x is not None and x != axis:
        return x if x < axis else x + extra
    return MIXED


def _rows_take_add(node, axes, spread):
    """take's adjoint: examples among the indices are summed into the rows they pick."""
    g, indices = axes
    axis, extra = node.attrs["axis"], node.inputs[1].ndim - 1
    if indices is not None and g == axis + indices:
        return SUMMED
    if indices is None and g is not None and not axis <= g <= axis + extra:
        return g if g < axis else g - extra
    return MIXED


# take: rows of x (along `axis`) picked by int64 indices, any shape of them (an embedding
# lookup). Linear in x: its cotangent is added back into the rows it came from (take_add, a
# scatter-add, so rows picked twice get both), and take_add's is read back by take.
register(Op("take", infer=_infer_take, numpy=_np_take,
            vjp=lambda node, g, wanted: [make("take_add", [g, node.inputs[1]],
                                              {"axis": node.attrs["axis"],
                                               "shape": node.inputs[0].shape}),
                                         None],
            jvp=lambda node, tangents: None if tangents[0] is None else
            make("take", [tangents[0], node.inputs[1]], node.attrs),
            emit=_emit_take, writes_output=True, integer_inputs=(1,), rows=_rows_take))
register(Op("take_add", infer=_infer_take_add, numpy=_np_take_add,
            vjp=lambda node, c, wanted: [make("take", [c, node.inputs[1]],
                                              {"axis": node.attrs["axis"]}), None],
            jvp=lambda node, tangents: None if tangents[0] is None else
            make("take_add", [tangents[0], node.inputs[1]], node.attrs),
            emit=_emit_take_add, writes_output=True, integer_inputs=(1,), rows=_rows_take_add))


def _infer_one_hot(inputs, attrs):
    _integers("one_hot", inputs[0], "labels")
    return inputs[0].shape + (attrs["depth"],), attrs["dtype"]


def _np_one_hot(arrays, attrs):
    labels, depth = arrays[0], attrs["depth"]
    _np_check_indices("one_hot", labels, depth)
    return (labels[..., None] == np.arange(depth)).astype(attrs["dtype"])


def _emit_one_hot(code, node, out, args):
    depth = node.attrs["depth"]
    _check_indices(code, "one_hot", args[0], depth)
    nd = _runtime_dims(node.inputs[0], args[0])
    code.line(f"{out} = {code.alloc(node, out, nd + [depth])}")
    code.call("kernels.one_hot({0}, {1})", f"{args[0]}.reshape(-1)",
              f"{out}.reshape(({_product(nd)}, {depth}))")


# Rows of 0s with a 1 at each label: they sum to 1 along the last axis (every label is checked
# to be in range), so softmax cross-entropy of integer labels gets the gradient q - p.
register(Op("one_hot", infer=_infer_one_hot, numpy=_np_one_hot, emit=_emit_one_hot,
            writes_output=True, sums_to_one=True, integer_inputs=(0,), rows=_rows_same))


def _argmax_message(axis):
    return f"argmax: axis {axis} has no elements, so there is no largest one"


def _np_argmax(arrays, attrs):
    x, axis = arrays[0], attrs["axis"]
    if x.shape[axis] == 0:
        raise ValueError(_argmax_message(axis))
    return np.argmax(x, axis=axis)


def _emit_argmax(code, node, out, args):
    x, axis = node.inputs[0], node.attrs["axis"]
    a, r, b = _axis_split(x, args[0], axis)
    code.check("{0} > 0", [r], _argmax_message(axis))
    out_dims = [d for k, d in enumerate(_runtime_dims(x, args[0])) if k != axis]
    code.line(f"{out} = {code.alloc(node, out, out_dims)}")
    code.call("kernels.argmax_axis({0}, {1}, {2}, {3}, {4})", f"{args[0]}.reshape(-1)", a, r, b,
              f"{out}.reshape(({a}, {b}))")


def _infer_argmax(inputs, attrs):
    shape, _ = _infer_reduce("argmax")(inputs, attrs)
    if is_known(inputs[0].shape[attrs["axis"]]) and inputs[0].shape[attrs["axis"]] == 0:
        raise ShapeError(_argmax_message(attrs["axis"]))
    return shape, "int64"


# The index of the largest value along `axis` (the first, among ties; a NaN counts as
# largest, as in NumPy). Piecewise constant: nothing differentiates through it.
register(Op("argmax", infer=_infer_argmax, numpy=_np_argmax, emit=_emit_argmax,
            writes_output=True, rows=_rows_reduce(MIXED)))


# ============================================================================ builders

def _broadcast_shapes(shapes, op):
    ndim = builtins.max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for sizes in zip(*padded):
        known = {d for d in sizes if is_known(d) and d != 1}
        unknown = [d for d in sizes if not is_known(d)]
        if len(known) > 1:
            raise ShapeError(f"{op}: shapes {' and '.join(fmt(s) for s in shapes)} cannot be broadcast together")
        # an unknown size is assumed not to be a 1 that broadcasts (checked at call time)
        out.append(known.pop() if known else unknown[0] if unknown else 1)
    return tuple(out)


def broadcast_to(x, shape):
    """`x` repeated to `shape` (NumPy rules). A size known only at call time is given as
    another node's (`y.shape[0]`), or as an expression of such sizes."""
    x = as_node(x)
    if None in tuple(shape):
        raise ShapeError(f"broadcast_to {tuple(shape)}: None is not a size here",
                         "use the size of the value that has it, such as y.shape[0]")
    shape = tuple(as_dim(d) for d in shape)
    if x.shape == shape:
        return x
    return make("broadcast_to", [x], {"shape": shape})


def _broadcast_args(op, args):
    """Operands of an elementwise op, broadcast explicitly to one shape (scalar constants stay
    scalars: they are folded into the loop)."""
    nodes = [a for a in args if isinstance(a, Node)]
    if not nodes:
        raise TypeError(f"{op}: at least one operand must be a symgrad tensor")
    dtype = nodes[0].dtype
    for n in nodes:
        if n.dtype != dtype:
            raise ShapeError(f"{op}: inputs have different dtypes {n.dtype} and {dtype}; "
                             f"convert one with sg.cast(x, dtype)")
    args = [a if isinstance(a, Node) else as_node(np.asarray(a, dtype)) for a in args]
    full = [a for a in args if not (a.op == "constant" and a.shape == ())]
    if not full:
        return args
    shape = _broadcast_shapes([a.shape for a in full], op)
    out = []
    for a in args:
        if a in full and (a.ndim != len(shape) or
                          builtins.any(d == 1 and t != 1 for d, t in zip(a.shape, shape))):
            a = broadcast_to(a, shape)
        out.append(a)
    return out


def _elementwise(name, *args, **attrs):
    return make(name, _broadcast_args(name, list(args)), attrs)


def add(*args):
    """x + y (+ z ...), broadcasting."""
    out = args[0]
    for a in args[1:]:
        out = _elementwise("add", out, a)
    return out


def subtract(a, b): return _elementwise("subtract", a, b)
def multiply(a, b): return _elementwise("multiply", a, b)
def divide(a, b): return _elementwise("divide", a, b)
def power(a, b): return _elementwise("power", a, b)
def negative(x): return _elementwise("negative", x)
def exp(x): return _elementwise("exp", x)
def log(x): return _elementwise("log", x)
def tanh(x): return _elementwise("tanh", x)
def sigmoid(x): return _elementwise("sigmoid", x)
def relu(x): return _elementwise("relu", x)
def leaky_relu(x, alpha=0.01): return _elementwise("leaky_relu", x, alpha=float(alpha))
def softplus(x): return _elementwise("softplus", x)
def hard_tanh(x): return _elementwise("hard_tanh", x)
def softsign(x): return _elementwise("softsign", x)
def abs(x): return _elementwise("abs", x)  # noqa: A001 - NumPy's name
def sin(x): return _elementwise("sin", x)
def cos(x): return _elementwise("cos", x)
def sqrt(x): return _elementwise("sqrt", x)
def square(x): return _elementwise("square", x)
def maximum(a, b): return _elementwise("maximum", a, b)
def minimum(a, b): return _elementwise("minimum", a, b)
def greater(a, b): return _elementwise("greater", a, b)
def greater_equal(a, b): return _elementwise("greater_equal", a, b)
def equal(a, b): return _elementwise("equal", a, b)


def where(condition, a, b):
    """`a` where `condition` is nonzero, else `b` (conditions are 0/1 tensors, e.g. `x > 0`)."""
    return _elementwise("where", condition, a, b)


def cast(x, dtype):
    dtype = np.dtype(dtype).name
    return x if x.dtype == dtype else make("cast", [x], {"dtype": dtype})


def _indices(value):
    """An int64 node for indices or labels given as a node, an array or a list."""
    if isinstance(value, Node):
        return value
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got {array.dtype}")
    return constant(array, "int64")


def take(x, indices, axis=0):
    """The slices of `x` along `axis` at int64 `indices` (any shape), as NumPy's take: an
    embedding lookup is take(table, token_ids). Indices out of 0..n-1 raise ValueError on the
    call. The gradient adds the cotangent back into the rows taken (twice for a row taken
    twice)."""
    x = as_node(x)
    if x.ndim == 0:
        raise ShapeError("take: needs an array of at least one dimension to take from")
    axis = _normalize_axis(axis, x.ndim, "take")
    return make("take", [x, _indices(indices)], {"axis": axis})


def one_hot(labels, depth, dtype="float32"):
    """Rows of `depth` zeros with a 1 at each int64 label (a new last axis). A label outside
    0..depth-1 raises ValueError on the call. The rows are known to sum to 1, so softmax
    cross-entropy of them has the gradient softmax - labels."""
    if not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ShapeError(f"one_hot: depth must be an int >= 1, got {depth!r}")
    labels = _indices(labels)
    # `axis`: the new last axis, along which the rows sum to 1 (the trait sums_to_one's fact)
    return make("one_hot", [labels], {"depth": int(depth), "dtype": np.dtype(dtype).name,
                                      "axis": labels.ndim})


def argmax(x, axis=-1):
    """The int64 index of the largest value along `axis` (the first among ties; NaN counts
    as the largest, as in NumPy)."""
    x = as_node(x)
    if x.ndim == 0:
        raise ShapeError("argmax: needs at least one dimension")
    return make("argmax", [x], {"axis": _normalize_axis(axis, x.ndim, "argmax")})


def argmin(x, axis=-1):
    """The int64 index of the smallest value along `axis` (the first among ties)."""
    return argmax(negative(as_node(x)), axis)


def stop_gradient(x):
    """`x`, through which no gradient flows."""
    return make("stop_gradient", [as_node(x)])


def distribution(x, axis=-1):
    """`x`, declared to sum to 1 along `axis` (one-hot or probability rows). The declaration
    is checked when the graph runs: a slice that does not sum to 1 raises ValueError."""
    x = as_node(x)
    return make("distribution", [x], {"axis": _normalize_axis(axis, x.ndim, "distribution")})


def zeros_like(x):
    return broadcast_to(constant(np.zeros((), x.dtype)), x.shape)


def ones_like(x):
    return broadcast_to(constant(np.ones((), x.dtype)), x.shape)


def matmul(a, b):
    """Matrix product of 1-D or 2-D tensors, as NumPy's `@`."""
    a = as_node(a, b if isinstance(b, Node) else None)
    b = as_node(b, a)
    if a.ndim not in (1, 2) or b.ndim not in (1, 2):
        raise ShapeError(f"matmul: shapes {fmt(a.shape)} and {fmt(b.shape)}: only 1-D and 2-D "
                         f"tensors are supported")
    a2 = reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    if _merge_dim(a2.shape[1], b2.shape[0]) is False:
        raise ShapeError(f"matmul: shapes {fmt(a.shape)} and {fmt(b.shape)} are not aligned "
                         f"({a2.shape[1]} != {b2.shape[0]})")
    out = make("matmul", [a2, b2])
    shape = (a.shape[:-1] if a.ndim == 2 else ()) + (b.shape[1:] if b.ndim == 2 else ())
    return reshape(out, shape) if out.shape != shape else out


def dot(a, b):
    return matmul(a, b)


def _reduce_axes(name, x, axis, keepdims):
    """A reduction over several axes, one op per run of adjacent axes (merged by a
    reshape, so a conv bias's gradient, a sum over (N, H, W), is two passes, not three;
    the first, over H·W, reads the array once)."""
    x = as_node(x)
    axes = _normalize_axes(axis, x.ndim, name)
    runs = []
    for a in axes:
        if runs and runs[-1][-1] == a - 1:
            runs[-1].append(a)
        else:
            runs.append([a])
    out = x
    for run in reversed(runs):
        if len(run) > 1:
            shape = out.shape
            merged = math.prod(shape[run[0]:run[-1] + 1])
            out = reshape(out, shape[:run[0]] + (merged,) + shape[run[-1] + 1:])
        out = make(name, [out], {"axis": run[0]})
    if keepdims:
        out = reshape(out, tuple(1 if k in axes else d for k, d in enumerate(x.shape)))
    return out


def sum(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    return _reduce_axes("sum", x, axis, keepdims)


def _reduce_merged(name, x, axis, keepdims):
    """A reduction over several axes as one: the axes moved last and merged, so that what
    the op does along its axis (max's even split of the gradient among ties, logsumexp's
    stabilisation) holds across all of them."""
    x = as_node(x)
    if x.ndim == 0:
        raise ShapeError(f"{name}: needs at least one dimension")
    axes = _normalize_axes(axis, x.ndim, name)
    rest = [k for k in range(x.ndim) if k not in axes]
    if len(axes) == 1:
        out = make(name, [x], {"axis": axes[0]})
    else:
        merged = reshape(transpose(x, rest + list(axes)), tuple(x.shape[k] for k in rest) + (-1,))
        out = make(name, [merged], {"axis": len(rest)})
    if keepdims:
        return reshape(out, tuple(1 if k in axes else d for k, d in enumerate(x.shape)))
    return out


def max(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    """The largest value over `axis`; its gradient is split evenly among the places that
    attain it (over all the reduced axes, as JAX does)."""
    return _reduce_merged("max", x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    x = as_node(x)
    axes = _normalize_axes(axis, x.ndim, "mean")
    total = sum(x, axis, keepdims)
    sizes = tuple(x.shape[a] for a in axes)
    if not builtins.all(is_known(d) for d in sizes):
        return total / broadcast_to(size(sizes, x.dtype), total.shape)
    return total / float(math.prod(sizes))


def _single_axis(name, x, axis):
    x = as_node(x)
    if x.ndim == 0:
        raise ShapeError(f"{name}: needs at least one dimension")
    return x, _normalize_axis(axis, x.ndim, name)


def softmax(x, axis=-1):
    x, axis = _single_axis("softmax", x, axis)
    return make("softmax", [x], {"axis": axis})


def log_softmax(x, axis=-1):
    x, axis = _single_axis("log_softmax", x, axis)
    return make("log_softmax", [x], {"axis": axis})


def logsumexp(x, axis=None, keepdims=False):
    """log Σ exp(x) over `axis` (an int, a tuple, or None for all), computed stably."""
    return _reduce_merged("logsumexp", x, axis, keepdims)


def size(sizes, dtype="float32"):
    """The number of elements of a shape `sizes` (such as x.shape, or some of its sizes), as
    a scalar of `dtype`: known when the graph is built, or worked out at call time."""
    sizes = tuple(as_dim(d) for d in sizes)
    if builtins.all(is_known(d) for d in sizes):
        return constant(np.asarray(math.prod(sizes), dtype))
    return make("size", [], {"sizes": sizes, "dtype": np.dtype(dtype).name})


def reshape(x, shape):
    x = as_node(x)
    shape = (shape,) if isinstance(shape, (int, np.integer)) or shape is None else tuple(shape)
    if shape.count(-1) + shape.count(None) > 1:
        raise ShapeError(f"reshape {fmt(x.shape)} -> {shape}: only one size can be -1 (or None)")
    if -1 in shape or None in shape:
        rest = math.prod(as_dim(d) for d in shape if d not in (-1, None))
        total = math.prod(x.shape)
        if rest == 0:
            raise ShapeError(f"reshape {fmt(x.shape)} -> {shape}: the other sizes multiply to 0, "
                             f"so the -1 (or None) could be any size", "state every size")
        if is_known(total) and is_known(rest):
            if total % rest:
                raise ShapeError(f"reshape: cannot reshape {fmt(x.shape)} to {shape}")
            fill = total // rest
        else:  # what the other sizes leave; a call where it does not divide is refused
            numerator, denominator = sympy.fraction(sympy.cancel(total / rest))
            fill = numerator if denominator == 1 else sympy.floor(total / rest)
        shape = tuple(fill if d in (-1, None) else d for d in shape)
    shape = tuple(as_dim(d) for d in shape)
    if shape == x.shape:
        return x
    return make("reshape", [x], {"shape": shape})


def transpose(x, axes=None):
    x = as_node(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(_normalize_axis(a, x.ndim, "transpose") for a in axes)
    if perm == tuple(range(x.ndim)):
        return x
    return make("transpose", [x], {"perm": perm})


def concatenate(xs, axis=0):
    xs = [as_node(x) for x in xs]
    if len(xs) == 1:
        return xs[0]
    axis = _normalize_axis(axis, xs[0].ndim, "concatenate")
    return make("concatenate", xs, {"axis": axis})


def _padding_pair(padding, window, op):
    """An int, a pair, "valid" (none) or "same" (the output keeps the input's size at stride
    1: (k - 1) / 2 on each side of a window spanning k, so k must be odd)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        if window[0] % 2 == 0 or window[1] % 2 == 0:
            raise ShapeError(f"{op}: padding='same' needs an odd window, got {window}",
                             "pad explicitly with padding=(top/bottom, left/right)")
        return ((window[0] - 1) // 2, (window[1] - 1) // 2)
    return _pair(padding, "padding", op)


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1):
    """The 2-D convolution (cross-correlation, as in deep learning) of x (N, C, H, W) with
    filters w (O, C / groups, kh, kw): (N, O, Ho, Wo), Ho = (H + 2·ph - dh·(kh - 1) - 1) // sh
    + 1. padding: an int, a pair, "valid" or "same"; dilation: taps that far apart (an int or
    a pair); groups: the channels split into that many groups, each convolved with its share
    of the filters (groups = C: depthwise)."""
    x, w = as_node(x), as_node(w)
    c, h, width = _image("conv2d", x)
    if groups != 1:
        if not (isinstance(groups, int) and groups >= 1 and c % groups == 0 and w.ndim == 4
                and w.shape[0] % groups == 0):
            raise ShapeError(f"conv2d: groups={groups!r} must divide the {c} input channels and "
                             f"the filters' {w.shape[0] if w.ndim else '?'} output channels")
        ci, co = c // groups, w.shape[0] // groups
        return concatenate([conv2d(x[:, g * ci:(g + 1) * ci], w[g * co:(g + 1) * co], stride,
                                   padding, dilation) for g in range(groups)], axis=1)
    if w.ndim != 4 or not builtins.all(is_known(d) for d in w.shape) or w.shape[1] != c:
        raise ShapeError(f"conv2d: the filters must be (out channels, {c}, kernel height, "
                         f"kernel width) for an input of {c} channels, got {fmt(w.shape)}")
    o, window = w.shape[0], tuple(w.shape[2:])
    dilation = _pair(dilation, "dilation", "conv2d")
    if min(dilation) < 1:
        raise ShapeError(f"conv2d: dilation must be >= 1, got {dilation}")
    attrs = {"window": window, "stride": _pair(stride, "stride", "conv2d"),
             "padding": _padding_pair(padding, _span(window, dilation), "conv2d"),
             "dilation": dilation}
    ho, wo = _windows_out("conv2d", (h, width), window, attrs)
    cols = make("im2col", [x], attrs)                                   # (N·Ho·Wo, C·kh·kw)
    rows = matmul(cols, transpose(reshape(w, (o, -1))))                 # (N·Ho·Wo, O)
    return transpose(reshape(rows, (-1, ho, wo, o)), (0, 3, 1, 2))      # (N, O, Ho, Wo)


def conv1d(x, w, stride=1, padding=0, dilation=1):
    """The 1-D convolution of x (N, C, L) with filters w (O, C, k): (N, O, Lo), Lo =
    (L + 2p - k) // s + 1; a conv2d over images one row high."""
    x, w = as_node(x), as_node(w)
    if x.ndim != 3 or w.ndim != 3:
        raise ShapeError(f"conv1d: x must be (batch, channels, length) and w (out channels, "
                         f"channels, kernel), got {fmt(x.shape)} and {fmt(w.shape)}")
    span = (1, int(dilation) * (w.shape[2] - 1) + 1)
    padding = (0, _padding_pair(padding, span, "conv1d")[1] if isinstance(padding, str)
               else int(padding))
    y = conv2d(reshape(x, (-1,) + x.shape[1:2] + (1,) + x.shape[2:]),
               reshape(w, w.shape[:2] + (1,) + w.shape[2:]), (1, int(stride)), padding,
               (1, int(dilation)))
    return reshape(y, (-1,) + y.shape[1:2] + y.shape[3:])


def _pool(op, x, window, stride, padding):
    window = _pair(window, "window", op)
    stride = window if stride is None else _pair(stride, "stride", op)
    return make(op, [as_node(x)], {"window": window, "stride": stride,
                                   "padding": _padding_pair(padding, window, op)})


def max_pool2d(x, window, stride=None, padding=0):
    """The maximum of each window of x (N, C, H, W); stride defaults to the window. Padding
    never wins. The gradient goes to where each window attains its maximum, split evenly
    among ties (as sg.max splits it)."""
    return _pool("max_pool2d", x, window, stride, padding)


def avg_pool2d(x, window, stride=None, padding=0):
    """The mean of each window of x (N, C, H, W); stride defaults to the window; padding
    counts as zeros (the divisor is always the window's size)."""
    return _pool("avg_pool2d", x, window, stride, padding)


def getitem(x, index):
    """Basic NumPy indexing: integers, slices, `...` (no fancy indexing)."""
    index = index if isinstance(index, tuple) else (index,)
    if any(i is Ellipsis for i in index):
        k = index.index(Ellipsis)
        fill = x.ndim - (len(index) - 1)
        index = index[:k] + (slice(None),) * fill + index[k + 1:]
    if len(index) > x.ndim:
        raise IndexError(f"too many indices ({len(index)}) for a tensor of shape {fmt(x.shape)}")
    index = index + (slice(None),) * (x.ndim - len(index))
    slices, drop = [], []
    for k, (i, d) in enumerate(zip(index, x.shape)):
        if isinstance(i, (int, np.integer)):
            i = int(i)
            if is_known(d) and not -d <= i < d:
                raise IndexError(f"index {i} is out of bounds for axis {k} with size {d}")
            if is_known(d):
                i %= d
            slices.append(("slice", i, None if i == -1 else i + 1, None))
            drop.append(k)
        elif isinstance(i, slice):
            if is_known(d):
                start, stop, step = i.indices(d)
                if step < 0 and stop < 0:
                    stop = None
                slices.append(("slice", start, stop, step if step != 1 else None))
            else:
                slices.append(("slice", i.start, i.stop, i.step))
        else:
            raise TypeError(f"index {i!r}: only integers and slices are supported")
    out = x
    if any(s[1:] != (0, d, None) and s[1:] != (None, None, None) for s, d in zip(slices, x.shape)):
        out = make("slice", [x], {"index": tuple(slices)})
    if drop:
        out = reshape(out, tuple(d for k, d in enumerate(out.shape) if k not in drop))
    return out


# ============================================================================ Node's operators
# graph.py defines Node without operators (the graph layer needs no op); they are the builders
# above, with NumPy's semantics (comparisons give 0/1).

def _reflected(builder):
    return lambda self, other: builder(other, self)


for _name, _method in {
        "__add__": add, "__radd__": _reflected(add),
        "__sub__": subtract, "__rsub__": _reflected(subtract),
        "__mul__": multiply, "__rmul__": _reflected(multiply),
        "__truediv__": divide, "__rtruediv__": _reflected(divide),
        "__pow__": power, "__rpow__": _reflected(power),
        "__matmul__": matmul, "__rmatmul__": _reflected(matmul),
        "__neg__": negative, "__pos__": lambda self: self, "__abs__": abs,
        "__gt__": greater, "__lt__": _reflected(greater),
        "__ge__": greater_equal, "__le__": _reflected(greater_equal),
        "__getitem__": getitem,
        "T": property(lambda self: transpose(self)),
        "sum": lambda self, axis=None, keepdims=False: sum(self, axis, keepdims),
        "mean": lambda self, axis=None, keepdims=False: mean(self, axis, keepdims),
        "max": lambda self, axis=None, keepdims=False: max(self, axis, keepdims),
        "reshape": lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape),
        "transpose": lambda self, *axes: transpose(self, axes or None)}.items():
    setattr(Node, _name, _method)
del _name, _method
