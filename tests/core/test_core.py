"""End-to-end behaviour of the pipeline: worked examples, compiled vs interpreted, updates,
bad input, scale. Per-op checks live in test_ops.py."""
import numpy as np
import pytest

import symgrad as sg
from symgrad.core.graph import topological_order
from symgrad.compiler.schedule import schedule


def test_worked_example_sin_plus_product():
    # z = sin(x1) + x1*x2 at (2, 3): dz/dx1 = cos 2 + 3, dz/dx2 = x1 = 2
    x1 = sg.placeholder("x1", (), "float64")
    x2 = sg.placeholder("x2", (), "float64")
    z = sg.sin(x1) + x1 * x2
    g1, g2 = sg.gradients(z, [x1, x2])
    z_val, g1_val, g2_val = sg.evaluate([z, g1, g2], {x1: 2.0, x2: 3.0})
    assert z_val == pytest.approx(np.sin(2) + 6)
    assert g1_val == pytest.approx(np.cos(2) + 3) and round(float(g1_val), 3) == 2.584
    assert g2_val == pytest.approx(2.0)
    f = sg.function([x1, x2], [z, g1, g2])
    np.testing.assert_allclose(f(2.0, 3.0), [z_val, g1_val, g2_val], rtol=1e-12)


def test_goodfellow_xor_network_is_exact():
    X = sg.placeholder("X", (None, 2), "float64")
    W = sg.constant(np.array([[1.0, 1.0], [1.0, 1.0]]))
    c = sg.constant(np.array([0.0, -1.0]))
    w = sg.constant(np.array([1.0, -2.0]))
    y = sg.relu(X @ W + c) @ w + 0.0
    inputs = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    np.testing.assert_array_equal(sg.evaluate(y, {X: inputs}), [0, 1, 1, 0])
    np.testing.assert_array_equal(sg.function([X], y)(inputs), [0, 1, 1, 0])


def test_relu_derivative_at_zero_is_zero():
    x = sg.placeholder("x", (3,), "float64")
    g = sg.grad(sg.sum(sg.relu(x)), x)
    np.testing.assert_array_equal(sg.evaluate(g, {x: np.array([-1.0, 0.0, 2.0])}), [0, 0, 1])


def _mlp(sizes, dtype="float32", seed=0, batch=None):
    rng = np.random.default_rng(seed)
    x = sg.placeholder("x", (batch, sizes[0]), dtype)
    y = sg.placeholder("y", (batch, sizes[-1]), dtype)
    params, h = [], x
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = sg.Variable((rng.standard_normal((a, b)) / np.sqrt(a)).astype(dtype), name=f"W{k}")
        bias = sg.Variable(np.zeros(b, dtype), name=f"b{k}")
        params += [W, bias]
        h = h @ W + bias
        if k < len(sizes) - 2:
            h = sg.tanh(h)
    return x, y, params, sg.nn.softmax_cross_entropy(h, y)


def _batch(n, sizes, dtype, seed=1):
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((n, sizes[0])).astype(dtype)
    yb = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    return xb, yb


@pytest.fixture(scope="module")
def mlp():
    sizes = [6, 5, 4, 3]
    x, y, params, loss = _mlp(sizes, "float64")
    grads = sg.gradients(loss, params)
    f = sg.function([x, y], [loss] + grads)
    return sizes, x, y, params, loss, grads, f


def test_mlp_compiled_equals_interpreter_and_finite_differences(mlp):
    sizes, x, y, params, loss, grads, f = mlp
    xb, yb = _batch(7, sizes, "float64")
    compiled = f(xb, yb)
    interpreted = sg.evaluate([loss] + grads, {x: xb, y: yb})
    for c, i in zip(compiled, interpreted):
        np.testing.assert_allclose(c, i, rtol=1e-10, atol=1e-12)
    # one weight's gradient against a central difference
    W = params[0]
    eps, (i, j) = 1e-6, (2, 3)
    base = W.value.copy()
    values = []
    for sign in (1, -1):
        bumped = base.copy()
        bumped[i, j] += sign * eps
        W.value = bumped
        values.append(float(f(xb, yb)[0]))
    W.value = base
    assert compiled[1][i, j] == pytest.approx((values[0] - values[1]) / (2 * eps), rel=1e-6)


def test_batch_size_is_chosen_at_call_time(mlp):
    sizes, x, y, params, loss, grads, f = mlp
    for n in (1, 3, 11):
        xb, yb = _batch(n, sizes, "float64", seed=n)
        np.testing.assert_allclose(f(xb, yb)[0], sg.evaluate(loss, {x: xb, y: yb}), rtol=1e-10)


