"""Shape fuzzing of linear algebra, diffusion and Bayesian optimisation on every backend.

The same contract as ``test_fuzz.py`` (read its module docstring): hypothesis draws
shapes with size-0 and size-1 axes (and batch axes where the function takes them), a
dtype the backend has (float16 and bfloat16 included, int64 where integers are
promoted) and values from the pools of extremes (huge, tiny, denormal, exact zeros,
±inf and NaN where the function propagates them); each example runs through
``backend.call`` (traced under ``jax.jit``, lazy on Dask, read-only inputs on
``numpy-readonly``) and is checked against a float64 NumPy reference computed from
the inputs as rounded to the dtype, with the tolerance of the output dtype, plus the
namespace, device, dtype and shape of every output.

Where the reference is ambiguous the documented invariants are compared instead:
eigenvectors and singular vectors are defined up to sign (and, for repeated values,
up to a rotation), so ``eigh`` is held to $A q = \\lambda q$, $Q^\\top Q = I$ and
ascending eigenvalues, ``svd`` to $U \\Sigma V^\\top = A$, orthonormal factors and
descending $S \\ge 0$, and ``pca`` to orthonormal, sign-fixed components whose
variances are the explained variances, with ratios in $[0, 1]$ summing to at most 1.
Singular values and symmetric eigenvalues are well conditioned ($|\\delta\\sigma| \\le
\\lVert\\delta A\\rVert_2$), so they are compared with the reference directly.

Size-0 axes: each function returns the empty (or neutral) result or raises a
``ValueError`` naming the argument, as its docstring says; both are pinned here.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

import mlequations as mle
from mlequations._checks import bayesopt as bayesopt_checks
from mlequations._checks import diffusion as diffusion_checks
from mlequations._checks import linalg as linalg_checks
from mlequations._registry import tolerance

from ._assert import assert_close
from ._fuzz import (
    OVERFLOW_IS_NOT_A_FINDING,
    SPECIAL,
    TINY,
    arrays,
    check_meta,
    dtype_names,
    expect,
    finite,
    fuzz,
    nonnegative,
    out_dtype_name,
    reals,
    reference,
    rounded,
    run,
    shapes,
    to_backend,
    values_of,
)
from ._libs import jax_or_skip, torch_or_skip

pytestmark = OVERFLOW_IS_NOT_A_FINDING


def _tol(backend, dtype: str) -> tuple[float, float]:
    return tolerance(out_dtype_name(backend, dtype))


def _largest(*arrays_: np.ndarray) -> float:
    """The largest finite magnitude among the arrays (0 for empty ones)."""
    return max(
        [float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)) for a in map(np.asarray, arrays_)]
        + [0.0]
    )


def _moderate():
    """Finite floats of moderate size, with exact zeros and the tiny and denormal pool."""
    return st.one_of(st.floats(-20.0, 20.0), st.sampled_from(SPECIAL + TINY))


def _assert_sign_rule(v: np.ndarray, atol: float) -> None:
    """The entry of largest magnitude along the last axis is positive (up to a near-tie)."""
    if v.size:
        assert (v.max(axis=-1, initial=-np.inf) >= -v.min(axis=-1, initial=np.inf) - atol).all()


def _dask_lacks(backend, fn, *args: Any) -> bool:
    """On Dask, a function with no Dask solver raises NotImplementedError naming Dask."""
    if backend.library != "dask":
        return False
    with pytest.raises(NotImplementedError, match="dask"):
        backend.call(fn, *args, lazy=False)
    return True


# == linear algebra ========================================================================


def test_linear(backend):
    """Any batch of rows, D_in and D_out of size 0 included (an empty sum is 0, so y = b)."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        batch = data.draw(shapes(min_dims=0, max_dims=2, max_side=3), label="batch")
        d_in, d_out = data.draw(st.integers(0, 4), "D_in"), data.draw(st.integers(0, 4), "D_out")
        x = data.draw(arrays((*batch, d_in), reals()), label="x")
        w = data.draw(arrays((d_out, d_in), _moderate()), label="weight")
        bias = data.draw(st.none() | arrays((d_out,), reals(nonfinite=False)), label="bias")
        (xb, xr), (wb, wr) = to_backend(backend, x, dtype), to_backend(backend, w, dtype)
        args, bias_r = [xb, wb], np.zeros(d_out)
        if bias is not None:
            bb, bias_r = to_backend(backend, bias, dtype)
            args.append(bb)
        out = run(backend, mle.linear, *args, quiet=not finite(xr, bias_r))
        if not finite(xr, bias_r):
            check_meta(out, backend, dtype, [(*batch, d_out)])
            return
        rtol, atol = _tol(backend, dtype)
        scale = _largest(xr) * _largest(wr) * max(d_in, 1) + _largest(bias_r)
        expected = reference(lambda: xr @ wr.T + bias_r)
        expect(out, expected, backend, dtype, atol=atol + 4 * rtol * scale)


@st.composite
def _symmetric(draw, *, batch: bool, max_n: int = 4, elements=None):
    n = draw(st.integers(0, max_n), label="n")
    lead = draw(shapes(min_dims=0, max_dims=1, max_side=2), label="batch") if batch else ()
    a = draw(arrays((*lead, n, n), elements or reals(nonfinite=False)), label="a")
    return (a + np.swapaxes(a, -1, -2)) / 2


def test_eigh(backend):
    """A q = λ q, Q orthonormal, λ ascending and equal to NumPy's; size-0 n and batch."""
    if _dask_lacks(backend, mle.eigh, backend.asarray(np.eye(2), "float32")):
        return

    @fuzz(backend, st.data(), scale=0.6)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        a = data.draw(_symmetric(batch=True))
        ab, ar = to_backend(backend, a, dtype)
        if not finite(ar):
            return  # 1e300 is inf in float32: a decomposition of inf is the library's own
        n, lead = a.shape[-1], a.shape[:-2]
        out = run(backend, mle.eigh, ab)
        check_meta(out, backend, dtype, [(*lead, n), (*lead, n, n)])
        w_ref = reference(np.linalg.eigh, ar)[0] if ar.size else np.zeros((*lead, n))
        rtol, atol = _tol(backend, dtype)
        if (
            not backend.values
            or not np.isfinite(rounded(w_ref, out_dtype_name(backend, dtype))).all()
        ):
            return  # eigenvalues beyond the dtype's range are inf: not a finding
        w, q = backend.to_numpy(out)
        tol = atol + 8 * rtol * _largest(ar) * max(n, 1)
        np.testing.assert_allclose(w, w_ref, rtol=0, atol=tol)
        assert (np.diff(w, axis=-1) >= -tol).all(), "eigenvalues not ascending"
        np.testing.assert_allclose(ar @ q, q * w[..., None, :], rtol=0, atol=tol)
        gram = np.swapaxes(q, -1, -2) @ q
        np.testing.assert_allclose(gram, np.broadcast_to(np.eye(n), gram.shape), atol=10 * rtol)


