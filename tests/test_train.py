"""symgrad.train: the loop, validation, early stopping, schedules, checkpoints and resuming
after Ctrl-C, bad input that leaves parameters untouched, the progress bar without tqdm, and
the `symgrad` command (demo included: it must reach 97% test accuracy on the digits).

Every Trainer here is a 2-16-1 tanh network with Adam on a playground set (the demo aside):
the generated code is the same for all, so it compiles once per test session."""
import json
import os
import signal
import sys
import threading

import networkx as nx
import numpy as np
import pytest

import symgrad as sg
from symgrad import cli, data, nn, optim
from symgrad.train import History, Trainer, classifier, load_parameters, save_parameters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def circle():
    x, y = data.playground("circle", n=240, noise=0.05, seed=0)
    return data.split(x, y, val=0.2, test=0.2, seed=0)


def make_trainer(seed=0, rate=0.02, schedule=None):
    model = nn.MLP([2, 16, 1], activation="tanh", seed=seed)
    return classifier(model, 2, optim.Adam(rate), schedule=schedule), model


def values(params):
    return [p.value.copy() for p in params]


def test_fit_trains_validates_and_records_history(circle):
    train, val, test = circle
    trainer, _ = make_trainer()
    history = trainer.fit(train, val, epochs=30, batch_size=16, progress=False, verbose=False)
    assert len(history) == 30 and history["epoch"] == list(range(1, 31))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "step_seconds"):
        assert all(v is not None for v in history[key]), key
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    evaluation = trainer.evaluate(*test)
    assert evaluation.accuracy >= 0.9 and evaluation == (evaluation.loss, evaluation.accuracy)
    assert repr(evaluation).startswith("Evaluation(loss=")
    assert history["steps"] == [9] * 30 and int(trainer.steps_taken.value) == 270
    assert trainer.compile_seconds is not None and "History(30 epochs" in repr(history)


def test_an_existing_checkpoint_is_never_overwritten_without_resume(circle, tmp_path):
    train, val, _ = circle
    path = tmp_path / "run.npz"
    trainer, model = make_trainer()
    trainer.fit(train, val, epochs=2, batch_size=16, checkpoint=str(path), progress=False,
                verbose=False)
    saved, before = path.read_bytes(), values(model.params)
    again, again_model = make_trainer()
    with pytest.raises(FileExistsError, match="resume=True"):
        again.fit(train, val, epochs=2, batch_size=16, checkpoint=str(path), progress=False,
                  verbose=False)
    assert path.read_bytes() == saved and int(again.steps_taken.value) == 0
    again.fit(train, val, epochs=3, batch_size=16, checkpoint=str(path), resume=True,
              progress=False, verbose=False)
    assert len(again.history) == 3 and int(again.steps_taken.value) == 27


def test_params_are_listed_layer_by_layer():
    names = [p.name for p in nn.MLP([4, 8, 8, 2], activation="prelu").params]
    assert names == ["mlp/0/W", "mlp/0/b", "mlp/0/prelu/slope", "mlp/1/W", "mlp/1/b",
                     "mlp/1/prelu/slope", "mlp/2/W", "mlp/2/b"]


def test_early_stopping_restores_the_best_parameters(circle):
    train, val, _ = circle
    trainer, model = make_trainer()
    trainer.fit(train, val, epochs=3, batch_size=16, progress=False, verbose=False)
    # A huge learning rate makes the validation loss worse: stop after `patience` epochs.
    trainer.optimizer.learning_rate.value = 50.0
    history = trainer.fit(train, val, epochs=20, batch_size=16, patience=2, progress=False,
                          verbose=False)
    assert history.stopped_early and len(history) == history.best_epoch() + 3
    assert history.best_epoch() < 3  # one of the sensible epochs before the big rate
    assert history["val_loss"][-1] > history["val_loss"][history.best_epoch()]
    # The parameters now are the best epoch's: they give its validation loss.
    assert trainer.evaluate(*val)[0] == pytest.approx(history["val_loss"][history.best_epoch()], rel=1e-6)


def test_schedule_sets_the_learning_rate_variable_each_epoch(circle):
    train, _, _ = circle
    trainer, _ = make_trainer(schedule=optim.InverseTime(0.1, 1.0))
    history = trainer.fit(train, epochs=4, batch_size=16, progress=False, verbose=False)
    np.testing.assert_allclose(history["learning_rate"], [0.1, 0.05, 0.1 / 3, 0.025], rtol=1e-6)
    assert trainer.optimizer.learning_rate.value == np.float32(0.025)


