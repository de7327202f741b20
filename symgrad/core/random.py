"""Random numbers in the graph: a counter-based generator whose key and counter live in a
Variable, so a train step that draws (dropout) stays one compiled call, a run is reproducible
from its seed, and the compile cache still hits.

In: a seed, and the shapes to draw (sizes known only at call time among them: x.shape).
Out: `Generator`, whose draws are `random` nodes reading its `state` Variable; the module's
functions `uniform`, `normal`, `bernoulli` draw from a default generator (`seed` resets it).

The generator is Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
2011; the generator of PyTorch's and cuRAND's GPU streams): a bijection of a 128-bit counter
under a 64-bit key, ten rounds of two 32×32→64-bit products. Nothing is carried from one
number to the next, so element i of a draw is a function of (key, counter) alone, computed in
any order: a flat loop, vectorised, and the same in NumPy (the reference below) and in the
compiled kernels (kernels.random_uniform, random_normal). The counter of a draw's block b of four 32-bit words
is (b, salt, step low word, step high word): `salt` tells the draws of one graph apart, and
`step` is the state's counter, which every compiled call of a function that draws advances
by one (function.py adds the update), so each step draws afresh. `sg.evaluate` reads the
state and leaves it, as it leaves every Variable.

Floats from words: a float32 takes one word's top 24 bits, a float64 two words' top 53 bits,
uniform on [0, 1) with every value a multiple of 2^-24 (2^-53). Normals are Box-Muller on
two uniforms: sqrt(-2 log(1 - u1)) cos(2π u2), computed in float64.
"""
from __future__ import annotations

import numpy as np

from .dims import as_dim, is_known
from .graph import ShapeError, Variable, is_integer, make
from .ops import Op, add, fmt, greater, multiply, register

__all__ = ["Generator", "uniform", "normal", "bernoulli", "seed", "default_generator",
           "philox", "advance"]

MASK = 0xFFFFFFFF
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)   # Philox4x32's round multipliers
WEYL = (0x9E3779B9, 0xBB67AE85)          # its key schedule: golden ratio, sqrt(3) - 1
ROUNDS = 10


