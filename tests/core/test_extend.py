"""symgrad.extend: ops and derivatives defined by users.

The op table (test_ops.py) checks the example ops of tests/extension_ops.py like every other
op (shapes, NumPy, vjp/jvp/hvp against central differences, compiled vs interpreter). Here:
what is particular to extensions: custom gradients (clipping, straight-through), the errors a
user meets, redefinition in a notebook, and the compile cache following a kernel's source.
"""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import sympy

import extension_ops
import symgrad as sg
from symgrad import extend


@pytest.fixture(autouse=True)
def _only_the_example_ops_stay():
    # ops a test defines are removed after it (the op table, test_ops.py, covers every op
    # that stays defined)
    before = extend.defined()
    yield
    for name in extend.defined() - before:
        extend.undefine(name)


def test_gradient_clipping_replaces_the_gradient_and_keeps_the_value():
    x = sg.placeholder("x", (None, 3), "float64")
    clipped = extend.with_gradient(x, [x], vjp=lambda g: [sg.minimum(sg.maximum(g, -1.0), 1.0)])
    loss = sg.sum(5.0 * clipped * clipped)  # gradient 10 x, clipped to [-1, 1]
    g = sg.gradients(loss, x)
    f = sg.function([x], [loss, g], background=False)
    X = np.array([[0.05, -0.02, 3.0], [-4.0, 0.0, 0.09]])
    value, grad = f(X)
    np.testing.assert_allclose(value, np.sum(5 * X * X))
    np.testing.assert_allclose(grad, np.clip(10 * X, -1, 1))
    np.testing.assert_allclose(sg.evaluate(g, {x: X}), grad)


def test_straight_through_estimator():
    x = sg.placeholder("x", (4,), "float64")
    hard = extend.with_gradient(sg.greater(x, 0.0), [x], vjp=lambda g: [g])
    w = sg.constant(np.array([1.0, 2.0, 3.0, 4.0]))
    g = sg.gradients(sg.sum(hard * w), x)
    X = np.array([-1.0, 2.0, 0.5, -3.0])
    np.testing.assert_allclose(sg.evaluate(g, {x: X}), [1, 2, 3, 4])  # the step passes g through
    f = sg.function([x], [hard, g], background=False)
    value, grad = f(X)
    np.testing.assert_array_equal(value, [0, 1, 1, 0])
    np.testing.assert_allclose(grad, [1, 2, 3, 4])


def test_a_hand_derived_gradient_stays_finite_where_the_formula_overflows():
    x = sg.placeholder("x", (3,), "float64")
    g = sg.gradients(sg.sum(extension_ops.stable_softplus(x)), x)
    f = sg.function([x], g, background=False)
    np.testing.assert_allclose(f(np.array([-800.0, 0.0, 800.0])), [0.0, 0.5, 1.0], atol=1e-300)


def test_forward_mode_without_a_tangent_rule_says_what_to_add():
    x = sg.placeholder("x", (3,), "float64")
    y = sg.sum(extend.with_gradient(sg.tanh(x), [x], vjp=lambda g: [g]))
    with pytest.raises(NotImplementedError, match="jvp="):
        sg.jvp(y, x, sg.placeholder("v", (3,), "float64"))


def test_a_wrong_custom_vjp_is_a_clear_error():
    x = sg.placeholder("x", (3,), "float64")
    two = extend.with_gradient(x, [x], vjp=lambda g: [g, g])
    with pytest.raises(ValueError, match="returned 2 cotangents for 1 inputs"):
        sg.gradients(sg.sum(two), x)
    shape = extend.with_gradient(x, [x], vjp=lambda g: [sg.reshape(g, (3, 1))])
    with pytest.raises(sg.ShapeError, match="has shape"):
        sg.gradients(sg.sum(shape), x)


def test_an_elementwise_body_is_checked_when_defined():
    with pytest.raises(ValueError, match="symbols other than its arguments"):
        extend.elementwise("scaled", lambda x: x * sympy.Symbol("alpha"))
    with pytest.raises(ValueError, match="cannot be compiled"):
        extend.elementwise("mystery", lambda x: sympy.Function("mystery")(x))
    with pytest.raises(ValueError, match="symgrad's own ops"):
        extend.elementwise("tanh", lambda x: x)
    with pytest.raises(TypeError, match="takes 1 inputs"):
        extension_ops.swish(sg.placeholder("a", (2,)), sg.placeholder("b", (2,)))


