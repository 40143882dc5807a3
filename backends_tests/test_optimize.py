"""gradient_descent, least_squares_grad and the sgd / momentum / adam optimisers.

Oracles: ``numpy.linalg.lstsq`` for the fixed point of gradient descent, the
guide's own NumPy loop for its example, and ``torch.optim.SGD`` / ``Adam`` run
step for step on the same gradients (float64 on the CPU).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import mlequations as mle

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261123)
# A well-conditioned least-squares problem: intercept column plus two features.
X = np.concatenate([np.ones((12, 1)), RNG.normal(size=(12, 2))], axis=1)
Y = X @ np.asarray([0.5, -1.0, 2.0]) + 0.1 * RNG.normal(size=12)
THETA0 = RNG.normal(size=3)
# The guide's example: y = x on three points, integer data.
GUIDE_X = np.asarray([[1, 1], [1, 2], [1, 3]])
GUIDE_Y = np.asarray([1, 2, 3])


def _least_squares(x, y, theta, *, lr, steps, momentum=0.0):
    return mle.gradient_descent(
        lambda t: mle.least_squares_grad(t, x, y), theta, lr=lr, steps=steps, momentum=momentum
    )


def _guide_loop(X, y, lr=0.01, epochs=1000):
    """The guide's code, verbatim but for the array construction."""
    m, n = X.shape
    theta = np.zeros(n)
    for _ in range(epochs):
        gradient = (1 / m) * X.T @ (X @ theta - y)
        theta -= lr * gradient
    return theta


class TestLeastSquaresGrad:
    def test_matches_numpy(self, backend, dtype):
        args = [backend.asarray(a, dtype) for a in (THETA0, X, Y)]
        expected = X.T @ (X @ THETA0 - Y) / len(X)
        assert_close(backend.call(mle.least_squares_grad, *args), expected, backend, dtype)

    def test_several_targets(self, backend, dtype):
        theta = RNG.normal(size=(3, 2))
        y = RNG.normal(size=(12, 2))
        args = [backend.asarray(a, dtype) for a in (theta, X, y)]
        expected = X.T @ (X @ theta - y) / len(X)
        assert_close(backend.call(mle.least_squares_grad, *args), expected, backend, dtype)

    def test_vanishes_at_the_lstsq_solution(self, backend, dtype):
        solution, *_ = np.linalg.lstsq(X, Y, rcond=None)
        args = [backend.asarray(a, dtype) for a in (solution, X, Y)]
        out = backend.call(mle.least_squares_grad, *args)
        assert_close(out, np.zeros(3), backend, dtype, atol=1e-12 if dtype == "float64" else 1e-5)

    def test_guide_integer_data_is_promoted(self, backend, dtype):
        theta = backend.asarray(np.zeros(2), dtype)
        x, y = backend.asarray(GUIDE_X), backend.asarray(GUIDE_Y)  # integer arrays
        out = backend.call(mle.least_squares_grad, theta, x, y)
        assert_close(out, [-2.0, -14.0 / 3.0], backend, dtype)

    @pytest.mark.parametrize(
        ("theta", "x", "y", "name"),
        [
            (np.zeros(3), np.ones((4, 2)), np.ones(4), "theta"),
            (np.zeros(2), np.ones(4), np.ones(4), "x"),
            (np.zeros(2), np.ones((4, 2)), np.ones(5), "y"),
            (np.zeros((2, 3)), np.ones((4, 2)), np.ones(4), "y"),
        ],
    )
    def test_shape_mismatch_names_the_argument(self, theta, x, y, name):
        with pytest.raises(ValueError, match=f"`{name}` must have shape"):
            mle.least_squares_grad(theta, x, y)


