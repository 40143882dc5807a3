"""DDPM schedules, the forward process and the reverse step on every backend.

The oracle is Hugging Face diffusers' ``DDPMScheduler`` (``linear`` and
``squaredcos_cap_v2`` schedules, ``add_noise``, ``step`` with
``variance_type="fixed_small"`` and ``clip_sample=False``), which computes in
float32; float64 results are also held to the formulas written out in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

import mlequations as mle

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(7)
T = 1000


def _scheduler(schedule: str, num_steps: int = T) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=num_steps, beta_schedule=schedule, clip_sample=False)


def _cosine64(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """diffusers' ``betas_for_alpha_bar`` before its cast to float32."""

    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return np.array(
        [min(1 - f((i + 1) / num_steps) / f(i / num_steps), max_beta) for i in range(num_steps)]
    )


def _schedule(backend, dtype, fn, num_steps=T, **options):
    return backend.call(
        fn, num_steps, xp=backend.xp, device=backend.device, dtype=backend.dtype(dtype), **options
    )


def _diffusers(values) -> np.ndarray:
    return values.detach().double().numpy()


class TestLinearBetaSchedule:
    def test_matches_diffusers(self, backend, dtype):
        betas = _schedule(backend, dtype, mle.linear_beta_schedule)
        # diffusers holds float32; float64 agrees with it to float32 rounding.
        expected = _diffusers(_scheduler("linear").betas)
        assert_close(betas, expected, backend, dtype, rtol=2e-7, atol=0)
        if dtype == "float64":
            assert_close(betas, np.linspace(1e-4, 0.02, T), backend, dtype)

    def test_options_and_default_library(self):
        betas = mle.linear_beta_schedule(3, beta_start=0.1, beta_end=0.3)
        assert isinstance(betas, np.ndarray)
        assert betas.dtype == np.float64
        np.testing.assert_allclose(betas, [0.1, 0.2, 0.3], rtol=1e-15)
        one = mle.linear_beta_schedule(1, xp=torch)
        assert one.dtype == torch.float32
        assert one.shape == (1,)


class TestCosineBetaSchedule:
    @pytest.mark.parametrize("num_steps", [1, 10, T])
    def test_matches_diffusers(self, backend, dtype, num_steps):
        betas = _schedule(backend, dtype, mle.cosine_beta_schedule, num_steps)
        expected = _diffusers(_scheduler("squaredcos_cap_v2", num_steps).betas)
        # A few float32 ulps, even for the tiny early betas (no cancellation).
        assert_close(betas, expected, backend, dtype, rtol=1e-6, atol=0)
        if dtype == "float64":
            assert_close(betas, _cosine64(num_steps), backend, dtype, rtol=1e-12)

    def test_cap_and_offset(self):
        betas = mle.cosine_beta_schedule(50, s=0.0, max_beta=0.5)
        np.testing.assert_allclose(betas, _cosine64(50, s=0.0, max_beta=0.5), rtol=1e-12)
        assert betas.max() == 0.5


class TestAlphaBar:
    @pytest.mark.parametrize("schedule", ["linear", "squaredcos_cap_v2"])
    def test_matches_diffusers(self, backend, dtype, schedule):
        sched = _scheduler(schedule)
        betas = backend.asarray(_diffusers(sched.betas), dtype)
        expected = _diffusers(sched.alphas_cumprod)
        tolerance = {"rtol": 1e-5, "atol": 1e-7} if dtype == "float32" else {}
        if dtype == "float64":
            expected = np.cumprod(1 - _diffusers(sched.betas))
        assert_close(backend.call(mle.alpha_bar, betas), expected, backend, dtype, **tolerance)

    def test_decreasing_in_unit_interval(self, backend, dtype):
        if not backend.values:
            pytest.skip("torch-meta holds no values")
        for fn in (mle.linear_beta_schedule, mle.cosine_beta_schedule):
            ab = backend.to_numpy(backend.call(mle.alpha_bar, _schedule(backend, dtype, fn)))
            assert np.all(np.diff(ab) < 0)
            assert ab[0] <= 1.0
            assert ab[-1] >= 0.0

    def test_batched_schedules(self):
        betas = RNG.uniform(0.0, 0.2, size=(3, 8))
        np.testing.assert_allclose(mle.alpha_bar(betas), np.cumprod(1 - betas, axis=-1))


