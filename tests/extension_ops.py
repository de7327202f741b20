"""Ops defined the way a user defines them (symgrad.extend), for the op table (test_ops.py)
and tests/core/test_extend.py: an elementwise op from a SymPy body, a structured op with a Numba
kernel (a cumulative sum along the last axis), and a hand-derived gradient."""
import numba
import numpy as np

import symgrad as sg
from symgrad import extend, scalar

swish = extend.elementwise("ext_swish", lambda x: x * scalar.sigmoid(x))


@numba.njit
def _cumsum_kernel(x, out, reverse):
    n = x.shape[x.ndim - 1]
    rows = x.size // n if n else 0
    a, o = x.reshape(rows, n), out.reshape(rows, n)
    for r in range(rows):
        total = 0.0
        for k in range(n):
            j = n - 1 - k if reverse else k
            total += a[r, j]
            o[r, j] = total


def np_cumsum(x, reverse):
    return np.flip(np.cumsum(np.flip(x, -1), -1), -1) if reverse else np.cumsum(x, -1)


def _infer_cumsum(inputs, attrs):
    x = inputs[0]
    if x.ndim < 1:
        raise sg.ShapeError("cumsum: the input needs an axis to sum along")
    return x.shape, x.dtype


# cumsum along the last axis, or from its end (reverse=1): linear, and each is the other's
# transpose, so the vjp of one is the other
cumsum = extend.op(
    "ext_cumsum", infer=_infer_cumsum, numpy=lambda arrays, attrs: np_cumsum(arrays[0], attrs["reverse"]),
    kernel=_cumsum_kernel, attrs=("reverse",), linear=True,
    vjp=lambda node, g, wanted: [cumsum(g, reverse=1 - node.attrs["reverse"])])


def stable_softplus(x):
    """log(1 + exp(x)), differentiated by hand: sigmoid(x), finite for any x."""
    return extend.with_gradient(sg.log(1.0 + sg.exp(x)), [x],
                                vjp=lambda g: [g * sg.sigmoid(x)],
                                jvp=lambda t: t * sg.sigmoid(x))
