"""The `symgrad` command: `symgrad demo` and `symgrad train`.

In: command-line arguments. Out: a trained model, figures printed to the terminal (test
accuracy, compile time, time per compiled train step), and an output folder holding the
learning curves (curves.png, with the optional `plot` extra: matplotlib), the history
(history.json), the parameters (parameters.npz), the generated source of the train step
(train_step.py) and its gradient graph (gradient_graph.graphml, gradient_graph.txt, and
gradient_graph.svg when symgrad.viz can draw it).

    symgrad demo                     an MLP on the bundled 8×8 digits (≥ 97% test accuracy)
    symgrad train --dataset spiral --hidden 32,32 --activation tanh --optimizer adam
    symgrad train --dataset mnist:/path/to/mnist --hidden 256 --epochs 5
    symgrad train --dataset digits --batch-norm --dropout 0.2 --lr 3e-3 --epochs 40
    symgrad train --dataset digits --workers 2 --batch-size 64     data-parallel on Dask
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import networkx as nx
import numpy as np

from . import data, nn, optim
from .data.idx import IDXFormatError
from .core.ops import fmt
from .train import classifier, save_parameters

DATASETS = data.DATASETS


# ============================================================================ outputs

def write_graph(function, folder):
    """The compiled step's graph as GraphML (for Gephi, yEd, networkx) and as text, plus an
    SVG drawing when symgrad.viz is available. Returns the paths written."""
    graph = function.graph
    names = getattr(function.program, "names", {})
    order = list(nx.topological_sort(graph))
    label = {node: names.get(node) or f"n{node.serial}" for node in order}
    plain = nx.DiGraph()
    for node in order:
        plain.add_node(label[node], op=str(graph.nodes[node].get("op", node.op)),
                       shape=str(tuple(node.shape)), dtype=node.dtype, name=str(node.name or ""))
    for a, b, attrs in graph.edges(data=True):
        plain.add_edge(label[a], label[b], index=int(attrs.get("index", 0)))
    paths = [os.path.join(folder, "gradient_graph.graphml"), os.path.join(folder, "gradient_graph.txt")]
    nx.write_graphml(plain, paths[0])
    text = None
    try:
        from . import viz
        text = viz.debugformat(function)
        viz.graph(function).save(os.path.join(folder, "gradient_graph.svg"))
        paths.append(os.path.join(folder, "gradient_graph.svg"))
    except Exception:  # the drawing is a bonus: the GraphML and text dump are the record
        pass
    if text is None:
        lines = []
        for node in order:
            args = ", ".join(label[i] for i in node.inputs)
            shape = fmt(node.shape)
            lines.append(f"{label[node]:>8} = {node.op}({args})  {shape} {node.dtype}"
                         + (f"  '{node.name}'" if node.name else ""))
        text = "\n".join(lines)
    with open(paths[1], "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return paths


def write_curves(history, path):
    """Loss and accuracy per epoch as a PNG. Returns False (and says why) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping curves.png "
              "(pip install 'symgrad[plot]' to get it)")
        return False
    epochs = history["epoch"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for key, axis in (("loss", left), ("accuracy", right)):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history[prefix + key]
            if any(v is not None for v in values):
                axis.plot(epochs, values, style, label=(prefix or "train_") + key)
        axis.set_xlabel("epoch")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _write_outputs(trainer, history, folder, summary):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train_step.py"), "w", encoding="utf-8") as f:
        f.write(trainer.step_function.source)
    with open(os.path.join(folder, "history.json"), "w", encoding="utf-8") as f:
        json.dump({"summary": summary, "epochs": history.records}, f, indent=1)
    save_parameters(os.path.join(folder, "parameters.npz"), trainer.params)
    write_graph(trainer.step_function, folder)
    write_curves(history, os.path.join(folder, "curves.png"))


# ============================================================================ commands

def _fit_on_workers(trainer, train, val, args):
    """Data-parallel training on a LocalCluster of `args.workers` processes (Dask: the
    `distributed` extra), closed afterwards."""
    from . import distributed  # (here: Dask is optional, and loads in a second or two)
    client = distributed.local_client(args.workers)
    try:
        parallel = distributed.DataParallel(trainer, client, args.sync_every)
        return parallel.fit(train, val, epochs=args.epochs, batch_size=args.batch_size,
                            seed=args.seed, verbose=args.verbose)
    finally:
        client.close()
        client.cluster.close()


def run(args):
    """Train as `args` says; print and write the results. Returns the summary dict."""
    train, val, test = data.load_dataset(args.dataset, args.seed, args.augment)
    features = train[0].shape[1]
    classes = int(max(train[1].max(), val[1].max(), test[1].max())) + 1
    outputs = 1 if classes == 2 else classes  # two classes: one logit, sigmoid cross-entropy
    hidden = _hidden(args.hidden) if isinstance(args.hidden, str) else list(args.hidden)
    sizes = [features] + hidden + [outputs]
    if getattr(args, "model", "mlp") == "cnn":
        side = int(round(np.sqrt(features)))
        if side * side != features or features < 16:
            raise SystemExit(f"symgrad train: --model cnn needs square images (digits, mnist); "
                             f"{args.dataset} has {features} features per example")
        model = nn.CNN(side, outputs, hidden=hidden[0] if hidden else 64, seed=args.seed)
        description = f"CNN {side}×{side} conv 16, 32 -> {hidden[0] if hidden else 64} -> {outputs}"
    else:
        batch_norm, dropout = getattr(args, "batch_norm", False), getattr(args, "dropout", 0.0)
        model = nn.MLP(sizes, activation=args.activation, seed=args.seed, rank=args.rank,
                       batch_norm=batch_norm, dropout=dropout)
        extras = (["batch norm"] if batch_norm else []) + ([f"dropout {dropout:g}"] if dropout else [])
        description = f"MLP {'-'.join(map(str, sizes))} ({', '.join([args.activation] + extras)})"
    schedules = {"constant": None,
                 "halving": optim.StepHalving(args.lr, patience=2),
                 "inverse": optim.InverseTime(args.lr * 10, 10),
                 "cosine": optim.CosineDecay(args.lr, args.epochs),
                 "warmup-cosine": optim.LinearWarmup(
                     args.lr, min(5, args.epochs), optim.CosineDecay(args.lr, max(args.epochs - 5, 1)))}
    optimizer = optim.get(args.optimizer, args.lr, clip_norm=args.clip_norm)
    trainer = classifier(model, features, optimizer,
                         weight_decay=args.weight_decay, schedule=schedules[args.schedule])
    print(f"{args.dataset}: {len(train[0])} train, {len(val[0])} validation, {len(test[0])} test "
          f"examples; {description}, {args.optimizer} "
          f"lr {args.lr:g} ({args.schedule}), batch {args.batch_size}")
    if args.resume and not os.path.exists(args.checkpoint):
        print(f"no checkpoint at {args.checkpoint} yet: starting afresh")
    trainer.compile()
    print(f"compiled the train step and the evaluation function in {trainer.compile_seconds:.2f} s")
    started = time.perf_counter()
    workers = getattr(args, "workers", None)
    if workers:
        history = _fit_on_workers(trainer, train, val, args)
    else:
        history = trainer.fit(train, val, epochs=args.epochs, batch_size=args.batch_size,
                              seed=args.seed, patience=args.patience, checkpoint=args.checkpoint,
                              resume=args.resume, progress=not args.no_progress,
                              verbose=args.verbose)
    seconds = time.perf_counter() - started
    test_loss, test_accuracy = trainer.evaluate(*test)
    steps = sum(history["steps"])
    step_seconds = sum(r["step_seconds"] * r["steps"] for r in history.records) / max(steps, 1)
    summary = {"dataset": args.dataset, "sizes": sizes, "epochs": len(history), "steps": steps,
               "test_loss": test_loss, "test_accuracy": test_accuracy,
               "compile_seconds": trainer.compile_seconds, "train_seconds": seconds,
               "step_seconds": step_seconds, "interrupted": history.interrupted}
    print(f"test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) after {len(history)} epochs")
    print(f"time per train step {step_seconds * 1e6:.1f} µs ({steps} steps, {seconds:.2f} s of training "
          f"with validation); compile time {trainer.compile_seconds:.2f} s")
    if args.out:
        _write_outputs(trainer, history, args.out, summary)
        print(f"wrote curves, history, parameters, train_step.py and the gradient graph to {args.out}/")
    return summary


# ---------------------------------------------------------------- argument checks
# Each raises argparse.ArgumentTypeError, which argparse turns into one line naming the flag,
# "symgrad train: error: argument --hidden: ...", and exit status 2.

def _whole(low, what="a whole number"):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} >= {low}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} >= {low}")
        return value
    parse.__name__ = "whole number"
    return parse


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate in [0, 1)")
    return value


