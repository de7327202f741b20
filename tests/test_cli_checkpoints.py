"""Bad input to the `symgrad` command and to checkpoint/parameter files gets one clear error
and changes nothing: every flag is checked (exit status 2, a line naming the flag); a
truncated, corrupt or foreign checkpoint, or a missing one, is refused, naming the path,
before any Variable, the step count or the history is touched; a save interrupted by Ctrl-C
leaves the previous file intact and no temporary file behind.

One 2-16-1 tanh Adam Trainer (the network of test_train.py: compiled once) serves the module."""
import copy
import os
import stat

import numpy as np
import pytest

from symgrad import cli, data, nn, optim
from symgrad.core.graph import Variable
from symgrad.train import classifier, load_parameters, save_parameters


# ------------------------------------------------------------------------------ the command

def fails(argv, capsys):
    """Run the command expecting argparse's refusal; returns stderr's last line."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1]


@pytest.mark.parametrize("flag, value, accepted", [
    ("--hidden", "abc", "whole number >= 1"),
    ("--hidden", "0", "whole number >= 1"),
    ("--hidden", "32,,32", "whole number >= 1"),
    ("--hidden", "32,-4", "whole number >= 1"),
    ("--hidden", "1.5", "whole number >= 1"),
    ("--batch-size", "0", "whole number >= 1"),
    ("--batch-size", "ten", "whole number >= 1"),
    ("--epochs", "0", "whole number >= 1"),
    ("--epochs", "-3", "whole number >= 1"),
    ("--epochs", "2.5", "whole number >= 1"),
    ("--lr", "-1", "finite number > 0"),
    ("--lr", "0", "finite number > 0"),
    ("--lr", "nan", "finite number > 0"),
    ("--lr", "inf", "finite number > 0"),
    ("--lr", "fast", "finite number > 0"),
    ("--weight-decay", "-0.1", "finite number >= 0"),
    ("--weight-decay", "nan", "finite number >= 0"),
    ("--seed", "-1", "whole number >= 0"),
    ("--patience", "0", "whole number >= 1"),
    ("--rank", "0", "whole number >= 1"),
    ("--activation", "swish", "choose from"),
    ("--optimizer", "lbfgs", "choose from"),
    ("--schedule", "sawtooth", "choose from"),
    ("--checkpoint", "", "file path"),
])
def test_each_bad_flag_is_one_line_naming_it(flag, value, accepted, capsys):
    line = fails(["train", "--out", "", flag, value], capsys)
    assert line.startswith(f"symgrad train: error: argument {flag}: "), line
    assert accepted in line


def test_demo_flags_are_checked_too(capsys):
    line = fails(["demo", "--epochs", "0"], capsys)
    assert line.startswith("symgrad demo: error: argument --epochs: ") and ">= 1" in line


def test_paths_are_checked(tmp_path, capsys):
    line = fails(["train", "--out", "", "--checkpoint", str(tmp_path)], capsys)
    assert "argument --checkpoint:" in line and "is a folder" in line
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    line = fails(["train", "--out", str(a_file)], capsys)
    assert "argument --out:" in line and "is a file" in line


def test_resume_needs_a_checkpoint(capsys):
    line = fails(["train", "--out", "", "--resume"], capsys)
    assert "argument --resume: needs --checkpoint" in line


def test_an_existing_checkpoint_is_not_overwritten_without_resume(tmp_path, capsys):
    path = tmp_path / "run.npz"
    path.write_bytes(b"an earlier run")
    line = fails(["train", "--out", "", "--checkpoint", str(path)], capsys)
    assert "argument --checkpoint:" in line and "already exists" in line and "--resume" in line
    assert path.read_bytes() == b"an earlier run"


def test_good_values_parse():
    args = cli._parser().parse_args(["train", "--hidden", "32, 16", "--lr", "1e-2",
                                     "--weight-decay", "0"])
    assert args.hidden == [32, 16] and args.lr == 0.01 and args.weight_decay == 0.0
    assert cli._parser().parse_args(["train", "--hidden", ""]).hidden == []
    assert cli._parser().parse_args(["train"]).hidden is None  # filled by dataset:
    assert cli.fill_defaults(cli._parser().parse_args(["train"])).hidden == [256]
    spiral = cli.fill_defaults(cli._parser().parse_args(["train", "--dataset", "spiral", "--lr", "0.05"]))
    assert (spiral.hidden, spiral.lr, spiral.epochs, spiral.augment) == ([32, 32], 0.05, 100, False)
    cnn = cli.fill_defaults(cli._parser().parse_args(["train", "--model", "cnn", "--no-augment"]))
    assert (cnn.hidden, cnn.augment, cnn.epochs) == ([128], False, 20)


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 256 for digits, 128 for MNIST, 32,32 for 2-D sets, 128 for "
                    "--model cnn)", "(default: 32)", "(default: 0.001 for digits, 0.001 for "
                    "MNIST, 0.01 for 2-D sets)", "(default: adam)", "(default: digits)",
                    "(default: 20 for digits, 20 for MNIST, 100 for 2-D sets)",
                    "(default: on for digits, off for MNIST, off for 2-D sets, off for --model cnn)"):
        assert default in text, default


def test_a_corrupt_checkpoint_to_resume_from_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "run.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    code = cli.main(["train", "--dataset", "circle", "--hidden", "16", "--activation", "tanh",
                     "--out", "", "--no-progress", "--checkpoint", str(path), "--resume"])
    assert code == 2
    err = capsys.readouterr().err
    assert str(path) in err and "corrupt" in err
    assert path.read_bytes() == b"PK\x03\x04 not really a zip"


def test_train_a_cnn_from_the_command_line(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "digits", "--model", "cnn", "--epochs", "6",
                     "--out", "", "--no-progress", "--checkpoint", str(tmp_path / "cnn.npz")])
    assert code in (None, 0)
    out = capsys.readouterr().out
    assert "CNN 8×8 conv 16, 32 -> 128 -> 10" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.93, out  # six epochs of the 1169 training images
    with pytest.raises(SystemExit, match="needs square images"):
        cli.main(["train", "--dataset", "xor", "--model", "cnn", "--out", "", "--no-progress",
                  "--checkpoint", str(tmp_path / "xor.npz")])


def test_a_cnn_trains_on_mnist_idx_files(tmp_path, capsys):
    # a tiny stand-in for MNIST in its IDX files (28×28 images: a bright bar whose place is
    # the class), read by the same loader as the real thing
    from symgrad.data.idx import MNIST_FILES, write_idx
    rng = np.random.default_rng(0)
    for split, count in (("train", 300), ("test", 60)):
        labels = rng.integers(0, 3, count).astype(np.uint8)
        images = rng.integers(0, 40, (count, 28, 28)).astype(np.uint8)
        for k in range(3):
            images[labels == k, 4 + 8 * k:10 + 8 * k, 4:24] = 255
        image_file, label_file = MNIST_FILES[split]
        write_idx(str(tmp_path / image_file), images)
        write_idx(str(tmp_path / label_file), labels)
    code = cli.main(["train", "--dataset", f"mnist:{tmp_path}", "--model", "cnn", "--epochs", "2",
                     "--hidden", "32", "--out", "", "--no-progress",
                     "--checkpoint", str(tmp_path / "run.npz")])
    assert code in (None, 0)
    out = capsys.readouterr().out
    assert "CNN 28×28 conv 16, 32 -> 32 -> 3" in out
    assert float(out.split("test accuracy ")[1].split()[0]) > 0.9, out


# ------------------------------------------------------------------------------ checkpoints

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A trained Trainer, the checkpoint it wrote after epoch 1 (`good`), and its state now,
    two epochs on, which differs from the checkpoint's everywhere."""
    x, y = data.playground("circle", n=120, noise=0.05, seed=0)
    train, val, _ = data.split(x, y, val=0.2, test=0.2, seed=0)
    model = nn.MLP([2, 16, 1], activation="tanh", seed=0)
    trainer = classifier(model, 2, optim.Adam(0.02))
    good = str(tmp_path_factory.mktemp("checkpoints") / "good.npz")
    trainer.fit(train, val, epochs=1, batch_size=16, patience=5, checkpoint=good,
                progress=False, verbose=False)
    trainer.fit(train, val, epochs=3, batch_size=16, progress=False, verbose=False)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    return trainer, good, arrays


