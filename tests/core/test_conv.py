"""Convolution and pooling beyond the op table (test_ops.py checks values, vjp, jvp and HVPs):
batches of 0 and 1, the errors that state the output-size formula, max pooling's tie and NaN
rules, and a small CNN whose compiled train step agrees with the interpreter."""
import numpy as np
import pytest

import symgrad as sg


def _cnn(batch_shape=(None, 1, 8, 8)):
    rng = np.random.default_rng(0)
    x = sg.placeholder("x", batch_shape, "float64")
    w1 = sg.Variable(rng.normal(0, 0.5, (4, 1, 3, 3)), name="w1")
    w2 = sg.Variable(rng.normal(0, 0.3, (4 * 2 * 2, 3)), name="w2")
    h = sg.relu(sg.conv2d(x, w1, padding="same"))
    h = sg.avg_pool2d(sg.max_pool2d(h, 2), 2)          # (N, 4, 2, 2)
    logits = sg.reshape(h, (-1, 16)) @ w2
    return x, (w1, w2), logits


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_compiled_cnn_agrees_with_the_interpreter_at_any_batch(batch):
    x, params, logits = _cnn()
    loss = sg.sum(logits * logits)
    grads = sg.gradients(loss, list(params))
    f = sg.function([x], [logits, *grads], background=False)
    xb = np.random.default_rng(batch).standard_normal((batch, 1, 8, 8))
    for got, want in zip(f(xb), sg.evaluate([logits, *grads], {x: xb})):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        assert got.shape == want.shape


def test_a_small_cnn_learns_with_a_compiled_train_step():
    x, params, logits = _cnn()
    y = sg.placeholder("y", (None, 3), "float64")
    loss = sg.nn.softmax_cross_entropy(logits, y, labels_sum_to_one=True)
    step = sg.function([x, y], loss, updates=[(p, p - 0.5 * sg.grad(loss, p)) for p in params],
                       background=False)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 60)
    images = rng.normal(0, 0.3, (60, 1, 8, 8))
    for k in range(3):  # class k lights up a quadrant
        images[labels == k, 0, (k % 2) * 4:(k % 2) * 4 + 4, (k // 2) * 4:(k // 2) * 4 + 4] += 1.5
    targets = np.eye(3)[labels]
    losses = [float(step(images, targets)) for _ in range(60)]
    assert losses[-1] < 0.25 * losses[0], losses[::10]


def test_shape_errors_state_the_output_size_formula():
    x = sg.placeholder("x", (None, 2, 4, 4), "float32")
    with pytest.raises(sg.ShapeError, match=r"\(4 \+ 2·0 - 5\) // 1 \+ 1 = 0"):
        sg.conv2d(x, sg.placeholder("w", (3, 2, 5, 5), "float32"))
    with pytest.raises(sg.ShapeError, match="filters must be"):
        sg.conv2d(x, sg.placeholder("w3", (3, 1, 3, 3), "float32"))
    with pytest.raises(sg.ShapeError, match="NCHW"):
        sg.conv2d(sg.placeholder("v", (4, 4), "float32"), sg.placeholder("w4", (1, 1, 1, 1), "float32"))
    with pytest.raises(sg.ShapeError, match="odd window"):
        sg.conv2d(x, sg.placeholder("w2", (3, 2, 2, 2), "float32"), padding="same")
    with pytest.raises(sg.ShapeError, match="more than half the window"):
        sg.max_pool2d(x, 2, padding=2)
    with pytest.raises(sg.ShapeError, match="stride must be >= 1"):
        sg.avg_pool2d(x, 2, stride=0)


@pytest.mark.parametrize("k", [2, 3])  # 2×2 windows have a path of their own (kernels._quad_peak)
def test_max_pooling_splits_the_gradient_among_ties_and_keeps_nan(k):
    x = sg.placeholder("x", (1, 1, k, k), "float64")
    g = sg.grad(sg.sum(sg.max_pool2d(x, k) * 3.0), x)
    f = sg.function([x], [sg.max_pool2d(x, k), g], background=False)
    tied = np.ones((1, 1, k, k))
    tied[0, 0, 0, k - 1] = tied[0, 0, k - 1, 0] = 5.0
    expected = np.where(tied == 5.0, 1.5, 0.0)  # 3 split in two
    for value, grad in (f(tied), sg.evaluate([sg.max_pool2d(x, k), g], {x: tied})):
        np.testing.assert_array_equal(value, [[[[5.0]]]])
        np.testing.assert_array_equal(grad, expected)
    with_nan = tied.copy()
    with_nan[0, 0, 0, 1] = np.nan
    value, grad = f(with_nan)
    ref_value, ref_grad = sg.evaluate([sg.max_pool2d(x, k), g], {x: with_nan})
    assert np.isnan(value).all() and np.isnan(ref_value).all()
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad))


