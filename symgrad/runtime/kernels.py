"""Hand-written Numba kernels that generated code calls: matrix products (through BLAS, or
loops where there is none),
reductions along one axis of an array viewed as (before, axis, after), and the row-wise
softmax family.

In: for a product, its two operands and the row-major array to write into; otherwise a
contiguous array, its sizes (before, axis, after), and the array to write the result into
(shaped (before, after) for reductions, (before, axis, after) otherwise). Every kernel here
has a NumPy twin in `ops.py` (the interpreter's semantics) and is tested against it through
compiled functions.
Kernels that call exp/log use `fastmath.exp`/`fastmath.log`, which pick the vectorisable
float32 or float64 version by the argument's type.
"""
import numba
import numpy as np

from . import blas, fastmath
# direct convolutions: defined beside their register tiles (Numba's cache of a function is
# keyed by its own file alone), called by generated code as kernels.*
from .convolution import (conv2d_across_filters, conv2d_along_strip,  # noqa: F401
                          conv2d_filter_across_filters, conv2d_filter_along_strip)

jit = numba.njit(cache=True, nogil=True, fastmath=fastmath.SAFE_FLAGS, error_model="numpy")
# Sums may be reassociated (vectorised accumulation); nothing else here may.
jit_sum = numba.njit(cache=True, nogil=True, fastmath=fastmath.SAFE_FLAGS | {"reassoc"},
                     error_model="numpy")


@jit
def matmul(a, b, out):
    # BLAS through Numba's np.dot, which needs SciPy; `a` or `b` may be a transposed
    # (Fortran-ordered) view. One compiled function per layout, cached, instead of BLAS glue at
    # every call site.
    np.dot(a, b, out)


@jit
def _product_shapes(a, b, out):
    """(m, k, n) of out = a @ b, a m×k and b k×n, or ValueError if the shapes disagree."""
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape[0] != m or out.shape[1] != n:
        raise ValueError("matrix product: the shapes of a, b and out do not match (m×k · k×n -> m×n)")
    return m, k, n


@jit
def matmul_loops(a, b, out):
    """out = a @ b by loops: any strides, any sizes (k == 0 gives zeros). For what BLAS cannot
    read in place, and where neither NumPy's BLAS nor SciPy is there."""
    m, k, n = _product_shapes(a, b, out)
    for i in range(m):
        for j in range(n):
            out[i, j] = 0
        for p in range(k):
            a_ip = a[i, p]
            for j in range(n):
                out[i, j] += a_ip * b[p, j]


@jit
def _blas_layout(x):
    """(CBLAS transposition flag, leading dimension) under which BLAS reads the 2-D array x
    in place: row-major, or a transposed view of one. (0, 0) if it cannot."""
    rows, cols = x.shape
    row_step, col_step = x.strides
    item = x.itemsize
    if col_step == item and row_step % item == 0 and row_step >= max(1, cols) * item:
        return blas.NO_TRANS, row_step // item
    if row_step == item and col_step % item == 0 and col_step >= max(1, rows) * item:
        return blas.TRANS, col_step // item
    return 0, 0


# A product whose inner dimension k is long and whose result is small (a filter gradient:
# 6×100352 · 100352×25 in LeNet's first layer) runs as a sum of products over slices of k, one
# BLAS call each, accumulated in place (beta = 1). OpenBLAS runs such shapes at 15 GFLOP/s
# whole and at 40-70 in slices of 4096 (measured on 2 cores, one or two threads alike).
GEMM_SLICE, GEMM_SMALL_RESULT = 4096, 1024


@jit
def _blas_reads(a, b, out, m, k, n):
    """Whether BLAS takes a, b and out as they are: no empty side, a and b row-major or
    transposed views of row-major arrays, out row-major."""
    return m > 0 and n > 0 and k > 0 and _blas_layout(a)[1] != 0 and _blas_layout(b)[1] != 0 \
        and out.strides[1] == out.itemsize and out.strides[0] == max(1, n) * out.itemsize


@jit
def gemm(a, b, out):
    # out = a @ b through NumPy's BLAS (blas.py; only defined where blas.AVAILABLE: without
    # the library the call would jump to nothing). a and b may be transposed views; out is
    # row-major. Anything else (an empty side, another layout) goes to the loops.
    m, k, n = _product_shapes(a, b, out)
    if not _blas_reads(a, b, out, m, k, n):
        matmul_loops(a, b, out)
        return
    _gemm_in_slices(a, b, out, 1.0, 0.0)


@jit
def _gemm_in_slices(a, b, out, alpha, beta):
    """out = alpha·(a @ b) + beta·out in BLAS calls, one per slice of k where the result is
    small and k long (GEMM_SLICE); beta applies once, in the first."""
    m, k = a.shape
    n = b.shape[1]
    step = GEMM_SLICE if k >= 2 * GEMM_SLICE and m * n <= GEMM_SMALL_RESULT else k
    for start in range(0, k, step):
        _blas_gemm(a[:, start:start + step], b[start:start + step], out, alpha,
                   beta if start == 0 else 1.0)


@jit
def _blas_gemm(a, b, out, alpha, beta):
    """out = alpha·(a @ b) + beta·out in one BLAS call (layouts checked)."""
    m, k = a.shape
    n = b.shape[1]
    trans_a, lda = _blas_layout(a)
    trans_b, ldb = _blas_layout(b)
    if a.itemsize == 4:
        blas.sgemm(blas.ROW_MAJOR, trans_a, trans_b, m, n, k, np.float32(alpha), a.ctypes.data,
                   lda, b.ctypes.data, ldb, np.float32(beta), out.ctypes.data, n)
    else:
        blas.dgemm(blas.ROW_MAJOR, trans_a, trans_b, m, n, k, np.float64(alpha), a.ctypes.data,
                   lda, b.ctypes.data, ldb, np.float64(beta), out.ctypes.data, n)


