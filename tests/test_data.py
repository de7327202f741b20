"""symgrad.data: built-in sets, the bundled digits, the IDX reader (on small files written
here, malformed ones included), splits, minibatches and one-hot labels. Compiles nothing."""
import os
import tomllib
from importlib import resources

import numpy as np
import pytest

from symgrad import data
from symgrad.data import IDXFormatError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_xor():
    x, y = data.xor()
    assert x.dtype == np.float32 and x.shape == (4, 2)
    np.testing.assert_array_equal(y, np.logical_xor(x[:, 0], x[:, 1]))


@pytest.mark.parametrize("name", data.PLAYGROUND)
def test_playground_sets(name):
    x, y = data.playground(name, n=101, noise=0.05, seed=3)
    assert x.shape == (101, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == {0, 1} and abs(np.mean(y) - 0.5) < 0.1
    assert np.abs(x).max() < 1.5
    x2, y2 = data.playground(name, n=101, noise=0.05, seed=3)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, data.playground(name, n=101, noise=0.05, seed=4)[0])


def test_playground_labels_follow_their_rule():
    x, y = data.playground("circle", n=400, seed=0)
    np.testing.assert_array_equal(y, (np.hypot(x[:, 0], x[:, 1]) < 0.6).astype(int))
    x, y = data.playground("xor", n=400, seed=0)
    np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] > 0).astype(int))
    with pytest.raises(ValueError, match="unknown playground set 'moons'.*spiral"):
        data.playground("moons")


def test_bundled_digits():
    x, y = data.load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert x.min() == 0 and x.max() == 1
    assert np.all(np.bincount(y) >= 174) and y.max() == 9
    raw, _ = data.load_digits(scale=False)
    assert raw.max() == 16 and np.all(raw == np.round(raw))
    # It ships inside the package, with its attribution, and setuptools packages it.
    files = resources.files("symgrad.data")
    assert files.joinpath("digits.csv.gz").is_file()
    assert "Alpaydin" in files.joinpath("README.md").read_text(encoding="utf-8")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["symgrad.data"]
    assert "*.csv.gz" in package_data and "README.md" in package_data


def test_shifted_copies():
    images = np.arange(2 * 9, dtype=np.float32).reshape(2, 9)
    x, y = data.shifted_copies(images, np.array([3, 5]), image_shape=(3, 3), shifts=((0, 1), (-1, 0)))
    assert x.shape == (6, 9) and list(y) == [3, 5, 3, 5, 3, 5]
    np.testing.assert_array_equal(x[2].reshape(3, 3), [[0, 0, 1], [0, 3, 4], [0, 6, 7]])
    np.testing.assert_array_equal(x[4].reshape(3, 3), [[3, 4, 5], [6, 7, 8], [0, 0, 0]])


# ------------------------------------------------------------------------------ splits, batches

def test_split_is_disjoint_stratified_and_reproducible():
    x = np.arange(300, dtype=np.float32).reshape(100, 3)
    y = np.repeat(np.arange(4), 25)
    (xt, yt), (xv, yv), (xs, ys) = data.split(x, y, val=0.2, test=0.2, seed=1)
    assert (len(xt), len(xv), len(xs)) == (60, 20, 20)
    ids = np.concatenate([xt[:, 0], xv[:, 0], xs[:, 0]])
    assert len(np.unique(ids)) == 100
    assert list(np.bincount(ys)) == [5, 5, 5, 5]
    np.testing.assert_array_equal(y[(xs[:, 0] / 3).astype(int)], ys)  # rows stay with labels
    np.testing.assert_array_equal(data.split(x, y, val=0.2, test=0.2, seed=1)[2][0], xs)
    with pytest.raises(ValueError, match="val=0.6 and test=0.5"):
        data.split(x, y, val=0.6, test=0.5)
    with pytest.raises(ValueError, match="x has 100 examples but y has 99"):
        data.split(x, y[:99])


