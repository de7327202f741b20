"""Random draws in the graph (symgrad/core/random.py): the generator against Random123's
published answers, compiled draws equal to interpreted ones, the counter each call advances,
reproducibility from a seed, the streams' statistics, and dropout's gradient."""
from __future__ import annotations

import math

import numpy as np
import pytest

import symgrad as sg
from symgrad.core.random import philox

# Random123's kat_vectors for philox4x32 10: counter (4 words), key (2 words) -> output
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, expected):
    words = philox([[c] for c in counter], key)
    assert tuple(int(w[0]) for w in words) == expected


@pytest.fixture(scope="module")
def draws():
    """One compiled function drawing every distribution and dtype, at a call-time size."""
    x = sg.placeholder("x", (None, 3), "float32")
    gen = sg.random.Generator(0, name="test")
    nodes = [gen.uniform(x.shape), gen.normal(x.shape), gen.bernoulli(x.shape, 0.25),
             gen.uniform((2, 5), dtype="float64"), gen.normal((4,), 2.0, 3.0, dtype="float64"),
             gen.uniform((0, 3))]
    return x, gen, nodes, sg.function([x], nodes, background=False)


def test_compiled_kernel_gives_the_known_answer(draws):
    """Draw 0 at seed 0, step 0 is counter (0, 0, 0, 0) under key (0, 0): its first four
    float32 uniforms are the first known answer's words, top 24 bits."""
    x, gen, nodes, f = draws
    gen.seed(0)
    first = f(np.zeros((2, 3), np.float32))[0].reshape(-1)[:4]
    expected = np.array(KNOWN_ANSWERS[0][2], np.uint64) >> np.uint64(8)
    np.testing.assert_array_equal(first, expected.astype(np.float64) * 2.0 ** -24)


@pytest.mark.parametrize("batch", [1, 7, 0])
def test_compiled_equals_interpreted_and_the_counter_advances(draws, batch):
    x, gen, nodes, f = draws
    gen.seed(3)
    xv = np.zeros((batch, 3), np.float32)
    expected = sg.evaluate(nodes, {x: xv})
    assert gen.state.value.tolist() == [3, 0]  # the interpreter reads the state, leaves it
    got = f(xv)
    for a, b, node in zip(got, expected, nodes):
        assert a.dtype == b.dtype == node.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6 if node.dtype == "float32" else 1e-13, atol=1e-12)
    assert gen.state.value.tolist() == [3, 1]  # one step on, by the call
    again = f(xv)
    if batch:
        assert not np.array_equal(again[0], got[0])  # a fresh draw each call
    gen.seed(3)
    np.testing.assert_array_equal(f(xv)[0], got[0])  # reproducible from the seed


def test_draws_of_one_graph_differ_and_seeds_share_the_compiled_code():
    a, b = sg.random.Generator(1), sg.random.Generator(2)
    ua1, ua2, ub = a.uniform((64,)), a.uniform((64,)), b.uniform((64,))
    va1, va2 = sg.evaluate([ua1, ua2])
    assert not np.array_equal(va1, va2)
    assert not np.array_equal(sg.evaluate(ub), sg.evaluate(b.uniform((64,))))
    # the seed is data (a Variable), not code: generators of other seeds compile to one source
    assert sg.function([], ub).source == sg.function([], sg.random.Generator(9).uniform((64,))).source


def _chi_square_uniform(u, bins=20):
    counts = np.bincount(np.minimum((u * bins).astype(int), bins - 1), minlength=bins)
    expected = len(u) / bins
    return float(np.sum((counts - expected) ** 2 / expected))


