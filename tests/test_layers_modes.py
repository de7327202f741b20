"""Layers that train and evaluate differently (BatchNorm, Dropout), layer normalisation,
embeddings, and integer class labels: gradients against central differences in float64,
compiled against the interpreter, the rewrites they get, and training with them."""
from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad import data, nn, optim
from symgrad.core.graph import topological_order
from symgrad.train import classifier

EPS = 1e-6


def _check_gradients(loss, wrt, feed, rng, rtol=1e-6):
    """d loss along a random direction, per input in `wrt`, against central differences;
    feed maps placeholders to values (Variables in `wrt` are moved through their .value)."""
    grads = sg.evaluate(sg.gradients(loss, wrt), feed)
    for node, g in zip(wrt, grads):
        v = rng.standard_normal(g.shape)

        def at(step):
            if isinstance(node, sg.Variable):
                saved = node.value.copy()
                node.value = saved + step * v
                try:
                    return sg.evaluate(loss, feed)
                finally:
                    node.value = saved
            return sg.evaluate(loss, {**feed, node: feed[node] + step * v})

        fd = (at(EPS) - at(-EPS)) / (2 * EPS)
        np.testing.assert_allclose(np.sum(g * v), fd, rtol=rtol, atol=1e-9, err_msg=str(node))
    return grads


def _compiled_matches(inputs, outputs, feed, rtol=1e-10):
    f = sg.function(inputs, outputs, background=False)
    expected = sg.evaluate(outputs, feed)
    for a, b in zip(f(*[feed[i] for i in inputs]), expected):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)
    return f


# ================================================================================ integer labels

@pytest.fixture(scope="module")
def integer_labels():
    z = sg.placeholder("z", (None, 5), "float64")
    labels = sg.placeholder("labels", (None,), "int64")
    loss = nn.softmax_cross_entropy(z, labels)
    grad = sg.grad(loss, z)
    return z, labels, loss, grad, sg.function([z, labels], [loss, grad], background=False)


def test_integer_labels_give_the_softmax_minus_p_gradient(integer_labels):
    z, labels, loss, grad, f = integer_labels
    rng = np.random.default_rng(0)
    zv, yv = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    p = np.eye(5)[yv]
    q = np.exp(zv - zv.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    value, g = f(zv, yv)
    np.testing.assert_allclose(value, -np.mean(np.sum(p * np.log(q), axis=1)), rtol=1e-12)
    np.testing.assert_allclose(g, (q - p) / 7, rtol=1e-10, atol=1e-15)
    # the rewrite that gives q - p fires: one-hot rows of checked labels sum to 1
    assert "sum_of_distribution" in {r.rule for r in f.rewrites}
    _check_gradients(loss, [z], {z: zv, labels: yv}, rng)


def test_integer_labels_out_of_range_are_refused(integer_labels):
    z, labels, loss, grad, f = integer_labels
    for bad in (np.array([0, 5]), np.array([-1, 0])):
        with pytest.raises(ValueError, match="outside 0..4"):
            f(np.zeros((2, 5)), bad)
        with pytest.raises(ValueError, match="outside 0..4"):
            sg.evaluate(loss, {z: np.zeros((2, 5)), labels: bad})
    with pytest.raises(TypeError, match="int64"):
        f(np.zeros((2, 5)), np.array([0, 1], np.int32))


# ================================================================================ normalisation

@pytest.mark.parametrize("shape, axis", [((6, 3), 1), ((3, 2, 2, 2), 1)])
def test_batch_norm_gradients_and_compiled(shape, axis):
    rng = np.random.default_rng(1)
    x = sg.placeholder("x", (None,) + shape[1:], "float64")
    layer = nn.BatchNorm(shape[axis], axis=axis, name=f"bn{len(shape)}", dtype="float64")
    layer.gamma.value = rng.uniform(0.5, 2.0, shape[axis])
    layer.beta.value = rng.standard_normal(shape[axis])
    u = sg.constant(rng.standard_normal(shape))
    y = layer(x, training=True)
    loss = sg.sum(u * sg.tanh(y))
    xv = rng.standard_normal(shape)
    feed = {x: xv}
    grads = _check_gradients(loss, [x, layer.gamma, layer.beta], feed, rng)
    f = _compiled_matches([x], [y, loss] + sg.gradients(loss, [x, layer.gamma, layer.beta]), feed)
    assert f.rewrites  # simplified (fused, rewritten) before it is compiled
    # each feature of the output has mean beta and (biased) standard deviation |gamma|
    others = tuple(k for k in range(len(shape)) if k != axis)
    out = sg.evaluate(y, feed)
    bshape = [1] * len(shape)
    bshape[axis] = -1
    np.testing.assert_allclose(out.mean(axis=others), layer.beta.value, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=others), np.abs(layer.gamma.value), rtol=1e-4)
    assert np.all(np.isfinite(grads[0]))


def test_batch_norm_running_statistics_and_evaluation():
    x = sg.placeholder("x", (None, 2), "float32")
    layer = nn.BatchNorm(2, momentum=0.1, name="bn-running")
    train_y = layer(x, training=True)
    step = sg.function([x], train_y, updates=layer.state_updates, background=False)
    xv = np.array([[1.0, 10.0], [3.0, 14.0]], np.float32)
    step(xv)
    np.testing.assert_allclose(layer.running_mean.value, 0.1 * xv.mean(0), rtol=1e-6)
    np.testing.assert_allclose(layer.running_var.value, 0.9 + 0.1 * xv.var(0), rtol=1e-6)
    eval_y = layer(x, training=False)
    assert layer.state_updates  # the evaluation graph leaves the train graph's updates alone
    expected = (xv - layer.running_mean.value) / np.sqrt(layer.running_var.value + 1e-5)
    np.testing.assert_allclose(sg.function([x], eval_y, background=False)(xv), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="training=True"):
        layer(x)