def test_minibatches_cover_every_example_once_per_epoch():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    batches = list(data.minibatches(x, y, 4, seed=0, epoch=0))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen) == list(range(10))
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb)
    again = np.concatenate([b[1] for b in data.minibatches(x, y, 4, seed=0, epoch=0)])
    other = np.concatenate([b[1] for b in data.minibatches(x, y, 4, seed=0, epoch=1)])
    np.testing.assert_array_equal(seen, again)
    assert not np.array_equal(seen, other)
    assert [len(b[0]) for b in data.minibatches(x, y, 4, drop_last=True)] == [4, 4]
    np.testing.assert_array_equal(data.batch_indices(5, 2, shuffle=False)[2], [4])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        data.batch_indices(5, 0)


def test_one_hot_checks_labels():
    np.testing.assert_array_equal(data.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    assert data.one_hot([1], 2).dtype == np.float32
    np.testing.assert_array_equal(data.one_hot(np.array([1.0, 0.0]), 2), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"label 10 \(example 2\) is outside the class range 0..9"):
        data.one_hot([1, 2, 10], 10)
    with pytest.raises(ValueError, match="label -1"):
        data.one_hot([-1], 10)
    with pytest.raises(ValueError, match="label 1.5 is not a whole number"):
        data.one_hot([1.5], 3)
    with pytest.raises(ValueError, match="1-D array"):
        data.one_hot([[1]], 3)


# ------------------------------------------------------------------------------ IDX / MNIST

@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24) - 5).reshape(2, 3, 4).astype(dtype) if dtype != "uint8" else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = str(tmp_path / f"a.idx{suffix}")
    data.write_idx(path, array)
    back = data.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def _header(code, dims):
    return bytes([0, 0, code, len(dims)]) + np.array(dims, ">u4").tobytes()


@pytest.mark.parametrize("content, message", [
    (b"", "too short for an IDX header"),
    (b"\x00\x00\x08", "too short"),
    (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x07", "bad magic number"),
    (_header(0x07, [3]) + b"abc", "unknown data type code 0x07"),
    (bytes([0, 0, 8, 0]), "zero dimensions"),
    (bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02", "header declares 3 dimensions but the file ends"),
    (_header(0x08, [2, 3]) + bytes(5), r"shape \(2, 3\) of u1 \(6 bytes of data\) but the file holds 5"),
    (_header(0x08, [2, 3]) + bytes(7), "but the file holds 7"),
    (_header(0x0C, [2]) + bytes(4), r"\(8 bytes of data\) but the file holds 4"),
    (b"\x1f\x8b\x08\x00garbage", "gzip-compressed but cannot be decompressed"),
])
def test_malformed_idx_files_are_rejected_clearly(tmp_path, content, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(IDXFormatError, match=message):
        data.read_idx(str(path))


def test_missing_idx_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.read_idx(str(tmp_path / "nope.idx"))


def _write_mnist(folder, n=6, split="train", gz=False, labels_n=None):
    rng = np.random.default_rng(0)
    images_name, labels_name = data.idx.MNIST_FILES[split]
    suffix = ".gz" if gz else ""
    images = rng.integers(0, 256, (n, 2, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, labels_n or n).astype(np.uint8)
    data.write_idx(os.path.join(folder, images_name + suffix), images)
    data.write_idx(os.path.join(folder, labels_name + suffix), labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_a_folder(tmp_path, gz):
    images, labels = _write_mnist(str(tmp_path), gz=gz)
    x, y = data.load_mnist(str(tmp_path), "train")
    assert x.shape == (6, 6) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x, images.reshape(6, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST folder '.*missing' does not exist"):
        data.load_mnist(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="has no train-images-idx3-ubyte"):
        data.load_mnist(str(tmp_path))
    _write_mnist(str(tmp_path), labels_n=5)
    with pytest.raises(IDXFormatError, match="6 images but 5 labels"):
        data.load_mnist(str(tmp_path))
    data.write_idx(str(tmp_path / "train-images-idx3-ubyte"), np.zeros((5, 4), np.uint8))
    with pytest.raises(IDXFormatError, match="images must be 3-D"):
        data.load_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_mnist(str(tmp_path), "validation")
