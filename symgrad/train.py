"""The training loop: epochs of one compiled train step each, validation, early stopping,
learning-rate schedules, progress, checkpoints that resume, and a clean Ctrl-C.

In: an input placeholder, a target placeholder, a scalar loss node, the parameter Variables, an
optimizer (optim.py), optionally the model's output node (logits) for accuracy; data as NumPy
`(x, y)` pairs (integer class labels are turned into one-hot rows here, range-checked).
Out: trained Variables (updated in place), a `History` of per-epoch figures, and `.npz`
checkpoints holding parameters, optimizer state, step count and history.

The train step is `sg.function([x, y], [loss, outputs], updates=optimizer updates + step
count)`: one compiled call per minibatch that writes every update at its end, all or nothing.
The step count lives in a Variable updated by that same call, so wherever a KeyboardInterrupt
lands, the parameters, the optimizer state and the count agree, and a resumed run replays the
same shuffled batches from exactly the next step.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import stat
import sys
import time
from typing import NamedTuple

import numpy as np

from . import nn, optim
from .data.batching import batch_indices, check_pair, one_hot
from .compiler.function import function
from .core.graph import Node, Variable, placeholder

__all__ = ["save_parameters", "load_parameters", "History", "Trainer", "Evaluation", "classifier"]


# ============================================================================ saving

def _by_name(variables, what):
    table = {}
    for v in variables:
        if not isinstance(v, Variable):
            raise TypeError(f"{what}: {v!r} is not a Variable")
        if v.name in table and table[v.name] is not v:
            raise ValueError(f"{what}: two Variables are named {v.name!r}; names key the saved "
                             f"file, so give each a unique name")
        table[v.name] = v
    return table


def _write_npz(path, arrays):
    """Write `arrays` to `path` atomically: into a temporary file beside it, flushed to disk,
    then renamed over it. An error or Ctrl-C at any point leaves the previous file intact and
    no temporary file behind."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a folder; cannot write a .npz file there")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise type(error)(f"{path}: cannot create its folder ({error.strerror or error})") from None
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else None
    tmp = None
    try:
        # O_EXCL with a random name: never another file's; mode 0o666 lets the umask decide,
        # as for a file opened normally (mkstemp would make it 0o600).
        for _ in range(100):
            candidate = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                             0o666)
            except FileExistsError:
                continue
            tmp = candidate
            break
        else:
            raise FileExistsError("no free temporary file name")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        raise type(error)(f"{path}: cannot write ({error.strerror or error}); "
                          f"any previous file there is unchanged") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _read_npz(path, what="parameter file"):
    """Every array of the .npz file at `path`, all read in full (so a truncated or corrupt
    file fails here, naming the path, rather than part-way through assigning)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path!r} is a folder, not a .npz file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(f"{path}: not a readable .npz {what} (truncated or corrupt? "
                         f"{type(error).__name__}: {error})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: holds a single array (.npy), not a .npz {what} of named arrays")
    arrays = {}
    with data:
        for key in data.files:
            try:
                arrays[key] = data[key]
            except Exception as error:
                raise ValueError(f"{path}: entry {key!r} cannot be read (truncated or corrupt file? "
                                 f"{type(error).__name__}: {error})") from None
    return arrays


def _short(names, limit=5):
    names = sorted(names)
    text = ", ".join(repr(n) for n in names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _problems(arrays, variables, prefix=""):
    """What stops `arrays` (keys prefix + name) from being loaded into `variables`: a list of
    phrases, empty when every name is there with the same shape and a dtype that converts
    exactly."""
    problems = []
    for name, v in variables.items():
        key = prefix + name
        if key not in arrays:
            problems.append(f"{key!r} is missing")
            continue
        value = arrays[key]
        if value.shape != v.shape:
            problems.append(f"{key!r} has shape {value.shape} in the file, {v.shape} in the model")
        elif value.dtype.kind not in "biuf" or not np.can_cast(value.dtype, v.dtype, "safe"):
            problems.append(f"{key!r} has dtype {value.dtype} in the file, {np.dtype(v.dtype)} in "
                            f"the model")
    return problems


def _assign(arrays, variables, path, prefix=""):
    """Check every variable against `arrays`, then assign them all (or none)."""
    problems = _problems(arrays, variables, prefix)
    if problems:
        raise ValueError(f"{path}: cannot load: " + "; ".join(problems))
    _assign_checked({name: arrays[prefix + name] for name in variables}, variables)


def _assign_checked(values, variables):
    """Assign checked `values` to `variables`; an error or Ctrl-C part-way puts back the old
    values, so it is all or nothing."""
    old = {name: v.value.copy() for name, v in variables.items()}
    try:
        for name, v in variables.items():
            v.value = values[name]
    except BaseException:
        for name, v in variables.items():
            v.value = old[name]
        raise


def save_parameters(path, variables):
    """Save Variables to `path` (.npz), keyed by their names, atomically: an error or Ctrl-C
    while saving leaves any previous file at `path` intact."""
    table = _by_name(variables, "save_parameters")
    _write_npz(path, {name: v.value for name, v in table.items()})


def load_parameters(path, variables):
    """Load Variables saved by `save_parameters`, by name. The file must hold exactly these
    names, with the same shapes and dtypes that convert exactly; everything is checked before
    any value is assigned, so an error leaves the Variables untouched."""
    table = _by_name(variables, "load_parameters")
    arrays = _read_npz(path)
    problems = _problems(arrays, table)
    extra = set(arrays) - set(table)
    if extra:
        problems.append(f"the file also holds {_short(extra)}, which the model lacks (a file of "
                        f"another model?)")
    if problems:
        raise ValueError(f"{path}: cannot load: " + "; ".join(problems))
    _assign_checked(arrays, table)


# ============================================================================ history

class History:
    """Per-epoch figures of a run: `history["val_accuracy"]` is the list over epochs;
    `records` the dicts. `interrupted` and `stopped_early` say how the last fit ended."""

    def __init__(self, records=None):
        self.records = list(records or [])
        self.interrupted = False
        self.stopped_early = False

    def append(self, record):
        self.records.append(dict(record))

    def keys(self):
        keys = []
        for r in self.records:
            keys += [k for k in r if k not in keys]
        return keys

    def __getitem__(self, key):
        return [r.get(key) for r in self.records]

    def __len__(self):
        return len(self.records)

    @property
    def last(self):
        return self.records[-1] if self.records else {}

    def best_epoch(self, key="val_loss"):
        """Index of the epoch with the lowest `key` (falls back to "loss"), or None."""
        values = self[key] if key in self.keys() else self["loss"]
        values = [np.inf if v is None else v for v in values]
        return int(np.argmin(values)) if values else None

    def to_json(self):
        return json.dumps(self.records)

    @classmethod
    def from_json(cls, text):
        return cls(json.loads(text))

    def __repr__(self):
        if not self.records:
            return "History(no epochs)"
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.last.items() if isinstance(v, float))
        return f"History({len(self)} epochs; last: {last})"


# ============================================================================ progress

def _progress_bar(enabled, total, initial):
    """A tqdm bar, or None when disabled or tqdm (an optional extra) is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)


