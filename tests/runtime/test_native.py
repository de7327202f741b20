"""The runner of plans (symgrad/runtime/native.py): a plan's steps one at a time, as
benchmarks/step_profile.py times them, give what the whole plan gives; and copy_view, which
lays out transposes and windows, for every rank (loops up to 4 dimensions, ndindex beyond)."""
import numpy as np
import pytest

import symgrad as sg
from symgrad.runtime import kernels, native


def test_the_steps_of_a_plan_one_by_one_give_the_whole_plan():
    x = sg.placeholder("x", (None, 3), "float64")
    W = sg.Variable(np.arange(6.0).reshape(3, 2), name="W")
    f = sg.function([x], sg.tanh(x @ W) * 2.0 + 1.0, background=False)
    xb = np.linspace(-1, 1, 12).reshape(4, 3)
    expected = f(xb)
    plan, _ = f._plans[(xb.shape,)]
    assert len(plan.statements) == int(plan.table[1])
    assert any("kernels.product" in s for s in plan.statements)
    out = np.zeros_like(expected)
    native.run(plan.table, xb, out)  # stores the addresses
    out[...] = 0.0
    for index in range(int(plan.table[1])):
        native.run_step(plan.table, index, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-15)


@pytest.mark.parametrize("perm", [(1, 0), (0, 2, 1), (2, 0, 1), (3, 1, 0, 2), (0, 1, 2, 3, 4)])
@pytest.mark.parametrize("sizes", [(2, 3, 4, 5, 2), (17, 3, 18, 2, 3)])
def test_copy_view_copies_every_layout(perm, sizes):
    # (short last axes of out, read along the source's contiguous axis, and long ones)
    shape = sizes[:len(perm)]
    source = np.arange(np.prod(shape), dtype=np.float32).reshape(shape).transpose(perm)
    out = np.empty(source.shape, np.float32)
    kernels.copy_view(source, out)
    np.testing.assert_array_equal(out, source)
