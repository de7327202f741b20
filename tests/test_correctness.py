"""Never a wrong number: each defect the differential probe found, as a test that compiled code
and the interpreter give the right answer (or the same clear error) on the inputs that broke
them: label rows that do not sum to 1, sizes the graph assumed equal, NaN and Inf through
folded constants and max-like ops, float32 precision of log_softmax and of sqrt's derivative,
outputs beside updates, and bad arguments.
"""
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad.core.graph import topological_order

F64 = "float64"


def both(inputs, outputs, feed_values, **options):
    """(compiled, interpreted) values of `outputs` (a list) at `feed_values`."""
    f = sg.function(inputs, outputs, **options)
    compiled = f(*feed_values)
    reference = sg.evaluate(outputs, dict(zip(inputs, feed_values)))
    return compiled, reference


def fired(function):
    return {r.rule for r in function.rewrites}


# ----------------------------------------------------------------------------- facts

@pytest.fixture(scope="module")
def cross_entropy():
    z = sg.placeholder("z", (None, 3), F64)
    p = sg.placeholder("p", (None, 3), F64)
    exact = sg.grad(sg.nn.softmax_cross_entropy(z, p), z)
    declared = sg.grad(sg.nn.softmax_cross_entropy(z, p, labels_sum_to_one=True), z)
    return z, p, sg.function([z, p], [exact, declared]), exact, declared


LABEL_ROWS = {
    "zero (masked)": [0.0, 0.0, 0.0],
    "unnormalised": [0.5, 2.0, 0.0],
    "smoothed": [0.05, 0.9, 0.05],
    "one-hot": [0.0, 1.0, 0.0],
}


