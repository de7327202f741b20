"""Logistic regression on XOR-like data, trained with one compiled train step per minibatch.

XOR is not linearly separable, so plain logistic regression on (x1, x2) cannot learn it;
adding the product feature x1·x2 makes it separable. The loss printed each epoch goes down.
Run: python examples/logistic_xor.py
"""
import time

import numpy as np

import symgrad as sg


def xor_data(n, rng):
    x = rng.uniform(-1, 1, size=(n, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.float64)
    features = np.column_stack([x, x[:, 0] * x[:, 1]])
    return features.astype(np.float32), y.reshape(-1, 1).astype(np.float32)


def main(epochs=30, batch=64, lr=2.0, seed=0):
    rng = np.random.default_rng(seed)
    features, labels = xor_data(2048, rng)

    x = sg.placeholder("x", (None, 3), "float32")
    y = sg.placeholder("y", (None, 1), "float32")
    w = sg.Variable(np.zeros((3, 1), np.float32), name="w")
    b = sg.Variable(np.zeros(1, np.float32), name="b")
    logits = x @ w + b
    loss = sg.nn.sigmoid_binary_cross_entropy(logits, y)
    gw, gb = sg.gradients(loss, [w, b])

    started = time.perf_counter()
    step = sg.function([x, y], loss, updates=[(w, w - lr * gw), (b, b - lr * gb)], name="train step")
    predict = sg.function([x], sg.sigmoid(logits))
    print(f"compiled the train step in {time.perf_counter() - started:.2f} s")

    losses = []
    for epoch in range(epochs):
        order = rng.permutation(len(features))
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            total += float(step(features[idx], labels[idx])) * len(idx)
        losses.append(total / len(order))
        if epoch % 5 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:3d}  loss {losses[-1]:.4f}")
    accuracy = np.mean((predict(features) > 0.5) == (labels > 0.5))
    print(f"accuracy {accuracy:.3f}  w = {w.value.ravel().round(2)}  b = {b.value.round(2)}")
    return losses, accuracy


if __name__ == "__main__":
    main()