def test_eig(backend):
    """A v = λ v with unit columns; λ near NumPy's (a defective matrix's eigenvalues move
    by eps^(1/n)); trace = Σλ; complex64 for float32 and half precision, complex128 for
    float64 (int64 gives the default floating dtype's complex)."""
    if _dask_lacks(backend, mle.eig, backend.asarray(np.eye(2), "float32")):
        return

    @fuzz(backend, st.data(), scale=0.6)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        n = data.draw(st.integers(0, 3), label="n")
        lead = data.draw(shapes(min_dims=0, max_dims=1, max_side=2), label="batch")
        a = data.draw(arrays((*lead, n, n), _moderate()), label="a")
        ab, ar = to_backend(backend, a, dtype)
        out = run(backend, mle.eig, ab)
        work = "float64" if out_dtype_name(backend, dtype) == "float64" else "float32"
        complex_dtype = {"float64": "complex128", "float32": "complex64"}[work]
        for got, shape in zip(out, [(*lead, n), (*lead, n, n)], strict=True):
            assert_close(got, np.zeros(shape), _blind(backend), complex_dtype)
        if not backend.values:
            return
        w, v = (np.asarray(t, np.complex128) for t in backend.to_numpy(out))
        eps = float(np.finfo(work).eps)
        scale = max(_largest(ar), np.finfo(np.float64).tiny) * max(n, 1)
        np.testing.assert_allclose(ar @ v, v * w[..., None, :], rtol=0, atol=100 * eps * scale)
        if n:
            np.testing.assert_allclose(np.linalg.norm(v, axis=-2), 1.0, atol=100 * eps)
            np.testing.assert_allclose(
                w.sum(axis=-1), np.trace(ar, axis1=-2, axis2=-1), rtol=0, atol=100 * eps * scale
            )
            w_ref = np.linalg.eigvals(ar)
            gap = np.abs(w[..., :, None] - w_ref[..., None, :]).min(axis=-1)
            assert (gap <= 100 * eps ** (1 / n) * scale).all(), (w, w_ref)


def _blind(backend):
    import dataclasses

    return dataclasses.replace(backend, values=False)


def test_svd(backend):
    """U Σ Vᵀ = A, orthonormal U and V, S ≥ 0 descending and equal to NumPy's, for m or n
    of size 0 and size-0 batches; ``full_matrices=True`` pads to square factors (Dask has
    only the reduced form, and a stack of matrices is not 2-D to its SVD: neither drawn)."""
    dask = backend.library == "dask"

    @fuzz(backend, st.data(), scale=0.6)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        m, n = data.draw(st.integers(0, 4), label="m"), data.draw(st.integers(0, 4), label="n")
        lead = () if dask else data.draw(shapes(0, 1, max_side=2), label="batch")
        full = False if dask else data.draw(st.booleans(), label="full_matrices")
        a = data.draw(arrays((*lead, m, n), reals(nonfinite=False)), label="a")
        ab, ar = to_backend(backend, a, dtype)
        if not finite(ar):
            return  # 1e300 is inf in float32: a decomposition of inf is the library's own
        out = run(backend, mle.svd, ab, full_matrices=full)
        k = min(m, n)
        u_cols, vh_rows = (m, n) if full else (k, k)
        check_meta(out, backend, dtype, [(*lead, m, u_cols), (*lead, k), (*lead, vh_rows, n)])
        s_ref = reference(np.linalg.svd, ar, compute_uv=False) if ar.size else np.zeros((*lead, k))
        if (
            not backend.values
            or not np.isfinite(rounded(s_ref, out_dtype_name(backend, dtype))).all()
        ):
            return
        rtol, atol = _tol(backend, dtype)
        u, s, vh = backend.to_numpy(out)
        tol = atol + 8 * rtol * _largest(ar) * max(m, n, 1)
        np.testing.assert_allclose(s, s_ref, rtol=0, atol=tol)
        assert (s >= 0).all(), "a negative singular value"
        assert (np.diff(s, axis=-1) <= tol).all(), "singular values not descending"
        with np.errstate(over="ignore", invalid="ignore"):
            product = (u[..., :, :k] * s[..., None, :]) @ vh[..., :k, :]
        np.testing.assert_allclose(product, ar, rtol=0, atol=tol)
        for f, size in (
            (np.swapaxes(u, -1, -2) @ u, u_cols),
            (vh @ np.swapaxes(vh, -1, -2), vh_rows),
        ):
            np.testing.assert_allclose(f, np.broadcast_to(np.eye(size), f.shape), atol=10 * rtol)
        if dask:
            with pytest.raises(ValueError, match="full_matrices"):
                backend.call(mle.svd, ab, full_matrices=True, lazy=False)