@jit
def gemm_update(a, b, out, alpha, beta):
    """out = beta·out + alpha·(a @ b): an update W - lr·xᵀg (beta 1, or 1 - lr·λ with a decay
    folded in) in one BLAS call, where the product would otherwise go to memory and a loop
    read it and W back. Where BLAS cannot (another layout, an empty side) or must not (α = 0
    or not finite: BLAS skips the product then, where the loop's 0·NaN would be NaN) it is
    the product and the loop."""
    m, k, n = _product_shapes(a, b, out)
    alpha, beta = out.dtype.type(alpha), out.dtype.type(beta)
    if alpha == 0 or not np.isfinite(alpha) or not _blas_reads(a, b, out, m, k, n):
        _update_by_loops(a, b, out, alpha, beta)
        return
    _gemm_in_slices(a, b, out, alpha, beta)


if not blas.AVAILABLE:
    del gemm, _gemm_in_slices, _blas_gemm

    @jit
    def gemm_update(a, b, out, alpha, beta):  # noqa: F811 - without BLAS: product, then loop
        _product_shapes(a, b, out)
        _update_by_loops(a, b, out, out.dtype.type(alpha), out.dtype.type(beta))


@jit
def gemm_update_scaled(a, b, out, factor, scalar, beta):
    """gemm_update with α = factor · scalar[0] (a learning rate held in a Variable)."""
    gemm_update(a, b, out, out.dtype.type(factor) * scalar[0], beta)

@jit
def _update_by_loops(a, b, out, alpha, beta):
    """out = beta·out + alpha·(a @ b) as the loop would: the product first, then each element.
    The product by loops, not `product`: Numba caches one machine code per definition, and
    the BLAS route's code, loaded where NumPy's BLAS is not (SYMGRAD_SCIPY_BLAS=1 on the same
    installation), would call a symbol that is not there. (Only rates of 0 or not finite, and
    builds without NumPy's BLAS, come here.)"""
    product_ = np.empty(out.shape, out.dtype)
    matmul_loops(a, b, product_)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = beta * out[i, j] + alpha * product_[i, j]


# The product generated code and the solvers call: NumPy's BLAS where blas.py found it, else
# SciPy's (through np.dot) where SciPy is installed, else loops.
MATMUL = "gemm" if blas.AVAILABLE else "matmul" if blas.SCIPY else "matmul_loops"
product = globals()[MATMUL]


# A product a @ rows, where rows (N·P, C) is x (N, C, P) laid out image by image, position by
# position (a convolution's cotangent as the product's rows): the sum over images of
# a[:, n·P:(n+1)·P] @ x[n]ᵀ, one BLAS call each reading x[n] transposed in place, so that x is
# never copied into rows (codegen's product_by_images pass). Two definitions, as gemm_update
# has, so that Numba's cache (one per definition) never hands one product's code to another.
#
# Where a is itself the transpose of row-major columns (a filter gradient: the im2col columns
# read transposed), each image's product is taken the other way round, x[n] @ columns (both
# row-major), into a small (C, rows of out) sum copied out transposed: OpenBLAS runs that form
# 1.3x faster (LeNet's first filter gradient at 64 images, 6×784 · 784×25 per image: 0.31
# against 0.40 ms).
if MATMUL == "gemm":
    @jit
    def product_by_images(a, x, out):
        n_, p_ = x.shape[0], x.shape[2]
        if n_ == 0:
            fill(out, 0.0)
            return
        columns = a.T
        if _blas_layout(columns)[0] == blas.NO_TRANS and _blas_layout(x[0])[0] == blas.NO_TRANS:
            total = np.empty((out.shape[1], out.shape[0]), out.dtype)
            for n in range(n_):
                if n == 0:
                    gemm(x[n], columns[:p_], total)
                else:
                    gemm_update(x[n], columns[n * p_:(n + 1) * p_], total, 1.0, 1.0)
            _copy_plane(total.T, out)
            return
        for n in range(n_):
            block, rows = a[:, n * p_:(n + 1) * p_], x[n].T
            if n == 0:
                gemm(block, rows, out)
            else:
                gemm_update(block, rows, out, 1.0, 1.0)
else:
    @jit
    def product_by_images(a, x, out):  # without NumPy's BLAS: loops (np.dot takes C or F order only)
        n_, c_, p_ = x.shape
        for i in range(out.shape[0]):
            for j in range(c_):
                out[i, j] = 0
            for n in range(n_):
                for q in range(p_):
                    a_iq = a[i, n * p_ + q]
                    for j in range(c_):
                        out[i, j] += a_iq * x[n, j, q]


@jit
def copy(source, out):
    """out = source element by element, for C-ordered arrays of one size (the dtypes may
    differ: the values are converted). A loop: `out[:] = source` takes Numba seconds to
    compile."""
    values, flat = source.reshape(-1), out.reshape(-1)
    for i in range(flat.size):
        flat[i] = values[i]


@jit
def _copy_plane(source, out):
    """out[...] = source for 2-d arrays, out C-ordered."""
    if out.shape[1] < 16 and source.strides[0] == source.itemsize:
        for j in range(out.shape[1]):
            for i in range(out.shape[0]):
                out[i, j] = source[i, j]
    else:
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = source[i, j]


