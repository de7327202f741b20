"""symgrad.nn: layers, activations, losses, weight decay and initialisers.

Values and gradients are checked with the NumPy interpreter (`sg.evaluate`), which compiles
nothing; the XOR test trains with a compiled step, as users do."""
import numpy as np
import pytest

import symgrad as sg
from symgrad import data, nn, optim
from symgrad.train import classifier


def _numeric_grad(loss, variable, eps=1e-6):
    """Central differences of the scalar `loss` (a node) with respect to a float64 Variable."""
    base = variable.value.copy()
    grad = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        for sign in (1, -1):
            bumped = base.copy()
            bumped[i] += sign * eps
            variable.value = bumped
            grad[i] += sign * float(sg.evaluate(loss)) / (2 * eps)
    variable.value = base
    return grad


def test_2_16_1_network_learns_xor_from_random_init():
    x, y = data.xor()
    model = nn.MLP([2, 16, 1], activation="tanh", seed=0)
    trainer = classifier(model, 2, optim.Adam(0.05))
    history = trainer.fit((x, y), epochs=300, batch_size=4, progress=False, verbose=False)
    assert trainer.evaluate(x, y)[1] == 1.0
    assert history["loss"][-1] < 0.01 < history["loss"][0]


@pytest.mark.parametrize("name, reference", [
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))),
    ("tanh", np.tanh),
    ("relu", lambda z: np.maximum(z, 0)),
    ("leaky_relu", lambda z: np.where(z > 0, z, 0.01 * z)),
    ("abs", np.abs),
    ("softplus", lambda z: np.log1p(np.exp(z))),
    ("softsign", lambda z: z / (1 + np.abs(z))),
    ("cos", np.cos),
    ("identity", lambda z: z),
])
def test_activation_values(name, reference):
    z = sg.placeholder("z", (7,), "float64")
    values = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(sg.evaluate(nn.activation(name)(z), {z: values}), reference(values),
                               rtol=1e-12, atol=1e-12)


def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu"):
        nn.activation("swish")


def test_prelu_learns_its_slope():
    layer = nn.PReLU(3, slope=0.25, dtype="float64")
    z = sg.constant(np.array([[-2.0, 1.0, -0.5], [3.0, -1.0, 0.0]]))
    out = layer(z)
    np.testing.assert_allclose(sg.evaluate(out), [[-0.5, 1.0, -0.125], [3.0, -0.25, 0.0]])
    loss = sg.sum(sg.square(out))
    np.testing.assert_allclose(sg.evaluate(sg.grad(loss, layer.slope)),
                               _numeric_grad(loss, layer.slope), rtol=1e-6)
    assert layer.weights == [] and layer.biases == [layer.slope]  # slopes are not decayed


def test_maxout_is_the_max_over_pieces():
    rng = np.random.default_rng(0)
    layer = nn.Maxout(4, units=3, pieces=3, rng=rng, dtype="float64")
    x = rng.standard_normal((5, 4))
    z = x @ layer.W.value + layer.b.value
    expected = np.max([z[:, k * 3:(k + 1) * 3] for k in range(3)], axis=0)
    out = layer(sg.constant(x))
    assert out.shape == (5, 3)
    np.testing.assert_allclose(sg.evaluate(out), expected, rtol=1e-12)
    loss = sg.sum(sg.sin(out))
    np.testing.assert_allclose(sg.evaluate(sg.grad(loss, layer.W)), _numeric_grad(loss, layer.W),
                               rtol=1e-5, atol=1e-8)


def test_low_rank_dense_is_u_times_v():
    rng = np.random.default_rng(1)
    layer = nn.LowRankDense(6, 5, rank=2, rng=rng, dtype="float64")
    assert layer.U.shape == (6, 2) and layer.V.shape == (2, 5)
    x = rng.standard_normal((3, 6))
    expected = x @ (layer.U.value @ layer.V.value) + layer.b.value
    np.testing.assert_allclose(sg.evaluate(layer(sg.constant(x))), expected, rtol=1e-12)
    assert sum(p.value.size for p in layer.params) == 2 * (6 + 5) + 5