def test_pca(backend):
    """scikit-learn's PCA: the mean, variances and ratios equal the reference; components
    orthonormal, sign-fixed, each with the variance it explains (compared with the
    reference directly where the singular values are well separated); ratios in [0, 1]
    summing to at most 1 — constant data included (ratio 0)."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        n_samples, d = data.draw(st.integers(2, 5), label="N"), data.draw(st.integers(1, 4), "D")
        k = data.draw(st.integers(1, min(n_samples, d)), label="n_components")
        x = data.draw(arrays((n_samples, d), reals(nonfinite=False)), label="x")
        if data.draw(st.booleans(), label="constant"):
            x = np.broadcast_to(x[:1], x.shape).copy()
        xb, xr = to_backend(backend, x, dtype)
        if not finite(xr):
            return  # 1e300 is inf in float32: the SVD of inf is the library's own (documented)
        out = run(backend, mle.pca, xb, n_components=k)
        check_meta(out, backend, dtype, [(k, d), (k,), (k,), (d,)])
        got = values_of(backend, out)
        if got is None:
            return
        rtol, atol = _tol(backend, dtype)
        components, variance, ratio, mean = got
        ref = reference(linalg_checks._pca, xr, k)
        out_dtype = out_dtype_name(backend, dtype)
        np.testing.assert_allclose(
            mean, rounded(ref[3], out_dtype), rtol=rtol, atol=atol + 2 * rtol * _largest(xr)
        )
        centred = xr - ref[3]
        s_max = _largest(centred) * max(n_samples, d)  # >= the largest singular value
        with np.errstate(over="ignore"):
            var_tol = atol + 8 * rtol * s_max * s_max / (n_samples - 1)
        np.testing.assert_allclose(variance, rounded(ref[1], out_dtype), rtol=rtol, atol=var_tol)
        np.testing.assert_allclose(ratio, ref[2], rtol=0, atol=atol + 16 * rtol)
        assert ((ratio >= 0) & (ratio <= 1)).all()
        assert ratio.sum() <= 1 + 16 * rtol
        np.testing.assert_allclose(components @ components.T, np.eye(k), atol=10 * rtol)
        _assert_sign_rule(components, 10 * rtol)
        with np.errstate(over="ignore", invalid="ignore"):
            along = np.sum((centred @ components.T) ** 2, axis=0) / (n_samples - 1)
        fine = np.isfinite(ref[1]) & np.isfinite(along)
        np.testing.assert_allclose(along[fine], ref[1][fine], rtol=0, atol=var_tol)
        s = np.linalg.svd(centred / max(_largest(centred), 1e-300), compute_uv=False)
        gaps = -np.diff(np.append(s, 0.0))[:k] if s.size else np.zeros(0)
        ties = np.sort(np.abs(ref[0]), axis=-1)
        margin = (ties[:, -1] - ties[:, -2]) if d > 1 else np.ones(k)
        if s.size and s[0] > 0 and (gaps > 0.1 * s[0]).all() and (margin > 0.1).all():
            np.testing.assert_allclose(components, ref[0], rtol=0, atol=100 * rtol)


@st.composite
def _dominant(draw, *, dtype: str):
    """Symmetric stacks Q diag(λ) Qᵀ with |λ_1| >= 2 |λ_2|, at a drawn magnitude (0 too)."""
    n = draw(st.integers(1, 4), label="n")
    lead = draw(shapes(min_dims=0, max_dims=1, max_side=2), label="batch")
    seed = draw(st.integers(0, 2**16), label="seed")
    if "16" in dtype:
        factors = [1.0, 1e3, 0.0]
    elif dtype == "float32":
        factors = [1.0, 1e-30, 1e-20, 1e-3, 1e3, 1e20, 0.0]
    else:
        factors = [1.0, 1e-300, 1e-170, 1e-20, 1e20, 1e300, 0.0]
    factor = draw(st.sampled_from(factors), label="scale")
    rng = np.random.default_rng(seed)
    count = math.prod(lead)
    mats = []
    for _ in range(count):
        top = rng.uniform(1.0, 4.0) * rng.choice([-1.0, 1.0])
        rest = rng.uniform(-0.5, 0.5, size=n - 1) * abs(top)
        q, _r = np.linalg.qr(rng.normal(size=(n, n)))
        mats.append((q * np.concatenate([[top], rest])) @ q.T)
    a = np.asarray(mats).reshape(*lead, n, n) if count else np.zeros((*lead, n, n))
    return a * factor


def _power_reference(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat_a = a.reshape(-1, *a.shape[-2:])
    pairs = [linalg_checks._power(m) for m in flat_a]
    values = np.asarray([p[0] for p in pairs]).reshape(a.shape[:-2])
    vectors = np.asarray([p[1] for p in pairs]).reshape(a.shape[:-1])
    return values, vectors


def test_power_iteration_dominant(backend):
    """A clear dominant eigenvalue at any magnitude (1e-300 to 1e300, and the zero matrix):
    the eigenpair of ``eigh``, the eigenvector unit and sign-fixed; batches of size 0."""

    @fuzz(backend, st.data(), scale=0.6)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        a = data.draw(_dominant(dtype=dtype))
        ab, ar = to_backend(backend, a, dtype)
        out = run(backend, mle.power_iteration, ab, num_iters=40)  # gap 1/2: 2^-40
        lead, n = a.shape[:-2], a.shape[-1]
        check_meta(out, backend, dtype, [lead, (*lead, n)])
        got = values_of(backend, out)
        if got is None:
            return
        value, vector = got
        values_ref, vectors_ref = _power_reference(ar)
        rtol, _atol = _tol(backend, dtype)
        rtol = max(rtol, 1e-3) if dtype == "float32" else rtol * 4
        np.testing.assert_allclose(value, rounded(values_ref, dtype), rtol=rtol, atol=0)
        np.testing.assert_allclose(np.linalg.norm(vector, axis=-1), 1.0, atol=10 * rtol)
        _assert_sign_rule(vector, 10 * rtol)
        # Signs of nearly tied largest entries may differ from the reference's: compare ±v.
        sign = np.where(np.sum(vector * vectors_ref, axis=-1, keepdims=True) < 0, -1.0, 1.0)
        np.testing.assert_allclose(vector * sign, vectors_ref, rtol=0, atol=10 * rtol)


def test_power_iteration_any_matrix(backend):
    """Any square matrix (not symmetric, no gap, ±inf/NaN): finite input gives a finite
    eigenvalue |λ| ≤ ‖A‖_F and a unit, sign-fixed eigenvector, never NaN; the zero matrix
    gives λ = 0 and the normalised start vector; n = 0 raises a ValueError naming `a`."""

    @fuzz(backend, st.data(), scale=0.6)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        n = data.draw(st.integers(0, 4), label="n")
        lead = data.draw(shapes(min_dims=0, max_dims=1, max_side=2), label="batch")
        zeros = data.draw(st.booleans(), label="mostly zeros")
        elements = st.sampled_from([0.0, 0.0, 0.0, 1.0, -1e-30]) if zeros else reals()
        a = data.draw(arrays((*lead, n, n), elements), label="a")
        ab, ar = to_backend(backend, a, dtype)
        if n == 0:
            with pytest.raises(ValueError, match="`a`"):
                backend.call(mle.power_iteration, ab)
            return
        out = run(backend, mle.power_iteration, ab, num_iters=20, quiet=not finite(ar))
        check_meta(out, backend, dtype, [lead, (*lead, n)])
        got = values_of(backend, out)
        if got is None or not finite(ar):
            return
        value, vector = got
        rtol, _ = _tol(backend, dtype)
        assert not np.isnan(value).any()
        assert not np.isnan(vector).any()
        np.testing.assert_allclose(np.linalg.norm(vector, axis=-1), 1.0, atol=10 * rtol)
        _assert_sign_rule(vector, 10 * rtol)
        big = np.max(np.abs(ar), axis=(-2, -1), initial=0.0)
        safe = np.where(big > 0, big, 1.0)
        frobenius = big * np.linalg.norm(ar / safe[..., None, None], axis=(-2, -1))
        assert (np.abs(value) <= frobenius * (1 + 10 * rtol)).all()
        start = 1 / np.arange(1.0, n + 1)
        zero = big == 0
        np.testing.assert_array_equal(value[zero], 0.0)
        np.testing.assert_allclose(
            vector[zero],
            np.broadcast_to(start / np.linalg.norm(start), vector[zero].shape),
            atol=rtol,
        )


# == diffusion ==============================================================================


def _betas(*, open_interval: bool = False):
    pool = [1e-4, 0.02, 0.5, 0.999, 1e-30, 1e-45]
    if not open_interval:
        pool += [0.0, 1.0]
    low = 1e-4 if open_interval else 0.0
    return st.one_of(st.floats(low, 0.999), st.sampled_from(pool))


def _np_cosine(num_steps: int, s: float, max_beta: float) -> np.ndarray:
    f = np.cos((np.arange(num_steps + 1) / num_steps + s) / (1 + s) * np.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], max_beta)


@pytest.mark.parametrize("name", ["linear_beta_schedule", "cosine_beta_schedule"])
def test_schedules(backend, name):
    """Made from nothing in the backend's namespace, on its device, in every dtype (the
    default one when none is given); T = 1 included; in [0, 1), equal to diffusers'."""
    fn = getattr(mle, name)

    @fuzz(backend, st.data(), scale=0.6)
    def _(data):
        dtype = data.draw(st.sampled_from([None, *dtype_names(backend)]), label="dtype")
        num_steps = data.draw(st.sampled_from([1, 2, 7, 50]), label="T")
        if name == "linear_beta_schedule":
            start = data.draw(st.sampled_from([0.0, 1e-4, 1e-30, 0.5]), label="beta_start")
            end = data.draw(st.sampled_from([0.02, 0.999, 0.0, 1e-4]), label="beta_end")
            options = {"beta_start": start, "beta_end": end}
            expected = np.linspace(start, end, num_steps)
        else:
            s_ = data.draw(st.sampled_from([0.008, 0.0, 1.0]), label="s")
            cap = data.draw(st.sampled_from([0.999, 0.5, 1e-3]), label="max_beta")
            options = {"s": s_, "max_beta": cap}
            expected = reference(_np_cosine, num_steps, s_, cap)
        kind = dtype or out_dtype_name(backend, "int64")  # None: the default floating dtype
        out = run(
            backend,
            functools.partial(fn, xp=backend.xp, device=backend.device),
            num_steps,
            dtype=None if dtype is None else backend.dtype(dtype),
            **options,
        )
        expect(out, expected, backend, kind, rtol=_tol(backend, kind)[0] * 4)
        got = values_of(backend, out)
        if got is not None:
            assert (got >= 0).all()
            assert (got < 1).all()