def _real(low, inclusive):
    bound = f">= {low:g}" if inclusive else f"> {low:g}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number {bound}")
        return value
    parse.__name__ = "number"
    return parse


def _hidden(text):
    """'256,128' -> [256, 128]; '' (no hidden layer: a linear classifier) -> []."""
    if text.strip() == "":
        return []
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: each hidden layer size must be a whole number >= 1, separated by "
                f"commas (e.g. 256,128; '' for no hidden layer), got {part!r}")
        sizes.append(int(part))
    return sizes


def _output_folder(text):
    if text and os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder ('' for no outputs)")
    return text


def _checkpoint_path(text):
    if not text:
        raise argparse.ArgumentTypeError("give a file path for the .npz checkpoint, e.g. run.npz")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file path, e.g. "
                                         f"{os.path.join(text, 'run.npz')}")
    return text


class _DefaultsShown(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default after its help, except where the help says it (a default that
    depends on the dataset, whose flag defaults to None)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def _parser():
    parser = argparse.ArgumentParser(prog="symgrad", description="symgrad: train models with "
                                     "compiled symbolic train steps")
    sub = parser.add_subparsers(dest="command", required=True)
    formatter = _DefaultsShown
    demo = sub.add_parser("demo", help="train an MLP on the bundled 8×8 digits and report",
                          formatter_class=formatter)
    train = sub.add_parser("train", help="train an MLP classifier on a dataset",
                           formatter_class=formatter)
    for p, defaults in ((demo, DEMO), (train, TRAIN)):
        p.add_argument("--out", default=defaults["out"], type=_output_folder,
                       help="output folder ('' for none)")
        p.add_argument("--epochs", type=_whole(1), default=defaults["epochs"],
                       help="number of passes over the training set (>= 1)" +
                            ("" if defaults["epochs"] else f" {_by_kind('epochs')}"))
        p.add_argument("--seed", type=_whole(0), default=0,
                       help="seed of the data split, initialisation and shuffles (>= 0)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--verbose", action="store_true", default=defaults["verbose"],
                       help="a line per epoch")
    train.add_argument("--dataset", default="digits",
                       help=f"one of {', '.join(DATASETS)} (or a folder of MNIST IDX files)")
    train.add_argument("--model", default="mlp", choices=["mlp", "cnn"],
                       help="an MLP, or a CNN for square images (conv 16 and 32 with 2×2 max "
                            "pooling, then --hidden's first size as its dense layer)")
    train.add_argument("--hidden", default=None, type=_hidden,
                       help="hidden layer sizes (whole numbers >= 1), e.g. 256,128; '' for none "
                            f"{_by_kind('hidden')}")
    train.add_argument("--activation", default="relu",
                       choices=sorted(nn.ACTIVATIONS) + list(nn.PARAMETRIC_ACTIVATIONS),
                       help="hidden-layer activation")
    train.add_argument("--optimizer", default="adam", choices=list(optim.OPTIMIZERS),
                       help="update rule")
    train.add_argument("--lr", type=_real(0.0, inclusive=False), default=None,
                       help=f"learning rate (> 0) {_by_kind('lr')}")
    train.add_argument("--schedule", default="constant",
                       choices=("constant", "halving", "inverse", "cosine", "warmup-cosine"),
                       help="learning-rate schedule per epoch: halving when the validation loss "
                            "stalls, lr·10/(10 + epoch), a cosine to 0 over the epochs, or 5 "
                            "epochs of linear warm-up before the cosine")
    train.add_argument("--clip-norm", type=_real(0.0, inclusive=False), default=None,
                       help="clip the gradients' global norm to this (> 0), inside the step")
    train.add_argument("--batch-size", type=_whole(1), default=32, help="examples per step (>= 1)")
    train.add_argument("--weight-decay", type=_real(0.0, inclusive=True), default=0.0,
                       help="L2 on weights, not biases (>= 0)")
    train.add_argument("--dropout", type=_fraction, default=0.0,
                       help="drop this fraction of each hidden layer's units in training "
                            "(0 <= rate < 1; MLP)")
    train.add_argument("--batch-norm", action="store_true",
                       help="batch normalisation before each hidden activation (MLP)")
    train.add_argument("--workers", type=_whole(1), default=None,
                       help="train data-parallel on this many local Dask worker processes "
                            "(the `distributed` extra); --batch-size is then the global batch")
    train.add_argument("--sync-every", type=_whole(1), default=1,
                       help="with --workers: average the workers' models every this many "
                            "local steps (1: average gradients every step)")
    train.add_argument("--rank", type=_whole(1), default=None,
                       help="low-rank hidden layers W = U V of this rank (>= 1)")
    train.add_argument("--patience", type=_whole(1), default=None,
                       help="early stopping patience in epochs (>= 1)")
    train.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                       help=f"add one-pixel shifted image copies {_by_kind('augment')}")
    train.add_argument("--checkpoint", default=None, type=_checkpoint_path,
                       help=".npz written each epoch and on Ctrl-C; an existing one is only "
                            "continued with --resume, never overwritten")
    train.add_argument("--resume", action="store_true",
                       help="continue from --checkpoint (a fresh start if it does not exist yet)")
    parser.subparsers = {"demo": demo, "train": train}
    return parser


