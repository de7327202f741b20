"""symgrad.optim: every optimizer's compiled step against a NumPy implementation of its update
rule, loss decrease, state in Variables, a learning rate changed without recompiling, schedules.

The small problem is Rosenbrock's function of a float64 point (the learning-rate Variable is
float32, so the cast path is covered too); one compiled step per optimizer, shared."""
import numpy as np
import pytest

import symgrad as sg
from symgrad import optim
from symgrad.train import History

START = np.array([-1.2, 1.0])
RATE = 1e-3
SETTINGS = {"sgd": {}, "momentum": {"momentum": 0.9}, "nesterov": {"momentum": 0.9},
            "rmsprop": {"decay": 0.9, "epsilon": 1e-6},
            "adam": {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}}


def rosenbrock(p):
    return sg.square(1.0 - p[0]) + 100.0 * sg.square(p[1] - sg.square(p[0]))


def rosenbrock_np(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def gradient_np(p):
    a, b = p
    return np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


def reference(name, steps, rate, **h):
    """The update rules as the textbook writes them (Goodfellow et al., ch. 8), in NumPy.
    Returns the points after each step; for Nesterov, θ + αv (see optim.py's docstring)."""
    theta, v, r, s, points = START.copy(), np.zeros(2), np.zeros(2), np.zeros(2), []
    for t in range(1, steps + 1):
        if name == "sgd":
            theta = theta - rate * gradient_np(theta)
        elif name == "momentum":
            v = h["momentum"] * v - rate * gradient_np(theta)
            theta = theta + v
        elif name == "nesterov":  # Algorithm 8.3: the gradient at the interim point θ + αv
            v = h["momentum"] * v - rate * gradient_np(theta + h["momentum"] * v)
            theta = theta + v
        elif name == "rmsprop":
            g = gradient_np(theta)
            r = h["decay"] * r + (1 - h["decay"]) * g * g
            theta = theta - rate * g / np.sqrt(h["epsilon"] + r)
        elif name == "adam":
            g = gradient_np(theta)
            s = h["beta1"] * s + (1 - h["beta1"]) * g
            r = h["beta2"] * r + (1 - h["beta2"]) * g * g
            s_hat, r_hat = s / (1 - h["beta1"] ** t), r / (1 - h["beta2"] ** t)
            theta = theta - rate * s_hat / (np.sqrt(r_hat) + h["epsilon"])
        points.append(theta + h["momentum"] * v if name == "nesterov" else theta.copy())
    return points


@pytest.fixture(scope="module")
def steps():
    """name -> (compiled step, point Variable, optimizer), each starting at START."""
    out = {}
    for name, settings in SETTINGS.items():
        opt = optim.get(name, RATE, **settings)
        p = sg.Variable(START, name="p")
        loss = rosenbrock(p)
        out[name] = (sg.function([], loss, updates=opt.updates(loss, [p])), p, opt)
    return out


def _reset(p, opt):
    p.value = START
    for v in opt.slots:
        v.value = np.zeros(v.shape)
    opt.step.value = 0
    opt.learning_rate.value = RATE


@pytest.mark.parametrize("name", list(SETTINGS))
def test_matches_numpy_reference(steps, name):
    step, p, opt = steps[name]
    _reset(p, opt)
    rate = float(np.float32(RATE))  # the learning rate lives in a float32 Variable
    expected = reference(name, 5, rate, **SETTINGS[name])
    for k in range(5):
        loss = step()
        assert float(loss) == pytest.approx(rosenbrock_np(expected[k - 1] if k else START), rel=1e-12)
        np.testing.assert_allclose(p.value, expected[k], rtol=1e-12, atol=1e-15)
    assert opt.step.value == 5


@pytest.mark.parametrize("name", list(SETTINGS))
def test_decreases_the_loss(steps, name):
    step, p, opt = steps[name]
    _reset(p, opt)
    losses = [float(step()) for _ in range(300)]
    assert losses[-1] < 0.5 * losses[0]
    assert np.linalg.norm(p.value - 1) < np.linalg.norm(START - 1)


def test_state_lives_in_variables(steps):
    _, p, adam = steps["adam"]
    names = [v.name for v in adam.variables]
    assert names == ["adam/learning_rate", "adam/step", "adam/first_moment/p", "adam/second_moment/p"]
    _, _, momentum = steps["momentum"]
    assert [v.name for v in momentum.slots] == ["momentum/velocity/p"]
    assert optim.SGD(0.1).slots == []


def test_learning_rate_changes_without_recompiling(steps):
    step, p, opt = steps["sgd"]
    _reset(p, opt)
    source = step.source
    opt.learning_rate.value = 0.0
    step()
    np.testing.assert_array_equal(p.value, START)
    opt.learning_rate.value = 2e-3
    step()
    np.testing.assert_allclose(p.value, START - float(np.float32(2e-3)) * gradient_np(START), rtol=1e-12)
    assert step.source == source


def test_unknown_optimizer_and_bad_parameters():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'.*adam"):
        optim.get("adagrad")
    x = sg.placeholder("x", (2,), "float64")
    with pytest.raises(TypeError, match="parameters must be Variables"):
        optim.SGD().updates(sg.sum(x), [x])


def test_schedules():
    assert optim.Constant(0.1)(7) == 0.1
    inverse = optim.InverseTime(1.0, 4.0)
    assert [inverse(e) for e in range(3)] == [0.25, 0.2, 1 / 6]
    history = History([{"loss": 1.0, "val_loss": v} for v in
                       [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]])
    halving = optim.StepHalving(0.4, patience=3)
    # no improvement in epochs 3-5 (1-based): halve before epoch 6; again after 3 more stalls.
    assert [halving(e, history) for e in range(12)] == [0.4] * 5 + [0.2] * 4 + [0.1] * 3
    assert optim.StepHalving(0.4, patience=1, minimum=0.3)(5, history) == 0.3
    assert optim.StepHalving(0.4)(0, History()) == 0.4


def test_more_schedules():
    cosine = optim.CosineDecay(1.0, epochs=10, floor=0.1)
    assert cosine(0) == pytest.approx(1.0) and cosine(5) == pytest.approx(0.55)
    assert cosine(10) == pytest.approx(0.1) and cosine(50) == pytest.approx(0.1)
    warm = optim.LinearWarmup(0.4, warmup=4, after=optim.ExponentialDecay(0.4, 0.5))
    assert [warm(k) for k in range(7)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.2, 0.1])
    tau = optim.LinearDecay(0.1, 0.001, epochs=100)  # ε_k = (1 - k/τ) ε₀ + (k/τ) ε_τ
    assert [tau(k) for k in (0, 50, 100, 200)] == pytest.approx([0.1, 0.0505, 0.001, 0.001])
    assert optim.LinearWarmup(0.3, warmup=2)(9) == pytest.approx(0.3)


