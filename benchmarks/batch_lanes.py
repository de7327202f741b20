"""Lanes (compiler/lanes.py) on and off: a train step compiled with lanes (its batch split
between the cores where the graph allows, the default) beside the same step compiled with
lanes=False (one thread, BLAS products on all cores), measured in one run, for the CNNs of
cnn_train_step.py and the MLPs of mlp_train_step.py, with PyTorch's step for the CNNs where
installed. Both steps start from the same weights; their parameters after one step are
checked to agree.

Rounds alternate the two, each after 0.3 s of sleep: BLAS and PyTorch threads spin for
about 0.1 s after their last product, and a lane run in that time shares its core with them.
`in_lanes` says whether the calls ran in lanes (a step with too little work per call runs
whole: function.LANES_MIN_BYTES).

Usage: python benchmarks/batch_lanes.py [--configs lenet,small,mlp:mnist,mlp:big]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cnn_train_step as cnn  # noqa: E402
import mlp_train_step as mlp  # noqa: E402
from common import CONFIGS as MLP_CONFIGS, LR, data as mlp_data, timeit  # noqa: E402

import symgrad as sg  # noqa: E402


def steps(name):
    """(step with lanes, step without, their parameters, the call's arguments, torch step)."""
    pairs = []
    for lanes in (True, False):
        if name.startswith("mlp:"):
            batch, sizes = MLP_CONFIGS[name[4:]]
            x, y, params, loss = mlp.symgrad_model(sizes)
            args = mlp_data(batch, sizes)
        else:
            cfg = cnn.CONFIGS[name]
            x, y, params, _, loss = cnn.symgrad_model(cfg)
            args = cnn.data(cfg)
        step = sg.function([x, y], loss, updates=[(p, p - LR * sg.grad(loss, p)) for p in params],
                           background=False, lanes=lanes)
        pairs.append((step, params))
    (on, on_params), (off, off_params) = pairs
    torch = None if name.startswith("mlp:") else cnn.torch_step(cnn.CONFIGS[name])
    return on, off, on_params, off_params, args, torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="lenet,small,mlp:mnist,mlp:big")
    args = parser.parse_args()
    print("config,lanes_us,whole_us,torch_us,lanes/whole,lanes/torch,whole/torch,in_lanes,"
          "same_parameters")
    for name in args.configs.split(","):
        on, off, on_params, off_params, call, torch = steps(name)
        on(*call), off(*call)  # one step each from the same weights
        same = all(np.allclose(a.value, b.value, rtol=1e-4, atol=1e-6)
                   for a, b in zip(on_params, off_params))
        timed = {"lanes": on, "whole": off, **({"torch": torch} if torch else {})}
        us = {}
        for _ in range(3):  # interleaved rounds, the best of each kept
            for key, step in timed.items():
                time.sleep(0.3)
                us[key] = min(us.get(key, np.inf), timeit(step, call, reps=20) * 1e6)
        t = us.get("torch", float("nan"))
        print(f"{name},{us['lanes']:.0f},{us['whole']:.0f},{t:.0f},{us['lanes'] / us['whole']:.2f},"
              f"{us['lanes'] / t:.2f},{us['whole'] / t:.2f},{bool(on._lane_twins)},{same}",
              flush=True)


if __name__ == "__main__":
    main()