def test_alpha_bar(backend):
    """ᾱ = cumprod(1 - β) in [0, 1], non-increasing along T, 1 - β_0 first; T = 0 is empty."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        shape = data.draw(shapes(min_dims=1, max_dims=3), label="shape")
        betas = data.draw(arrays(shape, _betas()), label="betas")
        bb, br = to_backend(backend, betas, dtype)
        out = run(backend, mle.alpha_bar, bb)
        expected = reference(np.cumprod, 1 - br, axis=-1)
        _rtol, atol = _tol(backend, dtype)
        expect(out, expected, backend, dtype, atol=atol * 4 * max(1, shape[-1]))
        got = values_of(backend, out)
        if got is not None:
            assert ((got >= 0) & (got <= 1)).all()
            assert (np.diff(got, axis=-1) <= 0).all(), "alpha_bar increased"


@st.composite
def _alpha_bar_t(draw, batch: int, *, positive: bool, arrays_too: bool = True):
    """ᾱ_t as a Python float, a 0-d array or one value per sample (integer samples: a
    float, since integer ᾱ would be 0 or 1)."""
    values = _betas(open_interval=positive).map(lambda b: 1.0 - b if positive else b)
    if positive:
        values = st.one_of(values, st.sampled_from([1.0, 1e-30, 1e-300]))
    kinds = ["float", "0-d", "per sample"] if arrays_too else ["float"]
    kind = draw(st.sampled_from(kinds), label="alpha_bar_t kind")
    if kind == "float":
        return draw(values, label="alpha_bar_t")
    shape = () if kind == "0-d" else (batch,)
    return draw(arrays(shape, values), label="alpha_bar_t")


def _forward_case(backend, data, *, positive: bool):
    dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
    shape = data.draw(shapes(min_dims=1, max_dims=3), label="shape")
    x = data.draw(arrays(shape, reals()), label="x")
    eps = data.draw(arrays(shape, reals(nonfinite=False)), label="noise")
    ab = data.draw(_alpha_bar_t(shape[0], positive=positive, arrays_too=dtype != "int64"))
    (xb, xr), (eb, er) = to_backend(backend, x, dtype), to_backend(backend, eps, dtype)
    if isinstance(ab, float):
        abb, abr = ab, np.asarray(ab)
    else:
        abb, abr = to_backend(backend, ab, dtype)
    abr = abr.reshape(abr.shape + (1,) * (len(shape) - abr.ndim)) if abr.ndim else abr
    return dtype, (xb, eb, abb), (xr, er, abr)


def test_forward_diffusion(backend):
    """√ᾱ x0 + √(1-ᾱ) ε for every form of ᾱ (float, 0-d, per sample), B = 0 included."""

    @fuzz(backend, st.data())
    def _(data):
        dtype, args, (xr, er, abr) = _forward_case(backend, data, positive=False)
        out = run(backend, mle.forward_diffusion, *args, quiet=not finite(xr))
        if not finite(xr):
            check_meta(out, backend, dtype, [xr.shape])
            return
        rtol, atol = _tol(backend, dtype)
        expected = reference(lambda: np.sqrt(abr) * xr + np.sqrt(1 - abr) * er)
        expect(out, expected, backend, dtype, atol=atol + 4 * rtol * _largest(xr, er))


def test_predict_x0(backend):
    """(x_t - √(1-ᾱ) ε̂) / √ᾱ for ᾱ in (0, 1], tiny ᾱ included (it amplifies, as documented)."""

    @fuzz(backend, st.data())
    def _(data):
        dtype, args, (xr, er, abr) = _forward_case(backend, data, positive=True)
        out = run(backend, mle.predict_x0, *args, quiet=not finite(xr, abr) or not abr.all())
        if not finite(xr):
            check_meta(out, backend, dtype, [xr.shape])
            return
        rtol, atol = _tol(backend, dtype)
        expected = reference(lambda: (xr - np.sqrt(1 - abr) * er) / np.sqrt(abr))
        with np.errstate(divide="ignore", over="ignore"):
            scale = _largest(xr, er) / np.sqrt(np.min(abr, initial=1.0))
        expect(out, expected, backend, dtype, atol=atol + 8 * rtol * scale)


def test_ddpm_reverse_step(backend):
    """One ancestral step for every form of t (int, 0-d, per sample), B = 0 and T = 1
    included, equal to the registry's loop over samples; t = 0 adds no noise."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        shape = data.draw(shapes(min_dims=1, max_dims=3), label="shape")
        steps = data.draw(st.integers(1, 5), label="T")
        betas = data.draw(arrays((steps,), _betas(open_interval=True)), label="betas")
        x, eps, z = (data.draw(arrays(shape, reals(nonfinite=False)), label=n) for n in "xez")
        kind = data.draw(st.sampled_from(["int", "0-d", "per sample"]), label="t kind")
        t = data.draw(st.lists(st.integers(0, steps - 1), min_size=shape[0], max_size=shape[0]))
        t = np.asarray(t, np.int64)
        if kind == "int" or shape[0] == 0:
            t_arg = t_ref = int(t[0]) if t.size else 0
        else:
            t_ref = t[0] if kind == "0-d" else t
            t_arg = backend.asarray(np.asarray(t_ref))
        (xb, xr), (eb, er), (zb, zr) = (to_backend(backend, a, dtype) for a in (x, eps, z))
        bb, br = to_backend(backend, betas, dtype)
        out = run(
            backend, mle.ddpm_reverse_step, xb, eb, t_arg, bb, zb, quiet=not finite(xr, er, zr)
        )
        if not finite(xr, er, zr):  # 1e300 is inf in float32
            check_meta(out, backend, dtype, [shape])
            return
        per_sample = np.broadcast_to(np.asarray(t_ref), (shape[0],))
        expected = reference(diffusion_checks._step_reference, xr, er, per_sample, br, zr)
        ab = np.cumprod(1 - br)
        with np.errstate(divide="ignore", over="ignore"):
            gain = 1 / np.sqrt(ab.min()) + 1 / (1 - ab.max()) if ab.max() < 1 else np.inf
        rtol, atol = _tol(backend, dtype)
        scale = _largest(xr, er, zr) * min(gain, 1e300)
        expect(out, expected, backend, dtype, rtol=rtol * 10, atol=atol + 16 * rtol * scale)