def _check(parser, args):
    """Checks between flags, and against files that exist: one `error: argument ...` line and
    exit status 2 (SystemExit) when they fail."""
    if args.command != "train":
        return
    train = parser.subparsers["train"]
    if args.resume and not args.checkpoint:
        train.error("argument --resume: needs --checkpoint PATH (the .npz file to continue from)")
    if args.workers and (args.patience or args.checkpoint or args.batch_norm):
        train.error("argument --workers: --patience, --checkpoint and --batch-norm work in one "
                    "process; leave them out with --workers")
    if args.model == "cnn" and (args.dropout or args.batch_norm):
        train.error("argument --dropout/--batch-norm: these shape the MLP's hidden layers; "
                    "leave them out with --model cnn")
    if args.checkpoint and not args.resume and os.path.exists(args.checkpoint):
        train.error(f"argument --checkpoint: {args.checkpoint!r} already exists; add --resume to "
                    f"continue from it, or remove it or give another path to start afresh")


DEMO = {"out": "symgrad-demo", "epochs": 40, "verbose": False}
TRAIN = {"out": "", "epochs": None, "verbose": True}

# What `symgrad train` uses for the flags a user leaves out, by kind of dataset (measured on
# seeds 0-2: 97.2-97.8 % test accuracy on the digits, 97-100 % on each 2-D set).
# - digits: 1,169 training images; 256 units and the one-pixel shifted copies (128 units
#   without them reached 94-98 %, seed 0 the hardest).
# - MNIST: 54,000 training images; 128 units, no copies (they would make an epoch 5 times
#   longer).
# - 2-D sets: 1,200 points, curled boundaries (the spiral); two layers of 32 at lr 1e-2 for
#   100 epochs (a second or two). 20 epochs at 1e-3 left the spiral at 60-70 %.
# A CNN's dense layer is 128 units and its images are not copied unless asked.
DEFAULTS_BY_KIND = {"digits": {"hidden": [256], "lr": 1e-3, "epochs": 20, "augment": True},
                    "MNIST": {"hidden": [128], "lr": 1e-3, "epochs": 20, "augment": False},
                    "2-D sets": {"hidden": [32, 32], "lr": 1e-2, "epochs": 100, "augment": False}}
