"""What splitting a CNN train step's batch over the cores would give: a measurement for the
design of "lanes" (the per-example work of one step run on each core, the gradients summed
after), which symgrad's compiler does not do yet.

A compiled step runs its plan on one thread; only its matrix products use the second core
(OpenBLAS threads). im2col, col2im, pooling and the elementwise loops, half of a LeNet step,
run on one core. This benchmark measures, in one run:

  whole: the compiled train step on the batch of 128 (BLAS on 2 threads), as
         cnn_train_step.py measures it;
  lanes: a data-parallel step by hand: two compiled gradient functions (each with its own
         workspace), one per half batch, run at once in two threads with BLAS on 1 thread
         (each lane's products on its own core); the halves' gradients weighted by their row
         counts and the SGD update applied with NumPy;
  torch: PyTorch's eager step (2 threads), where installed.

The lanes step must leave the parameters where the whole step leaves them (checked, float32
rounding apart). The hand-off between Python threads costs tens of microseconds, so the small
CNN gains nothing this way; lanes run by the compiled runtime would not pay it.

Usage: python benchmarks/batch_lanes.py [--configs lenet,small]
"""
import argparse
import ctypes
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import cnn_train_step as cnn  # noqa: E402
from common import LR, timeit  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.runtime import blas  # noqa: E402


def blas_threads():
    """(get, set) of the number of threads of NumPy's OpenBLAS, or None."""
    for path in blas._loaded_openblas():
        library = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            try:
                return (getattr(library, f"{prefix}_get_num_threads64_"),
                        getattr(library, f"{prefix}_set_num_threads64_"))
            except AttributeError:
                continue
    return None


def lanes_step(cfg, lanes=2):
    """A data-parallel train step by hand over `lanes` threads, and its parameters."""
    x, y, params, _, loss = cnn.symgrad_model(cfg)
    grads = [sg.grad(loss, p) for p in params]
    gradient = [sg.function([x, y], grads, background=False) for _ in range(lanes)]
    pool = ThreadPoolExecutor(lanes - 1)

    def step(xb, yb):
        n = len(xb)
        cuts = [n * k // lanes for k in range(lanes + 1)]
        parts = [(xb[a:b], yb[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
        others = [pool.submit(f, *part) for f, part in zip(gradient[1:], parts[1:])]
        results = [gradient[0](*parts[0])] + [o.result() for o in others]
        for k, p in enumerate(params):
            total = sum(r[k] * len(part[0]) for r, part in zip(results, parts))
            p.value = p.value - LR * (total / n)
    return step, params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="lenet,small")
    args = parser.parse_args()
    threads = blas_threads()
    if threads is None:
        sys.exit("batch_lanes: NumPy's OpenBLAS was not found; the lanes need its thread count")
    get_threads, set_threads = threads
    before = get_threads()
    print("config,whole_us,lanes_us,torch_us,lanes/whole,whole/torch,lanes/torch,same_parameters")
    for name in args.configs.split(","):
        cfg = cnn.CONFIGS[name]
        x, y = cnn.data(cfg)
        x_, y_, whole_params, _, loss = cnn.symgrad_model(cfg)
        whole = sg.function([x_, y_], loss, background=False,
                            updates=[(p, p - LR * sg.grad(loss, p)) for p in whole_params])
        lanes, lane_params = lanes_step(cfg)
        # one step each from the same weights: the same parameters after
        whole(x, y)
        set_threads(1)
        lanes(x, y)
        set_threads(before)
        same = all(np.allclose(a.value, b.value, rtol=1e-4, atol=1e-6)
                   for a, b in zip(whole_params, lane_params))
        torch = cnn.torch_step(cfg)
        us = {}
        for _ in range(2):  # interleaved rounds, the best of each kept
            set_threads(before)
            us["whole"] = min(us.get("whole", np.inf), timeit(whole, (x, y), reps=20) * 1e6)
            set_threads(1)
            us["lanes"] = min(us.get("lanes", np.inf), timeit(lanes, (x, y), reps=20) * 1e6)
            set_threads(before)
            if torch is not None:
                us["torch"] = min(us.get("torch", np.inf), timeit(torch, (x, y), reps=20) * 1e6)
        t = us.get("torch", float("nan"))
        print(f"{name},{us['whole']:.0f},{us['lanes']:.0f},{t:.0f},{us['lanes'] / us['whole']:.2f},"
              f"{us['whole'] / t:.2f},{us['lanes'] / t:.2f},{same}", flush=True)
    set_threads(before)


if __name__ == "__main__":
    main()
