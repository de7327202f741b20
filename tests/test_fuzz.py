"""Differential testing: random graphs, compiled vs interpreter vs NumPy vs central differences.

Each example is a batch of 15-25 random graphs over shared float64 placeholders
(tests/fuzzgraphs.py builds them from one seed), compiled in one `sg.function` and called at
the batch sizes 1, 3 or 5, and 0 for some profiles. Checked, for every graph:

- the interpreter's value == the same computation written in NumPy;
- its gradient (of sum(u*y) + sum(u*y*y)/2), JVP and HVP == central differences (where the
  graph is smooth around the point: no kink closer than fuzzgraphs.KINK_MARGIN);
- compiled == interpreter: the values of the first 6 graphs of each batch and the gradients,
  JVPs and HVPs of the first (all of them under `make fuzz`, the cold-cache compile time of
  `make test` allowing no more). Batches alternate between simplify=True and
  simplify=False, both checked against the same interpreter (`make fuzz`: both, every batch).

Hypothesis runs a fixed, derandomized set of seeds (no database, no shrinking: a failing
batch prints its seed, graphs and placeholders, which rebuild it). `make fuzz` sets
SYMGRAD_FUZZ_EXAMPLES (graphs wanted) for a longer run.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import symgrad as sg
import fuzzgraphs as fg
from symgrad.compiler import function as function_module
from symgrad.runtime import cores

LONG = bool(os.environ.get("SYMGRAD_FUZZ_EXAMPLES"))
# Numba compile time grows with every node compiled (about 15 ms per generated line, 0.5 s for
# a graph with its derivatives, on a cold cache): `make test` compiles the values of the first
# 6 graphs of each batch and the derivatives of the first (every graph is still checked by
# the interpreter against NumPy and central differences); `make fuzz` compiles everything,
# with both simplify modes.
COMPILED_VALUES = None if LONG else 6
COMPILED_DERIVATIVES = None if LONG else 1


def fuzz_settings(examples):
    return settings(derandomize=True, deadline=None, database=None,
                    max_examples=fg.examples(examples), phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck), print_blob=False)


def run_batch(seed, profile):
    batch = fg.draw_batch(seed, profile)
    simplify = (True,) if seed % 2 == 0 else (False,)
    if LONG:
        simplify = (True, False)
    problems = fg.check_batch(batch, simplify, compiled_derivatives=COMPILED_DERIVATIVES,
                              compiled_values=COMPILED_VALUES)
    assert not problems, fg.report(batch, problems)


SEEDS = st.integers(0, 2 ** 32 - 1)


@fuzz_settings(2)
@given(SEEDS)
def test_fuzz_elementwise(seed):
    """Unary and binary elementwise ops, broadcasting, scalars, comparisons, where."""
    run_batch(seed, "elementwise")


@fuzz_settings(3)
@given(SEEDS)
def test_fuzz_structure(seed):
    """+ slices (steps, negative starts), integer indices, reshape, transpose, concatenate,
    matmul."""
    run_batch(seed, "structure")


@fuzz_settings(3)
@given(SEEDS)
def test_fuzz_reductions(seed):
    """+ sum/mean/max/logsumexp over int, tuple and None axes with keepdims, softmax and
    log_softmax on random axes, sg.distribution."""
    run_batch(seed, "reduce")


@fuzz_settings(2)
@given(SEEDS)
def test_fuzz_losses(seed):
    """nn losses: softmax cross-entropy (one-hot, probability, unnormalised and zero label
    rows, declared or not), sigmoid binary cross-entropy, MSE, Gaussian NLL."""
    run_batch(seed, "loss")


@fuzz_settings(2)
@given(SEEDS)
def test_fuzz_empty(seed):
    """Everything, also called with batch size 0 (and static sizes 0)."""
    run_batch(seed, "empty")


@fuzz_settings(2)
@given(SEEDS)
def test_fuzz_ties(seed):
    """Leaves take the values -1, -0.5, 0, 0.5, 1: ties for max/maximum/minimum/equal and
    kinks of relu/abs, where compiled must still equal the interpreter."""
    run_batch(seed, "ties")


@fuzz_settings(4)
@given(SEEDS)
def test_fuzz_mixed(seed):
    run_batch(seed, "mixed")


# ================================================================================ max's tie rule

def _even_split(x, axes, u):
    """d/dx sum(u * max(x, axes)): the cotangent split evenly among the maxima of each group
    (JAX's rule, and symgrad's documented one)."""
    m = np.max(x, axis=axes, keepdims=True)
    hit = (x == m).astype(float)
    return hit / np.sum(hit, axis=axes, keepdims=True) * np.expand_dims(np.asarray(u), axes)


@fuzz_settings(1)
@given(SEEDS)
def test_max_gradient_splits_ties_evenly(seed):
    """max over int, tuple and None axes of inputs with many ties: the gradient (compiled and
    interpreted) gives each of the k tied maxima of a group 1/k of its cotangent."""
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(8):
        ndim = int(rng.integers(1, 4))
        shape = tuple(int(s) for s in rng.integers(1, 4, ndim))
        declared = tuple(None if rng.random() < 0.3 else s for s in shape)
        form = rng.choice(["int", "tuple", "none"])
        if form == "none" or ndim == 1:
            axes = tuple(range(ndim))
            arg = None
        elif form == "int":
            a = int(rng.integers(0, ndim))
            axes, arg = (a,), a
        else:
            axes = tuple(sorted(int(a) for a in rng.choice(ndim, 2, replace=False)))
            arg = axes
        keepdims = bool(rng.random() < 0.3)
        unknown_reduced = sum(declared[a] is None for a in axes)
        unknown_kept = sum(d is None for i, d in enumerate(declared) if i not in axes)
        if unknown_reduced > 1 or (unknown_reduced == 1 and unknown_kept and len(axes) > 1):
            # documented: where unknown sizes of several axes would have to be merged, max
            # reduces axis by axis and splits ties per axis; the even split needs them known
            declared = tuple(s if i in axes else d for i, (s, d) in enumerate(zip(shape, declared)))
        x = sg.placeholder(f"x{k}", declared, "float64")
        y = sg.max(x, axis=arg, keepdims=keepdims)
        u = sg.placeholder(f"u{k}", y.shape, "float64")
        g = sg.gradients(sg.sum(u * y), x)
        value = rng.choice([0.0, 1.0, 1.0], shape)       # many ties
        cases.append((x, u, y, g, value, axes, keepdims, arg, declared))
    inputs = [c[0] for c in cases] + [c[1] for c in cases]
    outputs = [c[2] for c in cases] + [c[3] for c in cases]
    f = sg.function(inputs, outputs, **fg._WAIT)
    feed, us = {}, []
    for x, u, y, g, value, axes, keepdims, arg, declared in cases:
        u_value = rng.standard_normal(np.max(value, axis=axes, keepdims=keepdims).shape)
        feed[x], feed[u] = value, u_value
        us.append(u_value)
    got = f(*[feed[n] for n in inputs])
    interpreted = sg.evaluate(outputs, feed)
    n = len(cases)
    failures = []
    for k, (x, u, y, g, value, axes, keepdims, arg, declared) in enumerate(cases):
        u_value = us[k] if not keepdims else np.squeeze(us[k], axis=axes)
        expected = _even_split(value, axes, u_value)
        for who, grad in (("compiled", got[n + k]), ("interpreter", interpreted[n + k])):
            if not np.allclose(grad, expected, rtol=1e-12, atol=1e-12):
                failures.append(f"{who}: max(x {declared}, axis={arg}, keepdims={keepdims}) at "
                                f"x = {value.tolist()}: gradient {np.asarray(grad).tolist()}, "
                                f"even split {expected.tolist()}")
        np.testing.assert_array_equal(got[k], np.max(value, axis=axes, keepdims=keepdims))
    assert not failures, "\n".join(failures)


def test_fuzz_covers_every_op():
    """The generator reaches every op of symgrad.core.ops.OPS (but the internal and leaf ones)."""
    from symgrad.core.graph import topological_order
    from symgrad.core.ops import OPS
    seen = set()
    for profile in ("elementwise", "structure", "reduce", "loss", "empty", "ties", "mixed"):
        for seed in range(6):
            batch = fg.draw_batch(seed, profile)
            seen |= {n.op for n in topological_order([g.expr.node for g in batch.graphs])}
    from symgrad import extend
    missing = set(OPS) - seen - {"placeholder", "variable", "elementwise", "unslice", "size",
                                 "stop_gradient", "cast", "custom_gradient"} - extend.defined()
    # gradients' own ops (take_add, take's) and random draws, which have no derivative and
    # whose streams tests/core/test_random.py checks, compiled against interpreted
    missing -= {"take_add", "random", "advance"}
    # convolution (im2col, col2im) and pooling: the op table checks them
    # (tests/core/test_ops.py, with tests/core/test_conv.py); the fuzzer draws vectors and
    # matrices
    missing -= {name for name in missing if "col2im" in name or "im2col" in name or "pool2d" in name}
    # (custom_gradient carries a user's derivative, and extend's ops are the user's: the op
    # table, tests/core/test_ops.py, checks them)
    assert not missing, f"ops the fuzzer never builds: {sorted(missing)}"


@fuzz_settings(2)
@given(SEEDS)
def test_fuzz_lanes(seed):
    """The values and derivatives whose graphs split into lanes (compiler/lanes.py), compiled
    and called in lanes at batch sizes 3 and 5 (every call split, thresholds off), equal
    the interpreter's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(function_module, "LANES_MIN_BYTES", 0)
        patch.setattr(function_module, "LANES_WORK_PER_SUM", 0)
        patch.setattr(cores, "cores", lambda: 2)
        patch.setattr(cores, "blas_threads", lambda: 2)
        patch.setattr(cores, "set_blas_threads", lambda threads: None)  # (see test_lanes.py)
        patch.delenv("SYMGRAD_LANES", raising=False)
        batch = fg.draw_batch(seed, "mixed")
        problems, split = fg.check_lanes(batch)
    assert not problems, fg.report(batch, problems)
