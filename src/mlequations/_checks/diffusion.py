"""Registry entries for ``diffusion.py``: plain float64 NumPy references.

The schedules make arrays from nothing, so their entries take a template array
(``like``) and ask for the schedule in its library, device and dtype: that is
what ``mlequations check`` holds them to.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import diffusion
from .._registry import Equation
from .._xp import device, namespace

T = 50


def _like(rng: np.random.Generator) -> tuple[np.ndarray]:
    return (rng.normal(size=(1,)),)


def _linear(like: Any) -> Any:
    return diffusion.linear_beta_schedule(
        T, xp=namespace(like=like), device=device(like), dtype=like.dtype
    )


def _cosine(like: Any) -> Any:
    return diffusion.cosine_beta_schedule(
        T, xp=namespace(like=like), device=device(like), dtype=like.dtype
    )


def _cosine_reference(like: np.ndarray, s: float = 0.008, max_beta: float = 0.999) -> Any:
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], max_beta)


def _betas(rng: np.random.Generator) -> tuple[np.ndarray]:
    return (rng.uniform(1e-4, 0.1, size=(2, 20)),)


def _forward_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 3, 2)), rng.uniform(0.05, 1.0, (4,))


def _forward_reference(x0: np.ndarray, eps: np.ndarray, ab: np.ndarray) -> Any:
    ab = ab[:, None, None]
    return np.sqrt(ab) * x0 + np.sqrt(1 - ab) * eps


def _predict_reference(x_t: np.ndarray, eps: np.ndarray, ab: np.ndarray) -> Any:
    ab = ab[:, None, None]
    return (x_t - np.sqrt(1 - ab) * eps) / np.sqrt(ab)


def _step_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    t = np.array([0, 1, 7, 19])
    betas = np.linspace(1e-3, 0.2, 20)
    return rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), t, betas, rng.normal(size=(4, 3))


def _step_reference(
    x_t: np.ndarray, eps: np.ndarray, t: np.ndarray, betas: np.ndarray, z: np.ndarray
) -> Any:
    ab = np.cumprod(1 - betas)
    noised = -np.expm1(np.cumsum(np.log1p(-betas)))  # 1 - ab, without cancellation
    out = np.empty_like(x_t)
    for i, step in enumerate(t):
        ab_t, beta = ab[step], betas[step]
        x0 = (x_t[i] - np.sqrt(noised[step]) * eps[i]) / np.sqrt(ab_t)
        if step == 0 or noised[step] == 0:
            out[i] = x0  # beta_0 / (1 - ab_0) = 1: the last step is the estimate itself
            continue
        ab_prev, noised_prev = ab[step - 1], noised[step - 1]
        mean = (np.sqrt(ab_prev) * beta * x0 + np.sqrt(1 - beta) * noised_prev * x_t[i]) / (
            noised[step]
        )
        var = noised_prev / noised[step] * beta
        out[i] = mean + np.sqrt(var) * z[i]
    return out


EQUATIONS = [
    Equation(
        "linear_beta_schedule",
        _linear,
        _like,
        lambda like: np.linspace(1e-4, 0.02, T),
        grad=False,
    ),
    Equation("cosine_beta_schedule", _cosine, _like, _cosine_reference, grad=False),
    Equation("alpha_bar", diffusion.alpha_bar, _betas, lambda b: np.cumprod(1 - b, axis=-1)),
    Equation("forward_diffusion", diffusion.forward_diffusion, _forward_inputs, _forward_reference),
    Equation("predict_x0", diffusion.predict_x0, _forward_inputs, _predict_reference),
    Equation(
        "ddpm_reverse_step",
        diffusion.ddpm_reverse_step,
        _step_inputs,
        _step_reference,
        rtol32=1e-3,
    ),
]
