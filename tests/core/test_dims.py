"""Symbolic sizes (symgrad/core/dims.py): None is a fresh size symbol, a name is one size shared
by every shape that says it, and shape rules compute with them as numbers. Every call binds
the symbols from its arguments and checks what the graph assumed; compiled code and the
interpreter agree at every batch size, 0 and 1 included."""
import numpy as np
import pytest
import sympy

import symgrad as sg
from symgrad.core import dims
from symgrad.core.partial import split

F64 = "float64"
RNG = np.random.default_rng(7)


def both(inputs, outputs, *arrays):
    """The interpreter's and the compiled function's values."""
    f = sg.function(inputs, outputs, background=False)
    interpreted = sg.evaluate(outputs, dict(zip(inputs, arrays)))
    return f, interpreted, f(*arrays)


def test_none_is_a_fresh_symbol_and_a_name_is_shared():
    x = sg.placeholder("x", (None, 3), F64)
    y = sg.placeholder("y", (None, 3), F64)
    a = sg.placeholder("a", ("N", 3), F64)
    b = sg.placeholder("b", ("N", 1), F64)
    assert isinstance(x.shape[0], sympy.Symbol) and x.shape[0] != y.shape[0]
    assert dims.text(x.shape[0]) == "x.0" and a.shape[0] == b.shape[0] == dims.named("N")
    assert repr(a) .startswith("<placeholder 'a' (N, 3)")
    # an op that combines two unknown sizes assumes they are equal and keeps one
    assert (x + y).shape == (x.shape[0], 3) and (a * b).shape == (a.shape[0], 3)


def test_a_shared_name_is_checked_at_every_call():
    a = sg.placeholder("a", ("N", 3), F64)
    b = sg.placeholder("b", ("N", 2), F64)
    f = sg.function([a, b], sg.sum(a) + sg.sum(b), background=False)
    assert float(f(np.ones((4, 3)), np.ones((4, 2)))) == 20.0
    for run in (f, lambda u, v: sg.evaluate(sg.sum(a) + sg.sum(b), {a: u, b: v})):
        with pytest.raises(ValueError, match=r"'a' axis 0 = 4"):
            run(np.ones((4, 3)), np.ones((5, 2)))


@pytest.mark.parametrize("batch", [0, 1, 5])
def test_sizes_computed_from_sizes_compile_and_interpret_alike(batch):
    x = sg.placeholder("x", ("N", 4, 4), F64)
    y = sg.placeholder("y", (None, 2), F64)
    flat = sg.reshape(x, (x.shape[0], -1))          # (N, 16)
    rows = sg.reshape(x, (-1,))                      # (16 N,)
    joined = sg.concatenate([y, y[1:]], axis=0)      # (y.0 + Max(y.0 - 1, 0), 2)
    assert flat.shape == (dims.named("N"), 16) and rows.shape == (16 * dims.named("N"),)
    assert joined.shape[0] == y.shape[0] + sympy.Max(y.shape[0] - 1, 0)
    assert dims.text(y[1:].shape[0]) == "Max(0, y.0 - 1)"
    loss = sg.sum(sg.tanh(flat)) + sg.mean(rows) * 2.0 + sg.sum(y[1:] * y[1:])
    grads = sg.gradients(loss, [x, y])
    xb, yb = RNG.standard_normal((batch, 4, 4)), RNG.standard_normal((batch, 2))
    f, want, got = both([x, y], [loss, joined] + grads, xb, yb)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert "size0 = arg0.shape[0]" in f.source  # the sizes are read once, at the top


def test_the_count_of_a_mean_is_worked_out_at_call_time():
    x = sg.placeholder("x", (None, 3), F64)
    count = sg.size(x.shape)
    assert count.op == "size" and sg.size((2, 3)).op == "constant"
    f, want, got = both([x], [count, sg.mean(x)], np.ones((5, 3)))
    assert float(want[0]) == float(got[0]) == 15.0 and float(got[1]) == 1.0


