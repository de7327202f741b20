"""The direct_convolution pass (codegen.py) and its kernels (convolution.py: the convolution
and its filter gradient with the sums along the strip or across filters, made of register
tiles in LLVM IR): a stride-1 convolution with at most
few taps × filters (C·kh·kw · O, DIRECT_MAX_WORK) computes its output and its filter gradient
without im2col columns or BLAS products. The kernels are compared with NumPy at odd sizes, padding
beyond half the window, dilation, filter and tap counts that do not fill a tile, batch 0 and 1,
views and read-only arrays, NaN and ±inf, in both layouts; the compiled functions with the
interpreter."""
import numpy as np
import pytest

import symgrad as sg
from symgrad.compiler import codegen
from symgrad.runtime import kernels

F64 = "float64"


def _windows(x, window, padding, dilation):
    """(N, C, Ho, Wo, kh, kw): every stride-1 window of x padded with zeros."""
    (kh, kw), (ph, pw), (dh, dw) = window, padding, dilation
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    return np.lib.stride_tricks.sliding_window_view(padded, span, axis=(2, 3))[..., ::dh, ::dw]


def _reference(x, w, g, padding, dilation):
    """The convolution (N, O, Ho, Wo) and the filter gradient (C·kh·kw, O), as im2col and
    products in float64."""
    o = w.shape[0]
    windows = _windows(x.astype(np.float64), w.shape[2:], padding, dilation)
    n, c, ho, wo, kh, kw = windows.shape
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    out = (columns @ w.reshape(o, -1).T.astype(np.float64)).reshape(n, ho, wo, o).transpose(0, 3, 1, 2)
    rows = g.astype(np.float64).transpose(0, 2, 3, 1).reshape(-1, o)
    return out, columns.T @ rows


GEOMETRIES = [  # N, C, H, W, O, (kh, kw), (ph, pw), (dh, dw)
    (4, 1, 28, 28, 6, (5, 5), (2, 2), (1, 1)),    # LeNet's first layer
    (3, 1, 8, 8, 8, (3, 3), (1, 1), (1, 1)),      # the small CNN's
    (2, 2, 7, 5, 5, (3, 2), (2, 1), (2, 1)),      # odd sizes, dilation, padding > window/2
    (1, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1)),      # a single value
    (1, 3, 9, 40, 7, (2, 4), (0, 3), (1, 1)),     # 7 filters, 24 taps, several tiles per row
    (0, 1, 5, 5, 3, (3, 3), (0, 0), (1, 1)),      # no images
    (2, 1, 3, 3, 2, (3, 3), (4, 4), (1, 1)),      # padding beyond the window
    (2, 6, 14, 14, 16, (5, 5), (0, 0), (1, 1)),   # LeNet's second layer: across filters
    (3, 8, 4, 4, 17, (3, 3), (1, 1), (1, 1)),     # 17 filters: a second, partial vector
    (2, 3, 6, 5, 20, (2, 3), (1, 2), (2, 1)),     # across filters, dilated, odd sizes
]