def state(trainer):
    return ({name: v.value.copy() for name, v in trainer._state().items()},
            trainer.history, copy.deepcopy(trainer.history.records),
            None if trainer._best is None else {k: v.copy() for k, v in trainer._best.items()})


def assert_unchanged(trainer, before):
    values, history, records, best = before
    now = {name: v.value for name, v in trainer._state().items()}
    assert now.keys() == values.keys()
    for name in values:
        np.testing.assert_array_equal(now[name], values[name], err_msg=name)
    assert trainer.history is history and trainer.history.records == records
    assert (trainer._best is None) == (best is None)
    for name in best or {}:
        np.testing.assert_array_equal(trainer._best[name], best[name])


def write(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def changed(arrays, **updates):
    out = dict(arrays)
    for key, value in updates.items():
        if value is None:
            del out[key]
        else:
            out[key] = value
    return out


def corrupt_cases(arrays, good_bytes):
    """(name, writer(path), phrase the error must contain)."""
    w0 = "mlp/0/W"
    steps = "trainer/steps"

    def arrays_case(**updates):
        return lambda path: write(path, changed(arrays, **updates))

    def bytes_case(content):
        return lambda path: open(path, "wb").write(content)

    flipped = bytearray(good_bytes)
    middle = len(flipped) // 2
    flipped[middle:middle + 8] = bytes(b ^ 0xFF for b in flipped[middle:middle + 8])
    return [
        ("truncated", bytes_case(good_bytes[:len(good_bytes) // 2]), "corrupt"),
        ("random bytes", bytes_case(np.random.default_rng(0).bytes(4000)), "corrupt"),
        ("empty", bytes_case(b""), "corrupt"),
        ("bytes flipped", bytes_case(bytes(flipped)), "corrupt"),
        ("a single .npy", lambda path: np.save(open(path, "wb"), arrays[w0]), "single array"),
        ("history not JSON", arrays_case(__history__=np.array('[{"epoch": 1, "lo')), "__history__"),
        ("history not a list", arrays_case(__history__=np.array('{"epoch": 1}')), "__history__"),
        ("history records not dicts", arrays_case(__history__=np.array("[1, 2]")), "__history__"),
        ("history a number array", arrays_case(__history__=np.zeros(3)), "__history__"),
        ("no history", arrays_case(__history__=None), "__history__"),
        ("meta not JSON", arrays_case(__meta__=np.array("{batch")), "__meta__"),
        ("no meta", arrays_case(__meta__=None), "__meta__"),
        ("negative steps", arrays_case(**{steps: np.float64(-1)}), "step count"),
        ("fractional steps", arrays_case(**{steps: np.float64(2.5)}), "step count"),
        ("nan steps", arrays_case(**{steps: np.float64(np.nan)}), "step count"),
        ("a name missing", arrays_case(**{w0: None}), f"'{w0}' is missing"),
        ("another shape", arrays_case(**{w0: np.zeros((2, 8), np.float32)}), "has shape (2, 8)"),
        ("another dtype", arrays_case(**{w0: arrays[w0].astype(np.float64)}), "dtype float64"),
        ("text for numbers", arrays_case(**{w0: np.full((2, 16), "x")}), "dtype <U1"),
        ("an extra name", arrays_case(**{"mlp/2/W": np.zeros((1, 1), np.float32)}), "'mlp/2/W'"),
        ("best of another shape", arrays_case(**{"best:" + w0: np.zeros(3, np.float32)}),
         f"'best:{w0}' has shape (3,)"),
    ]


def test_corrupt_or_foreign_checkpoints_change_nothing(setup, tmp_path):
    trainer, good, arrays = setup
    with open(good, "rb") as f:
        good_bytes = f.read()
    before = state(trainer)
    # The good checkpoint differs from the current state, so a partial load would show.
    assert not np.array_equal(arrays["mlp/0/W"], before[0]["mlp/0/W"])
    assert int(arrays["trainer/steps"]) != int(before[0]["trainer/steps"])
    for name, make, phrase in corrupt_cases(arrays, good_bytes):
        path = str(tmp_path / (name.replace(" ", "_") + ".npz"))
        make(path)
        with pytest.raises(ValueError) as error:
            trainer.load_checkpoint(path)
        message = str(error.value)
        assert path in message and phrase in message, (name, message)
        assert_unchanged(trainer, before)


def test_a_missing_checkpoint_names_the_path(setup, tmp_path):
    trainer, _, _ = setup
    before = state(trainer)
    path = str(tmp_path / "nowhere" / "run.npz")
    with pytest.raises(FileNotFoundError, match="does not exist") as error:
        trainer.load_checkpoint(path)
    assert path in str(error.value)
    assert_unchanged(trainer, before)


def test_a_good_checkpoint_still_loads_and_the_settings_are_checked_first(setup, tmp_path):
    trainer, good, arrays = setup
    before = state(trainer)
    with pytest.raises(ValueError, match="batch_size=16, this run has batch_size=8"):
        trainer.load_checkpoint(good, expect={"batch_size": 8})
    assert_unchanged(trainer, before)
    try:
        meta = trainer.load_checkpoint(good)
        assert meta["batch_size"] == 16
        for name, v in trainer._state().items():
            np.testing.assert_array_equal(v.value, arrays[name])
        assert len(trainer.history) == 1 and trainer._best is not None
    finally:  # put the module's Trainer back as it was
        for name, v in trainer._state().items():
            v.value = before[0][name]
        trainer.history, trainer._best = before[1], before[3]


def test_ctrl_c_while_loading_puts_everything_back(setup, monkeypatch):
    trainer, good, _ = setup
    before = state(trainer)
    original = Variable.value
    calls = []

    def setter(self, new):
        calls.append(self.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        original.fset(self, new)

    monkeypatch.setattr(Variable, "value", property(original.fget, setter))
    with pytest.raises(KeyboardInterrupt):
        trainer.load_checkpoint(good)
    monkeypatch.undo()
    assert_unchanged(trainer, before)


def test_ctrl_c_during_a_save_keeps_the_previous_checkpoint(setup, tmp_path, monkeypatch):
    trainer, good, arrays = setup
    path = str(tmp_path / "run.npz")
    with open(good, "rb") as f:
        previous = f.read()
    with open(path, "wb") as f:
        f.write(previous)
    real_savez = np.savez

    def interrupted(file, **kwargs):
        real_savez(file, **kwargs)
        file.seek(len(previous) // 3)
        file.truncate()  # half-written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint(path)
    with pytest.raises(KeyboardInterrupt):
        save_parameters(path, trainer.params)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["run.npz"]  # no temporary file left behind
    with open(path, "rb") as f:
        assert f.read() == previous
    before = state(trainer)
    try:
        trainer.load_checkpoint(path)  # still loadable: the epoch-1 state
        np.testing.assert_array_equal(trainer.params[0].value, arrays[trainer.params[0].name])
    finally:
        for name, v in trainer._state().items():
            v.value = before[0][name]
        trainer.history, trainer._best = before[1], before[3]


def test_a_failed_save_names_the_path_and_keeps_the_file(setup, tmp_path, monkeypatch):
    trainer, good, _ = setup
    path = str(tmp_path / "run.npz")
    with open(path, "wb") as f:
        f.write(b"previous")

    def full(file, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match="No space left on device") as error:
        trainer.save_checkpoint(path)
    monkeypatch.undo()
    assert path in str(error.value)
    assert os.listdir(tmp_path) == ["run.npz"]
    with open(path, "rb") as f:
        assert f.read() == b"previous"
    with pytest.raises(IsADirectoryError, match="is a folder"):
        save_parameters(str(tmp_path), trainer.params)


def test_saving_keeps_the_file_mode(setup, tmp_path):
    trainer, _, _ = setup
    path = str(tmp_path / "params.npz")
    save_parameters(path, trainer.params)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask  # as open() would make it
    os.chmod(path, 0o640)
    save_parameters(path, trainer.params)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_load_parameters_refuses_another_model_and_changes_nothing(tmp_path):
    model = nn.MLP([2, 4, 1], activation="tanh", seed=0)
    path = str(tmp_path / "params.npz")
    save_parameters(path, model.params)
    other = nn.MLP([2, 4, 1], activation="tanh", seed=1)
    before = [p.value.copy() for p in other.params]
    cases = {
        "extra": ({**{p.name: p.value for p in model.params}, "mlp/2/W": np.zeros(1, np.float32)},
                  "'mlp/2/W', which the model lacks"),
        "float64": ({p.name: p.value.astype(np.float64) for p in model.params},
                    "has dtype float64 in the file, float32 in the model"),
    }
    for name, (arrays, phrase) in cases.items():
        bad = str(tmp_path / f"{name}.npz")
        write(bad, arrays)
        with pytest.raises(ValueError, match=phrase) as error:
            load_parameters(bad, other.params)
        assert bad in str(error.value)
        for a, p in zip(before, other.params):
            np.testing.assert_array_equal(a, p.value)
    half = str(tmp_path / "half.npz")
    with open(path, "rb") as f, open(half, "wb") as g:
        g.write(f.read()[:200])
    with pytest.raises(ValueError, match="corrupt") as error:
        load_parameters(half, other.params)
    assert half in str(error.value)
    load_parameters(path, other.params)
    for a, b in zip(model.params, other.params):
        np.testing.assert_array_equal(a.value, b.value)