class TestGradientDescent:
    @pytest.mark.skip_xp_backend(
        "dask",
        reason="hundreds of steps make one lazy graph that takes minutes to build and compute; "
        "Dask runs the 20-step tests (values and laziness)",
    )
    def test_guide_example_after_1000_steps(self, backend, dtype):
        # The guide prints "~[0., 1.]": after 1000 steps at lr 0.01 it is not there yet.
        expected = _guide_loop(GUIDE_X, GUIDE_Y)
        np.testing.assert_allclose(expected, [0.1107, 0.9513], atol=5e-5)
        x, y = backend.asarray(GUIDE_X), backend.asarray(GUIDE_Y)
        theta = backend.asarray(np.zeros(2), dtype)
        out = backend.call(_least_squares, x, y, theta, lr=0.01, steps=1000)
        assert_close(out, expected, backend, dtype, rtol=1e-10 if dtype == "float64" else 1e-4)

    @pytest.mark.parametrize("momentum", [0.0, 0.5])
    def test_matches_torch_sgd(self, backend, dtype, momentum):
        steps, lr = 20, 0.1
        expected = _torch_least_squares_sgd(lr, momentum, steps)
        args = [backend.asarray(a, dtype) for a in (X, Y, THETA0)]
        out = backend.call(_least_squares, *args, lr=lr, steps=steps, momentum=momentum)
        assert_close(out, expected, backend, dtype)

    @pytest.mark.parametrize(("lr", "momentum"), [(0.6, 0.0), (0.5, 0.2)])
    def test_reaches_the_lstsq_fixed_point(self, backend, dtype, lr, momentum):
        # lr near 2 / (λ_min + λ_max) of XᵀX / m: the error shrinks ~0.6x per step.
        solution, *_ = np.linalg.lstsq(X, Y, rcond=None)
        args = [backend.asarray(a, dtype) for a in (X, Y, THETA0)]
        out = backend.call(_least_squares, *args, lr=lr, steps=80, momentum=momentum)
        assert_close(out, solution, backend, dtype, rtol=1e-10 if dtype == "float64" else 1e-4)

    def test_tuple_params_keep_their_structure(self, backend, dtype):
        # Fit y = x w + b with params (w, b): a tuple in, a tuple out.
        x = X[:, 1:]
        xp = backend.xp

        def run(xb, yb, w, b):
            def grad(params):
                w, b = params
                residual = xb @ w + b - yb  # (N,)
                return xb.T @ residual / len(x), xp.sum(residual, keepdims=True) / len(x)

            return mle.gradient_descent(grad, (w, b), lr=0.2, steps=20)

        w0, b0 = RNG.normal(size=2), RNG.normal(size=1)
        args = [backend.asarray(a, dtype) for a in (x, Y, w0, b0)]
        out = backend.call(run, *args)
        assert isinstance(out, tuple)
        assert len(out) == 2
        w_ref, b_ref = w0.copy(), b0.copy()
        for _ in range(20):
            residual = x @ w_ref + b_ref - Y
            w_ref, b_ref = (
                w_ref - 0.2 * x.T @ residual / len(x),
                b_ref - 0.2 * residual.sum(keepdims=True) / len(x),
            )
        assert_close(out[0], w_ref, backend, dtype)
        assert_close(out[1], b_ref, backend, dtype)

    def test_callback_sees_every_step(self, backend, dtype):
        seen = []

        def run(x, y, theta):
            return mle.gradient_descent(
                lambda t: mle.least_squares_grad(t, x, y),
                theta,
                lr=0.1,
                steps=5,
                callback=lambda k, t: seen.append((k, t.shape)),
            )

        args = [backend.asarray(a, dtype) for a in (X, Y, THETA0)]
        backend.call(run, *args)
        assert seen == [(k, (3,)) for k in range(1, 6)]

    @pytest.mark.skip_xp_backend("jax-jit", reason="tol mode is documented eager (not jit-able)")
    @pytest.mark.skip_xp_backend("torch-meta", reason="tol reads the update norm; meta has none")
    def test_tol_stops_early(self, backend, dtype):
        solution, *_ = np.linalg.lstsq(X, Y, rcond=None)
        steps = []

        def run(x, y, theta):
            return mle.gradient_descent(
                lambda t: mle.least_squares_grad(t, x, y),
                theta,
                lr=0.6,
                steps=10_000,
                tol=1e-4,
                callback=lambda k, t: steps.append(k),
            )

        args = [backend.asarray(a, dtype) for a in (X, Y, THETA0)]
        out = backend.call(run, *args, lazy=False)  # eager by design: Dask computes
        assert 5 < len(steps) < 10_000
        # Stopped where the steps are small: within ~tol / (1 - contraction) of the optimum.
        assert_close(out, solution, backend, dtype, rtol=0, atol=1e-3)
        # The reference loop stops at the same step.
        theta, k = THETA0.copy(), 0
        while k < 10_000:
            update = 0.6 * X.T @ (X @ theta - Y) / len(X)
            theta, k = theta - update, k + 1
            if np.linalg.norm(update) <= 1e-4:
                break
        if dtype == "float64":
            assert len(steps) == k
            assert_close(out, theta, backend, dtype)

    def test_tol_is_eager_under_jit(self):
        jax = jax_or_skip()
        x, y, theta = (jax.numpy.asarray(a) for a in (X, Y, THETA0))
        jitted = jax.jit(lambda t: _tol_run(x, y, t))
        with pytest.raises(jax.errors.ConcretizationTypeError):
            jitted(theta)

    def test_zero_steps_returns_the_start(self, backend, dtype):
        args = [backend.asarray(a, dtype) for a in (X, Y, THETA0)]
        assert_close(backend.call(_least_squares, *args, lr=0.1, steps=0), THETA0, backend, dtype)

    @pytest.mark.parametrize(
        ("options", "error", "name"),
        [
            ({"steps": -1}, ValueError, "steps"),
            ({"steps": 2.5}, ValueError, "steps"),
            ({"lr": "fast"}, TypeError, "lr"),
            ({"lr": -0.1}, ValueError, "lr"),
            ({"momentum": 1.0}, ValueError, "momentum"),
            ({"tol": -1.0}, ValueError, "tol"),
            ({"callback": 3}, TypeError, "callback"),
        ],
    )
    def test_bad_options_name_the_argument(self, options, error, name):
        grad = functools.partial(mle.least_squares_grad, x=X, y=Y)
        with pytest.raises(error, match=f"`{name}`"):
            mle.gradient_descent(grad, THETA0, **options)

    def test_bad_grad_fn(self):
        with pytest.raises(TypeError, match="`grad_fn` must be callable"):
            mle.gradient_descent(None, THETA0)
        with pytest.raises(ValueError, match=r"`grad_fn\(params\)` must have the shape"):
            mle.gradient_descent(lambda t: np.zeros(4), THETA0, steps=1)
        with pytest.raises(ValueError, match=r"`grad_fn\(params\)` must have the structure"):
            mle.gradient_descent(lambda t: t[0], (THETA0, THETA0), steps=1)
        with pytest.raises(TypeError, match="`params` must be an array or a tuple"):
            mle.gradient_descent(lambda t: t, [1.0, 2.0])

    def test_jax_grad_through_the_fixed_step_loop(self):
        # Differentiating the whole descent with respect to the learning data.
        jax = jax_or_skip()
        jnp = jax.numpy
        x, y, theta = (jnp.asarray(a) for a in (X, Y, THETA0))

        def final_loss(y):
            t = _least_squares(x, y, theta, lr=0.1, steps=10)
            return jnp.sum(t**2)

        def plain(y):
            t = theta
            for _ in range(10):
                t = t - 0.1 * x.T @ (x @ t - y) / x.shape[0]
            return jnp.sum(t**2)

        np.testing.assert_allclose(
            jax.jit(jax.grad(final_loss))(y), jax.grad(plain)(y), rtol=1e-10, atol=1e-12
        )


