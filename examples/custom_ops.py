"""Ops and derivatives of your own (symgrad.extend), in one small model.

1. swish(z) = z·sigmoid(z), a new elementwise op defined by its SymPy body: symgrad derives
   its gradient and second derivative and fuses it into the compiled loops;
2. a cumulative sum along the rows, a new op computed by a Numba kernel, with its shape rule,
   NumPy reference and vjp (it is linear, so its jvp is itself);
3. gradient clipping with `extend.with_gradient`: the value passes unchanged, the gradient
   flowing back through the hidden layer is clipped to [-1, 1].

A 2-32-2 network with swish units learns the `circle` set (one compiled train step with all
three), and the cumulative sum's compiled gradient is checked against central differences.

In: nothing. Out: printed results; main() returns (accuracy, loss history, gradient error).
Run: python examples/custom_ops.py
"""
import numba
import numpy as np

import symgrad as sg
from symgrad import data, extend, optim, scalar

swish = extend.elementwise("swish", lambda z: z * scalar.sigmoid(z))


@numba.njit
def _running_sum(x, out):
    """The kernel: called as kernel(*inputs, out) on C-ordered arrays."""
    rows, n = x.shape
    for r in range(rows):
        total = 0.0
        for k in range(n):
            total += x[r, k]
            out[r, k] = total


def _cumsum_vjp(node, g, wanted):
    # Each output sums the inputs up to it, so each input's cotangent sums the output
    # cotangents from it on: the running sum of g taken from the right.
    return [running_sum(g[:, ::-1])[:, ::-1]]


running_sum = extend.op(
    "running_sum",
    infer=lambda inputs, attrs: (inputs[0].shape, inputs[0].dtype),
    numpy=lambda arrays, attrs: np.cumsum(arrays[0], axis=1),
    kernel=_running_sum, vjp=_cumsum_vjp, linear=True)


def clip_gradient(h, bound=1.0):
    return extend.with_gradient(h, [h], vjp=lambda g: [sg.minimum(sg.maximum(g, -bound), bound)])


def train_circle(epochs=150, seed=0, verbose=True):
    x_data, labels = data.circle(n=400, noise=0.05, seed=seed)
    x_data = x_data.astype(np.float32)
    targets = np.eye(2, dtype=np.float32)[labels]
    rng = np.random.default_rng(seed)
    W1 = sg.Variable(rng.normal(0, 1.0, (2, 32)).astype(np.float32), name="W1")
    b1 = sg.Variable(np.zeros(32, np.float32), name="b1")
    W2 = sg.Variable(rng.normal(0, 0.25, (32, 2)).astype(np.float32), name="W2")
    b2 = sg.Variable(np.zeros(2, np.float32), name="b2")
    x = sg.placeholder("x", (None, 2), "float32")
    y = sg.placeholder("y", (None, 2), "float32")
    hidden = clip_gradient(swish(x @ W1 + b1))
    loss = sg.nn.softmax_cross_entropy(hidden @ W2 + b2, y, labels_sum_to_one=True)
    params = [W1, b1, W2, b2]
    step = sg.function([x, y], loss, updates=optim.Adam(0.02).updates(loss, params))
    history = []
    for epoch in range(epochs):
        history.append(float(step(x_data, targets)))
    logits = sg.function([x], hidden @ W2 + b2)
    accuracy = float(np.mean(logits(x_data).argmax(axis=1) == labels))
    if verbose:
        print(f"circle, 2-32-2 swish network, clipped gradients: loss {history[0]:.3f} -> "
              f"{history[-1]:.3f}, accuracy {accuracy:.1%}")
    return accuracy, history


def check_running_sum(verbose=True):
    """The compiled gradient of sum(w * running_sum(x)) against central differences."""
    rng = np.random.default_rng(1)
    x = sg.placeholder("x", (None, 5), "float64")
    w = sg.constant(rng.standard_normal(5))
    loss = sg.sum(sg.tanh(running_sum(x)) * w)
    f = sg.function([x], [loss, sg.grad(loss, x)])
    X = rng.standard_normal((3, 5))
    value, gradient = f(X)
    numeric = np.zeros_like(X)
    for index in np.ndindex(X.shape):
        step = np.zeros_like(X)
        step[index] = 1e-6
        numeric[index] = (f(X + step)[0] - f(X - step)[0]) / 2e-6
    error = float(np.max(np.abs(gradient - numeric)))
    if verbose:
        print(f"running_sum: compiled gradient vs central differences, max error {error:.1e}")
    return error


def main(epochs=150, verbose=True):
    accuracy, history = train_circle(epochs=epochs, verbose=verbose)
    error = check_running_sum(verbose=verbose)
    return accuracy, history, error


if __name__ == "__main__":
    main()