@pytest.fixture(scope="module")
def clipped_steps():
    """SGD steps (lr 0.5) on L = Σ c·p² with clipping by value (1) and by global norm (1)."""
    p = sg.Variable(np.zeros(3, np.float32), name="p")
    q = sg.Variable(np.zeros((2, 2), np.float32), name="q")
    c = sg.placeholder("c", (), "float32")
    loss = c * (sg.sum(sg.square(p)) + sg.sum(sg.square(q)))
    steps = {}
    for kind in ("clip_value", "clip_norm"):
        opt = optim.SGD(0.5, **{kind: 1.0})
        steps[kind] = sg.function([c], loss, updates=opt.updates(loss, [p, q]), background=False)
    return p, q, steps


@pytest.mark.parametrize("scale", [0.1, 3.0, 1e30])
def test_gradient_clipping_inside_the_compiled_step(clipped_steps, scale):
    p, q, steps = clipped_steps
    start_p, start_q = np.array([1.0, -2.0, 0.5], np.float32), np.full((2, 2), 0.25, np.float32)
    grads = [2 * np.float64(scale) * start_p, 2 * np.float64(scale) * start_q]  # ∂L/∂p = 2cp
    norm = np.sqrt(sum(np.sum(g * g) for g in grads))
    expected = {"clip_value": [np.clip(g, -1, 1) for g in grads],
                "clip_norm": [g * min(1.0, 1.0 / norm) for g in grads]}
    for kind, step in steps.items():
        p.value, q.value = start_p, start_q
        step(np.float32(scale))
        for variable, start, g in zip((p, q), (start_p, start_q), expected[kind]):
            assert np.all(np.isfinite(variable.value)), (kind, variable.value)  # 1e30: no overflow
            np.testing.assert_allclose(variable.value, start - 0.5 * g, rtol=1e-5, atol=1e-6)
    moved = np.sqrt(np.sum((p.value - start_p) ** 2) + np.sum((q.value - start_q) ** 2))
    assert moved <= 0.5 * 1.0 * (1 + 1e-6)  # the global-norm step: at most lr · max_norm


def test_global_norm_and_clipping_agree_with_the_interpreter():
    a = sg.placeholder("a", (3,), "float32")
    b = sg.placeholder("b", (2, 2), "float32")
    outputs = [optim.global_norm([a, b])] + optim.clip_by_global_norm([a, b], 1.0) + \
        optim.clip_by_value([a, b], 0.5)
    f = sg.function([a, b], outputs, background=False)
    for av, bv in [(np.array([3, 4, 0], np.float32), np.zeros((2, 2), np.float32)),
                   (np.full(3, 1e30, np.float32), np.full((2, 2), -1e30, np.float32)),
                   (np.zeros(3, np.float32), np.zeros((2, 2), np.float32)),
                   (np.array([np.nan, 1, 1], np.float32), np.ones((2, 2), np.float32))]:
        got, reference = f(av, bv), sg.evaluate(outputs, {a: av, b: bv})
        for g, r in zip(got, reference):
            np.testing.assert_allclose(g, r, rtol=1e-6, equal_nan=True)
    assert f(np.array([3, 4, 0], np.float32), np.zeros((2, 2), np.float32))[0] == 5.0
    assert np.all(f(np.zeros(3, np.float32), np.zeros((2, 2), np.float32))[1] == 0)  # 0, not 0/0


def test_bad_clipping_limits_are_refused():
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="clip_norm must be a finite number > 0"):
            optim.Adam(1e-3, clip_norm=bad)
    with pytest.raises(ValueError, match="clip_value must be a finite number > 0"):
        optim.Momentum(0.1, clip_value=0)
