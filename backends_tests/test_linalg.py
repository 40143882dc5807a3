"""linear, eigh, eig, svd, pca and power_iteration on every backend.

Oracles: ``numpy.linalg`` in float64 and scikit-learn's ``PCA(svd_solver="full")``.
Eigenvectors and singular vectors are defined only up to sign (a phase, for
``eig``), so they are checked by what does not depend on it — the
reconstruction $Q \\Lambda Q^\\top$ (or $U \\Sigma V^\\top$) and orthogonality —
never by their raw signs. PCA and power iteration fix the sign themselves, so
their vectors are compared directly. The reconstructions are computed with the
backend's own namespace, so they carry its namespace, device and dtype into
``assert_close``.
"""

from __future__ import annotations

import os
from typing import Any

import array_api_compat
import numpy as np
import pytest
from sklearn.decomposition import PCA

import mlequations as mle
from mlequations._backends import Backend, by_id

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261125)
GRID = ("numpy", "torch-cpu", "jax-jit")  # backends for extra cases beyond the full matrix
_REQUIRED = {lib for lib in os.environ.get("MLEQUATIONS_REQUIRE", "").split(",") if lib}


def grid_backend(backend_id: str) -> Backend:
    """A backend of the extra cases, skipped (or failed, if required) when unavailable."""
    backend = by_id(backend_id)
    reason = backend.skip_reason()
    if reason is not None:
        if backend.library in _REQUIRED:
            pytest.fail(f"{backend_id} is required by MLEQUATIONS_REQUIRE but {reason}")
        pytest.skip(reason)
    return backend


# The guide's examples.
GUIDE_A = np.array([[2.0, 1.0], [1.0, 3.0]])
GUIDE_X = np.array([1.0, 2.0])
GUIDE_B = np.array([0.0, 1.0])
GUIDE_EIG = np.array([[4.0, 2.0], [1.0, 3.0]])
GUIDE_SVD = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])


def _symmetric(*shape: int) -> np.ndarray:
    a = RNG.normal(size=shape)
    return a + np.swapaxes(a, -1, -2)


def _with_spectrum(values: list[float]) -> np.ndarray:
    q, _ = np.linalg.qr(RNG.normal(size=(len(values), len(values))))
    return (q * np.asarray(values)) @ q.T


def _flip(v: np.ndarray) -> np.ndarray:
    """Vectors (last axis) signed so that their entry of largest magnitude is positive."""
    index = np.argmax(np.abs(v), axis=-1)[..., None]
    return v * np.sign(np.take_along_axis(v, index, axis=-1))


def _eye(backend: Backend, n: int, like: Any) -> Any:
    return np.broadcast_to(np.eye(n), (*like.shape[:-2], n, n))


def _reconstruct(backend: Backend, q: Any, w: Any) -> Any:
    xp = backend.xp
    return xp.matmul(q * w[..., None, :], xp.matrix_transpose(q))


def _gram(backend: Backend, q: Any) -> Any:
    xp = backend.xp
    return xp.matmul(xp.matrix_transpose(q), q)


# -- the linear map ---------------------------------------------------------------------------


