r"""Diffusion (DDPM): noise schedules, the forward process and one reverse step.

A denoising diffusion probabilistic model destroys data $x_0$ by adding a little
Gaussian noise at each of $T$ steps, with variances $\beta_1, \dots, \beta_T$
(the *schedule*), and learns to undo one step at a time. Because a sum of
Gaussians is Gaussian, any step $t$ can be reached in one jump:

$$
x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon,
\qquad \bar\alpha_t = \prod_{s \le t} (1 - \beta_s),
\qquad \varepsilon \sim \mathcal{N}(0, I).
$$

The functions follow Hugging Face diffusers' ``DDPMScheduler`` (``linear`` and
``squaredcos_cap_v2`` schedules, ``add_noise``, ``step`` with the "fixed small"
variance and ``clip_sample=False``), with steps indexed from 0 as there. The
noise is always an argument: nothing here draws random numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._xp import (
    Array,
    Namespace,
    compute_dtype,
    default_namespace,
    device,
    float_dtypes,
    namespace,
    scalar,
)

__all__ = [
    "alpha_bar",
    "cosine_beta_schedule",
    "ddpm_reverse_step",
    "forward_diffusion",
    "linear_beta_schedule",
    "predict_x0",
]


def _schedule_setup(num_steps: int, xp: Any, device: Any, dtype: Any) -> tuple[Namespace, Any, Any]:
    """Check `num_steps`; resolve the namespace and the output and compute dtypes."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be a positive int, got {num_steps!r}")
    xp = default_namespace(xp)
    if dtype is None:
        dtype = xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    if not xp.isdtype(dtype, "real floating"):
        raise TypeError(f"`dtype` must be a real floating dtype, got {dtype}")
    return xp, dtype, compute_dtype(xp, dtype)


def _check_beta(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1), got {value!r}")


def linear_beta_schedule(
    num_steps: int,
    /,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    xp: Any = None,
    device: Any = None,
    dtype: Any = None,
) -> Array:
    r"""The linear noise schedule of Ho et al. (2020).

    $$
    \beta_t = \beta_{\text{start}} + \frac{t}{T - 1}
              \left(\beta_{\text{end}} - \beta_{\text{start}}\right),
    \qquad t = 0, \dots, T - 1 .
    $$

    Equal to diffusers' ``DDPMScheduler(beta_schedule="linear").betas``.

    Args:
        num_steps: The number of diffusion steps $T \ge 1$.
        beta_start: $\beta$ of the first step, in $[0, 1)$.
        beta_end: $\beta$ of the last step, in $[0, 1)$.
        xp: Array library or namespace to create the schedule with (``numpy``,
            ``torch``, ``jax.numpy``, ...); NumPy when omitted.
        device: Device to create it on; the library's default when omitted.
        dtype: Real floating dtype; the library's default floating dtype when
            omitted. Half precision is computed in float32 and cast.

    Returns:
        The schedule $\beta$, shape `(T,)`, of `xp` on `device` in `dtype`.

    Examples:
        >>> import mlequations as mle
        >>> mle.linear_beta_schedule(5)
        array([0.0001  , 0.005075, 0.01005 , 0.015025, 0.02    ])

    References:
        Ho, J., Jain, A., Abbeel, P. (2020). Denoising diffusion probabilistic
        models. *NeurIPS 33*, 6840-6851.
    """
    xp, out_dtype, work_dtype = _schedule_setup(num_steps, xp, device, dtype)
    _check_beta("beta_start", beta_start)
    _check_beta("beta_end", beta_end)
    betas = xp.linspace(beta_start, beta_end, num_steps, dtype=work_dtype, device=device)  # (T,)
    return xp.astype(betas, out_dtype, copy=False)