def test_train_step_updates_in_place_and_reduces_loss():
    sizes = [4, 8, 3]
    x, y, params, loss = _mlp(sizes, "float32", seed=3)
    grads = sg.gradients(loss, params)
    step = sg.function([x, y], loss, updates=[(p, p - 0.5 * g) for p, g in zip(params, grads)])
    xb, yb = _batch(16, sizes, "float32")
    before = [p.value.copy() for p in params]
    expected = [b - 0.5 * g for b, g in zip(before, sg.evaluate(grads, {x: xb, y: yb}))]
    first = step(xb, yb)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.value, e, rtol=1e-5, atol=1e-6)
    losses = [float(first)] + [float(step(xb, yb)) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]


def test_failed_call_leaves_every_variable_untouched():
    x = sg.placeholder("x", (None, 3), "float64")
    t = sg.placeholder("t", (None, 3), "float64")
    W = sg.Variable(np.ones((3, 3)), name="W")
    b = sg.Variable(np.zeros(3), name="b")
    loss = sg.mean(sg.square(x @ W + b - t))
    gW, gb = sg.gradients(loss, [W, b])
    step = sg.function([x, t], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)])
    with pytest.raises(ValueError, match="'x' axis 0 = 4, 't' axis 0 = 5"):
        step(np.ones((4, 3)), np.ones((5, 3)))  # batch sizes disagree: found inside the kernel
    np.testing.assert_array_equal(W.value, np.ones((3, 3)))
    np.testing.assert_array_equal(b.value, np.zeros(3))
    step(np.ones((4, 3)), np.ones((4, 3)))
    assert not np.array_equal(W.value, np.ones((3, 3))) and not np.array_equal(b.value, np.zeros(3))


def test_swapping_updates_read_old_values():
    a = sg.Variable(np.array([1.0, 2.0]), name="a")
    b = sg.Variable(np.array([3.0, 4.0]), name="b")
    swap = sg.function([], [], updates=[(a, b), (b, a)])
    swap()
    np.testing.assert_array_equal(a.value, [3, 4])
    np.testing.assert_array_equal(b.value, [1, 2])


# ----------------------------------------------------------------------------- bad input

def test_build_time_shape_errors_name_op_and_shapes():
    a = sg.placeholder("a", (3, 4), "float32")
    b = sg.placeholder("b", (5, 4), "float32")
    with pytest.raises(sg.ShapeError, match=r"add.*\(3, 4\).*\(5, 4\)"):
        a + b
    with pytest.raises(sg.ShapeError, match=r"matmul.*\(3, 4\).*\(5, 4\)"):
        a @ b
    with pytest.raises(sg.ShapeError, match="reshape"):
        sg.reshape(a, (5, 5))
    c = sg.placeholder("c", (3, 4), "float64")
    with pytest.raises(sg.ShapeError, match="dtype"):
        a + c


def test_call_errors_name_the_argument():
    x = sg.placeholder("x", (None, 3), "float32")
    y = sg.placeholder("y", (None, 2), "float32")
    f = sg.function([x, y], sg.sum(x) + sg.sum(y))
    good_x, good_y = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    assert float(f(good_x, good_y)) == 20.0
    with pytest.raises(TypeError, match=r"takes 2 arguments \(x, y\), got 1"):
        f(good_x)
    with pytest.raises(ValueError, match=r"argument 'y'.*\(y\.0, 2\).*\(4, 3\)"):
        f(good_x, good_x)
    with pytest.raises(TypeError, match=r"argument 'x'.*float32.*float64"):
        f(good_x.astype(np.float64), good_y)
    with pytest.raises(ValueError, match=r"argument 'x'"):
        f(np.ones(3, np.float32), good_y)


def test_gradient_of_unused_input_is_an_error_or_zeros():
    x = sg.placeholder("x", (2,), "float64")
    unused = sg.placeholder("unused", (2,), "float64")
    y = sg.sum(sg.exp(x))
    with pytest.raises(sg.DisconnectedInputError, match="'unused' does not influence"):
        sg.gradients(y, [x, unused])
    gx, gu = sg.gradients(y, [x, unused], disconnected="zero")
    np.testing.assert_array_equal(sg.evaluate(gu, {x: np.ones(2), unused: np.ones(2)}), [0, 0])


def test_missing_placeholder_and_bad_updates_are_explained():
    x = sg.placeholder("x", (2,), "float64")
    hidden = sg.placeholder("hidden", (2,), "float64")
    with pytest.raises(ValueError, match="'hidden' is needed but not listed"):
        sg.function([x], x + hidden)
    with pytest.raises(ValueError, match="needs a value"):
        sg.evaluate(x + hidden, {x: np.ones(2)})
    v = sg.Variable(np.zeros(3), name="v")
    with pytest.raises(ValueError, match="update of Variable 'v'"):
        sg.function([x], [], updates=[(v, x)])
    with pytest.raises(ValueError, match="shape"):
        v.value = np.zeros(4)


# ----------------------------------------------------------------------------- scale

def test_ten_thousand_node_chain_has_no_recursion_limit():
    x = sg.placeholder("x", (3,), "float64")
    y = x
    for _ in range(5000):
        y = sg.sin(y) * 0.5 + y * 0.5   # ~4 nodes per link
    nodes = topological_order([y])
    assert len(nodes) >= 10_000
    g = sg.grad(sg.sum(y), x)
    program = schedule([x], [y, g])
    assert len(program.steps) > 10_000
    value, grad = sg.evaluate([y, g], {x: np.array([0.1, 0.2, 0.3])})
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))


