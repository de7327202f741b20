"""The lazy_transpose pass (codegen.py): a transpose read only by elementwise loops is never
copied; each loop reads its source with permuted indices. A convolution's product, laid out
(N·H·W, O), is read as (N, O, H, W) by the loop adding its bias and applying ReLU: one pass
over the output, not a copy and a pass. Compared with the interpreter at odd sizes, size 0 and
1 axes, an unknown batch, NaN and ±inf."""
import numpy as np
import pytest

import symgrad as sg

F64 = "float64"


def _lazy(f):
    return [d for d in f.decisions if d.pass_ == "lazy_transpose"]


@pytest.mark.parametrize("shape, perm", [
    ((3, 5), (1, 0)),
    ((2, 3, 4), (0, 2, 1)),
    ((2, 3, 4), (2, 0, 1)),
    ((2, 3, 4, 5), (0, 3, 1, 2)),
    ((0, 3, 4), (0, 2, 1)),
    ((1, 1, 4), (2, 1, 0)),
])
def test_a_transpose_read_by_a_loop_is_read_in_place(shape, perm):
    x = sg.placeholder("x", (None,) + shape[1:], F64)
    b = sg.placeholder("b", tuple(shape[p] for p in perm), F64)
    out = sg.tanh(sg.transpose(sg.exp(x) * 2.0, perm)) * b + 1.0
    f = sg.function([x, b], out, background=False)
    assert _lazy(f) and "copy_view" not in f.source
    rng = np.random.default_rng(len(shape))
    xv = rng.standard_normal(shape)
    bv = rng.standard_normal(tuple(shape[p] for p in perm))
    if xv.size > 2:
        xv.flat[0], xv.flat[1], xv.flat[-1] = np.nan, np.inf, -np.inf
    np.testing.assert_allclose(f(xv, bv), sg.evaluate(out, {x: xv, b: bv}), rtol=1e-12,
                               equal_nan=True)


