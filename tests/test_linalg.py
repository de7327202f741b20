"""Krylov methods on compiled HVPs (symgrad.linalg) and the Hessian-free optimizer.

References are dense NumPy linear algebra on Hessians formed by central differences of the
gradient (run by the interpreter) and on Jᵀ H_L J formed with sg.jacobian. Compiled
functions are shared by module fixtures: each costs seconds to compile.
"""
import numpy as np
import pytest

import symgrad as sg
from symgrad import linalg
from symgrad.optim_hf import HessianFree

RNG = np.random.default_rng(0)
X = RNG.standard_normal((6, 3))
LABELS = np.eye(3)[RNG.integers(0, 3, 6)]


def tiny_net(x, params):
    W1, b1, W2, b2 = params
    return sg.tanh(x @ W1 + b1) @ W2 + b2


@pytest.fixture(scope="module")
def net():
    """A 3-4-3 tanh net (31 parameters) with softmax-CE, its compiled HVP, and H formed
    densely by central differences of the interpreted gradient."""
    rng = np.random.default_rng(1)
    params = [sg.Variable(rng.standard_normal(s), name=n)
              for n, s in [("W1", (3, 4)), ("b1", (4,)), ("W2", (4, 3)), ("b2", (3,))]]
    x = sg.placeholder("x", (None, 3), "float64")
    y = sg.placeholder("y", (None, 3), "float64")
    loss = sg.nn.softmax_cross_entropy(tiny_net(x, params), y)
    hessian = linalg.HessianOperator(loss, params, [x, y])
    grads = sg.gradients(loss, params)

    def flat_grad():
        return linalg.flatten(sg.evaluate(grads, {x: X, y: LABELS}))

    theta = linalg.flatten([p.value for p in params])
    like = [p.value for p in params]
    h, columns = 1e-5, []
    for i in range(theta.size):
        diffs = []
        for sign in (1, -1):
            shifted = theta.copy()
            shifted[i] += sign * h
            for p, v in zip(params, linalg.unflatten(shifted, like)):
                p.value = v
            diffs.append(flat_grad())
        columns.append((diffs[0] - diffs[1]) / (2 * h))
    for p, v in zip(params, linalg.unflatten(theta, like)):
        p.value = v
    dense = np.stack(columns, axis=1)
    return dict(params=params, x=x, y=y, loss=loss, hessian=hessian,
                matvec=hessian.bind(X, LABELS), dense=(dense + dense.T) / 2)


def test_compiled_hvp_matches_finite_difference_hessian(net):
    H = linalg.to_dense(net["matvec"])
    assert H.shape == (31, 31)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    np.testing.assert_allclose(H, net["dense"], atol=1e-7)


def test_hvp_works_on_lists_of_parameter_arrays(net):
    vs = [np.ones(p.shape) for p in net["params"]]
    products = net["hessian"].matvec(vs, X, LABELS)
    assert [hv.shape for hv in products] == [p.shape for p in net["params"]]
    np.testing.assert_allclose(linalg.flatten(products), net["dense"] @ np.ones(31), atol=1e-7)


def test_conjugate_gradient_matches_dense_solve(net):
    H = net["dense"]
    damping = max(0.0, -np.linalg.eigvalsh(H)[0]) + 0.1  # H itself may be indefinite
    b = [RNG.standard_normal(p.shape) for p in net["params"]]
    result = linalg.conjugate_gradient(net["matvec"], b, damping=damping, tol=1e-12)
    expected = np.linalg.solve(H + damping * np.eye(31), linalg.flatten(b))
    assert result.converged and not result.negative_curvature
    assert result.iterations <= 31 + 5  # at most n in exact arithmetic
    assert [a.shape for a in result.x] == [p.shape for p in net["params"]]
    np.testing.assert_allclose(linalg.flatten(result.x), expected, rtol=1e-6, atol=1e-8)
    assert result.residual_norm <= 1e-12 * linalg.norm(b)