def _tol_run(x, y, theta):
    return mle.gradient_descent(
        lambda t: mle.least_squares_grad(t, x, y), theta, lr=0.6, steps=100, tol=1e-4
    )


@functools.cache
def _torch_least_squares_sgd(lr, momentum, steps):
    """torch.optim.SGD on the least-squares loss L = |X θ - y|² / (2m), float64."""
    torch = torch_or_skip()
    x, y = torch.asarray(X), torch.asarray(Y)
    theta = torch.asarray(THETA0.copy(), requires_grad=True)
    opt = torch.optim.SGD([theta], lr=lr, momentum=momentum)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((x @ theta - y) ** 2).sum() / (2 * len(X))
        loss.backward()
        opt.step()
    return theta.detach().numpy().copy()


# -- the optimisers ----------------------------------------------------------------------

PARAMS = (RNG.normal(size=(3, 2)), RNG.normal(size=3))
# Gradients of five steps, on very different scales (Adam normalises them away).
GRADS = [(RNG.normal(size=(3, 2)) * s, RNG.normal(size=3) * s) for s in (1.0, 0.1, 10.0, 1.0, 1e-3)]

CONFIGS = {
    "sgd": (lambda: mle.sgd(0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    "momentum": (
        lambda: mle.momentum(0.1, beta=0.9),
        lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9),
    ),
    "nesterov": (
        lambda: mle.momentum(0.05, beta=0.8, nesterov=True),
        lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
    ),
    "adam": (lambda: mle.adam(0.1), lambda t, p: t.optim.Adam(p, lr=0.1)),
    "adam-options": (
        lambda: mle.adam(0.05, b1=0.8, b2=0.99, eps=1e-3),
        lambda t, p: t.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-3),
    ),
}


@functools.cache
def _torch_trajectory(config):
    """Parameters after each of the five steps of torch.optim, float64, given gradients."""
    torch = torch_or_skip()
    params = [torch.asarray(p.copy(), requires_grad=True) for p in PARAMS]
    opt = CONFIGS[config][1](torch, params)
    trajectory = []
    for grads in GRADS:
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.asarray(g.copy())
        opt.step()
        trajectory.extend(p.detach().numpy().copy() for p in params)
    return trajectory