# == Bayesian optimisation ==================================================================


def _np_kernel(name: str, x1, x2, ell, variance):
    """Plain float64 kernels, with the distance scaled so that it cannot overflow."""
    x1, x2 = (a.reshape(-1, 1) if a.ndim == 1 else a for a in (x1, x2))
    with np.errstate(over="ignore", invalid="ignore"):
        diff = (x1[:, None, :] - x2[None, :, :]) / ell  # inf: astronomically far apart
        big = np.max(np.abs(diff), axis=-1, initial=0.0)
        safe = np.where((big > 0) & np.isfinite(big), big, 1.0)
        r = np.where(
            np.isinf(big), np.inf, big * np.sqrt(np.sum((diff / safe[..., None]) ** 2, -1))
        )
    if name == "rbf_kernel":
        return variance * np.exp(-0.5 * r * r)
    s = np.sqrt(5.0) * r
    return np.where(s > 1e4, 0.0, variance * (1 + s + s * s / 3) * np.exp(-np.minimum(s, 1e4)))


@pytest.mark.parametrize("name", ["rbf_kernel", "matern52_kernel"])
def test_kernels(backend, name):
    """(N, M) for N, M, D of size 0 (D = 0: every distance 0, k = σ²), (N,) inputs, a
    length scale per feature; in [0, σ²], σ² on equal points, never NaN for finite input."""
    fn = getattr(mle, name)

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        n, m = data.draw(st.integers(0, 4), label="N"), data.draw(st.integers(0, 4), label="M")
        d = data.draw(st.integers(0, 3), label="D")
        flat_ = d == 1 and data.draw(st.booleans(), label="1-d points")
        x1 = data.draw(arrays((n,) if flat_ else (n, d), reals(nonfinite=False)), label="x1")
        x2 = data.draw(arrays((m,) if flat_ else (m, d), reals(nonfinite=False)), label="x2")
        if n and m and data.draw(st.booleans(), label="shared point"):
            x2[0] = x1[0]
        variance = data.draw(st.sampled_from([1.0, 0.5, 1e-30, 1e30]), label="variance")
        options: dict[str, Any] = {"variance": variance}
        (b1, r1), (b2, r2) = to_backend(backend, x1, dtype), to_backend(backend, x2, dtype)
        ell = data.draw(st.sampled_from([1.0, 0.1, 1e-30, 1e30, "per feature"]), label="l")
        if ell == "per feature":
            scales = st.integers(1, 5).map(float) if dtype == "int64" else st.floats(0.05, 5.0)
            lb, ell = to_backend(backend, data.draw(arrays((d,), scales)), dtype)
            options["length_scale"] = lb
        else:
            options["length_scale"] = ell
        out = run(backend, fn, b1, b2, **options, quiet=not finite(r1, r2))
        if not finite(r1, r2):
            check_meta(out, backend, dtype, [(n, m)])
            return
        expected = reference(_np_kernel, name, r1, r2, ell, variance)
        rtol, atol = _tol(backend, dtype)
        expect(out, expected, backend, dtype, rtol=rtol * 10, atol=atol * variance)
        got = values_of(backend, out)
        if got is not None:
            assert not np.isnan(got).any()
            assert (
                (got >= 0)
                & (
                    got
                    <= rounded(np.asarray(variance), out_dtype_name(backend, dtype)) * (1 + rtol)
                )
            ).all()