@pytest.mark.parametrize("row", LABEL_ROWS.values(), ids=LABEL_ROWS.keys())
def test_cross_entropy_gradient_is_exact_for_any_label_rows(cross_entropy, row):
    z, p, f, exact, _ = cross_entropy
    zb = np.array([[0.1, 1.0, 2.0], [3.0, -1.0, 0.5]])
    pb = np.array([row, [1.0, 0.0, 0.0]])
    q = np.exp(zb - zb.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    expected = (q * pb.sum(1, keepdims=True) - pb) / 2
    np.testing.assert_allclose(sg.evaluate(exact, {z: zb, p: pb}), expected, atol=1e-15)
    sums_to_one = abs(sum(row) - 1) < 1e-12
    if sums_to_one:
        compiled, compiled_declared = f(zb, pb)
        np.testing.assert_allclose(compiled_declared, expected, atol=1e-15)
    else:
        with pytest.raises(ValueError, match="do not sum to 1.*labels_sum_to_one=False"):
            f(zb, pb)
        compiled = sg.function([z, p], exact)(zb, pb)
    np.testing.assert_allclose(compiled, expected, atol=1e-15)


def test_a_broken_declaration_raises_in_the_interpreter_too(cross_entropy):
    z, p, _, _, declared = cross_entropy
    with pytest.raises(ValueError, match="do not sum to 1"):
        sg.evaluate(declared, {z: np.ones((1, 3)), p: np.zeros((1, 3))})
    with pytest.raises(ValueError, match="do not sum to 1"):  # NaN never sums to 1
        sg.evaluate(declared, {z: np.ones((1, 3)), p: np.array([[np.nan, 1, 0]])})


def test_a_broken_declaration_changes_no_variable():
    x = sg.placeholder("x", (None, 2), F64)
    p = sg.placeholder("p", (None, 2), F64)
    W = sg.Variable(np.eye(2), name="W")
    loss = sg.nn.softmax_cross_entropy(x @ W, p, labels_sum_to_one=True)
    step = sg.function([x, p], loss, updates=[(W, W - 0.5 * sg.grad(loss, W))])
    step(np.ones((2, 2)), np.eye(2))
    before = W.value.copy()
    with pytest.raises(ValueError, match="do not sum to 1"):
        step(np.ones((2, 2)), np.array([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(W.value, before)


@pytest.mark.parametrize("batch", [4, None], ids=["sum", "mean-over-any-batch"])
def test_the_q_minus_p_rule_needs_the_fact_along_the_same_axis(batch):
    # (with a batch of any size the gradient reaching the sum is -1/N, a broadcast the rule
    # would take; with a fixed one it is folded to a constant, which the rule does not take)
    z = sg.placeholder("z", (batch, 3), F64)
    p = sg.placeholder("p", (batch, 3), F64)
    terms = sg.distribution(p, axis=0) * sg.log_softmax(z, axis=1)
    loss = -sg.sum(terms) if batch else -sg.mean(sg.sum(terms, axis=1))
    f = sg.function([z, p], sg.grad(loss, z))
    assert "sum_of_distribution" not in fired(f)
    pb = np.full((4, 3), 0.25)  # columns sum to 1; rows do not
    zb = np.arange(12.0).reshape(4, 3) / 7
    np.testing.assert_allclose(f(zb, pb), sg.evaluate(sg.grad(loss, z), {z: zb, p: pb}), atol=1e-15)


def test_a_softmax_output_is_a_proven_distribution():
    z = sg.placeholder("z", (None, 3), F64)
    t = sg.placeholder("t", (None, 3), F64)
    target = sg.softmax(t)
    loss = sg.nn.softmax_cross_entropy(z, target)
    f = sg.function([z, t], sg.grad(loss, z))
    assert "sum_of_distribution" in fired(f)
    zb, tb = np.array([[0.0, 1.0, -2.0]]), np.array([[5.0, 1.0, 0.0]])
    np.testing.assert_allclose(f(zb, tb), sg.evaluate(sg.grad(loss, z), {z: zb, t: tb}), atol=1e-15)


# ----------------------------------------------------------------------------- sizes

def test_an_unknown_size_unified_with_a_fixed_one_is_checked():
    x = sg.placeholder("x", (None, 3), F64)
    y = x * sg.constant(np.ones((3, 3)))
    assert y.shape == (3, 3)
    f = sg.function([x], [y, sg.grad(sg.sum(y), x)])
    for rows in (1, 2, 4):
        with pytest.raises(ValueError, match=f"'x' axis 0 = {rows}"):
            f(np.ones((rows, 3)))
        with pytest.raises(ValueError, match="do not match"):
            sg.evaluate(y, {x: np.ones((rows, 3))})
    value, gradient = f(np.ones((3, 3)))
    assert value.shape == gradient.shape == (3, 3)


def test_a_big_product_with_a_wrong_batch_is_refused_not_a_crash():
    x = sg.placeholder("x", (None, 2000), "float32")
    f = sg.function([x], sg.sum(x * sg.constant(np.ones((2000, 2000), np.float32))))
    with pytest.raises(ValueError, match="'x' axis 0 = 1"):
        f(np.ones((1, 2000), np.float32))


def test_two_batch_sizes_of_one_shape_are_independent():
    a = sg.placeholder("a", (None, 2), F64)
    b = sg.placeholder("b", (None, 2), F64)
    bias = sg.Variable(np.array([1.0, 2.0]), name="bias")
    outputs = [sg.sum(a + bias, axis=0), sg.sum(b + bias, axis=0)]
    compiled, reference = both([a, b], outputs, [np.ones((3, 2)), np.ones((5, 2))])
    for c, r in zip(compiled, reference):
        np.testing.assert_allclose(c, r)


def test_a_sliced_size_must_fit_its_partner():
    x = sg.placeholder("x", (None,), F64)
    y = sg.placeholder("y", (None,), F64)
    f = sg.function([x, y], x[1:] * y)
    np.testing.assert_allclose(f(np.arange(4.0), np.ones(3)), [1, 2, 3])
    with pytest.raises(ValueError, match="do not match"):
        f(np.arange(4.0), np.ones(4))


def test_gradient_of_a_reduction_times_a_fixed_vector_builds_and_is_right():
    x = sg.placeholder("x", (None, 4), F64)
    c = np.arange(5.0)
    loss = sg.sum(sg.sum(x, axis=1) * sg.constant(c))
    g = sg.grad(loss, x)
    xb = np.random.default_rng(0).standard_normal((5, 4))
    compiled, reference = both([x], [g], [xb])
    np.testing.assert_allclose(compiled[0], np.broadcast_to(c[:, None], (5, 4)))
    np.testing.assert_allclose(reference[0], compiled[0])


def test_static_size_zero_axes_and_empty_batches():
    z = sg.placeholder("z", (0, 3), F64)
    x = sg.placeholder("x", (None, 3), F64)
    compiled, reference = both([z, x], [sg.exp(z) + 1.0, sg.sum(sg.exp(z)), sg.mean(x, axis=0),
                                        sg.grad(sg.sum(sg.tanh(x)), x)],
                               [np.zeros((0, 3)), np.zeros((0, 3))])
    for c, r in zip(compiled, reference):
        assert c.shape == r.shape
        np.testing.assert_array_equal(c, r)


# ----------------------------------------------------------------------------- NaN and Inf

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.5])


@pytest.mark.parametrize("build, expected", [
    (lambda v, w: v * 0.0 + w, lambda v, w: v * 0.0 + w),
    (lambda v, w: sg.sin(v) * 0.0, lambda v, w: np.sin(v) * 0.0),
    (lambda v, w: 0.0 * sg.exp(v), lambda v, w: 0.0 * np.exp(v)),
    (lambda v, w: sg.relu(v), lambda v, w: np.maximum(v, 0)),
    (lambda v, w: sg.maximum(v, w), np.maximum),
    (lambda v, w: sg.minimum(v, w), np.minimum),
    (lambda v, w: sg.maximum(w, v), lambda v, w: np.maximum(w, v)),
    # terms that cancel once fused (found by the fuzzer: (p - p) * mean over an empty batch)
    (lambda v, w: (w - w) * sg.exp(v), lambda v, w: (w - w) * np.exp(v)),
    (lambda v, w: (v - v) * w, lambda v, w: (v - v) * w),
    (lambda v, w: sg.tanh(v) - sg.tanh(v) + w, lambda v, w: np.tanh(v) - np.tanh(v) + w),
], ids=["x*0+y", "sin(x)*0", "0*exp(x)", "relu", "maximum", "minimum", "maximum-swapped",
        "(y-y)*exp(x)", "(x-x)*y", "tanh(x)-tanh(x)+y"])
def test_nan_and_inf_propagate_as_in_numpy(build, expected):
    v = sg.placeholder("v", (SPECIAL.size,), F64)
    w = sg.placeholder("w", (SPECIAL.size,), F64)
    wb = np.ones(SPECIAL.size)
    out = build(v, w)
    with np.errstate(all="ignore"):
        truth = expected(SPECIAL, wb)
    compiled, reference = both([v, w], [out], [SPECIAL, wb])
    assert compiled[0].shape == truth.shape
    np.testing.assert_array_equal(compiled[0], truth)
    np.testing.assert_array_equal(reference[0], truth)


def test_maximum_splits_its_gradient_at_ties():
    a = sg.placeholder("a", (3,), F64)
    b = sg.placeholder("b", (3,), F64)
    ga, gb = sg.gradients(sg.sum(sg.maximum(a, b)), [a, b])
    compiled, reference = both([a, b], [ga, gb], [np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])])
    for c, r in zip(compiled, reference):
        np.testing.assert_array_equal(c, r)
    np.testing.assert_array_equal(compiled[0], [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(compiled[1], [0.5, 0.0, 1.0])


def test_float32_sqrt_derivative_at_zero_and_infinity():
    x = sg.placeholder("x", (4,), "float32")
    f = sg.function([x], sg.grad(sg.sum(sg.sqrt(x)), x))
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(f(np.array([0, np.inf, 4, 0.25], np.float32)),
                                      np.array([np.inf, 0, 0.25, 1], np.float32))


def test_where_gradient_is_nan_free_in_the_branch_not_taken():
    x = sg.placeholder("x", (4,), F64)
    g = sg.grad(sg.sum(sg.where(x > 0, sg.log(sg.where(x > 0, x, 1.0)), 0.0)), x)
    xb = np.array([-1.0, 0.0, 2.0, 4.0])
    compiled, reference = both([x], [g], [xb])
    np.testing.assert_array_equal(compiled[0], [0, 0, 0.5, 0.25])
    np.testing.assert_array_equal(reference[0], compiled[0])


# ----------------------------------------------------------------------------- precision

@pytest.mark.parametrize("logits", [np.full(4, -1e4), np.array([-1e4, -1e4 + 1e-3, -1e4, -1e4 - 0.5]),
                                    np.array([1e4, 1e4, 0.0, -1e4])])
def test_float32_softmax_family_keeps_its_digits(logits):
    x = sg.placeholder("x", (4,), "float32")
    x32 = logits.astype(np.float32)
    exact = x32.astype(np.float64)
    log_softmax = (exact - exact.max()) - np.log(np.sum(np.exp(exact - exact.max())))
    f = sg.function([x], [sg.log_softmax(x), sg.softmax(x), sg.logsumexp(x)])
    for got in (f(x32), sg.evaluate([sg.log_softmax(x), sg.softmax(x), sg.logsumexp(x)], {x: x32})):
        np.testing.assert_allclose(got[0], log_softmax, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(got[1], np.exp(log_softmax), rtol=2e-6, atol=1e-30)
        assert abs(float(got[2]) - (exact.max() + np.log(np.sum(np.exp(exact - exact.max()))))) \
            <= 2e-6 * max(1.0, abs(exact.max()))


def test_logsumexp_over_several_axes():
    x = sg.placeholder("x", (None, 3, 4), F64)
    xb = np.random.default_rng(1).standard_normal((2, 3, 4))
    for axis in [(0, 1), (1, 2), (0, 2), (0, 1, 2)]:
        for keepdims in (False, True):
            out = sg.logsumexp(x, axis=axis, keepdims=keepdims)
            m = xb.max(axis=axis, keepdims=True)
            expected = np.log(np.sum(np.exp(xb - m), axis=axis, keepdims=True)) + m
            expected = expected if keepdims else np.squeeze(expected, axis)
            compiled, reference = both([x], [out], [xb])
            np.testing.assert_allclose(compiled[0], expected, rtol=1e-12)
            np.testing.assert_allclose(reference[0], expected, rtol=1e-12)


# ----------------------------------------------------------------------------- updates

def test_outputs_are_the_values_before_the_updates():
    W = sg.Variable(np.ones(3), name="W")
    step = sg.function([], [W, W * 1.0, sg.reshape(W, (3, 1))], updates=[(W, W + 1.0)])
    first = step()
    for value in first:
        np.testing.assert_array_equal(value.reshape(-1), [1, 1, 1])
    second = step()
    for value in second:
        np.testing.assert_array_equal(value.reshape(-1), [2, 2, 2])
    np.testing.assert_array_equal(W.value, [3, 3, 3])


# ----------------------------------------------------------------------------- arguments

@pytest.fixture(scope="module")
def exp_of_matrix():
    m = sg.placeholder("m", (2, 3), F64)
    return m, sg.function([m], sg.exp(m) + m)


def _layouts():
    base = np.arange(6.0).reshape(2, 3) / 10
    readonly = base.copy()
    readonly.flags.writeable = False
    return {
        "fortran": np.asfortranarray(base),
        "strided": np.arange(12.0).reshape(2, 6)[:, ::2] / 10,
        "negative-stride": base[::-1, ::-1][::-1, ::-1].copy()[:, ::-1][:, ::-1],
        "reversed": np.ascontiguousarray(base[::-1])[::-1],
        "read-only": readonly,
        "broadcast": np.broadcast_to(base[:1], (2, 3)),
        "list": base.tolist(),
    }


@pytest.mark.parametrize("name", list(_layouts()))
def test_any_layout_is_accepted(exp_of_matrix, name):
    m, f = exp_of_matrix
    value = _layouts()[name]
    expected = np.exp(np.asarray(value)) + np.asarray(value)
    np.testing.assert_allclose(f(value), expected)


@pytest.mark.parametrize("value, error, message", [
    ("abc", TypeError, "argument 'm': expected an array of float64"),
    (np.ones((2, 3), np.float32), TypeError, "argument 'm': expected dtype float64"),
    (np.ones((2, 4)), ValueError, r"argument 'm': expected shape \(2, 3\)"),
    (np.ones(6), ValueError, r"argument 'm': expected shape \(2, 3\)"),
    (None, TypeError, "argument 'm'"),
])
def test_bad_arguments_are_named(exp_of_matrix, value, error, message):
    _, f = exp_of_matrix
    with pytest.raises(error, match=message):
        f(value)


def test_an_input_that_is_a_variables_own_array():
    x = sg.placeholder("x", (3,), F64)
    W = sg.Variable(np.array([1.0, 2.0, 3.0]), name="W")
    step = sg.function([x], sg.sum(x), updates=[(W, W * 0.0 + x[::-1] * 2.0)])
    assert float(step(W.value)) == 6.0
    np.testing.assert_array_equal(W.value, [6.0, 4.0, 2.0])


def test_bad_definitions_are_named():
    with pytest.raises(ValueError, match="negative size"):
        sg.placeholder("n", (-3,))
    for bad in ["a b", 2.5]:
        with pytest.raises(TypeError, match="shape"):
            sg.placeholder("n", (bad,))
    y = sg.sum(sg.placeholder("q", (2,), F64))
    with pytest.raises(TypeError, match="grad: x must be a symgrad tensor.*float"):
        sg.grad(y, 3.0)
    with pytest.raises(TypeError, match="gradients: xs 1 must be a symgrad tensor"):
        sg.gradients(y, [sg.placeholder("r", (2,), F64), "W"])


def test_every_graph_walk_is_iterative_and_a_long_chain_compiles():
    x = sg.placeholder("x", (3,), F64)
    y = x
    for k in range(1000):
        y = sg.tanh(y) * 0.5 + 0.25 if k % 2 else sg.sin(y)
    assert len(topological_order([y])) > 1000
    reference = sg.evaluate(y, {x: np.array([0.1, 0.2, 0.3])})
    assert np.all(np.isfinite(reference))


# ----------------------------------------------------------------------------- found by the fuzzer

UNARY = {"tanh": sg.tanh, "sigmoid": sg.sigmoid, "softplus": sg.softplus, "softsign": sg.softsign,
         "exp": sg.exp, "abs": sg.abs, "relu": sg.relu, "leaky_relu": sg.leaky_relu,
         "hard_tanh": sg.hard_tanh, "sin": sg.sin, "cos": sg.cos, "square": sg.square,
         "sqrt": lambda z: sg.sqrt(z * z + 1.0), "log": lambda z: sg.log(z * z + 1.0)}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_a_function_of_a_compound_argument_is_printed_whole(name):
    # softsign(1 - g) printed as 1 - g / (1 + |1 - g|) (found by the fuzzer): every function
    # of a difference, fused into one loop, against the interpreter's NumPy
    x = sg.placeholder("x", (7,), F64)
    y = sg.placeholder("y", (7,), F64)
    out = UNARY[name](x - 0.75 * y) * 2.0 - y
    values = [np.linspace(-3.0, 3.0, 7), np.linspace(1.0, -2.0, 7)]
    compiled, reference = both([x, y], [out], values)
    assert len(sg.function([x, y], out).program.steps) == 1  # one fused loop
    np.testing.assert_allclose(compiled[0], reference[0], rtol=1e-12, atol=1e-12)


def test_powers_print_with_their_exponent_whole():
    x = sg.placeholder("x", (3,), F64)
    a = sg.placeholder("a", (), F64)
    b = sg.placeholder("b", (), F64)
    xb = np.array([0.5, -1.0, 2.0])
    for out, inputs, values in [(sg.sqrt(2.0 ** x), [x], [xb]),
                                (sg.power(sg.sigmoid(a), b <= a) - 3.0, [a, b], [np.array(0.3), np.array(0.5)])]:
        compiled, reference = both(inputs, [out], values)
        np.testing.assert_allclose(compiled[0], reference[0], rtol=1e-14)
    np.testing.assert_allclose(sg.function([x], sg.sqrt(2.0 ** x))(xb), np.sqrt(2.0 ** xb))


def test_a_wide_elementwise_tree_fuses_within_the_operand_limit():
    xs = [sg.placeholder(f"x{k}", (2,), F64) for k in range(40)]
    y = xs[0]
    for k, x in enumerate(xs[1:]):
        y = sg.where(x > 0.0, y * x, sg.sigmoid(y) - x) if k % 2 else sg.maximum(y, x) + x * 0.5
    values = [np.array([0.3 * k - 5, 1.0 - 0.1 * k]) for k in range(40)]
    g = sg.gradients(sg.sum(y * y), xs[:5])
    compiled, reference = both(xs, [y] + g, values)
    for c, r in zip(compiled, reference):
        np.testing.assert_allclose(c, r, rtol=1e-10)


def test_integer_indices_on_unknown_sizes():
    x = sg.placeholder("x", (None, None, 2), F64)
    xb = np.arange(12.0).reshape(3, 2, 2)
    outputs = [x[0], x[-1], x[:, 1:], x[1:2, -1:], sg.grad(sg.sum(x[-1] * 2.0), x)]
    compiled, reference = both([x], outputs, [xb])
    expected = [xb[0], xb[-1], xb[:, 1:], xb[1:2, -1:], np.where(np.arange(3)[:, None, None] == 2, 2.0, 0.0)
                * np.ones((3, 2, 2))]
    for c, r, e in zip(compiled, reference, expected):
        np.testing.assert_array_equal(c, e)
        np.testing.assert_array_equal(r, e)
    with pytest.raises(ValueError, match="slice"):
        sg.function([x], x[3])(xb)  # an index past the end is refused, as NumPy refuses it


def test_max_over_several_axes_splits_ties_evenly():
    x = sg.placeholder("x", (2, 2), F64)
    g = sg.grad(sg.max(x), x)
    compiled, reference = both([x], [g], [np.array([[1.0, 1.0], [0.0, 1.0]])])
    for value in (compiled[0], reference[0]):
        np.testing.assert_allclose(value, [[1 / 3, 1 / 3], [0, 1 / 3]])


@pytest.mark.parametrize("inlined", [True, False], ids=["inlined", "stored"])
def test_gradients_of_several_slices_keep_their_memory_until_read(inlined, monkeypatch):
    # The gradient of each slice is an unslice that the final sum reads in place (padded with
    # zeros, never materialised), so each slice's cotangent must stay alive until that sum.
    # The workspace once planned them as dead after their unslice, and three cotangents of
    # one size shared one slot: the compiled gradient was wrong (off by 2.2 here). Cheap
    # cotangents are computed in the sum's loop (inline_producer) and never stored; with that
    # pass off, as for costly ones, they live in the workspace, which is what this checks.
    if not inlined:
        monkeypatch.setattr(sys.modules["symgrad.compiler.codegen"], "INLINE_OPERATIONS", -1)
    x = sg.placeholder("x", (6,), "float64")
    us = [sg.placeholder(f"u{k}", (2,), "float64") for k in range(3)]
    loss = sum(sg.sum(sg.tanh(x[2 * k:2 * k + 2]) * us[k]) for k in range(3))
    g = sg.gradients(loss, x)
    f = sg.function([x] + us, g, background=False)
    assert sum(d.pass_ == "lazy_unslice" for d in f.decisions) == 3
    stored = sum(d.pass_ == "workspace_slot" for d in f.decisions)
    assert (stored == 0) if inlined else (stored >= 3)
    rng = np.random.default_rng(0)
    X, U = rng.standard_normal(6), [rng.standard_normal(2) for _ in range(3)]
    expected = np.concatenate([(1 - np.tanh(X[2 * k:2 * k + 2]) ** 2) * U[k] for k in range(3)])
    np.testing.assert_allclose(f(X, *U), expected, rtol=1e-12)
    np.testing.assert_allclose(sg.evaluate(g, {x: X, **dict(zip(us, U))}), expected, rtol=1e-12)


@pytest.mark.parametrize("windows", [
    [(0, 2, 1), (2, 4, 1), (4, 6, 1)],            # side by side
    [(0, 4, 1), (2, 6, 1), (1, 5, 1)],            # overlapping
    [(0, 6, 2), (1, 6, 2), (0, 3, 1)],            # strided
    [(5, None, -1), (4, 0, -2), (1, 4, 1)],       # reversed
    [(0, 2, 1), (0, 2, 1), (3, 5, 1)],            # the same slice twice
])
def test_gradients_through_many_slices_of_one_input(windows):
    # every slice's cotangent is read lazily by the loop that sums them (test above): the
    # compiled gradient must equal the interpreter's for any arrangement of the windows
    x = sg.placeholder("x", (6, 3), "float64")
    parts = [x[slice(*w)] for w in windows]
    us = [sg.placeholder(f"u{k}", p.shape, "float64") for k, p in enumerate(parts)]
    bodies = (sg.tanh, sg.sigmoid, lambda v: v * v)
    loss = sum(sg.sum(bodies[k % 3](p) * u) for k, (p, u) in enumerate(zip(parts, us)))
    g = sg.gradients(loss, x)
    f = sg.function([x] + us, g, background=False)
    rng = np.random.default_rng(len(windows))
    X = rng.standard_normal((6, 3))
    U = [rng.standard_normal(u.shape) for u in us]
    np.testing.assert_allclose(f(X, *U), sg.evaluate(g, {x: X, **dict(zip(us, U))}),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_loops_over_merged_axes_and_sums_over_axis_runs_equal_the_interpreter(batch):
    # a conv-style bias (1, C, 1, 1) and a row (W,) read in place by loops over (N, C, H, W):
    # merge_axes loops over runs of axes every operand reads alike, and a sum over (N, H, W)
    # is one op per run of adjacent axes; both must give the interpreter's numbers
    x = sg.placeholder("x", (None, 4, 3, 5), F64)
    b = sg.placeholder("b", (1, 4, 1, 1), F64)
    c = sg.placeholder("c", (5,), F64)
    y = sg.tanh(x + b) * c
    loss = sg.sum(sg.square(y))
    outputs = [y, sg.sum(y, axis=(0, 2, 3)), sg.sum(y, axis=(1, 2)), *sg.gradients(loss, [b, c])]
    f = sg.function([x, b, c], outputs, background=False)
    merged = [d.detail for d in f.decisions if d.pass_ == "merge_axes"]
    assert any(detail.endswith(" 0 1 23") for detail in merged), merged   # x + b
    assert any(detail.endswith(" 012 3") for detail in merged), merged    # · c
    rng = np.random.default_rng(batch)
    values = [rng.standard_normal((batch, 4, 3, 5)), rng.standard_normal((1, 4, 1, 1)),
              rng.standard_normal(5)]
    reference = sg.evaluate(outputs, dict(zip([x, b, c], values)))
    for got, expected in zip(f(*values), reference):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    y_np = np.tanh(values[0] + values[1]) * values[2]
    np.testing.assert_allclose(reference[1], y_np.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(reference[2], y_np.sum(axis=(1, 2)), rtol=1e-12, atol=1e-12)