@jit
def copy_view(source, out):
    """out[...] = source for arrays of one shape in any layout (views: a transpose, a
    slice, a window of a larger array). Nested loops up to 4 dimensions, the last one
    innermost (out is C-ordered: its writes are contiguous); np.ndindex beyond (its tuple
    indices are ten times slower). A transpose onto a short last axis (a convolution's
    (N, C, H·W) cotangent laid out as (N, H·W, C) rows, C = 6) runs the last two loops the
    other way round, reading along the source's contiguous axis: 3× faster at C = 6."""
    if source.ndim == 1:
        for i in range(out.shape[0]):
            out[i] = source[i]
    elif source.ndim == 2:
        _copy_plane(source, out)
    elif source.ndim == 3:
        for i in range(out.shape[0]):
            _copy_plane(source[i], out[i])
    elif source.ndim == 4:
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                _copy_plane(source[i, j], out[i, j])
    else:
        for index in np.ndindex(out.shape):
            out[index] = source[index]


@jit
def fill(out, value):
    flat = out.reshape(-1)
    for i in range(flat.size):
        flat[i] = value


# Each kernel below has a path for b == 1 (the last axis, the common case): the sizes are
# run-time values (one compiled kernel serves every width), so the compiler cannot see that
# the innermost loop has one iteration; this path runs along contiguous rows instead.

@jit_sum
def sum_axis(x, a, r, b, out):
    if b == 1:
        rows = x.reshape((a, r))
        for i in range(a):
            total = x.dtype.type(0)
            for k in range(r):
                total += rows[i, k]
            out[i, 0] = total
        return
    v = x.reshape((a, r, b))
    out[:] = 0.0
    for i in range(a):
        for k in range(r):
            for j in range(b):
                out[i, j] += v[i, k, j]


@jit
def max_axis(x, a, r, b, out):
    if r == 0:  # the max of nothing: -inf, max's identity (and no element to read)
        out[:] = -np.inf
        return
    if b == 1:
        rows = x.reshape((a, r))
        for i in range(a):  # (the NaN test as a flag beside the comparison: it vectorises)
            best, nan = rows[i, 0], False
            for k in range(1, r):
                value = rows[i, k]
                best = value if value > best else best
                nan |= value != value
            out[i, 0] = np.nan if nan or best != best else best
        return
    v = x.reshape((a, r, b))
    for i in range(a):
        for j in range(b):
            out[i, j] = v[i, 0, j]
        for k in range(1, r):
            for j in range(b):
                value = v[i, k, j]
                if value > out[i, j] or value != value:
                    out[i, j] = value


@jit
def distribution_violation(x, a, r, b, tolerance):
    """-1 if every slice of x (viewed as (a, r, b)) along the middle axis sums to 1 within
    `tolerance`, else the index i * b + j of the first that does not (NaN never does)."""
    if b == 1:
        rows = x.reshape((a, r))
        for i in range(a):
            total = 0.0
            for k in range(r):
                total += rows[i, k]
            if not abs(total - 1.0) <= tolerance:
                return i
        return -1
    v = x.reshape((a, r, b))
    for i in range(a):
        for j in range(b):
            total = 0.0
            for k in range(r):
                total += v[i, k, j]
            if not abs(total - 1.0) <= tolerance:
                return i * b + j
    return -1


@jit_sum
def _row_sum(row):
    """Σ row: a sum, so it may be reassociated, which lets it vectorise."""
    total = row.dtype.type(0)
    for k in range(row.size):
        total += row[k]
    return total


@jit
def _exp_into(x, out):
    for n in range(x.size):
        out[n] = fastmath.exp(x[n])


@jit
def _exp_in_place(x):
    # (not _exp_into(x, x): LLVM's check that the two arrays do not overlap fails, and it
    # runs the scalar loop)
    for n in range(x.size):
        x[n] = fastmath.exp(x[n])


@jit
def _max_and_log_sum(x, a, r, b, m, s, shifted):
    # m = the max along the axis (0 where it is not finite: exp below says what happens),
    # shifted = x - m, s = log Σ exp(x - m). log_softmax is (x - m) - s: x - (m + s) would
    # round m + s to the precision of m and lose the digits of s (float32 logits of -1e4).
    # The exponentials are one loop over the whole array, which vectorises however short
    # the axis is (10 classes), and are then summed along it.
    max_axis(x, a, r, b, m)
    for i in range(a):
        for j in range(b):
            if not np.isfinite(m[i, j]):
                m[i, j] = 0.0
    e = np.empty(a * r * b, x.dtype)
    if b == 1:  # (two-axis loops: a last axis of length 1 would stop vectorisation)
        rows, shifted_rows, e_rows = x.reshape((a, r)), shifted.reshape((a, r)), e.reshape((a, r))
        for i in range(a):
            shift = m[i, 0]
            for k in range(r):
                shifted_rows[i, k] = rows[i, k] - shift
        _exp_into(shifted.reshape(-1), e)
        for i in range(a):
            s[i, 0] = fastmath.log(_row_sum(e_rows[i]))
        return
    v, w, e3 = x.reshape((a, r, b)), shifted.reshape((a, r, b)), e.reshape((a, r, b))
    for i in range(a):
        for k in range(r):
            for j in range(b):
                w[i, k, j] = v[i, k, j] - m[i, j]
    _exp_into(shifted.reshape(-1), e)
    s[:] = 0.0
    for i in range(a):
        for k in range(r):
            for j in range(b):
                s[i, j] += e3[i, k, j]
    for i in range(a):
        for j in range(b):
            s[i, j] = fastmath.log(s[i, j])