def test_conjugate_gradient_warm_start_and_truncation():
    A = np.diag(np.arange(1.0, 21.0))
    matvec = lambda v: [A @ v[0]]
    b = [np.ones(20)]
    truncated = linalg.conjugate_gradient(matvec, b, max_iter=3)
    assert truncated.iterations == 3 and not truncated.converged
    warm = linalg.conjugate_gradient(matvec, b, x0=truncated.x, tol=1e-12)
    assert warm.converged
    np.testing.assert_allclose(warm.x[0], 1 / np.arange(1.0, 21.0), rtol=1e-9)
    damped = linalg.conjugate_gradient(matvec, b, x0=truncated.x, damping=0.5, tol=1e-12)
    np.testing.assert_allclose(damped.x[0], 1 / np.arange(1.5, 21.0), rtol=1e-9)
    np.testing.assert_allclose(damped.residual[0], 1 - np.arange(1.5, 21.0) * damped.x[0], atol=1e-11)


def test_conjugate_gradient_stops_on_negative_curvature():
    A = np.diag([1.0, -2.0, 3.0])
    result = linalg.conjugate_gradient(lambda v: [A @ v[0]], [np.ones(3)])
    assert result.negative_curvature and not result.converged
    # Stopped later: x is CG's last iterate and the residual is b - (A + λI)x.
    np.testing.assert_allclose(result.residual[0], 1 - np.diag(A) * result.x[0], atol=1e-12)
    # Stopped on the first step (bᵀ(A + λI)b < 0): b itself is returned, with b - (A + λI)b.
    A = np.diag([1.0, -6.0, 3.0])
    result = linalg.conjugate_gradient(lambda v: [A @ v[0]], [np.ones(3)], damping=0.5)
    assert result.negative_curvature and result.iterations == 1
    np.testing.assert_allclose(result.x[0], np.ones(3))
    np.testing.assert_allclose(result.residual[0], 1 - (np.diag(A) + 0.5))


def test_a_matvec_of_the_wrong_size_is_an_error():
    with pytest.raises(ValueError, match="expected 3 numbers in all .* got 2"):
        linalg.conjugate_gradient(lambda v: [v[0][:2]], [np.ones(3)])


def test_float32_operator_with_the_solvers():
    rng = np.random.default_rng(5)
    params = [sg.Variable(rng.standard_normal(s).astype(np.float32), name=n)
              for n, s in [("W1", (3, 4)), ("b1", (4,)), ("W2", (4, 3)), ("b2", (3,))]]
    x = sg.placeholder("x", (None, 3), "float32")
    y = sg.placeholder("y", (None, 3), "float32")
    loss = sg.nn.softmax_cross_entropy(tiny_net(x, params), y)
    G = linalg.GaussNewtonOperator(tiny_net(x, params), "ce", params, [x, y]).bind(
        X.astype(np.float32), LABELS.astype(np.float32))
    dense = linalg.to_dense(G)
    b = [rng.standard_normal(p.shape) for p in params]
    result = linalg.conjugate_gradient(G, b, damping=0.1, tol=1e-6)
    expected = np.linalg.solve(dense + 0.1 * np.eye(31), linalg.flatten(b))
    np.testing.assert_allclose(linalg.flatten(result.x), expected, rtol=1e-3, atol=1e-4)
    top = linalg.lanczos(G, k=2).eigenvalues
    np.testing.assert_allclose(top, np.linalg.eigvalsh((dense + dense.T) / 2)[::-1][:2], rtol=1e-4)
    assert loss.dtype == "float32"


def test_lanczos_matches_dense_eigenpairs(net):
    H = net["dense"]
    values, vectors = np.linalg.eigh(H)
    result = linalg.lanczos(net["matvec"], k=3)
    np.testing.assert_allclose(result.eigenvalues, values[::-1][:3], rtol=1e-8, atol=1e-8)
    for u, ref in zip(result.eigenvectors, vectors[:, ::-1].T):
        assert [a.shape for a in u] == [p.shape for p in net["params"]]
        assert abs(linalg.flatten(u) @ ref) == pytest.approx(1.0, abs=1e-6)
    smallest = linalg.lanczos(net["matvec"], k=2, which="smallest")
    np.testing.assert_allclose(smallest.eigenvalues, values[:2], rtol=1e-8, atol=1e-8)


