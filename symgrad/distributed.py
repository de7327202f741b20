"""Scale-out on Dask distributed: data-parallel training, curvature over sharded data, sweeps.

In: a `dask.distributed.Client` (or None: `local_client()`, a LocalCluster of worker processes
with one thread each on 127.0.0.1), a Trainer (or a Hessian-free optimizer), and NumPy data.
Out: the same Variables trained, in this process (the driver); Hessian-free steps over the
whole data set; tables of independent trainings.

Compiled functions travel as their generated source (a Function pickles so; the worker
rebuilds it through its compile cache). Each worker holds one `Shard`, a Dask actor: a slice of
the data, sent once, and a replica of the compiled functions and their Variables. The driver
keeps the true parameters and sends them with each request:

- synchronous data parallelism (`sync_every=1`): every shard returns the summed gradient of its
  part of the global batch; the driver adds them, divides by the batch and applies the
  optimizer's compiled update: the single-process step on the whole batch, for any optimizer.
- local SGD (`sync_every=k`): every shard takes k compiled train steps on its own minibatches
  (with its own optimizer state), then the driver averages the shards' parameters: one round
  trip per k steps, for steps too short to amortise one (benchmarks/distributed.py measures it).
- curvature (`ShardedHessianFree`): the Hessian or Gauss-Newton operator bound on every shard at
  the driver's parameters; a product is the size-weighted sum of the shards' products, so CG,
  Lanczos and Hessian-free work on the whole data set.
- sweeps (`sweep`): independent trainings mapped over the workers, gathered as a table.

A worker lost mid-step loses no update: the driver changes its parameters only after every
shard has answered. The step is tried again once on shards rebuilt over the workers left (the
data split again from the driver's copy); if that fails too, the error is raised with the
parameters as they were. BLAS runs one thread per worker (each worker is one core's work).
"""
from __future__ import annotations

import asyncio
import math
import os
import pickle
import time

import numpy as np
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from . import data, nn, optim
from .compiler.function import function
from .core import ops
from .core.autodiff import gradients
from .core.graph import Variable, placeholder, topological_order
from .core.ops import OPS
from .train import classifier

__all__ = ["local_client", "WorkerSetup", "Shard", "DataParallel", "ShardedHessianFree",
           "sweep", "train_classifier", "table", "SINGLE_THREAD"]

# What each worker process starts with: one BLAS thread (a worker is one core's work; two
# BLAS threads per worker on two cores would fight).
SINGLE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _warm():
    """Compile (or load from the cache) a small train step: Numba, the runtime kernels and the
    runner are ready before the first real request."""
    x = placeholder("x", (None, 3), "float32")
    w = Variable(np.zeros((3, 2), np.float32), name="warm/W")
    loss = ops.mean(ops.square(ops.tanh(x @ w)))
    step = function([x], loss, updates=[(w, w - 0.1 * gradients(loss, w))], background=False)
    step(np.ones((2, 3), np.float32))
    return True


class WorkerSetup(WorkerPlugin):
    """Run on every worker as it starts (and on those already running when registered):
    one BLAS thread, the compile cache warmed."""

    name = "symgrad-setup"

    def setup(self, worker):
        os.environ.update(SINGLE_THREAD)  # (libraries loaded later read these)
        _warm()


def local_client(workers=2, threads_per_worker=1, env=None, **options):
    """A Client of a LocalCluster on this machine: `workers` processes with one thread each,
    on 127.0.0.1, no dashboard, each set up by WorkerSetup; `env` adds to the workers'
    environment (SYMGRAD_CACHE_DIR, say)."""
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker,
                           processes=True, host="127.0.0.1", dashboard_address=None,
                           env={**SINGLE_THREAD, **(env or {})}, **options)
    client = Client(cluster)
    client.register_plugin(WorkerSetup())
    return client


# ============================================================================ the worker side

