"""Scalar mathematics for elementwise ops, in SymPy.

In: nothing from the pipeline; it defines the scalar vocabulary every elementwise op is written in.
Out: SymPy function classes with deep-learning conventions (sigmoid, softplus, gt, eq, select),
the symbols op bodies are written over, `derivative` (SymPy calculus with our conventions), and
two printers of a body: `numpy_function` (a vectorised NumPy callable, the interpreter's semantics)
and `scalar_code` (Python source of one element, for loops compiled by Numba).

Why our own functions: SymPy's Heaviside(0) is 1/2 and its Max differentiates to Heaviside,
but the deep-learning convention is relu'(0) = 0; and SymPy rewrites sigmoid into exp forms
that overflow. Functions we own keep their stable meaning through every stage.
"""
from __future__ import annotations

import functools

import numpy as np
import sympy
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import PythonCodePrinter

# Operand symbols x0, x1, ... of an elementwise body; `Y` is the op's own output, which a
# derivative may use so the forward value is reused (tanh' = 1 - y**2).
MAX_ARITY = 64
X = sympy.symbols(f"x0:{MAX_ARITY}", real=True)
Y = sympy.Symbol("y", real=True)
# A constant 0 operand, kept as a symbol (printed "0") so that SymPy cannot fold it away:
# it would turn 0·x into 0 and x·0 + y into y, but in IEEE arithmetic (and NumPy) 0·x is NaN
# where x is ±inf or NaN, and the compiled code must give what the interpreter gives.
ZERO = sympy.Symbol("0", real=True)


class sigmoid(sympy.Function):
    """Logistic function 1 / (1 + exp(-x)), kept whole so it is evaluated stably."""

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sympy.exp(-x))

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


class softplus(sympy.Function):
    """log(1 + exp(x)), evaluated as max(x, 0) + log1p(exp(-|x|)) so it never overflows."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sympy.log(1 + sympy.exp(x))

    def _latex(self, printer):
        return r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])


class softsign(sympy.Function):
    """x / (1 + |x|), which is ±1 at ±inf (the quotient alone would be inf/inf = NaN)."""

    def fdiff(self, argindex=1):
        return 1 / (1 + sympy.Abs(self.args[0])) ** 2

    def _eval_rewrite_as_Abs(self, x, **kwargs):
        return x / (1 + sympy.Abs(x))

    def _latex(self, printer):
        return r"\operatorname{softsign}\left(%s\right)" % printer._print(self.args[0])


class gt(sympy.Function):
    """1 where a > b else 0. Piecewise constant: its derivative is 0 everywhere we evaluate it."""

    nargs = 2

    def fdiff(self, argindex=1):
        return sympy.S.Zero

    @classmethod
    def eval(cls, a, b):
        if a.is_number and b.is_number:
            return sympy.S.One if bool(a > b) else sympy.S.Zero
        return None


class eq(sympy.Function):
    """1 where a == b else 0 (derivative 0)."""

    nargs = 2

    def fdiff(self, argindex=1):
        return sympy.S.Zero


class select(sympy.Function):
    """`a` where c != 0 else `b`: the scalar form of `where`."""

    nargs = 3

    def fdiff(self, argindex=1):
        c = self.args[0]
        if argindex == 1:
            return sympy.S.Zero
        if argindex == 2:
            return select(c, 1, 0)
        return select(c, 0, 1)

    @classmethod
    def eval(cls, c, a, b):
        if a == b:
            return a
        if c.is_number:
            return a if c != 0 else b
        return None


def _heaviside_to_gt(expr):
    # SymPy differentiates Max/Min/Abs into Heaviside, and those again into DiracDelta; the
    # deep-learning convention is H(0) = 0 and a derivative of 0 at the kink.
    expr = expr.replace(sympy.Heaviside, lambda z, *h0: gt(z, 0))
    return expr.replace(sympy.DiracDelta, lambda *args: sympy.S.Zero)


def derivative(body, symbol):
    """d body / d symbol with the deep-learning conventions (relu'(0) = 0)."""
    return _heaviside_to_gt(sympy.diff(body, symbol))


def number(value):
    """A Python number as a SymPy number: exact when integral, so that 1 - y and 1.0 - y
    are one expression and cancel; 0 is `ZERO`, which keeps NaN and Inf of what it multiplies.
    Infinite and NaN constants stay floats (SymPy's oo would follow other rules)."""
    value = float(value)
    if value == 0:
        return ZERO
    return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value)


