"""Vectorisable exp, expm1, log, log1p, tanh, sigmoid and softplus for Numba loops.

In: a float32 or float64 scalar, inside code compiled by Numba. Out: the function's value in
the same precision. Calls to libm cannot be vectorised, so the loops symgrad generates call
these instead: range reduction plus a polynomial, as Eigen and XLA do, with the exponent
written into the float's bits (`_float_from_bits`). LLVM inlines these small functions into
the caller's loop, sees one straight-line body and emits vector instructions (checked in the
tests). We do not ask Numba to inline them itself: its IR-level inlining makes compiles much
slower and warns about variable scopes.

Accuracy (measured in tests/runtime/test_fastmath.py over wide sweeps against NumPy in float64):
a few units in the last place. NaN and ±inf behave as in NumPy. Results that would be
subnormal in float32 may flush to zero. They are compiled with `SAFE_FLAGS` whatever the
caller's flags: `reassoc` would undo the two-step range reduction that gives the accuracy.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

SAFE_FLAGS = {"nsz", "arcp", "contract", "afn"}  # keep NaN/Inf; no reassociation
# LLVM inlines them. Their flags are given, not left to Numba: a function without its own
# inherits the flags of whichever caller compiles it first, and the disk cache keeps that
# version; a caller that may reassociate (a sum of exps) then gave exp overflow to inf.
inline = numba.njit(cache=True, error_model="numpy", fastmath=SAFE_FLAGS)
# `arcp` lets LLVM divide by multiplying with an approximate reciprocal (rsqrt, rcp plus a
# Newton step), which gives NaN where the divisor is 0 or inf: d sqrt(x)/dx = 1/(2 sqrt(x)) was
# NaN at 0 and +inf in float32. Loops that divide by a computed value compile without it.
EXACT_DIVISION_FLAGS = SAFE_FLAGS - {"arcp"}


@intrinsic
def _float_from_bits(typingctx, bits, like):
    """The float (of `like`'s type) whose bit pattern is the integer `bits`."""
    if like == types.float32:
        width, float_type = 32, ir.FloatType()
    else:
        width, float_type = 64, ir.DoubleType()

    def codegen(context, builder, signature, args):
        value = args[0]
        if value.type.width > width:
            value = builder.trunc(value, ir.IntType(width))
        elif value.type.width < width:
            value = builder.sext(value, ir.IntType(width))
        return builder.bitcast(value, float_type)
    return like(bits, like), codegen


@intrinsic
def _bits_from_float(typingctx, x):
    """The bit pattern of float `x`, as int64."""
    width = 32 if x == types.float32 else 64

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(width))
        return builder.sext(bits, ir.IntType(64)) if width == 32 else bits
    return types.int64(x), codegen


# --------------------------------------------------------------------------- exp, expm1

@inline
def _scale32(p, n):
    # p * 2**n for n in [-252, 254], in two steps so no factor overflows on its own
    half = n >> 1
    one = np.float32(0)
    return (p * _float_from_bits((half + 127) << 23, one)) * _float_from_bits((n - half + 127) << 23, one)


@inline
def _scale64(p, n):
    half = n >> 1
    one = np.float64(0)
    return (p * _float_from_bits((half + 1023) << 52, one)) * _float_from_bits((n - half + 1023) << 52, one)


@inline
def exp32(x):
    xc = min(max(x, np.float32(-104.0)), np.float32(89.0))
    n = np.float32(math.floor(xc * np.float32(1.4426950408889634) + np.float32(0.5)))
    r = xc - n * np.float32(0.693145751953125) - n * np.float32(1.428606765330187e-06)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    out = _scale32(p, np.int64(n))
    out = np.float32(np.inf) if x > np.float32(88.72283935546875) else out
    return x if x != x else out


@inline
def _reduced64(x):
    """x = n·ln2 + r with |r| <= ln2/2: (n, e^r - 1), the polynomial exp64 and expm1_64 share."""
    n = np.float64(math.floor(x * 1.4426950408889634 + 0.5))
    r = x - n * 0.6931471803691238 - n * 1.9082149292705877e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    return np.int64(n), (p * r + 1.0) * r


@inline
def exp64(x):
    n, q = _reduced64(min(max(x, -746.0), 710.0))
    out = _scale64(q + 1.0, n)
    out = np.inf if x > 709.782712893384 else out
    return x if x != x else out


@inline
def expm1_32(x):
    # Taylor series near 0, where exp(x) - 1 would cancel; exp(x) - 1 elsewhere
    p = np.float32(1.0 / 3628800.0)
    p = p * x + np.float32(1.0 / 362880.0)
    p = p * x + np.float32(1.0 / 40320.0)
    p = p * x + np.float32(1.0 / 5040.0)
    p = p * x + np.float32(1.0 / 720.0)
    p = p * x + np.float32(1.0 / 120.0)
    p = p * x + np.float32(1.0 / 24.0)
    p = p * x + np.float32(1.0 / 6.0)
    p = p * x + np.float32(0.5)
    small = (p * x + np.float32(1.0)) * x
    large = exp32(x) - np.float32(1.0)
    return small if abs(x) < np.float32(0.5) else large


@inline
def expm1_64(x):
    # x = n·ln2 + r: e^x - 1 = 2^n·(e^r - 1) + (2^n - 1), which never cancels (n = 0 where
    # exp(x) - 1 would, |x| < ln2/2), from exp64's own polynomial (_reduced64). (A Taylor series near 0
    # beside exp64 made the function too large for LLVM to inline, and loops calling it ran
    # scalar.) Below -40, e^x - 1 rounds to -1; 2^1024 is written as 2·2^1023.
    k, q = _reduced64(min(max(x, -40.0), 710.0))
    two_k = _float_from_bits((min(k, 1023) + 1023) << 52, np.float64(0))
    out = (two_k * q + (two_k - 1.0)) * (2.0 if k > 1023 else 1.0)
    out = np.inf if x > 709.782712893384 else out
    return x if x != x else out


