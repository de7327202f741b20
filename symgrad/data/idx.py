"""MNIST's IDX files, read from a local path (no network).

In: a path to an IDX file (optionally gzip-compressed), or a folder holding MNIST's four files.
Out: NumPy arrays; for MNIST, images as float32 rows in [0, 1] and int64 labels.

IDX layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code byte, the number
of dimensions, then each dimension as a big-endian uint32, then the data, big-endian.
Anything else is rejected with an `IDXFormatError` that says what is wrong and where.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IDXFormatError(ValueError):
    """A file that is not a well-formed IDX file."""


def _read_bytes(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"IDX file {path!r} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":  # gzip magic: MNIST is usually distributed compressed
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise IDXFormatError(f"{path}: looks gzip-compressed but cannot be decompressed ({error})") from None
    return data


def read_idx(path):
    """The array stored in the IDX file at `path` (plain or .gz), in native byte order."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(f"{path}: bad magic number {data[:4].hex()}: an IDX file starts "
                             f"with two zero bytes")
    code, ndim = data[2], data[3]
    if code not in _TYPES:
        raise IDXFormatError(f"{path}: unknown data type code 0x{code:02x}; expected one of "
                             + ", ".join(f"0x{c:02x}" for c in _TYPES))
    if ndim == 0:
        raise IDXFormatError(f"{path}: zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path}: header declares {ndim} dimensions but the file ends after "
                             f"{len(data)} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        raise IDXFormatError(f"{path}: header declares shape {shape} of {dtype.str[1:]} "
                             f"({expected} bytes of data) but the file holds {actual}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder, name):
    for candidate in (name, name + ".gz", name.replace("-idx", ".idx")):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"MNIST folder {folder!r} has no {name} (or {name}.gz)")


def load_mnist(folder, split="train"):
    """MNIST's `split` ("train" or "test") from the IDX files in `folder`: x (n, rows·cols)
    float32 in [0, 1], y (n,) int64."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"MNIST folder {folder!r} does not exist")
    if split not in MNIST_FILES:
        raise ValueError(f"load_mnist: split must be 'train' or 'test', not {split!r}")
    image_name, label_name = MNIST_FILES[split]
    images = read_idx(_find(folder, image_name))
    labels = read_idx(_find(folder, label_name))
    if images.ndim != 3:
        raise IDXFormatError(f"{image_name}: images must be 3-D (n, rows, cols), got shape {images.shape}")
    if labels.ndim != 1:
        raise IDXFormatError(f"{label_name}: labels must be 1-D, got shape {labels.shape}")
    if len(images) != len(labels):
        raise IDXFormatError(f"{folder}: {len(images)} images but {len(labels)} labels")
    x = images.reshape(len(images), -1).astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    return x, labels.astype(np.int64)


def write_idx(path, array):
    """Write `array` as an IDX file (gzip-compressed if `path` ends in .gz): for tests and
    for making small MNIST-like sets."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _TYPES.items()}
    dtype = array.dtype.newbyteorder("=")
    if dtype not in codes:
        raise TypeError(f"write_idx: dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    payload = header + array.astype(np.dtype(_TYPES[codes[dtype]])).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