def cosine_beta_schedule(
    num_steps: int,
    /,
    *,
    s: float = 0.008,
    max_beta: float = 0.999,
    xp: Any = None,
    device: Any = None,
    dtype: Any = None,
) -> Array:
    r"""The cosine noise schedule of Nichol & Dhariwal (2021), capped at `max_beta`.

    $$
    \bar\alpha(u) = \cos^2\!\left(\frac{u + s}{1 + s} \cdot \frac{\pi}{2}\right),
    \qquad
    \beta_t = \min\!\left(1 - \frac{\bar\alpha\left(\frac{t+1}{T}\right)}
                                   {\bar\alpha\left(\frac{t}{T}\right)},
                          \beta_{\max}\right).
    $$

    With $a$ and $b$ the angles at $(t+1)/T$ and $t/T$, the ratio is computed as
    $1 - \cos^2 a / \cos^2 b = \sin(a - b)\sin(a + b) / \cos^2 b$, which has no
    cancellation: $a - b = \pi / (2T(1+s))$ is a constant, so even the tiny
    early $\beta_t$ keep full relative precision in float32. Equal to
    diffusers' ``DDPMScheduler(beta_schedule="squaredcos_cap_v2").betas``
    (which fixes $s = 0.008$).

    Args:
        num_steps: The number of diffusion steps $T \ge 1$.
        s: The small offset that keeps $\beta_0$ away from 0.
        max_beta: Cap on $\beta_t$, in $(0, 1)$; it stops $\beta_{T-1} = 1$.
        xp: Array library or namespace; NumPy when omitted.
        device: Device to create the schedule on; the library's default when omitted.
        dtype: Real floating dtype; the library's default floating dtype when omitted.

    Returns:
        The schedule $\beta$, shape `(T,)`, of `xp` on `device` in `dtype`.

    Examples:
        >>> import mlequations as mle
        >>> mle.cosine_beta_schedule(4)
        array([0.15298784, 0.41695809, 0.70785871, 0.999     ])

    References:
        Nichol, A. Q., Dhariwal, P. (2021). Improved denoising diffusion
        probabilistic models. *ICML*, PMLR 139, 8162-8171.
    """
    xp, out_dtype, work_dtype = _schedule_setup(num_steps, xp, device, dtype)
    if s < 0:
        raise ValueError(f"`s` must be >= 0, got {s!r}")
    if not 0.0 < max_beta < 1.0:
        raise ValueError(f"`max_beta` must lie in (0, 1), got {max_beta!r}")
    half_pi = math.pi / 2 / (1 + s)
    # Every angle is formed from exact integers, and each sine is taken of
    # whichever of x and pi - x is small, so no argument loses digits to
    # cancellation: cos b is tiny near t = T, and sin(a + b) has a + b near pi there.
    i = xp.arange(num_steps, dtype=work_dtype, device=device)  # (T,) t
    j = num_steps - i  # (T,) T - t, exact
    cos_b = xp.sin(j / num_steps * half_pi)  # cos b = sin(pi/2 - b)
    sum_ab = ((2 * i + 1) / num_steps + 2 * s) * half_pi  # a + b
    co_sum = (2 * j - 1) / num_steps * half_pi  # pi - (a + b); s cancels
    sin_sum = xp.where(sum_ab <= math.pi / 2, xp.sin(sum_ab), xp.sin(co_sum))
    delta = math.sin(half_pi / num_steps)  # sin(a - b), the same for every t
    betas = delta * sin_sum / cos_b**2  # (T,)
    betas = xp.minimum(betas, scalar(max_beta, betas, xp=xp))
    return xp.astype(betas, out_dtype, copy=False)


