"""The graph: immutable, interned tensor nodes.

In: user calls (`placeholder`, `Variable`, `constant`, operators and functions on nodes).
Out: `Node` objects, each `(op, inputs, attrs)` with a static `shape` (ints, or expressions over
size symbols for sizes known only at call time: dims.py) and `dtype`. Equal nodes are one object (hash-consing), which gives
common-subexpression elimination for free. Also: iterative graph walks (`topological_order`).

A node never changes once built; differentiation and rewriting build new nodes beside it.
"""
from __future__ import annotations

import hashlib
import itertools
import operator
import weakref

import numpy as np

from . import dims

__all__ = ["ShapeError", "Node", "OPS", "make", "forget", "placeholder", "Variable",
           "constant", "is_named_leaf", "topological_order", "as_node", "FLOAT_DTYPES",
           "INT_DTYPES", "is_integer"]

FLOAT_DTYPES = ("float32", "float64")
# Integers are data, not values to differentiate: class labels, token ids, a generator's key
# and counter. Only the ops that declare `integer_inputs` (ops.py) read them.
INT_DTYPES = ("int64",)

_serials = itertools.count()
_interned: "weakref.WeakValueDictionary[tuple, Node]" = weakref.WeakValueDictionary()


class ShapeError(ValueError):
    """A shape or dtype that an op cannot accept. `problem` says what is wrong; `hint`, how to
    fix it while building the graph (call-time checks report the problem alone)."""

    def __init__(self, problem, hint=None):
        super().__init__(f"{problem} ({hint})" if hint else problem)
        self.problem = problem


def _freeze(value):
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    return value