def test_mlp_structure_names_and_initialisation():
    model = nn.MLP([64, 32, 16, 10], activation="relu", seed=3)
    names = [p.name for p in model.params]
    assert len(set(names)) == len(names)
    assert [w.shape for w in model.weights] == [(64, 32), (32, 16), (16, 10)]
    hidden_biases, output_bias = model.biases[:-1], model.biases[-1]
    assert all(np.all(b.value == np.float32(0.1)) for b in hidden_biases)  # ReLU: start active
    assert np.all(output_bias.value == 0)
    x = sg.placeholder("x", (None, 64))
    assert model(x).shape == (x.shape[0], 10)
    tanh_model = nn.MLP([4, 8, 2], activation="tanh")
    assert all(np.all(b.value == 0) for b in tanh_model.biases)
    assert "mlp/0/prelu/slope" in [p.name for p in nn.MLP([4, 8, 2], activation="prelu").params]
    assert nn.MLP([4, 8, 2], activation="maxout").layers[0].W.shape == (4, 16)
    assert isinstance(nn.MLP([4, 8, 2], rank=2).layers[0], nn.LowRankDense)


def test_initialiser_statistics():
    rng = np.random.default_rng(0)
    shape = (400, 300)
    he = nn.initialiser("he")(shape, rng)
    assert he.dtype == np.float32 and he.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    xavier = nn.initialiser("xavier")(shape, rng)
    limit = np.sqrt(6 / 700)
    assert np.abs(xavier).max() <= limit and xavier.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert nn.initialiser("xavier_normal")(shape, rng).std() == pytest.approx(np.sqrt(2 / 700), rel=0.02)
    assert nn.gaussian(0.05)(shape, rng).std() == pytest.approx(0.05, rel=0.02)
    assert np.all(nn.initialiser(0.1)((3,), rng) == np.float32(0.1))
    assert nn.initialiser("lecun")(shape, rng).std() == pytest.approx(np.sqrt(1 / 400), rel=0.02)
    with pytest.raises(ValueError, match="unknown initialiser 'lecunn'"):
        nn.initialiser("lecunn")


def test_mlp_default_initialisation_by_layer():
    # tanh: LeCun (fan-in) on the first layer, Xavier after it; ReLU: He, then Xavier out
    tanh = nn.MLP([300, 200, 200, 100], activation="tanh")
    first, second, out = (layer.W.value for layer in tanh.layers if isinstance(layer, nn.Dense))
    assert first.std() == pytest.approx(np.sqrt(1 / 300), rel=0.03)
    assert second.std() == pytest.approx(np.sqrt(2 / 400), rel=0.03)      # Xavier uniform
    assert out.std() == pytest.approx(np.sqrt(2 / 300), rel=0.03)
    relu = nn.MLP([300, 200, 100], activation="relu")
    first, out = (layer.W.value for layer in relu.layers if isinstance(layer, nn.Dense))
    assert first.std() == pytest.approx(np.sqrt(2 / 300), rel=0.03)
    assert out.std() == pytest.approx(np.sqrt(2 / 300), rel=0.03)
    chosen = nn.MLP([300, 200, 100], activation="tanh", weight_init="xavier")
    assert chosen.layers[0].W.value.std() == pytest.approx(np.sqrt(2 / 500), rel=0.03)


def test_softmax_cross_entropy_with_integer_labels_via_one_hot():
    rng = np.random.default_rng(0)
    logits_value = rng.standard_normal((6, 4))
    labels = np.array([0, 3, 1, 1, 2, 3])
    logits = sg.placeholder("logits", (None, 4), "float64")
    targets = sg.placeholder("targets", (None, 4), "float64")
    loss = nn.softmax_cross_entropy(logits, targets)
    log_p = logits_value - np.log(np.exp(logits_value).sum(1, keepdims=True))
    expected = -log_p[np.arange(6), labels].mean()
    value = sg.evaluate(loss, {logits: logits_value, targets: nn.one_hot(labels, 4, "float64")})
    assert float(value) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="label 4 .*outside the class range 0..3"):
        nn.one_hot(np.array([0, 4]), 4)


