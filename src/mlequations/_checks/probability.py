"""Registry entries for ``probability.py``: plain float64 NumPy references."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import probability
from .._registry import Equation


def _distributions(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    prior = rng.dirichlet(np.ones(5), size=4)  # (4, 5)
    prior[0, 2] = 0.0  # a ruled-out hypothesis
    likelihood = rng.uniform(size=(4, 5))
    likelihood[1, 0] = 0.0  # evidence impossible under one hypothesis
    return prior, likelihood


def _joint(rng: np.random.Generator) -> tuple[np.ndarray]:
    joint = rng.dirichlet(np.ones(12)).reshape(3, 4)
    joint[:, 1] = 0.0  # an impossible value of B: 0 / 0
    return (joint,)


def _joint_and_marginal(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    (joint,) = _joint(rng)
    return joint, joint.sum(axis=0)


def _bayes(prior: np.ndarray, likelihood: np.ndarray, axis: int = -1) -> Any:
    unnormalised = prior * likelihood
    return unnormalised / unnormalised.sum(axis=axis, keepdims=True)


def _conditional(joint: np.ndarray, marginal: np.ndarray) -> Any:
    out = np.zeros(np.broadcast_shapes(joint.shape, marginal.shape))
    np.divide(joint, marginal, out=out, where=np.broadcast_to(marginal > 0, out.shape))
    return out


EQUATIONS = [
    Equation("bayes_rule", probability.bayes_rule, _distributions, _bayes),
    Equation(
        "bayes_rule(axis=0)",
        probability.bayes_rule,
        _distributions,
        _bayes,
        options={"axis": 0},
    ),
    Equation(
        "joint_probability",
        probability.joint_probability,
        _joint_and_marginal,
        lambda conditional, marginal: conditional * marginal,
    ),
    Equation(
        "conditional_probability",
        probability.conditional_probability,
        _joint_and_marginal,
        _conditional,
    ),
    Equation(
        "marginal_probability",
        probability.marginal_probability,
        _joint,
        lambda joint, axis: joint.sum(axis=axis),
        options={"axis": 0},
    ),
]
