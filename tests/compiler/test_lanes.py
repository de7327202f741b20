"""Lanes (compiler/lanes.py): a call's batch split between the cores where the graph proves
each example's values are its own until they are summed. The cut: what splits (MLP and CNN
train steps, embeddings, per-example outputs) and what does not (batch statistics, a max or
softmax over the batch, random draws, a batch of fixed size). The calls: lanes give the
whole program's outputs and updates (float64, to rounding), at odd batch sizes and in three
lanes; a check failing in one lane raises the whole call's error and changes no Variable;
BLAS threads are restored; too little work, lanes=False and SYMGRAD_LANES=0 run the whole. Each
test that calls in lanes runs twice: lanes started from native code, and from Python threads."""
import os
import pickle

import numba
import numpy as np
import pytest

import symgrad as sg
from symgrad.compiler import function as function_module
from symgrad.compiler.lanes import split
from symgrad.core.graph import topological_order
from symgrad.core.random import Generator
from symgrad.runtime import cores, native

F64 = "float64"


@pytest.fixture(params=["native threads", "python threads"])
def lanes_on(monkeypatch, request):
    """Every call with two rows or more runs in lanes: no work threshold, 2 cores (3 where
    a test asks), the lanes run by native.run_lanes in Numba's pool or, where Numba's
    threading layer is not thread-safe, by Python threads."""
    monkeypatch.setattr(function_module, "LANES_MIN_BYTES", 0)
    monkeypatch.setattr(function_module, "LANES_WORK_PER_SUM", 0)
    monkeypatch.delenv("SYMGRAD_LANES", raising=False)
    count = {"lanes": 2}
    if request.param == "native threads" and not native.parallel_lanes():
        pytest.skip("Numba's threading layer here is not thread-safe (no tbb or OpenMP)")
    native_threads = request.param == "native threads"
    monkeypatch.setattr(native, "parallel_lanes", lambda: count["lanes"] if native_threads else 0)
    monkeypatch.setattr(cores, "cores", lambda: count["lanes"])
    monkeypatch.setattr(cores, "blas_threads", lambda: count["lanes"])
    # (restoring the patched count would leave NumPy's BLAS on that many threads)
    monkeypatch.setattr(cores, "set_blas_threads", lambda threads: None)
    return count


def _mlp(rng, labels_sum_to_one=False):
    x = sg.placeholder("x", (None, 5), F64)
    y = sg.placeholder("y", (None, 3), F64)
    w1 = sg.Variable(rng.standard_normal((5, 4)), name="w1")
    b1 = sg.Variable(np.zeros(4), name="b1")
    w2 = sg.Variable(rng.standard_normal((4, 3)), name="w2")
    logits = sg.tanh(x @ w1 + b1) @ w2
    loss = sg.nn.softmax_cross_entropy(logits, y, labels_sum_to_one=labels_sum_to_one)
    return x, y, [w1, b1, w2], logits, loss


def _cnn(rng):
    x = sg.placeholder("x", (None, 1, 8, 8), F64)
    y = sg.placeholder("y", (None, 3), F64)
    w = sg.Variable(rng.standard_normal((2, 1, 3, 3)) * 0.5, name="w")
    b = sg.Variable(np.zeros(2), name="b")
    dense = sg.Variable(rng.standard_normal((2 * 4 * 4, 3)) * 0.3, name="dense")
    h = sg.relu(sg.conv2d(x, w, padding=1) + sg.reshape(b, (1, 2, 1, 1)))
    h = sg.avg_pool2d(sg.max_pool2d(h, 2, stride=1, padding=1), 2, stride=2)
    logits = sg.reshape(h, (-1, 2 * 4 * 4)) @ dense
    return x, y, [w, b, dense], logits, sg.nn.softmax_cross_entropy(logits, y)