def test_streams_are_uniform_and_independent():
    """Chi-square with 19 degrees of freedom: 43.8 is its 0.999 quantile. Correlations of
    independent streams of n values stay within 4/sqrt(n). The seeds are fixed: the checks
    are deterministic."""
    gen = sg.random.Generator(12345)
    n = 200_000
    draw, draw64, other = gen.uniform((n,)), gen.uniform((n,), dtype="float64"), gen.uniform((n,))
    f = sg.function([], [draw, draw64, other], background=False)
    u1, u64, v = f()
    u2 = f()[0]  # the next step's draw
    limit = 4 / math.sqrt(n)
    for u in (u1, u64, u2):
        assert 0.0 <= u.min() and u.max() < 1.0
        assert _chi_square_uniform(u) < 43.8
        assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < limit  # neighbours
    assert abs(np.corrcoef(u1, v)[0, 1]) < limit   # two draws of one step
    assert abs(np.corrcoef(u1, u2)[0, 1]) < limit  # one draw, two steps
    # pairs of neighbours fill the unit square evenly (10 × 10 cells, 99 degrees of freedom,
    # 0.999 quantile 148.2)
    cells = (np.minimum((u1[0::2] * 10).astype(int), 9) * 10 + np.minimum((u1[1::2] * 10).astype(int), 9))
    counts = np.bincount(cells, minlength=100)
    assert float(np.sum((counts - n / 200) ** 2 / (n / 200))) < 148.2


def test_normal_and_bernoulli_statistics():
    gen = sg.random.Generator(7)
    n = 200_000
    z32, z64 = sg.evaluate([gen.normal((n,)), gen.normal((n,), dtype="float64")])
    for z in (z32, z64):
        assert np.all(np.isfinite(z))
        assert abs(z.mean()) < 4 / math.sqrt(n) and abs(z.std() - 1) < 0.01
        # Kolmogorov-Smirnov against the normal CDF: 1.95/sqrt(n) is its 0.999 quantile
        s = np.sort(z.astype(np.float64))
        cdf = 0.5 * (1 + np.vectorize(math.erf)(s / math.sqrt(2)))
        gap = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
        assert gap < 1.95 / math.sqrt(n)
    b = sg.evaluate(gen.bernoulli((n,), 0.3))
    assert set(np.unique(b)) <= {0.0, 1.0} and abs(b.mean() - 0.3) < 4 * math.sqrt(0.21 / n)


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="seed"):
        sg.random.Generator(-1)
    with pytest.raises(TypeError, match="float32 or float64"):
        sg.random.uniform((3,), dtype="int64")
    with pytest.raises(sg.ShapeError, match="negative"):
        sg.random.uniform((-1,))


# ================================================================================ dropout

def test_dropout_masks_scales_and_is_the_identity_in_evaluation():
    x = sg.placeholder("x", (None, 50), "float64")
    layer = sg.nn.Dropout(0.25, seed=4)
    y = layer(x, training=True)
    xv = np.ones((400, 50))
    out = sg.function([x], y, background=False)(xv)
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    assert layer(x, training=False) is x
    with pytest.raises(ValueError, match="training=True"):
        layer(x)


def test_dropout_gradient_matches_central_differences():
    """With the state fixed (the interpreter reads it and leaves it), dropout is a fixed
    linear map: its gradient is the mask over the keep rate, as central differences say."""
    x = sg.placeholder("x", (6, 4), "float64")
    layer = sg.nn.Dropout(0.5, seed=11)
    loss = sg.sum(sg.tanh(layer(x, training=True)) ** 2)
    g = sg.grad(loss, x)
    rng = np.random.default_rng(0)
    xv, v = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
    eps = 1e-6
    fd = (sg.evaluate(loss, {x: xv + eps * v}) - sg.evaluate(loss, {x: xv - eps * v})) / (2 * eps)
    np.testing.assert_allclose(np.sum(sg.evaluate(g, {x: xv}) * v), fd, rtol=1e-6)
    # compiled: the same gradient at the same state (the call then advances it)
    f = sg.function([x], [loss, g], background=False)
    state = layer.generator.state.value.copy()
    expected = sg.evaluate([loss, g], {x: xv})
    got = f(xv)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12)
    assert layer.generator.state.value[1] == state[1] + 1