def test_batch_norm_of_a_constant_feature_is_finite():
    """Variance 0 (a constant column, or a batch of one): eps keeps 1/sqrt finite, the output
    is beta and the gradient finite. A NaN input stays NaN, as op by op."""
    x = sg.placeholder("x", (None, 2), "float32")
    layer = nn.BatchNorm(2, name="bn-constant")
    y = layer(x, training=True)
    g = sg.grad(sg.sum(y * y), x)
    f = sg.function([x], [y, g], background=False)
    out, grad = f(np.array([[5.0, 1.0], [5.0, 2.0], [5.0, 4.0]], np.float32))
    assert np.all(out[:, 0] == 0) and np.all(np.isfinite(grad))
    out, grad = f(np.array([[1.0, 2.0]], np.float32))
    assert np.all(out == 0) and np.all(np.isfinite(grad))
    out, _ = f(np.array([[np.nan, 1.0], [0.0, 2.0]], np.float32))
    assert np.all(np.isnan(out[:, 0])) and np.all(np.isfinite(out[:, 1]))


def test_layer_norm():
    rng = np.random.default_rng(2)
    x = sg.placeholder("x", (None, 4), "float64")
    layer = nn.LayerNorm(4, name="ln", dtype="float64")
    layer.gamma.value = rng.uniform(0.5, 2.0, 4)
    y = layer(x)
    loss = sg.sum(sg.constant(rng.standard_normal((5, 4))) * sg.sin(y))
    xv = 3.0 * rng.standard_normal((5, 4)) + 1.0
    _check_gradients(loss, [x, layer.gamma, layer.beta], {x: xv}, rng)
    _compiled_matches([x], [y] + sg.gradients(loss, [x, layer.gamma]), {x: xv})
    out = sg.evaluate(y, {x: xv}) / layer.gamma.value
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=1), 1, rtol=1e-5)


def test_embedding_gradient_adds_into_repeated_rows():
    rng = np.random.default_rng(3)
    ids = sg.placeholder("ids", (None, 3), "int64")
    table = nn.Embedding(6, 2, rng=0, name="emb", dtype="float64")
    vectors = table(ids)
    assert vectors.shape[1:] == (3, 2)
    u = sg.placeholder("u", (None, 3, 2), "float64")
    loss = sg.sum(u * vectors)
    idv, uv = np.array([[0, 5, 0], [2, 0, 5]]), rng.standard_normal((2, 3, 2))
    g = sg.grad(loss, table.W)
    expected = np.zeros((6, 2))
    np.add.at(expected, idv.reshape(-1), uv.reshape(-1, 2))
    np.testing.assert_allclose(sg.evaluate(g, {ids: idv, u: uv}), expected, rtol=1e-12)
    _compiled_matches([ids, u], [vectors, g], {ids: idv, u: uv})
    _check_gradients(sg.sum(sg.square(vectors) * u), [table.W], {ids: idv, u: uv}, rng)
    with pytest.raises(ValueError, match="outside 0..5"):
        sg.function([ids, u], g, background=False)(np.array([[0, 6, 1]]), uv[:1])


# ================================================================================ training

def test_classifier_with_dropout_and_batch_norm_trains_and_checkpoints(tmp_path):
    x, y = data.load_digits()
    train, val, test = data.split(x[:600], y[:600], val=0.15, test=0.2, seed=0)
    model = nn.MLP([64, 64, 10], batch_norm=True, dropout=0.2, seed=0, name="mlp-modes")
    assert model.mode_dependent and len(model.state) == 3  # running mean, variance; dropout
    trainer = classifier(model, 64, optim.Adam(3e-3))
    trainer.compile()
    step_ops = {n.op for n in topological_order(trainer.step_function.outputs +
                                                [v for _, v in trainer.step_function.updates])}
    eval_ops = {n.op for n in topological_order(trainer.eval_function.outputs)}
    assert "random" in step_ops and "random" not in eval_ops
    updated = {v.name for v, _ in trainer.step_function.updates}
    assert {"mlp-modes/0/batchnorm/running_mean", "mlp-modes/0/dropout/state"} <= updated
    trainer.fit(train, val, epochs=8, batch_size=32, progress=False, verbose=False)
    assert trainer.evaluate(*test).accuracy > 0.85
    # the running statistics and the generator's counter are saved and restored
    path = tmp_path / "checkpoint.npz"
    trainer.save_checkpoint(path)
    saved = {v.name: v.value.copy() for v in model.state}
    assert saved["mlp-modes/0/dropout/state"][1] == sum(trainer.history["steps"])
    for v in model.state:
        v.value = np.zeros_like(v.value)
    trainer.load_checkpoint(path)
    for v in model.state:
        np.testing.assert_array_equal(v.value, saved[v.name])


def test_mlp_without_the_mode_is_refused():
    model = nn.MLP([4, 3, 2], dropout=0.5, name="mlp-refused")
    with pytest.raises(ValueError, match="training=True"):
        model(sg.placeholder("x", (None, 4)))
