"""The decision boundary of a small MLP on a 2-D playground set.

A 2-16-1 tanh network learns the "circle" set (class 1 inside a disc, class 0 in a ring).
We evaluate it on a grid and draw the boundary: a PNG with matplotlib (the optional `plot`
extra), and always a coarse text picture in the terminal.

In: nothing. Out: decision_boundary.png (if matplotlib) and printed text; main() returns
(test accuracy, text picture, path of the PNG or None).
Run: python examples/decision_boundary.py [dataset]
"""
import os
import sys

import numpy as np

from symgrad import data, nn, optim
from symgrad.train import classifier


def text_picture(trainer, x, y, size=24):
    """The plane as characters: '#' where the model says class 1, '.' for class 0, and the
    training points as 'o' (class 1) and 'x' (class 0) where they fall."""
    grid = np.linspace(-1.1, 1.1, size)
    xx, yy = np.meshgrid(grid, grid[::-1])
    logits = trainer.predict(np.column_stack([xx.ravel(), yy.ravel()])).reshape(size, size)
    rows = [["#" if v > 0 else "." for v in row] for row in logits]
    for (a, b), label in zip(x, y):
        i, j = int(round((1.1 - b) / 2.2 * (size - 1))), int(round((a + 1.1) / 2.2 * (size - 1)))
        if 0 <= i < size and 0 <= j < size:
            rows[i][j] = "o" if label == 1 else "x"
    return "\n".join(" ".join(row) for row in rows)


def plot(trainer, x, y, path, resolution=200):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG (pip install 'symgrad[plot]')")
        return None
    grid = np.linspace(-1.2, 1.2, resolution)
    xx, yy = np.meshgrid(grid, grid)
    logits = trainer.predict(np.column_stack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.contourf(xx, yy, 1 / (1 + np.exp(-logits)), levels=20, cmap="RdBu_r", alpha=0.6)
    ax.contour(xx, yy, logits, levels=[0], colors="k")
    ax.scatter(x[:, 0], x[:, 1], c=np.where(y == 1, "tab:red", "tab:blue"), edgecolors="k",
               linewidths=0.4, s=18)
    ax.set_title("decision boundary of a 2-16-1 tanh MLP")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(dataset="circle", epochs=60, seed=0, out="decision_boundary.png"):
    x, y = data.playground(dataset, n=400, noise=0.05, seed=seed)
    train, val, test = data.split(x, y, val=0.2, test=0.2, seed=seed)
    model = nn.MLP([2, 16, 1], activation="tanh", seed=seed)
    trainer = classifier(model, 2, optim.Adam(0.02))
    trainer.fit(train, val, epochs=epochs, batch_size=16, seed=seed, progress=False, verbose=False)
    accuracy = trainer.evaluate(*test)[1]
    picture = text_picture(trainer, *train)
    print(picture)
    print(f"{dataset}: test accuracy {accuracy:.3f}")
    path = plot(trainer, *train, out) if out else None
    if path:
        print(f"wrote {os.path.abspath(path)}")
    return accuracy, picture, path


if __name__ == "__main__":
    main(*sys.argv[1:2])
