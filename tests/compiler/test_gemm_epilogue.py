"""The passes that write a value where another step would read it back (codegen.py):
gemm_epilogue (an update W + α·(a @ b) written by one BLAS call into W, beta = 1),
gemm_accumulate (a sum of products accumulated by their BLAS calls) and reduce_in_loop (a
column sum added up by the loop that writes its input). Each compared with the interpreter,
and refused where it would change a result."""
import numpy as np
import pytest

import symgrad as sg

F32 = "float32"


def _passes(f):
    return {d.name: d.pass_ for d in f.decisions if d.pass_ in ("gemm_epilogue", "in_place_update")}


def _sgd_step(rate_in_variable, dtype=F32, also=()):
    rng = np.random.default_rng(0)
    x = sg.placeholder("x", (None, 5), dtype)
    t = sg.placeholder("t", (None, 3), dtype)
    w = sg.Variable(rng.standard_normal((5, 3)).astype(dtype), name="epilogue/W")
    rate = sg.Variable(np.asarray(0.1, dtype), name="epilogue/rate") if rate_in_variable else 0.1
    loss = sg.mean(sg.square(sg.tanh(x @ w) - t))
    g = sg.grad(loss, w)
    outputs = [loss] + [make(w) for make in also]
    return x, t, w, rate, g, outputs, sg.function([x, t], outputs, updates=[(w, w - rate * g)],
                                                   background=False)


@pytest.mark.parametrize("rate_in_variable", [False, True], ids=["constant-rate", "variable-rate"])
def test_an_sgd_update_is_one_gemm_and_equals_the_interpreter(rate_in_variable):
    x, t, w, rate, g, outputs, f = _sgd_step(rate_in_variable)
    assert "gemm_epilogue" in _passes(f).values()
    kernel = "gemm_update_scaled" if rate_in_variable else "gemm_update"
    assert f"kernels.{kernel}(" in f.source
    rng = np.random.default_rng(1)
    for batch in (7, 1, 0):
        xv, tv = rng.standard_normal((batch, 5)).astype(F32), rng.standard_normal((batch, 3)).astype(F32)
        start = w.value.copy()
        expected = sg.evaluate(w - rate * g, {x: xv, t: tv})
        f(xv, tv)
        np.testing.assert_allclose(w.value, expected, rtol=1e-5, atol=1e-6)
        if batch == 0:  # a mean over no rows is NaN, as in NumPy: so is the update
            assert np.all(np.isnan(w.value)) == np.all(np.isnan(expected))
        w.value = start


def test_a_zero_rate_keeps_the_nan_of_the_product():
    """BLAS skips the product when α = 0, where W - 0·NaN is NaN: the kernel then computes
    the product and the loop, as the interpreter does."""
    x, t, w, rate, g, outputs, f = _sgd_step(True)
    rate.value = np.float32(0.0)
    xv = np.full((2, 5), np.nan, np.float32)
    tv = np.zeros((2, 3), np.float32)
    expected = sg.evaluate(w - rate * g, {x: xv, t: tv})
    f(xv, tv)
    assert np.all(np.isnan(expected)) and np.all(np.isnan(w.value))


@pytest.mark.parametrize("order", ["a-first", "b-first"])
def test_no_epilogue_where_the_old_weights_are_read_after_the_product(order):
    """B's update reads A's old value. Where its loop runs after A's gradient product, writing
    A in that product's call would hand B the new A: the pass must leave A's update to its
    loop there. Both orders of the updates, both outcomes checked against the interpreter."""
    rng = np.random.default_rng(2)
    x = sg.placeholder("x", (None, 3), F32)
    a = sg.Variable(rng.standard_normal((3, 3)).astype(F32), name=f"{order}/A")
    b = sg.Variable(rng.standard_normal((3, 3)).astype(F32), name=f"{order}/B")
    new_a = a - 0.1 * (x.T @ (x @ b))
    new_b = b + a * 1.5
    updates = [(a, new_a), (b, new_b)] if order == "a-first" else [(b, new_b), (a, new_a)]
    f = sg.function([x], [], updates=updates, background=False)
    xv = rng.standard_normal((4, 3)).astype(F32)
    expected_a, expected_b = sg.evaluate([new_a, new_b], {x: xv})
    f(xv)
    np.testing.assert_allclose(a.value, expected_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.value, expected_b, rtol=1e-5, atol=1e-6)
    steps = f.program.steps
    fused = [d.name for d in f.decisions if d.pass_ == "gemm_epilogue"]
    if fused:  # then nothing at or after the product reads A
        product = next(k for k, s in enumerate(steps) if s.node.op == "matmul" and
                       s.node.inputs[0].op == "transpose")
        assert not any(i is a for s in steps[product:] for i in s.node.inputs
                       if s.out != fused[0])


