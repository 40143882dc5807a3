"""Registry entries for ``bayesopt.py``: plain float64 NumPy references.

The references use ``math.erf`` (the C library's), NumPy's Cholesky and a
NumPy rewrite of the Bayesian-optimisation loop.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .. import bayesopt
from .._registry import Equation
from .._xp import namespace

_erf = np.vectorize(math.erf, otypes=[float])


def _points(rng: np.random.Generator) -> tuple[np.ndarray]:
    return (rng.uniform(-6.0, 6.0, size=(64,)),)


def _normal_cdf(x: np.ndarray) -> Any:
    return np.vectorize(lambda v: 0.5 * math.erfc(-v / math.sqrt(2)), otypes=[float])(x)


def _pairs(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # The shapes of gp_posterior's training and query points below: on eager JAX the
    # kernels' compiled operations are then shared (each shape compiles once).
    return rng.uniform(size=(6, 2)), rng.uniform(size=(9, 2))


def _r(x1: np.ndarray, x2: np.ndarray, length_scale: float) -> Any:
    return np.sqrt(((x1[:, None, :] - x2[None, :, :]) ** 2).sum(-1)) / length_scale


def _rbf(x1: np.ndarray, x2: np.ndarray, length_scale: float, variance: float) -> Any:
    return variance * np.exp(-0.5 * _r(x1, x2, length_scale) ** 2)


def _matern(x1: np.ndarray, x2: np.ndarray, length_scale: float, variance: float) -> Any:
    s = np.sqrt(5) * _r(x1, x2, length_scale)
    return variance * (1 + s + s**2 / 3) * np.exp(-s)


_KERNEL_OPTIONS = {"length_scale": 0.7, "variance": 1.3}
_GP_KERNEL = functools.partial(bayesopt.matern52_kernel, length_scale=0.4)


def _gp_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return rng.uniform(size=(6, 2)), rng.normal(size=(6,)), rng.uniform(size=(9, 2))


def _gp_reference(
    x: np.ndarray,
    y: np.ndarray,
    q: np.ndarray,
    kernel: Any = None,
    noise: float = 1e-10,
    length_scale: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    k = _matern(x, x, length_scale, 1.0) + noise * np.eye(len(x))
    ks = _matern(x, q, length_scale, 1.0)
    mean = ks.T @ np.linalg.solve(k, y)
    var = 1.0 - np.einsum("nm,nm->m", ks, np.linalg.solve(k, ks))
    return mean, np.sqrt(np.maximum(var, 0.0))


def _ei_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    # 64 points, as erf's: eager JAX compiles EI's erf and normal pdf once for both.
    std = rng.uniform(0.0, 2.0, size=(64,))
    std[::5] = 0.0
    return rng.normal(size=(64,)), std, np.asarray(0.3)


def _ei_reference(
    mu: np.ndarray, sd: np.ndarray, best: np.ndarray, xi: float = 0.01, maximize: bool = True
) -> Any:
    imp = mu - best - xi if maximize else best - mu - xi
    with np.errstate(divide="ignore", invalid="ignore"):
        z = imp / sd
        ei = imp * _normal_cdf(np.nan_to_num(z)) + sd * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    return np.where(sd > 0, ei, 0.0)


def demo_objective(x: Any) -> Any:
    """The demo's black box on [0, 1]: ``x sin(10 x)``, maximum 0.7917 at x = 0.7979."""
    xp = namespace(x=x)
    return x[0] * xp.sin(10 * x[0])


def _bo(bounds: Any, *, n_iter: int) -> tuple[Any, ...]:
    return tuple(bayesopt.bayesian_optimization(demo_objective, bounds, n_iter=n_iter))


def _gp(x: Any, y: Any, q: Any, **options: Any) -> tuple[Any, ...]:
    # A plain tuple: the registry reads results back element-wise.
    return tuple(bayesopt.gp_posterior(x, y, q, **options))


def _bo_reference(bounds: np.ndarray, *, n_iter: int) -> tuple[np.ndarray, ...]:
    """The same loop in NumPy: SplitMix64 initial points, a grid, Matern 5/2, EI."""
    low, high = bounds[0, 0], bounds[0, 1]
    u = np.asarray(bayesopt._uniform(0, 5))
    cand = np.linspace(0.0, 1.0, 1001)
    ys = list(u * (high - low) + low)
    ys = [x * np.sin(10 * x) for x in ys]
    for _ in range(n_iter):
        y = np.asarray(ys)
        sd = y.std() if y.std() > 0 else 1.0
        z = (y - y.mean()) / sd
        mean, std = _gp_reference(u[:, None], z, cand[:, None], noise=1e-6, length_scale=0.1)
        ei = _ei_reference(mean, std, z.max())
        u = np.append(u, cand[np.argmax(ei)])
        x = low + u[-1] * (high - low)
        ys.append(x * np.sin(10 * x))
    y = np.asarray(ys)
    x_hist = (low + u * (high - low))[:, None]
    best = int(np.argmax(y))
    return x_hist[best], y[best], x_hist, y, np.maximum.accumulate(y)


EQUATIONS = [
    Equation("erf", bayesopt.erf, _points, _erf),
    Equation("normal_cdf", bayesopt.normal_cdf, _points, _normal_cdf),
    Equation(
        "normal_pdf",
        bayesopt.normal_pdf,
        _points,
        lambda x: np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi),
    ),
    Equation("rbf_kernel", bayesopt.rbf_kernel, _pairs, _rbf, options=_KERNEL_OPTIONS),
    Equation("matern52_kernel", bayesopt.matern52_kernel, _pairs, _matern, options=_KERNEL_OPTIONS),
    Equation(
        "gp_posterior",
        _gp,
        _gp_inputs,
        _gp_reference,
        options={"kernel": _GP_KERNEL, "noise": 1e-4},
        rtol32=1e-3,
    ),
    Equation("expected_improvement", bayesopt.expected_improvement, _ei_inputs, _ei_reference),
    Equation(
        "expected_improvement(minimize)",
        bayesopt.expected_improvement,
        _ei_inputs,
        _ei_reference,
        options={"maximize": False, "xi": 0.05},
    ),
    Equation(
        "bayesian_optimization",
        _bo,
        lambda rng: (np.asarray([[0.0, 1.0]]),),
        _bo_reference,
        # Three guided rounds: under torch.compile and jax.jit the loop unrolls, and
        # compile time grows with the rounds (8 took 17 s to trace on this CPU).
        options={"n_iter": 3},
        grad=False,
        lazy=False,
        rtol32=1e-3,
    ),
]