def test_binary_cross_entropy_and_mse():
    z = sg.placeholder("z", (None, 1), "float64")
    t = sg.placeholder("t", (None, 1), "float64")
    zv, tv = np.array([[-1.0], [0.5], [1000.0]]), np.array([[0.0], [1.0], [1.0]])
    p = 1 / (1 + np.exp(-zv[:2]))
    expected = -(tv[:2] * np.log(p) + (1 - tv[:2]) * np.log(1 - p))
    bce = sg.evaluate(nn.sigmoid_binary_cross_entropy(z, t), {z: zv, t: tv})
    assert float(bce) == pytest.approx(expected.sum() / 3, rel=1e-9)  # z = 1000 costs ~0, no inf
    assert float(sg.evaluate(nn.mean_squared_error(z, t), {z: zv[:2], t: tv[:2]})) == pytest.approx(
        np.mean((zv[:2] - tv[:2]) ** 2))


def test_gaussian_nll_with_learned_precision():
    rng = np.random.default_rng(0)
    y = rng.normal(1.0, 0.5, (200, 1))
    mu = sg.Variable(np.array([0.8]), name="mu")
    log_beta = sg.Variable(np.array([0.3]), name="log_beta")
    beta = sg.exp(log_beta)
    loss = nn.gaussian_nll(mu, sg.constant(y), beta)
    b = np.exp(0.3)
    expected = np.mean(-0.5 * np.log(b) + 0.5 * b * (y - 0.8) ** 2)
    assert float(sg.evaluate(loss)) == pytest.approx(expected, rel=1e-12)
    # The optimum: mu = mean(y), beta = 1 / variance: there both gradients vanish.
    mu.value = np.array([y.mean()])
    log_beta.value = np.array([-np.log(y.var())])
    g_mu, g_log_beta = sg.evaluate(sg.gradients(loss, [mu, log_beta]))
    assert abs(float(g_mu[0])) < 1e-10 and abs(float(g_log_beta[0])) < 1e-10
    mu.value, log_beta.value = np.array([0.8]), np.array([0.3])
    for variable in (mu, log_beta):
        np.testing.assert_allclose(sg.evaluate(sg.grad(loss, variable)),
                                   _numeric_grad(loss, variable), rtol=1e-6)


def test_l2_weight_decay_skips_biases_by_default():
    model = nn.MLP([3, 4, 2], activation="tanh", seed=0, dtype="float64")
    for b in model.biases:
        b.value = np.ones(b.shape)
    weights = sum(np.sum(w.value ** 2) for w in model.weights)
    biases = sum(np.sum(b.value ** 2) for b in model.biases)
    assert float(sg.evaluate(nn.l2_weight_decay(model, 0.1))) == pytest.approx(0.05 * weights)
    assert float(sg.evaluate(nn.l2_weight_decay(model, 0.1, include_biases=True))) == pytest.approx(
        0.05 * (weights + biases))
    assert float(sg.evaluate(nn.l2_weight_decay(model.params, 0.1))) == pytest.approx(0.05 * weights)
    decay = nn.l2_weight_decay(model, 0.1)
    np.testing.assert_allclose(sg.evaluate(sg.grad(decay, model.weights[0])), 0.1 * model.weights[0].value)


def test_accuracy_helper():
    assert nn.accuracy(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0])) == 0.5
    assert nn.accuracy(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([[1, 0], [0, 1]])) == 1.0
    assert nn.accuracy(np.array([[0.3], [-2.0]]), np.array([[1.0], [1.0]])) == 0.5


def test_conv_layers_build_nchw_models_with_fan_in_initialisation():
    from symgrad import nn
    conv = nn.Conv2d(3, 8, (3, 5), padding=1, activation="relu", rng=0)
    assert conv.W.shape == (8, 3, 3, 5) and conv.b.shape == (8,)
    assert conv.W.name == "conv/W" and conv.params == [conv.W, conv.b]
    # He: N(0, 2 / fan_in) with fan_in = C·kh·kw = 45
    assert abs(conv.W.value.std() - np.sqrt(2 / 45)) < 0.06
    x = sg.placeholder("x", (None, 48), "float32")
    model = nn.Sequential([nn.Reshape((3, 4, 4)), conv, nn.MaxPool2d(2), nn.AvgPool2d(1),
                           nn.Flatten(), nn.Dense(8 * 2 * 1, 2)])
    y = model(x)
    assert y.shape == (x.shape[0], 2)
    assert model.weights == [conv.W, model.layers[-1].W]
    xb = np.random.default_rng(0).standard_normal((5, 48)).astype(np.float32)
    f = sg.function([x], y, background=False)
    np.testing.assert_allclose(f(xb), sg.evaluate(y, {x: xb}), rtol=1e-5, atol=1e-6)