LAYOUTS = ["along_strip", "across_filters"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[str(g[:5]) for g in GEOMETRIES])
def test_the_direct_kernels_equal_im2col_and_products(geometry, dtype, layout):
    n, c, h, w_, o, window, padding, dilation = geometry
    rng = np.random.default_rng(n * 100 + o)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((o, c) + window).astype(dtype)
    want, want_grad = _reference(x, w, np.zeros((n, o) + _windows(x, window, padding, dilation).shape[2:4]),
                                 padding, dilation)
    g = rng.standard_normal(want.shape).astype(dtype)
    _, want_grad = _reference(x, w, g, padding, dilation)
    numbers = window + padding + dilation
    filters = w.reshape(o, -1).T          # (taps, O), a transposed view, as the product reads it
    x.flags.writeable = False             # read-only arrays are read as they are
    forward, gradient = getattr(kernels, f"conv2d_{layout}"), getattr(kernels, f"conv2d_filter_{layout}")
    out = np.full(want.shape, np.nan, dtype)
    forward(x, filters, out, *numbers, 0)
    added = np.ones(want.shape, dtype)
    forward(x, filters, added, *numbers, 1)   # a second term of a sum
    grad = np.full(want_grad.shape, np.nan, dtype)
    g_view = np.ascontiguousarray(g.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # not C-ordered
    gradient(x, g_view, grad, *numbers)
    tolerance = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, want, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(added, want + 1, rtol=tolerance, atol=tolerance)
    scale = max(1.0, np.abs(want_grad).max(initial=0))
    np.testing.assert_allclose(grad, want_grad, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("where", [(0, 0), (0, 6), (3, 0), (6, 6), (2, 3)])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_the_filter_gradient_meets_only_the_inputs_its_windows_hold(where, value, layout):
    """The strip the kernels sum along also runs over positions past each row's last output,
    where the cotangent is 0; an infinite input read there would make 0·inf = NaN. Such
    positions are masked: ±inf and NaN reach exactly the taps that im2col pairs them with."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 7, 7))
    x[1, 0][where] = value
    filters = 3
    w = rng.standard_normal((filters, 1, 3, 3))
    numbers = (3, 3, 0, 0, 1, 1)
    g = rng.standard_normal((2, filters, 5, 5))
    _, want = _reference(x, w, g, (0, 0), (1, 1))
    grad = np.empty_like(want)
    getattr(kernels, f"conv2d_filter_{layout}")(x, g, grad, *numbers)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(want))
    np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-12)
    out = np.empty((2, filters, 5, 5))
    getattr(kernels, f"conv2d_{layout}")(x, w.reshape(filters, -1).T, out, *numbers, 0)
    want_out, _ = _reference(x, w, g, (0, 0), (1, 1))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want_out))
    np.testing.assert_allclose(out, want_out, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_direct_kernels_refuse_sizes_that_disagree(layout):
    """They read through raw pointers: sizes that do not fit are an error, not a stray read."""
    forward, gradient = getattr(kernels, f"conv2d_{layout}"), getattr(kernels, f"conv2d_filter_{layout}")
    x = np.ones((2, 1, 6, 6))
    with pytest.raises(ValueError, match="not \\(N, O, Ho, Wo\\)"):
        forward(x, np.ones((9, 4)), np.empty((2, 4, 5, 4)), 3, 3, 0, 0, 1, 1, 0)
    with pytest.raises(ValueError, match="C·kh·kw taps"):
        forward(x, np.ones((8, 4)), np.empty((2, 4, 4, 4)), 3, 3, 0, 0, 1, 1, 0)
    with pytest.raises(ValueError, match="window, padding and dilation"):
        forward(x, np.ones((9, 4)), np.empty((2, 4, 1, 1)), 3, 3, 0, 0, 4, 4, 0)
    with pytest.raises(ValueError, match="not \\(N, O, Ho, Wo\\)"):
        gradient(x, np.ones((2, 4, 5, 4)), np.empty((9, 4)), 3, 3, 0, 0, 1, 1)


def test_codegen_sums_few_filters_along_the_strip_and_many_across():
    """LeNet's first layer (6 filters over 28×28) along the strip, its second (16 filters,
    outputs filling 39 % of the strip's tiles) across filters: the decisions say which."""
    rng = np.random.default_rng(2)
    x = sg.placeholder("x", (None, 1, 28, 28), "float32")
    w1 = sg.Variable(rng.standard_normal((6, 1, 5, 5)).astype(np.float32), name="w1")
    w2 = sg.Variable(rng.standard_normal((16, 6, 5, 5)).astype(np.float32), name="w2")
    h = sg.conv2d(sg.max_pool2d(sg.relu(sg.conv2d(x, w1, padding=2)), 2), w2)
    grads = sg.gradients(sg.sum(h * h), [w1, w2])
    f = sg.function([x], grads, background=False)
    assert "conv2d_along_strip" in f.source and "conv2d_filter_along_strip" in f.source
    assert "conv2d_across_filters" in f.source and "conv2d_filter_across_filters" in f.source
    assert {"along strip", "across filters"} <= {layout for d in _decisions(f)
                                                  for layout in ("along strip", "across filters")
                                                  if layout in d.detail}
    xv = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
    for got, want in zip(f(xv), sg.evaluate(grads, {x: xv})):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


def _decisions(f):
    return [d for d in f.decisions if d.pass_ == "direct_convolution"]


def _layer(channels, window=(3, 3), stride=1, dilation=1, seed=3):
    x = sg.placeholder("x", (None, channels, 9, 8), F64)
    rng = np.random.default_rng(seed)
    w = sg.Variable(rng.standard_normal((4, channels) + window), name="w")
    b = sg.Variable(rng.standard_normal(4), name="b")
    h = sg.relu(sg.conv2d(x, w, stride=stride, padding=1, dilation=dilation) +
                sg.reshape(b, (1, 4, 1, 1)))
    return x, w, b, h


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_a_convolution_over_few_taps_runs_direct(batch):
    """Two channels, 3×3 (18 taps): the forward pass and the filter gradient run direct (the
    filter gradient also where the input gradient's product reads the cotangent's rows) and
    the columns are never written; the loop adding the bias reads the output as NCHW. So does
    the Hessian-vector product (the tangent's convolution too). The output, every gradient
    and the product equal the interpreter's."""
    x, w, b, h = _layer(2)
    loss = sg.sum(sg.max_pool2d(h, 2) ** 2)
    step = sg.function([x], [h, sg.grad(loss, w), sg.grad(loss, b), sg.grad(loss, x)],
                       background=False)
    chosen = _decisions(step)
    assert len(chosen) == 2 and "kernels.im2col(" not in step.source
    assert "kernels.conv2d_" in step.source and "kernels.conv2d_filter_" in step.source
    v = sg.placeholder("v", (4, 2, 3, 3), F64)
    hvp = sg.function([x, v], sg.hessian_vector_product(loss, w, v), background=False)
    assert len(_decisions(hvp)) == 3 and "kernels.im2col(" not in hvp.source
    rng = np.random.default_rng(batch)
    xv, vv = rng.standard_normal((batch, 2, 9, 8)), rng.standard_normal((4, 2, 3, 3))
    for got, want in zip(step(xv), sg.evaluate([h, sg.grad(loss, w), sg.grad(loss, b),
                                                 sg.grad(loss, x)], {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hvp(xv, vv), sg.evaluate(sg.hessian_vector_product(loss, w, v),
                                                        {x: xv, v: vv}), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels, filters, size, stride", [
    (32, 64, 9, 1),    # 288 taps × 64 filters: a product thick enough for BLAS
    (1, 4, 4, 1),      # 4×4 outputs fill a quarter of the kernel's tiles
    (1, 4, 9, 2),      # a stride
])
def test_other_convolutions_keep_their_product(channels, filters, size, stride):
    x = sg.placeholder("x", (None, channels, size, size), F64)
    w = sg.Variable(np.ones((filters, channels, 3, 3)), name="w")
    h = sg.conv2d(x, w, stride=stride, padding=1)
    f = sg.function([x], [h, sg.grad(sg.sum(h * h), w)], background=False)
    assert not _decisions(f) and "kernels.im2col(" in f.source
    xv = np.random.default_rng(channels).standard_normal((2, channels, size, size))
    for got, want in zip(f(xv), sg.evaluate([h, sg.grad(sg.sum(h * h), w)], {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_direct_convolution_of_a_computed_input_keeps_it_until_its_filter_gradient():
    """The second layer's input is computed (a pooled value in the workspace). Its columns
    are never written, so its last reader is the filter gradient, late in the backward pass:
    its workspace slot must not be handed on before (here to the second layer's activations,
    of its size; float32, a net of two direct layers)."""
    rng = np.random.default_rng(11)
    x = sg.placeholder("x", (None, 1, 24, 24), "float32")
    w1 = sg.Variable(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), name="w1")
    w2 = sg.Variable(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), name="w2")
    d = sg.Variable(rng.standard_normal((72, 5)).astype(np.float32) * 0.1, name="d")
    h = sg.max_pool2d(sg.tanh(sg.conv2d(x, w1, padding=1)), 2)
    h = sg.max_pool2d(sg.tanh(sg.conv2d(h, w2, padding=1)), 2)
    loss = sg.sum(sg.tanh(sg.reshape(h, (-1, 72)) @ d) ** 2)
    grads = [sg.grad(loss, p) for p in (w1, w2, d)]
    f = sg.function([x], grads, background=False)
    assert len(_decisions(f)) == 4
    xv = rng.standard_normal((5, 1, 24, 24)).astype(np.float32)
    for got, want in zip(f(xv), sg.evaluate(grads, {x: xv})):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_a_direct_convolution_can_be_an_output_and_shows_its_choice():
    x, w, _, _ = _layer(1, window=(2, 3), dilation=(2, 1))
    y = sg.conv2d(x, w, padding=1, dilation=(2, 1))
    f = sg.function([x], y, background=False)
    (decision,) = _decisions(f)
    assert "no im2col columns" in decision.detail
    xv = np.random.default_rng(4).standard_normal((2, 1, 9, 8))
    np.testing.assert_allclose(f(xv), sg.evaluate(y, {x: xv}), rtol=1e-12, atol=1e-12)


def test_a_tangent_that_sums_two_convolutions_runs_direct():
    """The Hessian-vector product of a two-layer net with respect to both filter banks: the
    second layer's tangent is conv(ḣ, W₂) + conv(h, V₂), one direct kernel writing the first
    term and adding the second (no columns, no products: BLAS accumulates only the input
    gradient's tangent, a product for col2im), bound to a point
    (the columns then rebuilt from the stored input, not stored) and in one call; equal to the
    interpreter's."""
    rng = np.random.default_rng(12)
    x = sg.placeholder("x", (None, 1, 10, 10), F64)
    w1 = sg.Variable(rng.standard_normal((3, 1, 3, 3)), name="w1")
    w2 = sg.Variable(rng.standard_normal((4, 3, 3, 3)) * 0.5, name="w2")
    h = sg.tanh(sg.conv2d(sg.tanh(sg.conv2d(x, w1, padding=1)), w2, padding=1))
    loss = sg.sum(h * h * h)
    op = sg.linalg.HessianOperator(loss, [w1, w2], [x])
    vs = [rng.standard_normal((3, 1, 3, 3)), rng.standard_normal((4, 3, 3, 3))]
    xv = rng.standard_normal((3, 1, 10, 10))
    want = sg.evaluate(op.products, {**dict(zip(op.vectors, vs)), x: xv})
    for got in (op.function(*vs, xv), op.bind(xv)(vs)):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    sums = [d for d in _decisions(op.staged.apply) if " + the convolution of" in d.detail]
    assert sums and "kernels.im2col(" not in op.staged.apply.source


def test_a_product_read_beside_its_convolution_is_written():
    """A convolution's product that something else reads too (here an output; built from the
    ops conv2d is made of) is computed as a product, not left unwritten by a direct kernel."""
    from symgrad.core.graph import make
    x = sg.placeholder("x", (None, 1, 6, 6), F64)
    w = sg.Variable(np.random.default_rng(0).standard_normal((4, 1, 3, 3)), name="w")
    columns = make("im2col", [x], {"window": (3, 3), "stride": (1, 1), "padding": (1, 1),
                                   "dilation": (1, 1)})
    product = columns @ sg.transpose(sg.reshape(w, (4, -1)))
    y = sg.transpose(sg.reshape(product, (-1, 6, 6, 4)), (0, 3, 1, 2))
    f = sg.function([x], [y, product], background=False)
    assert not _decisions(f)
    xv = np.random.default_rng(1).standard_normal((2, 1, 6, 6))
    for got, want in zip(f(xv), sg.evaluate([y, product], {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
