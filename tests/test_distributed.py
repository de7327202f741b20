"""symgrad.distributed on a LocalCluster (2 worker processes, 1 thread each, 127.0.0.1):
compiled functions that travel, synchronous data-parallel steps equal to one process's step on
the whole batch, local SGD, Hessian-free over sharded data equal to one process's, sweeps, and
a worker lost mid-training."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")  # the `distributed` extra (make test has it)

import symgrad as sg  # noqa: E402
from symgrad import data, nn, optim  # noqa: E402
from symgrad import distributed as sgd  # noqa: E402
from symgrad.optim_hf import HessianFree  # noqa: E402
from symgrad.train import classifier  # noqa: E402


@pytest.fixture(scope="module")
def client():
    client = sgd.local_client(2)
    yield client
    client.cluster.close()
    client.close()


@pytest.fixture(scope="module")
def digits():
    x, y = data.load_digits()
    return data.split(x[:480], y[:480], val=0.1, test=0.1, seed=0)


def _trainer(name, optimizer):
    return classifier(nn.MLP([64, 24, 10], seed=3, name=name), 64, optimizer)


def test_a_function_travels_as_its_source(client):
    x = sg.placeholder("x", (None, 3), "float32")
    w = sg.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), name="travel/W")
    f = sg.function([x], sg.tanh(x @ w), updates=[(w, w * 0.5)], background=False)
    state = f.__getstate__()
    assert "_runner" not in state and "_plans" not in state and state["source"] == f.source
    xv = np.ones((4, 3), np.float32)
    expected = f(xv)
    w.value = np.arange(6, dtype=np.float32).reshape(3, 2)
    here = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(here(xv), expected)   # a copy: its own Variables
    np.testing.assert_array_equal(w.value, np.arange(6).reshape(3, 2))
    remote = client.submit(lambda g, a: g(a), f, xv, pure=False).result()
    np.testing.assert_array_equal(remote, expected)


def test_two_workers_compiling_one_function_at_once(tmp_path):
    """Workers with an empty compile cache of their own: both set up (compiling the same
    warm-up step) and rebuild the same function at the same moment, racing on the same cache
    files; both must work, and agree with this process."""
    client = sgd.local_client(2, env={"SYMGRAD_CACHE_DIR": str(tmp_path)})
    try:
        x = sg.placeholder("x", (None, 4), "float32")
        f = sg.function([x], sg.softplus(x) * 3.0 + sg.sin(x), background=False)
        xv = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
        workers = sorted(client.scheduler_info()["workers"])
        futures = [client.submit(lambda g, a: g(a), f, xv, workers=[w], pure=False) for w in workers]
        for got in client.gather(futures):
            np.testing.assert_allclose(got, f(xv), rtol=1e-6)
        assert any(name.startswith("step_") for name in os.listdir(tmp_path))
    finally:
        client.close()
        client.cluster.close()


def test_a_synchronous_step_is_the_whole_batch_step(client, digits):
    """Each shard's batch is its whole half of 64 rows: the averaged Adam step must be the
    one-process Adam step on all 64 rows."""
    train = (digits[0][0][:64], digits[0][1][:64])
    one = _trainer("sync-one", optim.Adam(1e-2))
    many = _trainer("sync-many", optim.Adam(1e-2))
    parallel = sg.distributed.DataParallel(many, client).distribute(*train)
    assert [s for s in parallel.shards.sizes] == [32, 32]
    for _ in range(3):
        expected = one.train_step(*train)[0]
        got = parallel.step(epoch=0, index=0, batch_size=64)
        assert got == pytest.approx(expected, rel=1e-5)
    for a, b in zip(one.params, many.params):
        np.testing.assert_allclose(b.value, a.value, rtol=2e-4, atol=2e-6)


def test_data_parallel_fit_and_local_sgd_learn(client, digits):
    train, val, test = digits
    for sync_every in (1, 4):
        trainer = _trainer(f"fit-{sync_every}", optim.Adam(1e-2))
        history = sgd.DataParallel(trainer, client, sync_every).fit(train, val, epochs=6,
                                                                     batch_size=32)
        assert history.last["workers"] == 2 and history["loss"][-1] < history["loss"][0]
        assert trainer.evaluate(*test).accuracy > 0.8, sync_every


def test_sharded_hessian_free_is_the_whole_data_step(client, digits):
    (x, y), _, _ = digits
    y1 = nn.one_hot(y, 10)

    def problem(name):
        xs = sg.placeholder("x", (None, 64), "float32")
        ys = sg.placeholder("y", (None, 10), "float32")
        model = nn.MLP([64, 16, 10], activation="tanh", seed=1, name=name)
        z = model(xs)
        loss = nn.softmax_cross_entropy(z, ys, labels_sum_to_one=True)
        return HessianFree(loss, model.params, [xs, ys], curvature="gauss_newton", z=z,
                           loss_kind="softmax_cross_entropy", cg_max_iter=10), model

    one, model_one = problem("hf-one")
    many, model_many = problem("hf-many")
    sharded = sgd.ShardedHessianFree(many, x, y1, client)
    for _ in range(2):
        expected = one.step(x, y1)
        got = sharded.step()
        assert got == pytest.approx(expected, rel=1e-4)
        assert sharded.last.cg_iterations == one.last.cg_iterations
    for a, b in zip(model_one.params, model_many.params):
        np.testing.assert_allclose(b.value, a.value, rtol=1e-3, atol=1e-4)


def test_a_sweep_is_a_table(client):
    rows = sgd.sweep(sgd.train_classifier, [dict(dataset="circle", hidden=(8,), lr=lr, epochs=3)
                                            for lr in (1e-2, 1e-1)], client)
    assert [r["lr"] for r in rows] == [1e-2, 1e-1]
    assert all(0 <= r["test_accuracy"] <= 1 and r["seconds"] > 0 for r in rows)
    assert "test_accuracy" in sgd.table(rows).splitlines()[0]
    failed = sgd.sweep(sgd.train_classifier, [dict(dataset="no-such-set")], client)
    assert "unknown dataset" in failed[0]["error"]


def test_symgrad_train_with_workers(capsys):
    from symgrad import cli
    assert cli.main(["train", "--dataset", "circle", "--hidden", "8", "--epochs", "3",
                     "--workers", "2", "--batch-size", "32", "--lr", "0.05", "--out", "",
                     "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["train", "--workers", "2", "--patience", "3"])


def test_a_lost_worker_loses_no_update(client, digits):
    """A worker killed between steps: the next step finds its shard gone, rebuilds the shards
    over the workers there are, and gives the step one process would."""
    train = (digits[0][0][:64], digits[0][1][:64])
    one = _trainer("lost-one", optim.SGD(0.1))
    many = _trainer("lost-many", optim.SGD(0.1))
    parallel = sg.distributed.DataParallel(many, client).distribute(*train)
    one.train_step(*train)
    parallel.step(0, 0, 64)
    victim = sorted(client.scheduler_info()["workers"])[0]
    with pytest.raises(Exception):  # noqa: B017 - the worker dies under the call
        client.run(os._exit, 1, workers=[victim])
    expected = one.train_step(*train)[0]
    got = parallel.step(0, 0, 64)
    assert got == pytest.approx(expected, rel=1e-5)
    for a, b in zip(one.params, many.params):
        np.testing.assert_allclose(b.value, a.value, rtol=2e-4, atol=2e-6)
    client.wait_for_workers(2, timeout=60)  # (the nanny restarts it, for the tests after)