def test_decay_in_the_update_is_blas_beta():
    """W - lr·(g + λ·W) = (1 - lr·λ)·W - lr·g: BLAS's beta is 1 - lr·λ."""
    rng = np.random.default_rng(3)
    x = sg.placeholder("x", (None, 4), F32)
    w = sg.Variable(rng.standard_normal((4, 2)).astype(F32), name="decay/W")
    loss = sg.mean(sg.square(sg.tanh(x @ w)))
    new = w - 0.5 * (sg.grad(loss, w) + 0.1 * w)
    f = sg.function([x], loss, updates=[(w, new)], background=False)
    assert any(d.pass_ == "gemm_epilogue" and "beta = 0.95" in d.detail for d in f.decisions)
    for _ in range(3):
        xv = rng.standard_normal((5, 4)).astype(F32)
        expected = sg.evaluate(new, {x: xv})
        f(xv)
        np.testing.assert_allclose(w.value, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------- gemm_accumulate: sums of products

def _sum_of_products(dtype="float64"):
    """s = x·A - 2·(t·B), t = tanh(x·C) computed between the two products (its memory must
    not be the sum's, which is written from the first product on), s read by a product."""
    rng = np.random.default_rng(3)
    x = sg.placeholder("x", (None, 4), dtype)
    A, B, C, D, E, F = (sg.constant(rng.standard_normal(shape).astype(dtype))
                        for shape in ((4, 6), (6, 6), (4, 6), (6, 2), (4, 3), (4, 3)))
    t = sg.tanh(x @ C) * 2.0
    s = x @ A - 2.0 * (t @ B)
    outputs = [s @ D + sg.sum(t), x @ E + x @ F]
    return x, outputs, sg.function([x], outputs, background=False)


def test_a_sum_of_products_is_accumulated_by_blas_and_equals_the_interpreter():
    x, outputs, f = _sum_of_products()
    passes = [d.pass_ for d in f.decisions]
    assert passes.count("gemm_accumulate") == 2  # one in the workspace, one returned
    assert f.source.count("kernels.gemm_update(") == 2
    rng = np.random.default_rng(4)
    for batch in (5, 1, 0):
        xv = rng.standard_normal((batch, 4))
        if batch > 1:
            xv[1, 2] = np.nan
        for got, want in zip(f(xv), sg.evaluate(outputs, {x: xv})):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_the_hvp_adds_its_tangent_products_by_blas():
    x = sg.placeholder("x", (None, 3), F32)
    W = sg.Variable(np.random.default_rng(5).standard_normal((3, 4)).astype(F32), name="accumulate/W")
    V = sg.placeholder("V", (3, 4), F32)
    loss = sg.sum(sg.tanh(x @ W) ** 2)
    hv = sg.hessian_vector_product(loss, [W], [V])[0]
    f = sg.function([x, V], hv, background=False)
    xv = np.random.default_rng(6).standard_normal((6, 3)).astype(F32)
    vv = np.random.default_rng(7).standard_normal((3, 4)).astype(F32)
    np.testing.assert_allclose(f(xv, vv), sg.evaluate(hv, {x: xv, V: vv}), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------- reduce_in_loop: column sums

@pytest.fixture(scope="module")
def bias_gradients():
    """An MLP layer's gradients: the bias's is the column sum of the pre-activation's gradient,
    which the loop computing that gradient adds up as it writes it; a 3-D value summed along
    its first axis too (rows of 20: shorter rows are left to sum_axis)."""
    rng = np.random.default_rng(8)
    x = sg.placeholder("x", (None, 5), F32)
    t = sg.placeholder("t", (None, 4, 5), F32)
    W = sg.Variable(rng.standard_normal((5, 20)).astype(F32), name="reduce/W")
    b = sg.Variable(np.zeros(20, F32), name="reduce/b")
    loss = sg.sum(sg.tanh(x @ W + b) ** 2)
    gW, gb = sg.gradients(loss, [W, b])
    cube = sg.sum(sg.exp(t) * 0.5 - t, axis=0)
    outputs = [gW, gb, cube]
    return x, t, outputs, sg.function([x, t], outputs, background=False)


def test_column_sums_are_added_up_by_the_loop_that_writes_the_value(bias_gradients):
    x, t, outputs, f = bias_gradients
    assert [d.pass_ for d in f.decisions].count("reduce_in_loop") == 2
    assert "kernels.sum_axis(" not in f.source
    rng = np.random.default_rng(9)
    for rows in (7, 1, 0):
        xv = rng.standard_normal((rows, 5)).astype(F32)
        tv = rng.standard_normal((rows, 4, 5)).astype(F32)
        if rows > 1:
            xv[1, 0], tv[0, 1, 1] = np.nan, np.inf
        first, again = f(xv, tv), f(xv, tv)  # (each call starts its sums from 0)
        for got, repeat, want in zip(first, again, sg.evaluate(outputs, {x: xv, t: tv})):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
            np.testing.assert_array_equal(got, repeat)


def test_no_column_sum_in_a_loop_that_computes_an_inlined_value():
    """p = sin(x)·3 is read shifted (p[1:] - p[:-1]) and directly (p·y, summed along axis 0):
    inlined into the loop of p·y, that loop is no longer flat, so the sum stays a step."""
    x = sg.placeholder("x", (6, 20), "float64")
    y = sg.placeholder("y", (6, 20), "float64")
    p = sg.sin(x) * 3.0
    outputs = [sg.sum(p * y, axis=0), p[1:] - p[:-1]]
    f = sg.function([x, y], outputs, background=False)
    decisions = {d.pass_ for d in f.decisions}
    assert "inline_producer" in decisions and "reduce_in_loop" not in decisions
    rng = np.random.default_rng(10)
    xv, yv = rng.standard_normal((6, 20)), rng.standard_normal((6, 20))
    for got, want in zip(f(xv, yv), sg.evaluate(outputs, {x: xv, y: yv})):
        np.testing.assert_allclose(got, want, rtol=1e-12)