def alpha_bar(betas: Array, /, *, xp: Namespace | None = None) -> Array:
    r"""The cumulative signal fraction $\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)$.

    $$
    \bar\alpha_t = \prod_{s=0}^{t} (1 - \beta_s), \qquad t = 0, \dots, T - 1 .
    $$

    $\bar\alpha_t$ decreases from $1 - \beta_0$ towards 0; $\sqrt{\bar\alpha_t}$
    scales the signal and $\sqrt{1 - \bar\alpha_t}$ the noise in $x_t$. The
    product is a prefix scan ($\lceil \log_2 T \rceil$ elementwise products of
    shifted copies), exact up to rounding, in the standard's elementwise
    functions: array-api-compat's ``cumulative_prod`` looks the namespace up
    again through a cached function, which ``torch.compile`` warns about on
    every traced call (issue 19).

    Args:
        betas: The schedule, shape `(..., T)`, real floating dtype (integers are
            promoted); the product runs along the last axis.
        xp: Array namespace; inferred from `betas` when omitted.

    Returns:
        $\bar\alpha$ with the shape, dtype and device of `betas`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.alpha_bar(np.asarray([0.1, 0.2, 0.5]))
        array([0.9 , 0.72, 0.36])
    """
    xp = namespace(betas=betas, xp=xp)
    out_dtype, work_dtype = float_dtypes(xp, betas=betas)
    if betas.ndim < 1:
        raise ValueError(
            f"`betas` must have at least one axis (..., T), got shape {tuple(betas.shape)}"
        )
    alphas = 1 - xp.astype(betas, work_dtype, copy=False)  # (..., T)
    out = _prefix_scan(alphas, lambda a, b: a * b, 1.0, xp)  # (..., T)
    return xp.astype(out, out_dtype, copy=False)


def _prefix_scan(
    x: Array, combine: Callable[[Array, Array], Array], identity: float, xp: Namespace
) -> Array:
    """Inclusive prefix reduction of `x` along its last axis (Hillis and Steele).

    Step k combines each entry with the one ``2^k`` places before it (the identity
    before the start), so ``ceil(log2 T)`` elementwise steps give the prefix products
    (or sums). Rounding is that of a pairwise reduction, no worse than a sequential
    one. Written in the standard's slicing and ``concat`` rather than
    ``cumulative_prod``/``cumulative_sum``, whose array-api-compat wrappers call the
    cached ``array_namespace`` again, which ``torch.compile`` warns about (issue 19).
    """
    n = x.shape[-1]
    shift = 1
    while shift < n:  # a static count: ceil(log2 T) steps
        pad = xp.full((*x.shape[:-1], shift), identity, dtype=x.dtype, device=device(x))
        x = combine(x, xp.concat([pad, x[..., : n - shift]], axis=-1))  # (..., T)
        shift *= 2
    return x


def _per_sample(value: Any, name: str, like: Array, xp: Namespace) -> Array:
    """`value` (a Python number, a 0-d array or one value per sample) shaped to broadcast.

    A 1-d array of length ``B = like.shape[0]`` becomes ``(B, 1, ..., 1)`` so that
    it scales each sample's trailing axes.
    """
    if isinstance(value, int | float):
        return scalar(float(value), like, xp=xp)
    value = xp.astype(value, like.dtype, copy=False)
    if value.ndim == 0:
        return value
    if value.ndim == 1 and like.ndim >= 1 and value.shape[0] == like.shape[0]:
        return xp.reshape(value, (value.shape[0],) + (1,) * (like.ndim - 1))
    raise ValueError(
        f"`{name}` must be a scalar or have one value per sample, shape "
        f"({like.shape[0] if like.ndim else 'B'},), got shape {tuple(value.shape)} "
        f"for samples of shape {tuple(like.shape)}"
    )


def _same_shape(name: str, a: Array, ref_name: str, ref: Array) -> None:
    if tuple(a.shape) != tuple(ref.shape):
        raise ValueError(
            f"`{name}` must have the shape of `{ref_name}` {tuple(ref.shape)}, got {tuple(a.shape)}"
        )


def _check_alpha_bar(alpha_bar_t: Any) -> None:
    if isinstance(alpha_bar_t, int | float) and not 0.0 <= alpha_bar_t <= 1.0:
        raise ValueError(f"`alpha_bar_t` must lie in [0, 1], got {alpha_bar_t!r}")


