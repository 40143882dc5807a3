"""Registry entries for ``optimize.py``: plain float64 NumPy references.

The functions that take callables or return optimiser objects are registered
through small wrappers whose inputs are arrays only: a run of gradient descent
on the least-squares gradient, and three steps of each optimiser on given
gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import optimize
from .._registry import Equation

# -- least squares -------------------------------------------------------------------------


def _least_squares_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    x = np.concatenate([np.ones((9, 1)), rng.normal(size=(9, 2))], axis=1)  # (N, D)
    return rng.normal(size=3), x, rng.normal(size=9)


def _least_squares_grad(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> Any:
    return x.T @ (x @ theta - y) / x.shape[0]


def _descend(
    theta: Any,
    x: Any,
    y: Any,
    *,
    lr: float = 0.1,
    steps: int = 20,
    momentum: float = 0.0,
    tol: float | None = None,
) -> Any:
    return optimize.gradient_descent(
        lambda t: optimize.least_squares_grad(t, x, y),
        theta,
        lr=lr,
        steps=steps,
        momentum=momentum,
        tol=tol,
    )


def _descend_reference(
    theta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    lr: float = 0.1,
    steps: int = 20,
    momentum: float = 0.0,
    tol: float | None = None,
) -> np.ndarray:
    theta = np.array(theta, dtype=np.float64)
    velocity = np.zeros_like(theta)
    for _ in range(steps):
        velocity = momentum * velocity + _least_squares_grad(theta, x, y)
        theta = theta - lr * velocity
        if tol is not None and np.linalg.norm(lr * velocity) <= tol:
            break
    return theta


# -- optimisers: three steps on given gradients ---------------------------------------------


def _optimiser_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    # params (W, b), then the gradients of three steps
    shapes = [(3, 2), (3,)]
    return tuple(rng.normal(size=s) for _ in range(4) for s in shapes)


def _run(make: Callable[[], optimize.Optimizer], *arrays: Any) -> Any:
    params = (arrays[0], arrays[1])
    opt = make()
    state = opt.init(params)
    for k in range(2, len(arrays), 2):
        params, state = opt.update(params, (arrays[k], arrays[k + 1]), state)
    return params


def _run_reference(step: Callable[..., Any], *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    params = [np.array(a, dtype=np.float64) for a in arrays[:2]]
    states: list[Any] = [None, None]
    for t, k in enumerate(range(2, len(arrays), 2), start=1):
        for i in range(2):
            params[i], states[i] = step(params[i], arrays[k + i], states[i], t)
    return tuple(params)


def _sgd_step(p: Any, g: Any, state: Any, t: int, lr: float = 0.1) -> tuple[Any, Any]:
    return p - lr * g, None


def _momentum_step(
    p: Any, g: Any, buf: Any, t: int, lr: float = 0.1, beta: float = 0.9, nesterov: bool = False
) -> tuple[Any, Any]:
    buf = g if buf is None else beta * buf + g
    return p - lr * (g + beta * buf if nesterov else buf), buf


def _adam_step(
    p: Any,
    g: Any,
    state: Any,
    t: int,
    lr: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[Any, Any]:
    m, v = state if state is not None else (0.0, 0.0)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), (m, v)


_READS_BACK = (
    "the stopping test reads the step's norm back (`float()`) every step, a data-dependent "
    "branch; the fixed-step mode (`tol=None`) compiles"
)

EQUATIONS = [
    Equation(
        "least_squares_grad",
        optimize.least_squares_grad,
        _least_squares_inputs,
        _least_squares_grad,
    ),
    Equation(
        "gradient_descent(least squares)",
        _descend,
        _least_squares_inputs,
        _descend_reference,
    ),
    Equation(
        "gradient_descent(least squares, momentum)",
        _descend,
        _least_squares_inputs,
        _descend_reference,
        options={"momentum": 0.5, "lr": 0.05},
    ),
    Equation(
        "gradient_descent(least squares, tol)",
        _descend,
        _least_squares_inputs,
        _descend_reference,
        options={"tol": 1e-4, "steps": 500},
        # Documented eager: the stopping test reads a value back every step.
        no_compile=_READS_BACK,
        no_jit=_READS_BACK,
        lazy=False,
    ),
    Equation(
        "sgd(3 steps)",
        lambda *a: _run(lambda: optimize.sgd(0.1), *a),
        _optimiser_inputs,
        lambda *a: _run_reference(_sgd_step, *a),
    ),
    Equation(
        "momentum(3 steps)",
        lambda *a: _run(lambda: optimize.momentum(0.1, beta=0.9), *a),
        _optimiser_inputs,
        lambda *a: _run_reference(_momentum_step, *a),
    ),
    Equation(
        "momentum(3 steps, nesterov)",
        lambda *a: _run(lambda: optimize.momentum(0.1, beta=0.9, nesterov=True), *a),
        _optimiser_inputs,
        lambda *a: _run_reference(lambda p, g, b, t: _momentum_step(p, g, b, t, nesterov=True), *a),
    ),
    Equation(
        "adam(3 steps)",
        lambda *a: _run(lambda: optimize.adam(0.1), *a),
        _optimiser_inputs,
        lambda *a: _run_reference(_adam_step, *a),
    ),
]
