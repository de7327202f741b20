"""Partial evaluation (symgrad.core.partial.split) and the two-stage curvature operators built on it.

The reference is the original graph: residuals evaluated once, then the rebuilt outputs for
several values of the varying inputs, must give what the whole graph gives (interpreter);
compiled, a bound operator must give what the one-call product gives.
"""
import numpy as np
import pytest

import symgrad as sg
from symgrad import linalg
from symgrad.core.partial import split

RNG = np.random.default_rng(3)


def staged_values(parts, known, varying_values):
    """Evaluate the residuals with `known`, then the outputs with the residuals' values."""
    residuals = sg.evaluate(parts.residuals, known) if parts.residuals else []
    feed = dict(known)
    feed.update(zip(parts.placeholders, residuals))
    feed.update(varying_values)
    return sg.evaluate(parts.outputs, feed)


def test_split_gives_the_graph_values_for_every_varying_value():
    W = sg.Variable(RNG.standard_normal((3, 4)), name="W")
    b = sg.Variable(RNG.standard_normal(4), name="b")
    x = sg.placeholder("x", (None, 3), "float64")
    v = sg.placeholder("v", (3, 4), "float64")
    h = sg.tanh(x @ W + b)
    fixed_only = sg.sum(h, axis=0)                    # does not depend on v
    out = (sg.exp(h) * (x @ v)) @ W.T + 2.0 * x       # fixed parts on both sides of v
    parts = split([out, fixed_only], [v])
    X = RNG.standard_normal((5, 3))
    for _ in range(3):
        V = RNG.standard_normal((3, 4))
        expected = sg.evaluate([out, fixed_only], {x: X, v: V})
        got = staged_values(parts, {x: X}, {v: V})
        for e, g in zip(expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-13)


def test_split_stores_work_not_views_or_inputs():
    W = sg.Variable(RNG.standard_normal((3, 4)), name="W")
    b = sg.Variable(RNG.standard_normal(4), name="b")
    x = sg.placeholder("x", (None, 3), "float64")
    v = sg.placeholder("v", (None, 4), "float64")
    h = sg.tanh(x @ W + b)
    out = (h * v) @ W.T + x
    parts = split([out], [v])
    ops = sorted(r.op for r in parts.residuals)
    # h (the tanh) is stored; W is captured as a Variable; W.T is rebuilt on the varying
    # side as a view of the captured W; x is passed as it is; b is only used inside h.
    assert ops == ["tanh", "variable"], ops
    stand_in = dict(zip(parts.residuals, parts.placeholders))
    assert sorted(p.name for p in parts.placeholders) == ["residual0:W", "residual1"]
    assert stand_in[h].shape == (x.shape[0], 4)
    used = set(sg.core.graph.topological_order(parts.outputs))
    assert x in used and W not in used and b not in used
    assert any(n.op == "transpose" and n.inputs[0] is stand_in[W] for n in used)


def test_split_wants_placeholders_to_vary():
    v = sg.placeholder("v", (2,), "float64")
    with pytest.raises(TypeError, match="what varies must be placeholders"):
        split([sg.exp(v) * 2.0], [sg.exp(v)])


def test_split_with_nothing_fixed_or_nothing_varying():
    v = sg.placeholder("v", (2,), "float64")
    c = sg.placeholder("c", (2,), "float64")
    parts = split([sg.sin(v) * 3.0], [v])
    assert parts.residuals == [] and parts.outputs[0].inputs[0].op == "sin"
    parts = split([sg.exp(c)], [v])               # an output v does not reach: stored whole
    assert [r.op for r in parts.residuals] == ["exp"] and parts.outputs == parts.placeholders


# ------------------------------------------------------------------------------ bound operators

@pytest.fixture(scope="module")
def mlp():
    """A 5-7-3 tanh net with softmax-CE in float64, its Hessian and Gauss-Newton operators."""
    rng = np.random.default_rng(4)
    params = [sg.Variable(rng.standard_normal(s) / 2, name=n)
              for n, s in [("W1", (5, 7)), ("b1", (7,)), ("W2", (7, 3)), ("b2", (3,))]]
    x = sg.placeholder("x", (None, 5), "float64")
    y = sg.placeholder("y", (None, 3), "float64")
    z = sg.tanh(x @ params[0] + params[1]) @ params[2] + params[3]
    loss = sg.nn.softmax_cross_entropy(z, y)
    data = (rng.standard_normal((9, 5)), np.eye(3)[rng.integers(0, 3, 9)])
    also = [loss] + sg.gradients(loss, params)
    return dict(params=params, data=data, x=x, y=y, also=also,
                hessian=linalg.HessianOperator(loss, params, [x, y], also=also),
                gauss_newton=linalg.GaussNewtonOperator(z, "softmax_ce", params, [x, y]))


