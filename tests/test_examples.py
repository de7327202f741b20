"""Every example in examples/ runs, and does what its docstring says (with fewer epochs where
that keeps the claim). They share architectures with test_train.py and the demo, so the
compiled steps are reused."""
import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    path = os.path.join(ROOT, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_exact_solution_and_learned_network(capsys):
    exact, accuracy, history = load("xor_mlp").main()
    np.testing.assert_array_equal(exact, [0, 1, 1, 0])
    assert accuracy == 1.0
    assert "accuracy 100%" in capsys.readouterr().out


def test_logistic_regression():
    accuracy, history, trainer = load("logistic_regression").main()
    assert accuracy >= 0.95
    assert history["loss"][-1] < history["loss"][0]


def test_softmax_regression():
    accuracy, history, trainer = load("softmax_regression").main(epochs=10)
    assert accuracy >= 0.9


def test_worked_example():
    z, dz_dx1, dz_dx2 = load("worked_example").main()
    assert round(dz_dx1, 3) == 2.584 and dz_dx2 == 2.0 and z == pytest.approx(np.sin(2) + 6)


def test_rosenbrock_momentum_beats_gradient_descent():
    distances = load("rosenbrock_momentum").main(steps=1000)
    assert distances["momentum"] < 0.1 * distances["sgd"]


def test_mlp_on_digits():
    accuracy, history, trainer = load("mlp_digits").main(verbose=False)
    assert accuracy >= 0.95


def test_decision_boundary(tmp_path):
    out = str(tmp_path / "boundary.png")
    accuracy, picture, path = load("decision_boundary").main(epochs=40, out=out)
    assert accuracy >= 0.9
    rows = picture.splitlines()
    assert len(rows) == 24 and "#" in rows[12] and "#" not in rows[0]  # class 1 in the middle
    try:
        import matplotlib  # noqa: F401
        assert path == out and os.path.getsize(out) > 1000
    except ImportError:
        assert path is None


def test_logistic_xor_still_works():
    losses, accuracy = load("logistic_xor").main(epochs=10)
    assert losses[-1] < losses[0] and accuracy > 0.9


def test_hessian_spectrum_follows_training(tmp_path):
    # The docstring's claim: the curvature rises in the first epochs as the network leaves its
    # near-linear start, and stays far below 2 / learning rate.
    history = load("hessian_spectrum_digits").main(epochs=3, every=3, plot=str(tmp_path / "s.png"))
    (first, at_start), (third, later) = history
    assert (first, third) == (0, 3)
    assert later[0] > at_start[0] * 1.05 and later[0] < 2 / 0.1
    assert list(at_start) == sorted(at_start, reverse=True)


def test_custom_ops(capsys):
    from symgrad import extend
    before = extend.defined()
    try:
        accuracy, history, error = load("custom_ops").main(epochs=120)
    finally:  # its ops leave with it (the op table, test_ops.py, covers every op that stays)
        for name in extend.defined() - before:
            extend.undefine(name)
    assert accuracy >= 0.95 and history[-1] < 0.5 * history[0]
    assert error < 1e-6  # the kernel op's compiled gradient against central differences
    assert "running_sum: compiled gradient" in capsys.readouterr().out


def test_cnn_on_digits(capsys):
    accuracy, history, trainer = load("cnn_digits").main()
    assert accuracy >= 0.985  # the MLP of `symgrad demo` reaches 0.98
    assert "digits CNN: test accuracy" in capsys.readouterr().out


def test_dropout_and_batch_norm_on_digits():
    accuracy, trainer = load("dropout_batchnorm_digits").main(verbose=False)
    assert accuracy >= 0.98  # the goal, on the bundled split
    assert trainer.state and trainer.eval_outputs is not trainer.outputs


def test_char_bigram_approaches_the_counted_bigrams():
    initial, final, best, sample = load("char_bigram").main(steps=800, sample_length=40,
                                                            verbose=False)
    assert final < initial - 1.5 and final < best + 0.15
    assert len(sample) == 40 and sample[0] == "t"
