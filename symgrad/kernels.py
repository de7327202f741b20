"""Hand-written Numba kernels that generated code calls: stable scalar functions and
reductions along one axis of an array viewed as (before, axis, after).

In: contiguous arrays and sizes. Out: new arrays. Every kernel here has a NumPy twin in
`ops.py` (the interpreter's semantics) and is tested against it through compiled functions.
"""
import math

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True)


@jit
def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit
def softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@jit
def sign(x):
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    return x * 0.0  # keeps 0 and NaN


@jit
def sum_axis(x, a, r, b):
    v = x.reshape((a, r, b))
    out = np.zeros((a, b), x.dtype)
    for i in range(a):
        for k in range(r):
            for j in range(b):
                out[i, j] += v[i, k, j]
    return out


@jit
def max_axis(x, a, r, b):
    v = x.reshape((a, r, b))
    out = np.empty((a, b), x.dtype)
    for i in range(a):
        for j in range(b):
            out[i, j] = v[i, 0, j]
        for k in range(1, r):
            for j in range(b):
                if v[i, k, j] > out[i, j] or v[i, k, j] != v[i, k, j]:
                    out[i, j] = v[i, k, j]
    return out


@jit
def logsumexp_axis(x, a, r, b):
    v = x.reshape((a, r, b))
    m = max_axis(x, a, r, b)
    out = np.zeros((a, b), x.dtype)
    for i in range(a):
        for j in range(b):
            shift = m[i, j]
            if not math.isfinite(shift):
                shift = 0.0
            s = 0.0
            for k in range(r):
                s += math.exp(v[i, k, j] - shift)
            out[i, j] = shift + math.log(s)
    return out


@jit
def softmax_axis(x, a, r, b):
    v = x.reshape((a, r, b))
    lse = logsumexp_axis(x, a, r, b)
    out = np.empty((a, r, b), x.dtype)
    for i in range(a):
        for k in range(r):
            for j in range(b):
                out[i, k, j] = math.exp(v[i, k, j] - lse[i, j])
    return out


@jit
def log_softmax_axis(x, a, r, b):
    v = x.reshape((a, r, b))
    lse = logsumexp_axis(x, a, r, b)
    out = np.empty((a, r, b), x.dtype)
    for i in range(a):
        for k in range(r):
            for j in range(b):
                out[i, k, j] = v[i, k, j] - lse[i, j]
    return out