class Node:
    """One tensor value in the graph. Build nodes with the functions of `symgrad`, not directly.

    Supports NumPy's operators (+ - * / ** @, unary -, comparisons giving 0/1, indexing, .T)."""

    __slots__ = ("op", "inputs", "attrs", "shape", "dtype", "serial", "name", "__weakref__")
    __array_priority__ = 1000  # so `ndarray + node` defers to Node.__radd__

    def __init__(self, op, inputs, attrs, shape, dtype, name=None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.shape = tuple(shape)
        self.dtype = str(dtype)
        self.serial = next(_serials)
        self.name = name

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        shape = "(" + ", ".join(dims.text(d) for d in self.shape) + ")"
        label = f" '{self.name}'" if self.name else ""
        return f"<{self.op}{label} {shape} {self.dtype} #{self.serial}>"

    def __hash__(self):
        return self.serial

    def __eq__(self, other):
        return self is other

    def __bool__(self):
        raise TypeError("a symbolic tensor has no truth value; use sg.where(cond, a, b) to branch")

    # Pickling (a compiled function sent to another process): a node arrives as a new node,
    # with a serial of that process, so it never takes the place of a node interned there.
    _PICKLED = ("op", "inputs", "attrs", "shape", "dtype", "name")

    def __getstate__(self):
        return {field: getattr(self, field) for field in self._PICKLED}

    def __setstate__(self, state):
        for field, value in state.items():
            object.__setattr__(self, field, value)
        self.serial = next(_serials)

    # NumPy's operators (+ - * / ** @, comparisons, indexing, .T, .sum() ...) are installed by
    # ops.py, where the op builders that own the shape rules are: the graph layer needs no op.


# The op table: op name -> its record (ops.Op), filled by ops.py as it defines each op. `make`
# reads the shape rule from it.
OPS: dict = {}


def make(op_name, inputs, attrs=None, *, name=None):
    """The one way nodes are built: check the op's shape rule, then intern the node."""
    op = OPS[op_name]
    attrs = {k: _freeze(v) for k, v in (attrs or {}).items()}
    inputs = tuple(inputs)
    for k, node in enumerate(inputs):
        if is_integer(node) and k not in op.integer_inputs:
            raise ShapeError(f"{op_name}: input {k} is an {node.dtype} tensor; this op takes "
                             f"floats", "convert it with sg.cast(x, 'float32')")
    shape, dtype = op.infer(inputs, attrs)
    # None (an extension op's rule may give it): a fresh size, bound when the value is computed
    shape = tuple(d if type(d) is int else dims.as_dim(d, hint=f"{op_name}.{axis}")
                  for axis, d in enumerate(shape))
    # sorted by name (names are unique; sorting by the values' text would print every body)
    key = (op_name, tuple(i.serial for i in inputs),
           tuple(sorted(attrs.items(), key=operator.itemgetter(0))))
    node = _interned.get(key)
    if node is None:
        node = Node(op_name, inputs, attrs, shape, dtype, name=name)
        _interned[key] = node
    return node


def forget(op_name):
    """Drop the interned nodes of `op_name` (an op being redefined: new nodes follow the new
    definition)."""
    for key in [k for k in list(_interned.keys()) if k[0] == op_name]:
        _interned.pop(key, None)


# ------------------------------------------------------------------------------ leaves

def _check_dtype(dtype):
    dtype = np.dtype(dtype).name
    if dtype not in FLOAT_DTYPES + INT_DTYPES:
        raise TypeError(f"dtype {dtype!r} is not supported; use one of "
                        f"{FLOAT_DTYPES + INT_DTYPES} (int64 for labels and indices)")
    return dtype


def is_integer(node):
    return node.dtype in INT_DTYPES


def placeholder(name, shape, dtype="float32"):
    """An input given at call time. In `shape`, `None` is a size known only then (the batch),
    and a name such as "batch" is a size known only then that every shape saying "batch"
    shares (the call is refused if their arrays disagree). A size may also be an expression
    over such sizes (dims.py)."""
    if isinstance(shape, (int, np.integer, str)) or shape is None:
        shape = (shape,)
    given = shape
    try:
        shape = tuple(dims.as_dim(d, hint=f"{name}.{axis}") for axis, d in enumerate(shape))
    except (TypeError, ValueError) as error:
        raise TypeError(f"placeholder '{name}': shape {given!r} must be a tuple of sizes "
                        f"(int >= 0, None for a size known only at call time, or a name "
                        f"such as 'batch' for one shared by several inputs): {error}") from None
    if any(dims.is_known(d) and d < 0 for d in shape):
        raise ValueError(f"placeholder '{name}': shape {given!r} has a negative size; sizes "
                         f"are int >= 0, or None for a size known only at call time")
    return Node("placeholder", (), {"name": name}, shape, _check_dtype(dtype), name=name)


class Variable(Node):
    """State that lives between calls (weights): holds a NumPy array, updated in place by
    compiled functions with `updates`. Its shape and dtype are fixed at creation."""

    __slots__ = ("_value",)
    _PICKLED = Node._PICKLED + ("_value",)  # a Variable travels with its value

    def __init__(self, value, name=None, dtype=None):
        value = np.array(value, dtype=dtype if dtype is not None else None, copy=True)
        if dtype is None and value.dtype.kind in "iub":
            value = value.astype("float32")
        dtype = _check_dtype(value.dtype)
        super().__init__("variable", (), {}, value.shape, dtype, name=name or "variable")
        self._value = np.array(value, order="C")  # (ascontiguousarray would make 0-d 1-d)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, new):
        new = np.asarray(new)
        if new.shape != self.shape:
            raise ValueError(f"Variable '{self.name}' has shape {self.shape}; "
                             f"cannot assign a value of shape {new.shape}")
        self._value[...] = new.astype(self.dtype, copy=False)


def constant(value, dtype=None):
    """A fixed array in the graph. Python scalars take float32 unless `dtype` says otherwise."""
    value = np.asarray(value, dtype=dtype)
    if dtype is None and value.dtype.kind in "iub" or value.dtype == np.float16:
        value = value.astype("float32")
    value = np.array(value, order="C")
    dtype = _check_dtype(value.dtype)
    digest = hashlib.sha1(value.tobytes()).hexdigest()
    key = ("constant", (), (("digest", digest), ("dtype", dtype), ("shape", value.shape)))
    node = _interned.get(key)
    if node is None:
        node = Node("constant", (), {"value": value}, value.shape, dtype)
        _interned[key] = node
    return node


def is_named_leaf(node):
    """A placeholder or a Variable: a leaf whose value the caller names and gives (unlike a
    constant)."""
    return node.op in ("placeholder", "variable")


# ------------------------------------------------------------------------------ walks

def topological_order(outputs, stop=frozenset()):
    """All nodes that `outputs` depend on, inputs before users. Iterative: any depth works.
    Nodes in `stop` are listed but not looked through (their inputs are not visited)."""
    order, state = [], {}
    for root in outputs:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                if state[node] != 2:
                    state[node] = 2
                    order.append(node)
                continue
            if node in state:
                continue
            state[node] = 1
            stack.append((node, True))
            for parent in reversed(node.inputs if node not in stop else ()):
                if parent not in state:
                    stack.append((parent, False))
    return order


def as_node(value, like=None):
    """Wrap a Python or NumPy value as a constant (with `like`'s dtype for bare scalars)."""
    if isinstance(value, Node):
        return value
    array = np.asarray(value)
    if like is not None and array.dtype.kind in "iufb" and (array.ndim == 0 or
                                                           not isinstance(value, np.ndarray)):
        return constant(array.astype(like.dtype))
    return constant(array)
