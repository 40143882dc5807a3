"""bayes_rule, joint_probability, conditional_probability, marginal_probability on every backend."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import mlequations as mle

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261125)
PRIOR = RNG.dirichlet(np.ones(5))  # (H,)
LIKELIHOOD = RNG.uniform(size=(4, 5))  # (B, H): 4 pieces of evidence
LIKELIHOOD[2, 1] = 0.0
JOINT = RNG.dirichlet(np.ones(12)).reshape(3, 4)  # P(A, B)
JOINT[:, 2] = 0.0  # B = 2 is impossible


def _posterior(prior: np.ndarray, likelihood: np.ndarray, axis: int = -1) -> np.ndarray:
    """Plain float64 Bayes: the textbook product and normalisation."""
    unnormalised = prior * likelihood
    return unnormalised / unnormalised.sum(axis=axis, keepdims=True)


def _exact_posterior(prior: np.ndarray, likelihood: np.ndarray) -> np.ndarray:
    """Bayes in exact rational arithmetic, rounded once: right where float64's product
    underflows (a subnormal prior times a likelihood below 1), as the textbook's is not."""
    unnormalised = [Fraction(p) * Fraction(q) for p, q in zip(prior, likelihood, strict=True)]
    total = sum(unnormalised)
    return np.asarray([float(u / total) for u in unnormalised])


