"""Matrix products through the BLAS that NumPy itself uses.

In: nothing; at import it looks among the loaded libraries for NumPy's own OpenBLAS (the
64-bit-integer build NumPy's wheels ship, whose symbols end in `64_`) and registers its
cblas_sgemm and cblas_dgemm with LLVM under fixed names. Out: `AVAILABLE`, and `sgemm` /
`dgemm`, declarations that Numba code calls (kernels.gemm); `SCIPY`, whether SciPy (through
which Numba's np.dot calls BLAS) is installed.

Why not Numba's np.dot: it calls SciPy's BLAS, a second OpenBLAS with threads of its own.
OpenBLAS threads spin for a while after each call before they sleep, so on a small machine a
NumPy product between two calls of a compiled function leaves NumPy's threads spinning on the
cores SciPy's threads then need (measured on 2 cores: a 128×784 · 784×256 product in a
compiled kernel, 0.24 ms alone, 4.0 ms with a NumPy product between calls; through NumPy's
library, 0.23 ms either way). Sharing NumPy's library gives the user's NumPy code and
symgrad's one pool of threads.

The functions are registered by name (llvmlite's add_symbol), not baked in as addresses, so
compiled code stays cacheable: cached machine code refers to the name, bound again in each
process at import. Where NumPy's OpenBLAS is not found (another BLAS, another platform), or
SYMGRAD_SCIPY_BLAS is set to anything but 0, AVAILABLE is False and generated code calls
np.dot (SciPy's BLAS) instead, or loops where SciPy is not installed.

SciPy is an optional extra (`symgrad[scipy]`), not a dependency: where it is installed, Numba
imports it the first time it compiles or loads anything (to see whether np.dot can use BLAS),
which costs every process 0.06-0.15 s before its first compiled call.
"""
import ctypes
import importlib.util
import os

import llvmlite.binding as llvm
from numba import types

from .cores import openblas_libraries

# CBLAS constants (row-major layout, transposition flags).
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

_PREFIXES = ("scipy_cblas_", "cblas_")  # NumPy >= 2 wheels, then NumPy 1.26 wheels


def _find_gemm():
    """(address of sgemm, address of dgemm) of a 64-bit-integer CBLAS, or None."""
    for library in openblas_libraries():
        for prefix in _PREFIXES:
            try:
                found = [getattr(library, f"{prefix}{kind}gemm64_") for kind in "sd"]
            except AttributeError:
                continue
            return tuple(ctypes.cast(f, ctypes.c_void_p).value for f in found)
    return None


def _declare(name, real):
    """cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)."""
    i32, i64, ptr = types.int32, types.int64, types.voidptr
    return types.ExternalFunction(name, types.void(i32, i32, i32, i64, i64, i64, real, ptr, i64,
                                                   ptr, i64, real, ptr, i64))


sgemm = _declare("symgrad_cblas_sgemm", types.float32)
dgemm = _declare("symgrad_cblas_dgemm", types.float64)

_addresses = None if os.environ.get("SYMGRAD_SCIPY_BLAS", "0") not in ("", "0") else _find_gemm()
AVAILABLE = _addresses is not None


def _installed(name):
    """Whether `import name` would find the package, without importing it. (A module set to
    None in sys.modules, as the tests do to hide SciPy, counts as absent.)"""
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:  # sys.modules[name] is None
        return False


SCIPY = _installed("scipy")
if AVAILABLE:
    llvm.add_symbol("symgrad_cblas_sgemm", _addresses[0])
    llvm.add_symbol("symgrad_cblas_dgemm", _addresses[1])
