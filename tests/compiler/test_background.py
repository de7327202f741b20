"""A compile that takes long goes on in the background: calls are served by the interpreter,
with the compiled function's semantics, until the kernel takes over."""
import threading

import numpy as np
import pytest

import symgrad as sg
from symgrad.compiler import jit


def _model(seed):
    rng = np.random.default_rng(seed)
    x = sg.placeholder("x", (None, 3), "float64")
    t = sg.placeholder("t", (None, 2), "float64")
    W = sg.Variable(rng.standard_normal((3, 2)), name="W")
    loss = sg.mean(sg.square(sg.tanh(x @ W) - t))
    return x, t, W, loss, [(W, W - 0.1 * sg.grad(loss, W))]


@pytest.fixture
def slow_compiles(monkeypatch):
    """Compiling waits until released, so the interpreter is sure to serve the first calls."""
    release = threading.Event()
    original = jit.load_program

    def slow(source):
        release.wait(30)
        return original(source)
    monkeypatch.setattr(jit, "load_program", slow)
    return release


def test_calls_before_the_kernel_is_ready_agree_with_it(slow_compiles):
    rng = np.random.default_rng(1)
    xb, tb = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    x, t, W, loss, updates = _model(0)
    step = sg.function([x, t], [loss, W], updates=updates, background=True)
    assert not step.ready()
    interpreted = [step(xb, tb) for _ in range(3)]  # served by the interpreter
    assert not step.ready()
    after_interpreted = W.value.copy()
    slow_compiles.set()
    step.wait()
    assert step.ready() and step.compile_seconds > 0

    x2, t2, W2, loss2, updates2 = _model(0)  # the same model, compiled from the start
    reference = sg.function([x2, t2], [loss2, W2], updates=updates2, background=False)
    for (loss_i, w_i), (loss_c, w_c) in zip(interpreted, [reference(xb, tb) for _ in range(3)]):
        np.testing.assert_allclose(loss_i, loss_c, rtol=1e-12)
        np.testing.assert_allclose(w_i, w_c, rtol=1e-12)  # outputs: values before the update
    np.testing.assert_allclose(after_interpreted, W2.value, rtol=1e-12)
    np.testing.assert_allclose(step(xb, tb)[0], reference(xb, tb)[0], rtol=1e-12)  # compiled now


def test_a_refused_call_before_the_kernel_is_ready_changes_nothing(slow_compiles):
    x, t, W, loss, updates = _model(2)
    step = sg.function([x, t], loss, updates=updates, background=True)
    before = W.value.copy()
    with pytest.raises(ValueError, match="'x' axis 0 = 4, 't' axis 0 = 5"):
        step(np.ones((4, 3)), np.ones((5, 2)))
    with pytest.raises(TypeError, match="argument 'x'"):
        step(np.ones((4, 3), np.float32), np.ones((4, 2)))
    np.testing.assert_array_equal(W.value, before)
    slow_compiles.set()
    step.wait()


def test_a_failed_compile_is_reported(monkeypatch):
    def broken(source):
        raise RuntimeError("no compiler today")
    monkeypatch.setattr(jit, "load_program", broken)
    x = sg.placeholder("x", (2,), "float64")
    f = sg.function([x], x * 2.0, background=True)
    with pytest.raises(RuntimeError, match="no compiler today"):
        f(np.ones(2))
    with pytest.raises(RuntimeError, match="no compiler today"):
        sg.function([x], x * 3.0, background=False)


def test_the_plan_made_while_compiling_serves_only_shapes_the_graph_accepts():
    # compiling makes a plan for made-up sizes (16 for each unknown size) and keeps it for
    # calls of those shapes: here those sizes break the graph's assumption (y is one shorter
    # than x), so a call with them must still be refused, not run on a kept plan
    import numpy as np
    import symgrad as sg
    x = sg.placeholder("x", (None,), "float64")
    y = sg.placeholder("y", (None,), "float64")
    f = sg.function([x, y], x[1:] * y, background=False)
    with pytest.raises(ValueError, match="do not fit the graph"):
        f(np.ones(16), np.ones(16))
    np.testing.assert_array_equal(f(np.arange(17.0), np.ones(16)), np.arange(1.0, 17.0))
    z = sg.placeholder("z", (None, 3), "float64")
    g = sg.function([z], z * 2.0, background=False)
    assert ((16, 3),) in g._plans  # the plan made while compiling serves a call of those shapes
    np.testing.assert_array_equal(g(np.ones((16, 3))), np.full((16, 3), 2.0))
