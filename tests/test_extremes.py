"""Extreme values for every op that claims stability, in float32 and float64.

Inputs: ±0, subnormals, ±1.5 ~ ordinary values, ±88 (exp's float32 edge), ±700 (float64's),
±1e4, ±inf and NaN. The reference is exact mathematics, evaluated in float64 by stable
formulas (and rounded to the dtype), which agrees with NumPy wherever NumPy's own function
is exact: NaN where NumPy gives NaN, ±inf where it gives ±inf, and a finite value (never NaN)
where the exact value is finite (limits at ±inf included: tanh(inf) = 1, softsign(inf) = 1).
Values and first derivatives (reverse mode) are checked, compiled (simplify=True and False)
and interpreted: every side must agree with the reference.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import symgrad as sg
from symgrad import nn

DTYPES = ["float32", "float64"]
SIMPLIFY = [True, False]


def grid(dtype):
    fi = np.finfo(dtype)
    return np.array([0.0, -0.0, 1.5, -2.5, 88.0, -88.0, 700.0, -700.0, 1e4, -1e4,
                     fi.smallest_subnormal, -fi.smallest_subnormal, fi.tiny, np.inf, -np.inf,
                     np.nan], dtype)


# ================================================================================ references
# float64, by stable formulas; `None` marks the points where the derivative is not checked
# (outside the domain: the value is NaN for a non-NaN input).

def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _sech2(x):
    with np.errstate(over="ignore"):
        c = np.cosh(x)
    return np.where(np.isinf(c), 0.0, 1 / (c * c))


def _softsign(x):
    return np.where(np.isinf(x), np.sign(x), x / (1 + np.abs(x)))


UNARY = {  # name: (builder, value, derivative, derivative tolerance: "rel" or "abs")
    "exp": (sg.exp, np.exp, np.exp, "rel"),
    "log": (sg.log, np.log, lambda x: 1 / x, "rel"),
    "sigmoid": (sg.sigmoid, _sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x), "abs"),
    "softplus": (sg.softplus, lambda x: np.logaddexp(0, x), _sigmoid, "rel"),
    "tanh": (sg.tanh, np.tanh, _sech2, "abs"),
    "softsign": (sg.softsign, _softsign, lambda x: 1 / np.square(1 + np.abs(x)), "abs"),
    "sqrt": (sg.sqrt, np.sqrt, lambda x: 1 / (2 * np.sqrt(x)), "rel"),
    "relu": (sg.relu, lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float), "abs"),
}


def _value_close(got, want, dtype, ulps=8, floor=0.0):
    """NaN where NaN, the same inf, else within `ulps` ulp of max(|exact|, floor)
    (subnormals may flush to 0)."""
    fi = np.finfo(dtype)
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bad = np.isnan(got) != np.isnan(want)
    inf = np.isinf(want) | np.isinf(got)
    bad |= inf & (got != want) & ~np.isnan(want)
    fin = ~np.isnan(want) & ~inf
    scale = np.maximum(np.abs(want), floor)
    bad |= fin & (np.abs(got - want) > ulps * float(fi.eps) * scale + 8 * float(fi.tiny))
    return bad


def _derivative_close(got, want, dtype, mode):
    if mode == "rel":
        return _value_close(got, want, dtype, ulps=32)
    fi = np.finfo(dtype)
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    bad = np.isnan(got) != np.isnan(want)
    fin = ~np.isnan(want)
    bad |= fin & ~(np.abs(got - want) <= 32 * float(fi.eps) * np.maximum(np.abs(want), 1.0))
    return bad


def _complain(what, x, got, want, bad):
    rows = [f"  x={xi!r}: got {g!r}, exact {w!r}" for xi, g, w, b in zip(
        np.ravel(x), np.ravel(got), np.ravel(want), np.ravel(bad)) if b]
    return f"{what}:\n" + "\n".join(rows)


def _sides(inputs, outputs, feed_values, simplify):
    f = sg.function(inputs, outputs, simplify=simplify)
    return f(*feed_values)


# ================================================================================ unary ops

@functools.cache
def _unary_graph(dtype):
    x = sg.placeholder("x", (None,), dtype)
    ys = [UNARY[name][0](x) for name in UNARY]
    grads = [sg.gradients(sg.sum(y), x) for y in ys]
    return x, ys, grads


@functools.cache
def _unary_function(dtype, simplify):
    x, ys, grads = _unary_graph(dtype)
    return sg.function([x], ys + grads, simplify=simplify, name=f"extremes unary {dtype}")


def _unary_results(dtype, side):
    x, ys, grads = _unary_graph(dtype)
    xv = grid(dtype)
    if side == "interpreter":
        return xv, sg.evaluate(ys + grads, {x: xv})
    return xv, _unary_function(dtype, side == "compiled")(xv)


@pytest.mark.parametrize("side", ["compiled", "compiled-unsimplified", "interpreter"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_extremes(name, dtype, side):
    xv, results = _unary_results(dtype, side)
    k = list(UNARY).index(name)
    n = len(UNARY)
    _, value, derivative, mode = UNARY[name]
    x64 = xv.astype(np.float64)
    with np.errstate(all="ignore"):
        want = value(x64).astype(dtype)
        dwant = np.asarray(derivative(x64), np.float64).astype(dtype)
    got, dgot = results[k], results[n + k]
    problems = []
    bad = _value_close(got, want, dtype)
    if bad.any():
        problems.append(_complain(f"{side} {name} {dtype} value", xv, got, want, bad))
    # the derivative: where the function is defined (or its input is NaN: then NaN), except at
    # -0 for log and sqrt (defined from the right only) and at NaN for relu (no convention)
    check = ~(np.isnan(want) & ~np.isnan(x64))
    if name in ("log", "sqrt"):
        check &= ~((x64 == 0) & np.signbit(x64))
    if name == "relu":
        check &= ~np.isnan(x64)
    dbad = _derivative_close(dgot, dwant, dtype, mode) & check
    if dbad.any():
        problems.append(_complain(f"{side} d{name}/dx {dtype}", xv, dgot, dwant, dbad))
    assert not problems, "\n".join(problems)


# ================================================================================ maximum, minimum

@functools.cache
def _binary_case(dtype):
    g = grid(dtype)
    a = np.repeat(g, len(g)).astype(dtype)
    b = np.tile(g, len(g)).astype(dtype)
    x = sg.placeholder("a", (None,), dtype)
    y = sg.placeholder("b", (None,), dtype)
    outs = []
    for op in (sg.maximum, sg.minimum):
        z = op(x, y)
        outs += [z] + sg.gradients(sg.sum(z), [x, y])
    return x, y, a, b, outs


@pytest.mark.parametrize("side", ["compiled", "compiled-unsimplified", "interpreter"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_maximum_minimum_extremes(dtype, side):
    """NaN in either operand gives NaN (np.maximum/np.minimum); otherwise the value of the
    larger/smaller, and the derivative 1 for it and 0 for the other (at ties the two
    derivatives sum to 1)."""
    x, y, a, b, outs = _binary_case(dtype)
    if side == "interpreter":
        got = sg.evaluate(outs, {x: a, y: b})
    else:
        got = sg.function([x, y], outs, simplify=side == "compiled")(a, b)
    problems = []
    for k, (name, ref) in enumerate((("maximum", np.maximum), ("minimum", np.minimum))):
        z, da, db = got[3 * k:3 * k + 3]
        want = ref(a, b)
        bad = _value_close(z, want, dtype, ulps=0)
        if bad.any():
            problems.append(_complain(f"{side} {name} {dtype} value", list(zip(a, b)), z, want, bad))
        with np.errstate(invalid="ignore"):
            first = (a > b) if name == "maximum" else (a < b)
            second = (b > a) if name == "maximum" else (b < a)
        defined = ~np.isnan(a) & ~np.isnan(b)
        dbad = defined & ((first & ((da != 1) | (db != 0))) | (second & ((da != 0) | (db != 1))) |
                          (~first & ~second & (da + db != 1)))
        if dbad.any():
            pairs = [f"  ({p!r}, {q!r}): d/da {u!r}, d/db {v!r}"
                     for p, q, u, v, w in zip(a, b, da, db, dbad) if w]
            problems.append(f"{side} {name} {dtype} derivatives:\n" + "\n".join(pairs))
    assert not problems, "\n".join(problems)


# ================================================================================ softmax family

def rows(dtype):
    fi = np.finfo(dtype)
    s = fi.smallest_subnormal
    inf, nan = np.inf, np.nan
    return np.array([
        [1e4, 0.0, -1e4, 1.0],
        [-1e4, -1e4, -1e4, -1e4],          # equal logits: softmax exactly 1/4
        [1e4, 1e4 + 1, 1e4 - 1, 1e4],
        [700.0, 700.0, -700.0, 0.0],
        [88.0, 88.0, 88.0, 88.0],
        [-88.0, 0.0, 88.0, 1.0],
        [0.0, -10.0, -10.0, -10.0],        # log_softmax[0] = -log1p(3 e^-10) = -1.36e-4
        [0.0, -10.0, -inf, -inf],          # log_softmax[0] = -log1p(e^-10) = -4.54e-5
        [20.0, 0.0, 0.0, 0.0],             # softmax[1:] = e^-20 / (1 + 3 e^-20)
        [s, -s, 0.0, -0.0],
        [-inf, 0.0, 1.0, 2.0],
        [-inf, -inf, -inf, -inf],
        [inf, 0.0, 1.0, 2.0],
        [nan, 0.0, 1.0, 2.0],
    ], dtype)


W = np.array([1.0, -2.0, 3.0, 0.5])  # weights of the scalar whose gradient is checked


def _ref_family(r):
    """logsumexp, softmax, log_softmax of float64 rows and the gradients of
    sum(lse), sum(W * softmax), sum(W * log_softmax); NaN marks undefined gradients."""
    with np.errstate(all="ignore"):
        m = np.max(r, axis=1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        lse = np.log(np.sum(np.exp(r - m), axis=1, keepdims=True)) + m
        ls = r - lse
        # -log1p(sum of the others) for the largest entry, exactly (no cancellation)
        top = np.argmax(np.nan_to_num(r, nan=-np.inf), axis=1)
        for i, t in enumerate(top):
            if not np.any(np.isnan(r[i])) and np.isfinite(r[i, t]):
                others = np.sum(np.exp(np.delete(r[i], t) - r[i, t]))
                ls[i] = r[i] - r[i, t] - np.log1p(others)
                lse[i] = r[i, t] + np.log1p(others)
        sm = np.exp(ls)
        g_lse = sm
        g_sm = sm * (W - np.sum(sm * W, axis=1, keepdims=True))
        g_ls = W - sm * np.sum(W)
    return lse[:, 0], sm, ls, g_lse, g_sm, g_ls


@functools.cache
def _family_graph(dtype):
    x = sg.placeholder("x", (None, 4), dtype)
    w = sg.constant(W.astype(dtype))
    lse, sm, ls = sg.logsumexp(x, axis=1), sg.softmax(x, axis=1), sg.log_softmax(x, axis=1)
    grads = [sg.gradients(sg.sum(lse), x), sg.gradients(sg.sum(sm * w), x),
             sg.gradients(sg.sum(ls * w), x)]
    return x, [lse, sm, ls] + grads


@pytest.mark.parametrize("side", ["compiled", "compiled-unsimplified", "interpreter"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_extremes(dtype, side):
    x, outs = _family_graph(dtype)
    r = rows(dtype)
    got = sg.evaluate(outs, {x: r}) if side == "interpreter" else \
        sg.function([x], outs, simplify=side == "compiled")(r)
    want = _ref_family(r.astype(np.float64))
    names = ["logsumexp", "softmax", "log_softmax", "d logsumexp", "d sum(W softmax)",
             "d sum(W log_softmax)"]
    problems = []
    for k, (name, g, w) in enumerate(zip(names, got, want)):
        w = w.astype(dtype)
        if k == 1:
            # exp(x - lse): its condition number is |x - lse|, so allow that many ulp more
            bad = _value_close(g, w, dtype, ulps=8 + np.nan_to_num(np.abs(want[2]), posinf=0))
        elif k < 3:
            # logsumexp and log_softmax are m + log Σ and (x - m) - log Σ, as in JAX and
            # PyTorch: log Σ = log(1 + the rest) is accurate to a few ulp of 1, so a result
            # near 0 (the log-probability of a dominant logit) is accurate to a few ulp of 1
            # in absolute terms, not relative to its own tiny size
            bad = _value_close(g, w, dtype, ulps=8, floor=1.0)
        else:
            # gradients where they are defined: rows without ±inf (a -inf entry is fine:
            # its probability is exactly 0), and NaN rows must give NaN
            has_nan = np.any(np.isnan(r), axis=1)
            rows_ok = (~np.any(r == np.inf, axis=1) & np.any(np.isfinite(r), axis=1)) | has_nan
            bad = _derivative_close(g, w, dtype, "abs") & rows_ok[:, None]
        if bad.any():
            where = [f"  row {i} {r[i].tolist()}: got {np.asarray(g)[i].tolist()}, "
                     f"exact {w[i].tolist()}" for i in range(len(r))
                     if np.any(bad[i] if bad.ndim > 1 else bad[i])]
            problems.append(f"{side} {name} {dtype}:\n" + "\n".join(where))
    assert not problems, "\n".join(problems)


def test_float32_softmax_of_equal_logits_is_a_quarter():
    x = sg.placeholder("x", (None, 4), "float32")
    v = np.full((1, 4), -1e4, np.float32)
    for got in (sg.function([x], sg.softmax(x))(v), sg.evaluate(sg.softmax(x), {x: v})):
        np.testing.assert_allclose(got, 0.25, rtol=float(np.finfo(np.float32).eps), atol=0)


@pytest.mark.parametrize("row", [[0.0, -10.0], [0.0, -10.0, -10.0, -10.0], [10.0, 0.0, 0.0],
                                 [0.0, -12.0], [3.0, -7.0, -8.0]])
def test_float32_log_softmax_of_the_largest_logit_is_accurate(row):
    """log_softmax(x)[argmax] = -log1p(sum of exp(others - max)) is small (-4.54e-5 for
    [0, -10]); computed as (x - m) - log Σ it is right to a few float32 ulp of 1. The old form
    x - (m + log Σ) gave -6.10e-5 for -4.54e-5 at logits near -1e4."""
    for shift in (0.0, -1e4):
        shifted = [v + shift for v in row]
        top_at = int(np.argmax(row))
        exact = -math.log1p(sum(math.exp(v - row[top_at]) for k, v in enumerate(row) if k != top_at))
        x = sg.placeholder("x", (None, len(row)), "float32")
        v = np.array([shifted], np.float32)
        exact_here = -math.log1p(sum(math.exp(float(a) - float(v[0, top_at]))
                                     for k, a in enumerate(v[0]) if k != top_at))
        y = sg.log_softmax(x)
        for who, got in (("compiled", sg.function([x], y)(v)), ("interpreter", sg.evaluate(y, {x: v}))):
            top = float(got[0, top_at])
            assert abs(top - exact_here) <= 4 * float(np.finfo(np.float32).eps), \
                f"{who}: log_softmax({shifted})[max] = {top!r}, exact {exact_here!r} ({exact!r})"


# ================================================================================ losses

CE_ROWS = np.array([[1e4, 0.0, -1e4, 1.0], [-1e4, -1e4, -1e4, -1e4], [700.0, -700.0, 0.0, 0.0],
                    [88.0, -88.0, 88.0, 0.0], [0.0, -10.0, -10.0, -10.0], [20.0, 0.0, 0.0, 0.0],
                    [np.nan, 0.0, 1.0, 2.0]])
CE_LABELS = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], [0, 1, 0, 0],
                      [1, 0, 0, 0], [0, 0.5, 0.5, 0], [1, 0, 0, 0]], np.float64)
CE_UNNORMALISED = np.array([[0, 0, 2, 0], [0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [0, 1, 1, 0],
                            [3, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], np.float64)


def _ce_reference(z, y):
    """Per row: -sum(y log_softmax(z)) and its gradient softmax(z) sum(y) - y (float64)."""
    _, sm, ls, *_ = _ref_family(z)
    with np.errstate(all="ignore"):
        value = -np.sum(np.where(y != 0, y * ls, 0.0), axis=1)
        value = np.where(np.any(np.isnan(z), axis=1), np.nan, value)
        grad = sm * np.sum(y, axis=1, keepdims=True) - y
    return value, grad


@pytest.mark.parametrize("side", ["compiled", "compiled-unsimplified", "interpreter"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("declared", [True, False])
def test_softmax_cross_entropy_extremes(declared, dtype, side):
    """One loss per row (a batch of one), so each row's value and gradient are seen alone.
    Declared labels (labels_sum_to_one) sum to 1; undeclared ones may not (zero rows too)."""
    labels_v = CE_LABELS if declared else CE_UNNORMALISED
    z = sg.placeholder("z", (None, 4), dtype)
    y = sg.placeholder("y", (None, 4), dtype)
    outs = []
    for i in range(len(CE_ROWS)):
        loss = nn.softmax_cross_entropy(z[i:i + 1], y[i:i + 1], labels_sum_to_one=declared)
        outs.append(loss)
    outs += sg.gradients(outs, [z])   # the sum of the per-row losses: row i's gradient in row i
    zv, yv = CE_ROWS.astype(dtype), labels_v.astype(dtype)
    got = sg.evaluate(outs, {z: zv, y: yv}) if side == "interpreter" else \
        sg.function([z, y], outs, simplify=side == "compiled")(zv, yv)
    value, grad = _ce_reference(zv.astype(np.float64), yv.astype(np.float64))
    problems = []
    # -Σ p·log_softmax: a few ulp of 1 per unit of label mass (see test_softmax_family_extremes)
    mass = np.maximum(np.sum(np.abs(labels_v), axis=1), 1.0)
    vbad = _value_close(np.array([float(v) for v in got[:-1]]), value.astype(dtype), dtype, ulps=16,
                        floor=mass)
    if vbad.any():
        problems.append(f"{side} softmax_cross_entropy {dtype} value:\n" + "\n".join(
            f"  logits {zv[i].tolist()}, labels {yv[i].tolist()}: got {float(got[i])!r}, "
            f"exact {value[i]!r}" for i in range(len(zv)) if vbad[i]))
    gbad = _derivative_close(got[-1], grad.astype(dtype), dtype, "abs")
    if gbad.any():
        problems.append(f"{side} softmax_cross_entropy {dtype} gradient:\n" + "\n".join(
            f"  logits {zv[i].tolist()}, labels {yv[i].tolist()}: got {got[-1][i].tolist()}, "
            f"exact {grad[i].tolist()}" for i in range(len(zv)) if gbad[i].any()))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("side", ["compiled", "compiled-unsimplified", "interpreter"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_binary_cross_entropy_extremes(dtype, side):
    """softplus(z) - y z per element (each its own loss), and its derivative sigmoid(z) - y."""
    zs = np.array([0.0, 1.5, -2.5, 88.0, -88.0, 700.0, -700.0, 1e4, -1e4,
                   np.finfo(dtype).smallest_subnormal, np.nan])
    zv = np.repeat(zs, 2).astype(dtype)
    yv = np.tile([0.0, 1.0], len(zs)).astype(dtype)
    z = sg.placeholder("z", (None,), dtype)
    y = sg.placeholder("y", (None,), dtype)
    outs = [nn.sigmoid_binary_cross_entropy(z[i:i + 1], y[i:i + 1]) for i in range(len(zv))]
    outs += sg.gradients(outs, [z])
    got = sg.evaluate(outs, {z: zv, y: yv}) if side == "interpreter" else \
        sg.function([z, y], outs, simplify=side == "compiled")(zv, yv)
    z64, y64 = zv.astype(np.float64), yv.astype(np.float64)
    with np.errstate(all="ignore"):
        value = (np.logaddexp(0, z64) - y64 * z64).astype(dtype)
        grad = (_sigmoid(z64) - y64).astype(dtype)
    values = np.array([float(v) for v in got[:-1]])
    problems = []
    # softplus(z) - y z cancels for large |z|: accurate to a few ulp of the terms
    scale = np.abs(np.logaddexp(0, z64)) + np.abs(y64 * z64)
    vbad = ~(np.abs(values - value) <= 16 * float(np.finfo(dtype).eps) * np.nan_to_num(scale)) & \
        ~(np.isnan(values) & np.isnan(value))
    if vbad.any():
        problems.append(_complain(f"{side} sigmoid_binary_cross_entropy {dtype} value (z, y)",
                                  list(zip(zv, yv)), values, value, vbad))
    gbad = _derivative_close(got[-1], grad, dtype, "abs")
    if gbad.any():
        problems.append(_complain(f"{side} sigmoid_binary_cross_entropy {dtype} gradient (z, y)",
                                  list(zip(zv, yv)), got[-1], grad, gbad))
    assert not problems, "\n".join(problems)


# ================================================================================ NaN and inf kept

@pytest.mark.parametrize("side", ["compiled", "compiled-unsimplified", "interpreter"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_survive_multiplication_by_zero(dtype, side):
    """x * 0.0 + y and sin(x) * 0.0 are NaN where x is NaN or ±inf (IEEE, NumPy): a rewrite
    of f * 0 to 0 must not drop them. Also relu(NaN), maximum(NaN, 1), minimum(1, NaN)."""
    x = sg.placeholder("x", (None,), dtype)
    y = sg.placeholder("y", (None,), dtype)
    xv = np.array([1.0, np.nan, np.inf, -np.inf, 0.0], dtype)
    yv = np.array([2.0, 2.0, 2.0, 2.0, 2.0], dtype)
    outs = [x * 0.0 + y, sg.sin(x) * 0.0, 0.0 * x, sg.relu(x), sg.maximum(x, 1.0),
            sg.maximum(1.0, x), sg.minimum(x, 1.0), sg.minimum(1.0, x)]
    with np.errstate(all="ignore"):
        want = [xv * 0.0 + yv, np.sin(xv) * 0.0, 0.0 * xv, np.maximum(xv, 0), np.maximum(xv, 1.0),
                np.maximum(1.0, xv), np.minimum(xv, 1.0), np.minimum(1.0, xv)]
    names = ["x * 0.0 + y", "sin(x) * 0.0", "0.0 * x", "relu(x)", "maximum(x, 1)",
             "maximum(1, x)", "minimum(x, 1)", "minimum(1, x)"]
    got = sg.evaluate(outs, {x: xv, y: yv}) if side == "interpreter" else \
        sg.function([x, y], outs, simplify=side == "compiled")(xv, yv)
    problems = [_complain(f"{side} {name} {dtype}", xv, g, w, _value_close(g, w, dtype))
                for name, g, w in zip(names, got, want) if _value_close(g, w, dtype).any()]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("side", ["compiled", "compiled-unsimplified", "interpreter"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_where_log_gradient_is_nan_free_in_the_branch_not_taken(dtype, side):
    """d/dx where(x > 0, log(x), 0) is 1/x where x > 0 and exactly 0 elsewhere (the famous
    NaN: 0 * (1/x) at x = 0, or 0 * NaN from log of a negative number)."""
    x = sg.placeholder("x", (None,), dtype)
    y = sg.where(x > 0, sg.log(x), 0.0)
    g = sg.gradients(sg.sum(y), x)
    xv = np.array([-1.0, 0.0, -0.0, 1.0, 2.0, -np.inf, 1e-30], dtype)
    got = sg.evaluate([y, g], {x: xv}) if side == "interpreter" else \
        sg.function([x], [y, g], simplify=side == "compiled")(xv)
    with np.errstate(all="ignore"):
        want_y = np.where(xv > 0, np.log(np.where(xv > 0, xv, 1)), 0).astype(dtype)
        want_g = np.where(xv > 0, 1 / np.where(xv > 0, xv, 1), 0).astype(dtype)
    problems = []
    if _value_close(got[0], want_y, dtype).any():
        problems.append(_complain(f"{side} where(x > 0, log(x), 0) {dtype}", xv, got[0], want_y,
                                  _value_close(got[0], want_y, dtype)))
    if _value_close(got[1], want_g, dtype).any():
        problems.append(_complain(f"{side} d/dx where(x > 0, log(x), 0) {dtype}", xv, got[1],
                                  want_g, _value_close(got[1], want_g, dtype)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("side", ["compiled", "interpreter"])
def test_float32_sqrt_gradient_at_zero_and_infinity(side):
    x = sg.placeholder("x", (None,), "float32")
    g = sg.gradients(sg.sum(sg.sqrt(x)), x)
    xv = np.array([0.0, np.inf, 4.0], np.float32)
    got = sg.evaluate(g, {x: xv}) if side == "interpreter" else sg.function([x], g)(xv)
    np.testing.assert_array_equal(got, np.array([np.inf, 0.0, 0.25], np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_along_an_empty_axis(dtype):
    """Along an axis of size 0: the max and logsumexp of nothing are -inf (max's identity,
    log of an empty sum), softmax and log_softmax are empty; compiled and interpreted agree,
    and the kernels read no element (there is none)."""
    x = sg.placeholder("x", (None, None), dtype)
    outputs = [sg.max(x, axis=1), sg.logsumexp(x, axis=1), sg.softmax(x, axis=1),
               sg.log_softmax(x, axis=1)]
    f = sg.function([x], outputs, background=False)
    xv = np.ones((3, 0), dtype)
    got, want = f(xv), sg.evaluate(outputs, {x: xv})
    assert [g.shape for g in got] == [(3,), (3,), (3, 0), (3, 0)]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(got[0], -np.inf)
    np.testing.assert_array_equal(got[1], -np.inf)
