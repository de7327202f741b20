"""Krylov methods on compiled Hessian-vector products.

The Hessian of a network is too large to form, but Krylov methods need only products H·v.

In: a scalar loss node, the parameter nodes it is differentiated with respect to (Variables or
placeholders), and the data placeholders it also depends on.
Out: compiled curvature operators and solvers that use only their products. Vectors are lists
of NumPy arrays, one per parameter, shaped like it (a flat vector is a list of one array).

    HessianOperator(loss, params, inputs)       .matvec(vs, *data) -> [H v], one compiled call
    GaussNewtonOperator(z, kind, params, inputs) the same for G = Jᵀ H_L J (positive semidefinite)
    gauss_newton_vector_product(z, kind, params, vs) -> nodes G v (the graph transform)
    conjugate_gradient(matvec, b)  solves (H + damping·I) x = b   -> CGResult
    lanczos(matvec, k=k)           top-k eigenvalues and vectors  -> LanczosResult
    hutchinson_trace(matvec)       tr(H) from Rademacher probes   -> TraceEstimate
    to_dense(matvec)               H as an (n, n) matrix, n matvecs (for small problems, tests)
    inner, norm, flatten, unflatten  helpers on lists of arrays

`matvec` is any callable from a list of arrays to a list of arrays; `operator.bind(*data)`
gives one for a batch of data at the parameters' present values, carrying their shapes
(`.like`) so the solvers need no shapes. Binding evaluates the part of the product that does
not depend on v once (partial.py), so each product costs only its tangents: for the mnist-size
MLP about 1.3 gradients, against 1.75 for `matvec`, which recomputes everything. The solvers
do their arithmetic in float64 whatever the parameters' dtype.
The Hessian-free optimizer built on these is `symgrad.optim_hf.HessianFree`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from .runtime import kernels
from .core import ops
from .core.autodiff import gradients, hessian_vector_product, jvp
from .core.dims import is_known
from .compiler.function import function
from .core.graph import Node, is_named_leaf, placeholder, topological_order
from .core.interpreter import check_value
from .core.partial import split
from .core.simplify import simplify

__all__ = ["inner", "norm", "flatten", "unflatten", "BoundOperator", "Staged",
           "CurvatureOperator", "HessianOperator", "GaussNewtonOperator",
           "loss_hessian_product", "gauss_newton_vector_product", "CGResult",
           "conjugate_gradient", "LanczosResult", "lanczos", "TraceEstimate",
           "hutchinson_trace", "to_dense"]

# ------------------------------------------------------------------------------ vectors as lists

def _dot(x, y):
    """<x, y> of two arrays, summed in float64, without BLAS: NumPy's may not be the library
    compiled functions call, and mixing two slows both (blas.py)."""
    return float(np.einsum("i,i", np.ravel(x), np.ravel(y), dtype=np.float64))


def inner(a, b):
    """Σ over parameters of <a_i, b_i>: the inner product of two lists of arrays."""
    return sum(_dot(x, y) for x, y in zip(a, b))


def norm(a):
    """The Euclidean norm of a list of arrays, taken as one vector."""
    return math.sqrt(inner(a, a))


def flatten(arrays, out=None):
    """A list of arrays as one float64 vector (C order, parameters in order), written into
    `out` if given (it must have room for exactly all of them)."""
    arrays = [np.asarray(a) for a in arrays]
    size = sum(a.size for a in arrays)
    if out is None:
        out = np.empty(size, np.float64)
    elif size != out.size:
        raise ValueError(f"expected {out.size} numbers in all (one array per parameter), got "
                         f"{size}: a matvec must return arrays shaped like its input")
    start = 0
    for a in arrays:
        out[start:start + a.size] = a.ravel()
        start += a.size
    return out


def unflatten(vector, like):
    """A flat vector back to a list of arrays shaped like `like`."""
    vector, out, start = np.asarray(vector), [], 0
    for a in like:
        out.append(vector[start:start + a.size].reshape(a.shape))
        start += a.size
    return out


def _like_of(matvec, like):
    if like is None:
        like = getattr(matvec, "like", None)
    if like is None:
        raise ValueError("pass `like` (one array per parameter, for the shapes) or a matvec "
                         "from `operator.bind(...)`, which carries them")
    return [np.zeros(np.shape(a)) for a in like]


# ------------------------------------------------------------------------------ compiled operators

class BoundOperator:
    """The operator at one point: the data fixed, and the parameters' values as they were
    when bound. A callable vs -> [products], with `.like` (zero arrays shaped like the
    parameters) for the solvers.

    Binding evaluates, once, everything in the product that does not depend on v (the forward
    pass and the primal backward pass: the residuals of `partial.split`); each call then
    computes only what v changes. The point is copied (the Variables' values, and the data
    the products read), so later changes to either do not reach a bound operator: bind again
    after a step. `values`: the operator's `also` nodes at this point, computed by the same
    call (the loss and gradient, say, which share the forward pass)."""

    def __init__(self, operator, data):
        inputs = operator.inputs
        if len(data) != len(inputs):
            names = ", ".join(f"'{i.name}'" for i in inputs)
            raise TypeError(f"bind: the operator takes {len(inputs)} inputs ({names}), got {len(data)}")
        data = [np.array(check_value(i, d, f"bind: argument '{i.name}'"), order="C")
                for i, d in zip(inputs, data)]
        staged = operator.staged
        self.operator, self.data = operator, data
        self.like = [np.zeros(p.shape, p.dtype) for p in operator.params]
        computed = staged.prepare(*data) if staged.prepare is not None else []
        self.values = computed[:len(operator.also)]
        captured = [v.value.copy() for v in staged.captured]
        self._args = [*computed[len(operator.also):], *captured, *(data[k] for k in staged.data_used)]

    def __call__(self, vs):
        return self.operator.staged.apply(*self.operator._vectors(vs), *self._args)


@dataclass
class Staged:
    """A product compiled in two stages (see BoundOperator): `prepare(*inputs)` -> the
    operator's `also` values, then the residuals it computes; `apply(*vs, *those residuals,
    *the captured Variables' values, *the inputs at positions `data_used`)` -> the products.
    `specialised`: (node, replacement) for the work split off a fixed input (max pooling's
    routing: partial.py)."""
    prepare: object
    apply: object
    captured: list
    data_used: list
    specialised: list


class CurvatureOperator:
    """A product per parameter from (v per parameter, *inputs), compiled on first use: in
    one call (`matvec`, `function`), or in two stages for many products at one point
    (`bind`, `staged`). Subclasses say which product (`_products`). `also`: nodes that
    binding computes as well, in the same call, into `BoundOperator.values`."""

    kind = "curvature"

    def __init__(self, params, inputs=(), name=None, also=()):
        self.params = list(params)
        self.inputs = list(inputs)
        self.also = list(also)
        for p in self.params:
            if not isinstance(p, Node) or not is_named_leaf(p):
                raise TypeError(f"{type(self).__name__}: parameters must be Variables or "
                                f"placeholders, got {p!r}")
            if not all(is_known(d) for d in p.shape):
                raise ValueError(f"{type(self).__name__}: parameter '{p.name}' needs a fully "
                                 f"known shape, got {ops.fmt(p.shape)}")
            if p.op == "placeholder" and p not in self.inputs:
                raise ValueError(f"{type(self).__name__}: placeholder parameter '{p.name}' must "
                                 f"also be listed in `inputs` (its value comes with the data)")
        self.vectors = [placeholder(f"v{k}_{p.name}", p.shape, p.dtype)
                        for k, p in enumerate(self.params)]
        self.products = self._products(self.vectors)
        self.name = name or f"{self.kind}-vector product"

    def _products(self, vectors):
        raise NotImplementedError

    @cached_property
    def function(self):
        """The product as one compiled function of (vs, *inputs): everything recomputed."""
        return function(self.vectors + self.inputs, self.products, name=self.name,
                        background=False)  # products run in loops: compiled first

    @cached_property
    def staged(self):
        """The product split where v starts to matter (partial.split), as two functions."""
        roots, _ = simplify(self.products, fusion=False)
        parts = split(roots, self.vectors)
        pairs = list(zip(parts.residuals, parts.placeholders))
        computed = [(r, p) for r, p in pairs if r.op != "variable"]
        captured = [(r, p) for r, p in pairs if r.op == "variable"]
        prepare = None
        if computed or self.also:
            prepare = function(self.inputs, self.also + [r for r, _ in computed],
                               name=f"{self.name}: prepare", background=False)
        used = set(topological_order(parts.outputs))
        data_used = [k for k, i in enumerate(self.inputs) if i in used or i in parts.size_inputs]
        apply = function(self.vectors + [p for _, p in computed + captured] +
                         [self.inputs[k] for k in data_used], parts.outputs,
                         name=f"{self.name}: apply", background=False)
        return Staged(prepare, apply, [r for r, _ in captured], data_used, parts.specialised)

    def _vectors(self, vs):
        if len(vs) != len(self.params):
            raise ValueError(f"matvec: {len(self.params)} parameters but {len(vs)} vectors")
        arrays = []
        for k, (v, p) in enumerate(zip(vs, self.params)):
            v = np.asarray(v, dtype=p.dtype)
            if v.size != math.prod(p.shape):
                raise ValueError(f"matvec: vector {k} for '{p.name}' has {v.size} elements; "
                                 f"it needs shape {p.shape}")
            arrays.append(v.reshape(p.shape))
        return arrays

    def matvec(self, vs, *data):
        """[product per parameter] for the vectors `vs` (one array per parameter) and the
        values of `inputs`, in their order, in one call. Vectors are cast to the parameters'
        dtype. For many products at one point, `bind` once and call that instead."""
        return self.function(*self._vectors(vs), *data)

    def bind(self, *data):
        """A matvec for the solvers at this data and the parameters' present values, the
        work that does not depend on v done once, here (see BoundOperator)."""
        return BoundOperator(self, data)


class HessianOperator(CurvatureOperator):
    """H·v of the scalar `loss` with respect to `params`, compiled as one function of
    (vs, *inputs). `mode`: "forward" (forward-over-reverse, default) or "reverse"."""

    kind = "Hessian"

    def __init__(self, loss, params, inputs=(), mode="forward", name=None, also=()):
        if loss.shape != ():
            raise ValueError(f"HessianOperator: the loss must be a scalar, got shape {ops.fmt(loss.shape)}")
        self.loss, self.mode = loss, mode
        super().__init__(params, inputs, name, also)

    def _products(self, vectors):
        return hessian_vector_product(self.loss, self.params, vectors, mode=self.mode)


class GaussNewtonOperator(CurvatureOperator):
    """G·v = Jᵀ H_L J v for network output `z` (the loss's input) and a loss of `loss_kind`
    (see gauss_newton_vector_product), compiled as one function of (vs, *inputs)."""

    kind = "Gauss-Newton"

    def __init__(self, z, loss_kind, params, inputs=(), name=None, also=()):
        self.z, self.loss_kind = z, loss_kind
        super().__init__(params, inputs, name, also)

    def _products(self, vectors):
        return gauss_newton_vector_product(self.z, self.loss_kind, self.params, vectors)


# ------------------------------------------------------------------------------ Gauss-Newton

LOSS_KINDS = ("softmax_cross_entropy", "mean_squared_error", "sigmoid_binary_cross_entropy")
_ALIASES = {"softmax_ce": "softmax_cross_entropy", "ce": "softmax_cross_entropy",
            "mse": "mean_squared_error", "sigmoid_bce": "sigmoid_binary_cross_entropy",
            "bce": "sigmoid_binary_cross_entropy"}


def _count(z, axes):
    """The number of elements of z along `axes`, as a scalar node (known now or at run time)."""
    return ops.size([z.shape[a] for a in axes], z.dtype)


def loss_hessian_product(z, loss_kind, u):
    """H_L·u, where H_L is the Hessian of the loss (as `symgrad.nn` defines it: a mean) with
    respect to its input z. It does not depend on the labels, so none are needed.

    softmax_cross_entropy (classes on the last axis): (diag(q) - q qᵀ) u per row / rows, q = softmax(z)
    mean_squared_error: 2 u / (number of elements)
    sigmoid_binary_cross_entropy: σ(z)(1 - σ(z)) u / (number of elements)"""
    kind = _ALIASES.get(loss_kind, loss_kind)
    if u.shape != z.shape:
        raise ValueError(f"loss_hessian_product: u {ops.fmt(u.shape)} must have z's shape {ops.fmt(z.shape)}")
    if kind == "softmax_cross_entropy":
        q = ops.softmax(z, axis=-1)
        qu = q * u
        rows = _count(z, range(z.ndim - 1))
        return (qu - q * ops.sum(qu, axis=-1, keepdims=True)) / rows
    if kind == "mean_squared_error":
        return u * (2.0 / _count(z, range(z.ndim)))
    if kind == "sigmoid_binary_cross_entropy":
        s = ops.sigmoid(z)
        return s * (1.0 - s) * u / _count(z, range(z.ndim))
    raise ValueError(f"loss_kind must be one of {LOSS_KINDS} (or {tuple(_ALIASES)}), not {loss_kind!r}")


def gauss_newton_vector_product(z, loss_kind, params, vs):
    """Gauss-Newton-vector products G·v = Jᵀ H_L J v as graph nodes, one per parameter.

    J is the Jacobian of the network output `z` (logits or predictions) with respect to
    `params`, H_L the Hessian of the loss with respect to z (see loss_hessian_product). G is
    positive semidefinite because H_L is for these convex losses: the usual curvature for
    Hessian-free training. Built as forward mode (J v), then H_L, then reverse mode with a
    seed (Jᵀ ·), all on the graph that computes z, so the activations are shared."""
    params = list(params)
    u = jvp(z, params, vs)
    hu = loss_hessian_product(z, loss_kind, u)
    return gradients(z, params, grad_ys=hu, disconnected="zero")


# ------------------------------------------------------------------------------ conjugate gradient

@dataclass
class CGResult:
    """x: the solution (list of float64 arrays); iterations: matvecs used; residual_norm:
    |b - (H + damping I) x|; converged: it reached the tolerance; negative_curvature: it stopped
    at a direction p with pᵀ(H + damping I)p <= 0; residual: the residual vector (list)."""
    x: list
    iterations: int
    residual_norm: float
    converged: bool
    negative_curvature: bool
    residual: list


# CG on a network's parameters is bound by memory traffic, not arithmetic: these loops make
# one pass each over the float64 vectors where NumPy's in-place steps made several (they took
# twice as long as the Hessian-vector product itself on the mnist-size MLP). "reassoc" lets
# the sums vectorise; NaN and inf still propagate.
_loop = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})


@_loop
def _cg_curvature(p, product, damping):
    """pᵀ(H + damping·I)p, given product = H·p."""
    total = 0.0
    for i in range(p.size):
        total += p[i] * (product[i] + damping * p[i])
    return total


@_loop
def _cg_step(x, r, p, product, alpha, damping):
    """x += α·p and r -= α·(H + damping·I)p in place; returns the new rᵀr."""
    rr = 0.0
    for i in range(x.size):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * (product[i] + damping * p[i])
        r[i] = ri
        rr += ri * ri
    return rr


@_loop
def _cg_direction(p, r, beta):
    """p = r + β·p in place."""
    for i in range(p.size):
        p[i] = r[i] + beta * p[i]


def conjugate_gradient(matvec, b, x0=None, damping=0.0, tol=1e-6, atol=0.0, max_iter=None):
    """Solve (H + damping·I) x = b, H given by `matvec` (symmetric), by conjugate gradients.

    Stops when |r| <= max(tol·|b|, atol) or after `max_iter` matvecs (default: the number of
    unknowns, where exact arithmetic would be exact). If H + damping·I is not positive definite
    along a search direction, it stops there, as truncated Newton does: it returns the iterate
    so far, or b itself if that happens on the first step (a descent direction when b = -∇f)."""
    like = [np.asarray(a) for a in b]
    b = flatten(b)
    max_iter = b.size if max_iter is None else int(max_iter)
    damping = float(damping)
    # Each CG quantity is one flat float64 vector, updated in place by the loops below; the
    # product H·v is read into `product` and the damping added where it is used.
    product = np.empty_like(b)

    def multiply(v):
        """product = H·v; the damping is added where the product is used."""
        return flatten(matvec(unflatten(v, like)), out=product)

    if x0 is None:
        x, r = np.zeros_like(b), b.copy()
        used = 0
    else:
        x = flatten(x0)
        multiply(x)
        r = b - product - damping * x
        used = 1
    threshold = max(tol * math.sqrt(_dot(b, b)), atol)
    rr = _dot(r, r)
    p = r.copy()
    negative = False
    for it in range(max_iter):
        if math.sqrt(rr) <= threshold:
            break
        multiply(p)
        used += 1
        curvature = _cg_curvature(p, product, damping)
        if curvature <= 0 or not math.isfinite(curvature):
            negative = True
            if it == 0 and x0 is None:
                x = b.copy()
                r = b - product - damping * b  # b - A b, since x = p = b
                rr = _dot(r, r)
            break
        alpha = rr / curvature
        rr_new = _cg_step(x, r, p, product, alpha, damping)
        _cg_direction(p, r, rr_new / rr)
        rr = rr_new
    final = math.sqrt(rr)
    x, r = unflatten(x, like), unflatten(r, like)
    return CGResult(x, used, final, final <= threshold, negative, r)


# ------------------------------------------------------------------------------ Lanczos

@dataclass
class LanczosResult:
    """eigenvalues: (k,) float64, ordered as `which` asks (largest first by default);
    eigenvectors: k lists of arrays (one per parameter), unit norm over all parameters;
    residuals: (k,) |H u - θ u| bounds for each Ritz pair (small = converged);
    iterations: matvecs used."""
    eigenvalues: np.ndarray
    eigenvectors: list
    residuals: np.ndarray
    iterations: int


def _project_out(basis, w):
    """w -= basisᵀ·(basis·w) in place, for orthonormal rows `basis`, through the BLAS that
    compiled functions call (kernels.product): with two libraries, each one's idle threads
    slow the other's calls (measured: each Hessian-vector product in Lanczos 10× slower)."""
    if len(basis):
        column = w.reshape(-1, 1)
        coefficients = np.empty((len(basis), 1))
        kernels.product(basis, column, coefficients)
        correction = np.empty_like(column)
        kernels.product(basis.T, coefficients, correction)
        w -= correction[:, 0]


def lanczos(matvec, like=None, k=6, n_iter=None, which="largest", seed=0):
    """The k extreme eigenvalues (and eigenvectors) of the symmetric H given by `matvec`, by
    Lanczos with full reorthogonalisation: it keeps all `n_iter` basis vectors (n_iter × n
    floats), so it is for small problems or few iterations. `which`: "largest" (algebraic,
    the default), "smallest" or "magnitude". With n_iter = n (the default caps it there) the
    eigenvalues are exact up to rounding; fewer iterations give the extreme ones first.
    n_iter defaults to max(2k + 20, 40), and is never more than n."""
    like = _like_of(matvec, like)
    n = sum(a.size for a in like)
    if not 1 <= k <= n:
        raise ValueError(f"lanczos: k must be between 1 and {n}, got {k}")
    m = min(n, n_iter if n_iter is not None else max(2 * k + 20, 40))
    if m < k:
        raise ValueError(f"lanczos: n_iter={m} is fewer than k={k}")
    rng = np.random.default_rng(seed)
    basis = np.zeros((m, n))
    alphas, betas = np.zeros(m), np.zeros(m)

    def orthogonal_random(count):
        # A fresh start, orthogonal to the basis so far (twice: one Gram-Schmidt pass loses it).
        w = rng.standard_normal(n)
        for _ in range(2):
            _project_out(basis[:count], w)
        return w / math.sqrt(_dot(w, w))

    q = orthogonal_random(0)
    scale = 0.0
    for j in range(m):
        basis[j] = q
        w = flatten(matvec(unflatten(q, like)))
        alphas[j] = _dot(q, w)
        # Full reorthogonalisation against every basis vector, twice, instead of the
        # three-term recurrence alone: rounding would otherwise bring back copies of
        # converged eigenvectors (ghost eigenvalues).
        for _ in range(2):
            _project_out(basis[:j + 1], w)
        beta = math.sqrt(_dot(w, w))
        scale = max(scale, abs(alphas[j]), beta)
        if j + 1 == m:
            betas[j] = beta
            break
        if beta <= 1e-10 * max(scale, 1e-300):
            # An invariant subspace is found (H has few distinct eigenvalues along the start):
            # continue from a new direction; the tridiagonal matrix splits into blocks.
            betas[j] = 0.0
            q = orthogonal_random(j + 1)
        else:
            betas[j] = beta
            q = w / beta
    tridiagonal = np.diag(alphas) + np.diag(betas[:m - 1], 1) + np.diag(betas[:m - 1], -1)
    theta, s = np.linalg.eigh(tridiagonal)
    order = {"largest": np.argsort(-theta), "smallest": np.argsort(theta),
             "magnitude": np.argsort(-np.abs(theta))}.get(which)
    if order is None:
        raise ValueError(f"lanczos: which must be 'largest', 'smallest' or 'magnitude', not {which!r}")
    order = order[:k]
    vectors = basis.T @ s[:, order]
    residuals = np.abs(betas[m - 1] * s[m - 1, order])
    return LanczosResult(theta[order], [unflatten(v, like) for v in vectors.T], residuals, m)


# ------------------------------------------------------------------------------ Hutchinson

@dataclass
class TraceEstimate:
    """trace: the mean of zᵀ H z over the probes; stderr: its standard error;
    samples: each probe's zᵀ H z."""
    trace: float
    stderr: float
    samples: np.ndarray


def hutchinson_trace(matvec, like=None, n_probes=100, seed=0):
    """tr(H) ≈ mean of zᵀ H z over Rademacher probes z (entries ±1), one matvec each.
    Unbiased; its variance is 2·Σ_{i≠j} H_ij² per probe, so it is exact for diagonal H."""
    like = _like_of(matvec, like)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_probes)
    for i in range(n_probes):
        z = [rng.integers(0, 2, size=a.shape) * 2.0 - 1.0 for a in like]
        samples[i] = inner(z, matvec(z))
    stderr = samples.std(ddof=1) / math.sqrt(n_probes) if n_probes > 1 else math.inf
    return TraceEstimate(float(samples.mean()), float(stderr), samples)


# ------------------------------------------------------------------------------ dense (small)

def to_dense(matvec, like=None):
    """H as an (n, n) float64 matrix, one matvec per column: for checking small problems.
    Rows and columns follow the parameters in order, each flattened in C order."""
    like = _like_of(matvec, like)
    n = sum(a.size for a in like)
    columns = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        columns.append(flatten(matvec(unflatten(e, like))))
    return np.stack(columns, axis=1)