def _train_step(model, lanes=True):
    x, y, params, logits, loss = model
    updates = [(p, p - 0.1 * sg.grad(loss, p)) for p in params]
    return sg.function([x, y], [loss, logits], updates=updates, background=False, lanes=lanes)


def _data(rng, rows, shape):
    x = rng.standard_normal((rows,) + shape)
    y = np.eye(3)[rng.integers(0, 3, rows)]
    return x, y


def _cut(inputs, outputs, updates=()):
    return split(inputs, outputs, list(updates))


# ---------------------------------------------------------------------------- the cut

def test_a_train_step_splits_into_sums_and_a_finish():
    x, y, params, logits, loss = _mlp(np.random.default_rng(0))
    updates = [(p, p - 0.1 * sg.grad(loss, p)) for p in params]
    cut, why_not = _cut([x, y], [loss, logits], updates)
    assert why_not is None
    lane_inputs, sources, lane_outputs = cut.lane
    assert sources[:2] == [("input", 0), ("input", 1)] and cut.split == [0, 1]
    # the lanes sum the loss and one gradient per parameter; the logits are per example
    assert cut.sums == 1 + len(params) and len(lane_outputs) == cut.sums + 1
    assert cut.assemble == [("finish", 0), ("lane", cut.sums, 0)]
    # the mean's count is the whole batch's, worked out per call and given to the lanes
    assert [n.op for n in cut.full] == ["size"]
    assert ("full", 0) in sources
    finish_inputs, finish_sources, finish_outputs, finish_updates = cut.finish
    assert len(finish_updates) == len(params) and len(finish_outputs) == 1
    assert "each lane returns 4 sums" in cut.describe()


def test_cnn_train_step_splits():
    x, y, params, logits, loss = _cnn(np.random.default_rng(0))
    cut, why_not = _cut([x, y], [loss], [(p, p - sg.grad(loss, p)) for p in params])
    assert why_not is None and cut.sums == 1 + len(params)


def test_an_embedding_gradient_is_a_sum():
    table = sg.Variable(np.random.default_rng(0).standard_normal((7, 3)), name="table")
    ids = sg.placeholder("ids", (None,), "int64")
    loss = sg.mean(sg.square(sg.take(table, ids, axis=0)))
    cut, why_not = _cut([ids], [loss], [(table, table - sg.grad(loss, table))])
    assert why_not is None
    assert "take_add" in {n.op for n in topological_order(cut.lane[2])}


@pytest.mark.parametrize("mixes", ["batch statistics", "max over the batch",
                                   "softmax over the batch", "dropout", "a fixed batch",
                                   "an outer product of examples"])
def test_what_mixes_examples_does_not_split(mixes):
    fixed = mixes == "a fixed batch"
    x = sg.placeholder("x", (8 if fixed else None, 4), F64)
    w = sg.Variable(np.ones((4, 4)), name="w")
    h = x @ w
    if mixes == "batch statistics":
        h = (h - sg.mean(h, axis=0)) @ w
    elif mixes == "max over the batch":
        h = sg.max(h, axis=0)
    elif mixes == "softmax over the batch":
        h = sg.softmax(h, axis=0)
    elif mixes == "dropout":
        h = h * Generator(0).bernoulli(h.shape, 0.5, F64)
    elif mixes == "an outer product of examples":
        h = h @ sg.transpose(h)
    loss = sg.sum(h)
    cut, why_not = _cut([x], [loss], [(w, w - sg.grad(loss, w))])
    assert cut is None
    assert ("no input has a batch" if fixed else "mixes the examples") in why_not


def test_a_value_of_the_batchs_size_without_examples_does_not_split():
    """x (None, 3) plus vᵀ, v a (3, None) input not cut: the graph assumes x's batch equals
    v's columns and pairs example i with column i, which a lane of part of x would not."""
    x = sg.placeholder("x", (None, 3), F64)
    v = sg.placeholder("v", (3, None), F64)
    cut, why_not = _cut([x, v], [x + sg.transpose(v)])
    assert cut is None and "add" in why_not


