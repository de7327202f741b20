"""One table, every op: the checks JAX's `check_grads` and PyTensor's `verify_grad` make.

Each entry of `TABLE` builds one op (or one form of it: an axis, a broadcast, a batch size
known only at run time) from input placeholders, and names its NumPy reference and its input
domain (positive for log/sqrt, away from kinks and ties for relu/abs/maximum/max, ...).
Every entry gets the same checks, each a test parametrized by the entry's id:

1. `test_forward`: the shape rule agrees with NumPy, and the interpreter with the reference;
2. `test_vjp`: the gradient of f(x) = <u, y(x)> against central differences along two random
   directions (and the same gradient seeded through `grad_ys=u`);
3. `test_jvp`: <u, J v> (forward mode) equals <J^T u, v> (reverse mode), and J v against
   central differences of y;
4. `test_hvp`: H v, forward-over-reverse and reverse-over-reverse, against central differences
   of the gradient, and w^T H v == v^T H w. Piecewise-linear ops (H = 0) check that H v is 0,
   then check the HVP of the quadratic sum(u * y * y), whose Hessian is not 0;
5. `test_float32`: the same graph built in float32 agrees with float64 to float32 accuracy;
6. `test_compiled`: one compiled function per entry, of [y] + gradients + [jvp] + hvp,
   equals the interpreter (float64), also at a second batch size for entries with None;
   `test_compiled_float32` does the same in float32 for a handful of entries.

Graphs, values and compiled functions are built once per entry (cached below). A known bug
of the package is an `xfail(strict=True)` on the check it breaks, so it stays visible.
stop_gradient (whose derivative is not that of its value) is checked by its own tests, and
`test_every_op_is_in_the_table` fails when an op of `symgrad.core.ops.OPS` has no entry.
"""
from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Callable

import numpy as np
import pytest

import extension_ops
import symgrad as sg
from symgrad.core import dims
from symgrad.core.graph import topological_order
from symgrad.core.ops import OPS

F64, F32 = "float64", "float32"
BATCH, BATCH2 = 5, 2       # run-time sizes of None dimensions (the second for compiled calls)
EPS, FD_RTOL = 1e-6, 1e-5  # central differences, float64


# ================================================================================ samplers
# A sampler maps (rng, concrete input shapes) to a list of float64 arrays.

