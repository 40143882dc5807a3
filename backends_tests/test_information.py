"""entropy, kl_divergence, cross_entropy, mutual_information, information_gain on every backend.

Oracles: ``scipy.stats.entropy`` (with ``base``), ``scipy.special.entr``,
``rel_entr`` and ``xlogy``, and ``sklearn.metrics.mutual_info_score`` on a
contingency table.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mutual_info_score

import mlequations as mle

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261124)


def _distributions(shape: tuple[int, ...], *, zeros: bool = True) -> np.ndarray:
    """Distributions along the last axis, some with zero entries and one one-hot row."""
    p = RNG.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    if zeros:
        flat = p.reshape(-1, shape[-1])
        flat[0] = 0.0
        flat[0, 1] = 1.0  # one-hot
        flat[-1, :2] = 0.0
        flat[-1] /= flat[-1].sum()
    return p


P = _distributions((3, 4, 6))
Q = _distributions((3, 4, 6))  # zeros at the same places as P: finite KL
Q_POSITIVE = _distributions((3, 4, 6), zeros=False)

# Distributions for the property tests: 2 to 8 outcomes, some exactly 0.
_weights = st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1.0)), min_size=2, max_size=8).filter(
    lambda w: sum(w) > 0
)


def _normalise(w: list[float]) -> np.ndarray:
    a = np.asarray(w)
    return a / a.sum()


class TestEntropy:
    @pytest.mark.parametrize(("base", "axis"), [(None, -1), (2, 0), (10, 1)])
    def test_matches_scipy_stats_entropy(self, backend, dtype, base, axis):
        p = np.moveaxis(P, -1, axis)
        expected = scipy.stats.entropy(p, base=base, axis=axis)
        out = backend.call(mle.entropy, backend.asarray(p, dtype), axis=axis, base=base)
        assert_close(out, expected, backend, dtype)

    def test_matches_scipy_special_entr(self, backend, dtype):
        # entr(x) = -x log x elementwise, 0 at x = 0; no normalisation involved.
        expected = scipy.special.entr(P).sum(axis=-1)
        assert_close(backend.call(mle.entropy, backend.asarray(P, dtype)), expected, backend, dtype)

    def test_known_values(self, backend, dtype):
        # The guide's coins; it prints 0.4699 for the biased one: 0.3251 nats = 0.4690 bits.
        # Then a one-hot distribution (0) and a uniform one (log 4).
        p = np.asarray([[0.5, 0.5, 0, 0], [0.9, 0.1, 0, 0], [0, 1, 0, 0], [0.25] * 4])
        nats = [math.log(2), 0.32508297339144826, 0.0, math.log(4)]
        x = backend.asarray(p, dtype)
        assert_close(backend.call(mle.entropy, x), nats, backend, dtype)
        assert_close(
            backend.call(mle.entropy, x, base=2),
            [1.0, 0.4689955935892812, 0.0, 2.0],
            backend,
            dtype,
        )

    def test_integer_input_promotes(self, backend):
        p = backend.asarray(np.asarray([[0, 1], [1, 0]]))
        out = backend.call(mle.entropy, p)
        default = backend.xp.__array_namespace_info__().default_dtypes(device=backend.device)
        assert out.dtype == default["real floating"]
        if backend.values:
            np.testing.assert_array_equal(backend.to_numpy(out), [0.0, 0.0])

    def test_half_precision(self, backend, half_dtype):
        x = backend.asarray(P, half_dtype)
        p = backend.to_numpy(x) if backend.values else P
        assert_close(
            backend.call(mle.entropy, x), scipy.special.entr(p).sum(-1), backend, half_dtype
        )

    @settings(max_examples=25, deadline=None)
    @given(_weights)
    def test_bounds(self, w):
        p = _normalise(w)
        h = float(mle.entropy(p))
        assert -1e-12 <= h <= math.log(p.size) + 1e-12
        assert h == pytest.approx(scipy.stats.entropy(p), abs=1e-12)


class TestKLDivergence:
    @pytest.mark.parametrize(("q", "base"), [(Q, None), (Q_POSITIVE, 2)], ids=["zeros", "bits"])
    def test_matches_scipy_rel_entr(self, backend, dtype, base, q):
        expected = scipy.special.rel_entr(P, q).sum(axis=-1) / (math.log(base) if base else 1)
        out = backend.call(
            mle.kl_divergence, backend.asarray(P, dtype), backend.asarray(q, dtype), base=base
        )
        assert_close(out, expected, backend, dtype)
        assert_close(out, scipy.stats.entropy(P, q, base=base, axis=-1), backend, dtype)

    def test_known_values(self, backend, dtype):
        p = np.asarray([[0.7, 0.3], [0.5, 0.5], [0.0, 1.0], [1.0, 0.0], [0.3, 0.7]])
        q = np.asarray([[0.5, 0.5], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.3, 0.7]])
        # The guide's example; q = 0 < p gives inf, twice; p = 0 = q gives 0; p = q gives 0.
        expected = [0.08228287850505156, np.inf, np.inf, 0.0, 0.0]
        out = backend.call(mle.kl_divergence, backend.asarray(p, dtype), backend.asarray(q, dtype))
        assert_close(out, expected, backend, dtype)

    def test_batches_along_other_axes_and_broadcasting(self, backend, dtype):
        axis = 1
        p = np.moveaxis(P, -1, axis)  # outcomes along `axis`
        q = np.moveaxis(Q_POSITIVE[:1], -1, axis)  # one q broadcast over the batch
        expected = scipy.special.rel_entr(p, q).sum(axis=axis)
        out = backend.call(
            mle.kl_divergence, backend.asarray(p, dtype), backend.asarray(q, dtype), axis=axis
        )
        assert_close(out, expected, backend, dtype)

    @settings(max_examples=25, deadline=None)
    @given(_weights, st.integers(0, 2**32 - 1))
    def test_gibbs_inequality(self, w, seed):
        p = _normalise(w)
        q = np.random.default_rng(seed).dirichlet(np.ones(p.size))
        kl = float(mle.kl_divergence(p, q))
        assert kl >= 0.0
        assert kl == pytest.approx(float(scipy.special.rel_entr(p, q).sum()), abs=1e-12)
        assert float(mle.kl_divergence(p, p)) == 0.0
        if not np.allclose(p, q, atol=1e-6):
            assert kl > 0.0


class TestCrossEntropy:
    def test_matches_xlogy(self, backend, dtype):
        base = 2
        expected = -scipy.special.xlogy(P, Q_POSITIVE).sum(axis=-1) / (
            math.log(base) if base else 1
        )
        out = backend.call(
            mle.cross_entropy,
            backend.asarray(P, dtype),
            backend.asarray(Q_POSITIVE, dtype),
            base=base,
        )
        assert_close(out, expected, backend, dtype)

    def test_guide_binary_cross_entropy(self, backend, dtype):
        y = np.asarray([1.0, 0.0, 1.0])
        y_hat = np.asarray([0.9, 0.1, 0.8])
        # Three samples of the guide, then zeros: p = 0 = q gives 0, q = 0 < p gives inf.
        p = np.concatenate([np.stack([y, 1 - y], axis=-1), [[0.0, 1.0], [1.0, 0.0]]])
        q = np.concatenate([np.stack([y_hat, 1 - y_hat], axis=-1), [[0.0, 1.0], [0.0, 1.0]]])
        p, q = backend.asarray(p, dtype), backend.asarray(q, dtype)
        per_sample = [-math.log(0.9), -math.log(0.9), -math.log(0.8), 0.0, np.inf]
        out = backend.call(mle.cross_entropy, p, q)
        assert_close(out, per_sample, backend, dtype)
        if backend.values:  # the guide prints 0.1643; the mean is 0.1446
            mean = float(np.mean(backend.to_numpy(out)[:3]))
            assert mean == pytest.approx(0.1446215275, abs=1e-6)

    @settings(max_examples=25, deadline=None)
    @given(_weights, st.integers(0, 2**32 - 1))
    def test_entropy_plus_kl(self, w, seed):
        p = _normalise(w)
        q = np.random.default_rng(seed).dirichlet(np.ones(p.size))
        lhs = float(mle.cross_entropy(p, q))
        rhs = float(mle.entropy(p)) + float(mle.kl_divergence(p, q))
        assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)


COUNTS = RNG.integers(0, 9, size=(3, 4, 5)).astype(np.float64)  # (B, X, Y) contingency tables
COUNTS[1, :, 2] = 0.0  # an empty column
COUNTS[2] = np.outer([1, 2, 3, 4], [2, 2, 4, 6, 2])  # independent


class TestMutualInformation:
    def test_matches_sklearn_mutual_info_score(self, backend, dtype):
        base = None
        expected = [
            mutual_info_score(None, None, contingency=table) / (math.log(base) if base else 1)
            for table in COUNTS
        ]
        out = backend.call(mle.mutual_information, backend.asarray(COUNTS, dtype), base=base)
        assert_close(out, expected, backend, dtype, atol=1e-6 if dtype == "float32" else 1e-12)

    def test_probability_table_and_perfect_dependence(self, backend, dtype):
        tables = np.stack([np.eye(3) / 3, np.full((3, 3), 1 / 9), np.zeros((3, 3))])
        out = backend.call(mle.mutual_information, backend.asarray(tables, dtype), base=2)
        assert_close(out, [math.log2(3), 0.0, 0.0], backend, dtype)

    @settings(max_examples=25, deadline=None)
    @given(_weights, _weights, st.integers(0, 2**32 - 1))
    def test_non_negative_and_zero_for_products(self, wx, wy, seed):
        p_x, p_y = _normalise(wx), _normalise(wy)
        assert float(mle.mutual_information(np.outer(p_x, p_y))) == pytest.approx(0.0, abs=1e-12)
        joint = np.random.default_rng(seed).dirichlet(np.ones(p_x.size * p_y.size))
        mi = float(mle.mutual_information(joint.reshape(p_x.size, p_y.size)))
        assert mi >= 0.0
        h_x = scipy.stats.entropy(joint.reshape(p_x.size, p_y.size).sum(axis=1))
        assert mi <= h_x + 1e-12


class TestInformationGain:
    def test_matches_scipy_entropy_of_counts(self, backend, dtype):
        base = 2
        children = RNG.integers(0, 7, size=(4, 3, 5)).astype(np.float64)  # (B, K, C)
        children[2, 1] = 0.0  # an empty child
        parent = children.sum(axis=1)
        n = parent.sum(-1)
        expected = [
            scipy.stats.entropy(parent[b], base=base)
            - sum(
                children[b, k].sum() / n[b] * scipy.stats.entropy(children[b, k], base=base)
                for k in range(3)
                if children[b, k].sum() > 0
            )
            for b in range(4)
        ]
        out = backend.call(
            mle.information_gain,
            backend.asarray(parent, dtype),
            backend.asarray(children, dtype),
            base=base,
        )
        assert_close(out, expected, backend, dtype)

    def test_known_splits_and_a_shared_parent(self, backend, dtype):
        # One parent (5, 5) broadcast over three splits: (4, 1) | (1, 4); perfect; useless.
        parent = backend.asarray([5.0, 5.0], dtype)
        children = [[[4.0, 1.0], [1.0, 4.0]], [[5.0, 0.0], [0.0, 5.0]], [[2.5, 2.5], [2.5, 2.5]]]
        children = backend.asarray(children, dtype)
        expected = [1.0 - 0.7219280948873623, 1.0, 0.0]
        out = backend.call(mle.information_gain, parent, children, base=2)
        assert_close(out, expected, backend, dtype)


class TestBadInput:
    @pytest.mark.parametrize(
        ("fn", "args", "match"),
        [
            (mle.kl_divergence, (np.ones((2, 3)), np.ones((2, 4))), "`p` with shape"),
            (mle.cross_entropy, (np.ones(3), np.ones(2)), "`q` with shape"),
            (mle.information_gain, (np.ones(3), np.ones((2, 4))), "`parent_counts`"),
            (mle.information_gain, (np.ones((2, 3)), np.ones((3, 2, 3))), "do not broadcast"),
            (mle.information_gain, (np.ones(3), np.ones(3)), "`child_counts`"),
            (mle.mutual_information, (np.ones(3),), "`joint` must have at least 2"),
        ],
    )
    def test_shape_errors_name_the_argument(self, fn, args, match):
        with pytest.raises(ValueError, match=match):
            fn(*args)

    @pytest.mark.parametrize("fn", [mle.entropy, mle.kl_divergence, mle.cross_entropy])
    def test_axis_out_of_range(self, fn):
        args = (np.ones((2, 3)),) * (1 if fn is mle.entropy else 2)
        with pytest.raises(ValueError, match="`axis`=2"):
            fn(*args, axis=2)

    @pytest.mark.parametrize("base", [0, 1, -2, float("inf")])
    def test_bad_base(self, base):
        with pytest.raises(ValueError, match="`base`"):
            mle.entropy(np.ones(2) / 2, base=base)

    def test_base_must_be_a_number(self):
        with pytest.raises(TypeError, match="`base`"):
            mle.entropy(np.ones(2) / 2, base="2")

    def test_complex_input(self):
        with pytest.raises(TypeError, match="`q` must be a real array"):
            mle.kl_divergence(np.ones(2) / 2, np.ones(2, dtype=complex))

    def test_mixed_libraries(self):
        torch = torch_or_skip()
        with pytest.raises(TypeError, match="`p` is a numpy array, `q` is a torch array"):
            mle.cross_entropy(np.ones(2) / 2, torch.ones(2) / 2)


class TestGradients:
    """The double where: finite gradients at p = 0 and q = 0, equal to the analytic ones."""

    P_EDGE = np.asarray([[0.0, 0.3, 0.7], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    Q_EDGE = np.asarray([[0.0, 0.6, 0.4], [0.25, 0.25, 0.5], [0.5, 0.5, 0.0]])

    def _analytic(self, p, q):
        """d/dp and d/dq of sum(KL), sum(H), sum(cross-entropy), with 0 where undefined."""
        live = p > 0
        logp = np.log(np.where(live, p, 1.0))
        logq = np.log(np.where(q > 0, q, 1.0))
        return {
            "entropy_dp": np.where(live, -(logp + 1.0), 0.0),
            "kl_dp": np.where(live, logp + 1.0 - logq, 0.0),
            "kl_dq": np.where(live, -p / np.where(q > 0, q, 1.0), 0.0),
            "cross_dq": np.where(live, -p / np.where(q > 0, q, 1.0), 0.0),
        }

    def test_jax_grad_is_finite_at_zero(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        p, q = jnp.asarray(self.P_EDGE), jnp.asarray(self.Q_EDGE)
        expected = self._analytic(self.P_EDGE, self.Q_EDGE)
        d_entropy = jax.jit(jax.grad(lambda t: jnp.sum(mle.entropy(t))))(p)
        d_kl_p, d_kl_q = jax.jit(jax.grad(lambda a, b: jnp.sum(mle.kl_divergence(a, b)), (0, 1)))(
            p, q
        )
        d_cross_q = jax.jit(jax.grad(lambda b: jnp.sum(mle.cross_entropy(p, b))))(q)
        for got, name in [
            (d_entropy, "entropy_dp"),
            (d_kl_p, "kl_dp"),
            (d_kl_q, "kl_dq"),
            (d_cross_q, "cross_dq"),
        ]:
            assert bool(jnp.all(jnp.isfinite(got))), name
            live = self.Q_EDGE > 0  # where q = 0 < p the true gradient is infinite; we give 0
            np.testing.assert_allclose(
                np.where(live, got, 0),
                np.where(live, expected[name], 0),
                rtol=1e-12,
                atol=1e-12,
                err_msg=name,
            )

    def test_jax_vmap_and_grad_of_mutual_information(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        tables = jnp.asarray(np.stack([np.eye(3) / 3, np.full((3, 3), 1 / 9)]))
        values = jax.jit(jax.vmap(mle.mutual_information))(tables)
        np.testing.assert_allclose(values, [math.log(3), 0.0], atol=1e-12)
        g = jax.jit(jax.grad(lambda t: jnp.sum(mle.mutual_information(t))))(tables)
        assert bool(jnp.all(jnp.isfinite(g)))

    def test_torch_autograd_is_finite_and_matches_torch(self):
        torch = torch_or_skip()
        p = torch.asarray(self.P_EDGE, requires_grad=True)
        q = torch.asarray(self.Q_EDGE, requires_grad=True)
        mle.kl_divergence(p, q).sum().backward()
        assert torch.isfinite(p.grad).all()
        assert torch.isfinite(q.grad).all()
        expected = self._analytic(self.P_EDGE, self.Q_EDGE)
        live = self.Q_EDGE > 0
        np.testing.assert_allclose(
            np.where(live, p.grad.numpy(), 0), np.where(live, expected["kl_dp"], 0), rtol=1e-12
        )
        # Where q > 0 everywhere p > 0, torch's own kl_div (log q first!) agrees.
        p2 = torch.asarray(Q_POSITIVE[0, 1:], requires_grad=True)
        q2 = torch.asarray(P[0, 1:])
        ours = mle.kl_divergence(q2, p2).sum()
        theirs = torch.nn.functional.kl_div(p2.log(), q2, reduction="sum")
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
        (g_ours,) = torch.autograd.grad(ours, p2)
        (g_theirs,) = torch.autograd.grad(theirs, p2)
        torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)

    def test_torch_entropy_gradient_at_one_hot(self):
        torch = torch_or_skip()
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            p = torch.asarray([[0.0, 1.0, 0.0]], dtype=dtype, requires_grad=True)
            mle.entropy(p).sum().backward()
            assert torch.isfinite(p.grad).all(), dtype
            assert p.grad.tolist() == [[0.0, -1.0, 0.0]], dtype