def test_lanczos_with_few_iterations_finds_the_top_eigenvalue_and_low_rank():
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    spectrum = np.concatenate([[50.0, 20.0, 10.0], rng.uniform(0, 1, 197)])
    A = (Q * spectrum) @ Q.T
    like = [np.zeros((10, 10)), np.zeros(100)]
    matvec = lambda v: linalg.unflatten(A @ linalg.flatten(v), like)
    result = linalg.lanczos(matvec, like, k=3, n_iter=30)
    np.testing.assert_allclose(result.eigenvalues, [50, 20, 10], rtol=1e-8)
    assert np.all(result.residuals < 1e-6)
    # Rank 2: Lanczos breaks down after two steps and must restart, not divide by zero.
    low_rank = (Q[:, :2] * [5.0, 3.0]) @ Q[:, :2].T
    result = linalg.lanczos(lambda v: [low_rank @ v[0]], [np.zeros(200)], k=4, n_iter=10)
    np.testing.assert_allclose(result.eigenvalues, [5, 3, 0, 0], atol=1e-9)


def test_hutchinson_trace_matches_dense_trace(net):
    exact = np.trace(net["dense"])
    estimate = linalg.hutchinson_trace(net["matvec"], n_probes=4000, seed=1)
    assert abs(estimate.trace - exact) <= 4 * estimate.stderr
    # The estimator is unbiased: the exact mean over all 2^n probes is the trace, and its
    # variance per probe is 2 Σ_{i≠j} H_ij².
    off = net["dense"] - np.diag(np.diag(net["dense"]))
    assert estimate.samples.var() == pytest.approx(2 * np.sum(off ** 2), rel=0.15)


def test_hutchinson_trace_is_exact_for_diagonal_operators():
    d = np.arange(1.0, 7.0).reshape(2, 3)
    estimate = linalg.hutchinson_trace(lambda v: [d * v[0]], [d], n_probes=5)
    assert estimate.trace == pytest.approx(21.0) and estimate.stderr == 0


# ------------------------------------------------------------------------------ Gauss-Newton

