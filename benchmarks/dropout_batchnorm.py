"""Dropout + batch normalisation: what they cost per train step, and what they reach.

The MLP of examples/dropout_batchnorm_digits.py (64-256-10 ReLU, batch norm and dropout 0.2,
Adam) beside the same MLP without them, in one run: both compiled train steps timed on the
same minibatches of the digits, in alternating rounds (this machine is noisy), the ratio of
their medians printed. Then the model is trained as the example trains it and its test
accuracy printed. Each step is one compiled call (the Trainer's step_function), dropout mask
and running-statistics update included. Goal: ratio ≤ 1.3, accuracy ≥ 98 %.

Usage: python benchmarks/dropout_batchnorm.py [--rounds 15] [--batch 32]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import dropout_batchnorm_digits as example  # noqa: E402

from symgrad import data  # noqa: E402


def step_seconds(trainer, batches):
    """Median seconds of one compiled train step over `batches` (already prepared)."""
    times = []
    for xb, yb in batches:
        started = time.perf_counter()
        trainer.step_function(xb, yb)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    x, y = data.load_digits()
    train, val, test = data.split(x, y, val=0.15, test=0.2, seed=0)
    trainers = {"plain": example.model_and_trainer(batch_norm=False, dropout=0.0)[1],
                "bn+dropout": example.model_and_trainer()[1]}
    for trainer in trainers.values():
        trainer.compile()
    xs, ys = trainers["plain"].prepare(*train)
    batches = [(xs[k:k + args.batch], ys[k:k + args.batch])
               for k in range(0, len(xs) - args.batch + 1, args.batch)]
    medians = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            medians[name].append(step_seconds(trainer, batches))
    plain, both = np.median(medians["plain"]), np.median(medians["bn+dropout"])
    print(f"train step, batch {args.batch}, {len(batches)} steps × {args.rounds} alternating rounds:")
    print(f"  plain MLP            {1e6 * plain:7.1f} µs")
    print(f"  batch norm + dropout {1e6 * both:7.1f} µs   ratio {both / plain:.2f} (goal ≤ 1.3)")
    accuracy, trainer = example.main(verbose=False)
    print(f"test accuracy with batch norm + dropout: {accuracy:.4f} (goal ≥ 0.98), "
          f"{len(trainer.history)} epochs")


if __name__ == "__main__":
    main()
