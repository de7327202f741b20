"""Where a compiled train step's time goes: each step of its plan run alone (repeated, so
with its data in cache) beside the whole plan, for the models of cnn_train_step.py and
mlp_train_step.py. The whole plan taking longer than the sum of its steps is the memory
traffic between steps (values too large for the caches).

Usage: python benchmarks/step_profile.py [MODEL [TOP]]
  MODEL: lenet or small (CNNs), or mlp:small, mlp:digits, mlp:mnist, mlp:big; TOP: how many
  of the slowest steps to list (default 15).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cnn_train_step  # noqa: E402
import mlp_train_step  # noqa: E402
from common import CONFIGS as MLP_CONFIGS, data as mlp_data  # noqa: E402

from symgrad.runtime import native  # noqa: E402


def model(name):
    """A compiled train step and the arguments of one call."""
    if name.startswith("mlp:"):
        batch, sizes = MLP_CONFIGS[name[4:]]
        return mlp_train_step.symgrad_step(sizes)[0], mlp_data(batch, sizes)
    cfg = cnn_train_step.CONFIGS[name]
    return cnn_train_step.symgrad_step(cfg), cnn_train_step.data(cfg)


def best_of(run, reps=7):
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    name = sys.argv[1] if len(sys.argv) > 1 else "lenet"
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    step, args = model(name)
    step(*args)
    step(*args)
    plan, _ = step._plans[tuple(a.shape for a in args)]
    results = [np.empty(shape, dtype) for shape, dtype in plan.outputs]
    native.run(plan.table, *args, *results)  # (stores the arrays' addresses in the plan)
    whole = best_of(lambda: native.run(plan.table, *args, *results))
    times = []
    for index in range(int(plan.table[1])):
        native.run_step(plan.table, index, 1)
        times.append(best_of(lambda: native.run_step(plan.table, index, 3)) / 3)
    print(f"{name}: whole plan {whole * 1e6:.1f} µs, its {len(times)} steps alone "
          f"{sum(times) * 1e6:.1f} µs")
    for index in sorted(range(len(times)), key=times.__getitem__, reverse=True)[:top]:
        print(f"{times[index] * 1e6:9.1f} µs  #{index:<3} {plan.statements[index][:100]}")


if __name__ == "__main__":
    main()
