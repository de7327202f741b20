"""The inline_producer pass (codegen.py): an elementwise value read at shifted indices (a
stencil such as Rosenbrock's x[1:] - x[:-1]²) is computed in the loops that read it, never
stored. Compared with the interpreter, at small sizes, at NaN and ±inf, and for the Hessian-
vector product, whose graph has more such values."""
import numpy as np
import pytest

import symgrad as sg

F64 = "float64"


def _rosenbrock(n):
    x = sg.placeholder("x", (n,), F64)
    v = sg.placeholder("v", (n,), F64)
    f = sg.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    return x, v, f


@pytest.mark.parametrize("n", [2, 3, 17])
def test_a_stencil_is_one_loop_and_equals_the_interpreter(n):
    x, v, f = _rosenbrock(n)
    g = sg.grad(f, x)
    hv = sg.hessian_vector_product(f, x, v)
    grad = sg.function([x], g, background=False)
    hvp = sg.function([x, v], hv, background=False)
    for compiled in (grad, hvp):
        assert any(d.pass_ == "inline_producer" for d in compiled.decisions)
    assert grad.source.count("step.loop(") == 1  # one pass over memory (five without the pass)
    assert hvp.source.count("step.loop(") <= 2
    rng = np.random.default_rng(n)
    xv, vv = rng.standard_normal(n), rng.standard_normal(n)
    xv[n // 2] = np.nan
    if n > 3:
        xv[1], xv[-1] = np.inf, -np.inf
    np.testing.assert_allclose(grad(xv), sg.evaluate(g, {x: xv}), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(hvp(xv, vv), sg.evaluate(hv, {x: xv, v: vv}), rtol=1e-12,
                               equal_nan=True)


def test_a_value_read_at_one_index_stays_stored():
    """Read at the same index by two loops (no slice between): recomputing would only cost,
    so the pass leaves it (the simplifier fused what a single loop reads)."""
    x = sg.placeholder("x", (None, 4), F64)
    a = sg.tanh(x) * 3.0
    f = sg.function([x], [sg.sum(a, axis=1), a * a + 1.0], background=False)
    assert not any(d.pass_ == "inline_producer" for d in f.decisions)


def test_inlined_values_keep_their_inputs_alive():
    """The stencil over a computed value a = sin(x)·1.5 (stored in the workspace): the loops
    that compute the inlined values again read a long after the values' own steps, so a's
    slot must not go to a value computed in between."""
    n = 64
    x = sg.placeholder("x", (n,), F64)
    a = sg.sin(x) * 1.5 + sg.cos(x)
    f = sg.sum(100.0 * (a[1:] - a[:-1] ** 2) ** 2 + (1.0 - a[:-1]) ** 2) + sg.sum(sg.exp(a[2:] * 0.1) * a[:-2])
    g = sg.grad(f, x)
    grad = sg.function([x], [f, g], background=False)
    assert any(d.pass_ == "inline_producer" for d in grad.decisions)
    xv = np.random.default_rng(4).standard_normal(n)
    for got, want in zip(grad(xv), sg.evaluate([f, g], {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-12)