def _our_trajectory(config, w, b, *flat_grads):
    opt = CONFIGS[config][0]()
    params = (w, b)
    state = opt.init(params)
    trajectory = []
    for k in range(0, len(flat_grads), 2):
        params, state = opt.update(params, (flat_grads[k], flat_grads[k + 1]), state)
        trajectory.extend(params)
    return tuple(trajectory)


class TestOptimisers:
    @pytest.mark.parametrize("config", list(CONFIGS))
    def test_step_for_step_equal_to_torch_optim(self, backend, dtype, config):
        flat = [*PARAMS, *(g for grads in GRADS for g in grads)]
        args = [backend.asarray(a, dtype) for a in flat]
        out = backend.call(_our_trajectory, config, *args)
        expected = _torch_trajectory(config)
        assert len(out) == len(expected) == 10
        for actual, reference in zip(out, expected, strict=True):
            assert_close(actual, reference, backend, dtype)

    def test_adam_state_is_arrays_on_the_params_device(self, backend, dtype):
        w = backend.asarray(PARAMS[0], dtype)
        state = mle.adam(0.1).init(w)
        assert_close(state.step, 0.0, backend, dtype)
        assert_close(state.exp_avg, np.zeros((3, 2)), backend, dtype)
        _, state = mle.adam(0.1).update(w, backend.asarray(GRADS[0][0], dtype), state)
        assert_close(state.step, 1.0, backend, dtype)

    def test_update_is_pure(self):
        # Same inputs, same outputs; nothing is modified in place.
        params = tuple(p.copy() for p in PARAMS)
        for make in (lambda: mle.momentum(0.1), lambda: mle.adam(0.1)):
            opt = make()
            state = opt.init(params)
            first = opt.update(params, GRADS[0], state)
            second = opt.update(params, GRADS[0], state)
            for a, b in zip(first[0], second[0], strict=True):
                np.testing.assert_array_equal(a, b)
            for a, b in zip(params, PARAMS, strict=True):
                np.testing.assert_array_equal(a, b)

    def test_jitted_update_compiles_once(self):
        # The step count is an array, so the jitted step is reused as it grows.
        jax = jax_or_skip()
        opt = mle.adam(0.1)
        params = tuple(jax.numpy.asarray(p) for p in PARAMS)
        state = opt.init(params)
        update = jax.jit(opt.update)
        sizes = []
        for grads in GRADS:
            params, state = update(params, tuple(jax.numpy.asarray(g) for g in grads), state)
            sizes.append(update._cache_size())
        # (The first call may compile twice: jnp.asarray inputs are uncommitted, outputs are.)
        assert sizes[1:] == [sizes[1]] * (len(GRADS) - 1), sizes
        assert sizes[1] <= 2
        expected = _torch_trajectory("adam")[-2:]
        for actual, reference in zip(params, expected, strict=True):
            np.testing.assert_allclose(actual, reference, rtol=1e-10, atol=1e-12)

    def test_half_precision_adam_stays_finite(self, backend, half_dtype):
        w = backend.asarray(PARAMS[0], half_dtype)
        opt = mle.adam(0.01)
        state = opt.init(w)
        for grads in GRADS:
            w, state = backend.call(opt.update, w, backend.asarray(grads[0], half_dtype), state)
        assert w.dtype == backend.dtype(half_dtype)
        if backend.values:
            assert np.isfinite(backend.to_numpy(w)).all()

    @pytest.mark.parametrize(
        ("make", "error", "name"),
        [
            (lambda: mle.sgd(-1.0), ValueError, "lr"),
            (lambda: mle.sgd("0.1"), TypeError, "lr"),
            (lambda: mle.momentum(0.1, beta=1.0), ValueError, "beta"),
            (lambda: mle.momentum(0.1, nesterov="yes"), TypeError, "nesterov"),
            (lambda: mle.adam(0.1, b1=1.5), ValueError, "b1"),
            (lambda: mle.adam(0.1, b2=-0.1), ValueError, "b2"),
            (lambda: mle.adam(0.1, eps=-1.0), ValueError, "eps"),
        ],
    )
    def test_bad_options_name_the_argument(self, make, error, name):
        with pytest.raises(error, match=f"`{name}`"):
            make()

    @pytest.mark.parametrize("make", [lambda: mle.sgd(0.1), lambda: mle.adam(0.1)])
    def test_grads_that_do_not_fit_name_the_argument(self, make):
        opt = make()
        state = opt.init(PARAMS)
        with pytest.raises(ValueError, match=r"`grads\[1\]` must have the shape"):
            opt.update(PARAMS, (GRADS[0][0], np.zeros(4)), state)
        with pytest.raises(ValueError, match="`grads` must have the structure"):
            opt.update(PARAMS, GRADS[0][0], state)
