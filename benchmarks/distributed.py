"""Data-parallel training and sharded Hessian-free on a Dask LocalCluster, against one process.

Every figure is measured in this run, with one BLAS thread everywhere (this process and each
worker), on 127.0.0.1:
1. big MLP (784-1024-1024-10, Adam, float32, synthetic MNIST-shaped data): examples per second
   of the compiled train step at batch 512 in this process, against 2 workers each taking a
   512-example share: synchronously (gradients averaged every step: global batch 1024), and
   local SGD (models averaged every k steps);
2. a Hessian-free step (Gauss-Newton, 20 CG iterations at most) on the digits with their
   shifted copies (5,845 examples, MLP 64-256-10 tanh) in this process, against the same step
   over 2 shards;
3. the overhead of one synchronous step: a model so small its compute is negligible
   (64-10 softmax regression, 2 examples per shard), and the cross-over: the smallest batch
   at which 2 workers step faster than one process, for the mnist-size MLP (784-256-128-10),
   synchronous and with local SGD every 8 steps.
"2 workers, no communication" is each worker timing the compiled step alone, both at once: the
most two processes can do on this machine, whatever the cluster software.

Usage: python benchmarks/distributed.py [--quick]
"""
import os
import sys

# This file's folder comes first on sys.path, and this file's name would hide Dask's
# `distributed` package: drop it (this benchmark imports nothing from beside it).
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from symgrad.distributed import SINGLE_THREAD  # noqa: E402

os.environ.update(SINGLE_THREAD)  # (before NumPy loads its BLAS: this process, one thread too)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad import data, distributed, nn, optim  # noqa: E402
from symgrad.optim_hf import HessianFree  # noqa: E402
from symgrad.train import classifier  # noqa: E402


def median_seconds(run, repeats):
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def synthetic(n, features, classes, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, features), dtype=np.float32), rng.integers(0, classes, n)


def trainer_for(sizes, name):
    return classifier(nn.MLP(sizes, seed=0, name=name), sizes[0], optim.Adam(1e-3))


def _time_steps(step, xb, yb, repeats):
    """On a worker: the median seconds of its compiled step (no communication)."""
    return median_seconds(lambda: step(xb, yb), repeats)


def mlp_throughput(client, sizes, batch, repeats, rounds=(1, 4, 16, 64), ceiling=True):
    """Examples per second: one process at `batch`, then 2 workers at `batch` each."""
    x, y = synthetic(8 * batch, sizes[0], sizes[-1])
    one = trainer_for(sizes, "one")
    xb, yb = one.prepare(x[:batch], y[:batch])
    one.compile()
    single = batch / median_seconds(lambda: one.step_function(xb, yb), repeats)
    workers = len(client.scheduler_info()["workers"])
    results = {"one process": single}
    if ceiling:  # both workers stepping at once, nothing sent: what two processes can do here
        seconds = client.run(_time_steps, one.step_function, xb, yb, repeats)
        results["2 workers, no communication"] = workers * batch / max(seconds.values())
    for every in rounds:
        many = trainer_for(sizes, f"many{every}")
        parallel = distributed.DataParallel(many, client, every).distribute(x, y)
        if every == 1:
            run = lambda: parallel.step(0, 0, workers * batch)  # noqa: E731
            seconds = median_seconds(run, repeats)
        else:
            run = lambda: parallel.local_round(0, 0, every, batch)  # noqa: E731
            seconds = median_seconds(run, max(repeats // every, 3)) / every
        results[f"2 workers, sync every {every}"] = workers * batch / seconds
    return results


def hessian_free(client, repeats):
    x, y = data.load_digits()
    train, _, _ = data.split(x, y, val=0.15, test=0.2, seed=0)
    x, labels = data.shifted_copies(*train)
    y1 = nn.one_hot(labels, 10)

    def problem(name):
        xs = sg.placeholder("x", (None, 64), "float32")
        ys = sg.placeholder("y", (None, 10), "float32")
        model = nn.MLP([64, 256, 10], activation="tanh", seed=0, name=name)
        z = model(xs)
        loss = nn.softmax_cross_entropy(z, ys, labels_sum_to_one=True)
        return HessianFree(loss, model.params, [xs, ys], curvature="gauss_newton", z=z,
                           loss_kind="softmax_cross_entropy", cg_max_iter=20)

    one = problem("hf-one")
    single = median_seconds(lambda: one.step(x, y1), repeats)
    iterations_one = one.last.cg_iterations
    sharded = distributed.ShardedHessianFree(problem("hf-many"), x, y1, client)
    many = median_seconds(sharded.step, repeats)
    return len(x), single, iterations_one, many, sharded.last.cg_iterations


def overhead(client, repeats):
    tiny = trainer_for([64, 10], "tiny")
    x, y = synthetic(64, 64, 10)
    parallel = distributed.DataParallel(tiny, client).distribute(x, y)
    return median_seconds(lambda: parallel.step(0, 0, 4), repeats)


def crossover(client, repeats, batches=(32, 128, 512, 2048)):
    sizes = [784, 256, 128, 10]
    rows = []
    for batch in batches:
        result = mlp_throughput(client, sizes, batch // 2, repeats, rounds=(1, 8), ceiling=False)
        x, y = synthetic(batch, 784, 10, seed=1)
        one = trainer_for(sizes, f"one{batch}")
        xb, yb = one.prepare(x, y)
        one.compile()
        single = batch / median_seconds(lambda: one.step_function(xb, yb), repeats)
        rows.append((batch, single, result["2 workers, sync every 1"],
                     result["2 workers, sync every 8"]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    repeats = 5 if parser.parse_args().quick else 15
    started = time.perf_counter()
    client = distributed.local_client(2)
    print(f"LocalCluster of 2 workers × 1 thread up in {time.perf_counter() - started:.1f} s "
          f"({os.cpu_count()} cores; BLAS one thread everywhere)")
    try:
        print("\n1. big MLP 784-1024-1024-10, Adam, batch 512 per process (examples/s):")
        results = mlp_throughput(client, [784, 1024, 1024, 10], 512, repeats)
        base = results["one process"]
        for name, rate in results.items():
            print(f"   {name:28s} {rate:9.0f}   {rate / base:.2f} ×  (goal ≥ 1.7 ×)")

        n, single, it1, many, it2 = hessian_free(client, max(repeats // 3, 3))
        print(f"\n2. Hessian-free step, digits + shifted copies ({n} examples), MLP 64-256-10:")
        print(f"   one process {single * 1e3:7.1f} ms ({it1} CG iterations)")
        print(f"   2 workers   {many * 1e3:7.1f} ms ({it2} CG iterations)   "
              f"{single / many:.2f} × (goal ≥ 1.6 ×)")

        print(f"\n3. one synchronous step of a negligible model: {overhead(client, repeats) * 1e3:.2f} ms "
              f"(two actor calls and the update)")
        print("   mnist-size MLP 784-256-128-10, examples/s at a global batch:")
        for batch, one_rate, sync, local in crossover(client, repeats):
            print(f"   batch {batch:5d}: one process {one_rate:8.0f}; 2 workers synchronous "
                  f"{sync:8.0f} ({sync / one_rate:.2f} ×), local SGD every 8 {local:8.0f} "
                  f"({local / one_rate:.2f} ×)")
    finally:
        client.close()
        client.cluster.close()


if __name__ == "__main__":
    main()
