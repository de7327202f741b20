"""Matrix products through NumPy's BLAS (symgrad/runtime/blas.py, kernels.gemm), and the fallback.

The reference is NumPy's matmul. Layouts are every one generated code passes: row-major
arrays and transposed views, sizes 0 and 1 included, float32 and float64.
"""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad.runtime import blas, kernels

NUMPY_OPENBLAS = glob.glob(os.path.join(os.path.dirname(os.path.dirname(np.__file__)),
                                        "numpy*libs", "*openblas64*"))


def test_numpy_blas_is_found_where_numpy_ships_it():
    if os.environ.get("SYMGRAD_SCIPY_BLAS", "0") not in ("", "0"):
        assert not blas.AVAILABLE and kernels.MATMUL == "matmul"  # turned off on purpose
        return
    if not NUMPY_OPENBLAS:
        pytest.skip("this NumPy does not bundle OpenBLAS: generated code uses np.dot")
    assert blas.AVAILABLE and kernels.MATMUL == "gemm"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gemm_matches_numpy_in_every_layout(dtype):
    if not blas.AVAILABLE:
        pytest.skip("NumPy's BLAS was not found")
    rng = np.random.default_rng(0)
    tol = 1e-4 if dtype == "float32" else 1e-11
    for m, k, n in [(3, 4, 5), (1, 4, 5), (3, 1, 5), (3, 4, 1), (1, 1, 1), (0, 4, 5), (3, 0, 5),
                    (3, 4, 0), (64, 33, 17),
                    # a long inner dimension and a small result: summed over slices of k (the
                    # last one shorter), into an output that starts as NaN
                    (6, 2 * kernels.GEMM_SLICE + 5, 25), (1, 3 * kernels.GEMM_SLICE, 1)]:
        A = rng.standard_normal((m, k)).astype(dtype)
        B = rng.standard_normal((k, n)).astype(dtype)
        for a in (A, np.ascontiguousarray(A.T).T):
            for b in (B, np.ascontiguousarray(B.T).T):
                out = np.full((m, n), np.nan, dtype)
                kernels.gemm(a, b, out)
                np.testing.assert_allclose(out, A @ B, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_product_loops_match_numpy_for_any_strides(dtype):
    # matmul_loops: where BLAS cannot read an operand in place (gemm hands those over), and
    # where neither NumPy's BLAS nor SciPy is there.
    rng = np.random.default_rng(2)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for m, k, n in [(3, 4, 5), (1, 1, 1), (0, 4, 5), (3, 0, 5), (3, 4, 0), (17, 9, 6)]:
        A = rng.standard_normal((m, 2 * k)).astype(dtype)[:, ::2]  # every other column
        B = rng.standard_normal((k, n)).astype(dtype)
        for b in (B, np.ascontiguousarray(B.T).T):
            expected = A @ b
            for product in [kernels.matmul_loops] + ([kernels.gemm] if blas.AVAILABLE else []):
                out = np.full((m, n), np.nan, dtype)
                product(A, b, out)
                np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match="shapes of a, b and out do not match"):
        kernels.matmul_loops(np.ones((2, 3)), np.ones((2, 4)), np.empty((2, 4)))


def test_gemm_checks_shapes():
    if not blas.AVAILABLE:
        pytest.skip("NumPy's BLAS was not found")
    a, b = np.ones((2, 3)), np.ones((3, 4))
    for bad_b, bad_out in [(np.ones((2, 4)), np.empty((2, 4))), (b, np.empty((2, 3))),
                           (b, np.empty((3, 4)))]:
        with pytest.raises(ValueError, match="shapes of a, b and out do not match"):
            kernels.gemm(a, bad_b, bad_out)