class TestForwardDiffusion:
    def test_matches_diffusers_add_noise(self, backend, dtype):
        sched = _scheduler("linear")
        x0 = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1))
        noise = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(2))
        steps = torch.tensor([0, 10, 500, 999])
        expected = _diffusers(sched.add_noise(x0, noise, steps))
        ab = _diffusers(sched.alphas_cumprod)[steps.numpy()]
        if dtype == "float64":
            ab4 = ab[:, None, None]
            expected = (
                np.sqrt(ab4) * x0.double().numpy() + np.sqrt(1 - ab4) * noise.double().numpy()
            )
        out = backend.call(
            mle.forward_diffusion,
            backend.asarray(x0.double().numpy(), dtype),
            backend.asarray(noise.double().numpy(), dtype),
            backend.asarray(ab, dtype),
        )
        assert_close(out, expected, backend, dtype)

    def test_scalar_alpha_bar_forms(self, backend, dtype):
        x0, eps = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
        expected = math.sqrt(0.3) * x0 + math.sqrt(0.7) * eps
        args = backend.asarray(x0, dtype), backend.asarray(eps, dtype)
        assert_close(backend.call(mle.forward_diffusion, *args, 0.3), expected, backend, dtype)
        ab = backend.asarray(np.asarray(0.3), dtype)
        assert_close(backend.call(mle.forward_diffusion, *args, ab), expected, backend, dtype)

    def test_alpha_bar_one_returns_x0(self, backend, dtype):
        x0 = RNG.normal(size=(2, 5))
        args = backend.asarray(x0, dtype), backend.asarray(RNG.normal(size=(2, 5)), dtype)
        assert_close(backend.call(mle.forward_diffusion, *args, 1.0), x0, backend, dtype, rtol=0)
        ones = backend.asarray(np.ones(2), dtype)
        assert_close(backend.call(mle.forward_diffusion, *args, ones), x0, backend, dtype, rtol=0)

    def test_mean_and_variance_over_noise_draws(self, backend, dtype):
        if not backend.values:
            pytest.skip("torch-meta holds no values")
        draws = 20000
        x0 = np.array([1.5, -2.0, 0.25])
        ab = np.array([0.9, 0.5, 0.05])
        eps = RNG.normal(size=(draws, 3, 3))  # (draws, samples, features)
        x0_b = np.broadcast_to(x0, (draws, 3, 3))
        ab_b = np.broadcast_to(ab[None, :, None], (draws, 3, 3))
        # Put the three noise levels on the batch axis: (draws * 3, 3).
        out = backend.call(
            mle.forward_diffusion,
            backend.asarray(x0_b.reshape(-1, 3), dtype),
            backend.asarray(eps.reshape(-1, 3), dtype),
            backend.asarray(ab_b[:, :, 0].reshape(-1), dtype),
        )
        x_t = backend.to_numpy(out).reshape(draws, 3, 3)
        mean, var = x_t.mean(axis=0), x_t.var(axis=0)
        expected_mean = np.sqrt(ab)[:, None] * x0[None, :]
        expected_var = np.broadcast_to((1 - ab)[:, None], (3, 3))
        # Standard errors: sqrt(var / n) for the mean, var * sqrt(2 / n) for the variance.
        np.testing.assert_allclose(mean, expected_mean, atol=5 * np.sqrt(1 / draws))
        np.testing.assert_allclose(var, expected_var, rtol=5 * np.sqrt(2 / draws))


class TestPredictX0:
    def test_inverts_forward_and_matches_diffusers(self, backend, dtype):
        sched = _scheduler("squaredcos_cap_v2")
        x_t = torch.randn(3, 4, generator=torch.Generator().manual_seed(3))
        eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(4))
        t = 200
        expected = _diffusers(sched.step(eps, t, x_t).pred_original_sample)
        ab = float(sched.alphas_cumprod[t])
        if dtype == "float64":
            expected = (x_t.double().numpy() - math.sqrt(1 - ab) * eps.double().numpy()) / (
                math.sqrt(ab)
            )
        args = (
            backend.asarray(x_t.double().numpy(), dtype),
            backend.asarray(eps.double().numpy(), dtype),
        )
        out = backend.call(mle.predict_x0, *args, backend.asarray(np.asarray(ab), dtype))
        assert_close(out, expected, backend, dtype)
        if backend.values:
            back = backend.call(mle.forward_diffusion, out, args[1], ab)
            assert_close(back, x_t.double().numpy(), backend, dtype, atol=1e-5)