class Shard:
    """One worker's part (a Dask actor): a slice (x, y) of the data and a replica of `kit`,
    the pickled compiled functions and Variables (their parameters first, `params`). Requests
    carry the driver's parameter values; answers are sums over the shard's examples, which the
    driver adds up and divides by the total."""

    def __init__(self, kit, x, y, rank, total, seed=0):
        self.kit = pickle.loads(kit)
        self.params = self.kit["params"]
        self.x, self.y, self.rank, self.total, self.seed = x, y, rank, total, seed
        # each shard draws its own dropout masks: generators keyed by (seed, rank)
        for k, state in enumerate(self.kit.get("generators", ())):
            state.value = np.array([(state.value[0] * 1_000_003 + rank + 1) % 2 ** 62, 0], np.int64)
        self._order = None

    def size(self):
        return len(self.x)

    def _set(self, values):
        for p, v in zip(self.params, values):
            p.value = v

    def _batch(self, epoch, index, batch):
        """Minibatch `index` of `epoch`: this shard's examples shuffled by (seed, rank, epoch)."""
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng((self.seed, self.rank, epoch))
            self._order = (epoch, rng.permutation(len(self.x)))
        order = self._order[1]
        start = (index * batch) % max(len(order) - batch + 1, 1)
        chosen = order[start:start + batch]
        return self.x[chosen], self.y[chosen]

    def gradients(self, values, epoch, index, batch):
        """(examples, summed loss, summed gradients) of this shard's part of global minibatch
        `index` (of `batch` examples: this shard's share of them) at `values`."""
        self._set(values)
        xb, yb = self._batch(epoch, index, max(batch * len(self.x) // self.total, 1))
        loss, *grads = self.kit["gradient"](xb, yb)
        n = len(xb)
        return n, float(loss) * n, [g * n for g in grads]

    def local_steps(self, values, rate, epoch, first, count, batch):
        """`count` compiled train steps from `values` at learning rate `rate`: (examples, summed
        loss, the parameters after)."""
        self._set(values)
        self.kit["rate"].value = rate
        examples, total = 0, 0.0
        for index in range(first, first + count):
            xb, yb = self._batch(epoch, index, batch)
            total += float(self.kit["step"](xb, yb)[0]) * len(xb)
            examples += len(xb)
        return examples, total, [p.value.copy() for p in self.params]

    def bind(self, values):
        """Bind the curvature operator to the whole shard at `values`: (examples, its `also`
        values (loss, gradient) summed)."""
        self._set(values)
        self.bound = self.kit["curvature"].bind(self.x, self.y)
        n = len(self.x)
        return n, [np.asarray(v, np.float64) * n for v in self.bound.values]

    def product(self, vectors):
        return [np.asarray(p, np.float64) * len(self.x) for p in self.bound(vectors)]

    def loss(self, values):
        self._set(values)
        return float(self.kit["loss"](self.x, self.y)) * len(self.x)


# ============================================================================ the driver side

def _generator_states(functions):
    """The generator states the functions draw from (each shard reseeds its own)."""
    nodes = [n for f in functions for n in f.outputs + [v for _, v in f.updates]]
    return sorted({n.inputs[0] for n in topological_order(nodes) if OPS[n.op].draws},
                  key=lambda v: v.name)


class _Shards:
    """The shards of one job over the client's workers: built from `kit` (a dict of compiled
    functions and Variables, `params` first) and the data split evenly; `ask` sends one request
    to every shard, rebuilding the shards once over the workers left if one is lost."""

    def __init__(self, client, kit, x, y, seed=0):
        self.client, self.x, self.y, self.seed = client, x, y, seed
        self.payload = pickle.dumps(kit)
        self.params = kit["params"]
        self._build()

    def _build(self):
        workers = sorted(self.client.scheduler_info()["workers"])
        if not workers:
            raise RuntimeError("distributed: the cluster has no workers")
        parts = np.array_split(np.arange(len(self.x)), len(workers))
        # sent ahead, not inside the task: the model once to every worker, each slice to its own
        kit = self.client.scatter(self.payload, broadcast=True, hash=False)
        futures = []
        for rank, (address, p) in enumerate(zip(workers, parts)):
            x, y = self.client.scatter([self.x[p], self.y[p]], workers=[address], hash=False)
            futures.append(self.client.submit(Shard, kit, x, y, rank, len(self.x), self.seed,
                                              workers=[address], actor=True, pure=False,
                                              allow_other_workers=True))  # (if it is gone)
        self.actors = [f.result() for f in futures]
        self.sizes = [len(p) for p in parts]

    def values(self):
        return [p.value for p in self.params]

    def ask(self, method, *args):
        """[answer of each shard] to `method` called with `args`."""
        for attempt in (0, 1):
            try:
                pending = [getattr(actor, method)(*args) for actor in self.actors]
                if not all(hasattr(p, "_result") for p in pending):  # (another Dask's futures)
                    return [p.result() for p in pending]
                return self.client.sync(_all, pending)
            except Exception as error:  # noqa: BLE001 - a lost worker shows as many kinds
                if attempt or not _lost_worker(error):
                    raise
                self._build()  # the driver's parameters are unchanged: ask again


async def _all(pending):
    """The answers of actor calls, awaited together in the client's event loop (one hop from
    this thread, not one per shard)."""
    return list(await asyncio.gather(*(p._result() for p in pending)))


def _lost_worker(error):
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker
    return isinstance(error, (CommClosedError, KilledWorker, OSError, EOFError)) or \
        "worker" in str(error).lower() or "lost" in str(error).lower()


class DataParallel:
    """Trains `trainer` (symgrad.train.Trainer) on the client's workers (default: a
    local_client()). `sync_every=1`: synchronous gradient averaging, the same step as one
    process on the whole global batch; `sync_every=k > 1`: local SGD, parameters averaged every
    k local steps. The trainer's Variables (on this process) hold the result; `fit` fills the
    trainer's history, evaluating on this process.

    Models with running statistics (BatchNorm) are refused: each shard's statistics would
    differ, and averaging them is a choice this class does not make for you."""

    def __init__(self, trainer, client=None, sync_every=1):
        if trainer.state_updates:
            raise ValueError("DataParallel: the model updates running statistics (BatchNorm), "
                             "which would differ per shard; use LayerNorm, or train in one process")
        if not (isinstance(sync_every, int) and sync_every >= 1):
            raise ValueError(f"DataParallel: sync_every must be an int >= 1, got {sync_every!r}")
        self.trainer, self.sync_every = trainer, sync_every
        self.client = client if client is not None else local_client()
        trainer.compile()
        params = trainer.params
        self.gradient = function([trainer.inputs, trainer.targets],
                                 [trainer.loss] + gradients(trainer.loss, params),
                                 name="data-parallel gradient", background=False)
        # the driver's update from the summed gradients (divided by the batch here)
        self.grads = [placeholder(f"grad/{p.name}", p.shape, p.dtype) for p in params]
        updates = trainer.optimizer.updates(None, params, grads=self.grads)
        updates.append((trainer.steps_taken, trainer.steps_taken + 1.0))
        self.apply = function(self.grads, [], updates=updates, name="data-parallel update",
                              background=False)
        self.shards = None

    def _kit(self):
        step = self.trainer.step_function
        return {"params": self.trainer.params, "gradient": self.gradient, "step": step,
                "rate": self.trainer.optimizer.learning_rate,
                "generators": _generator_states([self.gradient, step])}

    def distribute(self, x, y, seed=0):
        """Send the data (prepared as the trainer does) and the model to the workers."""
        x, y = self.trainer.prepare(x, y, "DataParallel")
        self.shards = _Shards(self.client, self._kit(), x, y, seed)
        return self

    def step(self, epoch, index, batch_size):
        """One synchronous step on the global batch `batch_size` (split over the shards):
        returns its mean loss."""
        answers = self.shards.ask("gradients", self.shards.values(), epoch, index, batch_size)
        n = sum(a[0] for a in answers)
        summed = [sum(a[2][k] for a in answers) for k in range(len(self.grads))]
        self.apply(*[(g / n).astype(p.dtype) for g, p in zip(summed, self.trainer.params)])
        return sum(a[1] for a in answers) / n

    def local_round(self, epoch, first, count, batch_size):
        """`count` local steps on every shard from the driver's parameters, then their average
        (weighted by the examples each saw): returns the mean loss."""
        rate = self.trainer.optimizer.learning_rate.value
        answers = self.shards.ask("local_steps", self.shards.values(), rate, epoch, first, count,
                                  batch_size)
        n = sum(a[0] for a in answers)
        for k, p in enumerate(self.trainer.params):
            p.value = sum(a[2][k] * (a[0] / n) for a in answers)
        self.trainer.steps_taken.value = self.trainer.steps_taken.value + count
        return sum(a[1] for a in answers) / n

    def fit(self, train, val=None, *, epochs=10, batch_size=32, seed=0, verbose=False):
        """Epochs over the shards; after each, the validation loss and accuracy on this
        process. `batch_size` is the global batch of a synchronous step, and each shard's
        batch in local SGD. Returns the trainer's History."""
        trainer = self.trainer
        trainer.history.interrupted = trainer.history.stopped_early = False
        self.distribute(*train, seed=seed)
        shards = len(self.shards.actors)
        local = batch_size // shards if self.sync_every == 1 else batch_size
        steps = max(min(self.shards.sizes) // max(local, 1), 1)
        for epoch in range(epochs):
            rate = trainer.schedule(epoch, trainer.history) if trainer.schedule else None
            if rate is not None:
                trainer.optimizer.learning_rate.value = rate
            started, losses = time.perf_counter(), []
            if self.sync_every == 1:
                losses = [self.step(epoch, s, batch_size) for s in range(steps)]
            else:
                for first in range(0, steps, self.sync_every):
                    count = min(self.sync_every, steps - first)
                    losses += [self.local_round(epoch, first, count, batch_size)] * count
            seconds = time.perf_counter() - started
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "steps": steps,
                      "step_seconds": seconds / steps, "seconds": seconds, "workers": shards,
                      "lr": float(trainer.optimizer.learning_rate.value)}
            if val is not None:
                loss, accuracy = trainer.evaluate(*val)
                record.update(val_loss=loss, val_accuracy=accuracy)
            trainer.history.append(record)
            if verbose:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float))
                print(f"epoch {epoch + 1}: {shown}")
        return trainer.history