def test_padding_never_wins_a_max_pool():
    x = sg.placeholder("x", (1, 1, 3, 3), "float64")
    f = sg.function([x], sg.max_pool2d(x, 3, stride=1, padding=1), background=False)
    negative = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(f(negative), sg.evaluate(sg.max_pool2d(x, 3, stride=1, padding=1),
                                                           {x: negative}))
    assert f(negative).max() == -1.0  # not the zeros of the padding


@pytest.mark.parametrize("hw, window, stride, padding", [
    ((4, 6), (2, 2), (2, 2), (0, 0)),   # windows tile the plane: written, nothing zeroed
    ((5, 7), (2, 2), (2, 2), (0, 0)),   # disjoint, the last row and column in no window
    ((6, 6), (2, 2), (3, 3), (1, 1)),   # stride beyond the window, with padding: gaps
    ((5, 6), (3, 3), (2, 2), (1, 1)),   # overlapping: added up
])
def test_pooling_gradient_kernels_write_every_position_whatever_out_held(hw, window, stride,
                                                                          padding):
    # The gradient kernels write (not add) where windows are disjoint and zero the output
    # only where windows leave gaps: an output that starts as NaN or garbage must not show.
    from symgrad.core.ops import OPS
    from symgrad.runtime import kernels
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3) + hw)
    x[0, 0, 0, :2] = 1.0  # a tie
    attrs = dict(window=window, stride=stride, padding=padding)
    g = OPS["max_pool2d"].numpy([x], attrs)
    g = rng.standard_normal(g.shape)
    geometry = (*window, *stride, *padding)
    for out_start in (np.nan, 7.0):
        out = np.full(x.shape, out_start)
        kernels.max_pool2d_grad(x, g, out, *geometry)
        np.testing.assert_allclose(
            out, OPS["max_pool2d_grad"].numpy([x, g], dict(attrs, in_hw=hw)), rtol=1e-12)
        out = np.full(x.shape, out_start)
        kernels.avg_pool2d_grad(g, out, *geometry)
        np.testing.assert_allclose(
            out, OPS["avg_pool2d_grad"].numpy([g], dict(attrs, in_hw=hw)), rtol=1e-12)
        if stride[0] < window[0]:
            continue  # routing needs disjoint windows
        routing = np.full(x.shape, out_start)
        kernels.max_pool2d_routing(x, routing, *geometry)
        np.testing.assert_allclose(routing, OPS["max_pool2d_routing"].numpy([x], attrs), rtol=1e-12)
        out = np.full(x.shape, out_start)
        kernels.routed_pool2d_grad(routing, g, out, *geometry)
        np.testing.assert_allclose(out, OPS["max_pool2d_grad"].numpy([x, g], dict(attrs, in_hw=hw)),
                                   rtol=1e-12)
        pooled = np.full(g.shape, out_start)
        kernels.routed_pool2d(routing, x * 2.0 + 1.0, pooled, *geometry)
        np.testing.assert_allclose(pooled, OPS["max_pool2d_select"].numpy([x, x * 2.0 + 1.0], attrs),
                                   rtol=1e-12)


def test_max_poolings_routing_shares_ties_keeps_nan_and_wants_disjoint_windows():
    """Each tap's share of its window's cotangent: 1/k at k tied maxima, NaN throughout a window
    holding a NaN, 0 in no window; the routed ops give max pooling's gradient and tangent."""
    from symgrad.core.ops import make
    attrs = dict(window=(2, 2), stride=(2, 2), padding=(0, 0))
    x = sg.placeholder("x", (1, 1, 2, 5), "float64")
    routing = make("max_pool2d_routing", [x], attrs)
    f = sg.function([x], routing, background=False)
    value = np.array([[[[1.0, 5.0, np.nan, 0.0, 9.0], [5.0, 2.0, 3.0, 4.0, 9.0]]]])
    want = [[[[0.0, 0.5, np.nan, np.nan, 0.0], [0.5, 0.0, np.nan, np.nan, 0.0]]]]
    np.testing.assert_array_equal(f(value), want)
    np.testing.assert_array_equal(sg.evaluate(routing, {x: value}), want)
    with pytest.raises(sg.ShapeError, match="overlap"):
        make("max_pool2d_routing", [x], dict(attrs, stride=(1, 2)))
    t = sg.placeholder("t", (1, 1, 2, 5), "float64")
    with pytest.raises(sg.ShapeError, match="routing's shape"):
        make("routed_pool2d", [routing, sg.placeholder("u", (1, 1, 2, 4), "float64")], attrs)
    with pytest.raises(sg.ShapeError, match="does not come from pooling"):
        make("routed_pool2d_grad", [routing, t], attrs)
