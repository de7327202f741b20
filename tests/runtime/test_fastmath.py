"""The vectorisable math of generated loops: accuracy over wide sweeps, NaN/Inf behaviour,
and that the loops really are vectorised (packed instructions in the assembly)."""
import numba
import numpy as np
import pytest

from symgrad.runtime import fastmath
from symgrad import scalar


def _logistic(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


REFERENCE = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "sigmoid": _logistic, "softplus": lambda x: np.logaddexp(0, x),
}
# worst error allowed, in units of the dtype's epsilon, relative to the float64 reference
ULPS = {"exp": 2, "expm1": 2, "log": 2, "log1p": 3, "tanh": 3, "sigmoid": 3, "softplus": 3}


def _loop(function, dtype):
    f = getattr(fastmath, scalar.fastmath_name(function, dtype))

    @numba.njit(fastmath=fastmath.SAFE_FLAGS, error_model="numpy")
    def apply(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return apply


LOOPS = {(f, d): _loop(f, d) for f in REFERENCE for d in ("float32", "float64")}


def _sweep(function, dtype):
    rng = np.random.default_rng(0)
    if function == "log":
        x = np.exp(rng.uniform(-85, 85, 200_000))
        x = np.concatenate([x, [np.finfo(dtype).tiny / 8, 1.0, 2.0, np.finfo(dtype).max]])
    elif function == "log1p":
        x = np.concatenate([np.exp(rng.uniform(-60, 20, 100_000)), rng.uniform(-0.999, 0, 100_000)])
    else:
        x = np.concatenate([rng.uniform(-120, 120, 100_000), rng.uniform(-2, 2, 80_000),
                            rng.uniform(-1e-6, 1e-6, 20_000)])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("function", sorted(REFERENCE))
def test_accuracy_over_a_wide_sweep(function, dtype):
    x = _sweep(function, dtype)
    out = np.empty_like(x)
    LOOPS[function, dtype](x, out)
    with np.errstate(all="ignore"):
        reference = REFERENCE[function](x.astype(np.float64))
    info = np.finfo(dtype)
    normal = np.isfinite(reference) & (np.abs(reference) < info.max) & (np.abs(reference) > info.tiny)
    relative = np.abs(out[normal] - reference[normal]) / np.abs(reference[normal])
    worst = relative.max() / info.eps
    assert worst <= ULPS[function], f"{function} {dtype}: {worst:.2f} ulp"
    # where the true value overflows the dtype, the result is inf, not garbage
    over = np.abs(reference) >= info.max
    assert np.all(np.isinf(out[over]))


SPECIAL = {
    # function: (input, expected) for nan, +inf, -inf, +0
    "exp": [np.nan, np.inf, 0.0, 1.0],
    "expm1": [np.nan, np.inf, -1.0, 0.0],
    "log": [np.nan, np.inf, np.nan, -np.inf],
    "log1p": [np.nan, np.inf, np.nan, 0.0],
    "tanh": [np.nan, 1.0, -1.0, 0.0],
    "sigmoid": [np.nan, 1.0, 0.0, 0.5],
    "softplus": [np.nan, np.inf, 0.0, np.log(2.0)],
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("function", sorted(SPECIAL))
def test_nan_and_inf_behave_as_numpy(function, dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0], dtype)
    out = np.empty_like(x)
    LOOPS[function, dtype](x, out)
    np.testing.assert_allclose(out, np.array(SPECIAL[function], dtype), rtol=1e-6)


@pytest.mark.parametrize("function", ["exp", "tanh", "sigmoid", "log"])
def test_loops_are_vectorised(function):
    loop = LOOPS[function, "float32"]
    asm = "\n".join(loop.inspect_asm().values())
    # packed single-precision arithmetic on vector registers (SSE/AVX/AVX-512)
    packed = [line for line in asm.splitlines()
              if any(op in line for op in ("mulps", "addps", "fmadd", "divps")) and
              any(reg in line for reg in ("xmm", "ymm", "zmm"))]
    assert len(packed) >= 4, f"{function}: no packed float32 arithmetic in the loop"
