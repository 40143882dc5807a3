"""Registry entries for ``information.py``: plain float64 NumPy references."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import information
from .._registry import Equation


def _plogq(p: np.ndarray, q: np.ndarray) -> Any:
    """P log q with 0 log q = 0 and p log 0 = -inf, written out with masks."""
    p, q = np.broadcast_arrays(p, q)
    out = np.zeros(p.shape)
    live = p > 0
    with np.errstate(divide="ignore"):
        out[live] = p[live] * np.log(q[live])
    return out


def _entropy(p: np.ndarray, axis: int = -1, base: float | None = None) -> Any:
    h = -_plogq(p, p).sum(axis=axis)
    return h / np.log(base) if base else h


def _kl(p: np.ndarray, q: np.ndarray, axis: int = -1) -> Any:
    return (_plogq(p, p) - _plogq(p, q)).sum(axis=axis)


def _cross_entropy(p: np.ndarray, q: np.ndarray, axis: int = -1) -> Any:
    return -_plogq(p, q).sum(axis=axis)


def _distribution(rng: np.random.Generator) -> tuple[np.ndarray]:
    p = rng.dirichlet(np.ones(6), size=(2, 3))  # (2, 3, 6)
    p[0, 0] = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]  # one-hot
    p[1, 2, :2] = 0.0
    return (p / p.sum(axis=-1, keepdims=True),)


def _two_distributions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    (p,) = _distribution(rng)
    (q,) = _distribution(rng)
    # Zeros of q under zeros of p contribute 0 (q[1, 2, :2] too). q = 0 < p, +inf, is
    # tested in backends_tests/test_information.py: run_check's comparison of
    # inf with inf emits a RuntimeWarning, an error under pytest.
    q[0, 0] = [0.0, 0.2, 0.8, 0.0, 0.0, 0.0]  # under the one-hot p: q = 0 where p = 0
    return p, q


def _mutual_information(joint: np.ndarray) -> Any:
    joint = joint / joint.sum(axis=(-2, -1), keepdims=True)
    p_x = joint.sum(axis=-1, keepdims=True)
    p_y = joint.sum(axis=-2, keepdims=True)
    # log p(x) + log p(y), not log(p(x) p(y)): the product of two tiny marginals
    # underflows to 0 where the mutual information itself is finite.
    terms = _plogq(joint, joint) - _plogq(joint, p_x) - _plogq(joint, p_y)
    return np.maximum(terms.sum(axis=(-2, -1)), 0.0)


def _joint_tables(rng: np.random.Generator) -> tuple[np.ndarray]:
    joint = rng.dirichlet(np.ones(12), size=3).reshape(3, 3, 4)
    joint[1, :, 2] = 0.0  # an impossible value of Y
    joint[2] = np.outer([0.2, 0.3, 0.5], [0.1, 0.2, 0.3, 0.4])  # independent: MI = 0
    return (joint,)


def _split_counts(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    children = rng.integers(0, 8, size=(2, 3, 4)).astype(np.float64)  # (B, K, C)
    children[1, 2] = 0.0  # an empty child
    return children.sum(axis=-2), children


def _information_gain(parent: np.ndarray, children: np.ndarray) -> Any:
    n = parent.sum(axis=-1)
    n_k = children.sum(axis=-1)
    h_parent = _entropy(parent / n[..., None])
    with np.errstate(invalid="ignore"):
        h_children = _entropy(np.nan_to_num(children / n_k[..., None]))
    return h_parent - (n_k / n[..., None] * h_children).sum(axis=-1)


EQUATIONS = [
    Equation("entropy", information.entropy, _distribution, _entropy),
    Equation(
        "entropy(base=2, axis=1)",
        information.entropy,
        _distribution,
        _entropy,
        options={"base": 2, "axis": 1},
    ),
    Equation("kl_divergence", information.kl_divergence, _two_distributions, _kl),
    Equation("cross_entropy", information.cross_entropy, _two_distributions, _cross_entropy),
    Equation(
        "mutual_information", information.mutual_information, _joint_tables, _mutual_information
    ),
    Equation("information_gain", information.information_gain, _split_counts, _information_gain),
]
