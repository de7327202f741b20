"""Tests for the mutants of tests/mutation_check.py that the other tests let survive.

Each test pins one behaviour a deliberate one-line bug broke without any other test noticing:
the tie split of max's gradient, elementwise loops reading a slice (or the zero-padded
gradient of one) in place, the call-time shape check of a fed node, a NaN label row in the
compiled distribution check, two transposes merged into one, and updates written in place
while a later step still reads the old value. Values are compared with NumPy and with the
interpreter; each compiled function is built once per module.
"""
import numpy as np
import pytest

import symgrad as sg
from symgrad.core.sizes import concrete_shapes

F64 = "float64"


# ------------------------------------------------------------------- max: ties share the gradient

@pytest.fixture(scope="module")
def max_with_ties():
    x = sg.placeholder("x", (3, 4), F64)
    loss = sg.sum(sg.max(x, axis=1) * sg.constant(np.array([1.0, 2.0, 3.0])))
    g = sg.grad(loss, x)
    return x, g, sg.function([x], g)


def test_max_gradient_is_split_evenly_among_ties(max_with_ties):
    x, g, f = max_with_ties
    xb = np.array([[1.0, 3.0, 3.0, 0.0],    # two tied maxima
                   [2.0, 2.0, 2.0, 2.0],    # four
                   [5.0, -1.0, 0.0, 4.0]])  # one
    expected = np.array([[0, 0.5, 0.5, 0],
                         [0.5, 0.5, 0.5, 0.5],
                         [3.0, 0, 0, 0]])
    np.testing.assert_array_equal(sg.evaluate(g, {x: xb}), expected)
    np.testing.assert_array_equal(f(xb), expected)


# ------------------------------------------------------------ slices read in place by loops

@pytest.fixture(scope="module")
def sliced():
    x = sg.placeholder("x", (6, 5), F64)
    outputs = [x[1:, 2:] - x[:-1, :-2] * 2.0,  # unit steps, starts 1 and 2 (and 0)
               x[1::2, 1:] * x[::2, :-1]]      # steps of 2, starts 1 and 0
    return x, outputs, sg.function([x], outputs)


def test_elementwise_loops_read_slices_at_their_offsets(sliced):
    x, outputs, f = sliced
    for text in ("[1:, 2:]", "[:-1, :-2]", "[1::2, 1:]"):
        assert text not in f.source, f"the slice {text} is no longer read in place: update this test"
    xb = np.random.default_rng(0).standard_normal((6, 5))
    expected = [xb[1:, 2:] - xb[:-1, :-2] * 2.0, xb[1::2, 1:] * xb[::2, :-1]]
    for got, reference, want in zip(f(xb), sg.evaluate(outputs, {x: xb}), expected):
        np.testing.assert_array_equal(reference, want)
        np.testing.assert_allclose(got, want, rtol=1e-15)


@pytest.fixture(scope="module")
def slice_gradient():
    # grad = unslice(c) + d: the zero-padded gradient of x[:, 1:3] is read in place by the add
    x = sg.placeholder("x", (3, 5), F64)
    c = sg.placeholder("c", (3, 2), F64)
    d = sg.placeholder("d", (3, 5), F64)
    g = sg.grad(sg.sum(x[:, 1:3] * c) + sg.sum(x * d), x)
    return (x, c, d), g, sg.function([x, c, d], g)


def test_the_padded_gradient_of_a_slice_is_zero_outside_its_window(slice_gradient):
    inputs, g, f = slice_gradient
    assert "np.zeros(" not in f.source, "the padded gradient is no longer read in place: update this test"
    rng = np.random.default_rng(1)
    xb, cb, db = rng.standard_normal((3, 5)), rng.uniform(1, 2, (3, 2)), rng.standard_normal((3, 5))
    expected = db.copy()
    expected[:, 1:3] += cb
    np.testing.assert_allclose(sg.evaluate(g, dict(zip(inputs, (xb, cb, db)))), expected, rtol=1e-15)
    np.testing.assert_allclose(f(xb, cb, db), expected, rtol=1e-15)