def test_interrupt_and_resume_continue_where_training_stopped(circle, tmp_path):
    train, val, _ = circle
    reference, model = make_trainer()
    reference.fit(train, val, epochs=3, batch_size=16, progress=False, verbose=False)
    expected = values(model.params)

    path = str(tmp_path / "run.npz")
    interrupted, model = make_trainer()

    def press_ctrl_c(trainer, step):
        if step == 13:  # in the middle of the second epoch (9 steps each)
            os.kill(os.getpid(), signal.SIGINT)

    history = interrupted.fit(train, val, epochs=3, batch_size=16, checkpoint=path,
                              progress=False, verbose=False, callback=press_ctrl_c)
    assert history.interrupted and len(history) == 1
    stopped_at = int(interrupted.steps_taken.value)
    assert 13 <= stopped_at <= 14  # the signal lands between steps, never inside one
    saved = np.load(path)
    for p in model.params:  # parameters intact, and the checkpoint holds exactly them
        np.testing.assert_array_equal(saved[p.name], p.value)
        assert np.all(np.isfinite(p.value))
    assert float(saved["trainer/steps"]) == stopped_at

    resumed, model = make_trainer()  # a fresh process would rebuild the model like this
    history = resumed.fit(train, val, epochs=3, batch_size=16, checkpoint=path, resume=True,
                          progress=False, verbose=False)
    assert not history.interrupted and len(history) == 3
    assert int(resumed.steps_taken.value) == 27
    assert int(resumed.optimizer.step.value) == 27
    for want, got in zip(expected, values(model.params)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_ctrl_c_during_a_compiled_call_stops_cleanly_and_resumes(circle, tmp_path):
    # Big batches make each step last milliseconds, so the signal lands inside the kernel.
    # Numba reports it as a SystemError while boxing the results; the Trainer must see a
    # Ctrl-C, after a step that was fully applied.
    x, y = np.tile(circle[0][0], (400, 1)), np.tile(circle[0][1], 400)
    reference, model = make_trainer()
    reference.fit((x, y), epochs=6, batch_size=96000, progress=False, verbose=False)
    expected = values(model.params)

    path = str(tmp_path / "run.npz")
    trainer, model = make_trainer()
    timer = threading.Timer(0.003, os.kill, (os.getpid(), signal.SIGINT))

    def start_timer(trainer, step):  # from inside the loop: the signal comes during step 2 or so
        if step == 1:
            timer.start()

    try:
        history = trainer.fit((x, y), epochs=4000, batch_size=96000, checkpoint=path,
                              progress=False, verbose=False, callback=start_timer)
    finally:
        timer.join()
    assert history.interrupted
    saved = np.load(path)
    assert float(saved["trainer/steps"]) == trainer.steps_taken.value == trainer.optimizer.step.value
    for p in model.params:
        np.testing.assert_array_equal(saved[p.name], p.value)

    resumed, model = make_trainer()
    resumed.fit((x, y), epochs=6, batch_size=96000, checkpoint=path, resume=True, progress=False,
                verbose=False)
    for want, got in zip(expected, values(model.params)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_resume_with_other_settings_is_refused(circle, tmp_path):
    train, _, _ = circle
    path = str(tmp_path / "run.npz")
    trainer, _ = make_trainer()
    trainer.fit(train, epochs=1, batch_size=16, checkpoint=path, progress=False, verbose=False)
    other, model = make_trainer(seed=1)
    before = values(model.params)
    with pytest.raises(ValueError, match="batch_size=16, this run has batch_size=8"):
        other.fit(train, epochs=2, batch_size=8, checkpoint=path, resume=True, progress=False)
    for a, b in zip(before, values(model.params)):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_parameters(tmp_path):
    path = str(tmp_path / "params.npz")
    model = nn.MLP([2, 4, 1], activation="tanh", seed=0)
    save_parameters(path, model.params)
    copy = nn.MLP([2, 4, 1], activation="tanh", seed=1)
    load_parameters(path, copy.params)
    for a, b in zip(model.params, copy.params):
        np.testing.assert_array_equal(a.value, b.value)
    wrong = nn.MLP([2, 5, 1], activation="tanh", seed=2)
    before = values(wrong.params)
    with pytest.raises(ValueError, match=r"'mlp/0/W' has shape \(2, 4\) in the file, \(2, 5\) in the model"):
        load_parameters(path, wrong.params)
    for a, b in zip(before, values(wrong.params)):  # nothing assigned, not even matching ones
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_parameters(str(tmp_path / "nope.npz"), model.params)
    twins = [sg.Variable(np.zeros(2), name="w"), sg.Variable(np.ones(2), name="w")]
    with pytest.raises(ValueError, match="two Variables are named 'w'"):
        save_parameters(path, twins)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("x_rows, y_values, x_features, message", [
    (10, [0] * 9 + [2], 2, r"train: binary label 2 is outside the class range 0..1"),
    (10, [0] * 9, 2, "train: x has 10 examples but y has 9"),
    (10, [0] * 10, 3, r"each example of x must have shape \(2,\).*got \(3,\)"),
])
def test_bad_training_data_is_refused_before_any_step(x_rows, y_values, x_features, message):
    trainer, model = make_trainer()
    before = values(model.params) + values(trainer.optimizer.variables)
    x = np.zeros((x_rows, x_features), np.float32)
    with pytest.raises(ValueError, match=message):
        trainer.fit((x, np.array(y_values)), epochs=1, progress=False)
    after = values(model.params) + values(trainer.optimizer.variables)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_label_outside_class_range_for_softmax():
    model = nn.Dense(2, 3, name="softmax3")
    x = sg.placeholder("x", (None, 2))
    y = sg.placeholder("y", (None, 3))
    trainer = Trainer(x, y, nn.softmax_cross_entropy(model(x), y), model.params, outputs=model(x))
    with pytest.raises(ValueError, match=r"train: one_hot: label 3 \(example 1\) is outside the class range 0..2"):
        trainer.fit((np.zeros((2, 2)), np.array([0, 3])), epochs=1, progress=False)
    assert trainer.step_function is None  # refused before compiling anything


def test_mismatched_batch_leaves_parameters_untouched():
    trainer, model = make_trainer()
    trainer.compile()
    before = values(model.params) + values(trainer.optimizer.variables)
    with pytest.raises(ValueError, match="x has 4 examples but y has 3"):
        trainer.train_step(np.zeros((4, 2)), np.zeros(3))
    # Straight into the compiled step, past the Trainer's checks: the kernel refuses too.
    with pytest.raises(ValueError, match="sizes differ|shape"):
        trainer.step_function(np.zeros((4, 2), np.float32), np.zeros((3, 1), np.float32))
    after = values(model.params) + values(trainer.optimizer.variables)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert trainer.steps_taken.value == 0


def test_without_tqdm_progress_falls_back_to_lines(circle, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    trainer, _ = make_trainer()
    trainer.fit(circle[0], circle[1], epochs=2, batch_size=16, progress=True, verbose=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch   1  loss") and "val_accuracy" in lines[0]


def test_progress_bar_with_tqdm(circle, capsys):
    pytest.importorskip("tqdm")
    trainer, _ = make_trainer()
    trainer.fit(circle[0], circle[1], epochs=2, batch_size=16, progress=True, verbose=False)
    assert "18/18" in capsys.readouterr().err


def test_after_ctrl_c_the_bar_and_the_message_count_the_same_steps(circle, capsys):
    pytest.importorskip("tqdm")
    trainer, _ = make_trainer()

    def interrupt(trainer, step):
        if step == 5:
            raise KeyboardInterrupt
    history = trainer.fit(circle[0], circle[1], epochs=2, batch_size=16, progress=True,
                          verbose=False, callback=interrupt)
    err = capsys.readouterr().err
    assert history.interrupted and int(trainer.steps_taken.value) == 5
    assert "interrupted after step 5" in err and "5/18" in err and "4/18" not in err.split("\r")[-2]


def test_history_json_round_trip():
    history = History([{"epoch": 1, "loss": 0.5, "val_loss": None}])
    again = History.from_json(history.to_json())
    assert again.records == history.records and again["val_loss"] == [None]
    assert again.best_epoch("val_loss") == 0


# ------------------------------------------------------------------------------ the command

def test_symgrad_demo_reaches_97_percent(tmp_path, capsys):
    out = str(tmp_path / "demo")
    assert cli.main(["demo", "--out", out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "time per train step" in printed and "compile time" in printed
    with open(os.path.join(out, "history.json")) as f:
        summary = json.load(f)["summary"]
    assert summary["test_accuracy"] >= 0.97
    assert summary["train_seconds"] < 60
    assert "def plan(" in open(os.path.join(out, "train_step.py")).read()
    graph = nx.read_graphml(os.path.join(out, "gradient_graph.graphml"))
    assert graph.number_of_nodes() > 20 and "matmul" in {d["op"] for _, d in graph.nodes(data=True)}
    assert os.path.getsize(os.path.join(out, "gradient_graph.txt")) > 0
    load_parameters(os.path.join(out, "parameters.npz"), nn.MLP([64, 256, 10]).params)
    try:
        import matplotlib  # noqa: F401
        assert os.path.getsize(os.path.join(out, "curves.png")) > 1000
    except ImportError:
        assert "matplotlib is not installed: skipping curves.png" in printed


def test_symgrad_train_on_a_playground_set(capsys):
    code = cli.main(["train", "--dataset", "circle", "--hidden", "16", "--activation", "tanh",
                     "--optimizer", "adam", "--lr", "0.02", "--epochs", "5", "--batch-size", "16",
                     "--out", "", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "MLP 2-16-1 (tanh)" in printed and "test accuracy" in printed


def test_symgrad_train_with_a_warm_up_cosine_schedule_and_clipping(capsys):
    code = cli.main(["train", "--dataset", "circle", "--epochs", "8", "--lr", "0.02",
                     "--schedule", "warmup-cosine", "--clip-norm", "0.5", "--out", "",
                     "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    rates = [float(line.split("lr ")[-1]) for line in printed.splitlines() if line.startswith("epoch")]
    # five warm-up epochs up to 0.02, then a cosine over the three left
    assert rates == pytest.approx([0.004, 0.008, 0.012, 0.016, 0.02, 0.02, 0.015, 0.005], rel=1e-5)


def test_symgrad_train_with_batch_norm_and_dropout(capsys):
    code = cli.main(["train", "--dataset", "circle", "--hidden", "16", "--epochs", "6",
                     "--batch-norm", "--dropout", "0.1", "--lr", "0.02", "--out", "", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "MLP 2-16-1 (relu, batch norm, dropout 0.1)" in printed
    accuracy = float(printed.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", "cnn", "--dropout", "0.2"])
    with pytest.raises(SystemExit):
        cli.main(["train", "--dropout", "1.5"])


def _showcase_command():
    """The `symgrad train ...` command the README shows beside the demo, as argv."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    command = readme.split("`symgrad train --dataset spiral")[1].split("`")[0]
    return ["train", "--dataset", "spiral"] + command.split()


@pytest.mark.parametrize("argv, least", [
    (["train", "--dataset", "circle"], 0.95), (["train", "--dataset", "gaussians"], 0.95),
    (["train", "--dataset", "xor"], 0.95), (["train", "--dataset", "spiral"], 0.95),
    (["train"], 0.97),            # the digits
    (_showcase_command(), 0.95),  # tanh, Nesterov: Xavier on 2 inputs sat on a plateau (0.6)
], ids=["circle", "gaussians", "xor", "spiral", "digits", "readme-showcase"])
def test_symgrad_train_learns_with_default_flags(argv, least, capsys):
    assert cli.main(argv + ["--out", "", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("test accuracy ")[1].split()[0])
    assert accuracy >= least, printed


def test_symgrad_train_on_an_mnist_folder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("test", 20)):
        labels = rng.integers(0, 2, n).astype(np.uint8)
        images = np.zeros((n, 1, 2), np.uint8)
        images[:, 0, 0] = np.where(labels == 1, 250, 10)
        images[:, 0, 1] = rng.integers(0, 255, n)
        images_name, labels_name = data.idx.MNIST_FILES[split]
        data.write_idx(str(tmp_path / images_name), images)
        data.write_idx(str(tmp_path / (labels_name + ".gz")), labels)
    code = cli.main(["train", "--dataset", f"mnist:{tmp_path}", "--hidden", "16", "--activation",
                     "tanh", "--lr", "0.05", "--epochs", "10", "--out", "", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "54 train, 6 validation, 20 test" in printed
    accuracy = float(printed.split("test accuracy ")[1].split()[0])
    assert accuracy >= 0.9


def test_symgrad_train_with_a_missing_dataset_path(tmp_path, capsys):
    assert cli.main(["train", "--dataset", f"mnist:{tmp_path / 'nowhere'}", "--out", ""]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "cifar", "--out", ""]) == 2
    assert "unknown dataset 'cifar'" in capsys.readouterr().err


def test_console_script_is_declared():
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"]["symgrad"] == "symgrad.cli:main"
    assert "matplotlib" in " ".join(project["optional-dependencies"]["plot"])
    assert "tqdm" in " ".join(project["optional-dependencies"]["progress"])
