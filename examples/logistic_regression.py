"""Logistic regression on two Gaussian blobs: one dense unit, sigmoid cross-entropy, SGD.

p(y = 1 | x) = σ(wᵀx + b). The loss is the mean of softplus(z) - y·z (the stable form of
-log σ), and symgrad simplifies its gradient to (σ(z) - y) x / n.

In: nothing. Out: printed loss per few epochs, accuracy, weights; main() returns
(accuracy, history, trainer).
Run: python examples/logistic_regression.py
"""
from symgrad import data, nn, optim
from symgrad.train import classifier


def main(epochs=20, seed=0):
    x, y = data.playground("gaussians", n=400, noise=0.1, seed=seed)
    train, val, test = data.split(x, y, val=0.2, test=0.2, seed=seed)
    model = nn.Dense(2, 1, name="logistic")
    trainer = classifier(model, 2, optim.SGD(0.5))
    history = trainer.fit(train, val, epochs=epochs, batch_size=16, seed=seed, progress=False,
                          verbose=False)
    for record in history.records[::5] + [history.last]:
        print(f"epoch {record['epoch']:3d}  loss {record['loss']:.4f}  "
              f"val accuracy {record['val_accuracy']:.3f}")
    accuracy = trainer.evaluate(*test)[1]
    print(f"test accuracy {accuracy:.3f}; w = {model.W.value.ravel().round(2)}, "
          f"b = {model.b.value.round(2)}")
    return accuracy, history, trainer


if __name__ == "__main__":
    main()