# ------------------------------------------------------------------- call-time size check

def test_a_fed_node_must_have_the_shape_the_graph_knows():
    # Placeholders are checked argument by argument before `concrete_shapes`; its own check
    # of static against concrete sizes is what guards nodes fed directly (and ops whose shape
    # rule would let a size through).
    x = sg.placeholder("x", (None, 3), F64)
    y = sg.exp(x)
    assert concrete_shapes([x, y], {x: (4, 3)})[y] == (4, 3)
    for wrong in [(4, 2), (4,), (4, 3, 1)]:
        with pytest.raises(ValueError, match=r"the graph has shape \(x\.0, 3\)"):
            concrete_shapes([x, y], {x: wrong})


# ------------------------------------------------------- declared distributions: NaN rows

@pytest.fixture(scope="module")
def declared_cross_entropy():
    z = sg.placeholder("z", (None, 3), F64)
    p = sg.placeholder("p", (None, 3), F64)
    g = sg.grad(sg.nn.softmax_cross_entropy(z, p, labels_sum_to_one=True), z)
    return z, p, g, sg.function([z, p], g)


@pytest.mark.parametrize("row", [[np.nan, 1.0, 0.0], [np.nan, np.nan, np.nan], [np.inf, 1.0, -np.inf]],
                         ids=["nan", "all-nan", "inf-minus-inf"])
def test_a_nan_label_row_breaks_the_declaration_when_compiled(declared_cross_entropy, row):
    z, p, g, f = declared_cross_entropy
    zb, pb = np.zeros((2, 3)), np.array([[0.0, 1.0, 0.0], row])
    with pytest.raises(ValueError, match="do not sum to 1"):
        sg.evaluate(g, {z: zb, p: pb})
    with pytest.raises(ValueError, match="do not sum to 1"):
        f(zb, pb)
    np.testing.assert_allclose(f(zb[:1], pb[:1]), np.full((1, 3), 1 / 3) - pb[:1], rtol=1e-15)


# ------------------------------------------------------------------ transpose of transpose

def test_two_transposes_compose_in_order():
    x = sg.placeholder("x", (3, 3, 3), F64)  # equal sizes: a wrong permutation keeps the shape
    y = sg.transpose(sg.transpose(x, (1, 2, 0)), (0, 2, 1))
    f = sg.function([x], y)
    assert "transpose_of_transpose" in {r.rule for r in f.rewrites}
    xb = np.arange(27.0).reshape(3, 3, 3)
    expected = np.transpose(np.transpose(xb, (1, 2, 0)), (0, 2, 1))
    np.testing.assert_array_equal(f(xb), expected)
    np.testing.assert_array_equal(sg.evaluate(y, {x: xb}), expected)


# ------------------------------------------------------- updates that read each other

@pytest.fixture(scope="module")
def crossed_updates():
    a = sg.Variable(np.array([1.0, 2.0, 3.0]), name="A")
    b = sg.Variable(np.array([10.0, 20.0, 30.0]), name="B")
    s = sg.placeholder("s", (), F64)
    # each new value is one elementwise loop reading the other Variable's old value: whichever
    # runs first must not write its Variable in place before the other has read it
    step = sg.function([s], [], updates=[(a, a * 2.0 + b * s), (b, b * 3.0 - a * s)])
    return a, b, step


def test_updates_read_the_old_values_of_each_other(crossed_updates):
    a, b, step = crossed_updates
    for _ in range(2):
        old_a, old_b = a.value.copy(), b.value.copy()
        step(0.5)
        np.testing.assert_array_equal(a.value, old_a * 2.0 + old_b * 0.5)
        np.testing.assert_array_equal(b.value, old_b * 3.0 - old_a * 0.5)