# ============================================================================ curvature

class _ShardedBound:
    """The curvature at the driver's parameters over every shard, as the solvers call it:
    `values` (loss, gradient) and products are size-weighted means of the shards'."""

    def __init__(self, shards):
        self.shards = shards
        answers = shards.ask("bind", shards.values())
        self.n = sum(a[0] for a in answers)
        self.values = [sum(a[1][k] for a in answers) / self.n for k in range(len(answers[0][1]))]
        self.like = [np.zeros(p.shape, p.dtype) for p in shards.params]

    def __call__(self, vectors):
        vectors = [np.asarray(v) for v in vectors]
        answers = self.shards.ask("product", vectors)
        return [sum(a[k] for a in answers) / self.n for k in range(len(vectors))]


class _ShardedOperator:
    def __init__(self, shards):
        self.shards = shards

    def bind(self, *data):
        return _ShardedBound(self.shards)


class _ShardedLoss:
    def __init__(self, shards):
        self.shards = shards

    def __call__(self, *data):
        answers = self.shards.ask("loss", self.shards.values())
        return sum(answers) / sum(self.shards.sizes)


class ShardedHessianFree:
    """A symgrad.optim_hf.HessianFree whose steps use the whole data set (x, y), split over
    the client's workers: its loss and curvature products are the shards' sums. `step()`
    takes no data (the data is on the workers) and updates `optimizer.params` here. The
    optimizer's data inputs must be the two placeholders (x, y)."""

    def __init__(self, optimizer, x, y, client=None):
        if len(optimizer.inputs) != 2:
            raise ValueError("ShardedHessianFree: the optimizer's inputs must be (x, y)")
        self.optimizer = optimizer
        self.client = client if client is not None else local_client()
        curvature = optimizer.curvature
        curvature.staged  # noqa: B018 - compiled here, sent as source
        kit = {"params": optimizer.params, "curvature": curvature, "loss": optimizer.loss}
        self.shards = _Shards(self.client, kit, np.ascontiguousarray(x), np.ascontiguousarray(y))
        self._local = (optimizer.curvature, optimizer.loss)

    def step(self):
        """One Hessian-free step over all the data; returns the loss before it."""
        opt = self.optimizer
        opt.curvature, opt.loss = _ShardedOperator(self.shards), _ShardedLoss(self.shards)
        try:
            return opt.step()
        finally:
            opt.curvature, opt.loss = self._local

    @property
    def last(self):
        return self.optimizer.last