def _step64(x_t, eps, t, betas, z):
    """The DDPM posterior step in float64, written out per sample."""
    ab = np.cumprod(1 - betas)
    t = np.broadcast_to(t, (x_t.shape[0],))
    out = np.empty_like(x_t)
    for i, step in enumerate(t):
        ab_prev = ab[step - 1] if step > 0 else 1.0
        x0 = (x_t[i] - np.sqrt(1 - ab[step]) * eps[i]) / np.sqrt(ab[step])
        c0 = np.sqrt(ab_prev) * betas[step] / (1 - ab[step])
        ct = np.sqrt(1 - betas[step]) * (1 - ab_prev) / (1 - ab[step])
        sigma = np.sqrt((1 - ab_prev) / (1 - ab[step]) * betas[step])
        out[i] = c0 * x0 + ct * x_t[i] + sigma * z[i]
    return out


class TestDDPMReverseStep:
    @pytest.mark.parametrize("t", [0, 1, 500, 999])
    def test_matches_diffusers_step(self, backend, dtype, t):
        sched = _scheduler("linear")
        x_t = torch.randn(2, 3, generator=torch.Generator().manual_seed(5))
        eps = torch.randn(2, 3, generator=torch.Generator().manual_seed(6))
        # diffusers draws its noise with torch.randn from the generator: replay it.
        z = torch.randn(2, 3, generator=torch.Generator().manual_seed(8))
        ours_z = z if t > 0 else torch.zeros(2, 3)
        expected = _diffusers(
            sched.step(eps, t, x_t, generator=torch.Generator().manual_seed(8)).prev_sample
        )
        betas = _diffusers(sched.betas)
        arrays = [v.double().numpy() for v in (x_t, eps)]
        if dtype == "float64":
            expected = _step64(arrays[0], arrays[1], t, betas, ours_z.double().numpy())
        out = backend.call(
            mle.ddpm_reverse_step,
            backend.asarray(arrays[0], dtype),
            backend.asarray(arrays[1], dtype),
            t,
            backend.asarray(betas, dtype),
            backend.asarray(z.double().numpy(), dtype),
        )
        # diffusers forms 1 - beta_t as abar_t / abar_(t-1) in float32, which
        # loses digits for small beta_t; the float64 formula is held tightly.
        tolerance = {"rtol": 2e-4, "atol": 2e-5} if dtype == "float32" else {}
        assert_close(out, expected, backend, dtype, **tolerance)

    def test_per_sample_and_array_steps(self, backend, dtype):
        betas = np.linspace(1e-3, 0.2, 20)
        x_t, eps, z = (RNG.normal(size=(4, 2, 3)) for _ in range(3))
        t = np.array([0, 1, 7, 19])
        expected = _step64(x_t, eps, t, betas, z)
        args = [backend.asarray(a, dtype) for a in (x_t, eps)]
        out = backend.call(
            mle.ddpm_reverse_step,
            *args,
            backend.asarray(t),
            backend.asarray(betas, dtype),
            backend.asarray(z, dtype),
        )
        assert_close(out, expected, backend, dtype, rtol=1e-3 if dtype == "float32" else None)
        scalar_t = backend.asarray(np.asarray(7))
        out = backend.call(
            mle.ddpm_reverse_step,
            *args,
            scalar_t,
            backend.asarray(betas, dtype),
            backend.asarray(z, dtype),
        )
        expected = _step64(x_t, eps, 7, betas, z)
        assert_close(out, expected, backend, dtype, rtol=1e-3 if dtype == "float32" else None)

    def test_last_step_adds_no_noise(self):
        betas = mle.linear_beta_schedule(10)
        x_t, eps = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
        a = mle.ddpm_reverse_step(x_t, eps, 0, betas, np.zeros((2, 3)))
        b = mle.ddpm_reverse_step(x_t, eps, 0, betas, 1e6 * np.ones((2, 3)))
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, mle.predict_x0(x_t, eps, mle.alpha_bar(betas)[0]))