# --------------------------------------------------------------------------- log, log1p

@inline
def log32(x):
    tiny = x < np.float32(1.1754943508222875e-38)
    y = np.float32(x * np.float32(16777216.0) if tiny else x)  # lift subnormals up
    bits = _bits_from_float(y)
    e = ((bits >> 23) & 0xFF) - 127 - (24 if tiny else 0)
    m = _float_from_bits((bits & 0x7FFFFF) | 0x3F800000, np.float32(0))
    big = m > np.float32(1.4142135623730951)
    m = m * np.float32(0.5) if big else m
    e = e + 1 if big else e
    s = (m - np.float32(1.0)) / (m + np.float32(1.0))
    s2 = s * s
    p = np.float32(1.0 / 11.0)
    p = p * s2 + np.float32(1.0 / 9.0)
    p = p * s2 + np.float32(1.0 / 7.0)
    p = p * s2 + np.float32(1.0 / 5.0)
    p = p * s2 + np.float32(1.0 / 3.0)
    p = p * s2 + np.float32(1.0)
    fe = np.float32(e)
    out = fe * np.float32(0.693145751953125) + (np.float32(2.0) * s * p + fe * np.float32(1.428606765330187e-06))
    out = np.float32(-np.inf) if x == np.float32(0.0) else out
    out = np.float32(np.nan) if x < np.float32(0.0) else out
    return x if (x != x or x == np.float32(np.inf)) else out


@inline
def log64(x):
    tiny = x < 2.2250738585072014e-308
    y = np.float64(x * 18014398509481984.0 if tiny else x)
    bits = _bits_from_float(y)
    e = ((bits >> 52) & 0x7FF) - 1023 - (54 if tiny else 0)
    m = _float_from_bits((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000, np.float64(0))
    big = m > 1.4142135623730951
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 1.0 / 25.0
    for k in (23.0, 21.0, 19.0, 17.0, 15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0):
        p = p * s2 + 1.0 / k
    fe = float(e)
    out = fe * 0.6931471803691238 + (2.0 * s * p + fe * 1.9082149292705877e-10)
    out = -np.inf if x == 0.0 else out
    out = np.nan if x < 0.0 else out
    return x if (x != x or x == np.inf) else out


# --------------------------------------------------------------------------- built on those

@inline
def log1p32(u):
    # log(1 + u) corrected for the rounding of 1 + u (Goldberg's trick)
    w = u + np.float32(1.0)
    d = w - np.float32(1.0)
    corrected = log32(w) * (u / d) if w != np.float32(np.inf) else w
    return u if d == np.float32(0.0) else corrected


@inline
def log1p64(u):
    w = u + 1.0
    d = w - 1.0
    corrected = log64(w) * (u / d) if w != np.inf else w
    return u if d == 0.0 else corrected


@inline
def tanh32(x):
    # Eigen's rational approximation for float32: x * P(x^2) / Q(x^2) on [-7.99, 7.99],
    # where tanh is already 1 to float32 precision outside; x itself for tiny |x|.
    c = min(max(x, np.float32(-7.99881172180175781)), np.float32(7.99881172180175781))
    c2 = c * c
    p = np.float32(-2.76076847742355e-16)
    p = p * c2 + np.float32(2.00018790482477e-13)
    p = p * c2 + np.float32(-8.60467152213735e-11)
    p = p * c2 + np.float32(5.12229709037114e-08)
    p = p * c2 + np.float32(1.48572235717979e-05)
    p = p * c2 + np.float32(6.37261928875436e-04)
    p = p * c2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * c2 + np.float32(1.18534705686654e-04)
    q = q * c2 + np.float32(2.26843463243900e-03)
    q = q * c2 + np.float32(4.89352518554385e-03)
    out = c * p / q
    return x if (abs(x) < np.float32(0.0004) or x != x) else out


@inline
def tanh64(x):
    t = min(abs(x), 40.0)
    e = expm1_64(t + t)
    out = e / (e + 2.0)
    out = x if x != x else out
    return out if x >= 0.0 else -out


@inline
def sigmoid32(x):
    e = exp32(-abs(x))
    s = np.float32(1.0) / (np.float32(1.0) + e)
    return s if x >= np.float32(0.0) else e * s


@inline
def sigmoid64(x):
    e = exp64(-abs(x))
    s = 1.0 / (1.0 + e)
    return s if x >= 0.0 else e * s


@inline
def softplus32(x):
    return max(x, np.float32(0.0)) + log1p32(exp32(-abs(x)))


@inline
def softplus64(x):
    return max(x, 0.0) + log1p64(exp64(-abs(x)))


FUNCTIONS = ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "softplus")


def exp(x):
    """exp in the precision of `x` (exp32 or exp64), for kernels written once for both
    dtypes. Only callable from Numba code; a plain function, not a closure, so functions
    that call it are cached on disk (a closure over a dispatcher never is)."""
    raise TypeError("fastmath.exp is for code compiled by Numba")


def log(x):
    """log in the precision of `x` (log32 or log64); see `exp`."""
    raise TypeError("fastmath.log is for code compiled by Numba")


@overload(exp, inline="never")
def _exp(x):
    return (lambda x: exp32(x)) if x == types.float32 else (lambda x: exp64(x))


@overload(log, inline="never")
def _log(x):
    return (lambda x: log32(x)) if x == types.float32 else (lambda x: log64(x))