@jit
def logsumexp_axis(x, a, r, b, total):
    m = np.empty((a, b), x.dtype)
    _max_and_log_sum(x, a, r, b, m, total, np.empty(x.size, x.dtype))
    for i in range(a):
        for j in range(b):
            total[i, j] = m[i, j] + total[i, j]


@jit
def _shifted_axis(x, a, r, b, out, exponentiate):
    # (x - m) - log Σ exp(x - m) along the axis (log_softmax), or its exp (softmax)
    m = np.empty((a, b), x.dtype)
    s = np.empty((a, b), x.dtype)
    _max_and_log_sum(x, a, r, b, m, s, out)
    if b == 1:
        rows = out.reshape((a, r))
        for i in range(a):
            log_sum = s[i, 0]
            for k in range(r):
                rows[i, k] = rows[i, k] - log_sum
    else:
        w = out.reshape((a, r, b))
        for i in range(a):
            for k in range(r):
                for j in range(b):
                    w[i, k, j] = w[i, k, j] - s[i, j]
    if exponentiate:
        _exp_in_place(out.reshape(-1))


@jit
def softmax_axis(x, a, r, b, out):
    _shifted_axis(x, a, r, b, out, True)


@jit
def log_softmax_axis(x, a, r, b, out):
    _shifted_axis(x, a, r, b, out, False)


# ------------------------------------------------------------------ convolution and pooling
# NCHW arrays; windows start at (a·sh - ph, b·sw - pw) and positions outside the input are
# padding (zeros for convolutions and average pooling, absent for max pooling). Pooling is
# direct loops, accumulating in float64; convolutions are matrix products around im2col
# (below). Each op has a NumPy twin in core/ops.py.

# Each window is visited tap by tap with the taps' positions checked only where the window
# reaches into the padding (`checked`): most windows are inside, and their loops, of as many
# taps as the window (a literal of the step), unroll. The kernels call each helper twice,
# with checked=False and checked=True, so that each call is compiled for its case.

@jit
def _inside(plane, r0, q0, kh, kw):
    """Whether the window at (r0, q0) holds no padding."""
    return r0 >= 0 and q0 >= 0 and r0 + kh <= plane.shape[0] and q0 + kw <= plane.shape[1]


@jit
def _tap(plane, r0, q0, t, kw, checked):
    """Tap t (row-major) of the window at (r0, q0): its position, and whether it is inside
    the plane (always, unless `checked`)."""
    r, q = r0 + t // kw, q0 + t % kw
    return r, q, not checked or (0 <= r < plane.shape[0] and 0 <= q < plane.shape[1])


@jit
def _window_peak(plane, r0, q0, kh, kw, checked):
    """The window's maximum (padding never counted) and whether a tap is NaN."""
    m, nan = -np.inf, False
    for t in range(kh * kw):
        r, q, inside = _tap(plane, r0, q0, t, kw, checked)
        if inside:
            v = plane[r, q]
            m = v if v > m else m
            nan |= v != v
    return m, nan


@jit
def _window_count_total(plane, t_, r0, q0, kh, kw, checked, m):
    """How many taps of the window equal m, and Σ t_ · [plane = m] over them (in float64;
    an infinite t_ elsewhere gives NaN, as in the NumPy twin's weights · t_)."""
    count, total = 0, 0.0
    for t in range(kh * kw):
        r, q, inside = _tap(plane, r0, q0, t, kw, checked)
        if inside:
            hit = plane[r, q] == m
            count += hit
            total += t_[r, q] * hit
    return count, total


@jit
def _window_add(out, r0, q0, kh, kw, checked, value, plane, m, where_max, assign):
    """out[r, q] += value at the window's taps (only where plane equals m if where_max; a
    NaN value reaches every tap, NaN · 0 being NaN), or out[r, q] = that where windows are
    disjoint (`assign`: no read of out). Branch-free: which tap is the maximum is data."""
    if assign:
        for t in range(kh * kw):
            r, q, inside = _tap(out, r0, q0, t, kw, checked)
            if inside:
                out[r, q] = value * (plane[r, q] == m) if where_max else value
    else:
        for t in range(kh * kw):
            r, q, inside = _tap(out, r0, q0, t, kw, checked)
            if inside:
                out[r, q] += value * (plane[r, q] == m) if where_max else value


@jit
def _tiles(x, out_hw, kh, kw, sh, sw, ph, pw):
    """Whether the windows tile x's planes exactly (no padding, no gap, no overlap: 2×2
    windows with stride 2 over even sizes), so that the kernels may view x as rows of
    windows, (N·C·Ho, kh, Wo, kw), with no test and no view per plane: 15-40 % faster on
    the CNNs' poolings, most on small planes."""
    return sh == kh and sw == kw and ph == 0 and pw == 0 and \
        out_hw[0] * kh == x.shape[2] and out_hw[1] * kw == x.shape[3]


@jit
def _zero_gaps(out, ho, wo, kh, kw, sh, sw, ph, pw):
    """Ready `out` (N, C, H, W) for a pooling gradient over Ho×Wo windows: zeroed unless
    the windows tile it (2×2 windows with stride 2 over even sizes: every position is in
    one). Returns whether the windows are disjoint (no two share a position), so that the
    gradient can be written, not added."""
    if not _tiles(out, (ho, wo), kh, kw, sh, sw, ph, pw):
        fill(out, 0.0)
    return sh >= kh and sw >= kw


@jit
def _window_total(plane, r0, q0, kh, kw, checked):
    """Σ over the window's taps inside the plane, in float64."""
    total = 0.0
    for t in range(kh * kw):
        r, q, inside = _tap(plane, r0, q0, t, kw, checked)
        if inside:
            total += plane[r, q]
    return total