def _np_gp(x, y, q, kernel, noise):
    """The GP posterior by a float64 solve; `noise` a scalar or one value per point."""
    prior = np.diag(kernel(q, q))
    if not len(x):
        return np.zeros(len(q)), np.sqrt(prior)
    k = kernel(x, x) + np.diag(np.broadcast_to(noise, (len(x),)))
    ks = kernel(x, q)
    mean = ks.T @ np.linalg.solve(k, y)
    var = prior - np.sum(ks * np.linalg.solve(k, ks), axis=0)
    return mean, np.sqrt(np.maximum(var, 0.0))


def test_gp_posterior(backend):
    """Mean and std of the GP equal a float64 solve; std in [0, √k(x,x)]; N = 0 gives the
    prior (mean 0, std σ); M = 0 gives empty results; a noise per training point."""

    @fuzz(backend, st.data(), scale=0.6)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        n, m = data.draw(st.integers(0, 4), label="N"), data.draw(st.integers(0, 4), label="M")
        d = data.draw(st.integers(1, 2), label="D")
        x = data.draw(arrays((n, d), _moderate()), label="x_train")
        q = data.draw(arrays((m, d), _moderate()), label="x_query")
        y = data.draw(arrays((n,), reals(nonfinite=False)), label="y_train")
        name = data.draw(st.sampled_from(["matern52_kernel", "rbf_kernel"]), label="kernel")
        ell = data.draw(st.sampled_from([0.5, 2.0]), label="length_scale")
        kernel = functools.partial(getattr(mle, name), length_scale=ell)
        np_kernel = functools.partial(_np_kernel, name, ell=ell, variance=1.0)
        per_point = n > 0 and data.draw(st.booleans(), label="noise per point")
        noise_values = st.sampled_from([1e-2, 0.1, 1.0])
        (xb, xr), (yb, yr), (qb, qr) = (to_backend(backend, a, dtype) for a in (x, y, q))
        if per_point:
            noise, noise_r = to_backend(backend, data.draw(arrays((n,), noise_values)), dtype)
        else:
            noise = noise_r = data.draw(noise_values, label="noise")
        out = run(backend, mle.gp_posterior, xb, yb, qb, kernel=kernel, noise=noise)
        check_meta(out, backend, dtype, [(m,), (m,)])
        got = values_of(backend, out)
        if got is None or not finite(yr):
            return
        _, std = got
        expected = reference(_np_gp, xr, yr, qr, np_kernel, noise_r)
        rtol, atol = _tol(backend, dtype)
        # cond(K) <= 1 + N / noise_min: the solve loses that factor of relative precision.
        cond = 1 + n / 1e-2
        expect(
            out, expected, backend, dtype, rtol=rtol * cond, atol=atol + rtol * cond * _largest(yr)
        )
        assert not np.isnan(std).any()
        assert (std >= 0).all()
        assert (std <= 1 + 4 * rtol).all(), "posterior std above the prior's"