def test_kernel_attributes_are_named_numbers():
    a = sg.placeholder("a", (2, 3), "float64")
    with pytest.raises(TypeError, match=r"attributes \['reverse'\]"):
        extension_ops.cumsum(a)
    with pytest.raises(TypeError, match="must be an int or a float"):
        extension_ops.cumsum(a, reverse="yes")


def test_redefining_an_op_in_a_notebook_takes_the_new_definition():
    x = sg.placeholder("x", (3,), "float64")
    X = np.array([1.0, -2.0, 0.5])
    first = extend.elementwise("user_cubic", lambda x: x ** 3)
    np.testing.assert_allclose(sg.evaluate(sg.gradients(sg.sum(first(x)), x), {x: X}), 3 * X * X)
    again = extend.elementwise("user_cubic", lambda x: 2 * x ** 3)  # the cell, edited, run again
    f = sg.function([x], [again(x), sg.gradients(sg.sum(again(x)), x)], background=False)
    value, grad = f(X)
    np.testing.assert_allclose(value, 2 * X ** 3)
    np.testing.assert_allclose(grad, 6 * X * X)


def _scale_op(name, factor):
    namespace = {}
    exec(f"def kernel(x, out):\n    for i in range(x.size):\n        out.flat[i] = {factor} * x.flat[i]\n",
         namespace)
    return extend.op(name, infer=lambda inputs, attrs: (inputs[0].shape, inputs[0].dtype),
                     numpy=lambda arrays, attrs: factor * arrays[0], kernel=namespace["kernel"])


def test_an_edited_kernel_is_compiled_again_not_read_stale_from_the_cache():
    x = sg.placeholder("x", (None, 2), "float64")
    X = np.arange(6.0).reshape(3, 2)
    before = _scale_op("user_scale", 2.0)
    np.testing.assert_allclose(sg.function([x], before(x), background=False)(X), 2 * X)
    after = _scale_op("user_scale", 3.0)  # same name, edited kernel
    np.testing.assert_allclose(sg.function([x], after(x), background=False)(X), 3 * X)


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np, symgrad as sg
from symgrad.compiler import jit
import extension_ops as ext
x = sg.placeholder("x", (None, 4), "float64")
f = sg.function([x], [ext.cumsum(x, reverse=1), ext.swish(x)], background=False)
X = np.arange(8.0).reshape(2, 4) - 3
a, b = f(X)
assert np.allclose(a, ext.np_cumsum(X, 1)) and np.allclose(b, X / (1 + np.exp(-X)))
print(jit.cache_stats()["compiled"], jit.cache_stats()["loaded"])
"""


def test_extension_steps_are_cached_on_disk_like_any_other(tmp_path):
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
    script = SCRIPT.format(tests=os.path.dirname(os.path.dirname(__file__)))  # extension_ops.py
    counts = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        counts.append([int(n) for n in run.stdout.split()])
    assert counts[0][0] > 0
    assert counts[1][0] == 0 and counts[1][1] > 0, counts  # the second process compiles nothing


def test_a_kernel_is_compiled_only_when_a_function_needs_it(tmp_path, monkeypatch):
    # a plain Python kernel is given to Numba by the first compile that calls it; defining the
    # op and interpreting it compile nothing (an empty cache: no step can be read from disk)
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    plain = _scale_op("user_plain", 4.0)
    assert "user_plain" not in vars(extend.kernels)
    x = sg.placeholder("x", (2,), "float64")
    np.testing.assert_allclose(sg.evaluate(plain(x), {x: np.ones(2)}), [4.0, 4.0])
    assert "user_plain" not in vars(extend.kernels)
    np.testing.assert_allclose(sg.function([x], plain(x), background=False)(np.ones(2)), [4, 4])
    assert isinstance(vars(extend.kernels)["user_plain"], numba.core.dispatcher.Dispatcher)


def test_undefine_removes_only_what_extend_defined():
    extend.elementwise("user_gone", lambda x: x + 1)
    assert "user_gone" in sg.core.ops.OPS
    extend.undefine("user_gone")
    assert "user_gone" not in sg.core.ops.OPS and "user_gone" not in extend.defined()
    with pytest.raises(ValueError, match="not defined by symgrad.extend"):
        extend.undefine("tanh")