@pytest.mark.parametrize("shape, perm", [
    ((5, 3, 4), (0, 2, 1)),
    ((5, 3, 4, 2), (0, 2, 3, 1)),      # copied as (5, 3, 8) -> (5, 8, 3)
    ((2, 3, 4, 5, 2), (3, 4, 0, 1, 2)),
    ((0, 3, 4, 2), (0, 2, 3, 1)),
])
def test_a_transpose_also_read_by_a_reduction_is_copied(shape, perm):
    x = sg.placeholder("x", (None,) + shape[1:], F64)
    t = sg.transpose(x * 3.0, perm)
    outs = [t + 1.0, sg.sum(t, axis=1)]
    f = sg.function([x], outs, background=False)
    assert not _lazy(f) and "copy_view" in f.source
    xv = np.random.default_rng(1).standard_normal(shape)
    for got, want in zip(f(xv), sg.evaluate(outs, {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_loop_reading_a_transpose_merges_the_axes_that_stay_together():
    """(N, H, W, C) read as (N, C, H, W) with a bias (1, C, 1, 1): the loop runs over
    (N, C, H·W), its rows H·W long."""
    x = sg.placeholder("x", (None, 3, 4, 5), F64)
    b = sg.placeholder("b", (1, 5, 1, 1), F64)
    out = sg.relu(sg.transpose(x * 2.0, (0, 3, 1, 2)) + b)
    f = sg.function([x, b], out, background=False)
    merged = [d for d in f.decisions if d.pass_ == "merge_axes"]
    assert _lazy(f) and merged and "3 axes, not 4" in merged[0].detail
    rng = np.random.default_rng(6)
    xv, bv = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((1, 5, 1, 1))
    np.testing.assert_allclose(f(xv, bv), sg.evaluate(out, {x: xv, b: bv}), rtol=1e-12)


def test_the_transposed_value_outlives_the_loops_that_read_it():
    """The source of a lazy transpose sits in the workspace; the loop reading it runs after
    other values are computed, so its slot must not go to one of them in between."""
    x = sg.placeholder("x", (None, 6, 5), F64)
    a = sg.sin(x) * 1.5                                  # stored: two readers
    t = sg.transpose(a, (0, 2, 1))                       # read in place, late
    later = sg.sum(sg.exp(a * 0.5), axis=2, keepdims=True) * sg.cos(x)
    out = sg.tanh(t) + sg.transpose(later, (0, 2, 1))
    f = sg.function([x], out, background=False)
    assert _lazy(f)
    xv = np.random.default_rng(2).standard_normal((3, 6, 5))
    np.testing.assert_allclose(f(xv), sg.evaluate(out, {x: xv}), rtol=1e-12)


def test_a_convolution_layer_is_a_product_and_one_loop():
    """conv2d + bias + ReLU: im2col, the product, then one loop reading the product's
    (N·H·W, O) rows as (N, O, H, W), adding the bias, applying ReLU (at stride 2, which a
    direct convolution does not take). Its gradients and the Hessian-vector product agree
    with the interpreter."""
    x = sg.placeholder("x", (None, 3, 5, 4), F64)
    w = sg.Variable(np.random.default_rng(3).standard_normal((3, 3, 3, 3)), name="w")
    b = sg.Variable(np.random.default_rng(4).standard_normal(3), name="b")
    h = sg.relu(sg.conv2d(x, w, stride=2, padding=1) + sg.reshape(b, (1, 3, 1, 1)))
    forward = sg.function([x], h, background=False)
    assert _lazy(forward) and "copy_view" not in forward.source
    assert forward.source.count("step.loop(") == 1
    loss = sg.sum(h ** 2)
    v = sg.placeholder("v", (3, 3, 3, 3), F64)
    grads = [sg.grad(loss, w), sg.grad(loss, b), sg.grad(loss, x),
             sg.hessian_vector_product(loss, w, v)]
    f = sg.function([x, v], grads, background=False)
    rng = np.random.default_rng(5)
    for batch in (0, 1, 3):
        xv, vv = rng.standard_normal((batch, 3, 5, 4)), rng.standard_normal((3, 3, 3, 3))
        np.testing.assert_allclose(forward(xv), sg.evaluate(h, {x: xv}), rtol=1e-12)
        for got, want in zip(f(xv, vv), sg.evaluate(grads, {x: xv, v: vv})):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("update", [
    lambda W: sg.transpose(W) * 2.0 + 1.0,
    lambda W: sg.tanh(sg.transpose(W) * 0.5) + W,          # the transpose read by an inlined value
    lambda W: W[0:1, :] * 2.0 + sg.transpose(W),
])
def test_an_update_reading_its_variable_transposed_is_not_written_in_place(update):
    """W = 2·Wᵀ + 1 written into W as the loop goes would read entries it has already
    overwritten: the update is computed first, then copied (and equals the interpreter)."""
    W = sg.Variable(np.arange(16.0).reshape(4, 4) / 7.0, name="W")
    new = update(W)
    want = sg.evaluate(new)
    step = sg.function([], [], updates=[(W, new)], background=False)
    step()
    np.testing.assert_allclose(W.value, want, rtol=1e-12)
    assert not any(d.pass_ == "in_place_update" for d in step.decisions)


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_a_filter_gradient_sums_a_product_per_image(batch):
    """The filter gradient of a convolution over 32×32 images at stride 2 (256 positions
    each): colsᵀ times the cotangent laid out as rows, computed image by image from the
    cotangent in place (product_by_images), no transposed copy. Equals the interpreter, NaN
    included."""
    x = sg.placeholder("x", (None, 3, 32, 32), F64)
    w = sg.Variable(np.random.default_rng(7).standard_normal((3, 3, 3, 3)), name="w")
    loss = sg.sum(sg.tanh(sg.conv2d(x, w, stride=2, padding=1)) ** 2)
    g = sg.grad(loss, w)
    f = sg.function([x], g, background=False)
    assert any(d.pass_ == "product_by_images" for d in f.decisions)
    assert "copy_view({0}.transpose((0, 2, 1))" not in f.source
    xv = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32))
    np.testing.assert_allclose(f(xv), sg.evaluate(g, {x: xv}), rtol=1e-10, atol=1e-12)
    if batch:
        xv[0, 1, 5, 5] = np.nan
        np.testing.assert_array_equal(np.isnan(f(xv)), np.isnan(sg.evaluate(g, {x: xv})))


def test_small_images_keep_one_product():
    """8×8 outputs (64 positions): one BLAS call per image would cost more than the copy."""
    x = sg.placeholder("x", (None, 3, 16, 16), F64)
    w = sg.Variable(np.random.default_rng(8).standard_normal((3, 3, 3, 3)), name="w")
    g = sg.grad(sg.sum(sg.tanh(sg.conv2d(x, w, stride=2, padding=1)) ** 2), w)
    f = sg.function([x], g, background=False)
    assert not any(d.pass_ == "product_by_images" for d in f.decisions)
    xv = np.random.default_rng(9).standard_normal((2, 3, 16, 16))
    np.testing.assert_allclose(f(xv), sg.evaluate(g, {x: xv}), rtol=1e-10)
