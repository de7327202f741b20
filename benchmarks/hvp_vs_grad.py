"""How much a compiled Hessian-vector product costs next to a compiled gradient.

In: nothing (random data and weights). Out: printed median and minimum times, and their
ratios to the compiled gradient, for the mnist-size MLP (batch 128, 784-256-128-10, tanh,
softmax cross-entropy, float32), of
  - the HVP in one call (forward-over-reverse and reverse-over-reverse): everything recomputed;
  - the HVP of a bound operator (`HessianOperator.bind(x, y)`), the way Krylov methods use it:
    binding evaluates the forward pass and the primal backward pass once (partial.split),
    and each product computes only tangents; and the cost of binding, once per point;
  - the same for the Gauss-Newton product.
`--model small` or `--model lenet` times the CNNs of cnn_train_step.py (batch 128) instead.
The goal (issues 6 and 14) is HVP <= ~1.5 × gradient. By flop count the one-call HVP of this net
cannot go below about 1.73 × (layer 1: x·W, x·V, xᵀ·ġ against x·W, xᵀ·g, and layer 2 costs
8 products against 3); a bound product drops x·W and the primal products: about 1.2 ×.
All are timed in the same process, on the same data, calls interleaved, after a warm-up; for
the MLP, JAX's jitted gradient and forward-over-reverse HVP too, where JAX is installed (a venv
of its own, as mlp_train_step.py says; issue 18's goal: the one-call HVP <= 0.7 × JAX's).
Under load, multi-threaded BLAS makes medians jump; OPENBLAS_NUM_THREADS=1 steadies them.
Run: python benchmarks/hvp_vs_grad.py [--repeats N] [--model mlp|small|lenet]
"""
import argparse
import os
import sys
import time

import numpy as np

import symgrad as sg

sys.path.insert(0, os.path.dirname(__file__))
import cnn_train_step  # noqa: E402


def mlp(sizes, rng):
    x = sg.placeholder("x", (None, sizes[0]), "float32")
    y = sg.placeholder("y", (None, sizes[-1]), "float32")
    params, h = [], x
    for k, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = sg.Variable((rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32), name=f"W{k}")
        b = sg.Variable(np.zeros(n, np.float32), name=f"b{k}")
        params += [W, b]
        h = h @ W + b
        if k < len(sizes) - 2:
            h = sg.tanh(h)
    return x, y, params, h, sg.nn.softmax_cross_entropy(h, y, labels_sum_to_one=True)


