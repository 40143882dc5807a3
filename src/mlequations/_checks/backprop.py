"""Registry entries for ``backprop.py``: plain float64 NumPy references.

The MLP functions take and return tuples of ``(W, b)`` pairs; they are
registered through wrappers with flat array arguments and flat results. The
reference for :func:`~mlequations.mlp_init` runs the Wichmann–Hill generator
*sequentially*, one multiplication per number, so it checks the jump-ahead that
the portable version uses.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .. import backprop
from .._registry import Equation
from .._xp import device, namespace

Arrays = tuple[np.ndarray, ...]
SIZES = (3, 4, 2)


def _linear_inputs(rng: np.random.Generator) -> Arrays:
    return rng.normal(size=(2, 4, 3)), rng.normal(size=(5, 3)), rng.normal(size=5)


def _linear_backward_inputs(rng: np.random.Generator) -> Arrays:
    return rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 4, 3)), rng.normal(size=(5, 3))


def _linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray) -> Arrays:
    dw = np.tensordot(dy, x, axes=([0, 1], [0, 1]))  # sum over both batch axes
    return dy @ w, dw, dy.reshape(-1, dy.shape[-1]).sum(axis=0)


def _activation_inputs(fn: Any) -> Any:
    def make(rng: np.random.Generator) -> Arrays:
        z = rng.normal(scale=2.0, size=(4, 6))
        return rng.normal(size=(4, 6)), fn(z)

    return make


def _pair_inputs(rng: np.random.Generator) -> Arrays:
    return rng.normal(size=(4, 3)), rng.normal(size=(4, 3))


# -- the MLP -------------------------------------------------------------------------------


def _mlp_inputs(rng: np.random.Generator) -> Arrays:
    x = rng.normal(size=(5, SIZES[0]))
    layers = [
        (rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(size=o) * 0.1)
        for i, o in itertools.pairwise(SIZES)
    ]
    return (x, *(a for layer in layers for a in layer))


def _mlp_backward_inputs(rng: np.random.Generator) -> Arrays:
    return (*_mlp_inputs(rng), rng.normal(size=(5, SIZES[-1])))


def _pairs(flat: Any) -> tuple[tuple[Any, Any], ...]:
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def _np_forward(x: np.ndarray, *flat: np.ndarray) -> list[np.ndarray]:
    """Activations a0 = x, a1, a2 of a tanh network with an identity output."""
    acts = [x]
    params = _pairs(flat)
    for i, (w, b) in enumerate(params):
        z = acts[-1] @ w.T + b
        acts.append(np.tanh(z) if i < len(params) - 1 else z)
    return acts


def _np_backward(x: np.ndarray, *flat_and_dy: np.ndarray) -> Arrays:
    *flat, dy = flat_and_dy
    acts = _np_forward(x, *flat)
    params = _pairs(flat)
    grads: list[np.ndarray] = []
    delta = dy
    for i in range(len(params) - 1, -1, -1):
        if i < len(params) - 1:
            delta = delta * (1 - acts[i + 1] ** 2)
        grads[:0] = [delta.T @ acts[i], delta.sum(axis=0)]
        delta = delta @ params[i][0]
    return tuple(grads)


def _mlp_forward(x: Any, *flat: Any) -> Any:
    out, _ = backprop.mlp_forward(_pairs(flat), x)
    return out


def _mlp_backward(x: Any, *flat_and_dy: Any) -> Any:
    *flat, dy = flat_and_dy
    params = _pairs(flat)
    _, cache = backprop.mlp_forward(params, x)
    grads = backprop.mlp_backward(params, cache, dy)
    return tuple(g for layer in grads for g in layer)


def _mlp_train_inputs(rng: np.random.Generator) -> Arrays:
    x, *flat = _mlp_inputs(rng)
    return (x, rng.normal(size=(5, SIZES[-1])), *flat)


def _mlp_train_step(x: Any, y: Any, *flat: Any, lr: float = 0.1) -> Any:
    params, loss = backprop.mlp_train_step(_pairs(flat), x, y, lr=lr)
    return (*(a for layer in params for a in layer), loss)


def _np_train_step(x: np.ndarray, y: np.ndarray, *flat: np.ndarray, lr: float = 0.1) -> Arrays:
    out = _np_forward(x, *flat)[-1]
    grads = _np_backward(x, *flat, 2 * (out - y) / out.size)
    return (*(p - lr * g for p, g in zip(flat, grads, strict=True)), np.mean((out - y) ** 2))


def _template(rng: np.random.Generator) -> Arrays:
    return (np.zeros(1),)


def _mlp_init_like(template: Any, *, seed: int = 7) -> Any:
    """mlp_init on the template's library, device and dtype, flattened."""
    xp = namespace(template=template)
    params = backprop.mlp_init(
        SIZES, seed=seed, xp=xp, device=device(template), dtype=template.dtype
    )
    return tuple(a for layer in params for a in layer)


def _np_mlp_init(template: np.ndarray, *, seed: int = 7) -> Arrays:
    moduli, multipliers = (30269, 30307, 30323), (171, 172, 170)
    states = list(backprop._wichmann_hill_states(seed))
    flat = []
    for i, o in itertools.pairwise(SIZES):
        for shape in ((o, i), (o,)):
            u = np.empty(int(np.prod(shape)))
            for k in range(u.size):  # AS 183, one number at a time
                states = [s * a % m for s, a, m in zip(states, multipliers, moduli, strict=True)]
                u[k] = sum(s / m for s, m in zip(states, moduli, strict=True)) % 1.0
            flat.append((2 * u.reshape(shape) - 1) / np.sqrt(i))
    return tuple(flat)


EQUATIONS = [
    Equation(
        "linear_forward",
        backprop.linear_forward,
        _linear_inputs,
        lambda x, w, b: x @ w.T + b,
    ),
    Equation(
        "linear_backward",
        backprop.linear_backward,
        _linear_backward_inputs,
        _linear_backward,
    ),
    Equation(
        "sigmoid_backward",
        backprop.sigmoid_backward,
        _activation_inputs(lambda z: 1 / (1 + np.exp(-z))),
        lambda dy, y: dy * y * (1 - y),
    ),
    Equation(
        "tanh_backward",
        backprop.tanh_backward,
        _activation_inputs(np.tanh),
        lambda dy, y: dy * (1 - y**2),
    ),
    Equation(
        "relu_backward",
        backprop.relu_backward,
        _activation_inputs(lambda z: np.maximum(z, 0.0)),
        lambda dy, y: np.where(y > 0, dy, 0.0),
    ),
    Equation(
        "mse_backward",
        backprop.mse_backward,
        _pair_inputs,
        lambda p, t: 2 * (p - t) / p.size,
    ),
    Equation(
        "mse_backward(sum)",
        backprop.mse_backward,
        _pair_inputs,
        lambda p, t, reduction: 2 * (p - t),
        options={"reduction": "sum"},
    ),
    Equation("mlp_init", _mlp_init_like, _template, _np_mlp_init, grad=False),
    Equation("mlp_forward", _mlp_forward, _mlp_inputs, lambda *a: _np_forward(*a)[-1]),
    Equation("mlp_backward", _mlp_backward, _mlp_backward_inputs, _np_backward),
    Equation("mlp_train_step", _mlp_train_step, _mlp_train_inputs, _np_train_step),
]
