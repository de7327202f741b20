"""The top Hessian eigenvalues of an MLP while it trains on the 8×8 digits.

A 64-32-10 tanh MLP (2,442 parameters) is trained with minibatch SGD (one compiled train
step). Every few epochs, Lanczos (symgrad.linalg.lanczos, 30 compiled Hessian-vector
products on a fixed batch of 512 training examples) gives the top eigenvalues of the loss
Hessian, and Hutchinson's estimator its trace. With this small learning rate the curvature
rises in the first epochs, as the network leaves its near-linear start, then slowly falls
as the loss flattens; all eigenvalues stay far below 2 / learning rate, where SGD would
become unstable along the top eigenvector.

In: the digits bundled in symgrad.data (a synthetic 10-class set if that module is missing).
Out: a printed table per epoch, and hessian_spectrum_digits.png when matplotlib is installed.
Run: python examples/hessian_spectrum_digits.py
"""
import time

import numpy as np

import symgrad as sg
from symgrad import linalg


def load_data(rng):
    try:
        from symgrad.data import load_digits
        x, labels = load_digits()
        source = "digits"
    except ImportError:  # symgrad.data not present: a synthetic stand-in of the same shape
        centres = rng.standard_normal((10, 64))
        labels = rng.integers(0, 10, 1797)
        x = (centres[labels] + 1.5 * rng.standard_normal((1797, 64))).astype(np.float32)
        source = "synthetic (symgrad.data not found)"
    return x.astype(np.float32), np.eye(10, dtype=np.float32)[labels], source


def main(epochs=30, batch=64, lr=0.1, k=4, every=3, seed=0, plot="hessian_spectrum_digits.png"):
    rng = np.random.default_rng(seed)
    data, targets, source = load_data(rng)
    order = rng.permutation(len(data))
    train, test = order[:1500], order[1500:]
    print(f"data: {source}, {len(train)} train / {len(test)} test examples")

    x = sg.placeholder("x", (None, 64), "float32")
    y = sg.placeholder("y", (None, 10), "float32")
    sizes = [64, 32, 10]
    params = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        params += [sg.Variable((rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)),
                   sg.Variable(np.zeros(n, np.float32))]
    W1, b1, W2, b2 = params
    logits = sg.tanh(x @ W1 + b1) @ W2 + b2
    loss = sg.nn.softmax_cross_entropy(logits, y, labels_sum_to_one=True)
    grads = sg.gradients(loss, params)

    started = time.perf_counter()
    step = sg.function([x, y], loss, updates=[(p, p - lr * g) for p, g in zip(params, grads)],
                       name="SGD step")
    accuracy = sg.function([x, y], sg.mean(sg.equal(sg.max(logits, axis=1, keepdims=True), logits) * y) * 10.0)
    hessian = linalg.HessianOperator(loss, params, [x, y])
    print(f"compiled the train step, accuracy and HVP in {time.perf_counter() - started:.1f} s")

    probe = train[:512]  # the Hessian is measured on one fixed batch, comparable across epochs
    history = []
    print(f"{'epoch':>5} {'loss':>8} {'test acc':>8}   top-{k} eigenvalues of H{'':14} trace (±se)")
    for epoch in range(epochs + 1):
        if epoch % every == 0:
            # Bound at the present weights: the forward pass is done once for all 60 products.
            H = hessian.bind(data[probe], targets[probe])
            top = linalg.lanczos(H, k=k, n_iter=30, seed=epoch).eigenvalues
            trace = linalg.hutchinson_trace(H, n_probes=30, seed=epoch)
            current = float(sg.evaluate(loss, {x: data[probe], y: targets[probe]}))
            acc = float(accuracy(data[test], targets[test]))
            history.append((epoch, top))
            values = " ".join(f"{v:7.3f}" for v in top)
            print(f"{epoch:5d} {current:8.4f} {acc:8.3f}   {values}   {trace.trace:7.2f} "
                  f"(±{trace.stderr:.2f})")
        if epoch == epochs:
            break
        shuffled = rng.permutation(train)
        for start in range(0, len(shuffled), batch):
            idx = shuffled[start:start + batch]
            step(data[idx], targets[idx])
    print(f"2 / learning rate = {2 / lr:.1f}")
    save_plot(history, k, lr, plot)
    return history


def save_plot(history, k, lr, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (the table above has the same numbers)")
        return
    epochs = [e for e, _ in history]
    values = np.array([v for _, v in history])
    fig, ax = plt.subplots(figsize=(6, 4))
    for i in range(k):
        ax.plot(epochs, values[:, i], marker="o", label=f"λ{i + 1}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Hessian eigenvalue")
    ax.set_title(f"Top Hessian eigenvalues, 64-32-10 MLP on digits (lr {lr})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