def forward_diffusion(
    x0: Array, noise: Array, alpha_bar_t: Array | float, /, *, xp: Namespace | None = None
) -> Array:
    r"""Jump from clean data $x_0$ to step $t$ of the forward (noising) process.

    $$
    x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \varepsilon,
    \qquad \varepsilon \sim \mathcal{N}(0, I),
    $$

    so that $x_t \mid x_0 \sim \mathcal{N}(\sqrt{\bar\alpha_t}\, x_0,
    (1 - \bar\alpha_t) I)$. $\bar\alpha_t = 1$ returns $x_0$ and $\bar\alpha_t = 0$
    pure noise. This is diffusers' ``DDPMScheduler.add_noise`` with
    ``alpha_bar_t = scheduler.alphas_cumprod[timesteps]``.

    Args:
        x0: Clean samples, shape `(B, ...)`, real floating dtype.
        noise: The Gaussian noise $\varepsilon$, shape of `x0`.
        alpha_bar_t: $\bar\alpha_t$ in $[0, 1]$: a Python float, a 0-d array, or
            one value per sample, shape `(B,)`, broadcast over the trailing axes.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $x_t$, shape of `x0`, in the inputs' floating dtype, on their device.

    Examples:
        The guide's example with $\bar\alpha = 0.9$ and a fixed noise draw:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.forward_diffusion(np.asarray([1.0]), np.asarray([0.5]), 0.9)
        array([1.10679718])

        One noise level per sample:

        >>> x0, eps = np.ones((2, 3)), np.zeros((2, 3))
        >>> mle.forward_diffusion(x0, eps, np.asarray([1.0, 0.25]))
        array([[1. , 1. , 1. ],
               [0.5, 0.5, 0.5]])

    References:
        Ho, J., Jain, A., Abbeel, P. (2020). Denoising diffusion probabilistic
        models. *NeurIPS 33*, eq. (4).
    """
    xp = namespace(x0=x0, noise=noise, alpha_bar_t=alpha_bar_t, xp=xp)
    out_dtype, work_dtype = float_dtypes(xp, x0=x0, noise=noise, alpha_bar_t=alpha_bar_t)
    _same_shape("noise", noise, "x0", x0)
    _check_alpha_bar(alpha_bar_t)
    x0 = xp.astype(x0, work_dtype, copy=False)
    eps = xp.astype(noise, work_dtype, copy=False)
    ab = _per_sample(alpha_bar_t, "alpha_bar_t", x0, xp)  # () or (B, 1, ..., 1)
    x_t = xp.sqrt(ab) * x0 + xp.sqrt(1 - ab) * eps
    return xp.astype(x_t, out_dtype, copy=False)


def predict_x0(
    x_t: Array, noise_pred: Array, alpha_bar_t: Array | float, /, *, xp: Namespace | None = None
) -> Array:
    r"""Estimate the clean sample from $x_t$ and a prediction of its noise.

    $$
    \hat x_0 = \frac{x_t - \sqrt{1 - \bar\alpha_t}\, \hat\varepsilon}{\sqrt{\bar\alpha_t}},
    $$

    the inverse of :func:`forward_diffusion` for a given noise (diffusers'
    ``pred_original_sample`` for ``prediction_type="epsilon"``, without clipping).
    It divides by $\sqrt{\bar\alpha_t}$, so it amplifies errors in
    $\hat\varepsilon$ at the noisy end of the schedule, where $\bar\alpha_t \to 0$.

    Args:
        x_t: Noisy samples, shape `(B, ...)`, real floating dtype.
        noise_pred: The predicted noise $\hat\varepsilon$, shape of `x_t`.
        alpha_bar_t: $\bar\alpha_t$ in $(0, 1]$: a Python float, a 0-d array, or
            one value per sample, shape `(B,)`.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $\hat x_0$, shape of `x_t`, in the inputs' floating dtype, on their device.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> x_t = mle.forward_diffusion(np.asarray([1.0]), np.asarray([0.5]), 0.9)
        >>> mle.predict_x0(x_t, np.asarray([0.5]), 0.9)
        array([1.])
    """
    xp = namespace(x_t=x_t, noise_pred=noise_pred, alpha_bar_t=alpha_bar_t, xp=xp)
    out_dtype, work_dtype = float_dtypes(
        xp, x_t=x_t, noise_pred=noise_pred, alpha_bar_t=alpha_bar_t
    )
    _same_shape("noise_pred", noise_pred, "x_t", x_t)
    _check_alpha_bar(alpha_bar_t)
    x_t = xp.astype(x_t, work_dtype, copy=False)
    eps = xp.astype(noise_pred, work_dtype, copy=False)
    ab = _per_sample(alpha_bar_t, "alpha_bar_t", x_t, xp)  # () or (B, 1, ..., 1)
    x0 = (x_t - xp.sqrt(1 - ab) * eps) / xp.sqrt(ab)
    return xp.astype(x0, out_dtype, copy=False)


