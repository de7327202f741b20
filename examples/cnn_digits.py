"""A small convolutional network on the 8×8 digits (the bundled set), trained with one
compiled train step per minibatch: conv 3×3 (16) → ReLU → max pool 2 → conv 3×3 (32) → ReLU →
max pool 2 → dense 64 → ReLU → dense 10, softmax cross-entropy, Adam with weight decay, on
the training images and their copies moved by one pixel (as `symgrad demo` trains its MLP).

In: nothing (the digits ship with symgrad). Out: printed test accuracy; main() returns
(test accuracy, history, trainer).
Run: python examples/cnn_digits.py
"""
import time

from symgrad import data, nn, optim
from symgrad.train import classifier


def model(seed=0):
    # nn.CNN(8, 10) is this stack: 64 pixels -> one 8×8 image -> 16 × 4 × 4 -> 32 × 2 × 2
    return nn.Sequential([
        nn.Reshape((1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding="same", activation="relu", rng=seed, name="conv1"),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding="same", activation="relu", rng=seed + 1, name="conv2"),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dense(128, 64, "relu", "he", 0.0, seed + 10, "dense1"),
        nn.Dense(64, 10, None, "xavier", 0.0, seed + 11, "dense2"),
    ])


def main(epochs=40, seed=0, verbose=True):
    x, y = data.load_digits()
    x = x / x.max()  # pixels 0..16 -> 0..1
    train, val, test = data.split(x, y, val=0.15, test=0.2, seed=seed)  # as `symgrad demo`
    train = data.shifted_copies(*train, image_shape=(8, 8))  # each image also moved one pixel
    trainer = classifier(model(seed), 64, optim.Adam(2e-3), weight_decay=1e-4, name="cnn step")
    start = time.perf_counter()
    history = trainer.fit(train, val, epochs=epochs, batch_size=64, seed=seed, progress=False,
                          verbose=False)
    seconds = time.perf_counter() - start
    loss, accuracy = trainer.evaluate(*test)
    if verbose:
        print(f"digits CNN: test accuracy {accuracy:.4f} (loss {loss:.4f}) after {epochs} epochs "
              f"in {seconds:.1f} s")
    return accuracy, history, trainer


if __name__ == "__main__":
    main()