def value_of(body):
    """The float a body without operands stands for."""
    return float(body.xreplace({ZERO: 0}))


def free_operands(expr):
    """The operand indices (x_i) and whether the output symbol y occurs in `expr`."""
    names = {s.name for s in expr.free_symbols}
    return sorted(i for i in range(MAX_ARITY) if f"x{i}" in names), ("y" in names)


# ---------------------------------------------------------------------------- NumPy

def _np_sigmoid(x):
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _np_softsign(x):
    x = np.asarray(x)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(x), np.sign(x), x / (1 + np.abs(x)))


def _np_softplus(x):
    x = np.asarray(x)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


_NUMPY_NAMESPACE = {
    "sigmoid": _np_sigmoid,
    "softplus": _np_softplus,
    "softsign": _np_softsign,
    "gt": lambda a, b: np.greater(a, b).astype(np.result_type(a, b, np.float32)),
    "eq": lambda a, b: np.equal(a, b).astype(np.result_type(a, b, np.float32)),
    "select": lambda c, a, b: np.where(np.asarray(c) != 0, a, b),
}


@functools.lru_cache(maxsize=4096)
def numpy_function(body, arity, uses_output=False):
    """A NumPy callable f(x0, ..., x{arity-1}[, y]) evaluating `body` elementwise."""
    args = list(X[:arity]) + ([Y] if uses_output else [])
    # NumPy's names as a dict, not modules="numpy": that runs `from numpy import *`, which
    # waits for the import lock while a background compile imports Numba (60 ms of a first
    # interpreted call)
    with np.errstate(all="ignore"):
        printer = NumPyPrinter({"fully_qualified_modules": False, "inline": True,
                                "allow_unknown_functions": True,
                                "user_functions": {name: name for name in _NUMPY_NAMESPACE}})
        return sympy.lambdify(args, body, modules=[_NUMPY_NAMESPACE, vars(np)], printer=printer)


# ---------------------------------------------------------------------------- Numba

def fastmath_name(function, dtype):
    """The name in symgrad.runtime.fastmath of `function` ("exp", ...) for `dtype` ("float32"...).
    (Written here, so printing code does not import Numba.)"""
    suffix = "32" if str(dtype) == "float32" else "64"
    return f"{function}{'_' if function == 'expm1' else ''}{suffix}"