def _timesteps(t: Any, num_steps: int, like: Array, xp: Namespace) -> Array:
    """`t` as an integer array on `like`'s device, checked where that costs no data access."""
    if isinstance(t, bool) or not (isinstance(t, int) or hasattr(t, "dtype")):
        raise TypeError(f"`t` must be an int or an integer array, got {type(t).__name__}")
    if isinstance(t, int):
        if not 0 <= t < num_steps:
            raise ValueError(f"`t` must lie in [0, {num_steps}) for {num_steps} steps, got {t}")
        return xp.asarray(t, device=device(like))
    if not xp.isdtype(t.dtype, "integral"):
        raise TypeError(f"`t` must be an integer array, got dtype {t.dtype}")
    if t.ndim > 1 or (t.ndim == 1 and (like.ndim == 0 or t.shape[0] != like.shape[0])):
        raise ValueError(
            f"`t` must be a scalar or have one step per sample, got shape {tuple(t.shape)} "
            f"for samples of shape {tuple(like.shape)}"
        )
    return t


def ddpm_reverse_step(
    x_t: Array,
    noise_pred: Array,
    t: Array | int,
    betas: Array,
    noise: Array,
    /,
    *,
    xp: Namespace | None = None,
) -> Array:
    r"""One step of DDPM ancestral sampling, $x_t \to x_{t-1}$, with the "fixed small" variance.

    With $\hat x_0$ from :func:`predict_x0`, the step draws from the Gaussian
    posterior $q(x_{t-1} \mid x_t, \hat x_0)$:

    $$
    x_{t-1} = \frac{\sqrt{\bar\alpha_{t-1}}\, \beta_t}{1 - \bar\alpha_t}\, \hat x_0
            + \frac{\sqrt{1 - \beta_t}\,(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t}\, x_t
            + \sigma_t z,
    \qquad
    \sigma_t^2 = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\, \beta_t ,
    $$

    with $\bar\alpha_{-1} = 1$, so the last step ($t = 0$) adds no noise and
    returns $\hat x_0$ (exactly: the coefficient $\beta_0 / (1 - \bar\alpha_0)$
    is 1). The $t = 0$ case is chosen with ``where`` (no Python branch on
    values), and the square root of $\sigma_t^2$ never sees 0, so the step
    traces under ``jax.jit`` and has finite gradients. $1 - \bar\alpha$ is
    computed as $-\operatorname{expm1}\sum_s \operatorname{log1p}(-\beta_s)$,
    without the cancellation of $1 - \prod_s (1 - \beta_s)$: fuzzing found
    $\beta_0 = 10^{-30}$ in float32 giving 0/0 (NaN) at $t = 0$, and small
    $\beta$ lose digits in float32 by subtraction. Where no noise has been
    added up to $t$ (every $\beta_s = 0$), $x_t = x_0$ and the step returns
    $\hat x_0$ too. Equal to diffusers'
    ``DDPMScheduler.step`` with ``variance_type="fixed_small"`` and
    ``clip_sample=False``, with `noise` in place of its random draw.

    Args:
        x_t: Samples at step $t$, shape `(B, ...)`, real floating dtype.
        noise_pred: The model's noise prediction $\hat\varepsilon$, shape of `x_t`.
        t: The step, ``0 <= t < T``: a Python int, a 0-d integer array, or one
            step per sample, shape `(B,)`.
        betas: The schedule $\beta$, shape `(T,)`, $T \ge 1$ (an empty schedule
            has no step to take: a ``ValueError``; fuzzing found an ``IndexError``
            from ``take`` there).
        noise: The fresh Gaussian draw $z$, shape of `x_t`.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $x_{t-1}$, shape of `x_t`, in the inputs' floating dtype, on their device.

    Examples:
        At $t = 0$ the step is the noise-free estimate $\hat x_0$:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> betas = mle.linear_beta_schedule(10)
        >>> x_t, eps = np.asarray([1.0, -1.0]), np.asarray([0.1, 0.2])
        >>> step = mle.ddpm_reverse_step(x_t, eps, 0, betas, np.ones(2))
        >>> bool(np.allclose(step, mle.predict_x0(x_t, eps, mle.alpha_bar(betas)[0])))
        True

    References:
        Ho, J., Jain, A., Abbeel, P. (2020). Denoising diffusion probabilistic
        models. *NeurIPS 33*, eqs. (6), (7) and Algorithm 2.
    """
    xp = namespace(x_t=x_t, noise_pred=noise_pred, t=t, betas=betas, noise=noise, xp=xp)
    out_dtype, work_dtype = float_dtypes(
        xp, x_t=x_t, noise_pred=noise_pred, betas=betas, noise=noise
    )
    _same_shape("noise_pred", noise_pred, "x_t", x_t)
    _same_shape("noise", noise, "x_t", x_t)
    if betas.ndim != 1 or betas.shape[0] == 0:
        raise ValueError(
            f"`betas` must be 1-d with at least one step, shape (T,) with T >= 1, "
            f"got shape {tuple(betas.shape)}"
        )
    t = _timesteps(t, betas.shape[0], x_t, xp)
    x_t = xp.astype(x_t, work_dtype, copy=False)
    eps = xp.astype(noise_pred, work_dtype, copy=False)
    z = xp.astype(noise, work_dtype, copy=False)
    beta = xp.astype(betas, work_dtype, copy=False)  # (T,)
    # 1 - alpha_bar by expm1 of the summed log1p, not by subtraction: 1 - (1 - 1e-30) is 0
    # in float32 (0/0 at t = 0, found by fuzzing), and 1 - (1 - 1e-4) keeps 3 digits.
    log_ab = _prefix_scan(xp.log1p(-beta), lambda a, b: a + b, 0.0, xp)  # (T,) log alpha_bar
    ab, noised = xp.exp(log_ab), -xp.expm1(log_ab)  # (T,) alpha_bar, 1 - alpha_bar

    t_flat = xp.reshape(t, (-1,))  # (1,) or (B,)
    first = t_flat == 0
    prev = xp.where(first, t_flat, t_flat - 1)
    one = scalar(1.0, ab, xp=xp)
    ab_t, noised_t = xp.take(ab, t_flat), xp.take(noised, t_flat)
    ab_prev = xp.where(first, one, xp.take(ab, prev))
    noised_prev = xp.where(first, 0 * one, xp.take(noised, prev))
    beta_t = xp.take(beta, t_flat)
    # t = 0, or no noise at all up to t (every beta 0): the posterior is x0_hat itself.
    clean = first | (noised_t <= 0)
    safe = xp.where(clean, one, noised_t)  # double where: no 0/0 in either branch
    c_x0 = xp.where(clean, one, xp.sqrt(ab_prev) * beta_t / safe)
    c_xt = xp.where(clean, 0 * one, xp.sqrt(1 - beta_t) * noised_prev / safe)
    sigma = xp.where(clean, 0 * one, xp.sqrt(xp.where(clean, one, noised_prev / safe * beta_t)))

    coefficients = (ab_t, noised_t, c_x0, c_xt, sigma)
    if t.ndim == 0:
        coefficients = tuple(xp.reshape(c, ()) for c in coefficients)
    else:
        coefficients = tuple(_per_sample(c, "t", x_t, xp) for c in coefficients)
    ab_t, noised_t, c_x0, c_xt, sigma = coefficients

    x0_hat = (x_t - xp.sqrt(noised_t) * eps) / xp.sqrt(ab_t)
    mean = c_x0 * x0_hat + c_xt * x_t
    return xp.astype(mean + sigma * z, out_dtype, copy=False)
