"""Loops over offsets (codegen.py): a loop reading zero-padded values (the gradients of slices)
runs in segments, each reading every padded value everywhere or nowhere, with unsigned
indices (`segment_loop`); a loop whose rows are too short to vectorise reads no broadcast in
place (`materialise_short_rows`); a softmax beside its log_softmax is the exp of it
(`share_log_softmax`, simplify.py). Each compared with the interpreter, at sizes 0, 1 and
more, at NaN and ±inf."""
import numpy as np
import pytest

import symgrad as sg

F64 = "float64"


def _passes(f):
    return [d.pass_ for d in f.decisions]


def _fenced(values):
    """`values` as a view into a larger array holding NaN on either side: a compiled loop that
    reads past either end of it gives NaN where the interpreter gives a number."""
    fence = np.full(values.size + 2, np.nan)
    fence[1:-1] = values
    return fence[1:-1]


def _check(f, graph_outputs, feed, args):
    got = f(*args)
    want = sg.evaluate(graph_outputs, feed)
    for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300, equal_nan=True)


def _stencils(n):
    """Gradients of sums over shifted, strided and reversed slices of a vector of length n
    (lazy slices need known sizes): windows that start, stop and step differently."""
    x = sg.placeholder("x", (n,), F64)
    f = sg.sum(sg.sin(x[2:]) * x[:-2]) + sg.sum(x[::2] ** 2) + sg.sum(x[::-1] * sg.tanh(x))
    g = sg.grad(f, x)
    return x, f, g, sg.function([x], [f, g], background=False)


@pytest.mark.parametrize("n", [3, 4, 9])
def test_segmented_stencil_gradients_equal_the_interpreter(n):
    x, f, g, compiled = _stencils(n)
    assert "segment_loop" in _passes(compiled)
    xv = _fenced(np.random.default_rng(n).standard_normal(n))
    if n > 4:
        xv[1], xv[3], xv[-1] = np.nan, np.inf, -np.inf
    _check(compiled, [f, g], {x: xv}, (xv,))


@pytest.mark.parametrize("rows", [1, 2, 6])
def test_segments_in_two_dimensions(rows):
    x = sg.placeholder("x", (rows, 5), F64)
    f = sg.sum(x[1:, :-1] * x[:-1, 1:]) + sg.sum(sg.exp(x[:, 2:]))
    g = sg.grad(f, x)
    compiled = sg.function([x], g, background=False)
    assert "segment_loop" in _passes(compiled)
    if True:
        xv = np.random.default_rng(rows).standard_normal((rows, 5))
        _check(compiled, g, {x: xv}, (xv,))


def test_a_loop_reading_many_windows_tests_each_element():
    """Four windows would take sixteen copies of the loop body: the loop keeps its test per
    element (and is as correct, reading nothing outside its windows)."""
    n = 11
    x = sg.placeholder("x", (n,), F64)
    f = sum(sg.sum(x[k:] * x[:-k] * float(k)) for k in (1, 2, 3, 4))
    g = sg.grad(f, x)
    compiled = sg.function([x], g, background=False)
    assert "<= i0 <" in compiled.source  # the loop that tests each element
    xv = _fenced(np.random.default_rng(n).standard_normal(n))
    _check(compiled, g, {x: xv}, (xv,))


def test_slices_read_with_unsigned_indices():
    """A loop reading slices (offsets, no window) runs with unsigned indices, unsegmented."""
    n = 7
    x = sg.placeholder("x", (n,), F64)
    y = x[1:] * x[:-1] * 2.0
    compiled = sg.function([x], y, background=False)
    assert "np.uint64(m0)" in compiled.source and "s0 = " not in compiled.source
    xv = np.arange(n, dtype=np.float64) + 0.5
    _check(compiled, y, {x: xv}, (xv,))


# ------------------------------------------------------------- softmax cross-entropy


@pytest.fixture(scope="module")
def classifier_step():
    x = sg.placeholder("x", (None, 6), "float32")
    y = sg.placeholder("y", (None, 10), "float32")
    W = sg.Variable(np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32), name="W")
    loss = sg.nn.softmax_cross_entropy(x @ W, y)
    gW = sg.grad(loss, W)
    return x, y, W, loss, gW, sg.function([x, y], [loss, gW], background=False)


def test_the_loss_and_its_gradient_share_one_log_softmax(classifier_step):
    x, y, W, loss, gW, step = classifier_step
    ops = [data["op"] for _, data in step.graph.nodes(data=True)]
    assert ops.count("log_softmax") == 1 and "softmax" not in ops
    assert "share_log_softmax" in {r.rule for r in step.rewrites}
    # the gradient's rows of 10 classes read no broadcast in place: the loop calling exp is flat
    assert "materialise_short_rows" in _passes(step)


@pytest.mark.parametrize("rows", [0, 1, 5])
def test_shared_log_softmax_equals_the_interpreter(classifier_step, rows):
    x, y, W, loss, gW, step = classifier_step
    rng = np.random.default_rng(rows)
    xv = (rng.standard_normal((rows, 6)) * 30).astype(np.float32)
    yv = rng.random((rows, 10)).astype(np.float32)  # unnormalised label rows...
    if rows > 1:
        yv[0] = 0.0                                 # ...a zero one...
        xv[1, 0] = np.inf                           # ...and a logit of inf
    got = step(xv, yv)
    want = sg.evaluate([loss, gW], {x: xv, y: yv})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6, equal_nan=True)


def test_a_stencil_of_any_length_is_one_loop():
    """x of a length known only at the call: the slices' windows end at sizes the plan
    computes (x[1:]'s gradient lives in [1, 1 + max(0, n - 1))), and the gradient and the
    HVP are still one loop each."""
    x = sg.placeholder("x", (None,), F64)
    v = sg.placeholder("v", (None,), F64)
    f = sg.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    g, hv = sg.grad(f, x), sg.hessian_vector_product(f, x, v)
    grad = sg.function([x], g, background=False)
    hvp = sg.function([x, v], hv, background=False)
    assert grad.source.count("step.loop(") == 1 and hvp.source.count("step.loop(") == 1
    for n in (0, 1, 2, 17):
        rng = np.random.default_rng(n)
        xv, vv = rng.standard_normal(n), rng.standard_normal(n)
        if n > 2:
            xv[n // 2] = np.nan
        _check(grad, g, {x: xv}, (xv,))
        _check(hvp, hv, {x: xv, v: vv}, (xv, vv))