def _fmt(record):
    parts = [f"epoch {record['epoch']:3d}", f"loss {record['loss']:.4f}"]
    for key in ("accuracy", "val_loss", "val_accuracy"):
        if record.get(key) is not None:
            parts.append(f"{key} {record[key]:.4f}")
    parts.append(f"lr {record['learning_rate']:.3g}")
    return "  ".join(parts)


# ============================================================================ trainer

def _call(compiled, *args):
    """Call a compiled function, letting Ctrl-C through as KeyboardInterrupt. A SIGINT that
    arrives while the kernel runs is raised when Numba next runs Python code, which is while
    it boxes the results (after every update is written); Numba reports that as a SystemError
    caused by the KeyboardInterrupt. The step did happen, and the step count says so."""
    try:
        return compiled(*args)
    except SystemError as error:
        cause = error
        while cause is not None:
            if isinstance(cause, KeyboardInterrupt):
                raise KeyboardInterrupt("interrupted during a compiled call") from error
            cause = cause.__cause__ or cause.__context__
        raise


class Evaluation(NamedTuple):
    """What `Trainer.evaluate` returns: the mean loss, and the accuracy (None for a model
    without outputs to score). Unpacks as (loss, accuracy)."""
    loss: float
    accuracy: float | None


class Trainer:
    """Trains `params` to minimise `loss`, a scalar node of the placeholders `inputs` (x) and
    `targets` (y), with `optimizer` (default SGD 0.1) and an optional learning-rate `schedule`.
    `outputs` (logits) enable accuracy: argmax over classes, or logit > 0 with one column;
    pass `accuracy=False` for regression.

    `fit` runs epochs; `train_step`, `evaluate` and `predict` are the pieces. The compiled
    functions are `step_function` and `eval_function`; `compile_seconds` is their compile time.

    A model that computes differently in training (dropout, batch normalisation) gives its
    evaluation graph as `eval_loss` and `eval_outputs` (built with training=False; default:
    the training graph), the updates of its running statistics as `state_updates` (made by
    the train step with the optimizer's), and the Variables it keeps untrained as `state`
    (saved in checkpoints; default: those `state_updates` update)."""

    def __init__(self, inputs, targets, loss, params, optimizer=None, outputs=None, *,
                 schedule=None, accuracy=True, name="train step", eval_loss=None,
                 eval_outputs=None, state_updates=(), state=None):
        for node, what in ((inputs, "inputs"), (targets, "targets")):
            if not isinstance(node, Node) or node.op != "placeholder":
                raise TypeError(f"Trainer: {what} must be a placeholder, got {node!r}")
        if not isinstance(loss, Node) or loss.shape != ():
            raise ValueError(f"Trainer: loss must be a scalar node, got {loss!r}")
        self.inputs, self.targets, self.loss, self.outputs = inputs, targets, loss, outputs
        self.eval_loss = eval_loss if eval_loss is not None else loss
        self.eval_outputs = eval_outputs if eval_outputs is not None else outputs
        self.params = list(params)
        _by_name(self.params, "Trainer")
        self.state_updates = list(state_updates)
        self.state = list(state) if state is not None else [v for v, _ in self.state_updates]
        self.optimizer = optimizer or optim.SGD(0.1)
        self.schedule = optim.schedule(schedule)
        self.accuracy = bool(accuracy and outputs is not None)
        self.name = name
        self.steps_taken = Variable(np.float64(0), name="trainer/steps")
        self.history = History()
        self.compile_seconds = None
        self.step_function = self.eval_function = None
        self._best = None

    # ------------------------------------------------------------------ compiled pieces

    def compile(self):
        """Build and compile the train step and the evaluation function (once)."""
        if self.step_function is None:
            started = time.perf_counter()
            updates = self.optimizer.updates(self.loss, self.params) + self.state_updates
            updates.append((self.steps_taken, self.steps_taken + 1.0))
            outs = [self.loss] + ([self.outputs] if self.outputs is not None else [])
            eval_outs = [self.eval_loss] + ([self.eval_outputs] if self.outputs is not None else [])
            xy = [self.inputs, self.targets]
            self.step_function = function(xy, outs, updates=updates, name=self.name)
            self.eval_function = function(xy, eval_outs, name=f"{self.name} (evaluation)")
            self.step_function.wait()  # both compile at once; training starts compiled
            self.eval_function.wait()
            self.compile_seconds = time.perf_counter() - started
        return self

    def prepare(self, x, y, what="data"):
        """`x` and `y` as the arrays the compiled step takes, or a clear error: one row per
        example each, feature shapes matching the placeholders, class labels in range."""
        x, y = check_pair(x, y, what)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{what}: x must be numeric, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=self.inputs.dtype)
        if x.shape[1:] != tuple(self.inputs.shape[1:]):
            raise ValueError(f"{what}: each example of x must have shape {tuple(self.inputs.shape[1:])} "
                             f"(from placeholder '{self.inputs.name}'), got {x.shape[1:]}")
        target_shape = tuple(self.targets.shape[1:])
        if y.ndim == 1 and len(target_shape) == 1 and target_shape[0] > 1:
            try:
                y = one_hot(y, target_shape[0], self.targets.dtype)  # integer class labels
            except (ValueError, TypeError) as error:
                raise type(error)(f"{what}: {error}") from None
        elif y.ndim == 1 and target_shape == (1,):
            y = y.reshape(-1, 1)
        if self.accuracy and target_shape == (1,) and y.size and not (y.min() >= 0 and y.max() <= 1):
            bad = y[(y < 0) | (y > 1)].ravel()[0] if np.any((y < 0) | (y > 1)) else y.ravel()[0]
            raise ValueError(f"{what}: binary label {bad} is outside the class range 0..1")
        if y.dtype.kind not in "fiub":
            raise TypeError(f"{what}: y must be numeric, got dtype {y.dtype}")
        y = np.ascontiguousarray(y, dtype=self.targets.dtype)
        if y.shape[1:] != target_shape:
            raise ValueError(f"{what}: each target must have shape {target_shape} (from placeholder "
                             f"'{self.targets.name}'), got {y.shape[1:]}")
        return x, y

    def train_step(self, x, y):
        """One compiled step on one minibatch; returns (loss, outputs or None)."""
        self.compile()
        x, y = self.prepare(x, y, "train_step")
        result = _call(self.step_function, x, y)
        return float(result[0]), (result[1] if len(result) > 1 else None)

    def evaluate(self, x, y, batch_size=1024, prepared=False):
        """Evaluation(loss, accuracy): the mean loss and accuracy (None without outputs) over
        (x, y); parameters unchanged."""
        self.compile()
        if not prepared:
            x, y = self.prepare(x, y, "evaluate")
        total_loss, correct = 0.0, 0.0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            result = _call(self.eval_function, xb, yb)
            total_loss += float(result[0]) * len(xb)
            if self.accuracy:
                correct += nn.accuracy(result[1], yb) * len(xb)
        n = max(len(x), 1)
        return Evaluation(total_loss / n, correct / n if self.accuracy else None)

    def predict(self, x, batch_size=1024):
        """The model's outputs (logits) for x."""
        if self.outputs is None:
            raise ValueError("predict: this Trainer was built without outputs")
        self.compile()
        x = np.ascontiguousarray(x, dtype=self.inputs.dtype)
        # The evaluation function also computes the loss; zero targets make that harmless
        # and save compiling a third function.
        chunks = []
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            yb = np.zeros((len(xb),) + tuple(self.targets.shape[1:]), self.targets.dtype)
            chunks.append(_call(self.eval_function, xb, yb)[1])
        return np.concatenate(chunks)

    # ------------------------------------------------------------------ checkpoints

    def _state(self):
        return _by_name(self.params + self.state + self.optimizer.variables + [self.steps_taken],
                        "checkpoint")

    def save_checkpoint(self, path, meta=None):
        """Parameters, optimizer state, step count, history (and the best parameters so far,
        for early stopping) in one .npz file, written atomically: an error or Ctrl-C while
        saving leaves the previous checkpoint at `path` intact and loadable."""
        self.compile()  # the optimizer's state Variables exist once the step is built
        arrays = {name: v.value for name, v in self._state().items()}
        if self._best is not None:
            arrays.update({f"best:{name}": value for name, value in self._best.items()})
        arrays["__history__"] = np.array(self.history.to_json())
        arrays["__meta__"] = np.array(json.dumps(meta or {}))
        _write_npz(path, arrays)

    def load_checkpoint(self, path, expect=None):
        """Restore what `save_checkpoint` wrote. Everything is checked first (every array
        readable; names, shapes and dtypes those of this model and optimizer; the step count
        a whole number >= 0; the history and settings valid JSON; and, if `expect` gives run
        settings such as the batch size, the same settings), so an error leaves the
        Variables, the step count and the history exactly as they were. Returns the settings."""
        self.compile()
        arrays = _read_npz(path, "checkpoint")

        def fail(what):
            raise ValueError(f"{path}: cannot load the checkpoint: {what}")

        def text(key):
            if key not in arrays:
                fail(f"no {key} entry (not a symgrad checkpoint?)")
            value = arrays[key]
            if value.shape != () or value.dtype.kind != "U":
                fail(f"the {key} entry is not a JSON string (dtype {value.dtype}, shape {value.shape})")
            try:
                return json.loads(str(value))
            except ValueError as error:
                fail(f"the {key} entry is not valid JSON ({error})")

        meta = text("__meta__")
        if not isinstance(meta, dict):
            fail(f"the __meta__ entry is a {type(meta).__name__}, not a JSON object")
        records = text("__history__")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            fail("the __history__ entry is not a JSON list of per-epoch records")
        state = self._state()
        params = {p.name: p for p in self.params}
        best_keys = {k for k in arrays if k.startswith("best:")}
        problems = _problems(arrays, state)
        if best_keys:
            problems += _problems(arrays, params, prefix="best:")
        extra = (set(arrays) - set(state) - {"best:" + name for name in params}
                 - {"__meta__", "__history__"})
        if extra:
            problems.append(f"the file also holds {_short(extra)}, which this model lacks")
        if problems:
            fail("it does not match this model (a checkpoint of another model?): " + "; ".join(problems))
        steps = arrays[self.steps_taken.name]
        if not (np.isfinite(steps) and steps >= 0 and float(steps) == int(steps)):
            fail(f"the step count {steps!r} is not a whole number >= 0")
        for key, value in (expect or {}).items():
            if key in meta and meta[key] != value:
                raise ValueError(f"{path}: the checkpoint was made with {key}={meta[key]!r}, this run "
                                 f"has {key}={value!r}; resume with the same settings")
        history = History(records)
        best = {name: np.array(arrays["best:" + name], dtype=p.dtype) for name, p in params.items()} \
            if best_keys else None
        _assign_checked(arrays, state)
        self.history, self._best = history, best
        return meta

    # ------------------------------------------------------------------ the loop

    def fit(self, train, val=None, *, epochs=10, batch_size=32, seed=0, patience=None,
            restore_best=True, checkpoint=None, resume=False, progress=True, verbose=True,
            callback=None):
        """Train for `epochs` over shuffled minibatches of `train` = (x, y).

        val: (x, y) evaluated after every epoch. patience: stop after that many epochs without
        a better validation loss (training loss without val); with `restore_best`, the best
        epoch's parameters are restored at the end. checkpoint: a .npz path written after every
        epoch and on Ctrl-C; `resume=True` continues from it if it exists (without it, an
        existing file is refused, never overwritten). progress: a tqdm bar
        (if tqdm is installed); verbose: a line per epoch. callback(trainer, step) runs after
        every step. Ctrl-C stops between steps, with parameters intact; the History says
        `interrupted`. Returns the History (also `self.history`)."""
        if checkpoint and not resume and os.path.exists(checkpoint):
            raise FileExistsError(f"fit: the checkpoint {checkpoint!r} already exists; pass "
                                  f"resume=True to continue from it, or remove it or give "
                                  f"another path to start afresh")
        x, y = self.prepare(*train, what="train")
        if val is not None:
            val = self.prepare(*val, what="val")
        if len(x) == 0:
            raise ValueError("train: no examples")
        self.compile()
        steps_per_epoch = math.ceil(len(x) / batch_size)
        meta = {"batch_size": int(batch_size), "train_examples": len(x), "seed": int(seed)}
        if resume and checkpoint and os.path.exists(checkpoint):
            self.load_checkpoint(checkpoint, expect=meta)
        history = self.history
        history.interrupted = history.stopped_early = False
        done = int(self.steps_taken.value)
        start_epoch, skip = divmod(done, steps_per_epoch)
        monitor = "val_loss" if val is not None else "loss"
        bar = _progress_bar(progress, epochs * steps_per_epoch, min(done, epochs * steps_per_epoch))
        verbose = verbose or (progress and bar is None)  # no tqdm: a line per epoch instead
        say = (bar.write if bar is not None else print) if verbose else (lambda text: None)
        try:
            for epoch in range(start_epoch, epochs):
                if self.schedule is not None:
                    self.optimizer.learning_rate.value = self.schedule(epoch, history)
                record = self._run_epoch(x, y, batch_size, seed, epoch, skip, bar, callback)
                skip = 0
                if val is not None:
                    record["val_loss"], record["val_accuracy"] = self.evaluate(*val, prepared=True)
                history.append(record)
                say(_fmt(record))
                if bar is not None:
                    bar.set_postfix(self._postfix(record), refresh=True)
                best = history.best_epoch(monitor)
                if best == len(history) - 1:
                    self._best = {p.name: p.value.copy() for p in self.params}
                if checkpoint:
                    self.save_checkpoint(checkpoint, meta)
                if patience is not None and len(history) - 1 - best >= patience:
                    history.stopped_early = True
                    say(f"early stop: no better {monitor} for {patience} epochs "
                        f"(best at epoch {best + 1})")
                    break
        except KeyboardInterrupt:
            history.interrupted = True
            if checkpoint:
                self.save_checkpoint(checkpoint, meta)
            where = f"; resume from {checkpoint}" if checkpoint else ""
            if bar is not None:  # the interrupted step happened: the bar counts it too
                bar.update(int(self.steps_taken.value) - bar.n)
                bar.close()
                bar = None
            print(f"\ninterrupted after step {int(self.steps_taken.value)}: parameters are intact"
                  f"{where}", file=sys.stderr)
        finally:
            if bar is not None:
                bar.close()
        if restore_best and patience is not None and self._best is not None and not history.interrupted:
            for p in self.params:
                p.value = self._best[p.name]
        return history

    def _run_epoch(self, x, y, batch_size, seed, epoch, skip, bar, callback):
        batches = batch_indices(len(x), batch_size, seed, epoch)[skip:]
        started = time.perf_counter()
        total_loss, correct, seen, step_time = 0.0, 0.0, 0, 0.0
        rate = float(self.optimizer.learning_rate.value)
        for k, idx in enumerate(batches):
            xb, yb = x[idx], y[idx]
            t0 = time.perf_counter()
            result = _call(self.step_function, xb, yb)
            step_time += time.perf_counter() - t0
            total_loss += float(result[0]) * len(idx)
            if self.accuracy:
                correct += nn.accuracy(result[1], yb) * len(idx)
            seen += len(idx)
            if callback is not None:
                callback(self, int(self.steps_taken.value))
            if bar is not None:
                bar.update(1)
                if k % 20 == 0:
                    running = {"loss": total_loss / seen, "accuracy": correct / seen if self.accuracy else None}
                    bar.set_postfix(self._postfix(running), refresh=False)
        return {"epoch": epoch + 1,
                "loss": total_loss / max(seen, 1),
                "accuracy": correct / max(seen, 1) if self.accuracy else None,
                "learning_rate": rate,
                "seconds": time.perf_counter() - started,
                "step_seconds": step_time / max(len(batches), 1),
                "steps": len(batches)}

    def _postfix(self, record):
        out = {"loss": f"{record['loss']:.4f}"}
        if record.get("accuracy") is not None:
            out["acc"] = f"{record['accuracy']:.3f}"
        if record.get("val_accuracy") is not None:
            out["val_acc"] = f"{record['val_accuracy']:.3f}"
        return out


