"""Random symgrad graphs for differential testing (tests/test_fuzz.py).

A *batch* is 15-25 random graphs over one shared pool of float64 placeholders, all compiled
in one `sg.function` (Numba compile time is per function, so one compile checks many graphs).
Every graph is built top-down from a target shape, so every composition is valid, and carries
beside its node:

- `ref`: the same computation written directly in NumPy (the independent value oracle, whose
  central differences check every derivative);
- `src`: Python source that rebuilds it (`p0`, `p1`, ... are the batch's placeholders), printed
  with every failure so that it can be reproduced by hand;
- the kinks it meets (relu, abs, maximum, comparisons, max reductions, ...): its NumPy reference
  records, at the point evaluated, the distance of each kink's argument from the kink, so
  central differences are used only where the graph is smooth around the point.

Shapes are tuples of size *classes*: an int is a static size, ("B", k) is k times the batch
size, chosen at call time (0, 1 or odd). A placeholder axis of class ("B", k) is declared None;
one of a static class may be declared None too (its size is then given only at call time,
and must meet the fixed sizes of the graph).

`check_batch` compiles the batch (simplify=True and simplify=False), calls it at each batch
size, and compares: compiled == interpreter for the values, gradients, JVPs and HVPs;
interpreter == NumPy reference for the values; gradients, JVPs and HVPs == central
differences. It returns a list of problems (strings); the tests assert that it is empty.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field

import numpy as np

import symgrad as sg
from symgrad import nn
from symgrad.compiler import lanes
from symgrad.core.graph import topological_order

F64 = "float64"
KINK_MARGIN = 1e-2      # central differences only where every kink is at least this far
FD_EPS, FD_RTOL = 1e-6, 1e-4
HVP_EPS = 1e-5
RTOL = 1e-6             # compiled vs interpreter, interpreter vs NumPy
MAG_LIMIT = 1e3         # values are kept below this (bigger ones go through tanh)


# ================================================================================ NumPy oracle

def np_logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) over `axis` (int, tuple or None), stable (as scipy.special)."""
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros([1] * x.ndim)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out


def np_log_softmax(x, axis):
    return x - np_logsumexp(x, axis, keepdims=True)


def np_softmax(x, axis):
    return np.exp(np_log_softmax(x, axis))


def np_sigmoid(x):
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))),
                        np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def np_softplus(x):
    return np.logaddexp(0.0, x)


def _axes_tuple(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted({a % ndim for a in axes}))


def top2_gap(x, axes):
    """Per reduced group, the gap between the largest and the second largest value (inf for
    groups of one element): the distance of a max reduction from a tie."""
    if not axes or x.size == 0:
        return np.array([np.inf])
    moved = np.moveaxis(x, axes, list(range(x.ndim - len(axes), x.ndim)))
    flat = moved.reshape(moved.shape[:x.ndim - len(axes)] + (-1,))
    if flat.shape[-1] < 2 or flat.size == 0:
        return np.array([np.inf])
    s = np.sort(flat, axis=-1)
    return s[..., -1] - s[..., -2]


# ================================================================================ expressions

@dataclass
class Expr:
    node: object
    cls: tuple               # size classes: int (static) or ("B", k)
    ref: object              # Env -> np.ndarray
    src: str
    mag: float               # a bound on |value|
    low: float = 0.0         # for positive expressions: a lower bound (> 0), else 0

    @property
    def ndim(self):
        return len(self.cls)


class Env:
    """Values of the placeholders at one point, and the kink margins met evaluating there."""

    def __init__(self, values, batch):
        self.values = values   # placeholder name -> array
        self.batch = batch
        self.margins = []

    def margin(self, array):
        a = np.asarray(array, dtype=float)
        if a.size:
            self.margins.append(float(np.nanmin(np.abs(a))) if not np.all(np.isnan(a)) else 0.0)


def runtime_size(c, batch):
    return c if isinstance(c, int) else c[1] * batch


def is_runtime(c):
    return not isinstance(c, int)


@dataclass
class Leaf:
    name: str
    cls: tuple
    declared: tuple
    kind: str                 # normal | pos | ternary | tie | simplex:AXIS | labels:AXIS | unit
    node: object
    tangent: object = None

    @property
    def differentiable(self):
        return self.kind in ("normal", "pos", "unit", "tie") or \
            self.kind.startswith(("simplex", "labels", "dlabels"))

    def sample(self, rng, batch):
        shape = tuple(runtime_size(c, batch) for c in self.cls)
        kind, _, axis = self.kind.partition(":")
        if kind == "normal":
            return rng.uniform(-2.0, 2.0, shape)
        if kind == "pos":
            return rng.uniform(0.5, 2.0, shape)
        if kind == "unit":
            return rng.uniform(0.05, 0.95, shape)
        if kind == "ternary":
            return rng.integers(-1, 2, shape).astype(float)
        if kind == "tie":
            return rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], shape)
        axis = int(axis)
        if kind == "simplex":
            e = rng.uniform(0.2, 1.0, shape)
            with np.errstate(invalid="ignore"):
                return e / e.sum(axis=axis, keepdims=True)
        if kind in ("labels", "dlabels"):
            # rows along `axis`: one-hot, probabilities, unnormalised, and all-zero rows
            moved = np.moveaxis(np.zeros(shape), axis, -1)
            flat = moved.reshape(-1, moved.shape[-1]) if moved.size else moved.reshape(0, 1)
            for row in flat:
                # declared labels (sum to 1): one-hot or probability rows only
                style = rng.integers(0, 2 if kind == "dlabels" else 4)
                if style == 0:
                    row[rng.integers(0, len(row))] = 1.0
                elif style == 1:
                    e = rng.uniform(0.1, 1.0, len(row))
                    row[:] = e / e.sum()
                elif style == 2:
                    row[:] = rng.uniform(0.0, 1.5, len(row))
            return np.moveaxis(flat.reshape(moved.shape), -1, axis) if moved.size else np.zeros(shape)
        raise ValueError(kind)

    def direction(self, rng, batch):
        """A tangent direction: 0 for discrete inputs, summing to 0 along a declared axis."""
        shape = tuple(runtime_size(c, batch) for c in self.cls)
        v = rng.standard_normal(shape)
        kind, _, axis = self.kind.partition(":")
        if kind in ("ternary", "dlabels"):
            return np.zeros(shape)
        if kind == "simplex" and v.size:
            v = v - v.mean(axis=int(axis), keepdims=True)
        return v


class Incompatible(Exception):
    """A composition symgrad's rules do not allow (not a bug): try another one."""


def _static_shape(node):
    return tuple(getattr(node, "shape", ()))


def check_fits(*exprs):
    """Operands of a broadcasting op must broadcast by symgrad's rules too: a size that is
    unknown (None) when the graph is built is assumed equal to the other operands' sizes,
    never broadcast, so an operand whose size is 1 at run time but None in the graph cannot
    meet another size."""
    n = max(len(e.cls) for e in exprs)
    for k in range(1, n + 1):
        here = [(e.cls[-k], _static_shape(e.node)[-k]) for e in exprs if len(e.cls) >= k]
        if any(c != 1 for c, _ in here) and any(c == 1 and d is None for c, d in here):
            raise Incompatible()


