"""softmax, log_softmax, logsumexp and sigmoid on every backend."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import mlequations as mle

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261123)
LOGITS = RNG.normal(scale=4.0, size=(3, 5, 7))


class TestSoftmax:
    def test_known_values(self, backend, dtype):
        # The guide's example: softmax([1, 2, 3]).
        x = backend.asarray([1.0, 2.0, 3.0], dtype)
        expected = [0.09003057, 0.24472847, 0.66524096]
        assert_close(backend.call(mle.softmax, x), expected, backend, dtype, atol=1e-8)

    @pytest.mark.parametrize("axis", [-1, 0, 1])
    def test_matches_scipy(self, backend, dtype, axis):
        x = backend.asarray(LOGITS, dtype)
        expected = scipy.special.softmax(LOGITS, axis=axis)
        assert_close(backend.call(mle.softmax, x, axis=axis), expected, backend, dtype)

    def test_shift_invariance_and_huge_logits(self, backend, dtype):
        base = np.array([[1.0, 2.0, 3.0], [-5.0, 0.0, 5.0]])
        x = backend.asarray(base + 1e4, dtype)
        expected = scipy.special.softmax(base, axis=-1)
        assert_close(backend.call(mle.softmax, x), expected, backend, dtype)

    def test_integer_input_promotes_to_default_float(self, backend):
        x = backend.asarray(np.array([1, 2, 3]))
        out = backend.call(mle.softmax, x)
        default = backend.xp.__array_namespace_info__().default_dtypes(device=backend.device)[
            "real floating"
        ]
        assert out.dtype == default
        if backend.values:
            np.testing.assert_allclose(
                backend.to_numpy(out), scipy.special.softmax([1.0, 2.0, 3.0]), rtol=1e-6
            )

    def test_half_precision_is_finite_and_close_to_float32(self, backend, half_dtype):
        x = backend.asarray(LOGITS * 10, half_dtype)
        out = backend.call(mle.softmax, x)
        reference = scipy.special.softmax(
            backend.to_numpy(x) if backend.values else LOGITS, axis=-1
        )
        assert_close(out, reference, backend, half_dtype)


class TestLogSoftmax:
    @pytest.mark.parametrize("axis", [-1, 0])
    def test_matches_scipy(self, backend, dtype, axis):
        x = backend.asarray(LOGITS, dtype)
        expected = scipy.special.log_softmax(LOGITS, axis=axis)
        assert_close(backend.call(mle.log_softmax, x, axis=axis), expected, backend, dtype)

    def test_stays_finite_where_softmax_underflows(self, backend, dtype):
        x = backend.asarray([0.0, 1000.0], dtype)
        assert_close(backend.call(mle.log_softmax, x), [-1000.0, 0.0], backend, dtype)

    def test_half_precision(self, backend, half_dtype):
        x = backend.asarray(LOGITS, half_dtype)
        reference = scipy.special.log_softmax(
            backend.to_numpy(x) if backend.values else LOGITS, axis=-1
        )
        assert_close(
            backend.call(mle.log_softmax, x), reference, backend, half_dtype, rtol=2e-2, atol=5e-2
        )


class TestLogSumExp:
    @pytest.mark.parametrize("axis", [None, -1, 0, (0, 2)])
    @pytest.mark.parametrize("keepdims", [False, True])
    def test_matches_scipy(self, backend, dtype, axis, keepdims):
        x = backend.asarray(LOGITS, dtype)
        expected = scipy.special.logsumexp(LOGITS, axis=axis, keepdims=keepdims)
        out = backend.call(mle.logsumexp, x, axis=axis, keepdims=keepdims)
        assert_close(out, expected, backend, dtype)

    def test_all_minus_inf_row_gives_minus_inf(self, backend, dtype):
        rows = np.array([[-np.inf, -np.inf, -np.inf], [0.0, 0.0, -np.inf], [1e4, 1e4, 0.0]])
        x = backend.asarray(rows, dtype)
        expected = [-np.inf, np.log(2.0), 1e4 + np.log(2.0)]
        assert_close(backend.call(mle.logsumexp, x, axis=-1), expected, backend, dtype)

    def test_half_precision_accumulates_in_float32(self, backend, half_dtype):
        # 4096 equal terms: a float16 running sum would stall long before 4096.
        x = backend.asarray(np.zeros(4096), half_dtype)
        assert_close(backend.call(mle.logsumexp, x), np.log(4096.0), backend, half_dtype)


class TestSigmoid:
    def test_matches_scipy(self, backend, dtype):
        x = backend.asarray(LOGITS, dtype)
        assert_close(backend.call(mle.sigmoid, x), scipy.special.expit(LOGITS), backend, dtype)

    def test_extreme_inputs(self, backend, dtype):
        values = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4])
        x = backend.asarray(values, dtype)
        # Relative accuracy down to float32's smallest normal number (denormals lose bits).
        assert_close(
            backend.call(mle.sigmoid, x), scipy.special.expit(values), backend, dtype, atol=1e-37
        )

    def test_half_precision_extremes(self, backend, half_dtype):
        values = np.array([-1e4, -10.0, 0.0, 10.0, 1e4])
        x = backend.asarray(values, half_dtype)
        reference = scipy.special.expit(backend.to_numpy(x) if backend.values else values)
        assert_close(backend.call(mle.sigmoid, x), reference, backend, half_dtype)


class TestBadInput:
    @pytest.mark.parametrize("fn", [mle.softmax, mle.log_softmax, mle.logsumexp, mle.sigmoid])
    def test_complex_input_names_the_argument(self, fn):
        with pytest.raises(TypeError, match="`x` must be a real array"):
            fn(np.asarray([1.0 + 1j, 2.0]))

    def test_non_array_input(self):
        with pytest.raises(TypeError, match="`x` must be an array, got list"):
            mle.softmax([1.0, 2.0])

    def test_bad_axis(self):
        with pytest.raises((ValueError, IndexError), match="axis"):
            mle.softmax(np.ones((2, 3)), axis=2)


class TestAutodiff:
    @pytest.mark.parametrize(
        ("ours", "theirs"),
        [
            ("softmax", "softmax"),
            ("log_softmax", "log_softmax"),
            ("logsumexp", "logsumexp"),
            ("sigmoid", "sigmoid"),
        ],
    )
    def test_torch_autograd_matches_torch(self, ours, theirs):
        torch = torch_or_skip()
        weights = torch.asarray(RNG.normal(size=(4, 6)))
        x1 = torch.asarray(RNG.normal(size=(4, 6)) * 3, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        ref = {
            "softmax": lambda t: torch.softmax(t, -1),
            "log_softmax": lambda t: torch.log_softmax(t, -1),
            "logsumexp": lambda t: torch.logsumexp(t, -1, keepdim=True),
            "sigmoid": torch.sigmoid,
        }[theirs]
        kwargs = {"axis": -1, "keepdims": True} if ours == "logsumexp" else {}
        (getattr(mle, ours)(x1, **kwargs) * weights).sum().backward()
        (ref(x2) * weights).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-12)

    def test_jax_grad_jit_vmap(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        x = jnp.asarray(RNG.normal(size=(5, 7)))
        w = jnp.asarray(RNG.normal(size=(7,)))

        def loss(fn, oracle):
            return lambda t: jnp.sum(jax.vmap(fn)(t) * w), lambda t: jnp.sum(oracle(t) * w)

        for fn, oracle in [
            (mle.softmax, jax.nn.softmax),
            (mle.log_softmax, jax.nn.log_softmax),
            (mle.sigmoid, jax.nn.sigmoid),
        ]:
            ours, theirs = loss(fn, oracle)
            np.testing.assert_allclose(
                jax.jit(jax.grad(ours))(x), jax.grad(theirs)(x), rtol=1e-10, atol=1e-12
            )
        lse = jax.jit(jax.grad(lambda t: jnp.sum(mle.logsumexp(t, axis=-1))))
        np.testing.assert_allclose(lse(x), jax.nn.softmax(x), rtol=1e-10)

    def test_jax_grad_finite_on_masked_logits(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        x = jnp.asarray([[0.0, -jnp.inf, 1.0], [-jnp.inf, -jnp.inf, -jnp.inf]])
        g = jax.grad(lambda t: jnp.sum(mle.logsumexp(t[:1], axis=-1)))(x)
        assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g[0], jax.nn.softmax(x[0]), rtol=1e-12)

    def test_sigmoid_gradient_finite_at_extremes(self):
        torch = torch_or_skip()
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            x = torch.asarray([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype, requires_grad=True)
            mle.sigmoid(x).sum().backward()
            assert torch.isfinite(x.grad).all(), dtype


class TestZeroDimInput:
    """Issue 22: a 0-d array is a row of one element, as PyTorch's ``dim`` 0 or -1 takes it.

    ``axis % x.ndim`` raised ``ZeroDivisionError`` on every backend; the results
    are compared with SciPy's (which reduces the one element with ``axis=None``).
    """

    @pytest.mark.parametrize(
        ("name", "oracle"),
        [
            ("softmax", lambda x: scipy.special.softmax(x, axis=None)),
            ("log_softmax", lambda x: scipy.special.log_softmax(x, axis=None)),
            ("logsumexp", lambda x: scipy.special.logsumexp(x, axis=None)),
        ],
    )
    @pytest.mark.parametrize("axis", [0, -1])
    @pytest.mark.parametrize("value", [2.5, -0.0, -700.0])
    def test_matches_scipy(self, backend, dtype, name, oracle, axis, value):
        x = backend.asarray(np.asarray(value), dtype)
        out = backend.call(getattr(mle, name), x, axis=axis)
        assert_close(out, oracle(np.asarray(value, dtype=np.float64)), backend, dtype)

    @pytest.mark.parametrize("keepdims", [False, True])
    def test_logsumexp_axis_none_and_keepdims_stay_0d(self, backend, dtype, keepdims):
        x = backend.asarray(np.asarray(-3.25), dtype)
        out = backend.call(mle.logsumexp, x, axis=None, keepdims=keepdims)
        # torch.logsumexp(0-d, 0, keepdim=True) is 0-d too: there is no axis to keep.
        assert_close(out, scipy.special.logsumexp(-3.25), backend, dtype)

    @pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
    @pytest.mark.parametrize("axis", [1, -2, (0, -1)])
    def test_impossible_axis_is_a_value_error_naming_axis(self, backend, name, axis):
        x = backend.asarray(np.asarray(1.0), "float32")
        with pytest.raises(ValueError, match="`axis`"):
            backend.call(getattr(mle, name), x, axis=axis)

    def test_torch_autograd_on_0d_matches_torch(self):
        torch = torch_or_skip()
        for ours, theirs in [
            (mle.softmax, lambda t: torch.softmax(t, 0)),
            (mle.log_softmax, lambda t: torch.log_softmax(t, -1)),
            (mle.logsumexp, lambda t: torch.logsumexp(t, 0)),
        ]:
            x1 = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
            x2 = x1.detach().clone().requires_grad_(True)
            (ours(x1, axis=0) * 3.0).backward()
            (theirs(x2) * 3.0).backward()
            torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-12, atol=1e-12)


class TestAxisChecks:
    """Out-of-range or repeated axes reached the library, which raised its own error
    (NumPy's ``AxisError``, torch's ``IndexError``) without naming the argument."""

    @pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
    @pytest.mark.parametrize("axis", [2, -3, (0, 2), (1, -1)])
    def test_out_of_range_or_repeated_axis_names_axis(self, backend, name, axis):
        x = backend.asarray(np.ones((2, 3)), "float32")
        with pytest.raises(ValueError, match="`axis`"):
            backend.call(getattr(mle, name), x, axis=axis)

    @pytest.mark.parametrize("axis", [1.0, True, [0]])
    def test_non_integer_axis_is_a_type_error(self, axis):
        with pytest.raises(TypeError, match="`axis`"):
            mle.logsumexp(np.ones((2, 3)), axis=axis)

    def test_logsumexp_over_no_axis_is_the_identity(self, backend, dtype):
        values = np.asarray([[0.5, -np.inf, 2.0], [1e4, -1e4, -0.0]])
        x = backend.asarray(values, dtype)
        out = backend.call(mle.logsumexp, x, axis=())
        with np.errstate(divide="ignore", over="ignore"):
            expected = np.where(np.abs(values) < 700, np.log(np.exp(values)), values)
        assert_close(out, expected, backend, dtype)


class TestNaNPropagates:
    """A NaN in a row made ``s = Σ exp`` NaN, and ``s > 0`` sent the row to ``-inf``."""

    def test_logsumexp_and_log_softmax_rows_with_nan(self, backend, dtype):
        rows = np.asarray([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0], [-np.inf, -np.inf, np.nan]])
        x = backend.asarray(rows, dtype)
        assert_close(
            backend.call(mle.logsumexp, x, axis=-1),
            scipy.special.logsumexp(rows, axis=-1),
            backend,
            dtype,
        )
        assert_close(
            backend.call(mle.log_softmax, x, axis=-1),
            scipy.special.log_softmax(rows, axis=-1),
            backend,
            dtype,
        )