def jax_mlp(params, xb, yb, vs):
    """JAX's jitted gradient and HVP of the same MLP at the same point, as calls timed like
    ours ({label: (function, args)}), or {} where JAX is not installed."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {}

    def loss(ps, x, y):
        h = x
        for k in range(len(ps) // 2):
            h = h @ ps[2 * k] + ps[2 * k + 1]
            if k < len(ps) // 2 - 1:
                h = jnp.tanh(h)
        return -jnp.sum(y * jax.nn.log_softmax(h)) / x.shape[0]
    grad = jax.jit(jax.value_and_grad(loss))
    hvp = jax.jit(lambda ps, vs, x, y: jax.jvp(lambda q: jax.grad(loss)(q, x, y), (ps,), (vs,))[1])
    ps = [jnp.asarray(p.value) for p in params]
    tangents = [jnp.asarray(v) for v in vs]
    x, y = jnp.asarray(xb), jnp.asarray(yb)
    return {"JAX gradient (with loss)": (lambda: jax.block_until_ready(grad(ps, x, y)), ()),
            "JAX HVP, forward-over-reverse": (lambda: jax.block_until_ready(hvp(ps, tangents, x, y)), ())}


def seconds(functions, repeats):
    """(median, minimum) seconds per call of each (f, args), calls interleaved round-robin so that
    a change in machine load (other processes) affects every function alike."""
    for f, args in functions:
        for _ in range(5):
            f(*args)
    times = [[] for _ in functions]
    for _ in range(repeats):
        for (f, args), bucket in zip(functions, times):
            start = time.perf_counter()
            f(*args)
            bucket.append(time.perf_counter() - start)
    return [(float(np.median(bucket)), float(np.min(bucket))) for bucket in times]


def main(repeats=200, model="mlp", batch=128, sizes=(784, 256, 128, 10), seed=0):
    rng = np.random.default_rng(seed)
    if model == "mlp":
        x, y, params, logits, loss = mlp(sizes, rng)
        xb = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        yb = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], batch)]
    else:
        cfg = cnn_train_step.CONFIGS[model]
        x, y, params, logits, loss = cnn_train_step.symgrad_model(cfg)
        xb, yb = cnn_train_step.data(cfg)

    started = time.perf_counter()
    grad = sg.function([x, y], [loss] + sg.gradients(loss, params), name="loss and gradient",
                       background=False)
    print(f"compiled the gradient in {time.perf_counter() - started:.1f} s")
    operators = {}
    for mode in ("forward", "reverse"):
        operators[f"HVP, {mode}-over-reverse"] = sg.linalg.HessianOperator(loss, params, [x, y], mode=mode)
    operators["Gauss-Newton product"] = sg.linalg.GaussNewtonOperator(
        logits, "softmax_cross_entropy", params, [x, y])
    for label, op in operators.items():
        started = time.perf_counter()
        op.function, op.staged  # compile both forms now, not in the timings
        print(f"compiled the {label} (one call and two stages) in {time.perf_counter() - started:.1f} s")

    vs = [rng.standard_normal(p.shape).astype(np.float32) for p in params]
    check_products_agree(operators, vs, xb, yb)
    labels, timed = [], [(grad, (xb, yb))]
    for label, op in operators.items():
        bound = op.bind(xb, yb)
        labels += [label + ", one call", label + ", bound", label + ": bind"]
        timed += [(op.function, (*vs, xb, yb)), (bound, (vs,)), (op.bind, (xb, yb))]
    peers = jax_mlp(params, xb, yb, vs) if model == "mlp" else {}
    labels += list(peers)
    timed += list(peers.values())
    (grad_median, grad_min), *t_rows = seconds(timed, repeats)
    print(f"{'':42s} {'median':>9s} {'min':>9s}   ratio to gradient (median, min)")
    print(f"{'gradient (with loss)':42s} {grad_median * 1e3:6.3f} ms {grad_min * 1e3:6.3f} ms")
    for label, (median, least) in zip(labels, t_rows):
        print(f"{label:42s} {median * 1e3:6.3f} ms {least * 1e3:6.3f} ms   "
              f"{median / grad_median:5.2f}  {least / grad_min:5.2f}")
    if peers:
        ours, theirs = t_rows[0][0], t_rows[-1][0]
        print(f"symgrad's one-call HVP / JAX's HVP: {ours / theirs:.2f} (medians)")
    bind, bound = t_rows[2][0], t_rows[1][0]
    for k in (1, 10, 50):
        print(f"{k:2d} products at one point (forward HVP): "
              f"{(bind + k * bound) / k / grad_median:.2f} gradients per product, binding included")

    # The solvers' own arithmetic beside the products they call (float64, one pass per
    # update): 20 CG iterations on the damped Gauss-Newton system, then 20 of Lanczos.
    matvec = operators["Gauss-Newton product"].bind(xb, yb)
    b = [rng.standard_normal(p.shape) for p in params]
    cg = min(_timed(lambda: sg.linalg.conjugate_gradient(matvec, b, damping=1.0, tol=0.0, max_iter=20))
             for _ in range(5)) / 20
    lanczos = min(_timed(lambda: sg.linalg.lanczos(matvec, k=3, n_iter=20)) for _ in range(3)) / 20
    product = seconds([(matvec, (vs,))], repeats)[0][1]
    print(f"one CG iteration {cg * 1e3:.3f} ms, one Lanczos iteration (20 kept) {lanczos * 1e3:.3f} ms, "
          f"against {product * 1e3:.3f} ms for the Gauss-Newton product they call (minima)")


def check_products_agree(operators, vs, xb, yb):
    """What is timed computes one thing: both HVP modes, in one call and bound, give the same
    product, and so do the Gauss-Newton product's two forms (float32, relative to the norm)."""
    def products(op):
        one_call = op.function(*vs, xb, yb)
        return [np.asarray(a, np.float64) for a in (one_call if isinstance(one_call, (list, tuple))
                                                    else [one_call])], \
            [np.asarray(a, np.float64) for a in op.bind(xb, yb)(vs)]

    def close(a, b, what):
        if not len(a) == len(b) == len(vs):
            raise SystemExit(f"{what}: {len(a)} and {len(b)} arrays for {len(vs)} parameters")
        scale = max(np.sqrt(sum(float(np.sum(u * u)) for u in a)), 1e-30)
        error = np.sqrt(sum(float(np.sum((u - w) ** 2)) for u, w in zip(a, b)))
        if not error <= 1e-4 * scale:
            raise SystemExit(f"{what}: the products differ (relative error {error / scale:.2e})")
    reference = None
    for label, op in operators.items():
        one_call, bound = products(op)
        close(one_call, bound, f"{label}: one call against bound")
        if label.startswith("HVP"):
            reference = reference or one_call
            close(reference, one_call, f"{label} against forward-over-reverse")


def _timed(run):
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--model", default="mlp", choices=["mlp"] + list(cnn_train_step.CONFIGS))
    arguments = parser.parse_args()
    main(arguments.repeats, arguments.model)