@pytest.mark.parametrize("images", [0, 1, 3])
@pytest.mark.parametrize("transposed", [True, False])
def test_product_by_images_equals_numpy_for_either_layout_of_a(images, transposed):
    # a filter gradient's product: out = Σ_n a[:, n·P:(n+1)·P] @ x[n]ᵀ. `a` the transpose of
    # row-major columns (the im2col columns: each image's product is taken the other way
    # round) or row-major itself; out starts as garbage.
    rng = np.random.default_rng(images)
    x = rng.standard_normal((images, 4, 5))
    columns = rng.standard_normal((images * 5, 6))
    a = columns.T if transposed else np.ascontiguousarray(columns.T)
    out = np.full((6, 4), np.nan)
    kernels.product_by_images(a, x, out)
    np.testing.assert_allclose(out, a @ x.transpose(0, 2, 1).reshape(images * 5, 4), atol=1e-12)


def test_gemm_writes_into_a_view_of_a_larger_buffer():
    if not blas.AVAILABLE:
        pytest.skip("NumPy's BLAS was not found")
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 4))
    buffer = np.full(40, 7.0)
    kernels.gemm(a, b, buffer[10:30].reshape(5, 4))  # a workspace slot
    np.testing.assert_allclose(buffer[10:30].reshape(5, 4), a @ b, rtol=1e-12)
    assert (buffer[:10] == 7.0).all() and (buffer[30:] == 7.0).all()


FALLBACK = """
import sys
if {hide_scipy}:
    sys.modules["scipy"] = None  # as if SciPy were not installed
import numpy as np, symgrad as sg
from symgrad.runtime import kernels
x = sg.placeholder("x", (None, 3), "float64")
W = sg.Variable(np.arange(6.0).reshape(3, 2), name="W")
f = sg.function([x], [x @ W, x.T @ x])
X = np.arange(12.0).reshape(4, 3)
a, b = f(X)
assert kernels.MATMUL == "{route}" and kernels.product is getattr(kernels, "{route}")
assert np.allclose(a, X @ W.value) and np.allclose(b, X.T @ X)
# a filter gradient summed image by image (product_by_images: column blocks of a transposed
# view, which np.dot does not take as they are)
images = sg.placeholder("images", (None, 3, 32, 32), "float64")
F = sg.Variable(np.linspace(-1, 1, 54).reshape(2, 3, 3, 3), name="F")
g = sg.grad(sg.sum(sg.conv2d(images, F, stride=2, padding=1) ** 2), F)
grad = sg.function([images], g)
assert "product_by_images" in grad.source
I = np.linspace(-2, 2, 2 * 3 * 1024).reshape(2, 3, 32, 32)
assert np.allclose(grad(I), sg.evaluate(g, {{images: I}}))
# an SGD update written by the product's call (gemm_update), its rate 0.1 and then 0 (the
# loops' route in every build: BLAS skips a product scaled by 0, where 0·NaN must stay NaN)
rate = sg.Variable(np.array(0.1), name="rate")
y = sg.placeholder("y", (None, 2), "float64")
V = sg.Variable(np.ones((3, 2)), name="V")
sgd = sg.function([x, y], [], updates=[(V, V - rate * (x.T @ y))])
for r in (0.1, 0.0):
    rate.value = np.array(r)
    before = V.value.copy()
    sgd(X, np.ones((4, 2)))
    assert np.allclose(V.value, before - r * (X.T @ np.ones((4, 2))))
print("ok")
"""


def test_generated_code_calls_the_chosen_product(tmp_path):
    x = sg.placeholder("x", (None, 3), "float64")
    W = sg.Variable(np.arange(6.0).reshape(3, 2), name="W")
    f = sg.function([x], [x @ W, x.T @ x])
    assert "kernels.product(" in f.source and " @ " not in f.source
    assert kernels.product is getattr(kernels, kernels.MATMUL)
    X = np.arange(12.0).reshape(4, 3)
    a, b = f(X)
    np.testing.assert_allclose(a, X @ W.value)
    np.testing.assert_allclose(b, X.T @ X)
    # SYMGRAD_SCIPY_BLAS=1: Numba's np.dot (SciPy's BLAS), or loops where SciPy is missing,
    # each in a process of its own.
    env = dict(os.environ, SYMGRAD_SCIPY_BLAS="1", SYMGRAD_CACHE_DIR=str(tmp_path))
    for hide_scipy, route in [(False, "matmul"), (True, "matmul_loops")]:
        script = FALLBACK.format(hide_scipy=hide_scipy, route=route)
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True)
        assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
