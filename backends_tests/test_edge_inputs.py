"""The public API through the edge inputs that PyTorch's own test suites use (issue 22).

- **Memory layouts** that hold the same values: negative strides (NumPy's
  ``[::-1]``), Fortran order, every other element of a longer axis, transposed
  strides, and stride-0 broadcast views (``np.broadcast_to``, ``Tensor.expand``)
  — every registered equation, against its float64 reference. Arrays of those
  layouts reach the functions as users make them: NumPy and torch hand them over
  as they are.
- **0-d inputs**: the elementwise functions return a 0-d result equal to SciPy's
  (or a plain float64 NumPy formula); the ones that need an axis or a matrix
  raise a ``ValueError`` naming the argument — never ``ZeroDivisionError`` or
  ``IndexError``.
- **-0.0 and denormals** through the elementwise functions and the softmax
  family, against SciPy, with absolute errors below the smallest normal number
  accepted (XLA on the CPU flushes denormals to zero).

Size-0 axes, huge and tiny magnitudes and ±inf/NaN are drawn by the fuzz
modules (``test_fuzz*.py``); they are not repeated here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.special
import scipy.stats

import mlequations as mle
from mlequations._registry import Equation, equations, tolerance

from ._assert import assert_close
from ._libs import torch_or_skip

EQUATIONS = equations()


# -- memory layouts ---------------------------------------------------------------------


def _negative_strides(a: np.ndarray) -> np.ndarray:
    """The values of `a`, stored reversed and viewed through ``[::-1]`` on every axis."""
    flip = tuple(slice(None, None, -1) for _ in range(a.ndim))
    return a[flip].copy()[flip]


def _every_other(a: np.ndarray) -> np.ndarray:
    """The values of `a` as every other element of a last axis twice as long."""
    if a.ndim == 0:
        return a
    wide = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def _transposed(a: np.ndarray) -> np.ndarray:
    """The values of `a`, stored with the last two axes swapped (column-major matrices)."""
    if a.ndim < 2:
        return a
    return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)


def _stride_0(a: np.ndarray) -> np.ndarray:
    """The first element of the last axis repeated along it, as a stride-0 view."""
    if a.ndim == 0 or a.shape[-1] == 0:
        return a
    return np.broadcast_to(a[..., :1], a.shape)


NUMPY_LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "negative-strides": _negative_strides,
    "fortran": np.asfortranarray,
    "every-other": _every_other,
    "transposed": _transposed,
    "stride-0": _stride_0,
}
TORCH_LAYOUTS = ("transposed", "every-other", "stride-0")

# A stride-0 matrix has equal columns: rank one, with a repeated eigenvalue 0. The
# references of these two take a matrix with distinct eigenvalues (power_iteration's
# a symmetric one), so the stride-0 rows are not generated for them.
_NEEDS_DISTINCT_EIGENVALUES = ("eig", "power_iteration")


def _layout_cases(layouts: Any) -> list[Any]:
    return [
        pytest.param(eq, layout, id=f"{eq.name}-{layout}")
        for eq in EQUATIONS
        for layout in layouts
        if not (layout == "stride-0" and eq.name.startswith(_NEEDS_DISTINCT_EIGENVALUES))
    ]


def _to_torch(a: np.ndarray, layout: str) -> Any:
    """Torch's own way to the layout: ``transpose``, a step-2 slice, ``expand``."""
    torch = torch_or_skip()
    t = torch.from_numpy(np.ascontiguousarray(a))
    if layout == "transposed" and t.ndim >= 2:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "every-other" and t.ndim >= 1:
        wide = torch.zeros((*t.shape[:-1], 2 * t.shape[-1]), dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    if layout == "stride-0" and t.ndim >= 1 and t.shape[-1] > 0:
        return t[..., :1].expand(t.shape)
    return t


def _host(x: Any) -> Any:
    if isinstance(x, tuple | list):
        items = [_host(v) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)
    if hasattr(x, "detach"):
        return x.detach().numpy()
    return np.asarray(x)


def _leaves(x: Any) -> list[Any]:
    if isinstance(x, tuple | list):
        return [leaf for item in x for leaf in _leaves(item)]
    return [x]


def _check_layout(eq: Equation, layout: str, convert: Callable[[np.ndarray, str], Any]) -> None:
    inputs = eq.make_inputs(np.random.default_rng(22))
    floating = [isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in inputs]
    values = [
        np.array(_stride_0(a)) if layout == "stride-0" and f else a
        for a, f in zip(inputs, floating, strict=True)
    ]
    # Repeated values may make a reference divide 0 by 0 (a zero evidence): NaN, as ours.
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = eq.reference(*values, **eq.options)
    args = [
        convert(a, layout) if f else convert(a, "") for a, f in zip(values, floating, strict=True)
    ]
    got = _host(eq.func(*args, **eq.options))
    if eq.compare is not None:
        got, expected = eq.compare(got), eq.compare(expected)
    rtol, atol = tolerance("float64")
    for g, e in zip(_leaves(got), _leaves(expected), strict=True):
        np.testing.assert_allclose(
            np.asarray(g, dtype=np.float64), e, rtol=rtol, atol=atol, equal_nan=True
        )


@pytest.mark.parametrize(("equation", "layout"), _layout_cases(NUMPY_LAYOUTS))
def test_numpy_views_match_the_reference(equation, layout):
    def convert(a: np.ndarray, name: str) -> np.ndarray:
        return NUMPY_LAYOUTS[name](a) if name else a

    _check_layout(equation, layout, convert)


@pytest.mark.parametrize(("equation", "layout"), _layout_cases(TORCH_LAYOUTS))
def test_torch_views_match_the_reference(equation, layout):
    _check_layout(equation, layout, _to_torch)


# -- 0-d inputs -------------------------------------------------------------------------


def _normal_pdf(x: np.ndarray) -> Any:
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


# name: (function of 0-d arrays, float64 reference of the same 0-d values, input values)
ZERO_D: dict[str, tuple[Callable[..., Any], Callable[..., Any], tuple[float, ...]]] = {
    "sigmoid": (mle.sigmoid, scipy.special.expit, (-0.75,)),
    "erf": (mle.erf, scipy.special.erf, (0.3,)),
    "normal_cdf": (mle.normal_cdf, scipy.special.ndtr, (-1.25,)),
    "normal_pdf": (mle.normal_pdf, _normal_pdf, (0.5,)),
    "softmax": (mle.softmax, lambda x: scipy.special.softmax(x, axis=None), (2.5,)),
    "log_softmax": (mle.log_softmax, lambda x: scipy.special.log_softmax(x, axis=None), (2.5,)),
    "logsumexp": (mle.logsumexp, scipy.special.logsumexp, (-3.5,)),
    "joint_probability": (mle.joint_probability, np.multiply, (0.25, 0.5)),
    "conditional_probability": (mle.conditional_probability, np.divide, (0.25, 0.5)),
    "mse": (mle.mse, lambda a, b: (a - b) ** 2, (0.3, -0.2)),
    "binary_cross_entropy": (
        mle.binary_cross_entropy,
        lambda p, y: -(y * np.log(p) + (1 - y) * np.log1p(-p)),
        (0.3, 0.75),
    ),
    "binary_cross_entropy_with_logits": (
        mle.binary_cross_entropy_with_logits,
        lambda x, y: (
            -(y * np.log(scipy.special.expit(x)) + (1 - y) * np.log(scipy.special.expit(-x)))
        ),
        (-1.5, 0.25),
    ),
    "expected_improvement": (
        mle.expected_improvement,
        lambda m, s, b: (
            (m - b - 0.01) * scipy.stats.norm.cdf((m - b - 0.01) / s)
            + s * scipy.stats.norm.pdf((m - b - 0.01) / s)
        ),
        (0.3, 0.5, 0.1),
    ),
    "forward_diffusion": (
        mle.forward_diffusion,
        lambda x0, e, a: np.sqrt(a) * x0 + np.sqrt(1 - a) * e,
        (0.2, -0.1, 0.6),
    ),
    "predict_x0": (
        mle.predict_x0,
        lambda xt, e, a: (xt - np.sqrt(1 - a) * e) / np.sqrt(a),
        (0.2, -0.1, 0.6),
    ),
    "sigmoid_backward": (mle.sigmoid_backward, lambda dy, y: dy * y * (1 - y), (0.5, 0.3)),
    "tanh_backward": (mle.tanh_backward, lambda dy, y: dy * (1 - y * y), (0.5, 0.3)),
    "relu_backward": (mle.relu_backward, lambda dy, y: dy * (y > 0), (0.5, 0.3)),
    "mse_backward": (mle.mse_backward, lambda p, t: 2 * (p - t), (0.3, -0.2)),
}


@pytest.mark.parametrize("name", sorted(ZERO_D))
def test_0d_elementwise_gives_0d(backend, dtype, name):
    fn, reference, values = ZERO_D[name]
    args = [backend.asarray(np.asarray(v), dtype) for v in values]
    expected = reference(*(np.asarray(v, dtype=np.float64) for v in values))
    assert_close(backend.call(fn, *args), expected, backend, dtype)


def _scalar(v: float = 0.5) -> np.ndarray:
    return np.asarray(v)


# name: (call on the backend's 0-d arrays `a`, the argument the error must name)
ZERO_D_ERRORS: dict[str, tuple[Callable[[Callable[[], Any]], Any], str]] = {
    "entropy": (lambda a: mle.entropy(a()), "axis"),
    "kl_divergence": (lambda a: mle.kl_divergence(a(), a()), "axis"),
    "cross_entropy": (lambda a: mle.cross_entropy(a(), a()), "axis"),
    "bayes_rule": (lambda a: mle.bayes_rule(a(), a()), "axis"),
    "marginal_probability": (lambda a: mle.marginal_probability(a(), axis=0), "axis"),
    "mutual_information": (lambda a: mle.mutual_information(a()), "joint"),
    "information_gain": (lambda a: mle.information_gain(a(), a()), "parent_counts"),
    "cross_entropy_loss": (lambda a: mle.cross_entropy_loss(a(), a()), "logits"),
    "linear": (lambda a: mle.linear(a(), a()), "x"),
    "alpha_bar": (lambda a: mle.alpha_bar(a()), "betas"),
    "rbf_kernel": (lambda a: mle.rbf_kernel(a(), a()), "x1"),
    # Fixed in issue 22: x_train.shape[0] raised IndexError: tuple index out of range.
    "gp_posterior": (
        lambda a: mle.gp_posterior(a(), a(), a(), kernel=mle.rbf_kernel),
        "x_train",
    ),
    "pca": (lambda a: mle.pca(a(), n_components=1), "x"),
    "power_iteration": (lambda a: mle.power_iteration(a()), "a"),
    "eigh": (lambda a: mle.eigh(a()), "a"),
    "svd": (lambda a: mle.svd(a()), "a"),
    "least_squares_grad": (lambda a: mle.least_squares_grad(a(), a(), a()), "x"),
    "GaussianNaiveBayes.fit": (lambda a: mle.GaussianNaiveBayes().fit(a(), a()), "X"),
}


@pytest.mark.parametrize("name", sorted(ZERO_D_ERRORS))
def test_0d_where_an_axis_or_matrix_is_needed_names_the_argument(backend, name):
    call, argument = ZERO_D_ERRORS[name]

    def a() -> Any:
        return backend.asarray(_scalar(), "float32")

    with pytest.raises(ValueError, match=f"`{argument}`"):
        backend.call(lambda: call(a))


# -- -0.0 and denormals -----------------------------------------------------------------

SUBNORMAL = {
    "float64": np.array([-0.0, 0.0, 5e-324, -5e-324, 1e-310, -2.2e-308, 1.0, -3.0]),
    "float32": np.array([-0.0, 0.0, 1e-45, -1e-45, 1e-40, -1.1e-38, 1.0, -3.0]),
}

ELEMENTWISE: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "sigmoid": (mle.sigmoid, scipy.special.expit),
    "erf": (mle.erf, scipy.special.erf),
    "normal_cdf": (mle.normal_cdf, scipy.special.ndtr),
    "normal_pdf": (mle.normal_pdf, _normal_pdf),
    "softmax": (mle.softmax, scipy.special.softmax),
    "log_softmax": (mle.log_softmax, scipy.special.log_softmax),
    "logsumexp": (mle.logsumexp, scipy.special.logsumexp),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_signed_zeros_and_denormals(backend, dtype, name):
    fn, reference = ELEMENTWISE[name]
    values = SUBNORMAL[dtype]
    x = backend.asarray(values, dtype)
    rtol, _ = tolerance(dtype)
    # XLA's CPU reads subnormal inputs as 0 and flushes subnormal results: an input
    # below `tiny` moves each output by at most |f'| · tiny, and |f'| ≤ 2/√π ≈ 1.13 here.
    atol = 2 * float(np.finfo(dtype).tiny)
    expected = reference(values.astype(dtype).astype(np.float64))
    assert_close(backend.call(fn, x), expected, backend, dtype, rtol=rtol, atol=atol)
