r"""Registry entries for ``linalg.py``: plain float64 NumPy references.

Eigenvectors and singular vectors are defined only up to sign (up to a complex
phase for :func:`~mlequations.eig`), and libraries choose differently, so their
entries compare sign-free quantities: the eigenvalues, the reconstruction
$Q \Lambda Q^\top$ (or $U \Sigma V^\top$) and the Gram matrices $Q^\top Q$. The
results are named tuples; the entries register thin wrappers returning plain
tuples, which the registry reads back element by element.

Dask has no ``linalg.eigh`` and no general ``eig``, and supports only the
reduced SVD: those entries are ``lazy=False`` and show "n/a" there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import linalg
from .._registry import Equation

Arrays = tuple[np.ndarray, ...]


def _linear_inputs(rng: np.random.Generator) -> Arrays:
    return rng.normal(size=(2, 3, 5)), rng.normal(size=(4, 5)), rng.normal(size=4)


def _symmetric(rng: np.random.Generator) -> Arrays:
    a = rng.normal(size=(5, 5))
    return (a + a.T,)


def _general(rng: np.random.Generator) -> Arrays:
    # Real with complex-conjugate eigenvalue pairs (almost surely), all distinct.
    return (rng.normal(size=(4, 4)),)


def _tall(rng: np.random.Generator) -> Arrays:
    return (rng.normal(size=(6, 4)),)


def _pca_inputs(rng: np.random.Generator) -> Arrays:
    # Correlated features with clearly separated variances.
    return (rng.normal(size=(20, 4)) @ np.diag([3.0, 2.0, 1.0, 0.5]) @ _rotation(rng, 4),)


def _rotation(rng: np.random.Generator, n: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q


def _dominant_inputs(rng: np.random.Generator) -> Arrays:
    # Symmetric, dominant eigenvalue 4 with a gap ratio 1/2: 100 steps reach 2^-100.
    q = _rotation(rng, 4)
    return ((q * np.array([4.0, -2.0, 1.0, 0.5])) @ q.T,)


def _flip(v: np.ndarray) -> np.ndarray:
    """Rows of `v` signed so that their entry of largest magnitude is positive (svd_flip)."""
    rows = np.arange(v.shape[0])
    return np.asarray(v * np.sign(v[rows, np.argmax(np.abs(v), axis=1)])[:, None])


def _pca(x: np.ndarray, n_components: int) -> Arrays:
    # Centred exactly for constant features: shifted by the first sample, then averaged.
    shifted = x - x[0]
    mean = x[0] + shifted.mean(axis=0)
    _, s, vt = np.linalg.svd(shifted - shifted.mean(axis=0), full_matrices=False)
    variance = s**2 / (x.shape[0] - 1)
    # The ratio of squared singular values, from s / max(s) so that s**2 cannot overflow;
    # constant data has no variance to explain: ratio 0 (documented; sklearn gives 0/0).
    r2 = (s / s.max()) ** 2 if s.max() > 0 else np.zeros_like(s)
    ratio = r2 / r2.sum() if s.max() > 0 else r2
    k = n_components
    return _flip(vt)[:k], variance[:k], ratio[:k], mean


def _power(a: np.ndarray, num_iters: int = 100) -> Arrays:
    del num_iters  # the exact eigenpair
    if not np.any(a):
        # Every vector is an eigenvector of the zero matrix: the documented choice is
        # the normalised start vector (1, 1/2, ..., 1/n).
        v = 1 / np.arange(1, a.shape[-1] + 1)
        return np.asarray(0.0), v / np.linalg.norm(v)
    w, q = np.linalg.eigh(a)
    i = int(np.argmax(np.abs(w)))
    return np.asarray(w[i]), _flip(q[:, i][None, :])[0]


def _eigh_compare(out: Any) -> Arrays:
    w, q = out
    return w, (q * w) @ q.T, q.T @ q


def _svd_compare(out: Any) -> Arrays:
    u, s, vh = out
    k = s.shape[-1]  # full_matrices=True pads U or Vh with vectors that multiply nothing
    return s, (u[:, :k] * s) @ vh[:k], u.T @ u, vh @ vh.T


def _eig_compare(out: Any) -> Arrays:
    """Eigenpairs in a canonical form: sorted by eigenvalue, each vector's phase fixed."""
    w, v = (np.asarray(t, dtype=np.complex128) for t in out)
    order = np.lexsort((w.imag, np.round(w.real, 4)))
    w, v = w[order], v[:, order]
    v = v / np.linalg.norm(v, axis=0)
    largest = v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])]
    v = v * (np.abs(largest) / largest)  # largest entry real and positive
    return w.real, w.imag, v.real, v.imag


EQUATIONS = [
    Equation(
        "linear",
        linalg.linear,
        _linear_inputs,
        lambda x, w, b: x @ w.T + b,
    ),
    Equation(
        "linear(bias=None)",
        linalg.linear,
        lambda rng: _linear_inputs(rng)[:2],
        lambda x, w: x @ w.T,
    ),
    Equation(
        "eigh",
        lambda a: tuple(linalg.eigh(a)),
        _symmetric,
        lambda a: tuple(np.linalg.eigh(a)),
        compare=_eigh_compare,
        lazy=False,
        rtol32=1e-3,
    ),
    Equation(
        "eig",
        lambda a: tuple(linalg.eig(a)),
        _general,
        lambda a: tuple(np.linalg.eig(a)),
        compare=_eig_compare,
        lazy=False,
        grad=False,
        rtol32=1e-3,
    ),
    Equation(
        "svd",
        lambda a: tuple(linalg.svd(a)),
        _tall,
        lambda a: tuple(np.linalg.svd(a, full_matrices=False)),
        compare=_svd_compare,
        rtol32=1e-3,
    ),
    Equation(
        "svd(full_matrices=True)",
        lambda a, full_matrices: tuple(linalg.svd(a, full_matrices=full_matrices)),
        _tall,
        lambda a, full_matrices: tuple(np.linalg.svd(a, full_matrices=full_matrices)),
        options={"full_matrices": True},
        compare=_svd_compare,
        lazy=False,  # Dask has only the reduced SVD
        rtol32=1e-3,
    ),
    Equation(
        "pca",
        lambda x, n_components: tuple(linalg.pca(x, n_components=n_components)),
        _pca_inputs,
        _pca,
        options={"n_components": 2},
        rtol32=1e-3,
    ),
    Equation(
        "power_iteration",
        lambda a, **options: tuple(linalg.power_iteration(a, **options)),
        _dominant_inputs,
        _power,
        # 48 steps at gap ratio 1/2 reach 2^-48, below float64's tolerance, as 100 do;
        # each step is a node of Dask's graph, so the check builds half as many.
        options={"num_iters": 48},
        rtol32=1e-3,
    ),
]
