"""Softmax regression (multinomial logistic regression) on the bundled 8×8 digits.

logits = x W + b with W of shape (64, 10); loss = softmax cross-entropy with one-hot labels
(the Trainer makes them from the integer labels). Its gradient simplifies to
(softmax(logits) - labels) / n: look for it in the printed generated code.

In: nothing. Out: printed accuracies and a few generated lines; main() returns
(test accuracy, history, trainer).
Run: python examples/softmax_regression.py
"""
from symgrad import data, nn, optim
from symgrad.train import classifier


def main(epochs=15, seed=0):
    x, y = data.load_digits()
    train, val, test = data.split(x, y, val=0.15, test=0.2, seed=seed)
    model = nn.Dense(64, 10, name="softmax")
    trainer = classifier(model, 64, optim.Momentum(0.1, momentum=0.9))
    history = trainer.fit(train, val, epochs=epochs, batch_size=32, seed=seed, progress=False,
                          verbose=False)
    accuracy = trainer.evaluate(*test)[1]
    print(f"train accuracy {history['accuracy'][-1]:.3f}, validation {history['val_accuracy'][-1]:.3f}, "
          f"test {accuracy:.3f} after {epochs} epochs")
    print(f"compiled train step: {len(trainer.step_function.source.splitlines())} lines "
          f"(trainer.step_function.source), compiled in {trainer.compile_seconds:.2f} s")
    return accuracy, history, trainer


if __name__ == "__main__":
    main()