class ScalarPrinter(PythonCodePrinter):
    """Prints a body as a Python expression on scalars, for a loop that Numba compiles.

    Each operand symbol prints as the code the caller maps it to (e.g. `a0[i]`). Numbers are
    typed to the loop's dtype, so float32 loops stay float32. exp, log, tanh, sigmoid and
    softplus call the vectorisable versions in `symgrad.runtime.fastmath`; sqrt is an LLVM intrinsic;
    sin, cos and general powers go to libm."""

    _fastmath = {"exp": "exp", "log": "log", "tanh": "tanh", "sigmoid": "sigmoid",
                 "softplus": "softplus"}

    def __init__(self, names, dtype="float64"):
        super().__init__({"fully_qualified_modules": True, "standard": "python3"})
        self._names = names
        self._dtype = str(dtype)

    def _number(self, value):
        text = repr(float(value))
        return f"np.float32({text})" if self._dtype == "float32" else text

    def _print_Symbol(self, expr):
        if expr == ZERO:
            return self._number(0)
        return self._names.get(expr.name, expr.name)

    def _print_Integer(self, expr):
        return self._number(expr)

    def _print_Rational(self, expr):
        return self._number(expr)

    def _print_Float(self, expr):
        return self._number(expr)

    def _print_NegativeOne(self, expr):
        return self._number(-1)

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        b = self.parenthesize(base, 100)
        if exp.is_Integer and 1 <= abs(int(exp)) <= 4:
            product = " * ".join([b] * abs(int(exp)))
            return f"({product})" if exp > 0 else f"({self._number(1)} / ({product}))"
        if exp == sympy.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exp == -sympy.S.Half:
            return f"({self._number(1)} / math.sqrt({self._print(base)}))"
        return f"({b} ** ({self._print(exp)}))"

    def _call(self, function, expr):
        return f"fastmath.{fastmath_name(function, self._dtype)}({self._print(expr.args[0])})"

    def _print_exp(self, expr):
        return self._call("exp", expr)

    def _print_log(self, expr):
        return self._call("log", expr)

    def _print_tanh(self, expr):
        return self._call("tanh", expr)

    def _print_sigmoid(self, expr):
        return self._call("sigmoid", expr)

    def _print_softplus(self, expr):
        return self._call("softplus", expr)

    def _print_softsign(self, expr):
        x = f"({self._print(expr.args[0])})"  # (an operand of `/`: softsign(a - b) is not a - b/...)
        one = self._number(1)
        return (f"({x} / ({one} + abs({x})) if abs({x}) != np.inf else "
                f"({one} if {x} > 0 else -{one}))")

    def _print_gt(self, expr):
        a, b = (self._print(a) for a in expr.args)
        return f"({self._number(1)} if {a} > {b} else {self._number(0)})"

    def _print_eq(self, expr):
        a, b = (self._print(a) for a in expr.args)
        return f"({self._number(1)} if {a} == {b} else {self._number(0)})"

    def _print_select(self, expr):
        c, a, b = (self._print(a) for a in expr.args)
        return f"({a} if {c} != {self._number(0)} else {b})"

    def _print_sign(self, expr):
        x = self._print(expr.args[0])
        one = self._number(1)
        return f"({one} if {x} > 0 else (-{one} if {x} < 0 else {x}))"  # keeps 0 and NaN

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _extremum(self, expr, better):
        # NumPy's maximum/minimum: NaN if either operand is NaN (Python's max would return
        # the other one). `a != a` holds only for NaN; a NaN `b` fails `a > b` and is taken.
        # (Repeated operand text is one value to LLVM, which sees pure arithmetic.)
        text = self._print(expr.args[0])
        for arg in expr.args[1:]:
            b = self._print(arg)
            text = f"({text} if ({text} {better} {b} or {text} != {text}) else {b})"
        return text

    def _print_Max(self, expr):
        return self._extremum(expr, ">")

    def _print_Min(self, expr):
        return self._extremum(expr, "<")


@functools.lru_cache(maxsize=4096)
def numbers_as_parameters(body, first=0):
    """`body` with each number that is a value rather than a part of the formula replaced by
    a symbol c<first>, c<first+1>... and the numbers, in that order: a loop taking them as
    arguments serves every value (a learning rate, a weight of a sum), so it is compiled once.
    Exponents (x**2 stays a square) and the integers -2..2 (1 - y², -x, 2·x) stay literal."""
    exponents = {e.exp for e in sympy.preorder_traversal(body) if isinstance(e, sympy.Pow)}
    numbers = sorted({a for a in body.atoms(sympy.Number)
                      if a not in exponents and a.is_finite and not (a.is_Integer and abs(a) <= 2)},
                     key=float)
    symbols = {number: sympy.Symbol(f"c{first + j}") for j, number in enumerate(numbers)}
    return body.xreplace(symbols), tuple(float(n) for n in numbers)


@functools.lru_cache(maxsize=4096)
def divides_by_operand(body):
    """Whether `body` divides by something that is not a number (so it may be 0 or inf)."""
    return any(isinstance(e, sympy.Pow) and e.exp.is_number and e.exp < 0 and not e.base.is_number
               for e in sympy.preorder_traversal(body))


def scalar_code(body, names, dtype="float64"):
    """Python source computing `body` for one element of `dtype`; `names` maps 'x0'.. to code."""
    return _scalar_code(body, tuple(sorted(names.items())), dtype)


@functools.lru_cache(maxsize=4096)
def _scalar_code(body, names, dtype):
    # (printing is the slow part of codegen, and a deep model's layers repeat their bodies)
    return ScalarPrinter(dict(names), dtype).doprint(body)