class Generator:
    """Draws the graphs of one batch from a NumPy generator (seeded by hypothesis)."""

    UNARY = ["negative", "exp", "log", "tanh", "sigmoid", "relu", "leaky_relu", "hard_tanh",
             "softplus", "softsign", "abs", "sin", "cos", "sqrt", "square", "power_const",
             "rpow_const", "greater_value"]
    BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power"]

    def __init__(self, rng, profile="mixed", empty=False, ties=False):
        self.rng = rng
        self.profile = profile
        self.empty = empty          # the batch is also called with batch size 0
        self.ties = ties            # leaves take a few repeated values: ties and kinks
        self.leaves: dict = {}      # (cls, kind, declared) -> Leaf
        self.order: list = []
        self.build_errors: list = []
        self.zero_sizes = empty and self.coin(0.3)   # static sizes 0 too

    # ---------------------------------------------------------------- choices
    def choice(self, options):
        options = list(options)
        return options[int(self.rng.integers(0, len(options)))]

    def integer(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def coin(self, p):
        return bool(self.rng.random() < p)

    # ---------------------------------------------------------------- shapes
    def size_class(self, allow_batch=True):
        if allow_batch and self.coin(0.35):
            return ("B", 1)
        if self.zero_sizes and self.coin(0.08):
            return 0
        return self.choice([1, 2, 2, 3, 3, 4, 5])

    def shape_classes(self, lo=0, hi=3):
        rank = self.integer(lo, hi)
        cls = [self.size_class() for _ in range(rank)]
        return tuple(cls)

    def sub_classes(self, cls):
        """A shape that broadcasts to `cls`: leading axes dropped, some axes set to 1."""
        drop = self.integer(0, len(cls)) if self.coin(0.5) else 0
        out = list(cls[drop:])
        for k in range(len(out)):
            if self.coin(0.3):
                out[k] = 1
        return tuple(out)

    def empty_risk(self, c):
        """Reducing a max-like op along an axis of class `c` fails where it can be empty."""
        return self.empty and (is_runtime(c) or c == 0)

    # ---------------------------------------------------------------- leaves
    def leaf(self, cls, kind=None):
        if kind is None:
            kind = "tie" if self.ties else self.choice(["normal"] * 4 + ["pos"])
        declared = tuple(None if is_runtime(c) or (c not in (0, 1) and self.coin(0.2)) else c
                         for c in cls)
        key = (cls, kind, declared)
        existing = [l for k, l in self.leaves.items() if k[:2] == (cls, kind)]
        if existing and self.coin(0.6):
            leaf = self.choice(existing)
        elif key in self.leaves:
            leaf = self.leaves[key]
        else:
            name = f"p{len(self.order)}"
            node = sg.placeholder(name, declared, F64)
            leaf = Leaf(name, cls, declared, kind, node)
            leaf.tangent = sg.placeholder(f"t{len(self.order)}", declared, F64)
            self.leaves[key] = leaf
            self.order.append(leaf)
        name = leaf.name
        lo = {"pos": 0.5, "unit": 0.05}.get(kind, 0.0)
        mag = {"normal": 2.0, "pos": 2.0, "unit": 1.0}.get(kind.partition(":")[0], 1.5)
        return Expr(leaf.node, cls, lambda env: env.values[name], name, mag, lo)

    def constant_array(self, cls):
        shape = tuple(cls)
        value = self.rng.choice([-1.5, -0.5, 0.25, 0.5, 1.0, 2.0], shape)
        node = sg.constant(value.astype(F64))
        text = np.array2string(value, separator=", ").replace("\n", "")
        return Expr(node, cls, lambda env: value, f"sg.constant(np.array({text}))",
                    float(np.max(np.abs(value), initial=0.0)))

    # ---------------------------------------------------------------- generation
    def weights(self, depth):
        p = self.profile
        w = {"leaf": 3 if depth <= 0 else 1, "unary": 4, "binary": 4, "scalar": 1, "where": 1,
             "compare": 1, "const": 0.3}
        if depth <= 0:
            return {"leaf": 1}
        if p in ("structure", "mixed", "empty"):
            w.update(slice=2, index=1, reshape=1.5, transpose=1, concat=1, matmul=1.5, take=1)
        if p in ("reduce", "mixed", "empty", "ties"):
            w.update(reduce=3, softmax=1.5, distribution=0.7, argmax=0.7)
        if p == "ties":
            # no sum(distribution(p) * s): its rewrite to s is exact in real numbers but not in
            # rounding (Σp is 1 within an ulp), so it can make or break a tie that a max or
            # minimum then decides differently; the other profiles check that rewrite
            w.update(unary=2, binary=4, reduce=4)
            del w["distribution"]
        return w

    def gen(self, cls, depth):
        """An expression whose shape classes are `cls`."""
        cls = tuple(cls)
        w = self.weights(depth)
        names = sorted(w)
        for _ in range(8):
            kind = self.choice([n for n in names for _ in range(int(w[n] * 2) or 1)])
            try:
                result = getattr(self, f"gen_{kind}")(cls, depth - 1)
            except Incompatible:
                result = None
            except (sg.ShapeError, ValueError, TypeError, IndexError) as error:
                # symgrad refused a valid composition: recorded as a problem of the batch
                self.build_errors.append(f"building a {kind} of shape classes {cls}: "
                                         f"{type(error).__name__}: {error}")
                result = None
            if result is not None:
                return self.bounded(result)
        return self.gen_leaf(cls, 0)

    def bounded(self, e):
        if e.mag > MAG_LIMIT:
            return self.apply_unary("tanh", e)
        return e

    def gen_leaf(self, cls, depth):
        return self.leaf(cls)

    def gen_const(self, cls, depth):
        if any(is_runtime(c) for c in cls) or math.prod(cls) > 30:
            return None
        return self.constant_array(cls)

    # -------------------------------------------------- elementwise
    def positive(self, e):
        """A positive expression made from `e` (lower bound >= ~0.01), for log/sqrt/divide."""
        if e.low > 0:
            return e
        how = self.choice(["exp", "square", "softplus", "sigmoid", "abs", "sqrtsq", "max", "relu",
                           "leaf"])
        c = self.choice([0.5, 1.0])
        if how == "exp":
            a = e if e.mag <= 4 else self.apply_unary("tanh", e)
            r = self.apply_unary("exp", a)
            r.low = math.exp(-a.mag)
            return r
        if how == "square":
            return self.scalar_op(self.apply_unary("square", self.shrink(e)), "+", c, low=c)
        if how == "softplus":
            return self.scalar_op(self.apply_unary("softplus", e), "+", c, low=c)
        if how == "sigmoid":
            a = e if e.mag <= 4 else self.apply_unary("tanh", e)
            r = self.apply_unary("sigmoid", a)
            r.low = 1.0 / (1.0 + math.exp(a.mag))
            return r
        if how == "abs":
            return self.scalar_op(self.apply_unary("abs", e), "+", c, low=c)
        if how == "sqrtsq":
            inner = self.scalar_op(self.apply_unary("square", self.shrink(e)), "+", c, low=c)
            r = self.apply_unary("sqrt", inner)
            r.low = math.sqrt(c)
            return r
        if how == "max":
            r = self.binary("maximum", e, self.scalar_expr(c, e))
            r.low = c
            return r
        if how == "relu":
            return self.scalar_op(self.apply_unary("relu", e), "+", c, low=c)
        return self.leaf(e.cls, "pos")

    def shrink(self, e):
        return e if e.mag <= 10 else self.apply_unary("tanh", e)

    def scalar_expr(self, c, like):
        return Expr(c, (), lambda env: c, repr(c), abs(c), c if c > 0 else 0.0)

    def scalar_op(self, e, op, c, low=0.0):
        node = {"+": lambda: e.node + c, "-": lambda: e.node - c, "*": lambda: e.node * c,
                "r-": lambda: c - e.node, "/": lambda: e.node / c}[op]()
        fn = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
        ref = e.ref
        if op == "r-":
            r = lambda env: c - ref(env)
            src = f"({c!r} - {e.src})"
        else:
            f = fn[op]
            r = lambda env: f(ref(env), c)
            src = f"({e.src} {op} {c!r})"
        mag = {"+": e.mag + abs(c), "-": e.mag + abs(c), "r-": e.mag + abs(c),
               "*": e.mag * abs(c), "/": e.mag / abs(c)}[op]
        return Expr(node, e.cls, r, src, mag, low)

    def apply_unary(self, op, e, **kw):
        ref, src = e.ref, e.src
        if op == "negative":
            node, f, text, mag = -e.node, np.negative, f"(-{src})", e.mag
        elif op == "exp":
            node, f, text, mag = sg.exp(e.node), np.exp, f"sg.exp({src})", math.exp(min(e.mag, 700))
        elif op == "log":
            node, f, text, mag = sg.log(e.node), np.log, f"sg.log({src})", \
                max(abs(math.log(max(e.low, 1e-300))), math.log(max(e.mag, 1.0)))
        elif op == "tanh":
            node, f, text, mag = sg.tanh(e.node), np.tanh, f"sg.tanh({src})", 1.0
        elif op == "sigmoid":
            node, f, text, mag = sg.sigmoid(e.node), np_sigmoid, f"sg.sigmoid({src})", 1.0
        elif op == "relu":
            def f(a, env):
                env.margin(a)
                return np.maximum(a, 0.0)
            node, text, mag = sg.relu(e.node), f"sg.relu({src})", e.mag
        elif op == "leaky_relu":
            alpha = kw.get("alpha", 0.1)
            def f(a, env, alpha=alpha):
                env.margin(a)
                return np.where(a > 0, a, alpha * a)
            node, text, mag = sg.leaky_relu(e.node, alpha), f"sg.leaky_relu({src}, {alpha!r})", e.mag
        elif op == "hard_tanh":
            def f(a, env):
                env.margin(a - 1.0)  # kinks at ±1
                env.margin(a + 1.0)
                return np.clip(a, -1.0, 1.0)
            node, text, mag = sg.hard_tanh(e.node), f"sg.hard_tanh({src})", min(e.mag, 1.0)
        elif op == "softplus":
            node, f, text, mag = sg.softplus(e.node), np_softplus, f"sg.softplus({src})", e.mag + 1
        elif op == "softsign":
            def f(a, env):
                env.margin(a)   # softsign'' jumps at 0: the HVP's central differences
                return a / (1 + np.abs(a))
            node, text, mag = sg.softsign(e.node), f"sg.softsign({src})", 1.0
        elif op == "abs":
            def f(a, env):
                env.margin(a)
                return np.abs(a)
            node, text, mag = (sg.abs(e.node), f"sg.abs({src})", e.mag) if self.coin(0.5) else \
                (abs(e.node), f"abs({src})", e.mag)
        elif op == "sin":
            node, f, text, mag = sg.sin(e.node), np.sin, f"sg.sin({src})", 1.0
        elif op == "cos":
            node, f, text, mag = sg.cos(e.node), np.cos, f"sg.cos({src})", 1.0
        elif op == "sqrt":
            node, f, text, mag = sg.sqrt(e.node), np.sqrt, f"sg.sqrt({src})", math.sqrt(e.mag)
        elif op == "square":
            node, f, text, mag = sg.square(e.node), np.square, f"sg.square({src})", e.mag ** 2
        else:
            raise ValueError(op)
        takes_env = op in ("relu", "leaky_relu", "hard_tanh", "softsign", "abs")
        r = (lambda env: f(ref(env), env)) if takes_env else (lambda env: f(ref(env)))
        return Expr(node, e.cls, r, text, mag)

    def gen_unary(self, cls, depth):
        op = self.choice(self.UNARY)
        e = self.gen(cls, depth)
        if op in ("log", "sqrt"):
            p = self.positive(e)
            out = self.apply_unary(op, p)
            return out
        if op == "exp" and e.mag > 4:
            e = self.apply_unary("tanh", e)
        if op == "square":
            e = self.shrink(e)
        if op == "leaky_relu":
            return self.apply_unary(op, e, alpha=self.choice([0.01, 0.2, 0.5]))
        if op == "power_const":
            k = self.choice([2, 3, 0.5, 2.5, -1.0, -0.5, 1.5])
            base = self.positive(e) if not (isinstance(k, int)) else self.shrink(e)
            if isinstance(k, int) and base.mag > 10:
                base = self.apply_unary("tanh", base)
            ref = base.ref
            mag = base.mag ** k if k > 0 else base.low ** k
            return Expr(base.node ** k, cls, lambda env: np.power(ref(env), k),
                        f"({base.src} ** {k!r})", mag)
        if op == "rpow_const":
            a = e if e.mag <= 4 else self.apply_unary("tanh", e)
            ref = a.ref
            return Expr(2.0 ** a.node, cls, lambda env: np.power(2.0, ref(env)),
                        f"(2.0 ** {a.src})", 2.0 ** a.mag, 2.0 ** -a.mag)
        if op == "greater_value":
            other = self.gen(self.sub_classes(cls), depth)
            return self.compare(self.choice([">", "<", ">=", "<=", "eq"]), e, other)
        return self.apply_unary(op, e)

    def compare(self, how, a, b, kink=True):
        """0/1 comparison of a and b (broadcasting), as a value. `kink`: a jump of the value
        where a == b (not when a and b are inputs that are never perturbed)."""
        check_fits(a, b)
        ra, rb = a.ref, b.ref
        if how == "eq":
            node, text = sg.equal(a.node, b.node), f"sg.equal({a.src}, {b.src})"
            f = lambda x, y: (x == y).astype(float)
        elif how == ">":
            node, text = ((a.node > b.node), f"({a.src} > {b.src})") if self.coin(0.5) else \
                (sg.greater(a.node, b.node), f"sg.greater({a.src}, {b.src})")
            f = lambda x, y: (x > y).astype(float)
        elif how == "<":
            node, text = (a.node < b.node), f"({a.src} < {b.src})"
            f = lambda x, y: (x < y).astype(float)
        elif how == ">=":
            node, text = ((a.node >= b.node), f"({a.src} >= {b.src})") if self.coin(0.5) else \
                (sg.greater_equal(a.node, b.node), f"sg.greater_equal({a.src}, {b.src})")
            f = lambda x, y: (x >= y).astype(float)
        else:
            node, text = (a.node <= b.node), f"({a.src} <= {b.src})"
            f = lambda x, y: (x <= y).astype(float)

        def r(env):
            x, y = ra(env), rb(env)
            if kink:
                env.margin(np.subtract(x, y))
            return f(x, y)
        return Expr(node, tuple(self._bcast(a.cls, b.cls)), r, text, 1.0)

    @staticmethod
    def _bcast(ca, cb):
        n = max(len(ca), len(cb))
        ca = (1,) * (n - len(ca)) + tuple(ca)
        cb = (1,) * (n - len(cb)) + tuple(cb)
        return [b if a == 1 else a for a, b in zip(ca, cb)]

    def binary(self, op, a, b):
        check_fits(a, b)
        ra, rb = a.ref, b.ref
        cls = tuple(self._bcast(a.cls, b.cls))
        if op in ("add", "subtract", "multiply", "divide") and self.coin(0.5):
            sym = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}[op]
            node = {"+": lambda: a.node + b.node, "-": lambda: a.node - b.node,
                    "*": lambda: a.node * b.node, "/": lambda: a.node / b.node}[sym]()
            text = f"({a.src} {sym} {b.src})"
        else:
            node = getattr(sg, op)(a.node, b.node)
            text = f"sg.{op}({a.src}, {b.src})"
        if op in ("maximum", "minimum"):
            f0 = getattr(np, op)

            def r(env):
                x, y = ra(env), rb(env)
                env.margin(np.subtract(x, y))
                return f0(x, y)
        else:
            f1 = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply,
                  "divide": np.divide, "power": np.power}[op]
            r = lambda env: f1(ra(env), rb(env))
        mag = {"add": a.mag + b.mag, "subtract": a.mag + b.mag, "multiply": a.mag * b.mag,
               "divide": a.mag / max(b.low, 1e-3), "maximum": max(a.mag, b.mag),
               "minimum": max(a.mag, b.mag),
               "power": max(max(a.mag, 1.0) ** b.mag, (1 / a.low) ** b.mag) if a.low else 1e9}[op]
        low = min(a.low, b.low) if op in ("maximum", "minimum") else 0.0
        if op == "maximum":
            low = max(a.low, b.low)
        return Expr(node, cls, r, text, mag, low)

    def gen_binary(self, cls, depth):
        op = self.choice(self.BINARY)
        a = self.gen(cls, depth)
        b = self.gen(self.sub_classes(cls), depth)
        if self.coin(0.5):
            a, b = b, a
        if op == "divide":
            b = self.positive(b)
            if self.coin(0.3):
                b = self.apply_unary("negative", b)
                b.low = 0.0
                bb = b
                b = Expr(bb.node, bb.cls, bb.ref, bb.src, bb.mag, 0.01)  # |b| bounded below
        if op == "power":
            a = self.positive(a)
            b = b if b.mag <= 3 else self.apply_unary("tanh", b)
        if op == "multiply" and a.mag * b.mag > MAG_LIMIT:
            a, b = self.shrink(a), self.shrink(b)
        if len(self._bcast(a.cls, b.cls)) != len(cls) or tuple(self._bcast(a.cls, b.cls)) != cls:
            return None
        return self.binary(op, a, b)

    def gen_scalar(self, cls, depth):
        e = self.gen(cls, depth)
        op = self.choice(["+", "-", "*", "r-", "/"])
        c = self.choice([0.5, 2.0, -1.5, 3.0, 0.25])
        return self.scalar_op(e, op, c)

    def gen_compare(self, cls, depth):
        a = self.gen(cls, depth)
        b = self.gen(self.sub_classes(cls), depth)
        return self.compare(self.choice([">", "<", ">=", "<=", "eq"]), a, b)

    def condition(self, cls, depth):
        how = self.choice(["compare", "ternary", "ternary_eq"])
        if how == "compare":
            sub = self.sub_classes(cls)
            a, b = self.gen(sub, depth), self.gen(self.sub_classes(sub), depth)
            return self.compare(self.choice([">", "<", ">=", "<=", "eq"]), a, b)
        c = self.leaf(self.sub_classes(cls), "ternary")
        if how == "ternary":
            zero = Expr(sg.constant(np.zeros((), F64)), (), lambda env: 0.0,
                        "sg.constant(np.zeros((), 'float64'))", 0.0)
            return self.compare(self.choice([">", "<", ">="]), c, zero, kink=False)
        rc = c.ref
        return Expr(sg.equal(c.node, 0.0), c.cls, lambda env: (rc(env) == 0).astype(float),
                    f"sg.equal({c.src}, 0.0)", 1.0)

    def gen_where(self, cls, depth):
        cond = self.condition(cls, depth)
        a = self.gen(cls if self.coin(0.6) else self.sub_classes(cls), depth)
        b = self.gen(cls, depth) if self.coin(0.8) else None
        check_fits(*[e for e in (cond, a, b) if e is not None])
        rc, ra = cond.ref, a.ref
        if b is None:
            c = self.choice([0.0, 2.0, -1.0])
            node = sg.where(cond.node, a.node, c)
            r = lambda env: np.where(rc(env) != 0, ra(env), c)
            text = f"sg.where({cond.src}, {a.src}, {c!r})"
            mag = max(a.mag, abs(c))
            out_cls = self._bcast(cond.cls, a.cls)
        else:
            rb = b.ref
            node = sg.where(cond.node, a.node, b.node)
            r = lambda env: np.where(rc(env) != 0, ra(env), rb(env))
            text = f"sg.where({cond.src}, {a.src}, {b.src})"
            mag = max(a.mag, b.mag)
            out_cls = self._bcast(self._bcast(cond.cls, a.cls), b.cls)
        if tuple(out_cls) != cls:
            return None
        return Expr(node, cls, r, text, mag)

    # -------------------------------------------------- reductions and the softmax family
    def gen_reduce(self, cls, depth):
        op = self.choice(["sum", "mean", "max", "logsumexp", "max", "sum"])
        keepdims = self.coin(0.35)
        form = self.choice(["int", "int", "tuple", "none"])
        if keepdims:
            ones = [k for k, c in enumerate(cls) if c == 1]
            if not ones:
                return None
            if form == "none":
                if any(c != 1 for c in cls):
                    return None
                axes = list(range(len(cls)))
            else:
                axes = [self.choice(ones)] if form == "int" else \
                    sorted(set(self.choice(ones) for _ in range(self.integer(1, 2))))
            in_cls = list(cls)
            for k in axes:
                in_cls[k] = self.size_class()
            ndim = len(cls)
        else:
            if form == "none":
                if cls != ():
                    return None
                in_cls = list(self.shape_classes(1, 3))
                axes = list(range(len(in_cls)))
            else:
                n_new = 1 if form == "int" else self.integer(1, 2)
                in_cls = list(cls)
                axes = []
                for _ in range(n_new):
                    pos = self.integer(0, len(in_cls))
                    in_cls.insert(pos, self.size_class())
                    axes = [a + 1 if a >= pos else a for a in axes] + [pos]
                axes = sorted(axes)
            ndim = len(in_cls)
        if op in ("max", "logsumexp") and any(self.empty_risk(in_cls[k]) for k in axes):
            return None
        x = self.gen(tuple(in_cls), depth)
        if op == "logsumexp" and x.mag > 50:
            x = self.apply_unary("tanh", x)
        # the axis argument as a user writes it
        if form == "none":
            axis_arg = None
        elif form == "int":
            axis_arg = axes[0] - ndim if self.coin(0.4) else axes[0]
        else:
            axis_arg = tuple(a - ndim if self.coin(0.3) else a for a in axes)
            if self.coin(0.3):
                axis_arg = tuple(reversed(axis_arg))
        fn = getattr(sg, op)
        kd = f", keepdims=True" if keepdims else ""
        text = f"sg.{op}({x.src}, axis={axis_arg!r}{kd})"
        try:
            node = fn(x.node, axis=axis_arg, keepdims=keepdims)
        except Exception as error:  # noqa: BLE001 - recorded as a problem of the batch
            self.build_errors.append(f"building {text}: {type(error).__name__}: {error}")
            return None
        rx = x.ref
        np_axes = tuple(axes)
        size = math.prod(5 if is_runtime(in_cls[k]) else in_cls[k] for k in axes) or 1
        if op == "sum":
            r = lambda env: np.sum(rx(env), axis=np_axes, keepdims=keepdims)
            mag = x.mag * size
        elif op == "mean":
            r = lambda env: np.mean(rx(env), axis=np_axes, keepdims=keepdims)
            mag = x.mag
        elif op == "max":
            def r(env):
                v = rx(env)
                env.margin(top2_gap(v, np_axes))
                return np.max(v, axis=np_axes, keepdims=keepdims)
            mag = x.mag
        else:
            r = lambda env: np_logsumexp(rx(env), axis=np_axes, keepdims=keepdims)
            mag = x.mag + math.log(size + 1)
        return Expr(node, cls, r, text, mag)

    def gen_softmax(self, cls, depth):
        if not cls:
            return None
        axis = self.integer(0, len(cls) - 1)
        if self.empty_risk(cls[axis]):
            return None
        op = self.choice(["softmax", "log_softmax"])
        x = self.gen(cls, depth)
        if x.mag > 50:
            x = self.apply_unary("tanh", x)
        axis_arg = axis - len(cls) if self.coin(0.5) else axis
        if axis_arg == -1 and self.coin(0.5):
            node, text = getattr(sg, op)(x.node), f"sg.{op}({x.src})"
        else:
            node, text = getattr(sg, op)(x.node, axis=axis_arg), f"sg.{op}({x.src}, axis={axis_arg})"
        rx = x.ref
        f = np_softmax if op == "softmax" else np_log_softmax
        mag = 1.0 if op == "softmax" else 2 * x.mag + 5
        return Expr(node, cls, lambda env: f(rx(env), axis), text, mag)

    def gen_distribution(self, cls, depth):
        """sum(distribution(p, axis) * s, axis): what the simplifier's sum_of_distribution
        rule rewrites (s constant along the axis), or a general product."""
        pos = self.integer(0, len(cls))
        in_cls = list(cls)
        in_cls.insert(pos, self.choice([2, 3, 4]))
        in_cls = tuple(in_cls)
        ndim = len(in_cls)
        if self.coin(0.5):
            p = self.leaf(in_cls, f"simplex:{pos}")
        else:
            p = self.gen_softmax_at(in_cls, pos, depth)
        s_cls = list(in_cls)
        if self.coin(0.6):
            s_cls[pos] = 1
        s = self.gen(self.sub_classes(tuple(s_cls)) if self.coin(0.3) else tuple(s_cls), depth)
        if len(self._bcast(in_cls, s.cls)) != ndim or tuple(self._bcast(in_cls, s.cls)) != in_cls:
            return None
        check_fits(p, s)
        axis_arg = pos - ndim if self.coin(0.5) else pos
        d = sg.distribution(p.node, axis=axis_arg)
        node = sg.sum(d * s.node, axis=axis_arg)
        rp, rs = p.ref, s.ref
        text = f"sg.sum(sg.distribution({p.src}, axis={axis_arg}) * {s.src}, axis={axis_arg})"
        return Expr(node, cls, lambda env: np.sum(rp(env) * rs(env), axis=pos), text, s.mag)

    def gen_softmax_at(self, cls, axis, depth):
        x = self.gen(cls, depth)
        if x.mag > 50:
            x = self.apply_unary("tanh", x)
        rx = x.ref
        return Expr(sg.softmax(x.node, axis=axis), cls, lambda env: np_softmax(rx(env), axis),
                    f"sg.softmax({x.src}, axis={axis})", 1.0)

    # -------------------------------------------------- structure
    def gen_slice(self, cls, depth):
        if not cls:
            return None
        k = self.integer(0, len(cls) - 1)
        c = cls[k]
        in_cls = list(cls)
        if is_runtime(c):
            step = self.choice([None, -1])
            sl = slice(None, None, step)
        else:
            m = c
            big = m + self.integer(0, 3)
            step = self.choice([1, 1, 2, -1, -2])
            if m == 0:
                step = 1
            need = (m - 1) * abs(step) + 1 if m else 0
            big = max(big, need)
            in_cls[k] = big
            if m == 0:
                start = self.integer(0, big)
                sl = slice(start, start)
            elif step > 0:
                start = self.integer(0, big - need)
                stop = start + need
                start_arg = start - big if self.coin(0.5) else start
                stop_arg = (stop - big if self.coin(0.3) and stop < big else stop) \
                    if stop < big or self.coin(0.5) else None
                sl = slice(start_arg, stop_arg, step if step != 1 or self.coin(0.3) else None)
            else:
                start = self.integer(need - 1, big - 1)
                stop = start - need   # exclusive, may be -1 (meaning: through index 0)
                start_arg = start - big if self.coin(0.5) else start
                stop_arg = None if stop < 0 else (stop - big if self.coin(0.4) else stop)
                sl = slice(start_arg, stop_arg, step)
            assert len(range(*sl.indices(big))) == m, (sl, big, m)
        x = self.gen(tuple(in_cls), depth)
        index = tuple([slice(None)] * k + [sl])
        rx = x.ref
        text = f"{x.src}[{_index_text(index)}]"
        node = x.node[index]
        return Expr(node, cls, lambda env: rx(env)[index], text, x.mag, x.low)

    def gen_index(self, cls, depth):
        k = self.integer(0, len(cls))
        big = self.choice([1, 2, 3, 4]) if not self.coin(0.3) else ("B", 1)
        if is_runtime(big) and self.empty:
            big = 3
        in_cls = list(cls)
        in_cls.insert(k, big)
        n = 1 if is_runtime(big) else big
        i = self.integer(-n, n - 1)
        x = self.gen(tuple(in_cls), depth)
        if self.coin(0.3) and k == len(in_cls) - 1 and k > 0:
            index, text_index = (Ellipsis, i), f"..., {i}"
        else:
            index = tuple([slice(None)] * k + [i])
            text_index = _index_text(index)
        rx = x.ref
        return Expr(x.node[index], cls, lambda env: rx(env)[index], f"{x.src}[{text_index}]",
                    x.mag, x.low)

    def gen_take(self, cls, depth):
        """sg.take along a static axis, by constant int64 indices (repeats, any order, none
        for an empty axis): the gradient is a scatter-add."""
        axes = [k for k, c in enumerate(cls) if not is_runtime(c)]
        if not axes:
            return None
        k = self.choice(axes)
        n = self.choice([1, 2, 3, 4])
        indices = self.rng.integers(0, n, cls[k])
        in_cls = list(cls)
        in_cls[k] = n
        x = self.gen(tuple(in_cls), depth)
        rx = x.ref
        return Expr(sg.take(x.node, indices, axis=k), cls,
                    lambda env: np.take(rx(env), indices, axis=k),
                    f"sg.take({x.src}, {indices.tolist()}, axis={k})", x.mag, x.low)

    def gen_argmax(self, cls, depth):
        """e · one_hot(argmax(x, last axis)): the factor picks, per row, the column where x is
        largest (piecewise constant in x: a kink wherever two columns tie)."""
        if not cls or is_runtime(cls[-1]) or cls[-1] < 1:
            return None
        e, x = self.gen(cls, depth), self.gen(cls, depth)
        node = e.node * sg.one_hot(sg.argmax(x.node, axis=-1), cls[-1], F64)
        re, rx, n = e.ref, x.ref, cls[-1]

        def r(env):
            v = rx(env)
            env.margin(top2_gap(v, (v.ndim - 1,)))
            return re(env) * np.eye(n)[np.argmax(v, axis=-1)]
        return Expr(node, cls, r, f"{e.src} * sg.one_hot(sg.argmax({x.src}, axis=-1), {n}, 'float64')",
                    e.mag, 0.0)

    def gen_transpose(self, cls, depth):
        if len(cls) < 2:
            return None
        n = len(cls)
        perm = [int(p) for p in self.rng.permutation(n)]
        # out axis j is input axis perm[j]: input cls[perm[j]] = cls[j]
        in_cls = [None] * n
        for j, p in enumerate(perm):
            in_cls[p] = cls[j]
        x = self.gen(tuple(in_cls), depth)
        rx = x.ref
        if perm == list(reversed(range(n))) and self.coin(0.5):
            node, text = x.node.T, f"{x.src}.T"
        else:
            perm_arg = tuple(p - n if self.coin(0.3) else p for p in perm)
            node, text = sg.transpose(x.node, perm_arg), f"sg.transpose({x.src}, {perm_arg})"
        tperm = tuple(perm)
        return Expr(node, cls, lambda env: np.transpose(rx(env), tperm), text, x.mag, x.low)

    def gen_reshape(self, cls, depth):
        options = []
        for k, c in enumerate(cls):
            if c in (4, 6):
                options.append(("split", k))
            if isinstance(c, int) and c >= 1:
                options.append(("unit_in", k))
        for k in range(len(cls) - 1):
            a, b = cls[k], cls[k + 1]
            if isinstance(a, int) and isinstance(b, int) and a * b <= 12 and a > 1 and b > 1:
                options.append(("merge", k))
            if is_runtime(a) and isinstance(b, int) and b > 1:
                options.append(("merge_batch", k))
        if 1 in cls:
            options.append(("drop_unit", cls.index(1)))
        if len(cls) == 1 and not is_runtime(cls[0]) and cls[0] in (4, 6):
            options.append(("flatten", 0))
        if not options:
            return None
        how, k = self.choice(options)
        c = cls[k] if k < len(cls) else None
        if how == "split":       # input has c split in two; output merges them
            a = 2
            in_cls = cls[:k] + (a, c // a) + cls[k + 1:]
        elif how == "merge":     # output has (a, b) where the input had a*b
            in_cls = cls[:k] + (cls[k] * cls[k + 1],) + cls[k + 2:]
        elif how == "merge_batch":
            in_cls = cls[:k] + (("B", cls[k][1] * cls[k + 1]),) + cls[k + 2:]
        elif how == "unit_in":   # input has an extra unit axis
            in_cls = cls[:k] + (1,) + cls[k:]
        elif how == "drop_unit":  # output has a unit axis the input lacks
            in_cls = cls[:k] + cls[k + 1:]
        else:                    # a 1-D output from a 2-D input
            in_cls = (2, c // 2)
        if len(in_cls) > 4:
            return None
        x = self.gen(tuple(in_cls), depth)
        runtime_axes = [j for j, d in enumerate(cls) if is_runtime(d)]
        target = tuple(-1 if (is_runtime(d) and len(runtime_axes) == 1) else
                       (None if is_runtime(d) else d) for d in cls)
        if len(runtime_axes) > 1:
            # several sizes known at call time: state them as multiples of the input's (a
            # symbolic size), where they are
            source = next((i for i, d in enumerate(in_cls) if is_runtime(d)), None)
            if source is None or any(cls[j][1] % in_cls[source][1] for j in runtime_axes):
                return None
            n = x.node.shape[source]
            target = tuple(d if not is_runtime(d) else d[1] // in_cls[source][1] * n for d in cls)
            text_target = ", ".join(str(d) if not is_runtime(d) else
                                    f"{d[1] // in_cls[source][1]} * {x.src}.shape[{source}]"
                                    for d in cls)
        if self.coin(0.3) and not runtime_axes and cls:
            # -1 for one static size too (inferred from the input)
            j = self.integer(0, len(cls) - 1)
            target = tuple(-1 if i == j else d for i, d in enumerate(target))
        text = f"sg.reshape({x.src}, {target!r})" if len(runtime_axes) <= 1 else \
            f"sg.reshape({x.src}, ({text_target},))"
        try:
            node = sg.reshape(x.node, target)
        except sg.ShapeError as error:
            self.build_errors.append(f"building {text}: ShapeError: {error}")
            return None
        rx = x.ref
        cls_t = tuple(cls)

        def r(env):
            return rx(env).reshape(tuple(runtime_size(d, env.batch) for d in cls_t))
        return Expr(node, cls, r, text, x.mag, x.low)

    def gen_concat(self, cls, depth):
        ks = [k for k, c in enumerate(cls) if isinstance(c, int) and c >= 2]
        if not ks:
            return None
        k = self.choice(ks)
        m = cls[k]
        n_parts = self.integer(2, min(3, m))
        cuts = sorted(int(c) for c in self.rng.choice(np.arange(1, m), n_parts - 1, replace=False))
        sizes = [b - a for a, b in zip([0] + cuts, cuts + [m])]
        if self.zero_sizes and self.coin(0.2):
            sizes.append(0)
        parts = []
        for s in sizes:
            p_cls = cls[:k] + (s,) + cls[k + 1:]
            x = self.gen(p_cls, depth)
            if not isinstance(x.node.shape[k], int):
                # the gradient of concatenate needs static sizes along the axis (documented)
                x = self.leaf(p_cls, "normal")
                if not isinstance(x.node.shape[k], int):
                    return None
            parts.append(x)
        axis_arg = k - len(cls) if self.coin(0.4) else k
        node = sg.concatenate([p.node for p in parts], axis=axis_arg)
        refs = [p.ref for p in parts]
        text = f"sg.concatenate([{', '.join(p.src for p in parts)}], axis={axis_arg})"
        return Expr(node, cls, lambda env: np.concatenate([r(env) for r in refs], axis=k), text,
                    max(p.mag for p in parts))

    def gen_matmul(self, cls, depth):
        if len(cls) > 2:
            return None
        q = self.size_class()
        if len(cls) == 2:
            a_cls, b_cls = (cls[0], q), (q, cls[1])
        elif len(cls) == 1:
            a_cls, b_cls = ((cls[0], q), (q,)) if self.coin(0.5) else ((q,), (q, cls[0]))
        else:
            a_cls, b_cls = (q,), (q,)
        a, b = self.shrink(self.gen(a_cls, depth)), self.shrink(self.gen(b_cls, depth))
        ra, rb = a.ref, b.ref
        if self.coin(0.5):
            node, text = a.node @ b.node, f"({a.src} @ {b.src})"
        else:
            node, text = sg.matmul(a.node, b.node), f"sg.matmul({a.src}, {b.src})"
        size = 5 if is_runtime(q) else q
        return Expr(node, cls, lambda env: np.matmul(ra(env), rb(env)), text,
                    a.mag * b.mag * max(size, 1))

    # -------------------------------------------------- losses (scalar roots)
    def gen_loss(self, depth):
        kind = self.choice(["softmax_cross_entropy", "softmax_cross_entropy",
                            "sigmoid_binary_cross_entropy", "mean_squared_error",
                            "gaussian_nll"])
        if kind == "softmax_cross_entropy":
            cls = (("B", 1) if self.coin(0.7) else self.choice([1, 2, 3]),
                   self.choice([1, 2, 3, 4]))
            if self.coin(0.2):
                cls = cls + (self.choice([2, 3]),)
            axis = self.integer(0, len(cls) - 1)
            if self.empty_risk(cls[axis]):
                axis = len(cls) - 1
                if self.empty_risk(cls[axis]):
                    return None
            declared = self.coin(0.6)
            logits = self.gen(cls, depth)
            if logits.mag > 50:
                logits = self.apply_unary("tanh", logits)
            # declared labels are not perturbed: rows that sum to 1 must stay so
            labels = self.leaf(cls, f"{'d' if declared else ''}labels:{axis}")
            axis_arg = axis - len(cls) if self.coin(0.5) else axis
            kw = "" if declared else ", labels_sum_to_one=False"
            text = f"nn.softmax_cross_entropy({logits.src}, {labels.src}, axis={axis_arg}{kw})"
            node = nn.softmax_cross_entropy(logits.node, labels.node, axis=axis_arg,
                                            labels_sum_to_one=declared)
            rl, ry = logits.ref, labels.ref
            r = lambda env: np.mean(-np.sum(ry(env) * np_log_softmax(rl(env), axis), axis=axis))
            return Expr(node, (), r, text, 10 * logits.mag + 10)
        cls = self.shape_classes(1, 2)
        if kind == "sigmoid_binary_cross_entropy":
            logits = self.gen(cls, depth)
            labels = self.leaf(cls, "unit") if self.coin(0.5) or self.empty_risk(cls[-1]) else \
                self.gen_softmax_at(cls, len(cls) - 1, depth - 1)
            rl, ry = logits.ref, labels.ref
            node = nn.sigmoid_binary_cross_entropy(logits.node, labels.node)
            r = lambda env: np.mean(np_softplus(rl(env)) - ry(env) * rl(env))
            text = f"nn.sigmoid_binary_cross_entropy({logits.src}, {labels.src})"
            return Expr(node, (), r, text, 2 * logits.mag + 1)
        if kind == "mean_squared_error":
            a, b = self.shrink(self.gen(cls, depth)), self.shrink(self.gen(cls, depth))
            ra, rb = a.ref, b.ref
            node = nn.mean_squared_error(a.node, b.node)
            return Expr(node, (), lambda env: np.mean(np.square(ra(env) - rb(env))),
                        f"nn.mean_squared_error({a.src}, {b.src})", (a.mag + b.mag) ** 2)
        mean, target = self.shrink(self.gen(cls, depth)), self.shrink(self.gen(cls, depth))
        prec = self.positive(self.gen(self.sub_classes(cls), depth - 1))
        if prec.mag > 100:
            return None
        check_fits(mean, prec)
        rm, rt, rp = mean.ref, target.ref, prec.ref
        node = nn.gaussian_negative_log_likelihood(mean.node, target.node, prec.node)
        r = lambda env: np.mean(-0.5 * np.log(rp(env)) + 0.5 * rp(env) * np.square(rt(env) - rm(env)))
        return Expr(node, (), r, f"nn.gaussian_nll({mean.src}, {target.src}, {prec.src})",
                    10 * (mean.mag + target.mag) ** 2 * prec.mag)

    def root(self, depth):
        if self.profile in ("loss", "mixed", "empty") and self.coin(0.5 if self.profile == "loss" else 0.12):
            try:
                e = self.gen_loss(depth)
            except Incompatible:
                e = None
            except (sg.ShapeError, ValueError, TypeError, IndexError) as error:
                self.build_errors.append(f"building a loss: {type(error).__name__}: {error}")
                e = None
            if e is not None:
                return e
        return self.gen(self.shape_classes(0, 3), depth)


def _index_text(index):
    parts = []
    for s in index:
        if isinstance(s, slice):
            t = ("" if s.start is None else str(s.start)) + ":" + ("" if s.stop is None else str(s.stop))
            if s.step is not None:
                t += f":{s.step}"
            parts.append(t)
        else:
            parts.append(str(s))
    return ", ".join(parts)


# ================================================================================ a batch

@dataclass
class Graph:
    expr: Expr
    index: int
    leaves: list = field(default_factory=list)     # Leaf objects it reads
    wrt: list = field(default_factory=list)        # differentiable leaves
    u: object = None
    outputs: list = field(default_factory=list)    # [y, grads..., jv, hvs...]
    labels: list = field(default_factory=list)


@dataclass
class Batch:
    gen: Generator
    graphs: list
    seed: int
    batch_sizes: tuple
    profile: str
    stats: dict = field(default_factory=dict)

    def header(self):
        lines = ["import numpy as np, symgrad as sg", "from symgrad import nn"]
        for leaf in self.gen.order:
            lines.append(f"{leaf.name} = sg.placeholder({leaf.name!r}, {leaf.declared!r}, 'float64')"
                         f"  # {leaf.kind}, sizes {leaf.cls}")
        return "\n".join(lines)


def draw_batch(seed, profile="mixed", n_graphs=None, depth=None):
    """One batch of random graphs (see the module docstring), all of it from `seed`."""
    rng = np.random.default_rng(seed)
    empty = profile == "empty" or (profile == "mixed" and rng.random() < 0.25)
    gen = Generator(rng, profile, empty=empty, ties=profile == "ties")
    n = n_graphs or int(rng.integers(15, 26))
    depth = depth or int(os.environ.get("FUZZ_DEPTH", 3))
    graphs = [Graph(gen.root(int(rng.integers(1, depth + 1))), i) for i in range(n)]
    odd = int(rng.choice([3, 5]))
    sizes = (odd, 1) + ((0,) if empty else ())
    return Batch(gen, graphs, int(rng.integers(0, 2 ** 31)), sizes, profile)


def build_derivatives(batch):
    """Each graph's derivative nodes; the problems met building them."""
    leaf_of = {leaf.node: leaf for leaf in batch.gen.order}
    problems = []
    for g in batch.graphs:
        y = g.expr.node
        g.leaves = [leaf_of[n] for n in topological_order([y]) if n in leaf_of]
        g.wrt = [l for l in g.leaves if l.differentiable]
        g.u = sg.placeholder(f"u{g.index}", y.shape, F64)
        g.outputs, g.labels = [y], ["value"]
        if not g.wrt:
            continue
        f = sg.sum(g.u * y) + 0.5 * sg.sum(g.u * y * y)
        xs = [l.node for l in g.wrt]
        ts = [l.tangent for l in g.wrt]
        try:
            grads = sg.gradients(f, xs, disconnected="zero")
            jv = sg.jvp(y, xs, ts)
            hv = sg.hessian_vector_product(f, xs, ts)
        except Exception as error:  # noqa: BLE001 - a problem of this graph
            g.wrt = []
            if isinstance(error, sg.ShapeError) and "several unknown sizes" in str(error):
                # a documented limitation: a reshape that merged several unknown sizes cannot
                # be undone by the gradient (a clear error when the graph is built)
                continue
            problems.append(_describe(batch, g, None, f"building the derivatives raised "
                                      f"{type(error).__name__}: {error}"))
            continue
        g.outputs += list(grads) + [jv] + list(hv)
        g.labels += [f"grad {l.name}" for l in g.wrt] + ["jvp"] + [f"hvp {l.name}" for l in g.wrt]
    return problems


def inputs_of(batch):
    return ([l.node for l in batch.gen.order] + [l.tangent for l in batch.gen.order] +
            [g.u for g in batch.graphs])


def point(batch, size, rng):
    """Values of every input at batch size `size`: placeholders, tangents, cotangents."""
    env = Env({l.name: l.sample(rng, size) for l in batch.gen.order}, size)
    tangents = {l.name: l.direction(rng, size) for l in batch.gen.order}
    return env, tangents


# the compiled kernel itself, not the interpreter serving calls while it compiles
_WAIT = {"background": False} if "background" in sg.function.__code__.co_varnames else {}


def _close(a, b, rtol, atol):
    """NaN where NaN, inf where the same inf, else |a - b| <= atol + rtol |b|."""
    a, b = np.asarray(a, F64), np.asarray(b, F64)
    if a.shape != b.shape:
        return f"shape {a.shape} != {b.shape}"
    if a.size == 0:
        return None
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if np.any(nan_a != nan_b):
        k = np.argmax(nan_a != nan_b)
        return f"NaN mismatch at flat index {k}: {a.flat[k]!r} vs {b.flat[k]!r}"
    inf = np.isinf(b) | np.isinf(a)
    if np.any(a[inf] != b[inf]):
        k = np.flatnonzero(inf & (a != b))[0]
        return f"inf mismatch at flat index {k}: {a.flat[k]!r} vs {b.flat[k]!r}"
    ok = ~(nan_a | inf)
    err = np.abs(a[ok] - b[ok]) - (atol + rtol * np.abs(b[ok]))
    if err.size and np.max(err) > 0:
        k = np.argmax(err)
        return (f"max error {np.max(np.abs(a[ok] - b[ok])):.3g}: {a[ok][k]!r} vs {b[ok][k]!r} "
                f"(at one of {ok.sum()} elements)")
    return None


def _scale(*arrays):
    vals = [float(np.max(np.abs(a[np.isfinite(a)]))) for a in map(np.asarray, arrays)
            if np.size(a) and np.any(np.isfinite(a))]
    return 1.0 + max(vals, default=0.0)


def _point_feed(batch, size, rng):
    """A point at batch size `size`: its env, the feed of every placeholder (values,
    tangents, each graph's cotangent u), each graph's (NumPy value, kink margin), and the
    tangents."""
    env, tangents = point(batch, size, rng)
    feed = {l.node: env.values[l.name] for l in batch.gen.order}
    feed.update({l.tangent: tangents[l.name] for l in batch.gen.order})
    refs = {}
    for g in batch.graphs:
        env.margins = []
        with np.errstate(all="ignore"):
            refs[g.index] = (np.asarray(g.expr.ref(env), F64), min(env.margins, default=np.inf))
        feed[g.u] = rng.standard_normal(refs[g.index][0].shape)
    return env, feed, refs, tangents


def check_lanes(batch, limit=12, sizes=(3, 5)):
    """Compiled in lanes == interpreter: the values and derivatives of the batch whose graphs
    split (compiler/lanes.py; the first `limit`), in one function called at batch sizes of
    two lanes or more, with every call in lanes (the caller removes the work threshold).
    Returns (problems, how many outputs ran in lanes)."""
    build_derivatives(batch)
    inputs = inputs_of(batch)
    chosen = [(g, lab, o) for g in batch.graphs for lab, o in zip(g.labels, g.outputs)
              if lanes.split(inputs, [o], [])[0] is not None][:limit]
    if not chosen:
        return [], 0
    fn = sg.function(inputs, [o for _, _, o in chosen], name=f"fuzz lanes {batch.profile}", **_WAIT)
    rng, problems = np.random.default_rng(batch.seed), []
    for size in sizes:
        feed = _point_feed(batch, size, rng)[1]
        try:
            want = sg.evaluate([o for _, _, o in chosen], feed)
        except Exception:  # noqa: BLE001 (the interpreter's own checks: check_batch's part)
            continue
        args = [feed[n] for n in inputs]
        got = fn(*args)
        if not fn._lane_twins:
            problems.append(f"[batch size {size}] the call did not run in lanes")
        for (g, lab, _), a, b in zip(chosen, got, want):
            bad = _close(a, b, RTOL, 1e-9 * _scale(b))
            if bad:
                problems.append(_describe(batch, g, size, f"compiled in lanes vs interpreter, "
                                          f"{lab}: {bad}"))
    return problems, len(chosen)


def check_batch(batch, simplify_modes=(True, False), compiled_derivatives=None,
                compiled_values=None):
    """Compile and run a batch; return the list of problems found (empty when all agree).

    Every graph's value, gradients, JVP and HVP are checked by the interpreter against NumPy
    and central differences; the compiled function (one per simplify mode) computes the
    values of the first `compiled_values` graphs and the derivatives of the first
    `compiled_derivatives` (default: all; Numba compile time grows with every node compiled),
    checked against the interpreter."""
    problems = [f"[batch] {m}" for m in batch.gen.build_errors]
    problems += build_derivatives(batch)
    inputs = inputs_of(batch)
    outputs = [o for g in batch.graphs for o in g.outputs]
    n_der = len(batch.graphs) if compiled_derivatives is None else compiled_derivatives
    n_val = len(batch.graphs) if compiled_values is None else compiled_values
    compiled = [(g, lab, o) for g in batch.graphs for lab, o in zip(g.labels, g.outputs)
                if g.index < n_der or (lab == "value" and g.index < n_val)]
    fns = {}
    for mode in simplify_modes:
        try:
            fns[mode] = sg.function(inputs, [o for _, _, o in compiled], simplify=mode,
                                    name=f"fuzz {batch.profile}", **_WAIT)
        except Exception as error:  # noqa: BLE001
            problems.append(f"[batch] sg.function(simplify={mode}) raised "
                            f"{type(error).__name__}: {error}")
    rng = np.random.default_rng(batch.seed)
    for size in batch.batch_sizes:
        env, feed, refs, tangents = _point_feed(batch, size, rng)
        try:
            want = sg.evaluate(outputs, feed)
        except Exception:  # noqa: BLE001 - find the graphs that raise, one by one
            want = []
            for g in batch.graphs:
                try:
                    want += sg.evaluate(g.outputs, feed)
                except Exception as error:  # noqa: BLE001
                    problems.append(_describe(batch, g, size, f"sg.evaluate raised "
                                              f"{type(error).__name__}: {error}"))
                    want += [None] * len(g.outputs)
        args = [feed[n] for n in inputs]
        got = {}
        for mode, fn in fns.items():
            try:
                got[mode] = fn(*args)
            except Exception as error:  # noqa: BLE001
                problems.append(f"[batch size {size}] compiled (simplify={mode}) raised "
                                f"{type(error).__name__}: {error}")
        # compiled == interpreter
        expected = {id(o): w for o, w in zip(outputs, want)}
        for mode, values in got.items():
            for (g, lab, o), a in zip(compiled, values):
                b = expected[id(o)]
                if b is None:
                    continue
                bad = _close(a, b, RTOL, 1e-9 * _scale(b))
                if bad:
                    problems.append(_describe(batch, g, size, f"compiled (simplify={mode}) "
                                              f"vs interpreter, {lab}: {bad}"))
        # interpreter == NumPy reference, and central differences
        k = 0
        for g in batch.graphs:
            n_out = len(g.outputs)
            mine = want[k:k + n_out]
            k += n_out
            ref, margin = refs[g.index]
            if mine[0] is None:
                continue
            bad = _close(mine[0], ref, RTOL, 1e-9 * _scale(ref))
            if bad:
                problems.append(_describe(batch, g, size, f"interpreter vs NumPy, value: {bad}"))
            if size == batch.batch_sizes[0] and g.wrt and margin > KINK_MARGIN and \
                    np.all(np.isfinite(ref)):
                batch.stats["central differences"] = batch.stats.get("central differences", 0) + 1
                problems += _central_differences(batch, g, env, tangents, feed, mine)
    return problems


def _shifted(batch, g, env, tangents, step):
    values = dict(env.values)
    for l in g.wrt:
        values[l.name] = env.values[l.name] + step * tangents[l.name]
    e = Env(values, env.batch)
    return e


def _central_differences(batch, g, env, tangents, feed, mine):
    problems = []
    n = len(g.wrt)
    grads, jv, hvs = mine[1:1 + n], mine[1 + n], mine[2 + n:]
    u = feed[g.u]
    with np.errstate(all="ignore"):
        def f_at(step):
            e = _shifted(batch, g, env, tangents, step)
            y = np.asarray(g.expr.ref(e), F64)
            return float(np.sum(u * y) + 0.5 * np.sum(u * y * y)), y, e
        f_plus, y_plus, e_plus = f_at(FD_EPS)
        f_minus, y_minus, e_minus = f_at(-FD_EPS)
    if min(e_plus.margins + e_minus.margins, default=np.inf) <= KINK_MARGIN / 2:
        return problems
    numeric = (f_plus - f_minus) / (2 * FD_EPS)
    analytic = sum(float(np.sum(gr * tangents[l.name])) for gr, l in zip(grads, g.wrt))
    size = 1.0 + sum(float(np.sum(np.abs(gr * tangents[l.name]))) for gr, l in zip(grads, g.wrt))
    if not abs(analytic - numeric) <= FD_RTOL * size:
        problems.append(_describe(batch, g, env.batch, f"gradient vs central differences: "
                                  f"<grad, v> = {analytic!r}, numeric {numeric!r}"))
    jv_numeric = (y_plus - y_minus) / (2 * FD_EPS)
    bad = _close(jv, jv_numeric, FD_RTOL, FD_RTOL * _scale(jv_numeric, jv))
    if bad:
        problems.append(_describe(batch, g, env.batch, f"jvp vs central differences: {bad}"))
    # H v against central differences of the (interpreted) gradient
    xs = [l.node for l in g.wrt]
    grad_nodes = g.outputs[1:1 + n]
    gs = []
    for step in (HVP_EPS, -HVP_EPS):
        f2 = dict(feed)
        for l in g.wrt:
            f2[l.node] = env.values[l.name] + step * tangents[l.name]
        gs.append(sg.evaluate(grad_nodes, f2))
    for l, hv, gp, gm in zip(g.wrt, hvs, gs[0], gs[1]):
        numeric = (gp - gm) / (2 * HVP_EPS)
        bad = _close(hv, numeric, FD_RTOL, FD_RTOL * _scale(numeric, gp))
        if bad:
            problems.append(_describe(batch, g, env.batch,
                                      f"hvp {l.name} vs central differences of the gradient: {bad}"))
    del xs
    return problems


def _describe(batch, g, size, what):
    return (f"graph {g.index} at batch size {size}: {what}\n    y = {g.expr.src}\n"
            f"    inputs: " + ", ".join(f"{l.name} {l.declared} ({l.kind})" for l in g.leaves))


def report(batch, problems, limit=12):
    text = [f"{len(problems)} problems in a batch of {len(batch.graphs)} graphs "
            f"(profile {batch.profile}, batch sizes {batch.batch_sizes}, seed {batch.seed})",
            batch.header()]
    text += problems[:limit]
    if len(problems) > limit:
        text.append(f"... and {len(problems) - limit} more")
    return "\n".join(text)


def examples(default):
    """Hypothesis examples per fuzz test: SYMGRAD_FUZZ_EXAMPLES is the total number of graphs
    wanted over the fuzz tests (`make fuzz`); by default `default` examples."""
    total = os.environ.get("SYMGRAD_FUZZ_EXAMPLES")
    if not total:
        return default
    return max(default, int(total) // (20 * 6))
