"""Gradient descent against momentum in Rosenbrock's ravine.

f(a, b) = (1 - a)² + 100 (b - a²)² has its minimum at (1, 1) at the bottom of a long, curved,
narrow valley. Plain gradient descent must keep its step small (the steep walls would make it
diverge) and then crawls along the flat valley floor; momentum accumulates velocity along the
floor and gets much further in the same number of steps with the same learning rate.
Each optimizer step is one compiled call with no inputs: the point is a Variable.

In: nothing. Out: printed distance to (1, 1) along the way; main() returns the final
distances {"sgd": ..., "momentum": ...}.
Run: python examples/rosenbrock_momentum.py
"""
import numpy as np

import symgrad as sg
from symgrad import optim

START = np.array([-1.2, 1.0])


def rosenbrock(p):
    return sg.square(1.0 - p[0]) + 100.0 * sg.square(p[1] - sg.square(p[0]))


def descend(optimizer, steps):
    """Run `steps` compiled steps of `optimizer` from START; returns the path (steps+1, 2)."""
    p = sg.Variable(START, name="p")
    step = sg.function([], rosenbrock(p), updates=optimizer.updates(rosenbrock(p), [p]))
    path = [p.value.copy()]
    for _ in range(steps):
        step()
        path.append(p.value.copy())
    return np.array(path)


def main(steps=2000, learning_rate=1e-3):
    paths = {"sgd": descend(optim.SGD(learning_rate), steps),
             "momentum": descend(optim.Momentum(learning_rate, momentum=0.9), steps)}
    print(f"from {START}, learning rate {learning_rate}: distance to the minimum (1, 1)")
    print("  step        sgd   momentum")
    for k in sorted({0, 10, 100, 500, steps // 2, steps}):
        row = [np.linalg.norm(paths[name][k] - 1.0) for name in ("sgd", "momentum")]
        print(f"{k:6d} {row[0]:10.5f} {row[1]:10.5f}")
    return {name: float(np.linalg.norm(path[-1] - 1.0)) for name, path in paths.items()}


if __name__ == "__main__":
    main()