@pytest.mark.parametrize("reduce", [sg.max, sg.logsumexp, sg.softmax])
def test_a_value_over_the_batch_alone_does_not_split(reduce):
    x = sg.placeholder("x", (None, 3), F64)
    cut, why_not = _cut([x], [reduce(x, axis=0)])
    assert cut is None and "mixes" in why_not


def test_a_sum_spread_back_over_the_batch_does_not_split():
    """mean(x, 0) spread to x's shape: computed after the lanes, it would need the batch."""
    x = sg.placeholder("x", (None, 3), F64)
    cut, why_not = _cut([x], [sg.broadcast_to(sg.mean(x, axis=0), x.shape)])
    assert cut is None and "broadcast_to" in why_not


def test_an_update_per_example_does_not_split():
    x = sg.placeholder("x", (None, 2), F64)
    v = sg.Variable(np.zeros((4, 2)), name="v")
    cut, why_not = _cut([x], [], [(v, sg.reshape(x, (4, 2)))])
    assert cut is None and why_not


# ---------------------------------------------------------------------------- the calls

def _compare(model_of, shape, rows, lanes_on, count=2):
    """A train step with lanes and one without, from the same weights on the same data:
    the same losses, logits and updated parameters; and in lanes, per the call counts."""
    lanes_on["lanes"] = count
    results = []
    for lanes in (True, False):
        model = model_of(np.random.default_rng(1))
        step = _train_step(model, lanes=lanes)
        x, y = _data(np.random.default_rng(2), rows, shape)
        outputs = [step(x, y) for _ in range(2)]
        results.append((outputs, [p.value.copy() for p in model[2]], step))
    (got, got_params, step), (want, want_params, _) = results
    for a, b in zip(got + got_params, want + want_params):
        for u, v in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)
    return step


@pytest.mark.parametrize("rows", [2, 7, 64])
def test_mlp_in_lanes_equals_the_whole(rows, lanes_on):
    step = _compare(_mlp, (5,), rows, lanes_on)
    assert len(step._lane_twins) == 1  # (two lanes ran)


@pytest.mark.parametrize("rows,count", [(5, 2), (9, 3)])
def test_cnn_in_lanes_equals_the_whole(rows, count, lanes_on):
    step = _compare(_cnn, (1, 8, 8), rows, lanes_on, count)
    assert len(step._lane_twins) == count - 1


def test_lanes_equal_the_interpreter(lanes_on):
    x, y, params, logits, loss = _cnn(np.random.default_rng(3))
    grads = [sg.grad(loss, p) for p in params]
    f = sg.function([x, y], [loss, logits] + grads, background=False)
    xs, ys = _data(np.random.default_rng(4), 6, (1, 8, 8))
    got = f(xs, ys)
    assert f._lane_twins
    want = sg.evaluate([loss, logits] + grads, {x: xs, y: ys})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("rows", [0, 1])
def test_fewer_than_two_examples_run_the_whole(rows, lanes_on):
    model = _mlp(np.random.default_rng(0))
    step = _train_step(model)
    loss, logits = step(*_data(np.random.default_rng(0), rows, (5,)))
    assert logits.shape == (rows, 3) and step._lane_functions is None


def test_a_check_failing_in_one_lane_raises_and_changes_nothing(lanes_on):
    model = _mlp(np.random.default_rng(0), labels_sum_to_one=True)
    step = _train_step(model)
    x, y = _data(np.random.default_rng(0), 6, (5,))
    step(x, y)  # (lanes compiled)
    before = [p.value.copy() for p in model[2]]
    bad = y.copy()
    bad[5] = 0.5  # a label row of the second lane that does not sum to 1
    with pytest.raises(ValueError, match="do not sum to 1"):
        step(x, bad)
    for p, b in zip(model[2], before):
        np.testing.assert_array_equal(p.value, b)