@jit
def _max_share(plane, r0, q0, kh, kw, checked, g):
    """Max pooling's cotangent g of one window as each tap attaining its maximum gets it
    (split evenly; NaN for a window holding a NaN), and that maximum."""
    m, nan = _window_peak(plane, r0, q0, kh, kw, checked)
    count, _ = _window_count_total(plane, plane, r0, q0, kh, kw, checked, m)
    # (one tap attains most maxima: no division there)
    return np.nan if nan else (g if count == 1 else g / count), m


@jit
def _select_max(plane, t, r0, q0, kh, kw, checked):
    """Max pooling's tangent for one window: the mean of t over the taps that attain the
    maximum (NaN for a window holding a NaN)."""
    m, nan = _window_peak(plane, r0, q0, kh, kw, checked)
    count, total = _window_count_total(plane, t, r0, q0, kh, kw, checked, m)
    return np.nan if nan else (total if count == 1 else total / count)


@jit
def _tile_peak(x4, r, b, kh, kw):
    """_window_peak of window b of row r of tiles x4 (rows, kh, Wo, kw)."""
    m, nan = -np.inf, False
    for i in range(kh):
        for j in range(kw):
            v = x4[r, i, b, j]
            m = v if v > m else m
            nan |= v != v
    return m, nan


@jit
def _tile_peak_count(x4, r, b, kh, kw):
    """_tile_peak, and how many of the window's taps equal its maximum."""
    m, nan = _tile_peak(x4, r, b, kh, kw)
    count = 0
    for i in range(kh):
        for j in range(kw):
            count += x4[r, i, b, j] == m
    return m, nan, count


# 2×2 windows (the CNNs' pooling) are read as four named taps, a row of windows at a time:
# straight-line code with no data branch, which LLVM vectorises across the row (LeNet's first
# pooling gradient at 64 images: 0.41 -> 0.16 ms; results identical, ties and NaN included).

@jit
def _quad_peak(a0, a1, a2, a3):
    """The maximum of four taps, and whether one of them is NaN."""
    m01 = a0 if a0 > a1 else a1
    m23 = a2 if a2 > a3 else a3
    return (m01 if m01 > m23 else m23), (a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3)


@jit
def _max_pool2d_quads(x, out):
    rows, wo = out.shape[0] * out.shape[1] * out.shape[2], out.shape[3]
    x3 = x.reshape(rows, 2, 2 * wo)
    o2 = out.reshape(rows, wo)
    for r in range(rows):
        top, bottom, o = x3[r, 0], x3[r, 1], o2[r]
        for b in range(wo):
            m, nan = _quad_peak(top[2 * b], top[2 * b + 1], bottom[2 * b], bottom[2 * b + 1])
            o[b] = np.nan if nan else m


@jit
def _max_pool2d_grad_quads(x, g, out):
    rows, wo = g.shape[0] * g.shape[1] * g.shape[2], g.shape[3]
    x3, o3 = x.reshape(rows, 2, 2 * wo), out.reshape(rows, 2, 2 * wo)
    g2 = g.reshape(rows, wo)
    one, nan_share = x.dtype.type(1.0), x.dtype.type(np.nan)  # (float32 stays float32)
    for r in range(rows):
        top, bottom, o_top, o_bottom, gr = x3[r, 0], x3[r, 1], o3[r, 0], o3[r, 1], g2[r]
        for b in range(wo):
            a0, a1, a2, a3 = top[2 * b], top[2 * b + 1], bottom[2 * b], bottom[2 * b + 1]
            m, nan = _quad_peak(a0, a1, a2, a3)
            e0, e1, e2, e3 = a0 == m, a1 == m, a2 == m, a3 == m
            # (a division for every window, even at count 1: vectorised, it costs less than
            # a branch; g / 1 is g exactly)
            share = nan_share if nan else gr[b] / (one * e0 + one * e1 + one * e2 + one * e3)
            o_top[2 * b], o_top[2 * b + 1] = share * e0, share * e1
            o_bottom[2 * b], o_bottom[2 * b + 1] = share * e2, share * e3


@jit
def _max_pool2d_tiles(x, out, kh, kw):
    if kh == 2 and kw == 2:
        _max_pool2d_quads(x, out)
        return
    rows = out.shape[0] * out.shape[1] * out.shape[2]
    x4 = x.reshape(rows, kh, out.shape[3], kw)
    o2 = out.reshape(rows, out.shape[3])
    for r in range(rows):
        for b in range(o2.shape[1]):
            m, nan = _tile_peak(x4, r, b, kh, kw)
            o2[r, b] = np.nan if nan else m


@jit
def _max_pool2d_grad_tiles(x, g, out, kh, kw):
    if kh == 2 and kw == 2:
        _max_pool2d_grad_quads(x, g, out)
        return
    rows = g.shape[0] * g.shape[1] * g.shape[2]
    x4 = x.reshape(rows, kh, g.shape[3], kw)
    o4 = out.reshape(rows, kh, g.shape[3], kw)
    g2 = g.reshape(rows, g.shape[3])
    for r in range(rows):
        for b in range(g2.shape[1]):
            m, nan, count = _tile_peak_count(x4, r, b, kh, kw)
            share = np.nan if nan else (g2[r, b] if count == 1 else g2[r, b] / count)
            for i in range(kh):
                for j in range(kw):
                    o4[r, i, b, j] = share * (x4[r, i, b, j] == m)