def classifier(model, num_features, optimizer=None, weight_decay=0.0, schedule=None,
               dtype="float32", name="train step"):
    """A Trainer for a classifier `model` (a layer: logits = model(x)). With one output column
    the loss is sigmoid binary cross-entropy, otherwise softmax cross-entropy whose label rows
    are declared to sum to 1 (checked on every call; the gradient is then softmax - labels);
    integer labels are one-hot encoded by the Trainer. `weight_decay` adds L2 on the weights
    (not biases). A `mode_dependent` model (dropout, batch normalisation) is built twice: with
    training=True for the train step, training=False for evaluation."""
    x = placeholder("x", (None, num_features), dtype)
    mode_dependent = getattr(model, "mode_dependent", False)
    logits = model(x, training=True) if mode_dependent else model(x)
    classes = logits.shape[-1]
    y = placeholder("y", (None, classes), dtype)

    def loss_of(outputs):
        if classes == 1:
            loss = nn.sigmoid_binary_cross_entropy(outputs, y)
        else:
            loss = nn.softmax_cross_entropy(outputs, y, labels_sum_to_one=True)
        return loss + nn.l2_weight_decay(model, weight_decay) if weight_decay else loss

    evaluation = {}
    if mode_dependent:
        eval_logits = model(x, training=False)
        evaluation = dict(eval_loss=loss_of(eval_logits), eval_outputs=eval_logits)
    return Trainer(x, y, loss_of(logits), model.params, optimizer, logits, schedule=schedule,
                   name=name, state_updates=getattr(model, "state_updates", ()),
                   state=getattr(model, "state", None), **evaluation)