class TestBadInput:
    def test_schedule_options(self):
        with pytest.raises(ValueError, match="`num_steps`"):
            mle.linear_beta_schedule(0)
        with pytest.raises(ValueError, match="`beta_end`"):
            mle.linear_beta_schedule(10, beta_end=1.5)
        with pytest.raises(ValueError, match="`max_beta`"):
            mle.cosine_beta_schedule(10, max_beta=1.0)
        with pytest.raises(TypeError, match="`dtype`"):
            mle.cosine_beta_schedule(10, dtype=np.int64)
        with pytest.raises(TypeError, match="xp"):
            mle.linear_beta_schedule(10, xp="numpy")

    def test_shapes_name_the_argument(self):
        x0 = np.zeros((4, 3))
        with pytest.raises(ValueError, match=r"`noise` must have the shape of `x0` \(4, 3\)"):
            mle.forward_diffusion(x0, np.zeros((4, 2)), 0.5)
        with pytest.raises(ValueError, match=r"`alpha_bar_t`.*got shape \(3,\)"):
            mle.forward_diffusion(x0, x0, np.ones(3))
        with pytest.raises(ValueError, match="`alpha_bar_t` must lie in"):
            mle.forward_diffusion(x0, x0, 1.5)
        with pytest.raises(ValueError, match="`noise_pred`"):
            mle.predict_x0(x0, np.zeros(3), 0.5)
        with pytest.raises(ValueError, match="`betas`"):
            mle.alpha_bar(np.asarray(0.1))

    def test_reverse_step_arguments(self):
        x, betas = np.zeros((2, 3)), np.full(5, 0.1)
        with pytest.raises(ValueError, match="`betas` must be 1-d"):
            mle.ddpm_reverse_step(x, x, 1, betas[None], x)
        with pytest.raises(ValueError, match="`t` must lie in"):
            mle.ddpm_reverse_step(x, x, 5, betas, x)
        with pytest.raises(TypeError, match="`t` must be an integer array"):
            mle.ddpm_reverse_step(x, x, np.asarray(1.0), betas, x)
        with pytest.raises(TypeError, match="`t` must be an int"):
            mle.ddpm_reverse_step(x, x, 1.0, betas, x)
        with pytest.raises(ValueError, match="`t` must be a scalar or have one step per sample"):
            mle.ddpm_reverse_step(x, x, np.array([1, 2, 3]), betas, x)
        with pytest.raises(ValueError, match="`noise`"):
            mle.ddpm_reverse_step(x, x, 1, betas, np.zeros(3))

    def test_mixed_libraries(self):
        with pytest.raises(TypeError, match="`noise` is a torch array"):
            mle.forward_diffusion(np.zeros(3), torch.zeros(3), 0.5)


class TestAutodiff:
    def test_jax_jit_and_grad_through_forward_diffusion(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        x0, eps = jnp.asarray(RNG.normal(size=(3, 4))), jnp.asarray(RNG.normal(size=(3, 4)))
        ab = jnp.asarray([0.9, 0.5, 0.1])
        w = jnp.asarray(RNG.normal(size=(3, 4)))

        def loss(x0, ab):
            return jnp.sum(w * mle.forward_diffusion(x0, eps, ab))

        gx, gab = jax.jit(jax.grad(loss, argnums=(0, 1)))(x0, ab)
        np.testing.assert_allclose(gx, jnp.sqrt(ab)[:, None] * w, rtol=1e-12)
        expected = jnp.sum(
            w * (x0 / (2 * jnp.sqrt(ab))[:, None] - eps / (2 * jnp.sqrt(1 - ab))[:, None]), axis=1
        )
        np.testing.assert_allclose(gab, expected, rtol=1e-12)

    def test_jax_jit_reverse_step_with_traced_t_and_finite_gradients(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        betas = jnp.linspace(1e-4, 0.02, 100)
        x_t, eps, z = (jnp.asarray(RNG.normal(size=(2, 3))) for _ in range(3))
        step = jax.jit(mle.ddpm_reverse_step)
        for t in (0, 50):
            expected = _step64(
                *(np.asarray(v) for v in (x_t, eps)), t, np.asarray(betas), np.asarray(z)
            )
            np.testing.assert_allclose(
                step(x_t, eps, jnp.asarray(t), betas, z), expected, rtol=1e-12
            )
        g = jax.grad(
            lambda e: jnp.sum(mle.ddpm_reverse_step(x_t, e, jnp.asarray([0, 3]), betas, z))
        )(eps)
        assert bool(jnp.all(jnp.isfinite(g)))

    def test_torch_autograd_through_forward_diffusion(self):
        torch_ = torch_or_skip()
        x0 = torch_.asarray(RNG.normal(size=(2, 3)), requires_grad=True)
        eps = torch_.asarray(RNG.normal(size=(2, 3)))
        ab = torch_.asarray([0.3, 0.8], dtype=torch_.float64)
        mle.forward_diffusion(x0, eps, ab).sum().backward()
        torch_.testing.assert_close(x0.grad, torch_.sqrt(ab)[:, None].expand(2, 3))
