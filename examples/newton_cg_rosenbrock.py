"""Newton-CG against gradient descent in Rosenbrock's ravine.

f(x, y) = (1 - x)² + 100 (y - x²)² has its minimum at (1, 1) at the bottom of a long curved
valley: the Hessian there has eigenvalues ~0.4 and ~1000, so gradient descent, whose step
must stay below 2/1000, crawls along the valley floor. Newton-CG solves H d = -g with
conjugate gradients on compiled Hessian-vector products (symgrad.optim_hf.HessianFree with
the exact Hessian) and takes curvature into account.

In: nothing. Out: printed iteration counts of both to reach (1, 1) within 1e-8, from (-1.2, 1).
Run: python examples/newton_cg_rosenbrock.py
"""
import time

import numpy as np

import symgrad as sg
from symgrad.optim_hf import HessianFree

START, TOL = np.array([-1.2, 1.0]), 1e-8


def rosenbrock(p):
    return sg.square(1.0 - p[0]) + 100.0 * sg.square(p[1] - sg.square(p[0]))


def newton_cg(max_steps=200):
    p = sg.Variable(START, name="p")
    opt = HessianFree(rosenbrock(p), [p], damping=1e-3)
    products = 0
    for step in range(1, max_steps + 1):
        opt.step()
        products += opt.last.cg_iterations
        if step <= 3 or step % 5 == 0:
            print(f"  step {step:3d}  f {opt.last.new_loss:.3e}  damping {opt.last.damping:.1e}  "
                  f"CG products {opt.last.cg_iterations}  p {p.value}")
        if np.max(np.abs(p.value - 1)) < TOL:
            return step, products, p.value
    return None, products, p.value


def gradient_descent(lr=1.8e-3, max_steps=500_000):
    p = sg.Variable(START, name="p")
    loss = rosenbrock(p)
    step_fn = sg.function([], loss, updates=[(p, p - lr * sg.grad(loss, p))], name="GD step")
    for step in range(1, max_steps + 1):
        step_fn()
        if np.max(np.abs(p.value - 1)) < TOL:
            return step, p.value
    return None, p.value


def main():
    print("Newton-CG (Hessian-free, exact Hessian-vector products):")
    started = time.perf_counter()
    newton_steps, products, p = newton_cg()
    print(f"  -> {newton_steps} steps ({products} Hessian-vector products), p = {p}, "
          f"{time.perf_counter() - started:.1f} s with compiling")
    print("gradient descent (learning rate 1.8e-3, near the largest stable 2 / 1001.6):")
    started = time.perf_counter()
    gd_steps, p = gradient_descent()
    print(f"  -> {gd_steps} steps, p = {p}, {time.perf_counter() - started:.1f} s with compiling")
    print(f"Newton-CG: {newton_steps} iterations; gradient descent: {gd_steps} iterations")
    return newton_steps, gd_steps


if __name__ == "__main__":
    main()