def dense_gauss_newton(z, kind, params, feed):
    """Jᵀ H_L J formed densely: J with sg.jacobian, H_L written out in NumPy."""
    J = np.concatenate([sg.evaluate(sg.jacobian(z, p), feed).reshape(int(np.prod(z.shape)), -1) for p in params], axis=1)
    zv = sg.evaluate(z, feed)
    if kind == "softmax_cross_entropy":
        q = np.exp(zv - zv.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        H_L = np.zeros((zv.size, zv.size))
        for r, row in enumerate(q):
            block = slice(r * len(row), (r + 1) * len(row))
            H_L[block, block] = (np.diag(row) - np.outer(row, row)) / len(q)
    elif kind == "mean_squared_error":
        H_L = 2 * np.eye(zv.size) / zv.size
    else:
        s = 1 / (1 + np.exp(-zv.ravel()))
        H_L = np.diag(s * (1 - s)) / zv.size
    return J.T @ H_L @ J


@pytest.fixture(scope="module")
def gn_net():
    rng = np.random.default_rng(2)
    params = [sg.Variable(rng.standard_normal(s), name=n)
              for n, s in [("W1", (3, 4)), ("b1", (4,)), ("W2", (4, 3)), ("b2", (3,))]]
    fixed = sg.placeholder("x_fixed", (6, 3), "float64")  # sg.jacobian needs static shapes
    return params, fixed, tiny_net(fixed, params)


@pytest.mark.parametrize("kind", ["softmax_cross_entropy", "mean_squared_error",
                                  "sigmoid_binary_cross_entropy"])
def test_gauss_newton_matches_dense_and_is_psd(gn_net, kind):
    params, fixed, z = gn_net
    like = [p.value for p in params]
    vectors = [sg.placeholder(f"v{k}", p.shape, "float64") for k, p in enumerate(params)]
    products = linalg.gauss_newton_vector_product(z, kind, params, vectors)

    def matvec(vs):  # the interpreter: no compile needed for a check of the graph
        return sg.evaluate(products, {fixed: X, **dict(zip(vectors, vs))})

    G = linalg.to_dense(matvec, like)
    expected = dense_gauss_newton(z, kind, params, {fixed: X})
    np.testing.assert_allclose(G, expected, atol=1e-10)
    assert np.linalg.eigvalsh((G + G.T) / 2)[0] >= -1e-10


def test_compiled_gauss_newton_with_unknown_batch(gn_net):
    params, fixed, z_fixed = gn_net
    x = sg.placeholder("x", (None, 3), "float64")
    y = sg.placeholder("y", (None, 3), "float64")
    G = linalg.GaussNewtonOperator(tiny_net(x, params), "softmax_ce", params, [x, y])
    dense = linalg.to_dense(G.bind(X, LABELS))
    expected = dense_gauss_newton(z_fixed, "softmax_cross_entropy", params, {fixed: X})
    np.testing.assert_allclose(dense, expected, atol=1e-10)


def test_bad_definitions_are_named():
    p = sg.placeholder("p", (2,), "float64")
    with pytest.raises(ValueError, match="placeholder parameter 'p'"):
        linalg.HessianOperator(sg.sum(sg.square(p)), [p])
    with pytest.raises(ValueError, match="loss_kind"):
        linalg.gauss_newton_vector_product(p * 2.0, "hinge", [p], [p])


# ------------------------------------------------------------------------------ Newton-CG

def rosenbrock(p):
    return sg.square(1.0 - p[0]) + 100.0 * sg.square(p[1] - sg.square(p[0]))


def test_hessian_operator_on_a_placeholder_parameter():
    p = sg.placeholder("p", (2,), "float64")
    H = linalg.HessianOperator(rosenbrock(p), [p], inputs=[p])
    point = np.array([-1.2, 1.0])
    x, y = point
    exact = np.array([[2 - 400 * (y - x * x) + 800 * x * x, -400 * x], [-400 * x, 200]])
    np.testing.assert_allclose(linalg.to_dense(H.bind(point)), exact, rtol=1e-12)
    step = linalg.conjugate_gradient(H.bind(point), [np.array([1.0, 2.0])], tol=1e-14)
    np.testing.assert_allclose(step.x[0], np.linalg.solve(exact, [1.0, 2.0]), rtol=1e-9)


NEWTON_CG_STEPS = []


def test_newton_cg_reaches_rosenbrock_minimum():
    p = sg.Variable(np.array([-1.2, 1.0]), name="p")
    opt = HessianFree(rosenbrock(p), [p], damping=1e-3)
    for step in range(1, 101):
        opt.step()
        if np.max(np.abs(p.value - 1.0)) < 1e-8:
            break
    np.testing.assert_allclose(p.value, [1.0, 1.0], atol=1e-8)
    assert step <= 40, step  # gradient descent needs tens of thousands (examples/)
    NEWTON_CG_STEPS.append(step)


def test_hessian_free_gauss_newton_trains_a_classifier():
    rng = np.random.default_rng(4)
    params = [sg.Variable(0.5 * rng.standard_normal(s), name=n)
              for n, s in [("W1", (3, 4)), ("b1", (4,)), ("W2", (4, 3)), ("b2", (3,))]]
    x = sg.placeholder("x", (None, 3), "float64")
    y = sg.placeholder("y", (None, 3), "float64")
    z = tiny_net(x, params)
    loss = sg.nn.softmax_cross_entropy(z, y)
    opt = HessianFree(loss, params, [x, y], curvature="gauss_newton", z=z,
                      loss_kind="softmax_cross_entropy", damping=1.0, cg_max_iter=20)
    data = rng.standard_normal((64, 3))
    labels = np.eye(3)[np.argmax(data @ rng.standard_normal((3, 3)), axis=1)]
    losses = [opt.step(data, labels) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))  # full batch: never worse
    assert opt.last.damping > 0


def test_hessian_free_needs_variables():
    p = sg.placeholder("p", (2,), "float64")
    with pytest.raises(TypeError, match="Variables"):
        HessianFree(rosenbrock(p), [p], [p])


def test_rosenbrock_example_newton_cg_against_gradient_descent():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parent.parent / "examples" / "newton_cg_rosenbrock.py"
    spec = importlib.util.spec_from_file_location("newton_cg_rosenbrock", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    newton_steps, gd_steps = example.main()
    assert newton_steps is not None and gd_steps is not None
    assert 100 * newton_steps < gd_steps  # measured: 20 against 25,323