@jit
def max_pool2d(x, out, kh, kw, sh, sw, ph, pw):
    """The maximum of each window, padding never counted; NaN where the window holds one."""
    if _tiles(x, out.shape[2:], kh, kw, sh, sw, ph, pw):
        _max_pool2d_tiles(x, out, kh, kw)
        return
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane, o = x[n, c], out[n, c]
            for a in range(out.shape[2]):
                for b in range(out.shape[3]):
                    r0, q0 = a * sh - ph, b * sw - pw
                    if _inside(plane, r0, q0, kh, kw):
                        m, nan = _window_peak(plane, r0, q0, kh, kw, False)
                    else:
                        m, nan = _window_peak(plane, r0, q0, kh, kw, True)
                    o[a, b] = np.nan if nan else m


@jit
def max_pool2d_grad(x, g, out, kh, kw, sh, sw, ph, pw):
    """Each window's cotangent split evenly among the taps that attain its maximum (NaN to
    every tap of a window holding a NaN), added up where windows overlap."""
    if _tiles(x, g.shape[2:], kh, kw, sh, sw, ph, pw):
        _max_pool2d_grad_tiles(x, g, out, kh, kw)
        return
    disjoint = _zero_gaps(out, g.shape[2], g.shape[3], kh, kw, sh, sw, ph, pw)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane, gp, op = x[n, c], g[n, c], out[n, c]
            for a in range(g.shape[2]):
                for b in range(g.shape[3]):
                    r0, q0 = a * sh - ph, b * sw - pw
                    if _inside(plane, r0, q0, kh, kw):
                        # Most windows. The taps written out here, not through
                        # _window_add: 0.57 against 1.8 ms on LeNet's first pooling.
                        share, m = _max_share(plane, r0, q0, kh, kw, False, gp[a, b])
                        if disjoint:
                            for t in range(kh * kw):
                                r, q = r0 + t // kw, q0 + t % kw
                                op[r, q] = share * (plane[r, q] == m)
                        else:
                            for t in range(kh * kw):
                                r, q = r0 + t // kw, q0 + t % kw
                                op[r, q] += share * (plane[r, q] == m)
                    else:
                        share, m = _max_share(plane, r0, q0, kh, kw, True, gp[a, b])
                        _window_add(op, r0, q0, kh, kw, True, share, plane, m, True, disjoint)


@jit
def max_pool2d_select(x, t, out, kh, kw, sh, sw, ph, pw):
    """Max pooling's tangent: each window's mean of t over the taps that attain its maximum
    (NaN for a window holding a NaN)."""
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane, tp, o = x[n, c], t[n, c], out[n, c]
            for a in range(out.shape[2]):
                for b in range(out.shape[3]):
                    r0, q0 = a * sh - ph, b * sw - pw
                    if _inside(plane, r0, q0, kh, kw):
                        o[a, b] = _select_max(plane, tp, r0, q0, kh, kw, False)
                    else:
                        o[a, b] = _select_max(plane, tp, r0, q0, kh, kw, True)


# Max pooling's routing (windows disjoint): each tap's share of its window's cotangent, so
# that the gradient and tangent of max pooling at a fixed x are products and sums (ops.py).

@jit
def _max_pool2d_routing_tiles(x, out, kh, kw, wo):
    rows = x.shape[0] * x.shape[1] * x.shape[2] // kh
    x4 = x.reshape(rows, kh, wo, kw)
    o4 = out.reshape(rows, kh, wo, kw)
    for r in range(rows):
        for b in range(wo):
            m, nan, count = _tile_peak_count(x4, r, b, kh, kw)
            share = np.nan if nan else 1.0 / count
            for i in range(kh):
                for j in range(kw):
                    o4[r, i, b, j] = share * (x4[r, i, b, j] == m)


@jit
def max_pool2d_routing(x, out, kh, kw, sh, sw, ph, pw):
    """1/k at the k taps attaining their window's maximum, 0 at the others and outside every
    window, NaN throughout a window holding a NaN (padding never counted)."""
    ho, wo = _windows_along(x.shape[2], kh, sh, ph, 1), _windows_along(x.shape[3], kw, sw, pw, 1)
    if _tiles(x, (ho, wo), kh, kw, sh, sw, ph, pw):
        _max_pool2d_routing_tiles(x, out, kh, kw, wo)
        return
    _zero_gaps(out, ho, wo, kh, kw, sh, sw, ph, pw)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane, o = x[n, c], out[n, c]
            for a in range(ho):
                for b in range(wo):
                    r0, q0 = a * sh - ph, b * sw - pw
                    if _inside(plane, r0, q0, kh, kw):
                        share, m = _max_share(plane, r0, q0, kh, kw, False, 1.0)
                        _window_add(o, r0, q0, kh, kw, False, share, plane, m, True, True)
                    else:
                        share, m = _max_share(plane, r0, q0, kh, kw, True, 1.0)
                        _window_add(o, r0, q0, kh, kw, True, share, plane, m, True, True)


@jit
def _window_dot(a, b, r0, q0, kh, kw, checked):
    """Σ a · b over the window's taps inside the plane, in float64."""
    total = 0.0
    for t in range(kh * kw):
        r, q, inside = _tap(a, r0, q0, t, kw, checked)
        if inside:
            total += a[r, q] * b[r, q]
    return total