def _forward_and_gradient_sizes(depth):
    x, y, params, loss = _mlp([8] * depth + [3], "float32")
    forward = set(topological_order([loss]))
    grads = sg.gradients(loss, params)
    everything = set(topological_order(grads + [loss]))
    return len(forward), len(everything - forward)


def test_gradient_graph_grows_linearly_with_depth():
    f4, g4 = _forward_and_gradient_sizes(4)
    f64, g64 = _forward_and_gradient_sizes(64)
    assert g4 / f4 < 4
    assert g64 / f64 <= g4 / f4 * 1.05


def test_equal_subexpressions_are_one_node():
    x = sg.placeholder("x", (3,), "float32")
    assert sg.tanh(x) * 2 is sg.tanh(x) * 2
    assert (x + 1) is not (x + 2)


# ----------------------------------------------------------------------------- higher order

def test_hessian_and_jacobian_of_small_functions():
    x = sg.placeholder("x", (3,), "float64")
    A = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]])
    quad = 0.5 * sg.sum(x * (x @ sg.constant(A))) + sg.sum(sg.exp(x))
    xv = np.array([0.1, -0.2, 0.3])
    H = sg.evaluate(sg.hessian(quad, x), {x: xv})
    np.testing.assert_allclose(H, A + np.diag(np.exp(xv)), rtol=1e-12)
    J = sg.evaluate(sg.jacobian(sg.tanh(x @ sg.constant(A)), x), {x: xv})
    np.testing.assert_allclose(J, (1 - np.tanh(xv @ A) ** 2)[:, None] * A.T, rtol=1e-12)
    compiled = sg.function([x], sg.hessian(quad, x))(xv)
    np.testing.assert_allclose(compiled, H, rtol=1e-12)


# ----------------------------------------------------------------------------- memory plan

def test_workspace_slots_are_reused_and_outputs_survive_the_next_call():
    sizes = [6, 8, 8, 8, 3]
    x, y, params, loss = _mlp(sizes, "float64", seed=5)
    grads = sg.gradients(loss, params)
    f = sg.function([x, y], [loss] + grads)
    program = f.program
    assert len(program.slots) < len(program.workspace)  # dead values' memory is reused
    memory = f.memory(x=64)
    assert 0 < memory["workspace_bytes"] and 0 < memory["peak_bytes"]
    xb, yb = _batch(9, sizes, "float64")
    first = [a.copy() for a in f(xb, yb)]
    kept = f(xb, yb)
    f(*_batch(9, sizes, "float64", seed=7))   # same batch size: same workspace
    f(*_batch(4, sizes, "float64", seed=8))   # another batch size: another workspace
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
    reference = sg.evaluate([loss] + grads, {x: xb, y: yb})
    for a, b in zip(kept, reference):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)


def test_generated_source_depends_only_on_the_model():
    # The same model gives the same source (and so the same cache entry) whatever was built
    # before it in the process.
    def build():
        x = sg.placeholder("x", (None, 3), "float32")
        y = sg.placeholder("y", (None, 2), "float32")
        W = sg.Variable(np.ones((3, 2), np.float32), name="W")
        loss = sg.nn.softmax_cross_entropy(sg.tanh(x @ W) * 2.0 + 1.0, y)
        return sg.function([x, y], loss, updates=[(W, W - 0.1 * sg.grad(loss, W))]).source
    first = build()
    sg.constant(np.float32(2.0)) * sg.placeholder("other", (3,), "float32")  # unrelated nodes
    assert build() == first


def test_outputs_sharing_memory_are_separate_arrays():
    # One value returned twice, a view of it, a Variable and an input: each output its own
    # array (the plan writes the first into its output array and copies for the others),
    # holding the values before the updates.
    x = sg.placeholder("x", (None, 3), "float64")
    W = sg.Variable(np.arange(6.0).reshape(3, 2), name="W")
    y = sg.tanh(x @ W)
    f = sg.function([x], [y, y, sg.reshape(y, (-1,)), W, x], updates=[(W, W + 1.0)])
    xb = np.linspace(-1, 1, 12).reshape(4, 3)
    W0 = W.value.copy()
    outs = f(xb)
    expected = np.tanh(xb @ W0)
    for out, want in zip(outs, [expected, expected, expected.reshape(-1), W0, xb]):
        np.testing.assert_allclose(out, want, rtol=1e-12)
    outs[0][...] = 7.0
    np.testing.assert_allclose(outs[1], expected, rtol=1e-12)
    np.testing.assert_allclose(outs[2], expected.reshape(-1), rtol=1e-12)
    assert not np.shares_memory(outs[3], W.value) and not np.shares_memory(outs[4], xb)
    np.testing.assert_array_equal(W.value, W0 + 1.0)
