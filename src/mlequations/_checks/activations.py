"""Registry entries for ``activations.py``: plain float64 NumPy references."""

from __future__ import annotations

import numpy as np

from .. import activations
from .._registry import Equation


def _logits(rng: np.random.Generator) -> tuple[np.ndarray]:
    # (4, 6), the shape of the losses and backprop checks: eager JAX compiles once for all.
    return (rng.normal(scale=3.0, size=(4, 6)),)


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    out: np.ndarray = e / e.sum(axis=axis, keepdims=True)
    return out


EQUATIONS = [
    Equation("softmax", activations.softmax, _logits, _softmax),
    Equation("softmax(axis=0)", activations.softmax, _logits, _softmax, options={"axis": 0}),
    Equation("log_softmax", activations.log_softmax, _logits, lambda x: np.log(_softmax(x))),
    Equation(
        "logsumexp",
        activations.logsumexp,
        _logits,
        lambda x, axis=None: np.log(np.exp(x).sum(axis=axis)),
        options={"axis": -1},
    ),
    Equation("sigmoid", activations.sigmoid, _logits, lambda x: 1.0 / (1.0 + np.exp(-x))),
]