@jit
def routed_pool2d(routing, t, out, kh, kw, sh, sw, ph, pw):
    """Each window's Σ routing · t (max_pool2d_select at the x the routing is of)."""
    ho, wo = out.shape[2], out.shape[3]
    if _tiles(routing, (ho, wo), kh, kw, sh, sw, ph, pw):
        rows = out.shape[0] * out.shape[1] * ho
        r4, t4 = routing.reshape(rows, kh, wo, kw), t.reshape(rows, kh, wo, kw)
        o2 = out.reshape(rows, wo)
        for r in range(rows):
            for b in range(wo):
                total = 0.0
                for i in range(kh):
                    for j in range(kw):
                        total += r4[r, i, b, j] * t4[r, i, b, j]
                o2[r, b] = total
        return
    for n in range(out.shape[0]):
        for c in range(out.shape[1]):
            plane, tp, o = routing[n, c], t[n, c], out[n, c]
            for a in range(ho):
                for b in range(wo):
                    r0, q0 = a * sh - ph, b * sw - pw
                    if _inside(plane, r0, q0, kh, kw):
                        o[a, b] = _window_dot(plane, tp, r0, q0, kh, kw, False)
                    else:
                        o[a, b] = _window_dot(plane, tp, r0, q0, kh, kw, True)


@jit
def _window_scale(out, a, r0, q0, kh, kw, checked, value):
    """out = a · value at the window's taps inside the plane."""
    for t in range(kh * kw):
        r, q, inside = _tap(a, r0, q0, t, kw, checked)
        if inside:
            out[r, q] = a[r, q] * value


@jit
def routed_pool2d_grad(routing, g, out, kh, kw, sh, sw, ph, pw):
    """routing · g spread to each window's taps, 0 outside every window (max_pool2d_grad at
    the x the routing is of)."""
    ho, wo = g.shape[2], g.shape[3]
    if _tiles(routing, (ho, wo), kh, kw, sh, sw, ph, pw):
        rows = g.shape[0] * g.shape[1] * ho
        r4, o4 = routing.reshape(rows, kh, wo, kw), out.reshape(rows, kh, wo, kw)
        g2 = g.reshape(rows, wo)
        for r in range(rows):
            for b in range(wo):
                v = g2[r, b]
                for i in range(kh):
                    for j in range(kw):
                        o4[r, i, b, j] = r4[r, i, b, j] * v
        return
    _zero_gaps(out, ho, wo, kh, kw, sh, sw, ph, pw)
    for n in range(out.shape[0]):
        for c in range(out.shape[1]):
            plane, gp, o = routing[n, c], g[n, c], out[n, c]
            for a in range(ho):
                for b in range(wo):
                    r0, q0 = a * sh - ph, b * sw - pw
                    if _inside(plane, r0, q0, kh, kw):
                        _window_scale(o, plane, r0, q0, kh, kw, False, gp[a, b])
                    else:
                        _window_scale(o, plane, r0, q0, kh, kw, True, gp[a, b])


@jit
def avg_pool2d(x, out, kh, kw, sh, sw, ph, pw):
    """The mean of each window, padding counting as zeros (the divisor is kh·kw)."""
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane, o = x[n, c], out[n, c]
            for a in range(out.shape[2]):
                for b in range(out.shape[3]):
                    r0, q0 = a * sh - ph, b * sw - pw
                    if _inside(plane, r0, q0, kh, kw):
                        total = _window_total(plane, r0, q0, kh, kw, False)
                    else:
                        total = _window_total(plane, r0, q0, kh, kw, True)
                    o[a, b] = total / (kh * kw)


@jit
def avg_pool2d_grad(g, out, kh, kw, sh, sw, ph, pw):
    """Each window's cotangent / (kh·kw) added at its taps inside the input."""
    disjoint = _zero_gaps(out, g.shape[2], g.shape[3], kh, kw, sh, sw, ph, pw)
    for n in range(out.shape[0]):
        for c in range(out.shape[1]):
            gp, op = g[n, c], out[n, c]
            for a in range(g.shape[2]):
                for b in range(g.shape[3]):
                    r0, q0 = a * sh - ph, b * sw - pw
                    share = gp[a, b] / (kh * kw)
                    if _inside(op, r0, q0, kh, kw):
                        _window_add(op, r0, q0, kh, kw, False, share, op, 0.0, False, disjoint)
                    else:
                        _window_add(op, r0, q0, kh, kw, True, share, op, 0.0, False, disjoint)


# im2col: the windows of a convolution as the rows of a matrix, so the convolution and its
# gradients are matrix products (one BLAS call each) around cheap copies.