def philox(counter, key, rounds=ROUNDS):
    """Philox4x32-`rounds` of `counter` (four arrays of 32-bit words, one block per element)
    under `key` (two 32-bit words): the four output words, as uint64 arrays."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) & MASK for c in counter)
    k0, k1 = np.uint64(key[0] & MASK), np.uint64(key[1] & MASK)
    m0, m1 = np.uint64(MULTIPLIERS[0]), np.uint64(MULTIPLIERS[1])
    mask, w0, w1, shift = np.uint64(MASK), np.uint64(WEYL[0]), np.uint64(WEYL[1]), np.uint64(32)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
        p0, p1 = c0 * m0, c2 * m1  # < 2^64: no wrap
        c0, c1, c2, c3 = (p1 >> shift) ^ c1 ^ k0, p1 & mask, (p0 >> shift) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


def words_per_element(distribution, dtype):
    """32-bit words one element takes: 1 or 2 per uniform (float32, float64), twice that
    for a normal (two uniforms). Each divides 4, so blocks are never shared by a split."""
    return (1 if np.dtype(dtype).itemsize == 4 else 2) * (2 if distribution == "normal" else 1)


def _np_words(state, salt, count):
    """The first `count` 32-bit words of the draw `salt` at `state` (key, step), uint64."""
    key, step = int(state[0]), int(state[1])
    blocks = np.arange(-(-count // 4), dtype=np.uint64)
    n = blocks.size
    counter = (blocks, np.full(n, salt, np.uint64), np.full(n, step & MASK, np.uint64),
               np.full(n, (step >> 32) & MASK, np.uint64))
    words = np.stack(philox(counter, (key & MASK, (key >> 32) & MASK)), axis=1)
    return words.reshape(-1)[:count]


def _uniform_from_words(words, dtype):
    """Uniform floats on [0, 1) in float64 from words grouped one (float32) or two (float64)
    per value, as kernels._unit does."""
    if np.dtype(dtype).itemsize == 4:
        return (words[:, 0] >> np.uint64(8)).astype(np.float64) * 2.0 ** -24
    high = (words[:, 0] >> np.uint64(5)).astype(np.float64)
    return (high * 2.0 ** 26 + (words[:, 1] >> np.uint64(6)).astype(np.float64)) * 2.0 ** -53


def _np_random(arrays, attrs):
    distribution, dtype, shape = attrs["distribution"], attrs["dtype"], attrs["shape"]
    count = int(np.prod(shape, dtype=np.int64))
    w = words_per_element(distribution, dtype)
    words = _np_words(arrays[0], attrs["salt"], count * w).reshape(count, w)
    if distribution == "uniform":
        values = _uniform_from_words(words, dtype)
    else:
        half = w // 2
        u1 = _uniform_from_words(words[:, :half], dtype)
        u2 = _uniform_from_words(words[:, half:], dtype)
        values = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)
    return values.astype(dtype).reshape(shape)


def _infer_random(inputs, attrs):
    state = inputs[0]
    if not is_integer(state) or state.shape != (2,):
        raise ShapeError(f"random: the generator state must be an int64 Variable of shape (2,) "
                         f"(key, counter), got {fmt(state.shape)} {state.dtype}")
    return attrs["shape"], attrs["dtype"]


def _emit_random(code, node, out, args):
    dims = [code.size(d) for d in node.shape]
    code.line(f"{out} = {code.alloc(node, out, dims)}")
    kernel = f"kernels.random_{node.attrs['distribution']}"  # random_uniform, random_normal
    code.call(f"{kernel}({{0}}, {{1}}, {{2}})", args[0], node.attrs["salt"], f"{out}.reshape(-1)")


# A draw: nothing differentiates through it (its state is integer), and its value is fixed
# by (state, salt), so interpreting and compiling a graph give the same numbers.
register(Op("random", infer=_infer_random, numpy=_np_random, emit=_emit_random,
            writes_output=True, integer_inputs=(0,), draws=True))


def _np_advance(arrays, attrs):
    key, step = (int(v) for v in arrays[0])
    return np.array([key, step + 1], np.int64)


def _emit_advance(code, node, out, args):
    code.compute(node, out, [2], "kernels.advance_counter({0}, {1})", args[0])


register(Op("advance", infer=lambda inputs, attrs: ((2,), "int64"), numpy=_np_advance,
            emit=_emit_advance, writes_output=True, integer_inputs=(0,)))


def advance(state):
    """The generator state `state` with its counter one step on: the update a function that
    draws from it makes on every call."""
    return make("advance", [state])


class Generator:
    """A stream of random numbers: `state` is an int64 Variable (key = seed, counter = 0 at
    the start). Each draw method returns a node; each draw of one generator is a different
    stream (its salt), and each call of a compiled function that draws advances the counter,
    so a train step masks afresh every step while the run stays reproducible from the seed.
    Save and restore `state` (its `.value`) with the parameters to resume a run exactly."""

    def __init__(self, seed=0, name="rng"):
        self.state = Variable(np.array([_seed_value(seed), 0], np.int64), name=f"{name}/state",
                              dtype="int64")
        self._draws = 0

    def seed(self, seed):
        """Start the stream again from `seed` (the counter back to 0)."""
        self.state.value = np.array([_seed_value(seed), 0], np.int64)

    def _draw(self, distribution, shape, dtype):
        dtype = np.dtype(dtype).name
        if dtype not in ("float32", "float64"):
            raise TypeError(f"random: draws are float32 or float64, not {dtype}")
        if isinstance(shape, (int, np.integer)):
            shape = (shape,)
        shape = tuple(as_dim(d) for d in shape)
        if any(is_known(d) and d < 0 for d in shape):
            raise ShapeError(f"random: shape {fmt(shape)} has a negative size")
        salt = self._draws
        self._draws += 1
        return make("random", [self.state], {"distribution": distribution, "shape": shape,
                                             "dtype": dtype, "salt": salt})

    def uniform(self, shape, low=0.0, high=1.0, dtype="float32"):
        """Uniform on [low, high), of `shape` (sizes, or symbolic sizes such as x.shape)."""
        u = self._draw("uniform", shape, dtype)
        if (low, high) == (0.0, 1.0):
            return u
        return add(multiply(u, high - low), low)

    def normal(self, shape, mean=0.0, std=1.0, dtype="float32"):
        """Normal with `mean` and standard deviation `std`."""
        z = self._draw("normal", shape, dtype)
        if (mean, std) == (0.0, 1.0):
            return z
        return add(multiply(z, std), mean)

    def bernoulli(self, shape, p=0.5, dtype="float32"):
        """1 with probability `p` (a number, or a node that broadcasts), else 0."""
        return greater(p, self._draw("uniform", shape, dtype))


def _seed_value(seed):
    if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"random: a seed is an int in 0..2**63-1, got {seed!r}")
    return int(seed)


default_generator = Generator(0, name="random")


def seed(value):
    """Reset the default generator (what `uniform`, `normal` and `bernoulli` draw from)."""
    default_generator.seed(value)


def uniform(shape, low=0.0, high=1.0, dtype="float32"):
    return default_generator.uniform(shape, low, high, dtype)


def normal(shape, mean=0.0, std=1.0, dtype="float32"):
    return default_generator.normal(shape, mean, std, dtype)


def bernoulli(shape, p=0.5, dtype="float32"):
    return default_generator.bernoulli(shape, p, dtype)
