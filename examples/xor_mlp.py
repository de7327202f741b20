"""XOR, two ways: Goodfellow's exact hand-made network, then a 2-16-1 network learned from
a random start with a compiled train step.

Deep Learning (Goodfellow, Bengio & Courville, §6.1) solves XOR with one ReLU hidden layer:
f(x) = wᵀ max(0, Wᵀx + c) + b with W = [[1, 1], [1, 1]], c = [0, -1], w = [1, -2], b = 0.
We build that function symbolically, compile it and check it gives exactly 0, 1, 1, 0.
Then a 2-16-1 tanh network with sigmoid cross-entropy and Adam learns XOR from random weights.

In: nothing. Out: printed outputs; main() returns (exact outputs, learned accuracy, history).
Run: python examples/xor_mlp.py
"""
import numpy as np

import symgrad as sg
from symgrad import data, nn, optim
from symgrad.train import classifier


def goodfellow_solution():
    """Outputs of the book's network on the four XOR inputs (compiled)."""
    x = sg.placeholder("x", (None, 2), "float32")
    W = sg.Variable(np.array([[1, 1], [1, 1]], np.float32), name="W")
    c = sg.Variable(np.array([0, -1], np.float32), name="c")
    w = sg.Variable(np.array([[1], [-2]], np.float32), name="w")
    b = sg.Variable(np.zeros(1, np.float32), name="b")
    f = sg.relu(x @ W + c) @ w + b
    inputs, _ = data.xor()
    return sg.function([x], f)(inputs).ravel()


def learn_xor(seed=0, epochs=300, verbose=False):
    """A 2-16-1 tanh network trained on the four points; returns (accuracy, history, trainer)."""
    x, y = data.xor()
    model = nn.MLP([2, 16, 1], activation="tanh", seed=seed)
    trainer = classifier(model, 2, optim.Adam(0.05))
    history = trainer.fit((x, y), epochs=epochs, batch_size=4, seed=seed, progress=False,
                          verbose=False)
    accuracy = trainer.evaluate(x, y)[1]
    if verbose:
        probabilities = 1 / (1 + np.exp(-trainer.predict(x).ravel()))
        print(f"learned 2-16-1 network after {len(history)} steps: loss {history['loss'][-1]:.4f}, "
              f"accuracy {accuracy:.0%}, P(y=1) = {probabilities.round(3)}")
    return accuracy, history, trainer


def main(epochs=300):
    exact = goodfellow_solution()
    print(f"Goodfellow's network on (0,0), (0,1), (1,0), (1,1): {exact}")
    assert np.array_equal(exact, [0, 1, 1, 0]), exact
    accuracy, history, _ = learn_xor(epochs=epochs, verbose=True)
    return exact, accuracy, history


if __name__ == "__main__":
    main()