@jit
def _windows_along(n, k, s, p, d):
    """How many windows of k taps, d apart, fit along n values padded by p, moved by s."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@jit
def im2col(x, cols, kh, kw, sh, sw, ph, pw, dh, dw):
    """cols[(n·Ho + a)·Wo + b, (c·kh + i)·kw + j] = x[n, c, a·sh - ph + i·dh, b·sw - pw + j·dw]
    (0 in the padding): one row per output position, one column per filter tap (taps dh, dw
    apart)."""
    n_, c_, h_, w_ = x.shape
    ho, wo = _windows_along(h_, kh, sh, ph, dh), _windows_along(w_, kw, sw, pw, dw)
    for n in range(n_):
        for a in range(ho):
            for b in range(wo):
                row = (n * ho + a) * wo + b
                for c in range(c_):
                    for i in range(kh):
                        r = a * sh - ph + i * dh
                        base = (c * kh + i) * kw
                        if 0 <= r < h_:
                            for j in range(kw):
                                q = b * sw - pw + j * dw
                                cols[row, base + j] = x[n, c, r, q] if 0 <= q < w_ else 0
                        else:
                            for j in range(kw):
                                cols[row, base + j] = 0


@jit
def col2im(cols, out, kh, kw, sh, sw, ph, pw, dh, dw):
    """The adjoint of im2col: each entry of `cols` added into `out` (N, C, H, W) where im2col
    read it (padding dropped)."""
    n_, c_, h_, w_ = out.shape
    ho, wo = _windows_along(h_, kh, sh, ph, dh), _windows_along(w_, kw, sw, pw, dw)
    fill(out, 0.0)
    for n in range(n_):
        for a in range(ho):
            for b in range(wo):
                row = (n * ho + a) * wo + b
                for c in range(c_):
                    for i in range(kh):
                        r = a * sh - ph + i * dh
                        if 0 <= r < h_:
                            base = (c * kh + i) * kw
                            for j in range(kw):
                                q = b * sw - pw + j * dw
                                if 0 <= q < w_:
                                    out[n, c, r, q] += cols[row, base + j]


# ------------------------------------------------------------------------------ indexing
# Every index has been checked (index_violation) before these run.

@jit
def index_violation(indices, size):
    """-1 if every index is in 0..size-1, else the position of the first that is not."""
    for k in range(indices.size):
        if not 0 <= indices[k] < size:
            return k
    return -1


@jit
def take_rows(x, indices, out):
    """out[i, k, j] = x[i, indices[k], j]: x is (before, n, after), out (before, m, after)."""
    for i in range(out.shape[0]):
        for k in range(indices.size):
            row = indices[k]
            for j in range(out.shape[2]):
                out[i, k, j] = x[i, row, j]


@jit
def add_rows(g, indices, out):
    """out[i, indices[k], j] += g[i, k, j] from zeros: g is (before, m, after), out
    (before, n, after). The transpose of take_rows."""
    flat = out.reshape(-1)
    for t in range(flat.size):
        flat[t] = 0
    for i in range(g.shape[0]):
        for k in range(indices.size):
            row = indices[k]
            for j in range(g.shape[2]):
                out[i, row, j] += g[i, k, j]


@jit
def one_hot(labels, out):
    """Row k of out: zeros, and 1 at labels[k]."""
    for k in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[k, c] = 0
        out[k, labels[k]] = 1


@jit
def argmax_axis(x, a, r, b, out):
    """The index of the first largest value (or first NaN) along the middle axis of x viewed
    as (a, r, b), r >= 1, as NumPy's argmax."""
    v = x.reshape((a, r, b))
    for i in range(a):
        for j in range(b):
            best, at = v[i, 0, j], 0
            if best == best:
                for k in range(1, r):
                    value = v[i, k, j]
                    if value != value:
                        at = k
                        break
                    if value > best:
                        best, at = value, k
            out[i, j] = at


# ------------------------------------------------------------------------------ random
# Philox4x32-10, as core/random.py (the reference) describes it: element e of a draw takes
# 32-bit words e·w .. e·w + w - 1 of the stream, word t being lane t % 4 of block t // 4.

@jit
def _random_words(state, salt, count):
    """The first `count` words (at least; whole blocks) of draw `salt` at `state` (key,
    step), as uint32. Everything in 32-bit lanes but the products, and the round keys worked
    out once: the block loop vectorises (4.5 µs for 8192 words, against 35 µs with 64-bit
    lanes)."""
    mask = np.uint64(0xFFFFFFFF)
    key, step = np.uint64(state[0]), np.uint64(state[1])
    keys = np.empty(20, np.uint32)
    for r in range(10):
        keys[2 * r] = np.uint32(((key & mask) + np.uint64(r) * np.uint64(0x9E3779B9)) & mask)
        keys[2 * r + 1] = np.uint32((((key >> np.uint64(32)) & mask) +
                                     np.uint64(r) * np.uint64(0xBB67AE85)) & mask)
    s0, s1 = np.uint32(step & mask), np.uint32((step >> np.uint64(32)) & mask)
    blocks = (count + 3) // 4
    words = np.empty(blocks * 4, np.uint32)
    for b in range(blocks):
        c0, c1, c2, c3 = np.uint32(b), np.uint32(salt), s0, s1
        for r in range(10):
            p0 = np.uint64(c0) * np.uint64(0xD2511F53)
            p1 = np.uint64(c2) * np.uint64(0xCD9E8D57)
            c0, c1, c2, c3 = (np.uint32(p1 >> np.uint64(32)) ^ c1 ^ keys[2 * r], np.uint32(p1 & mask),
                              np.uint32(p0 >> np.uint64(32)) ^ c3 ^ keys[2 * r + 1], np.uint32(p0 & mask))
        words[4 * b] = c0
        words[4 * b + 1] = c1
        words[4 * b + 2] = c2
        words[4 * b + 3] = c3
    return words


@jit
def _unit(words, t, single):
    """A uniform float64 on [0, 1) from word t (float32: its top 24 bits) or words t, t+1
    (float64: 53 bits)."""
    if single:
        return np.float64(words[t] >> np.uint32(8)) * 2.0 ** -24
    high = np.float64(words[t] >> np.uint32(5))
    return (high * 2.0 ** 26 + np.float64(words[t + 1] >> np.uint32(6))) * 2.0 ** -53


@jit
def random_uniform(state, salt, out):
    single = out.itemsize == 4
    w = 1 if single else 2
    words = _random_words(state, salt, out.size * w)
    if single:  # (its own loop: one that branches per element does not vectorise)
        for e in range(out.size):
            out[e] = _unit(words, e, True)
        return
    for e in range(out.size):
        out[e] = _unit(words, e * w, False)


@jit
def random_normal(state, salt, out):
    single = out.itemsize == 4
    half = 1 if single else 2
    words = _random_words(state, salt, out.size * 2 * half)
    for e in range(out.size):
        u1 = _unit(words, 2 * half * e, single)
        u2 = _unit(words, 2 * half * e + half, single)
        out[e] = np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)


@jit
def advance_counter(state, out):
    out[0] = state[0]
    out[1] = state[1] + 1