def test_expected_improvement(backend):
    """EI ≥ max(I, 0) ≥ 0 (Jensen), 0 where σ = 0, equal to the registry's reference for
    broadcast shapes, size 0, huge and tiny σ, both directions."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        shape = data.draw(shapes(min_dims=0, max_dims=2), label="shape")
        mean = data.draw(arrays(shape, reals(nonfinite=False)), label="mean")
        std = data.draw(arrays(shape[-1:], nonnegative()), label="std")
        best_kind = data.draw(st.sampled_from(["float", "array"]), label="best kind")
        xi = data.draw(st.sampled_from([0.0, 0.01, 1.0]), label="xi")
        maximize = data.draw(st.booleans(), label="maximize")
        (mb, mr), (sb, sr) = to_backend(backend, mean, dtype), to_backend(backend, std, dtype)
        if best_kind == "float":
            best = br = data.draw(st.floats(-20, 20) | st.sampled_from([0.0, 1e30]), label="best")
        else:
            best, br = to_backend(backend, data.draw(arrays((), reals(nonfinite=False))), dtype)
        quiet = not finite(mr, sr, np.asarray(br))
        out = run(
            backend, mle.expected_improvement, mb, sb, best, xi=xi, maximize=maximize, quiet=quiet
        )
        mr_, sr_ = np.broadcast_arrays(mr, sr)
        if quiet:  # 1e30 is inf in float16
            check_meta(out, backend, dtype, [mr_.shape])
            return
        expected = reference(
            bayesopt_checks._ei_reference, mr_, sr_, np.asarray(br), xi=xi, maximize=maximize
        )
        rtol, atol = _tol(backend, dtype)
        scale = _largest(mr, sr, np.asarray(br)) + xi
        expect(out, expected, backend, dtype, rtol=rtol * 10, atol=atol + 8 * rtol * scale)
        got = values_of(backend, out)
        if got is not None:
            assert not np.isnan(got).any()
            assert (got >= 0).all()
            with np.errstate(over="ignore", invalid="ignore"):
                gain = (mr_ - br - xi) if maximize else (br - mr_ - xi)
            gain = rounded(
                np.where(sr_ > 0, np.maximum(gain, 0.0), 0.0), out_dtype_name(backend, dtype)
            )
            assert (got >= gain - (atol + 8 * rtol * scale)).all(), "EI below the sure gain"


@pytest.mark.skip_xp_backend(
    "jax-jit",
    reason="documented eager driver loop: the objective is called in Python, one point at a time",
)
def test_bayesian_optimization(backend):
    """The loop's own consistency for D of 1 or 2, any bounds (huge, tiny, reversed width 0):
    the first n_init points are the SplitMix64 points, every point lies in the box, each
    value is the objective at its point, best_history is the running best, and (x, value)
    is the best evaluation."""

    @fuzz(backend, st.data(), scale=0.4)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        dims = data.draw(st.integers(1, 2), label="D")
        low = data.draw(arrays((dims,), st.sampled_from([-1.0, 0.0, 3.0, -1e30, 1e-30])), "low")
        width = data.draw(arrays((dims,), st.sampled_from([1.0, 0.5, 1e-3, 1e20, 0.0])), "width")
        bounds = np.stack([low, low + width], axis=-1)
        n_init, n_iter = (
            data.draw(st.integers(1, 3), "n_init"),
            data.draw(st.integers(0, 2), "n_iter"),
        )
        n_candidates = data.draw(st.integers(1, 9), label="n_candidates")
        maximize = data.draw(st.booleans(), label="maximize")
        bb, br = to_backend(backend, bounds, dtype)
        if not finite(br):
            return
        centre = br.mean(axis=-1)
        xp = backend.xp

        def objective(x):
            c = (
                xp.asarray(centre, dtype=x.dtype, device=backend.device)
                if backend.device is not None
                else xp.asarray(centre, dtype=x.dtype)
            )
            return -xp.sum(((x - c) / (xp.abs(c) + 1)) ** 2)

        result = run(
            backend,
            mle.bayesian_optimization,
            objective,
            bb,
            lazy=False,
            n_init=n_init,
            n_iter=n_iter,
            n_candidates=n_candidates,
            maximize=maximize,
        )
        total = n_init + n_iter
        check_meta(result, backend, dtype, [(dims,), (), (total, dims), (total,), (total,)])
        got = values_of(backend, result)
        if got is None:
            return
        x, value, x_hist, y_hist, best_hist = got
        rtol, atol = _tol(backend, dtype)
        work = np.float64 if dtype == "float64" else np.float32
        lo, hi = np.minimum(br[:, 0], br[:, 1]), np.maximum(br[:, 0], br[:, 1])
        spread = np.abs(br).max() * rtol * 4 + atol
        assert ((x_hist >= lo - spread) & (x_hist <= hi + spread)).all(), "a point outside the box"
        u = np.asarray(mle.bayesopt._uniform(0, n_init * dims), work).reshape(n_init, dims)
        first = (br[:, 0].astype(work) + u * (br[:, 1] - br[:, 0]).astype(work)).astype(np.float64)
        np.testing.assert_allclose(x_hist[:n_init], rounded(first, dtype), rtol=rtol, atol=spread)
        with np.errstate(over="ignore", invalid="ignore"):
            values = -np.sum(((x_hist - centre) / (np.abs(centre) + 1)) ** 2, axis=-1)
        np.testing.assert_allclose(y_hist, rounded(values, dtype), rtol=rtol * 10, atol=atol * 10)
        running = (np.maximum if maximize else np.minimum).accumulate(y_hist)
        np.testing.assert_array_equal(best_hist, running)
        np.testing.assert_array_equal(value, running[-1])
        assert (y_hist[np.all(x_hist == x, axis=-1)] == value).any(), "x is not the best point"


# == regressions: what the fuzzing found =====================================================


def test_regression_pca_of_constant_data(backend):
    """Found by fuzzing: ``pca`` of an all-zero (or any constant) ``x`` divided 0 by 0 for
    the variance ratio (NaN and a NumPy warning; scikit-learn returns NaN too). Constant
    data has no variance to explain: the ratio is now 0."""
    for x in (np.zeros((4, 3)), np.full((3, 2), 2.5)):
        out = run(backend, mle.pca, backend.asarray(x, "float32"), n_components=2)
        expect(out.explained_variance, np.zeros(2), backend, "float32")
        expect(out.explained_variance_ratio, np.zeros(2), backend, "float32")
        expect(out.mean, x[0], backend, "float32")
        got = values_of(backend, out.components)
        if got is not None:
            np.testing.assert_allclose(got @ got.T, np.eye(2), atol=1e-6)


def test_regression_pca_ratio_at_extreme_scale(backend):
    """Found by fuzzing: float32 data of magnitude 1e20 (σ² = inf) or 1e-30 (σ² = 0) gave
    NaN variance ratios, and 1e160 did in float64. The ratio is now formed from σ / max σ;
    the guide's example keeps its ratios [0.8, 0.2] at every scale."""
    x = np.asarray([[2.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [0.0, -1.0]])
    cases = [(1e20, "float32"), (1e-30, "float32"), (1e160, "float64"), (1e-300, "float64")]
    for factor, dtype in cases:
        if dtype not in backend.dtypes():
            continue
        out = run(backend, mle.pca, backend.asarray(x * factor, dtype), n_components=2)
        expect(out.explained_variance_ratio, np.asarray([0.8, 0.2]), backend, dtype, rtol=1e-5)


def test_regression_power_iteration_of_zero_and_nilpotent_matrices(backend):
    """Found by fuzzing: the zero matrix gave a zero "eigenvector" (0/0 kept at 0). Where
    A v = 0, v is an eigenvector for 0 and is now kept: the zero matrix gives λ = 0 and the
    normalised start vector (1, 1/2, 1/3)/‖·‖; the nilpotent [[0, 1], [0, 0]] gives λ = 0
    and (1, 0)."""
    zero = backend.asarray(np.zeros((3, 3)), "float32")
    value, vector = run(backend, mle.power_iteration, zero, num_iters=4)
    start = np.asarray([1.0, 0.5, 1 / 3])
    expect(value, 0.0, backend, "float32")
    expect(vector, start / np.linalg.norm(start), backend, "float32")
    nilpotent = backend.asarray(np.asarray([[0.0, 1.0], [0.0, 0.0]]), "float32")
    value, vector = run(backend, mle.power_iteration, nilpotent, num_iters=4)
    expect(value, 0.0, backend, "float32")
    expect(vector, np.asarray([1.0, 0.0]), backend, "float32")


def test_regression_power_iteration_at_extreme_scale(backend):
    """Found by fuzzing: ``[[2, 1], [1, 2]]`` scaled by 1e20 or 1e-30 in float32 (1e300 or
    1e-170 in float64) gave λ = 0 and a zero vector: ‖A v‖² over- or underflowed. The
    iteration now runs on A / max|A| with each A v scaled by its largest entry."""
    a = np.asarray([[2.0, 1.0], [1.0, 2.0]])
    cases = {"float32": np.asarray([1e20, 1e-30]), "float64": np.asarray([1e300, 1e-170])}
    for dtype in backend.dtypes():
        factors = cases[dtype]  # one stack per dtype: one trace on JAX and Dask
        stack = backend.asarray(a * factors[:, None, None], dtype)
        value, vector = run(backend, mle.power_iteration, stack, num_iters=40)  # gap 1/3
        expect(value, 3.0 * factors, backend, dtype, rtol=1e-5)
        expect(vector, np.full((2, 2), math.sqrt(0.5)), backend, dtype, rtol=1e-5, atol=1e-6)


def test_regression_matern52_far_apart(backend):
    """Found by fuzzing: ``matern52_kernel([[1e30]], [[-1e30]])`` in float32 was NaN (r² =
    inf, then (1 + inf) · exp(-inf)), and the RBF warned about the overflow. Differences
    beyond 1e3 length scales are now clipped, where k = 0 in every dtype."""
    x1 = backend.asarray(np.asarray([[1e30], [0.0]]), "float32")
    x2 = backend.asarray(np.asarray([[-1e30]]), "float32")
    for fn in (mle.matern52_kernel, mle.rbf_kernel):
        expect(run(backend, fn, x1, x2), np.zeros((2, 1)), backend, "float32")
        expect(run(backend, fn, x1, x1, length_scale=1e-30), np.eye(2), backend, "float32")


def test_regression_gp_posterior_without_data(backend):
    """Found by fuzzing: ``gp_posterior`` with no training point took the mean of an empty
    diagonal (NumPy's "Mean of empty slice" warning, a NaN jitter). Conditioned on nothing,
    the posterior is now the prior: mean 0, std √k(x, x) = 1."""
    x = backend.asarray(np.zeros((0, 2)), "float32")
    y = backend.asarray(np.zeros(0), "float32")
    q = backend.asarray(np.asarray([[0.0, 1.0], [3.0, -1.0], [0.5, 0.5]]), "float32")
    mean, std = run(backend, mle.gp_posterior, x, y, q)
    expect(mean, np.zeros(3), backend, "float32")
    expect(std, np.ones(3), backend, "float32")


def test_regression_nothing_to_step_or_search(backend):
    """Found by fuzzing: ``ddpm_reverse_step`` with an empty schedule failed in ``take``
    (IndexError), ``bayesian_optimization`` with bounds of shape (0, 2) in a reshape, and
    ``power_iteration`` of a 0 x 0 matrix in ``argmax`` — none naming the argument. Each is
    now a ValueError naming it (shapes only: nothing is read from the data)."""
    x = backend.asarray(np.zeros((2, 3)), "float32")
    with pytest.raises(ValueError, match="`betas`"):
        backend.call(mle.ddpm_reverse_step, x, x, 0, backend.asarray(np.zeros(0), "float32"), x)
    with pytest.raises(ValueError, match="`a`"):
        backend.call(mle.power_iteration, backend.asarray(np.zeros((0, 0)), "float32"))
    if not backend.jit:
        with pytest.raises(ValueError, match="`bounds`"):
            mle.bayesian_optimization(lambda v: 0.0, backend.asarray(np.zeros((0, 2)), "float32"))


def test_regression_ddpm_last_step_with_tiny_beta(backend):
    """Found by fuzzing: ``ddpm_reverse_step`` at t = 0 with ``betas = [1e-30]`` in float32
    was NaN: 1 - ᾱ_0 = 1 - (1 - 1e-30) is 0, and β_0 / (1 - ᾱ_0) was 0/0. 1 - ᾱ now comes
    from expm1 of the summed log1p, and t = 0 returns x̂_0 exactly (no noise is added)."""
    x_t = np.asarray([[1.0, -1.0], [0.5, 2.0]])
    eps = np.asarray([[0.1, 0.2], [-0.3, 0.0]])
    args = [backend.asarray(a, "float32") for a in (x_t, eps)]
    betas = backend.asarray(np.asarray([1e-30]), "float32")
    noise = backend.asarray(np.full((2, 2), 5.0), "float32")
    out = run(backend, mle.ddpm_reverse_step, *args, 0, betas, noise)
    expect(out, x_t - 1e-15 * eps, backend, "float32")


def test_regression_pca_constant_feature_mean(backend):
    """Found by fuzzing: five samples ``[0.0, 7.1]`` in float64 on JAX gave the variance
    ratio 1, not 0: JAX's mean of five 7.1s is 7.1 + 8.9e-16, and that residue was the
    only "variance" left. PCA now centres on the first sample first, so a constant feature
    centres to exact zeros on every backend."""
    for dtype in backend.dtypes():
        x = backend.asarray(np.tile([0.0, 7.1], (5, 1)), dtype)
        out = run(backend, mle.pca, x, n_components=1)
        expect(out.explained_variance, np.zeros(1), backend, dtype, atol=0)
        expect(out.explained_variance_ratio, np.zeros(1), backend, dtype, atol=0)
        expect(out.mean, np.asarray([0.0, 7.1]), backend, dtype)


def test_regression_gradients_at_degenerate_points():
    """Found while fixing the above: the gradient of ``power_iteration`` at the zero matrix
    was NaN (√0 in the norm: its infinite slope times 0 is NaN even where ``where`` drops
    it). The norm now sits behind a double ``where``, and dλ/dA there is v vᵀ, the Rayleigh
    quotient's, in jax.grad and torch autograd alike. The rewritten DDPM step keeps its
    double ``where`` too: at t = 0 it depends on β only through x̂_0."""
    jax = jax_or_skip()
    torch = torch_or_skip()
    jnp = jax.numpy
    start = np.asarray([1.0, 0.5, 1 / 3]) / np.linalg.norm([1.0, 0.5, 1 / 3])
    grad = jax.grad(lambda a: mle.power_iteration(a, num_iters=5).eigenvalue)(jnp.zeros((3, 3)))
    np.testing.assert_allclose(np.asarray(grad), np.outer(start, start), atol=1e-12)
    a = torch.zeros((3, 3), dtype=torch.float64, requires_grad=True)
    mle.power_iteration(a, num_iters=5).eigenvalue.backward()
    np.testing.assert_allclose(a.grad.numpy(), np.outer(start, start), atol=1e-12)

    def last_step(betas):
        return mle.ddpm_reverse_step(jnp.ones(2), jnp.ones(2), 0, betas, jnp.ones(2)).sum()

    grad = np.asarray(jax.grad(last_step)(jnp.asarray([0.01, 0.1])))
    # x0_hat = (1 - sqrt(b0)) / sqrt(1 - b0) per entry: its derivative, twice.
    b0 = 0.01
    expected = (
        2
        * (-0.5 / math.sqrt(b0) * math.sqrt(1 - b0) + 0.5 * (1 - math.sqrt(b0)) / math.sqrt(1 - b0))
        / (1 - b0)
    )
    np.testing.assert_allclose(grad, [expected, 0.0], rtol=1e-10)
