"""Data for training: small built-in sets, MNIST's IDX reader, splits and minibatches.

In: sizes, seeds and (for MNIST) a local folder. Out: `(x, y)` NumPy pairs, x float32 with
one example per row, y int64 class labels; split and batch helpers over such pairs.

    xor()                          the four XOR points
    playground(name, n, noise)     2-D sets: "circle", "gaussians", "xor", "spiral"
    load_digits()                  1,797 8×8 digits, bundled (see README.md in this folder)
    shifted_copies(x, y)           augmentation: images moved by one pixel each way
    load_mnist(folder, split)      MNIST from its IDX files; read_idx(path) for one file
    split(x, y, val, test, seed)   (train, val, test) pairs, stratified by class
    minibatches(x, y, batch_size, seed, epoch)   shuffled batches, reproducible per epoch
    one_hot(labels, num_classes)   integer labels -> one-hot rows, range-checked
    load_dataset(name, seed)       (train, val, test) of "digits", a 2-D set or "mnist:FOLDER"
"""
from .batching import batch_indices, check_pair, epoch_order, minibatches, one_hot, split
from .datasets import (PLAYGROUND, circle, gaussians, load_digits, playground, shifted_copies,
                       spiral, xor, xor_quadrants)
from .idx import IDXFormatError, load_mnist, read_idx, write_idx
from .named import DATASETS, load_dataset