CNN_DEFAULTS = {"hidden": [128], "augment": False}


def _by_kind(flag):
    """The help text's account of a flag's defaults, e.g. '(default: 0.001 for digits,
    0.001 for MNIST, 0.01 for 2-D sets)'."""
    def shown(value):
        return ",".join(map(str, value)) if isinstance(value, list) else \
            ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"
    parts = [f"{shown(defaults[flag])} for {kind}" for kind, defaults in DEFAULTS_BY_KIND.items()]
    if flag in CNN_DEFAULTS:
        parts.append(f"{shown(CNN_DEFAULTS[flag])} for --model cnn")
    return "(default: " + ", ".join(parts) + ")"


def fill_defaults(args):
    """Set the flags left out (None) to the defaults for args.dataset and args.model."""
    kind = "2-D sets" if args.dataset in data.PLAYGROUND else \
        "digits" if args.dataset == "digits" else "MNIST"
    defaults = dict(DEFAULTS_BY_KIND[kind])
    if getattr(args, "model", "mlp") == "cnn":
        defaults.update(CNN_DEFAULTS)
    for flag, value in defaults.items():
        if getattr(args, flag, None) is None:
            setattr(args, flag, value)
    return args


def _demo_args(args):
    """The demo's fixed recipe: 64-256-10 ReLU MLP, Adam 1e-3 halved when the validation loss
    stalls for 2 epochs, L2 1e-4 on the weights, batches of 32, the training images plus their
    one-pixel shifts, early stopping on the validation loss (patience 10)."""
    for key, value in dict(dataset="digits", hidden=[256], activation="relu", optimizer="adam",
                           lr=1e-3, schedule="halving", batch_size=32, weight_decay=1e-4,
                           rank=None, patience=10, augment=True, checkpoint=None,
                           resume=False, clip_norm=None, dropout=0.0, batch_norm=False,
                           workers=None, sync_every=1).items():
        setattr(args, key, value)
    return args


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    args = _demo_args(args) if args.command == "demo" else fill_defaults(args)
    try:
        summary = run(args)
    except (FileNotFoundError, IDXFormatError, ValueError) as error:
        print(f"symgrad: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder or file that cannot be written
        print(f"symgrad: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # outside the training loop (which handles its own): just stop
        print("\nsymgrad: interrupted", file=sys.stderr)
        return 130
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