class TestLinear:
    def test_guide_example_is_4_8(self, backend, dtype):
        # The guide prints [4, 7]: that is A x alone; A x + b is [4, 8].
        a, x, b = (backend.asarray(t, dtype) for t in (GUIDE_A, GUIDE_X, GUIDE_B))
        assert_close(backend.call(mle.linear, x, a, b), [4.0, 8.0], backend, dtype)
        assert_close(backend.call(mle.linear, x, a), [4.0, 7.0], backend, dtype)

    def test_integer_inputs_promote_to_the_default_float(self, backend):
        a, x, b = (backend.asarray(t.astype(np.int64)) for t in (GUIDE_A, GUIDE_X, GUIDE_B))
        out = backend.call(mle.linear, x, a, b)
        default = backend.xp.__array_namespace_info__().default_dtypes(device=backend.device)
        assert out.dtype == default["real floating"]
        if backend.values:
            np.testing.assert_array_equal(backend.to_numpy(out), [4.0, 8.0])

    def test_batch_matches_numpy(self, backend, dtype):
        x, w, b = RNG.normal(size=(2, 3, 5)), RNG.normal(size=(4, 5)), RNG.normal(size=4)
        out = backend.call(mle.linear, *(backend.asarray(t, dtype) for t in (x, w, b)))
        assert_close(out, x @ w.T + b, backend, dtype)

    def test_half_precision(self, backend, half_dtype):
        x, w = RNG.normal(size=(3, 8)), RNG.normal(size=(2, 8))
        xb, wb = backend.asarray(x, half_dtype), backend.asarray(w, half_dtype)
        if backend.values:
            x, w = (np.asarray(backend.to_numpy(t), dtype=np.float64) for t in (xb, wb))
        assert_close(backend.call(mle.linear, xb, wb), x @ w.T, backend, half_dtype)

    def test_shape_errors_name_the_argument(self):
        x = np.ones((4, 3))
        with pytest.raises(ValueError, match=r"`weight` must have shape \(D_out, D_in\).*3"):
            mle.linear(x, np.ones((2, 4)))
        with pytest.raises(ValueError, match="`weight`"):
            mle.linear(x, np.ones(3))
        with pytest.raises(ValueError, match=r"`bias` must have shape \(D_out,\) = \(2,\)"):
            mle.linear(x, np.ones((2, 3)), np.ones(3))
        with pytest.raises(ValueError, match="`x`"):
            mle.linear(np.asarray(1.0), np.ones((2, 3)))

    def test_torch_autograd_matches_torch(self):
        torch = torch_or_skip()
        arrays = RNG.normal(size=(2, 3, 5)), RNG.normal(size=(4, 5)), RNG.normal(size=4)
        upstream = torch.asarray(RNG.normal(size=(2, 3, 4)))
        grads = []
        for fn in (mle.linear, torch.nn.functional.linear):
            leaves = [torch.asarray(a, requires_grad=True) for a in arrays]
            (fn(*leaves) * upstream).sum().backward()
            grads.append([leaf.grad for leaf in leaves])
        for ours, theirs in zip(*grads, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)

    def test_jax_grad_under_jit(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        x, w, b = (jnp.asarray(RNG.normal(size=s)) for s in ((2, 3, 5), (4, 5), (4,)))
        dy = jnp.asarray(RNG.normal(size=(2, 3, 4)))
        grads = jax.jit(jax.grad(lambda *t: jnp.sum(mle.linear(*t) * dy), argnums=(0, 1, 2)))
        dx, dw, db = grads(x, w, b)
        np.testing.assert_allclose(dx, dy @ w, rtol=1e-10)
        np.testing.assert_allclose(dw, jnp.einsum("...o,...i->oi", dy, x), rtol=1e-10)
        np.testing.assert_allclose(db, dy.sum(axis=(0, 1)), rtol=1e-10)


# -- symmetric eigen-decomposition -------------------------------------------------------------


@pytest.mark.skip_xp_backend("dask", reason="dask.array has no linalg.eigh (see test_dask_*)")
class TestEigh:
    def test_symmetric_example(self, backend, dtype):
        a = np.array([[2.0, 1.0], [1.0, 2.0]])
        w, q = backend.call(mle.eigh, backend.asarray(a, dtype))
        assert_close(w, [1.0, 3.0], backend, dtype)
        assert_close(_reconstruct(backend, q, w), a, backend, dtype)

    def test_matches_numpy_by_reconstruction(self, backend, dtype):
        a = _symmetric(3, 5, 5)
        w, q = backend.call(mle.eigh, backend.asarray(a, dtype))
        assert_close(w, np.linalg.eigvalsh(a), backend, dtype, atol=1e-5)  # ascending
        assert_close(_reconstruct(backend, q, w), a, backend, dtype, atol=1e-5)
        assert_close(_gram(backend, q), _eye(backend, 5, a), backend, dtype, atol=1e-5)

    def test_half_precision(self, backend, half_dtype):
        a = np.array([[2.0, 1.0], [1.0, 2.0]])
        w, q = backend.call(mle.eigh, backend.asarray(a, half_dtype))
        assert_close(w, [1.0, 3.0], backend, half_dtype)
        assert_close(_reconstruct(backend, q, w), a, backend, half_dtype)


def test_dask_has_no_eigh_and_no_eig():
    backend = by_id("dask")
    if backend.skip_reason():
        pytest.skip(backend.skip_reason())
    a = backend.asarray(_symmetric(3, 3), "float64")
    with pytest.raises(NotImplementedError, match=r"eigh: the dask\.array backend"):
        mle.eigh(a)
    with pytest.raises(NotImplementedError, match=r"eig: the dask\.array backend"):
        mle.eig(a)


# -- general eigen-decomposition ---------------------------------------------------------------


def _eig(backend: Backend, a: np.ndarray, dtype: str) -> tuple[Any, Any] | None:
    """``eig`` on `backend`; ``None`` after checking the documented error where it has none."""
    arr = backend.asarray(a, dtype)
    if getattr(getattr(backend.xp, "linalg", None), "eig", None) is None:
        with pytest.raises(NotImplementedError, match="has no general eigen-solver"):
            backend.call(mle.eig, arr)
        return None
    w, v = backend.call(mle.eig, arr)
    complex_dtype = backend.dtype("complex64" if dtype == "float32" else "complex128")
    for t in (w, v):
        assert t.dtype == complex_dtype, f"dtype {t.dtype}, expected {complex_dtype}"
        if backend.device is not None:
            assert backend.device_of(t) == backend.device
    assert array_api_compat.array_namespace(w, v) is backend.xp
    if not backend.values:
        return None
    return backend.to_numpy(w), backend.to_numpy(v)


def _check_eigenpairs(a: np.ndarray, w: np.ndarray, v: np.ndarray, tol: float) -> None:
    key = lambda z: np.lexsort((z.imag, np.round(z.real, 4)))  # noqa: E731
    expected = np.linalg.eigvals(a)
    np.testing.assert_allclose(w[key(w)], expected[key(expected)], rtol=tol, atol=tol)
    scale = np.linalg.norm(a)
    np.testing.assert_allclose(a @ v, v * w, atol=tol * scale)  # A v = λ v
    np.testing.assert_allclose(np.linalg.norm(v, axis=0), 1.0, rtol=tol)


class TestEig:
    def test_guide_matrix_has_eigenvalues_5_and_2(self, backend, dtype):
        result = _eig(backend, GUIDE_EIG, dtype)
        if result is not None:
            _check_eigenpairs(GUIDE_EIG, *result, tol=1e-5 if dtype == "float32" else 1e-12)
            np.testing.assert_allclose(np.sort(result[0].real), [2.0, 5.0], rtol=1e-5)

    def test_rotation_has_complex_eigenvalues(self, backend, dtype):
        rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
        result = _eig(backend, rotation, dtype)
        if result is not None:
            np.testing.assert_allclose(np.sort_complex(result[0]), [-1j, 1j], atol=1e-6)
            _check_eigenpairs(rotation, *result, tol=1e-5)

    def test_matches_numpy(self, backend, dtype):
        a = RNG.normal(size=(5, 5))
        result = _eig(backend, a, dtype)
        if result is not None:
            _check_eigenpairs(a, *result, tol=1e-4 if dtype == "float32" else 1e-10)

    def test_not_square_names_the_argument(self):
        with pytest.raises(ValueError, match=r"`a` must be a square matrix.*\(3, 2\)"):
            mle.eig(np.ones((3, 2)))


# -- singular value decomposition --------------------------------------------------------------


class TestSVD:
    def test_guide_example(self, backend, dtype):
        u, s, vh = backend.call(mle.svd, backend.asarray(GUIDE_SVD, dtype))
        assert_close(s, [9.52551809, 0.51430058], backend, dtype, atol=1e-8)
        assert_close(backend.xp.matmul(u * s, vh), GUIDE_SVD, backend, dtype, atol=1e-5)

    @pytest.mark.parametrize(
        ("shape", "full_matrices"),
        [((6, 4), False), ((3, 5), True), ((2, 5, 3), False)],
        ids=["tall", "wide-full", "stack"],
    )
    def test_matches_numpy_by_reconstruction(self, backend, dtype, shape, full_matrices):
        a = RNG.normal(size=shape)
        arr = backend.asarray(a, dtype)
        if backend.library == "dask" and (full_matrices or len(shape) > 2):
            # dask.array.linalg.svd computes only the reduced SVD of one 2-D matrix.
            with pytest.raises(ValueError, match=r"full_matrices|2D"):
                backend.call(mle.svd, arr, full_matrices=full_matrices)
            return
        u, s, vh = backend.call(mle.svd, arr, full_matrices=full_matrices)
        m, n = shape[-2:]
        k = min(m, n)
        assert tuple(u.shape[-2:]) == ((m, m) if full_matrices else (m, k))
        assert tuple(vh.shape[-2:]) == ((n, n) if full_matrices else (k, n))
        xp = backend.xp
        assert_close(s, np.linalg.svd(a, compute_uv=False), backend, dtype, atol=1e-5)
        recon = xp.matmul(u[..., :k] * s[..., None, :], vh[..., :k, :])
        assert_close(recon, a, backend, dtype, atol=1e-5)
        assert_close(_gram(backend, u), _eye(backend, u.shape[-1], u), backend, dtype, atol=1e-5)
        vvt = xp.matmul(vh, xp.matrix_transpose(vh))
        assert_close(vvt, _eye(backend, vh.shape[-2], vh), backend, dtype, atol=1e-5)

    def test_half_precision(self, backend, half_dtype):
        _, s, _ = backend.call(mle.svd, backend.asarray(GUIDE_SVD, half_dtype))
        assert_close(s, [9.52551809, 0.51430058], backend, half_dtype)

    def test_vector_input_names_the_argument(self):
        with pytest.raises(ValueError, match="`a` must have shape"):
            mle.svd(np.ones(3))


# -- PCA ----------------------------------------------------------------------------------------


def _pca_data(n: int, d: int) -> np.ndarray:
    scales = np.linspace(3.0, 0.5, d)
    q, _ = np.linalg.qr(RNG.normal(size=(d, d)))
    return RNG.normal(size=(n, d)) * scales @ q + RNG.normal(size=d)


PCA_CASES = {
    "tall": (_pca_data(20, 4), 2),
    "wide": (_pca_data(6, 8), 3),
    "all": (_pca_data(10, 3), 3),
}


class TestPCA:
    def test_matches_scikit_learn(self, backend, dtype):
        self._check(backend, dtype, "tall")

    @pytest.mark.parametrize("backend_id", GRID)
    @pytest.mark.parametrize("case", ["wide", "all"])
    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_more_shapes_match_scikit_learn(self, backend_id, dtype_name, case):
        # More samples than features, fewer, and every component (ratios sum to 1).
        self._check(grid_backend(backend_id), dtype_name, case)

    def _check(self, backend: Backend, dtype: str, case: str) -> None:
        x, k = PCA_CASES[case]
        sk = PCA(n_components=k, svd_solver="full").fit(x)
        out = backend.call(mle.pca, backend.asarray(x, dtype), n_components=k)
        tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {}
        assert_close(out.components, sk.components_, backend, dtype, **tol)
        assert_close(out.explained_variance, sk.explained_variance_, backend, dtype, **tol)
        ratio = sk.explained_variance_ratio_
        assert_close(out.explained_variance_ratio, ratio, backend, dtype, **tol)
        assert_close(out.mean, sk.mean_, backend, dtype, **tol)

    def test_docstring_example(self, backend, dtype):
        x = np.array([[2.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [0.0, -1.0]])
        out = backend.call(mle.pca, backend.asarray(x, dtype), n_components=1)
        assert_close(out.components, [[1.0, 0.0]], backend, dtype)
        assert_close(out.explained_variance, [8.0 / 3.0], backend, dtype)
        assert_close(out.explained_variance_ratio, [0.8], backend, dtype)

    def test_half_precision(self, backend, half_dtype):
        x, k = PCA_CASES["tall"]
        xb = backend.asarray(x, half_dtype)
        xs = np.asarray(backend.to_numpy(xb), dtype=np.float64) if backend.values else x
        sk = PCA(n_components=k, svd_solver="full").fit(xs)
        out = backend.call(mle.pca, xb, n_components=k)
        assert_close(out.components, sk.components_, backend, half_dtype)
        assert_close(out.explained_variance, sk.explained_variance_, backend, half_dtype)

    @pytest.mark.parametrize("n_components", [0, 5, 2.0, True])
    def test_bad_n_components(self, n_components):
        with pytest.raises(ValueError, match="`n_components` must be an int between 1 and"):
            mle.pca(np.ones((6, 4)), n_components=n_components)

    @pytest.mark.parametrize("shape", [(6,), (1, 4), (2, 3, 4)])
    def test_bad_x(self, shape):
        with pytest.raises(ValueError, match=r"`x` must have shape \(N, D\)"):
            mle.pca(np.ones(shape), n_components=1)

    def test_torch_autograd_matches_finite_differences(self):
        torch = torch_or_skip()
        x, k = PCA_CASES["tall"]
        c = RNG.normal(size=(k, x.shape[1]))
        t = torch.asarray(x, requires_grad=True)
        _pca_objective(mle.pca(t, n_components=k), torch.asarray(c)).backward()
        np.testing.assert_allclose(
            t.grad.numpy(), _finite_differences(x, c, k), rtol=1e-6, atol=1e-8
        )

    def test_jax_grad_under_jit_matches_torch_autograd(self):
        jax, torch = jax_or_skip(), torch_or_skip()
        x, k = PCA_CASES["wide"]
        c = RNG.normal(size=(k, x.shape[1]))
        grad = jax.jit(jax.grad(lambda t: _pca_objective(mle.pca(t, n_components=k), c)))
        t = torch.asarray(x, requires_grad=True)
        _pca_objective(mle.pca(t, n_components=k), torch.asarray(c)).backward()
        np.testing.assert_allclose(
            grad(jax.numpy.asarray(x)), t.grad.numpy(), rtol=1e-10, atol=1e-12
        )


def _pca_objective(result: Any, c: Any) -> Any:
    """A scalar that depends on every output of ``pca``."""
    components, variance, ratio, mean = result
    return (components * c).sum() + (variance * ratio).sum() + (mean**2).sum()


def _finite_differences(x: np.ndarray, c: np.ndarray, k: int, h: float = 1e-6) -> np.ndarray:
    def f(x: np.ndarray) -> float:
        sk = PCA(n_components=k, svd_solver="full").fit(x)
        parts = (sk.components_, sk.explained_variance_, sk.explained_variance_ratio_, sk.mean_)
        return float(_pca_objective(parts, c))

    grad = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (f(x + step) - f(x - step)) / (2 * h)
    return grad


# -- power iteration ----------------------------------------------------------------------------


class TestPowerIteration:
    def test_dominant_eigenpairs_of_a_stack(self, backend, dtype):
        # One stack, so that jax.jit and Dask build the 100 unrolled steps once per dtype:
        # dominant eigenvalues 4, -5 (negative) and 3, each with a gap ratio <= 1/2; the path
        # graph's Laplacian (plus an isolated node), whose top eigenvector (1, -2, 1, 0) is
        # orthogonal to the all-ones vector, the classic start that would give 0, not 3; and
        # the zero matrix, which must give the eigenvalue 0 and the normalised start vector
        # (every vector is an eigenvector there), not NaN and not a zero vector.
        laplacian = np.zeros((4, 4))
        laplacian[:3, :3] = [[1.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 1.0]]
        a = np.stack(
            [
                _with_spectrum([4.0, -2.0, 1.0, 0.5]),
                _with_spectrum([-5.0, 2.0, 1.0, 0.1]),
                _with_spectrum([3.0, 1.0, 1.0, -1.5]),
                laplacian,
                np.zeros((4, 4)),
            ]
        )
        value, vector = backend.call(mle.power_iteration, backend.asarray(a, dtype))
        w, q = np.linalg.eigh(a[:4])
        top = np.argmax(np.abs(w), axis=-1)
        expected_vectors = _flip(np.stack([q[i, :, j] for i, j in enumerate(top)]))
        np.testing.assert_allclose(expected_vectors[3], np.array([-1, 2, -1, 0]) / np.sqrt(6))
        start = 1 / np.arange(1.0, 5.0)
        expected_vectors = np.concatenate([expected_vectors, [start / np.linalg.norm(start)]])
        assert_close(value, [4.0, -5.0, 3.0, 3.0, 0.0], backend, dtype, atol=1e-5)
        assert_close(vector, expected_vectors, backend, dtype, atol=1e-5)

    def test_half_precision(self, backend, half_dtype):
        a = np.array([[2.0, 1.0], [1.0, 2.0]])
        value, vector = backend.call(mle.power_iteration, backend.asarray(a, half_dtype))
        assert_close(value, 3.0, backend, half_dtype)
        assert_close(vector, np.full(2, np.sqrt(0.5)), backend, half_dtype)

    @pytest.mark.parametrize("num_iters", [0, -1, 2.5, True])
    def test_bad_num_iters(self, num_iters):
        with pytest.raises(ValueError, match="`num_iters` must be a positive int"):
            mle.power_iteration(np.eye(2), num_iters=num_iters)

    @pytest.mark.parametrize("fn", [mle.power_iteration, mle.eigh])
    def test_not_square_names_the_argument(self, fn):
        with pytest.raises(ValueError, match="`a` must be a square matrix"):
            fn(np.ones((2, 3)))