class TestBayesRule:
    def test_guide_disease_example(self, backend, dtype):
        prior = backend.asarray([0.01, 0.99], dtype)
        likelihood = backend.asarray([0.99, 0.02], dtype)
        # P(D | T+) = 0.0099 / (0.0099 + 0.0198) = 1/3
        assert_close(
            backend.call(mle.bayes_rule, prior, likelihood), [1 / 3, 2 / 3], backend, dtype
        )

    @pytest.mark.parametrize("axis", [-1, 0])
    def test_matches_reference_with_broadcasting(self, backend, dtype, axis):
        prior, likelihood = (PRIOR, LIKELIHOOD) if axis == -1 else (PRIOR[:, None], LIKELIHOOD.T)
        out = backend.call(
            mle.bayes_rule,
            backend.asarray(prior, dtype),
            backend.asarray(likelihood, dtype),
            axis=axis,
        )
        assert_close(out, _posterior(prior, likelihood, axis), backend, dtype)

    def test_log_space_survives_underflow(self, backend, dtype):
        # prior x likelihood underflows to 0 (1e-60 in float32, 1e-400 in float64), so the
        # textbook formula gives 0 / 0; in log space the posterior is exact.
        tiny = 1e-30 if dtype == "float32" else 1e-200
        prior = backend.asarray([tiny, tiny, 0.0], dtype)
        likelihood = backend.asarray([2 * tiny, tiny, 1.0], dtype)
        out = backend.call(mle.bayes_rule, prior, likelihood)
        assert_close(out, [2 / 3, 1 / 3, 0.0], backend, dtype)

    def test_zero_evidence_is_nan(self, backend, dtype):
        prior = backend.asarray([[0.5, 0.5], [1.0, 0.0]], dtype)
        likelihood = backend.asarray([[0.0, 0.0], [0.0, 1.0]], dtype)
        out = backend.call(mle.bayes_rule, prior, likelihood)
        assert_close(out, [[np.nan, np.nan], [np.nan, np.nan]], backend, dtype)

    def test_half_precision(self, backend, half_dtype):
        prior, likelihood = (
            backend.asarray(PRIOR, half_dtype),
            backend.asarray(LIKELIHOOD, half_dtype),
        )
        reference = (
            _posterior(backend.to_numpy(prior), backend.to_numpy(likelihood))
            if backend.values
            else _posterior(PRIOR, LIKELIHOOD)
        )
        assert_close(
            backend.call(mle.bayes_rule, prior, likelihood), reference, backend, half_dtype
        )

    @settings(max_examples=25, deadline=None)
    @given(
        st.lists(st.floats(0.0, 1.0), min_size=2, max_size=6),
        st.lists(st.floats(1e-6, 1.0), min_size=6, max_size=6),
    )
    # Subnormal priors, where float64's own product underflows (found by hypothesis).
    @example(prior=[1e-300, 5e-324], likelihood=[1.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    @example(prior=[0.0, 5e-324], likelihood=[1.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    def test_posterior_is_a_distribution(self, prior, likelihood):
        prior = np.asarray(prior)
        if prior.sum() == 0:
            prior[0] = 1.0
        likelihood = np.asarray(likelihood[: prior.size])
        posterior = mle.bayes_rule(prior, likelihood)
        assert float(posterior.sum()) == pytest.approx(1.0, abs=1e-12)
        assert np.all(posterior >= 0)
        np.testing.assert_allclose(
            posterior, _exact_posterior(prior, likelihood), rtol=1e-12, atol=1e-300
        )

    def test_jax_grad_finite_with_a_zero_prior(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        prior = jnp.asarray([0.0, 0.3, 0.7])
        likelihood = jnp.asarray([0.5, 0.2, 0.9])

        def first_posterior(p, lik):
            return mle.bayes_rule(p, lik)[1]

        g_prior, g_like = jax.jit(jax.grad(first_posterior, (0, 1)))(prior, likelihood)
        assert bool(jnp.all(jnp.isfinite(g_prior)))
        assert bool(jnp.all(jnp.isfinite(g_like)))
        # Away from the zero, the gradient is that of the textbook formula.
        reference = jax.grad(lambda p, lik: (p * lik / jnp.sum(p * lik))[1], (0, 1))(
            prior, likelihood
        )
        np.testing.assert_allclose(g_prior[1:], reference[0][1:], rtol=1e-12)
        np.testing.assert_allclose(g_like, reference[1], rtol=1e-12, atol=1e-15)

    def test_torch_autograd_matches_textbook(self):
        torch = torch_or_skip()
        prior = torch.asarray(PRIOR, requires_grad=True)
        likelihood = torch.asarray(LIKELIHOOD[:2], requires_grad=True)
        weights = torch.asarray(RNG.normal(size=(2, 5)))
        (mle.bayes_rule(prior, likelihood) * weights).sum().backward()
        prior2 = prior.detach().clone().requires_grad_(True)
        likelihood2 = likelihood.detach().clone().requires_grad_(True)
        joint = prior2 * likelihood2
        ((joint / joint.sum(-1, keepdim=True)) * weights).sum().backward()
        torch.testing.assert_close(prior.grad, prior2.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(likelihood.grad, likelihood2.grad, rtol=1e-10, atol=1e-12)


class TestJointProbability:
    def test_product_rule_with_broadcasting(self, backend, dtype):
        conditional = JOINT / np.where(JOINT.sum(0) > 0, JOINT.sum(0), 1.0)  # P(A | B)
        marginal = JOINT.sum(0)  # P(B)
        out = backend.call(
            mle.joint_probability,
            backend.asarray(conditional, dtype),
            backend.asarray(marginal, dtype),
        )
        assert_close(out, JOINT, backend, dtype)


class TestConditionalProbability:
    def test_matches_division_and_zero_over_zero_is_zero(self, backend, dtype):
        marginal = JOINT.sum(axis=0, keepdims=True)  # (1, B), a zero at B = 2
        expected = np.zeros_like(JOINT)
        np.divide(JOINT, marginal, out=expected, where=np.broadcast_to(marginal > 0, JOINT.shape))
        out = backend.call(
            mle.conditional_probability,
            backend.asarray(JOINT, dtype),
            backend.asarray(marginal, dtype),
        )
        assert_close(out, expected, backend, dtype)

    def test_round_trip_with_joint_and_marginal(self, backend, dtype):
        joint = backend.asarray(JOINT, dtype)

        def round_trip(joint):
            marginal = mle.marginal_probability(joint, axis=0)
            return mle.joint_probability(mle.conditional_probability(joint, marginal), marginal)

        assert_close(backend.call(round_trip, joint), JOINT, backend, dtype)

    def test_gradient_finite_where_the_condition_is_impossible(self):
        torch = torch_or_skip()
        joint = torch.asarray(JOINT, requires_grad=True)
        marginal = joint.sum(0)
        mle.conditional_probability(joint, marginal).sum().backward()
        assert torch.isfinite(joint.grad).all()


class TestMarginalProbability:
    @pytest.mark.parametrize(
        ("axis", "keepdims"), [(0, False), (1, True), ((0, 2), False), (-1, False)]
    )
    def test_matches_sum(self, backend, dtype, axis, keepdims):
        joint = RNG.dirichlet(np.ones(24)).reshape(2, 3, 4)
        out = backend.call(
            mle.marginal_probability, backend.asarray(joint, dtype), axis=axis, keepdims=keepdims
        )
        assert_close(out, joint.sum(axis=axis, keepdims=keepdims), backend, dtype)

    def test_integer_counts_promote(self, backend):
        counts = backend.asarray(np.asarray([[1, 2], [3, 4]]))
        out = backend.call(mle.marginal_probability, counts, axis=0)
        default = backend.xp.__array_namespace_info__().default_dtypes(device=backend.device)
        assert out.dtype == default["real floating"]
        if backend.values:
            np.testing.assert_array_equal(backend.to_numpy(out), [4.0, 6.0])


class TestBadInput:
    def test_shapes_that_do_not_broadcast(self):
        with pytest.raises(ValueError, match=r"`prior` with shape \(3,\) and `likelihood`"):
            mle.bayes_rule(np.ones(3), np.ones((2, 4)))
        with pytest.raises(ValueError, match="`joint` with shape"):
            mle.conditional_probability(np.ones((2, 3)), np.ones(2))
        with pytest.raises(ValueError, match="`conditional` with shape"):
            mle.joint_probability(np.ones((2, 3)), np.ones(4))

    def test_axis(self):
        with pytest.raises(ValueError, match="`axis`=2"):
            mle.bayes_rule(np.ones(3), np.ones((2, 3)), axis=2)
        with pytest.raises(ValueError, match="`axis`=3"):
            mle.marginal_probability(np.ones((2, 3)), axis=3)
        with pytest.raises(ValueError, match="names an axis twice"):
            mle.marginal_probability(np.ones((2, 3)), axis=(0, -2))
        with pytest.raises(TypeError, match="`axis` must be an int"):
            mle.marginal_probability(np.ones((2, 3)), axis=0.5)
        with pytest.raises(TypeError, match="axis"):
            mle.marginal_probability(np.ones((2, 3)))

    def test_complex_and_mixed_libraries(self):
        with pytest.raises(TypeError, match="`likelihood` must be a real array"):
            mle.bayes_rule(np.ones(2), np.ones(2, dtype=complex))
        torch = torch_or_skip()
        with pytest.raises(TypeError, match="`joint` is a numpy array, `marginal` is a torch"):
            mle.conditional_probability(np.ones(2), torch.ones(2))
