"""Sizes in shapes: a known size is an int; a size known only at call time is a SymPy
expression over size symbols.

In: what users write in a shape: an int; None, a size known only at call time (a fresh
symbol); or a name, one size that several inputs share ("batch"). Out: dims that shape rules
combine as numbers (`n - 1`, `3 * n`, `n + m`), `merge` for two sizes that an op assumes equal,
and, at call time, `bind` / `evaluate`: the symbols' values read from the arguments' shapes and
every dim worked out from them.

Two different symbols may still be equal at call time (`x[1:] * y` assumes that y is one
shorter than x): `merge` keeps one, and the op's shape rule, run again on the call's shapes
(sizes.py), checks the assumption. A size no expression of the symbols states (an output
size an extension op's rule leaves as None) is a fresh symbol, bound when the value that has
it is computed.
"""
from __future__ import annotations

import functools
import math
import operator

import sympy
from sympy.printing.str import StrPrinter

__all__ = ["is_known", "fresh", "named", "as_dim", "merge", "element_count", "may_equal",
           "compatible", "symbols_of", "text", "bind", "evaluate", "evaluate_attrs"]


def is_known(d):
    """Whether `d` is a number (not an expression over sizes known only at call time)."""
    return isinstance(d, int)


def named(name):
    """The size symbol called `name`: every shape that says `name` has the same size there."""
    return sympy.Symbol(name, integer=True, nonnegative=True)


def fresh(hint="n"):
    """A size symbol of its own (equal to no other): `hint` is how it prints."""
    return sympy.Dummy(hint, integer=True, nonnegative=True)


def as_dim(d, hint="n"):
    """One size as shape rules hold it: an int, or an expression (None: a fresh symbol; a
    str: the named symbol)."""
    if d is None:
        return fresh(hint)
    if isinstance(d, str):
        if not d.isidentifier():
            raise ValueError(f"a size name must be an identifier, like 'batch'; got {d!r}")
        return named(d)
    if isinstance(d, sympy.Basic):
        return int(d) if d.is_Integer else d
    return operator.index(d)  # (a float size is refused: TypeError)


def merge(a, b):
    """Two sizes an op assumes are equal: the known one, or one of the two if neither is
    (the call-time check sees both); False when both are known and differ."""
    if a == b:
        return a
    if is_known(a) and is_known(b):
        return False
    return a if is_known(a) else b if is_known(b) else a


@functools.lru_cache(maxsize=4096)
def element_count(shape):
    """The number of elements of `shape`: an int, or an expression (cached: the schedule
    asks it of every value)."""
    return as_dim(math.prod(shape))


def may_equal(a, b):
    """Whether sizes `a` and `b` may be equal at call time (False only when provably not)."""
    if is_known(a) and is_known(b):
        return a == b
    difference = sympy.expand(a - b)
    return not (difference.is_number and difference != 0)


def compatible(shape_a, shape_b):
    """Whether two shapes may be equal at call time (equal ranks, no two known sizes differ)."""
    return len(shape_a) == len(shape_b) and all(merge(a, b) is not False
                                                for a, b in zip(shape_a, shape_b))


def symbols_of(shape):
    """The size symbols `shape` (a tuple of dims, possibly nested) mentions."""
    found = set()
    for d in shape:
        if isinstance(d, tuple):
            found |= symbols_of(d)
        elif isinstance(d, sympy.Basic):
            found |= d.free_symbols
    return found


class _Printer(StrPrinter):
    def _print_Dummy(self, symbol):
        return symbol.name


def text(d):
    """How a size prints in messages: `3`, `batch`, `x.0 - 1`."""
    return str(d) if is_known(d) else _Printer().doprint(d)


# ------------------------------------------------------------------------------ call time

def bind(static, concrete, bindings):
    """Read the values of `static`'s bare symbols from `concrete` (the same shape at call
    time) into `bindings` {symbol: int}, and check every dim that can be worked out. Returns
    the index of the first axis whose size disagrees, or None."""
    for k, (d, c) in enumerate(zip(static, concrete)):
        if is_known(d):
            if d != c:
                return k
        elif isinstance(d, sympy.Symbol) and d not in bindings:
            bindings[d] = int(c)
        elif d.free_symbols <= bindings.keys():
            if evaluate(d, bindings) != c:
                return k
    return None


def evaluate(d, bindings):
    """The int that dim `d` is, given `bindings`. KeyError names a symbol not bound."""
    if is_known(d):
        return d
    missing = d.free_symbols - bindings.keys()
    if missing:
        raise KeyError(f"size {text(d)}: {', '.join(sorted(map(text, missing)))} not bound")
    return int(d.xreplace(bindings))


def evaluate_attrs(attrs, bindings):
    """`attrs` with every symbolic size in a tuple attribute (a target shape) worked out, for
    the NumPy references and shape rules at call time. Attrs without sizes come back as they
    are (the same dict)."""
    changed = {}
    for key, value in attrs.items():
        if isinstance(value, tuple) and symbols_of(value):
            changed[key] = _evaluate_nested(value, bindings)
    return dict(attrs, **changed) if changed else attrs


def _evaluate_nested(value, bindings):
    return tuple(_evaluate_nested(v, bindings) if isinstance(v, tuple) else
                 evaluate(v, bindings) if isinstance(v, sympy.Basic) else v for v in value)