def test_values_of_one_element_count_share_a_workspace_slot():
    x = sg.placeholder("x", (None, 8), F64)
    W = sg.Variable(RNG.standard_normal((8, 8)), name="W")
    h = sg.tanh(x @ W)
    g = sg.tanh(sg.reshape(h, (-1, 4)) * 2.0)        # (2 x.0, 4): as many elements as h
    f = sg.function([x], sg.sum(sg.exp(sg.reshape(g, (-1, 8)) @ W)), background=False)
    counts = {count for _, count in f.program.slots}
    assert 8 * x.shape[0] in counts and len(f.program.slots) < len(f.program.workspace)
    assert f.memory(x=10)["workspace_bytes"] == sum(8 * dims.evaluate(c, {x.shape[0]: 10})
                                                    for _, c in f.program.slots)
    xb = RNG.standard_normal((3, 8))
    np.testing.assert_allclose(f(xb), sg.evaluate(f.outputs[0], {x: xb}), rtol=1e-12)


def test_a_size_read_from_a_placeholder_whose_value_is_not_needed():
    x = sg.placeholder("x", (None, 3), F64)
    v = sg.placeholder("v", (3,), F64)
    spread = sg.broadcast_to(v * 3.0, (x.shape[0], 3))
    # a function that needs x's size must be given x
    with pytest.raises(ValueError, match=r"needs the size x\.0 .* add the placeholder"):
        sg.function([v], spread, background=False)
    # the fixed part (tanh(x), summed) is a residual; the varying part needs x's size only
    parts = split([sg.sum(sg.tanh(x)) + sg.sum(spread)], [v])
    assert [r.op for r in parts.residuals] == ["sum"] and parts.size_inputs == [x]
    f = sg.function([v, parts.placeholders[0], x], parts.outputs, background=False)
    assert float(f(np.ones(3), np.float64(0.5), np.zeros((4, 3)))[0]) == 36.5


def test_broadcast_to_takes_sizes_not_none():
    x = sg.placeholder("x", (None, 3), F64)
    with pytest.raises(sg.ShapeError, match="use the size of the value that has it"):
        sg.broadcast_to(sg.constant(1.0), (None, 3))
    assert sg.broadcast_to(sg.constant(np.float64(1.0)), x.shape).shape == x.shape


def test_an_output_size_an_extension_rule_leaves_unknown_is_bound_when_computed():
    import numba
    from symgrad import extend

    @numba.njit
    def repeat_each_twice(x, out):
        for i in range(out.shape[0]):
            out[i] = x[i // 2]

    def infer(inputs, attrs):  # a rule that states no size it cannot know now
        n = inputs[0].shape[0]
        return ((2 * n if dims.is_known(n) else None),), inputs[0].dtype

    repeat = extend.op("test_repeat_unknown", infer=infer, kernel=repeat_each_twice,
                       numpy=lambda arrays, attrs: np.repeat(arrays[0], 2))
    try:
        x = sg.placeholder("x", (None,), F64)
        y = repeat(x)
        assert dims.text(y.shape[0]) == "test_repeat_unknown.0"
        out = [sg.tanh(y) * 2.0, sg.mean(y)]
        for batch in (0, 3):
            xb = np.arange(float(batch))
            _, want, got = both([x], out, xb)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-12)
    finally:
        extend.undefine("test_repeat_unknown")


@pytest.mark.parametrize("shape", [(0, -1, 1), (-1, 0), (2, None, 0)])
def test_reshape_cannot_infer_a_size_beside_a_zero(shape):
    # the other sizes multiply to 0: the -1 could be anything (NumPy refuses it too), for a
    # batch known only at call time as for a known one
    for x in (sg.placeholder("x", (None, 3)), sg.placeholder("x", (4, 3))):
        with pytest.raises(sg.ShapeError, match="multiply to 0"):
            sg.reshape(x, shape)
    with pytest.raises(sg.ShapeError, match="only one size can be -1"):
        sg.reshape(sg.placeholder("x", (None, 3)), (-1, None))
