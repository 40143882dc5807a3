"""Registry entries for ``losses.py``: plain float64 NumPy references.

Each reference is written from the loss's definition in torch's documentation
(gathering the target class with ``take_along_axis`` where the portable code
compares with ``arange``), not from the portable code. Array-valued options
(`weight`, `pos_weight`) are inputs, so the wrappers below take them
positionally.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import losses
from .._registry import Equation

Arrays = tuple[np.ndarray, ...]
C = 5  # classes
IGNORED = 2  # an in-range class index, so that ignoring it must really mask it


def _pair(rng: np.random.Generator) -> Arrays:
    return rng.normal(size=(4, 6)), rng.normal(size=(4, 6))


def _probabilities(rng: np.random.Generator) -> Arrays:
    p = rng.uniform(0.02, 0.98, size=(4, 6))
    return p, rng.uniform(size=(4, 6)), rng.uniform(0.5, 2.0, size=(6,))


def _logit_inputs(rng: np.random.Generator) -> Arrays:
    x = rng.normal(scale=4.0, size=(4, 6))
    return x, rng.uniform(size=(4, 6)), rng.uniform(0.5, 2.0, size=(4, 1)), rng.uniform(0.5, 3, 6)


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "mean":
        return np.asarray(loss.mean())
    if reduction == "sum":
        return np.asarray(loss.sum())
    return loss


def _bce(p: np.ndarray, y: np.ndarray, w: np.ndarray, reduction: str = "mean") -> np.ndarray:
    log_p = np.maximum(np.log(p), -100.0)
    log_q = np.maximum(np.log(1.0 - p), -100.0)
    return _reduce(-w * (y * log_p + (1.0 - y) * log_q), reduction)


def _bce_logits(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, q: np.ndarray, reduction: str = "mean"
) -> np.ndarray:
    # -w [q y log σ(x) + (1 - y) log(1 - σ(x))], with log σ(x) = -log(1 + e^{-x}).
    log_sig = -np.logaddexp(0.0, -x)
    log_one_minus = -np.logaddexp(0.0, x)
    return _reduce(-w * (q * y * log_sig + (1.0 - y) * log_one_minus), reduction)


def _index_inputs(rng: np.random.Generator) -> Arrays:
    logits = rng.normal(scale=2.0, size=(6, C))
    target = rng.integers(0, C, size=6)
    target[1] = IGNORED  # at least one ignored sample
    return logits, target, rng.uniform(0.5, 2.0, size=C)


def _soft_inputs(rng: np.random.Generator) -> Arrays:
    logits = rng.normal(scale=2.0, size=(6, C))
    target = rng.dirichlet(np.ones(C), size=6)
    return logits, target, rng.uniform(0.5, 2.0, size=C)


def _spatial_inputs(rng: np.random.Generator) -> Arrays:
    return rng.normal(size=(3, C, 4)), rng.integers(0, C, size=(3, 4))


def _log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(axis=axis, keepdims=True)))


def _ce_index(
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    axis: int = -1,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
) -> np.ndarray:
    log_p = np.moveaxis(_log_softmax(logits, axis), axis, -1)  # (..., C)
    n_classes = log_p.shape[-1]
    w = np.ones(n_classes) if weight is None else weight
    kept = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    safe = np.where(kept, target, 0)
    picked = np.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
    w_t = np.where(kept, w[safe], 0.0)
    nll = -w_t * picked
    smooth = np.where(kept, -(log_p * w).sum(axis=-1), 0.0)
    eps = label_smoothing
    loss = (1 - eps) * nll + eps / n_classes * smooth
    if reduction == "mean":
        return np.asarray(loss.sum() / w_t.sum())
    return _reduce(loss, reduction)


def _ce_soft(
    logits: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    *,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.ndarray:
    n_classes = logits.shape[-1]
    y = target * (1 - label_smoothing) + label_smoothing / n_classes
    return _reduce(-(weight * y * _log_softmax(logits)).sum(axis=-1), reduction)


def _ce(**fixed: Any) -> Any:
    """``cross_entropy_loss`` with `weight` passed positionally (the registry's inputs)."""

    def call(logits: Any, target: Any, weight: Any = None, **options: Any) -> Any:
        return losses.cross_entropy_loss(logits, target, weight=weight, **fixed, **options)

    return call


EQUATIONS = [
    Equation("mse", losses.mse, _pair, lambda x, y: ((x - y) ** 2).mean()),
    Equation(
        "mse(reduction='none')",
        losses.mse,
        _pair,
        lambda x, y, reduction: (x - y) ** 2,
        options={"reduction": "none"},
    ),
    Equation(
        "binary_cross_entropy(weight)",
        lambda p, y, w, reduction: losses.binary_cross_entropy(p, y, weight=w, reduction=reduction),
        _probabilities,
        _bce,
        options={"reduction": "sum"},
    ),
    Equation(
        "binary_cross_entropy_with_logits(weight, pos_weight)",
        lambda x, y, w, q: losses.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q),
        _logit_inputs,
        _bce_logits,
    ),
    Equation(
        "cross_entropy_loss",
        losses.cross_entropy_loss,
        lambda rng: _index_inputs(rng)[:2],
        _ce_index,
    ),
    Equation(
        "cross_entropy_loss(weight, label_smoothing, ignore_index)",
        _ce(label_smoothing=0.1, ignore_index=IGNORED),
        _index_inputs,
        lambda z, t, w: _ce_index(z, t, w, label_smoothing=0.1, ignore_index=IGNORED),
    ),
    Equation(
        "cross_entropy_loss(probabilities, weight, label_smoothing)",
        _ce(label_smoothing=0.2),
        _soft_inputs,
        lambda z, y, w: _ce_soft(z, y, w, label_smoothing=0.2),
    ),
    Equation(
        "cross_entropy_loss(axis=1, reduction='none')",
        losses.cross_entropy_loss,
        _spatial_inputs,
        lambda z, t, axis, reduction: _ce_index(z, t, axis=axis, reduction=reduction),
        options={"axis": 1, "reduction": "none"},
    ),
]
