"""The schedule's release_first_order: of the steps ready to run, the one that is the last
reader of the most bytes runs first, so a large value is read while it is still in cache and
its memory is freed early. A two-layer CNN's second filter gradient (the last reader of its
column matrix) runs right after its cotangent, before the first layer's backward pass; results
equal the depth-first order's and the interpreter's; peak memory does not grow; the update
values still come last."""
import numpy as np
import pytest

import symgrad as sg
from symgrad.compiler import schedule

F64 = "float64"


def _cnn():
    rng = np.random.default_rng(0)
    x = sg.placeholder("x", (None, 1, 12, 12), F64)
    y = sg.placeholder("y", (None, 10), F64)
    w1 = sg.Variable(rng.standard_normal((4, 1, 3, 3)) * 0.5, name="w1")
    w2 = sg.Variable(rng.standard_normal((6, 4, 3, 3)) * 0.3, name="w2")
    dense = sg.Variable(rng.standard_normal((6 * 3 * 3, 10)) * 0.2, name="dense")
    h = sg.max_pool2d(sg.relu(sg.conv2d(x, w1, padding=1)), 2)
    h = sg.max_pool2d(sg.relu(sg.conv2d(h, w2, padding=1)), 2)
    loss = sg.nn.softmax_cross_entropy(sg.reshape(h, (-1, 6 * 3 * 3)) @ dense, y)
    params = [w1, w2, dense]
    return x, y, params, loss


def _build(release_first, monkeypatch, compiled=True):
    """The SGD step (compiled, or None), its Program and its parameters."""
    monkeypatch.setattr(schedule, "RELEASE_FIRST", release_first)
    x, y, params, loss = _cnn()
    updates = [(p, p - 0.1 * sg.grad(loss, p)) for p in params]
    f = sg.function([x, y], loss, updates=updates, background=False) if compiled else None
    program = schedule.schedule([x, y], [loss], updates)
    return f, program, params


def _data(batch=5):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, 1, 12, 12))
    y = np.eye(10)[rng.integers(0, 10, batch)]
    return x, y


def _position(program, op, nth=0):
    return [k for k, s in enumerate(program.steps) if s.node.op == op][nth]


def test_the_second_filter_gradient_runs_before_the_first_layers_backward_pass(monkeypatch):
    _, program, _ = _build(True, monkeypatch, compiled=False)
    _, depth_first, _ = _build(False, monkeypatch, compiled=False)
    # the columns of the second layer: the second im2col; their last reader is the filter
    # gradient's product, which the depth-first walk runs after the first layer's col2im
    # (the first layer's input is a placeholder: its only col2im is the second layer's)
    for p, moved_first in ((program, True), (depth_first, False)):
        columns = p.steps[_position(p, "im2col", 1)].node
        readers = [k for k, s in enumerate(p.steps) if p.storage(columns) in
                   [p.storage(i) for i in s.node.inputs] and s.node.op == "matmul"]
        pools_back = [k for k, s in enumerate(p.steps) if s.node.op == "max_pool2d_grad"]
        assert len(readers) == 2 and len(pools_back) == 2
        assert (readers[-1] < pools_back[-1]) == moved_first
    moved = [d for d in program.decisions if d.pass_ == "release_first"]
    names = program.names
    columns = names[program.steps[_position(program, "im2col", 1)].node]
    assert any(f"last reader of {columns} " in d.detail for d in moved)


def test_both_orders_compute_the_same_step(monkeypatch):
    x, y = _data()
    results = []
    for release_first in (True, False):
        f, _, params = _build(release_first, monkeypatch)
        before = [p.value.copy() for p in params]
        loss = f(x, y)
        results.append([loss] + [p.value.copy() for p in params])
        for p, value in zip(params, before):
            p.value = value
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_peak_memory_does_not_grow_and_updates_come_last(monkeypatch):
    _, program, _ = _build(True, monkeypatch, compiled=False)
    _, depth_first, _ = _build(False, monkeypatch, compiled=False)
    assert program.peak_bytes(128) <= depth_first.peak_bytes(128)
    update_values = {value for _, value in program.updates}
    positions = [k for k, s in enumerate(program.steps) if s.node in update_values]
    others = [k for k, s in enumerate(program.steps) if s.node not in update_values
              and s.node.op != "constant"]
    assert min(positions) > max(others)


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_the_step_matches_the_interpreter(batch, monkeypatch):
    monkeypatch.setattr(schedule, "RELEASE_FIRST", True)
    x, y, params, loss = _cnn()
    grads = sg.gradients(loss, params)
    f = sg.function([x, y], [loss] + grads, background=False)
    xv, yv = _data(batch)
    for got, want in zip(f(xv, yv), sg.evaluate([loss] + grads, {x: xv, y: yv})):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13, equal_nan=True)


def test_the_order_is_a_topological_order_of_a_wide_graph():
    """Many readers of one value and many values of one reader: every step after its inputs,
    each value's last reader running as soon as it is ready."""
    x = sg.placeholder("x", (None, 50), F64)
    parts = [sg.exp(x * float(k)) for k in range(1, 8)]
    total = parts[0]
    for p in parts[1:]:
        total = total + sg.tanh(p) * p
    outs = [sg.sum(total), sg.sum(parts[3] * parts[5])]
    program = schedule.schedule([x], outs)
    seen = {node for node in program.inputs}
    for step in program.steps:
        assert all(i in seen or i.op in ("variable", "constant") for i in step.node.inputs)
        seen.add(step.node)
    f = sg.function([x], outs, background=False)
    xv = np.random.default_rng(3).standard_normal((4, 50)) * 0.1
    for got, want in zip(f(xv), sg.evaluate(outs, {x: xv})):
        np.testing.assert_allclose(got, want, rtol=1e-12)