# ============================================================================ sweeps

def sweep(train, configs, client=None):
    """`train(**config)` for every config (a dict of keyword arguments), run on the workers in
    parallel; returns one row per config: the config's entries and the dict `train` returned
    (a failed run's row has `error`). `train` must be a function the workers can unpickle (a
    module's function, or one Dask's cloudpickle carries by value)."""
    client = client if client is not None else local_client()
    configs = [dict(c) for c in configs]
    futures = [client.submit(_run_config, train, c, pure=False) for c in configs]
    return [dict(config, **result) for config, result in zip(configs, client.gather(futures))]


def train_classifier(dataset="digits", hidden=(64,), activation="relu", optimizer="adam",
                     lr=1e-3, epochs=10, batch_size=32, seed=0, augment=False):
    """A sweep's usual job: an MLP classifier trained on a named data set (data.load_dataset)
    in one process; returns its test accuracy, final validation loss and seconds."""
    started = time.perf_counter()
    train, val, test = data.load_dataset(dataset, seed, augment)
    classes = int(max(train[1].max(), val[1].max(), test[1].max())) + 1
    sizes = [train[0].shape[1], *hidden, 1 if classes == 2 else classes]
    trainer = classifier(nn.MLP(sizes, activation=activation, seed=seed),
                         sizes[0], optim.get(optimizer, lr))
    history = trainer.fit(train, val, epochs=epochs, batch_size=batch_size, seed=seed,
                          progress=False, verbose=False)
    return {"test_accuracy": trainer.evaluate(*test).accuracy,
            "val_loss": history.last["val_loss"], "seconds": time.perf_counter() - started}


def _run_config(train, config):
    try:
        return dict(train(**config))
    except Exception as error:  # noqa: BLE001 - a row per config, failures included
        return {"error": f"{type(error).__name__}: {error}"}


def table(rows, columns=None):
    """Rows of a sweep as aligned text, one line each."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))

    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)
    widths = [max([len(c)] + [len(cell(r.get(c, ""))) for r in rows]) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(cell(r.get(c, "")).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)