def _normal(rng, shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def _positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def _away(rng, shape, at=0.0):
    """Values at least 0.25 from `at` (kinks: relu, abs, leaky_relu, softsign'')."""
    return at + rng.choice([-1.0, 1.0], shape) * rng.uniform(0.25, 2.0, shape)


def _distinct(rng, shape):
    """Values without ties and at least 0.2 apart (max reductions)."""
    n = int(np.prod(shape, dtype=int))
    return (0.3 * rng.permutation(n) - 0.15 * n + rng.uniform(-0.05, 0.05, n)).reshape(shape)


def _ternary(rng, shape):
    """-1, 0 or 1: conditions for `equal`, exactly representable."""
    return rng.integers(-1, 2, shape).astype(np.float64)


def each(*samplers):
    """One sampler per input (the last one repeats for the remaining inputs)."""
    def sample(rng, shapes):
        return [(samplers[min(k, len(samplers) - 1)])(rng, s) for k, s in enumerate(shapes)]
    return sample


def _simplex(rng, shape):
    """Positive rows summing to 1 along the last axis (what `sg.distribution` declares)."""
    e = rng.uniform(0.2, 1.0, shape)
    return e / e.sum(axis=-1, keepdims=True)


def _row_sums_zero(v):
    """A direction that keeps rows summing to 1: a declared distribution may only move so
    (any other step breaks the declaration, which every call checks)."""
    return v - v.mean(axis=-1, keepdims=True)


def apart(rng, shapes):
    """(a, b) with a = broadcast(b) + an offset of at least 0.25: no ties for maximum/minimum."""
    b = rng.standard_normal(shapes[1])
    a = np.broadcast_to(b, shapes[0]) + _away(rng, shapes[0])
    return [a, b]


def apart_from(at):
    return each(lambda rng, s: _away(rng, s, at))


NORMAL = each(_normal)
POSITIVE = each(_positive)
AWAY = each(_away)


# ================================================================================ the table

@dataclasses.dataclass
class Entry:
    id: str
    build: Callable               # input nodes -> output node
    ref: Callable                 # input arrays -> expected output (NumPy, directly)
    shapes: tuple                 # input shapes; None is a size known only at run time
    sample: Callable = NORMAL     # (rng, concrete shapes) -> float64 arrays
    wrt: tuple | None = None      # indices of the inputs to differentiate (default: all)
    hessian: str = "fd"           # "fd": check H v; "zero": piecewise linear, H = 0
    dtypes: tuple | None = None   # fixed input dtypes (cast); default: the run's dtype
    eps: float = EPS
    rtol: float = FD_RTOL         # tolerance of the central-difference checks
    compile32: bool = False       # also compiled in float32
    xfail: dict = dataclasses.field(default_factory=dict)  # check name -> "BUG: ..."
    # input index -> the directions along which that input may move (the tangent space of a
    # constrained input); other inputs move freely
    tangent: dict = dataclasses.field(default_factory=dict)

    @property
    def inputs_wrt(self):
        return tuple(range(len(self.shapes))) if self.wrt is None else self.wrt

    def has_batch(self):
        return any(None in s for s in self.shapes)


def _const(array, like):
    return sg.constant(np.asarray(array, dtype=like.dtype))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


C4 = np.array([0.5, -1.0, 2.0, 0.25])

# Convolution and pooling, by explicit loops over output positions (independent of the
# sliding-window NumPy code the interpreter runs).

def _ref_windows(x, window, stride, padding, fill=0.0, dilation=(1, 1)):
    """{(a, b): the (N, C, kh, kw) patch of window (a, b)} of x padded with `fill`, its taps
    `dilation` apart."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = window, stride, padding, dilation
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    ho, wo = (xp.shape[2] - eh) // sh + 1, (xp.shape[3] - ew) // sw + 1
    return {(a, b): xp[:, :, a * sh:a * sh + eh:dh, b * sw:b * sw + ew:dw]
            for a in range(ho) for b in range(wo)}, (ho, wo)


def _ref_conv2d(x, w, stride, padding, dilation=(1, 1)):
    patches, (ho, wo) = _ref_windows(x, w.shape[2:], stride, padding, dilation=dilation)
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for (a, b), patch in patches.items():
        out[:, :, a, b] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out


def _ref_spread(values_at, shape, window, stride, padding):
    """Adds values_at(a, b) (N, C, kh, kw) into a zero array of `shape` at window (a, b)."""
    (kh, kw), (sh, sw), (ph, pw) = window, stride, padding
    n, c, h, w = shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    for a in range(ho):
        for b in range(wo):
            out[:, :, a * sh:a * sh + kh, b * sw:b * sw + kw] += values_at(a, b)
    return out[:, :, ph:ph + h, pw:pw + w]


def _ref_im2col(x, window, stride, padding, dilation=(1, 1)):
    """Rows (n, a, b) in order, columns (c, i, j) in order: every window as a row."""
    patches, (ho, wo) = _ref_windows(x, window, stride, padding, dilation=dilation)
    rows = np.zeros((x.shape[0], ho, wo, x.shape[1] * window[0] * window[1]))
    for (a, b), patch in patches.items():
        rows[:, a, b] = patch.reshape(x.shape[0], -1)
    return rows.reshape(-1, rows.shape[-1])


def _ref_col2im(cols, n, image, window, stride, padding, dilation=(1, 1)):
    # the adjoint of _ref_im2col, by definition: <col2im(cols), x> = <cols, im2col(x)>
    c, h, w = image
    out = np.zeros((n, c, h, w))
    basis = np.zeros((n, c, h, w))
    for index in np.ndindex(out.shape):
        basis[index] = 1.0
        out[index] = np.sum(cols * _ref_im2col(basis, window, stride, padding, dilation))
        basis[index] = 0.0
    return out


def _ref_max_weights(x, window, stride, padding):
    """{(a, b): (N, C, kh, kw) weights 1/k at the k maxima of each window (padding excluded)}."""
    patches, _ = _ref_windows(x, window, stride, padding, -np.inf)
    real, _ = _ref_windows(np.ones((1, 1) + x.shape[2:]), window, stride, padding)
    weights = {}
    for key, patch in patches.items():
        hit = (patch == patch.max(axis=(2, 3), keepdims=True)) & (real[key] > 0)
        weights[key] = hit / hit.sum(axis=(2, 3), keepdims=True)
    return weights


def _ref_pool(x, window, stride, padding, kind):
    patches, (ho, wo) = _ref_windows(x, window, stride, padding, -np.inf if kind == "max" else 0.0)
    out = np.zeros(x.shape[:2] + (ho, wo))
    for (a, b), patch in patches.items():
        out[:, :, a, b] = patch.max(axis=(2, 3)) if kind == "max" else patch.mean(axis=(2, 3))
    return out


def _ref_avg_pool2d_grad(g, window, stride, padding, in_hw):
    area = window[0] * window[1]
    return _ref_spread(lambda a, b: np.broadcast_to(g[:, :, a, b, None, None] / area,
                                                    g.shape[:2] + tuple(window)),
                       g.shape[:2] + tuple(in_hw), window, stride, padding)


def _ref_max_pool2d_grad(x, g, window, stride, padding):
    weights = _ref_max_weights(x, window, stride, padding)
    return _ref_spread(lambda a, b: weights[a, b] * g[:, :, a, b, None, None], x.shape,
                       window, stride, padding)


def _ref_max_pool2d_select(x, t, window, stride, padding):
    weights = _ref_max_weights(x, window, stride, padding)
    patches, (ho, wo) = _ref_windows(t, window, stride, padding)
    out = np.zeros(x.shape[:2] + (ho, wo))
    for (a, b), patch in patches.items():
        out[:, :, a, b] = (weights[a, b] * patch).sum(axis=(2, 3))
    return out


def _ref_max_pool2d_routing(x, window, stride, padding):
    weights = _ref_max_weights(x, window, stride, padding)
    return _ref_spread(lambda a, b: weights[a, b], x.shape, window, stride, padding)


def _ref_routed_pool2d(r, t, window, stride, padding):
    patches_r, (ho, wo) = _ref_windows(r, window, stride, padding)
    patches_t, _ = _ref_windows(t, window, stride, padding)
    out = np.zeros(r.shape[:2] + (ho, wo))
    for key, patch in patches_r.items():
        out[:, :, key[0], key[1]] = (patch * patches_t[key]).sum(axis=(2, 3))
    return out


def _ref_routed_pool2d_grad(r, g, window, stride, padding):
    patches_r, _ = _ref_windows(r, window, stride, padding)
    return _ref_spread(lambda a, b: patches_r[a, b] * g[:, :, a, b, None, None], r.shape,
                       window, stride, padding)


def _pool_op(name, arity, **attrs):
    return lambda *xs: sg.core.ops.make(name, list(xs[:arity]), attrs)


POOL = dict(window=(2, 3), stride=(2, 1), padding=(1, 1))
# disjoint windows (routing weights are one per tap), with padding, gaps and odd sizes
ROUTED = dict(window=(2, 3), stride=(3, 3), padding=(1, 1))


E = Entry
TABLE = [
    # --- arithmetic, same shapes
    E("add", lambda a, b: a + b, np.add, ((3, 4), (3, 4)), hessian="zero", compile32=True),
    E("subtract", lambda a, b: a - b, np.subtract, ((3, 4), (3, 4)), hessian="zero"),
    E("multiply", lambda a, b: a * b, np.multiply, ((3, 4), (3, 4))),
    E("divide", lambda a, b: a / b, np.divide, ((3, 4), (3, 4)), each(_normal, _away)),
    E("power", lambda a, b: a ** b, np.power, ((3, 4), (3, 4)), each(_positive, _normal),
      compile32=True),
    E("power-const-exponent", lambda a: a ** 2.5, lambda a: a ** 2.5, ((3, 4),), POSITIVE),
    E("power-int-exponent", lambda a: a ** 3, lambda a: a ** 3, ((3, 4),)),
    E("power-const-base", lambda a: 2.0 ** a, lambda a: 2.0 ** a, ((3, 4),)),
    E("negative", lambda a: -a, np.negative, ((3, 4),), hessian="zero"),
    E("rsub-scalar", lambda a: 1.5 - a, lambda a: 1.5 - a, ((3, 4),), hessian="zero"),
    E("rdiv-scalar", lambda a: 1.0 / a, lambda a: 1.0 / a, ((3, 4),), AWAY),
    E("mul-scalar", lambda a: a * 2.5 + 1.0, lambda a: a * 2.5 + 1.0, ((3, 4),), hessian="zero"),
    # --- broadcasting in binary ops
    E("add-bcast-row", lambda a, b: a + b, np.add, ((3, 4), (4,)), hessian="zero"),
    E("sub-bcast-col", lambda a, b: a - b, np.subtract, ((3, 4), (3, 1)), hessian="zero"),
    E("mul-bcast-outer", lambda a, b: a * b, np.multiply, ((3, 1), (1, 4))),
    E("div-bcast-row", lambda a, b: b / a, lambda a, b: b / a, ((4,), (3, 4)), AWAY),
    E("mul-bcast-0d-input", lambda a, b: a * b, np.multiply, ((3, 4), ())),
    E("add-const-array", lambda a: a + _const(C4, a), lambda a: a + C4, ((3, 4),),
      hessian="zero"),
    E("add-bcast-batch", lambda a, b: a + b, np.add, ((None, 4), (4,)), hessian="zero",
      compile32=True),
    E("mul-bcast-batch", lambda a, b: a * b, np.multiply, ((None, 1), (None, 4))),
    E("mul-bcast-batch-outer", lambda a, b: a * b, np.multiply, ((None, 1), (1, 4))),
    # --- matmul
    E("matmul-2d-2d", lambda a, b: a @ b, np.matmul, ((3, 4), (4, 5)), compile32=True),
    E("matmul-1d-2d", lambda a, b: a @ b, np.matmul, ((4,), (4, 5))),
    E("matmul-2d-1d", lambda a, b: a @ b, np.matmul, ((3, 4), (4,))),
    E("matmul-1d-1d", lambda a, b: a @ b, np.matmul, ((4,), (4,))),
    E("matmul-batch", lambda a, b: sg.matmul(a, b), np.matmul, ((None, 4), (4, 3))),
    # --- unary elementwise
    E("exp", sg.exp, np.exp, ((3, 4),), compile32=True),
    E("log", sg.log, np.log, ((3, 4),), POSITIVE),
    E("tanh", sg.tanh, np.tanh, ((3, 4),), each(lambda r, s: _normal(r, s, 2.0)),
      compile32=True),
    E("sigmoid", sg.sigmoid, _sigmoid, ((3, 4),), each(lambda r, s: _normal(r, s, 3.0))),
    E("relu", sg.relu, lambda a: np.maximum(a, 0), ((3, 4),), AWAY, hessian="zero"),
    E("leaky_relu", lambda a: sg.leaky_relu(a, 0.2), lambda a: np.where(a > 0, a, 0.2 * a),
      ((3, 4),), AWAY, hessian="zero"),
    E("softplus", sg.softplus, lambda a: np.logaddexp(0, a), ((3, 4),),
      each(lambda r, s: _normal(r, s, 3.0))),
    E("softsign", sg.softsign, lambda a: a / (1 + np.abs(a)), ((3, 4),), AWAY),
    E("hard_tanh", sg.hard_tanh, lambda a: np.clip(a, -1, 1), ((None, 4),),
      each(lambda r, s: r.choice([-2.0, -0.5, 0.5, 2.0], s) + r.uniform(-0.2, 0.2, s)),
      hessian="zero", compile32=True),  # away from the kinks at ±1
    E("abs", sg.abs, np.abs, ((3, 4),), AWAY, hessian="zero"),
    E("sin", sg.sin, np.sin, ((3, 4),)),
    E("cos", sg.cos, np.cos, ((3, 4),)),
    E("sqrt", sg.sqrt, np.sqrt, ((3, 4),), POSITIVE),
    E("square", sg.square, np.square, ((3, 4),)),
    E("tanh-batch", sg.tanh, np.tanh, ((None, 3),)),
    # --- binary elementwise with kinks, where and comparisons
    E("maximum", sg.maximum, np.maximum, ((3, 4), (3, 4)), apart, hessian="zero"),
    E("minimum", sg.minimum, np.minimum, ((3, 4), (3, 4)), apart, hessian="zero"),
    E("maximum-bcast", sg.maximum, np.maximum, ((3, 4), (4,)), apart, hessian="zero"),
    E("minimum-scalar", lambda a: sg.minimum(a, 0.5), lambda a: np.minimum(a, 0.5), ((3, 4),),
      apart_from(0.5), hessian="zero"),
    E("where-greater", lambda c, a, b: sg.where(c > 0, a, b),
      lambda c, a, b: np.where(c > 0, a, b), ((3, 4), (3, 4), (3, 4)), AWAY, wrt=(1, 2),
      hessian="zero"),
    E("where-less-bcast", lambda c, a, b: sg.where(c < 0, a * b, 2.0),
      lambda c, a, b: np.where(c < 0, a * b, 2.0), ((3, 1), (3, 4), (4,)), AWAY, wrt=(1, 2)),
    E("where-greater_equal", lambda c, a, b: sg.where(c >= 0, sg.sin(a), b),
      lambda c, a, b: np.where(c >= 0, np.sin(a), b), ((3, 4), (3, 4), (3, 4)),
      each(_ternary, _normal), wrt=(1, 2)),
    E("where-equal", lambda c, a, b: sg.where(sg.equal(c, 0.0), a, b),
      lambda c, a, b: np.where(c == 0, a, b), ((3, 4), (3, 4), (3, 4)),
      each(_ternary, _normal), wrt=(1, 2), hessian="zero"),
    # --- reductions
    E("sum", sg.sum, np.sum, ((3, 4),), hessian="zero"),
    E("sum-axis0", lambda a: sg.sum(a, axis=0), lambda a: np.sum(a, axis=0), ((3, 4),),
      hessian="zero"),
    E("sum-axis-1-keepdims", lambda a: sg.sum(a, axis=-1, keepdims=True),
      lambda a: np.sum(a, axis=-1, keepdims=True), ((3, 4),), hessian="zero"),
    E("sum-axes02", lambda a: sg.sum(a, axis=(0, 2)), lambda a: np.sum(a, axis=(0, 2)),
      ((2, 3, 4),), hessian="zero", compile32=True),
    E("sum-batch-axis0", lambda a: sg.sum(a, axis=0), lambda a: np.sum(a, axis=0),
      ((None, 4),), hessian="zero"),
    E("mean", sg.mean, np.mean, ((3, 4),), hessian="zero"),
    E("mean-axis1", lambda a: sg.mean(a, axis=1), lambda a: np.mean(a, axis=1), ((3, 4),),
      hessian="zero"),
    E("mean-axes-keepdims", lambda a: sg.mean(a, axis=(0, -1), keepdims=True),
      lambda a: np.mean(a, axis=(0, -1), keepdims=True), ((2, 3, 4),), hessian="zero"),
    E("mean-batch", lambda a: a.mean(axis=0), lambda a: np.mean(a, axis=0), ((None, 4),),
      hessian="zero"),
    E("mean-batch-all", sg.mean, np.mean, ((None, 4),), hessian="zero"),
    E("max", sg.max, np.max, ((3, 4),), each(_distinct), hessian="zero"),
    E("max-axis0", lambda a: sg.max(a, axis=0), lambda a: np.max(a, axis=0), ((3, 4),),
      each(_distinct), hessian="zero"),
    E("max-axis1-keepdims", lambda a: sg.max(a, axis=1, keepdims=True),
      lambda a: np.max(a, axis=1, keepdims=True), ((3, 4),), each(_distinct), hessian="zero"),
    E("max-axes12", lambda a: sg.max(a, axis=(1, 2)), lambda a: np.max(a, axis=(1, 2)),
      ((2, 3, 4),), each(_distinct), hessian="zero"),
    E("max-batch-axis1", lambda a: sg.max(a, axis=-1), lambda a: np.max(a, axis=-1),
      ((None, 4),), each(_distinct), hessian="zero"),
    # --- reshape and transpose
    E("reshape", lambda a: sg.reshape(a, (2, 6)), lambda a: a.reshape(2, 6), ((3, 4),),
      hessian="zero"),
    E("reshape-infer", lambda a: a.reshape(-1), lambda a: a.reshape(-1), ((2, 3, 4),),
      hessian="zero"),
    E("reshape-batch", lambda a: sg.reshape(a, (-1, 2, 2)), lambda a: a.reshape(-1, 2, 2),
      ((None, 4),), hessian="zero"),
    E("transpose-T", lambda a: a.T, lambda a: a.T, ((3, 4),), hessian="zero"),
    E("transpose-axes", lambda a: sg.transpose(a, (1, 2, 0)),
      lambda a: np.transpose(a, (1, 2, 0)), ((2, 3, 4),), hessian="zero"),
    E("transpose-negative-axes", lambda a: a.transpose(-1, 0, 1),
      lambda a: np.transpose(a, (-1, 0, 1)), ((2, 3, 4),), hessian="zero"),
    E("transpose-batch", lambda a: a.T, lambda a: a.T, ((None, 4),), hessian="zero"),
    # --- indexing and slicing
    E("getitem-int", lambda a: a[1], lambda a: a[1], ((3, 4),), hessian="zero"),
    E("getitem-negative-int", lambda a: a[:, -2], lambda a: a[:, -2], ((3, 4),),
      hessian="zero"),
    E("getitem-int-int", lambda a: a[-1, 2], lambda a: a[-1, 2], ((3, 4),), hessian="zero"),
    E("getitem-step", lambda a: a[::2, 1:], lambda a: a[::2, 1:], ((3, 4),), hessian="zero"),
    E("getitem-negative-step", lambda a: a[::-1, 3:0:-2], lambda a: a[::-1, 3:0:-2],
      ((3, 4),), hessian="zero"),
    E("getitem-mixed-3d", lambda a: a[-1, 1:, ::-2], lambda a: a[-1, 1:, ::-2], ((2, 3, 4),),
      hessian="zero"),
    E("getitem-ellipsis", lambda a: a[..., -1], lambda a: a[..., -1], ((2, 3, 4),),
      hessian="zero"),
    E("getitem-batch-cols", lambda a: a[:, 1:3], lambda a: a[:, 1:3], ((None, 4),),
      hessian="zero"),
    E("getitem-batch-rows", lambda a: a[1:], lambda a: a[1:], ((None, 4),), hessian="zero"),
    E("getitem-batch-negative-int", lambda a: a[-2], lambda a: a[-2], ((None, 4),),
      hessian="zero"),
    E("getitem-batch-reverse", lambda a: a[::-1, ::-2], lambda a: a[::-1, ::-2], ((None, 4),),
      hessian="zero"),
    # --- concatenate
    E("concatenate-axis0", lambda a, b: sg.concatenate([a, b], axis=0),
      lambda a, b: np.concatenate([a, b], axis=0), ((2, 4), (3, 4)), hessian="zero"),
    E("concatenate-axis-1-three", lambda a, b, c: sg.concatenate([a, b, c], axis=-1),
      lambda a, b, c: np.concatenate([a, b, c], axis=-1), ((3, 2), (3, 1), (3, 4)),
      hessian="zero"),
    E("concatenate-batch", lambda a, b: sg.concatenate([a, b], axis=1),
      lambda a, b: np.concatenate([a, b], axis=1), ((None, 2), (None, 3)), hessian="zero"),
    # --- softmax family
    E("softmax", sg.softmax, lambda a: _np_softmax(a, -1), ((3, 4),),
      each(lambda r, s: _normal(r, s, 2.0)), compile32=True),
    E("softmax-axis0", lambda a: sg.softmax(a, axis=0), lambda a: _np_softmax(a, 0), ((3, 4),)),
    E("log_softmax", sg.log_softmax, lambda a: a - _np_lse(a, -1, True), ((3, 4),)),
    E("log_softmax-axis0", lambda a: sg.log_softmax(a, 0), lambda a: a - _np_lse(a, 0, True),
      ((3, 4),)),
    E("logsumexp", sg.logsumexp, _np_lse, ((3, 4),), compile32=True),
    E("logsumexp-axis1", lambda a: sg.logsumexp(a, axis=1), lambda a: _np_lse(a, 1),
      ((3, 4),)),
    E("logsumexp-axis0-keepdims", lambda a: sg.logsumexp(a, axis=0, keepdims=True),
      lambda a: _np_lse(a, 0, True), ((3, 4),)),
    E("logsumexp-keepdims", lambda a: sg.logsumexp(a, keepdims=True),
      lambda a: _np_lse(a, None, True), ((3, 4),)),
    E("logsumexp-batch", sg.logsumexp, _np_lse, ((None, 4),)),
    E("softmax-batch", sg.softmax, lambda a: _np_softmax(a, -1), ((None, 4),)),
    # --- distribution: the identity, declaring that rows sum to 1 (a fact for the simplifier,
    # whose sum_of_distribution rule the compiled check then exercises)
    E("distribution", lambda p: sg.distribution(p, axis=-1), lambda p: p, ((3, 4),),
      each(_simplex), hessian="zero", tangent={0: _row_sums_zero}),
    E("distribution-sum", lambda p, b: sg.sum(sg.distribution(p) * b, axis=-1),
      lambda p, b: np.sum(p * b, axis=-1), ((3, 4), (3, 1)), each(_simplex, _normal), wrt=(1,),
      hessian="zero", compile32=True),
    E("distribution-sum-wrt-p", lambda p, b: sg.sum(sg.distribution(p) * b, axis=-1),
      lambda p, b: np.sum(p * b, axis=-1), ((3, 4), (3, 1)), each(_simplex, _normal),
      tangent={0: _row_sums_zero}),
    # --- cast: inputs of a fixed dtype; float32 arithmetic needs a larger step and tolerance
    E("cast-up", lambda a: sg.square(sg.cast(a, F64)), lambda a: np.square(a.astype(F64)),
      ((3, 4),), dtypes=(F32,), eps=1e-3, rtol=1e-3),
    E("cast-down", lambda a: sg.square(sg.cast(a, F32)),
      lambda a: np.square(a.astype(F32)), ((3, 4),), dtypes=(F64,), eps=1e-2, rtol=1e-3),
    # --- indexing by int64 tensors (constants here: the table's inputs are floats): take and
    # its scatter-add gradient (take_add; a row taken twice gets both cotangents), one_hot,
    # argmax/argmin (piecewise constant: the gradient flows through the other factor only)
    E("take-axis1-repeats", lambda a: sg.take(a, [2, 0, 2], axis=1),
      lambda a: a[:, [2, 0, 2]], ((None, 4),), hessian="zero", compile32=True),
    E("take-rows-2d-indices", lambda a: sg.tanh(sg.take(a, [[0, 2], [2, 2]])),
      lambda a: np.tanh(a[[[0, 2], [2, 2]]]), ((3, 2, 2),)),
    E("take-scalar-index", lambda a: sg.take(a, np.int64(1), axis=-1), lambda a: a[..., 1],
      ((None, 3),), hessian="zero"),
    E("one_hot", lambda a: a * sg.one_hot([1, 3, 0], 4, a.dtype),
      lambda a: a * np.eye(4)[[1, 3, 0]], ((3, 4),), hessian="zero"),
    E("argmax-one_hot", lambda a: a * sg.one_hot(sg.argmax(a, axis=1), 4, a.dtype),
      lambda a: a * np.eye(4)[np.argmax(a, axis=1)], ((None, 4),), each(_distinct),
      hessian="zero"),
    E("argmin-axis0", lambda a: sg.take(a, sg.argmin(a, axis=0), axis=0),
      lambda a: a[np.argmin(a, axis=0)], ((3, 2),), each(_distinct), hessian="zero"),
    # --- convolution and pooling (NCHW); odd sizes, stride > kernel, padding, batch unknown
    E("conv2d", lambda x, w: sg.conv2d(x, w, stride=(2, 1), padding=1),
      lambda x, w: _ref_conv2d(x, w, (2, 1), (1, 1)), ((None, 2, 5, 4), (3, 2, 3, 2)),
      compile32=True),
    E("conv2d-same", lambda x, w: sg.conv2d(x, w, padding="same"),
      lambda x, w: _ref_conv2d(x, w, (1, 1), (1, 1)), ((2, 1, 4, 5), (2, 1, 3, 3))),
    E("conv2d-stride-beyond-kernel", lambda x, w: sg.conv2d(x, w, stride=3),
      lambda x, w: _ref_conv2d(x, w, (3, 3), (0, 0)), ((1, 3, 7, 8), (2, 3, 2, 2))),
    E("conv1d", lambda x, w: sg.conv1d(x, w, stride=2, padding=1),
      lambda x, w: _ref_conv2d(x[:, :, None], w[:, :, None], (1, 2), (0, 1))[:, :, 0],
      ((None, 2, 9), (3, 2, 3))),
    E("conv1d-same", lambda x, w: sg.conv1d(x, w, padding="same"),
      lambda x, w: _ref_conv2d(x[:, :, None], w[:, :, None], (1, 1), (0, 2))[:, :, 0],
      ((2, 1, 7), (2, 1, 5))),
    E("conv2d-dilated", lambda x, w: sg.conv2d(x, w, padding=(2, 1), dilation=(2, 1)),
      lambda x, w: _ref_conv2d(x, w, (1, 1), (2, 1), (2, 1)), ((None, 2, 6, 5), (3, 2, 3, 3))),
    E("conv2d-groups", lambda x, w: sg.conv2d(x, w, padding=1, groups=2),
      lambda x, w: np.concatenate([_ref_conv2d(x[:, :2], w[:3], (1, 1), (1, 1)),
                                   _ref_conv2d(x[:, 2:], w[3:], (1, 1), (1, 1))], axis=1),
      ((None, 4, 4, 5), (6, 2, 3, 3))),
    E("conv2d-depthwise", lambda x, w: sg.conv2d(x, w, stride=2, groups=3),
      lambda x, w: np.concatenate([_ref_conv2d(x[:, k:k + 1], w[k:k + 1], (2, 2), (0, 0))
                                   for k in range(3)], axis=1), ((2, 3, 5, 5), (3, 1, 2, 2))),
    E("conv1d-dilated-same", lambda x, w: sg.conv1d(x, w, padding="same", dilation=2),
      lambda x, w: _ref_conv2d(x[:, :, None], w[:, :, None], (1, 1), (0, 2), (1, 2))[:, :, 0],
      ((2, 2, 8), (2, 2, 3))),
    E("im2col", _pool_op("im2col", 1, window=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2)),
      lambda x: _ref_im2col(x, (3, 2), (2, 1), (1, 1), (1, 2)), ((None, 2, 5, 5),), hessian="zero"),
    E("col2im", lambda cols, like: sg.core.ops.make(
        "col2im", [cols, like], dict(window=(3, 2), stride=(2, 1), padding=(1, 1),
                                     dilation=(1, 2), image=(2, 5, 5))),
      lambda cols, like: _ref_col2im(cols, like.shape[0], (2, 5, 5), (3, 2), (2, 1), (1, 1), (1, 2)),
      ((30, 12), (2, 2, 5, 5)), wrt=(0,), hessian="zero"),
    E("avg_pool2d", lambda x: sg.avg_pool2d(x, **POOL), lambda x: _ref_pool(x, kind="avg", **POOL),
      ((None, 2, 5, 6),), hessian="zero", compile32=True),
    E("avg_pool2d_grad", _pool_op("avg_pool2d_grad", 1, in_hw=(5, 6), **POOL),
      lambda g: _ref_avg_pool2d_grad(g, in_hw=(5, 6), **POOL), ((None, 2, 3, 6),), hessian="zero"),
    E("max_pool2d", lambda x: sg.max_pool2d(x, **POOL), lambda x: _ref_pool(x, kind="max", **POOL),
      ((None, 2, 5, 6),), each(_distinct), hessian="zero", compile32=True),
    E("max_pool2d-default-stride", lambda x: sg.max_pool2d(x, 2),
      lambda x: _ref_pool(x, (2, 2), (2, 2), (0, 0), "max"), ((3, 1, 5, 4),), each(_distinct),
      hessian="zero"),
    E("max_pool2d_grad", _pool_op("max_pool2d_grad", 2, in_hw=(5, 6), **POOL),
      lambda x, g: _ref_max_pool2d_grad(x, g, **POOL), ((2, 2, 5, 6), (2, 2, 3, 6)),
      each(_distinct, _normal), wrt=(1,), hessian="zero"),
    E("max_pool2d_select", _pool_op("max_pool2d_select", 2, **POOL),
      lambda x, t: _ref_max_pool2d_select(x, t, **POOL), ((2, 2, 5, 6), (2, 2, 5, 6)),
      each(_distinct, _normal), wrt=(1,), hessian="zero"),
    # max pooling's routing (piecewise constant: the gradient flows through t only) and the
    # two ops that read it, each linear in both inputs
    E("max_pool2d_routing", lambda x, t: _pool_op("max_pool2d_routing", 1, **ROUTED)(x) * t,
      lambda x, t: _ref_max_pool2d_routing(x, **ROUTED) * t, ((None, 2, 5, 7), (None, 2, 5, 7)),
      each(_distinct, _normal), wrt=(1,), hessian="zero", compile32=True),
    E("max_pool2d_routing-as-max_pool2d", lambda x: _pool_op("routed_pool2d", 2, **ROUTED)(
        _pool_op("max_pool2d_routing", 1, **ROUTED)(x), x),
      lambda x: _ref_pool(x, kind="max", **ROUTED), ((3, 1, 5, 7),), each(_distinct),
      hessian="zero"),
    E("routed_pool2d", _pool_op("routed_pool2d", 2, **ROUTED),
      lambda r, t: _ref_routed_pool2d(r, t, **ROUTED), ((None, 2, 5, 7), (None, 2, 5, 7)),
      compile32=True),
    E("routed_pool2d_grad", _pool_op("routed_pool2d_grad", 2, **ROUTED),
      lambda r, g: _ref_routed_pool2d_grad(r, g, **ROUTED), ((None, 2, 5, 7), (None, 2, 2, 3)),
      compile32=True),
    # --- ops users define (symgrad.extend; tests/extension_ops.py): the same checks
    E("ext-swish", extension_ops.swish, lambda a: a * _sigmoid(a), ((None, 4),), compile32=True),
    E("ext-cumsum", lambda a: extension_ops.cumsum(a, reverse=0),
      lambda a: extension_ops.np_cumsum(a, 0), ((None, 4),), hessian="zero", compile32=True),
    E("ext-cumsum-reverse", lambda a: sg.tanh(extension_ops.cumsum(a, reverse=1)),
      lambda a: np.tanh(extension_ops.np_cumsum(a, 1)), ((3, 5),)),
    E("ext-with-gradient", extension_ops.stable_softplus, lambda a: np.logaddexp(0, a),
      ((None, 4),)),
]
ENTRIES = {e.id: e for e in TABLE}
assert len(ENTRIES) == len(TABLE), "entry ids must be unique"


def entries(check):
    """The table as pytest params for one check, with that check's known bugs as xfails."""
    return [pytest.param(e, id=e.id, marks=[pytest.mark.xfail(strict=True, reason=e.xfail[check])]
                         if check in e.xfail else [])
            for e in TABLE]


# ================================================================================ graphs

class Built:
    """An entry's graph in one dtype. The derivative nodes are built on first use, so a bug in
    one rule fails only the checks that need it."""

    def __init__(self, entry, dtype):
        self.entry = entry
        dtypes = entry.dtypes or (dtype,) * len(entry.shapes)
        self.xs = [sg.placeholder(f"x{k}", s, d)
                   for k, (s, d) in enumerate(zip(entry.shapes, dtypes))]  # inputs
        self.y = entry.build(*self.xs)                                       # the op's output
        self.wrt = [self.xs[k] for k in entry.inputs_wrt]                    # differentiated
        self.u = sg.placeholder("u", self.y.shape, self.y.dtype)            # cotangent
        self.vs = [sg.placeholder(f"v{k}", x.shape, x.dtype)                 # tangents
                   for k, x in zip(entry.inputs_wrt, self.wrt)]
        self.ws = [sg.placeholder(f"w{k}", x.shape, x.dtype)                 # second tangents
                   for k, x in zip(entry.inputs_wrt, self.wrt)]
        self.f = sg.sum(self.y * self.u)                                     # <u, y>
        # the scalar whose Hessian is checked: f, or sum(u*y*y) where H_f = 0
        self.s = self.f if entry.hessian == "fd" else sg.sum(self.u * self.y * self.y)

    @functools.cached_property
    def grads(self):  # df/dx
        return sg.gradients(self.f, self.wrt)

    @functools.cached_property
    def vjps(self):  # J^T u, seeded with grad_ys
        return sg.gradients(self.y, self.wrt, grad_ys=self.u)

    @functools.cached_property
    def jv(self):  # J v
        return sg.jvp(self.y, self.wrt, self.vs)

    @functools.cached_property
    def hv_fwd(self):  # H_s v, forward over reverse
        return sg.hessian_vector_product(self.s, self.wrt, self.vs)

    @functools.cached_property
    def hv_rev(self):  # H_s v, reverse over reverse
        return sg.hessian_vector_product(self.s, self.wrt, self.vs, mode="reverse")

    @functools.cached_property
    def hw_fwd(self):  # H_s w
        return sg.hessian_vector_product(self.s, self.wrt, self.ws)

    @functools.cached_property
    def hs_grads(self):  # ds/dx, for central differences of the gradient
        return sg.gradients(self.s, self.wrt)

    @functools.cached_property
    def hf_zero(self):  # H_f v in both modes, for piecewise-linear entries (must be 0)
        return (sg.hessian_vector_product(self.f, self.wrt, self.vs) +
                sg.hessian_vector_product(self.f, self.wrt, self.vs, mode="reverse"))


@functools.cache
def built(entry_id, dtype):
    return Built(ENTRIES[entry_id], dtype)


def _run_shape(shape, batch):
    return tuple(batch if d is None else d for d in shape)


@functools.cache
def data(entry_id, batch=BATCH):
    """float64 values: inputs xs, the cotangent u, tangents vs and ws (fixed seed per entry)."""
    entry = ENTRIES[entry_id]
    g = built(entry_id, F64)
    rng = np.random.default_rng(zlib.crc32(f"{entry_id}/{batch}".encode()))
    shapes = [_run_shape(s, batch) for s in entry.shapes]
    xs = [np.asarray(a, F64) for a in entry.sample(rng, shapes)]
    xs = [np.asarray(a.astype(n.dtype), F64) for a, n in zip(xs, g.xs)]  # representable
    # the output's run-time shape: that of the NumPy reference
    u = rng.standard_normal(np.shape(entry.ref(*xs)))
    free = lambda v: v  # noqa: E731
    vs = [entry.tangent.get(k, free)(rng.standard_normal(xs[k].shape)) for k in entry.inputs_wrt]
    ws = [entry.tangent.get(k, free)(rng.standard_normal(xs[k].shape)) for k in entry.inputs_wrt]
    return xs, u, vs, ws


def feed(g, xs, u=None, vs=(), ws=()):
    """A feed dict of `g`'s placeholders, each value cast to its placeholder's dtype."""
    pairs = list(zip(g.xs, xs)) + ([(g.u, u)] if u is not None else [])
    pairs += list(zip(g.vs, vs)) + list(zip(g.ws, ws))
    return {n: np.asarray(a, dtype=n.dtype) for n, a in pairs}


def perturbed(entry, xs, vs, step):
    """xs moved by step * v along the differentiated inputs."""
    out = list(xs)
    for k, v in zip(entry.inputs_wrt, vs):
        out[k] = xs[k] + step * v
    return out


def assert_close(actual, expected, rtol, atol=0.0, what=""):
    actual, expected = np.asarray(actual, F64), np.asarray(expected, F64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def scale(*arrays):
    return 1.0 + max((float(np.max(np.abs(a))) for a in arrays if np.size(a)), default=0.0)


def shape_matches(static, concrete, batch=BATCH):
    """A node's static shape against an array's shape, every size known only at call time
    (each placeholder's None) being `batch`."""
    every = {s: batch for s in dims.symbols_of(static)}
    return len(static) == len(concrete) and all(dims.evaluate(d, every) == c
                                                for d, c in zip(static, concrete))


# ================================================================================ checks

@pytest.mark.parametrize("entry", entries("forward"))
def test_forward(entry):
    """Shape rule vs the interpreter's result, and the interpreter vs the NumPy reference."""
    g = built(entry.id, F64)
    xs, *_ = data(entry.id)
    y = sg.evaluate(g.y, feed(g, xs))
    expected = np.asarray(entry.ref(*[a.astype(n.dtype) for a, n in zip(xs, g.xs)]))
    assert shape_matches(g.y.shape, y.shape), f"node shape {g.y.shape}, evaluated {y.shape}"
    assert y.shape == expected.shape, f"evaluated {y.shape}, NumPy {expected.shape}"
    assert y.dtype == np.dtype(g.y.dtype)
    tol = 1e-12 if g.y.dtype == F64 else 1e-6
    assert_close(y, expected, rtol=tol, atol=tol * scale(expected), what=entry.id)


@pytest.mark.parametrize("entry", entries("vjp"))
def test_vjp(entry):
    """<df/dx, v> against (f(x + eps v) - f(x - eps v)) / (2 eps), f = <u, y>, along two
    random directions v and w."""
    g = built(entry.id, F64)
    xs, u, vs, ws = data(entry.id)
    fd_ = feed(g, xs, u)
    grads = sg.evaluate(g.grads + g.vjps, fd_)
    grads, vjps = grads[:len(g.wrt)], grads[len(g.wrt):]
    for x, gr, vj in zip(g.wrt, grads, vjps):
        assert gr.shape == fd_[x].shape and gr.dtype == np.dtype(x.dtype)
        assert_close(vj, gr, rtol=1e-12, atol=1e-12 * scale(gr), what="grad_ys=u vs <u, y>")
    eps, rtol = entry.eps, entry.rtol
    for direction in (vs, ws):
        analytic = sum(float(np.sum(gr * v)) for gr, v in zip(grads, direction))
        f_plus = float(sg.evaluate(g.f, feed(g, perturbed(entry, xs, direction, eps), u)))
        f_minus = float(sg.evaluate(g.f, feed(g, perturbed(entry, xs, direction, -eps), u)))
        numeric = (f_plus - f_minus) / (2 * eps)
        size = 1.0 + sum(float(np.sum(np.abs(gr * v))) for gr, v in zip(grads, direction))
        assert abs(analytic - numeric) <= rtol * size, \
            f"{entry.id}: <grad, v> = {analytic!r}, central differences {numeric!r}"


@pytest.mark.parametrize("entry", entries("jvp"))
def test_jvp(entry):
    """<u, J v> == <J^T u, v>, and J v against central differences of y."""
    g = built(entry.id, F64)
    xs, u, vs, _ = data(entry.id)
    jv, *vjps = sg.evaluate([g.jv] + g.vjps, feed(g, xs, u, vs))
    assert jv.shape == np.shape(u) and jv.dtype == np.dtype(g.y.dtype)
    forward = float(np.sum(u * jv))
    reverse = sum(float(np.sum(vj * v)) for vj, v in zip(vjps, vs))
    size = 1.0 + float(np.sum(np.abs(u * jv)))
    tol = 1e-12 if g.y.dtype == F64 and all(x.dtype == F64 for x in g.xs) else 1e-5
    assert abs(forward - reverse) <= tol * size, f"<u, Jv> = {forward!r}, <J^T u, v> = {reverse!r}"
    y_plus = sg.evaluate(g.y, feed(g, perturbed(entry, xs, vs, entry.eps)))
    y_minus = sg.evaluate(g.y, feed(g, perturbed(entry, xs, vs, -entry.eps)))
    numeric = (y_plus.astype(F64) - y_minus.astype(F64)) / (2 * entry.eps)
    assert_close(jv, numeric, rtol=entry.rtol, atol=entry.rtol * scale(jv), what="J v")


@pytest.mark.parametrize("entry", entries("hvp"))
def test_hvp(entry):
    """H v (both modes) against central differences of the gradient; w^T H v == v^T H w.
    For piecewise-linear ops H_f = 0 is checked, then the Hessian of sum(u * y * y)."""
    g = built(entry.id, F64)
    xs, u, vs, ws = data(entry.id)
    fd_ = feed(g, xs, u, vs, ws)
    if entry.hessian == "zero":
        for h in sg.evaluate(g.hf_zero, fd_):
            assert not np.any(h), f"{entry.id} is piecewise linear, but H v = {h}"
    else:
        assert entry.hessian == "fd"
    hv_fwd = sg.evaluate(g.hv_fwd, fd_)
    hv_rev = sg.evaluate(g.hv_rev, fd_)
    hw_fwd = sg.evaluate(g.hw_fwd, fd_)
    step = entry.eps * 10 if entry.eps == EPS else entry.eps   # second order: balance errors
    g_plus = sg.evaluate(g.hs_grads, feed(g, perturbed(entry, xs, vs, step), u))
    g_minus = sg.evaluate(g.hs_grads, feed(g, perturbed(entry, xs, vs, -step), u))
    for x, hf, hr, gp, gm in zip(g.wrt, hv_fwd, hv_rev, g_plus, g_minus):
        numeric = (gp.astype(F64) - gm.astype(F64)) / (2 * step)
        assert hf.shape == hr.shape == gp.shape and hf.dtype == np.dtype(x.dtype)
        tol = entry.rtol * scale(numeric, gp)
        assert_close(hf, numeric, rtol=entry.rtol, atol=tol, what=f"H v (forward), {x.name}")
        assert_close(hr, numeric, rtol=entry.rtol, atol=tol, what=f"H v (reverse), {x.name}")
        assert_close(hr, hf, rtol=1e-9, atol=1e-9 * scale(hf), what="reverse vs forward")
    w_hv = sum(float(np.sum(w * h)) for w, h in zip(ws, hv_fwd))
    v_hw = sum(float(np.sum(v * h)) for v, h in zip(vs, hw_fwd))
    size = 1.0 + sum(float(np.sum(np.abs(w * h))) for w, h in zip(ws, hv_fwd))
    assert abs(w_hv - v_hw) <= 1e-6 * size, f"w^T H v = {w_hv!r}, v^T H w = {v_hw!r}"


def _all_outputs(g):
    return [g.y] + g.grads + [g.jv] + g.hv_fwd + g.hv_rev


@pytest.mark.parametrize("entry", entries("float32"))
def test_float32(entry):
    """The graph built in float32 matches float64 (at the same, float32-rounded inputs)."""
    if entry.dtypes:
        pytest.skip("the entry fixes its input dtypes (cast): no float32 variant")
    g32, g64 = built(entry.id, F32), built(entry.id, F64)
    xs, u, vs, ws = data(entry.id)
    round32 = lambda arrays: [np.asarray(a, F32).astype(F64) for a in arrays]  # noqa: E731
    xs, vs, ws, u = round32(xs), round32(vs), round32(ws), round32([u])[0]
    out32 = sg.evaluate(_all_outputs(g32), feed(g32, xs, u, vs, ws))
    out64 = sg.evaluate(_all_outputs(g64), feed(g64, xs, u, vs, ws))
    for node, a, b in zip(_all_outputs(g32), out32, out64):
        assert node.dtype == F32 and a.dtype == np.float32, node
        assert_close(a, b, rtol=1e-4, atol=1e-5 * scale(b), what=f"float32 {node}")


def _compiled_outputs(g):
    return [g.y] + g.grads + [g.jv] + g.hv_fwd


@functools.cache
def compiled(entry_id, dtype):
    g = built(entry_id, dtype)
    return sg.function(g.xs + [g.u] + g.vs, _compiled_outputs(g), name=f"test_ops {entry_id}")


def _check_compiled(entry, dtype, batch, rtol):
    g = built(entry.id, dtype)
    fn = compiled(entry.id, dtype)
    xs, u, vs, _ = data(entry.id, batch)
    fd_ = feed(g, xs, u, vs)
    got = fn(*[fd_[n] for n in g.xs + [g.u] + g.vs])
    want = sg.evaluate(_compiled_outputs(g), fd_)
    assert len(got) == len(want)
    for node, a, b in zip(_compiled_outputs(g), got, want):
        assert a.shape == b.shape and shape_matches(node.shape, a.shape, batch), (node, a.shape, b.shape)
        assert a.dtype == b.dtype == np.dtype(node.dtype), (node, a.dtype, b.dtype)
        r = rtol if node.dtype == F64 else max(rtol, 1e-5)
        assert_close(a, b, rtol=r, atol=r * scale(b), what=f"compiled {node} (batch {batch})")


@pytest.mark.parametrize("entry", entries("compiled"))
def test_compiled(entry):
    """One compiled function per entry equals the interpreter (and at a second batch size)."""
    _check_compiled(entry, F64, BATCH, 1e-10)
    if entry.has_batch():
        _check_compiled(entry, F64, BATCH2, 1e-10)


@pytest.mark.parametrize("entry", [p for p in entries("compiled_float32")
                                   if p.values[0].compile32])
def test_compiled_float32(entry):
    _check_compiled(entry, F32, BATCH, 1e-4)
    if entry.has_batch():
        _check_compiled(entry, F32, BATCH2, 1e-4)


# ================================================================================ stop_gradient
# stop_gradient is the identity whose derivative is 0: the table's central differences would
# see the identity, so it is checked here, against the derivatives it should have.

def _stop_gradient_case():
    x = sg.placeholder("x", (3, 4), F64)
    v = sg.placeholder("v", (3, 4), F64)
    rng = np.random.default_rng(7)
    return x, v, rng.standard_normal((3, 4)), rng.standard_normal((3, 4))


def test_stop_gradient_forward():
    x, v, xv, vv = _stop_gradient_case()
    y = sg.stop_gradient(x) * 2.0
    assert y.shape == (3, 4) and y.dtype == F64
    assert_close(sg.evaluate(y, {x: xv}), 2 * xv, rtol=0)
    assert_close(sg.function([x], y)(xv), 2 * xv, rtol=0)


def test_stop_gradient_blocks_the_gradient():
    """y = x * stop_gradient(x): dy/dx = x (not 2x), J v = v * x, and H = 0."""
    x, v, xv, vv = _stop_gradient_case()
    y = x * sg.stop_gradient(x)
    outputs = [y, sg.gradients(y, x), sg.jvp(y, x, v),
               sg.hessian_vector_product(sg.sum(y), x, v),
               sg.hessian_vector_product(sg.sum(y), x, v, mode="reverse")]
    expected = [xv * xv, xv, vv * xv, 0 * xv, 0 * xv]
    got = sg.evaluate(outputs, {x: xv, v: vv})
    compiled_got = sg.function([x, v], outputs)(xv, vv)
    for node, a, b, e in zip(outputs, got, compiled_got, expected):
        assert_close(a, e, rtol=1e-12, atol=1e-14, what=f"evaluate {node}")
        assert_close(b, e, rtol=1e-12, atol=1e-14, what=f"compiled {node}")


def test_stop_gradient_alone_is_disconnected():
    x, v, xv, vv = _stop_gradient_case()
    alone = sg.stop_gradient(x)
    zero = sg.gradients(sg.sum(alone), x, disconnected="zero")
    assert_close(sg.evaluate(zero, {x: xv}), np.zeros((3, 4)), rtol=0)
    assert_close(sg.evaluate(sg.jvp(alone, x, v), {x: xv, v: vv}), np.zeros((3, 4)), rtol=0)
    with pytest.raises(sg.DisconnectedInputError):
        sg.gradients(sg.sum(alone), x)


STOP_GRADIENT_GRAPHS = [lambda x: sg.stop_gradient(x) * 2.0]  # also covered: the ops above


# ================================================================================ coverage

NOT_TABLE_OPS = {"placeholder", "variable", "constant",  # leaves
                 "elementwise", "unslice", "size",       # internal: built by rules, not users
                 "take_add",                             # take's gradient (checked through it)
                 "random", "advance"}                    # no derivative: tests/core/test_random.py


def test_every_op_is_in_the_table():
    covered = set()
    for entry in TABLE:
        covered |= {n.op for n in topological_order([built(entry.id, F64).y])}
    x = sg.placeholder("x", (3, 4), F64)
    for make_graph in STOP_GRADIENT_GRAPHS:
        covered |= {n.op for n in topological_order([make_graph(x)])}
    missing = sorted(set(OPS) - NOT_TABLE_OPS - covered)
    assert not missing, f"ops without a table entry in tests/core/test_ops.py: {missing}"