@pytest.mark.parametrize("which", ["hessian", "gauss_newton"])
def test_bound_product_equals_the_one_call_product(mlp, which):
    op = mlp[which]
    bound = op.bind(*mlp["data"])
    for seed in range(3):
        rng = np.random.default_rng(seed)
        vs = [rng.standard_normal(p.shape) for p in mlp["params"]]
        for got, expected in zip(bound(vs), op.matvec(vs, *mlp["data"])):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_binding_computes_the_also_values(mlp):
    bound = mlp["hessian"].bind(*mlp["data"])
    expected = sg.evaluate(mlp["also"], dict(zip([mlp["x"], mlp["y"]], mlp["data"])))
    assert len(bound.values) == len(expected) == 5
    for got, want in zip(bound.values, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_bound_operator_keeps_its_point(mlp):
    op, params = mlp["hessian"], mlp["params"]
    vs = [np.ones(p.shape) for p in params]
    bound = op.bind(*mlp["data"])
    before = op.matvec(vs, *mlp["data"])
    saved = [p.value.copy() for p in params]
    try:
        for p in params:
            p.value = p.value * 1.5
        moved = op.matvec(vs, *mlp["data"])
        assert not np.allclose(moved[0], before[0])
        for got, expected in zip(bound(vs), before):  # still the Hessian where it was bound
            np.testing.assert_allclose(got, expected, rtol=1e-12)
        for got, expected in zip(op.bind(*mlp["data"])(vs), moved):  # bound again: the new point
            np.testing.assert_allclose(got, expected, rtol=1e-12)
    finally:
        for p, value in zip(params, saved):
            p.value = value


def test_bound_operator_copies_its_data():
    # A placeholder parameter changed in place, and a batch buffer refilled, after binding:
    # the bound operator stays at the point it was bound to.
    theta = sg.placeholder("theta", (3,), "float64")
    H = linalg.HessianOperator(sg.sum(sg.square(sg.square(theta))), [theta], [theta])
    point = np.array([1.0, 2.0, 3.0])
    bound = H.bind(point)
    point *= 2.0
    v = [np.ones(3)]
    np.testing.assert_allclose(bound(v)[0], 12 * np.array([1.0, 2.0, 3.0]) ** 2)
    np.testing.assert_allclose(H.bind(point)(v)[0], 12 * point ** 2)
    with pytest.raises(TypeError, match="takes 1 inputs \\('theta'\\), got 2"):
        H.bind(point, point)
    with pytest.raises(TypeError, match="argument 'theta': expected dtype float64"):
        H.bind(point.astype(np.float32))


def test_bound_operator_bad_input_is_named(mlp):
    op = mlp["hessian"]
    x, y = mlp["data"]
    with pytest.raises(ValueError, match="'x'"):
        op.bind(x[:, :4], y)
    bound = op.bind(x, y)
    with pytest.raises(ValueError, match="4 parameters but 3 vectors"):
        bound([np.ones(p.shape) for p in mlp["params"][:3]])
    with pytest.raises(ValueError, match="vector 0 for 'W1' has 5 elements; it needs shape \\(5, 7\\)"):
        bound([np.ones(5)] + [np.ones(p.shape) for p in mlp["params"][1:]])


def _pooled_net(window, stride, padding=0):
    """A conv, ReLU and max pooling net; its loss, parameters and inputs."""
    rng = np.random.default_rng(5)
    x = sg.placeholder("x", (None, 1, 8, 8), "float64")
    y = sg.placeholder("y", (None, 3), "float64")
    w = sg.Variable(rng.standard_normal((2, 1, 3, 3)) * 0.5, name="w")
    h = sg.max_pool2d(sg.relu(sg.conv2d(x, w, padding=1)), window, stride, padding)
    flat = int(np.prod(h.shape[1:]))
    d = sg.Variable(rng.standard_normal((flat, 3)) * 0.3, name="d")
    loss = sg.nn.softmax_cross_entropy(sg.reshape(h, (-1, flat)) @ d, y)
    return loss, [w, d], [x, y]


@pytest.mark.parametrize("window, stride, padding, routed", [
    (2, 2, 0, True),          # windows tile the planes (the kernels' fast path)
    ((2, 3), (3, 3), 1, True),  # gaps and padding
    (3, 2, 1, False),         # overlapping windows: a tap has no single share
])
def test_bound_hvp_reads_max_poolings_routing_computed_once(window, stride, padding, routed):
    """With x fixed, max_pool2d_grad and max_pool2d_select become products and sums over the
    routing (each tap's share of its window), a residual; the products equal the one-call
    HVP's, ties (ReLU's zeros), a NaN-free point and batch 0 and 1 included."""
    loss, params, inputs = _pooled_net(window, stride, padding)
    op = linalg.HessianOperator(loss, params, inputs)
    parts = split(op.products, op.vectors)
    assert bool(parts.specialised) == routed == bool(op.staged.specialised)
    residual_ops = {r.op for r in parts.residuals}
    used_ops = {n.op for n in sg.core.graph.topological_order(parts.outputs)}
    assert ("max_pool2d_routing" in residual_ops) == routed
    assert ("max_pool2d_select" in used_ops) != routed and ("max_pool2d_grad" in used_ops) != routed
    rng = np.random.default_rng(1)
    for batch in (4, 1, 0):
        x = np.round(rng.standard_normal((batch, 1, 8, 8)), 1)  # ties
        y = np.eye(3)[rng.integers(0, 3, batch)]
        vs = [rng.standard_normal(p.shape) for p in params]
        bound = op.bind(x, y)(vs)
        for got, want in zip(bound, op.matvec(vs, x, y)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
