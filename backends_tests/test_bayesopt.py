"""erf, the normal distribution, GP kernels and posterior, EI and the BO loop on every backend.

Oracles: ``scipy.special.erf``/``ndtr``, scikit-learn's ``RBF``, ``Matern(nu=2.5)``
and ``GaussianProcessRegressor(optimizer=None)``, and the EI formula written with
``scipy.stats.norm``; ``jax.grad`` of plain ``jax.numpy``/``jax.scipy`` code for
the gradients.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern

import mlequations as mle
from mlequations._backends import by_id

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(11)
GRID = np.linspace(-10.0, 10.0, 4001)
X1, X2 = RNG.uniform(size=(6, 2)), RNG.uniform(size=(5, 2))
X_TRAIN = np.array([[0.05], [0.2], [0.45], [0.6], [0.9]])
Y_TRAIN = np.sin(6 * X_TRAIN[:, 0])
X_QUERY = np.linspace(0.0, 1.0, 21)[:, None]


def demo_objective(x):
    """The demo's black box on [0, 1]; any library's (D,) array in, one value out."""
    import array_api_compat

    xp = array_api_compat.array_namespace(x)
    return x[0] * xp.sin(10 * x[0])


def _demo_maximum() -> tuple[float, float]:
    grid = np.linspace(0.0, 1.0, 2_000_001)
    values = grid * np.sin(10 * grid)
    i = int(np.argmax(values))
    return float(grid[i]), float(values[i])


class TestErf:
    def test_matches_scipy_on_minus_ten_to_ten(self, backend, dtype):
        x = backend.asarray(GRID, dtype)
        # The bounds: 1e-12 in float64 and 1e-6 in float32, absolute.
        atol = 1e-12 if dtype == "float64" else 1e-6
        # float32 input is itself rounded: compare with erf of the rounded input.
        expected = scipy.special.erf(GRID.astype(dtype))
        assert_close(backend.call(mle.erf, x), expected, backend, dtype, rtol=0, atol=atol)

    def test_special_values(self, backend, dtype):
        values = np.array([-np.inf, -30.0, -4.0, -0.46875, 0.0, 1e-300, 0.46875, 4.0, 30.0, np.inf])
        x = backend.asarray(values, dtype)
        expected = scipy.special.erf(values.astype(dtype))
        assert_close(backend.call(mle.erf, x), expected, backend, dtype, atol=1e-15)

    def test_odd_and_integer_input(self):
        x = RNG.uniform(-5, 5, size=100)
        np.testing.assert_array_equal(mle.erf(-x), -mle.erf(x))
        np.testing.assert_allclose(mle.erf(np.arange(-3, 4)), scipy.special.erf(np.arange(-3, 4)))


class TestNormal:
    def test_cdf_matches_scipy(self, backend, dtype):
        x = backend.asarray(GRID * 3, dtype)
        expected = scipy.special.ndtr((GRID * 3).astype(dtype))
        assert_close(backend.call(mle.normal_cdf, x), expected, backend, dtype, atol=1e-15)

    def test_cdf_keeps_relative_precision_in_the_lower_tail(self):
        # Phi(x) ~ exp(-x^2/2) amplifies the rounding of x/sqrt(2) by x^2: 2e-13 at x = -30.
        x = np.array([-30.0, -20.0, -10.0, -5.0])
        np.testing.assert_allclose(mle.normal_cdf(x), scipy.special.ndtr(x), rtol=3e-13)

    def test_pdf_matches_scipy(self, backend, dtype):
        x = backend.asarray(GRID, dtype)
        expected = scipy.stats.norm.pdf(GRID)
        assert_close(backend.call(mle.normal_pdf, x), expected, backend, dtype)


def _sklearn_kernel(name, length_scale, variance):
    base = RBF(length_scale) if name == "rbf" else Matern(length_scale, nu=2.5)
    return ConstantKernel(variance) * base


KERNELS = {"rbf": mle.rbf_kernel, "matern52": mle.matern52_kernel}


class TestKernels:
    @pytest.mark.parametrize("name", ["rbf", "matern52"])
    @pytest.mark.parametrize("length_scale", [0.3, "per-feature"])
    def test_matches_sklearn(self, backend, dtype, name, length_scale):
        ls = np.array([0.3, 0.8]) if length_scale == "per-feature" else length_scale
        expected = _sklearn_kernel(name, ls, 1.7)(X1, X2)
        ell = backend.asarray(ls, dtype) if isinstance(ls, np.ndarray) else ls
        out = backend.call(
            KERNELS[name],
            backend.asarray(X1, dtype),
            backend.asarray(X2, dtype),
            length_scale=ell,
            variance=1.7,
        )
        assert_close(out, expected, backend, dtype)

    @pytest.mark.parametrize("name", ["rbf", "matern52"])
    def test_one_dimensional_points_and_diagonal(self, name):
        x = RNG.uniform(size=7)
        k = KERNELS[name](x, x, length_scale=0.5)
        np.testing.assert_allclose(k, _sklearn_kernel(name, 0.5, 1.0)(x[:, None]), rtol=1e-12)
        np.testing.assert_array_equal(np.diag(k), np.ones(7))


def _sklearn_posterior(kernel, noise, x_train=X_TRAIN, y_train=Y_TRAIN, x_query=X_QUERY):
    gp = GaussianProcessRegressor(kernel=kernel, alpha=noise, optimizer=None, normalize_y=False)
    return gp.fit(x_train, y_train).predict(x_query, return_std=True)


class TestGPPosterior:
    @pytest.mark.parametrize("name", ["rbf", "matern52"])
    def test_matches_sklearn(self, backend, dtype, name):
        noise = 1e-10 if dtype == "float64" else 1e-4
        mean, std = _sklearn_posterior(_sklearn_kernel(name, 0.25, 1.3), noise)
        kernel = functools.partial(KERNELS[name], length_scale=0.25, variance=1.3)
        post = backend.call(
            mle.gp_posterior,
            *(backend.asarray(a, dtype) for a in (X_TRAIN, Y_TRAIN, X_QUERY)),
            kernel=kernel,
            noise=noise,
        )
        tolerance = {"rtol": 1e-3, "atol": 1e-4} if dtype == "float32" else {"atol": 1e-9}
        assert_close(post.mean, mean, backend, dtype, **tolerance)
        assert_close(post.std, std, backend, dtype, **tolerance)

    def test_per_point_noise_matches_sklearn(self):
        noise = RNG.uniform(1e-3, 1e-1, size=5)
        mean, std = _sklearn_posterior(_sklearn_kernel("matern52", 0.3, 1.0), noise)
        kernel = functools.partial(mle.matern52_kernel, length_scale=0.3)
        post = mle.gp_posterior(X_TRAIN, Y_TRAIN, X_QUERY, kernel=kernel, noise=noise)
        np.testing.assert_allclose(post.mean, mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(post.std, std, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("noise", [1e-2, 1e-4, 1e-6, 1e-8, 1e-10])
    def test_interpolates_the_training_points_as_noise_vanishes(self, noise):
        kernel = functools.partial(mle.matern52_kernel, length_scale=0.3)
        post = mle.gp_posterior(X_TRAIN, Y_TRAIN, X_TRAIN, kernel=kernel, noise=noise)
        # The residual and the std shrink like the noise (std like its square root).
        assert np.abs(post.mean - Y_TRAIN).max() < 10 * noise
        assert post.std.max() < 10 * math.sqrt(noise)


def _ei_reference(mu, sd, best, xi, maximize):
    imp = (mu - best - xi) if maximize else (best - mu - xi)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, imp / sd, 0.0)
    ei = imp * scipy.stats.norm.cdf(z) + sd * scipy.stats.norm.pdf(z)
    return np.where(sd > 0, ei, 0.0)


class TestExpectedImprovement:
    @pytest.mark.parametrize("maximize", [True, False])
    def test_matches_formula(self, backend, dtype, maximize):
        mu = RNG.normal(size=40)
        sd = RNG.uniform(0.0, 2.0, size=40)
        sd[::7] = 0.0
        expected = _ei_reference(mu, sd, 0.4, 0.05, maximize)
        args = backend.asarray(mu, dtype), backend.asarray(sd, dtype)
        out = backend.call(mle.expected_improvement, *args, 0.4, xi=0.05, maximize=maximize)
        assert_close(out, expected, backend, dtype)
        best = backend.asarray(np.asarray(0.4), dtype)
        out = backend.call(mle.expected_improvement, *args, best, xi=0.05, maximize=maximize)
        assert_close(out, expected, backend, dtype)

    def test_non_negative_zero_where_certain_and_never_nan(self, backend, dtype):
        if not backend.values:
            pytest.skip("torch-meta holds no values")
        mu = np.array([-1e3, -40.0, -5.0, 0.0, 5.0, 1e3, 1.0, 1.0])
        sd = np.array([1e-3, 1.0, 1.0, 0.0, 0.0, 1e-30, 0.0, 1e3])
        out = backend.to_numpy(
            backend.call(
                mle.expected_improvement,
                backend.asarray(mu, dtype),
                backend.asarray(sd, dtype),
                0.0,
            )
        )
        assert np.all(out >= 0)
        assert not np.any(np.isnan(out))
        np.testing.assert_array_equal(out[[3, 4, 6]], 0.0)

    def test_minimize_is_maximize_of_the_negation(self):
        mu, sd = RNG.normal(size=20), RNG.uniform(0.1, 1.0, size=20)
        np.testing.assert_allclose(
            mle.expected_improvement(mu, sd, 0.2, maximize=False),
            mle.expected_improvement(-mu, sd, -0.2),
            rtol=1e-15,
        )


class TestBayesianOptimization:
    @pytest.mark.skip_xp_backend(
        "torch-meta", reason="the loop evaluates the objective: needs values"
    )
    @pytest.mark.skip_xp_backend(
        "jax-jit", reason="an eager driver loop that calls Python code; not traced by design"
    )
    @pytest.mark.skip_xp_backend(
        "dask", reason="an eager driver loop; on Dask each round would grow one lazy graph"
    )
    def test_demo_finds_the_maximum(self, backend):
        # The widest dtype each backend has; float32 runs in the registry's entry.
        dtype = backend.dtypes()[-1]
        bounds = backend.asarray(np.array([[0.0, 1.0]]), dtype)
        res = backend.call(mle.bayesian_optimization, demo_objective, bounds)
        x_star, f_star = _demo_maximum()
        assert_close(res.value, f_star, backend, dtype, rtol=0, atol=1e-2)
        assert_close(res.x, [x_star], backend, dtype, rtol=0, atol=1e-2)
        assert res.x_history.shape == (13, 1)
        history = backend.to_numpy(res.best_history)
        assert np.all(np.diff(history) >= 0)
        np.testing.assert_allclose(history[-1], backend.to_numpy(res.value))

    def test_minimize_and_two_dimensions(self):
        def bowl(x):
            return (x[0] - 0.3) ** 2 + (x[1] + 0.2) ** 2

        res = mle.bayesian_optimization(bowl, [(0.0, 1.0), (-1.0, 1.0)], maximize=False, n_iter=20)
        assert res.value < 0.02
        assert np.all(np.diff(res.best_history) <= 0)
        assert res.x_history.shape == (25, 2)

    def test_seed_reproducible_and_plain_float_objective(self):
        def f(x):
            return float(-((x[0] - 0.6) ** 2))

        a = mle.bayesian_optimization(f, (0.0, 1.0), seed=3, n_iter=2)
        b = mle.bayesian_optimization(f, (0.0, 1.0), seed=3, n_iter=2)
        c = mle.bayesian_optimization(f, (0.0, 1.0), seed=4, n_iter=2)
        np.testing.assert_array_equal(a.x_history, b.x_history)
        assert not np.array_equal(a.x_history, c.x_history)

    def test_torch_objective_and_default_library(self):
        torch = torch_or_skip()
        res = mle.bayesian_optimization(demo_objective, (0.0, 1.0), xp=torch, dtype=torch.float64)
        assert isinstance(res.x, torch.Tensor)
        assert res.value.dtype == torch.float64
        assert abs(float(res.value) - _demo_maximum()[1]) < 1e-2


# What an objective may return (issue 22): (library's backend id, shape, dtype) of the value.
RETURNED = {
    "python-float": (None, None, None),
    "numpy-float64-scalar": ("numpy", "scalar", "float64"),
    "numpy-float32-0d": ("numpy", (), "float32"),
    "numpy-(1,)": ("numpy", (1,), "float64"),
    "torch-0d": ("torch-cpu", (), "float64"),
    "torch-(1,)-requires-grad": ("torch-cpu", (1,), "float64"),
    "torch-float32-(1,1)": ("torch-cpu", (1, 1), "float32"),
    "jax-0d": ("jax", (), "float64"),
    "jax-(1,1)": ("jax", (1, 1), "float64"),
    "strict-device1-(1,)": ("strict-device1", (1,), "float64"),
    "dask-(1,)": ("dask", (1,), "float64"),
}


def _returned(kind: str, value: float):
    """`value` as the objective of case `kind` returns it (another library's number)."""
    backend_id, shape, dtype = RETURNED[kind]
    if backend_id is None:
        return value
    if shape == "scalar":
        return np.float64(value)
    lib = by_id(backend_id)
    if lib.skip_reason():
        pytest.skip(lib.skip_reason())
    out = lib.asarray(np.full(shape, value), dtype)
    return out.requires_grad_(True) if kind.endswith("requires-grad") else out


def _bowl(x: np.ndarray) -> float:
    return float(-((x[0] - 0.3) ** 2) - (x[1] + 0.2) ** 2)


class TestObjectiveValues:
    """Issue 22: the driver loop is eager, so the objective may return any one real number.

    A torch tensor returned from a NumPy run failed with "'Tensor' object has no
    attribute 'astype'". Each run's history is compared with the objective
    evaluated in plain float64 NumPy at the points the run chose.
    """

    @pytest.mark.skip_xp_backend("torch-meta", reason="the loop evaluates the objective: values")
    @pytest.mark.skip_xp_backend("jax-jit", reason="an eager driver loop; not traced by design")
    @pytest.mark.skip_xp_backend("dask", reason="an eager driver loop; not lazy by design")
    @pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")
    @pytest.mark.parametrize("kind", sorted(RETURNED))
    def test_any_librarys_one_element_value(self, backend, kind):
        dtype = backend.dtypes()[-1]
        bounds = backend.asarray(np.array([[0.0, 1.0], [-1.0, 1.0]]), dtype)

        def objective(x):
            return _returned(kind, _bowl(backend.to_numpy(x)))

        res = backend.call(mle.bayesian_optimization, objective, bounds, n_init=3, n_iter=2)
        points = backend.to_numpy(res.x_history)
        returned_dtype = RETURNED[kind][2] or "float64"
        expected = np.asarray([_bowl(p) for p in points]).astype(returned_dtype)
        assert_close(res.y_history, expected, backend, dtype)
        best = int(np.argmax(expected))
        assert_close(res.value, expected[best], backend, dtype)
        assert_close(res.x, points[best], backend, dtype)

    @pytest.mark.parametrize(
        ("returned", "described"),
        [
            (None, "NoneType None"),
            ("0.5", "str '0.5'"),
            ([0.5], "list [0.5]"),
            (0.5 + 1j, "complex (0.5+1j)"),
            (np.complex128(0.5 - 2j), "numpy.complex128"),
        ],
    )
    def test_anything_else_is_a_type_error_naming_objective(self, returned, described):
        with pytest.raises(TypeError, match="`objective` must return one real number") as info:
            mle.bayesian_optimization(lambda x: returned, (0.0, 1.0), n_init=2, n_iter=0)
        assert described in str(info.value)

    def test_complex_or_valueless_arrays_are_type_errors(self):
        torch = torch_or_skip()
        for returned in [torch.tensor([1.0 + 2.0j]), torch.ones((1,), device="meta")]:
            with pytest.raises(TypeError, match="`objective` must return one real number"):
                mle.bayesian_optimization(lambda x, r=returned: r, (0.0, 1.0), n_init=1, n_iter=0)
        with pytest.raises(TypeError, match=r"`objective` must return one real number.*complex128"):
            mle.bayesian_optimization(
                lambda x: torch.ones((1,), dtype=torch.complex128),
                (0.0, 1.0),
                xp=torch,
                n_init=1,
                n_iter=0,
            )


class TestBadInput:
    def test_kernel_shapes(self):
        with pytest.raises(ValueError, match="`x1` and `x2` must have the same number of features"):
            mle.rbf_kernel(np.zeros((3, 2)), np.zeros((4, 3)))
        with pytest.raises(ValueError, match="`x1` must have shape"):
            mle.matern52_kernel(np.zeros((3, 2, 1)), np.zeros((4, 2)))
        with pytest.raises(ValueError, match="`length_scale`"):
            mle.rbf_kernel(np.zeros((3, 2)), np.zeros((4, 2)), length_scale=np.ones(3))
        with pytest.raises(ValueError, match="`variance`"):
            mle.rbf_kernel(np.zeros((3, 2)), np.zeros((4, 2)), variance=0.0)
        with pytest.raises(TypeError, match="`x` must be a real array"):
            mle.erf(np.asarray([1j]))

    def test_gp_and_ei_arguments(self):
        with pytest.raises(ValueError, match=r"`y_train` must have shape \(N,\) = \(5,\)"):
            mle.gp_posterior(X_TRAIN, Y_TRAIN[:4], X_QUERY)
        with pytest.raises(ValueError, match="`noise` must be >= 0"):
            mle.gp_posterior(X_TRAIN, Y_TRAIN, X_QUERY, noise=-1.0)
        with pytest.raises(ValueError, match="`noise` must be a scalar or have shape"):
            mle.gp_posterior(X_TRAIN, Y_TRAIN, X_QUERY, noise=np.ones(3))
        torch = torch_or_skip()
        with pytest.raises(TypeError, match="`std` is a torch array"):
            mle.expected_improvement(np.zeros(3), torch.ones(3), 0.0)

    def test_loop_arguments(self):
        with pytest.raises(ValueError, match="`bounds`"):
            mle.bayesian_optimization(demo_objective, [0.0, 1.0, 2.0])
        with pytest.raises(ValueError, match="`n_init`"):
            mle.bayesian_optimization(demo_objective, (0.0, 1.0), n_init=0)
        with pytest.raises(TypeError, match="`objective` must be callable"):
            mle.bayesian_optimization(None, (0.0, 1.0))
        with pytest.raises(ValueError, match="`objective` must return one number"):
            mle.bayesian_optimization(lambda x: x * np.ones(2), (0.0, 1.0))


class TestAutodiff:
    def test_jax_jit_and_grad_through_erf_and_normal(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        x = jnp.asarray(np.linspace(-6, 6, 241))
        g = jax.jit(jax.vmap(jax.grad(lambda v: mle.erf(v))))(x)
        np.testing.assert_allclose(
            g, 2 / np.sqrt(np.pi) * np.exp(-(np.asarray(x) ** 2)), atol=1e-13
        )
        g = jax.jit(jax.vmap(jax.grad(lambda v: mle.normal_cdf(v))))(x)
        np.testing.assert_allclose(g, scipy.stats.norm.pdf(np.asarray(x)), atol=1e-13)
        np.testing.assert_allclose(
            jax.jit(mle.erf)(x), scipy.special.erf(np.asarray(x)), atol=1e-15
        )

    @pytest.mark.parametrize("name", ["rbf", "matern52"])
    def test_jax_grad_through_kernels(self, name):
        jax = jax_or_skip()
        jnp = jax.numpy
        x1, x2 = jnp.asarray(X1), jnp.asarray(np.vstack([X2, X1[:2]]))  # includes r = 0

        def plain(a, b):
            r2 = jnp.sum((a[:, None, :] - b[None, :, :]) ** 2 / 0.4**2, axis=-1)
            if name == "rbf":
                return jnp.exp(-0.5 * r2)
            s = jnp.sqrt(5 * r2 + 1e-300)
            return (1 + s + s**2 / 3) * jnp.exp(-s)

        ours = jax.jit(jax.grad(lambda a: jnp.sum(KERNELS[name](a, x2, length_scale=0.4) ** 2)))
        theirs = jax.grad(lambda a: jnp.sum(plain(a, x2) ** 2))
        g = ours(x1)
        assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g, theirs(x1), rtol=1e-9, atol=1e-12)

    def test_jax_grad_through_gp_posterior_and_ei(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        kernel = functools.partial(mle.matern52_kernel, length_scale=0.3)
        xt, yt = jnp.asarray(X_TRAIN), jnp.asarray(Y_TRAIN)
        xq = jnp.asarray(np.linspace(0.01, 0.99, 7)[:, None])

        def acquisition(q):
            post = mle.gp_posterior(xt, yt, q, kernel=kernel, noise=1e-8)
            return jnp.sum(mle.expected_improvement(post.mean, post.std, jnp.max(yt)))

        def plain(q):
            k = kernel(xt, xt) + 1e-8 * jnp.eye(5)
            ks = kernel(xt, q)
            mean = ks.T @ jnp.linalg.solve(k, yt)
            std = jnp.sqrt(1.0 - jnp.sum(ks * jnp.linalg.solve(k, ks), axis=0))
            z = (mean - jnp.max(yt) - 0.01) / std
            ei = (mean - jnp.max(yt) - 0.01) * jax.scipy.stats.norm.cdf(z)
            return jnp.sum(ei + std * jax.scipy.stats.norm.pdf(z))

        np.testing.assert_allclose(jax.jit(acquisition)(xq), jax.jit(plain)(xq), rtol=1e-8)
        np.testing.assert_allclose(
            jax.jit(jax.grad(acquisition))(xq), jax.jit(jax.grad(plain))(xq), rtol=1e-6, atol=1e-9
        )

    def test_jax_grad_finite_where_std_is_zero(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        kernel = functools.partial(mle.matern52_kernel, length_scale=0.3)
        xt, yt = jnp.asarray(X_TRAIN), jnp.asarray(Y_TRAIN)

        def f(q):
            post = mle.gp_posterior(xt, yt, q, kernel=kernel)
            return jnp.sum(post.std) + jnp.sum(mle.expected_improvement(post.mean, post.std, 0.5))

        g = jax.jit(jax.grad(f))(xt)  # at the training points: std = 0
        assert bool(jnp.all(jnp.isfinite(g)))

    def test_torch_autograd_through_ei(self):
        torch = torch_or_skip()
        mu = torch.asarray(RNG.normal(size=6), requires_grad=True)
        sd = torch.asarray(np.array([0.0, 0.5, 1.0, 1.5, 0.0, 2.0]), requires_grad=True)
        mle.expected_improvement(mu, sd, 0.1).sum().backward()
        normal = torch.distributions.Normal(0.0, 1.0)
        with torch.no_grad():
            z = (mu - 0.11) / torch.where(sd > 0, sd, 1.0)
            expected_mu = torch.where(sd > 0, normal.cdf(z), 0.0)
            expected_sd = torch.where(sd > 0, normal.log_prob(z).exp(), 0.0)
        torch.testing.assert_close(mu.grad, expected_mu)
        torch.testing.assert_close(sd.grad, expected_sd)