def test_lanes_keep_to_python_threads_in_a_forked_child(monkeypatch):
    # GNU OpenMP aborts a child forked after its pool started, if the child launches it: a
    # process other than the one that launched run_lanes runs its lanes on Python threads
    monkeypatch.setattr(native, "_launched_in", os.getpid() + 1)
    assert native.parallel_lanes() == 0
    monkeypatch.setattr(native, "_launched_in", os.getpid())
    assert native.parallel_lanes() == (numba.get_num_threads() if native._thread_safe_layer() else 0)


def test_openmp_loads_with_a_short_spin_and_the_environment_is_restored(monkeypatch):
    # (OpenMP reads GOMP_SPINCOUNT when it loads; left set, it would change the OpenMP of a
    # library loaded later, PyTorch's say)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    with native._short_openmp_spin():
        assert os.environ["GOMP_SPINCOUNT"] == "3000"
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")  # the user's choice is kept
    with native._short_openmp_spin():
        assert "GOMP_SPINCOUNT" not in os.environ


def test_arguments_that_do_not_fit_are_refused_as_without_lanes(lanes_on):
    """x of 6 rows and y of 5: the whole call's error, not a lane's."""
    step = _train_step(_mlp(np.random.default_rng(0)))
    x, y = _data(np.random.default_rng(0), 6, (5,))
    step(x, y)
    with pytest.raises(ValueError, match=r"'x' \(6, 5\), 'y' \(5, 3\)\) do not fit the graph"):
        step(x, y[:5])


def test_blas_threads_are_restored_after_a_call_in_lanes(monkeypatch):
    monkeypatch.setattr(function_module, "LANES_MIN_BYTES", 0)
    monkeypatch.setattr(function_module, "LANES_WORK_PER_SUM", 0)
    monkeypatch.setattr(cores, "cores", lambda: 2)
    if cores.blas_threads() < 2:
        cores.set_blas_threads(2)
    before = cores.blas_threads()
    if before < 2:
        pytest.skip("NumPy's BLAS thread count cannot be set here")
    model = _mlp(np.random.default_rng(0))
    step = _train_step(model)
    step(*_data(np.random.default_rng(0), 8, (5,)))
    assert step._lane_twins and cores.blas_threads() == before


def test_lanes_off(lanes_on, monkeypatch):
    data = _data(np.random.default_rng(0), 8, (5,))
    step = _train_step(_mlp(np.random.default_rng(0)), lanes=False)
    step(*data)
    assert step._lane_functions is None
    assert not any(d.pass_ == "lanes" for d in step.decisions)
    monkeypatch.setenv("SYMGRAD_LANES", "0")
    step = _train_step(_mlp(np.random.default_rng(0)))
    step(*data)
    assert step._lane_functions is None


def test_too_little_work_runs_the_whole(monkeypatch):
    monkeypatch.setattr(cores, "cores", lambda: 2)
    monkeypatch.setattr(cores, "blas_threads", lambda: 2)
    step = _train_step(_mlp(np.random.default_rng(0)))
    step(*_data(np.random.default_rng(0), 64, (5,)))  # 64 examples of 5 features: bytes
    assert step._lane_functions is None


def test_the_decision_is_shown():
    step = _train_step(_mlp(np.random.default_rng(0)))
    assert any(str(d).startswith("lanes: ") and "sums over its examples" in str(d)
               for d in step.decisions)


def test_a_function_used_in_lanes_pickles(lanes_on):
    model = _mlp(np.random.default_rng(0))
    x, y, params, logits, loss = model
    f = sg.function([x, y], [loss] + [sg.grad(loss, p) for p in params], background=False)
    data = _data(np.random.default_rng(0), 6, (5,))
    want = f(*data)
    g = pickle.loads(pickle.dumps(f))
    for a, b in zip(g(*data), want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert g._lane_twins
