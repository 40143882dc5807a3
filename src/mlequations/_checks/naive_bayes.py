"""Registry entries for ``naive_bayes.py``: a plain float64 NumPy Gaussian naive Bayes.

The model is fitted and queried inside one call, with the classes given, so the
whole of ``fit`` and ``predict*`` runs under ``jax.jit``, lazily on Dask and
under array-api-strict's strictest flags. (Class discovery, which is eager by
design, is tested in ``backends_tests/test_naive_bayes.py``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._registry import Equation
from ..naive_bayes import GaussianNaiveBayes

Inputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _blobs(rng: np.random.Generator) -> Inputs:
    classes = np.asarray([2, 5, 9])
    centres = rng.normal(scale=1.5, size=(3, 4))
    y = np.repeat(classes, [7, 5, 8])
    X = centres[np.searchsorted(classes, y)] + rng.normal(size=(20, 4))
    X_query = rng.normal(scale=2.0, size=(6, 4))
    return X, y, classes, X_query


def _reference_fit(X: np.ndarray, y: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
    theta = np.stack([X[y == c].mean(axis=0) for c in classes])
    epsilon = 1e-9 * X.var(axis=0).max()
    var = np.stack([X[y == c].var(axis=0) for c in classes]) + epsilon
    prior = np.asarray([(y == c).mean() for c in classes])
    return {"theta": theta, "var": var, "prior": prior}


def _reference_jll(X: np.ndarray, y: np.ndarray, classes: np.ndarray, Xq: np.ndarray) -> Any:
    m = _reference_fit(X, y, classes)
    jll = np.log(m["prior"]) - 0.5 * np.log(2 * np.pi * m["var"]).sum(axis=1)
    return jll - 0.5 * (((Xq[:, None, :] - m["theta"]) ** 2) / m["var"]).sum(axis=2)


def _reference_log_proba(*inputs: np.ndarray) -> Any:
    jll = _reference_jll(*inputs)
    top = jll.max(axis=1, keepdims=True)
    return jll - (top + np.log(np.exp(jll - top).sum(axis=1, keepdims=True)))


def _fitted(X: Any, y: Any, classes: Any) -> GaussianNaiveBayes:
    return GaussianNaiveBayes().fit(X, y, classes=classes)


def fit(X: Any, y: Any, classes: Any, Xq: Any) -> tuple[Any, Any, Any]:
    """``(theta_, var_, class_prior_)`` after ``fit``."""
    model = _fitted(X, y, classes)
    return model.theta_, model.var_, model.class_prior_


def predict_log_proba(X: Any, y: Any, classes: Any, Xq: Any) -> Any:
    """``fit`` then ``predict_log_proba``."""
    return _fitted(X, y, classes).predict_log_proba(Xq)


def predict_proba(X: Any, y: Any, classes: Any, Xq: Any) -> Any:
    """``fit`` then ``predict_proba``."""
    return _fitted(X, y, classes).predict_proba(Xq)


def predict(X: Any, y: Any, classes: Any, Xq: Any) -> Any:
    """``fit`` then ``predict``."""
    return _fitted(X, y, classes).predict(Xq)


def score(X: Any, y: Any, classes: Any, Xq: Any) -> Any:
    """``fit`` then ``score`` on the training data."""
    return _fitted(X, y, classes).score(X, y)


def _reference_predict(*inputs: np.ndarray) -> Any:
    return inputs[2][_reference_jll(*inputs).argmax(axis=1)]


def _reference_fit_tuple(X: np.ndarray, y: np.ndarray, classes: np.ndarray, Xq: np.ndarray) -> Any:
    m = _reference_fit(X, y, classes)
    return m["theta"], m["var"], m["prior"]


def _reference_score(X: np.ndarray, y: np.ndarray, classes: np.ndarray, Xq: np.ndarray) -> Any:
    return np.mean(_reference_predict(X, y, classes, X) == y)


EQUATIONS = [
    Equation("GaussianNaiveBayes(fit)", fit, _blobs, _reference_fit_tuple),
    Equation(
        "GaussianNaiveBayes(predict_log_proba)",
        predict_log_proba,
        _blobs,
        _reference_log_proba,
        rtol32=1e-3,
    ),
    Equation(
        "GaussianNaiveBayes(predict_proba)",
        predict_proba,
        _blobs,
        lambda *inputs: np.exp(_reference_log_proba(*inputs)),
        rtol32=1e-3,
    ),
    Equation("GaussianNaiveBayes(predict)", predict, _blobs, _reference_predict, grad=False),
    Equation("GaussianNaiveBayes(score)", score, _blobs, _reference_score, grad=False),
]
