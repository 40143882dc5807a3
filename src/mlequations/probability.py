r"""Probability: Bayes' rule, joint, conditional and marginal probabilities.

Discrete distributions are arrays whose entries along one axis are the
probabilities of the outcomes (the "hypotheses" for Bayes' rule). Everything
here is elementwise with broadcasting, or a sum along an axis, so it traces
under ``jax.jit``, stays lazy on Dask and differentiates everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from ._xp import Array, Namespace, as_array, float_dtypes, namespace

__all__ = [
    "bayes_rule",
    "conditional_probability",
    "joint_probability",
    "marginal_probability",
]


def _known(n: Any) -> bool:
    """Whether a shape entry is a concrete length (Dask may report NaN or None)."""
    return n is not None and not (isinstance(n, float) and math.isnan(n))


def _broadcast_shape(**named: Array) -> tuple[Any, ...]:
    """The broadcast shape of the named arrays, or a ValueError naming them.

    Shapes are static (even under ``jax.jit``), so this looks at no values.
    """
    shapes = {name: tuple(a.shape) for name, a in named.items()}
    ndim = max(len(s) for s in shapes.values())
    out: list[Any] = []
    for i in range(-ndim, 0):
        # A list, not a set: hashing a symbolic size under torch.compile makes it a
        # constant, one graph per batch size (issue 19).
        lengths: list[Any] = []
        for s in shapes.values():
            if len(s) >= -i and _known(s[i]) and s[i] != 1 and all(s[i] != n for n in lengths):
                lengths.append(s[i])
        if len(lengths) > 1:
            described = " and ".join(f"`{name}` with shape {s}" for name, s in shapes.items())
            raise ValueError(f"{described} do not broadcast together")
        known = [s[i] for s in shapes.values() if len(s) >= -i]
        out.append(lengths.pop() if lengths else max((n for n in known if _known(n)), default=1))
    return tuple(out)


def _check_axis(axis: int, ndim: int, name: str = "axis") -> int:
    """`axis` as a non-negative index into `ndim` axes, or a ValueError naming it."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"`{name}` must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"`{name}`={axis} is out of range for an array with {ndim} dimensions")
    return axis % ndim


def _safe_log(x: Array, xp: Namespace) -> Array:
    """``log x`` with ``log 0 = -inf``, by the double where (no warning, finite gradient)."""
    positive = x > 0
    logs = xp.log(xp.where(positive, x, 1.0))
    return xp.where(positive, logs, -math.inf)


def _cast(xp: Namespace, x: Array, dtype: Any) -> Array:
    """`x` in `dtype`, as an array: NumPy reductions to 0-d give scalars, made 0-d arrays here."""
    if x.dtype != dtype:
        x = xp.astype(x, dtype)
    return as_array(x, xp)


def _prepare(xp: Namespace | None, **named: Array) -> tuple[Namespace, list[Array], Any]:
    """Namespace, the inputs in their compute dtype (same order), and the output dtype."""
    xp = namespace(xp=xp, **named)
    out_dtype, work_dtype = float_dtypes(xp, **named)
    return (
        xp,
        [a if a.dtype == work_dtype else xp.astype(a, work_dtype) for a in named.values()],
        out_dtype,
    )


def bayes_rule(
    prior: Array,
    likelihood: Array,
    /,
    *,
    axis: int = -1,
    xp: Namespace | None = None,
) -> Array:
    r"""The posterior over hypotheses after seeing evidence: Bayes' theorem.

    $$
    P(h_i \mid e) = \frac{P(e \mid h_i)\, P(h_i)}{\sum_{j} P(e \mid h_j)\, P(h_j)}
    = \operatorname{softmax}_i\bigl(\log P(h_i) + \log P(e \mid h_i)\bigr),
    $$

    where the $h_i$ are the hypotheses, laid out along `axis`, and the
    denominator is the evidence $P(e)$. The product is formed in log space, so
    a prior and a likelihood that are both tiny (say $10^{-30}$ each in
    float32, whose product underflows to 0) still give the right posterior.
    A zero prior or likelihood gives a posterior of exactly 0 (its log is
    $-\infty$, guarded so that gradients stay finite).

    Args:
        prior: $P(h)$, non-negative, of shape `(..., H)` (along `axis`);
            need not be normalised.
        likelihood: $P(e \mid h)$, non-negative, broadcastable with `prior`.
        axis: The hypothesis axis of the broadcast shape.
        xp: Array namespace; inferred from the inputs when omitted.

    Returns:
        The posterior, of the broadcast shape, summing to 1 along `axis`, in the
        inputs' floating dtype (integers give the default float) and on their
        device. Where the evidence is 0 (every product 0) there is no posterior
        and the result is NaN.

    Examples:
        The guide's disease test: 1% prevalence, 99% sensitivity, 2% false
        positives. Hypotheses are (disease, no disease); the evidence is a
        positive test.

        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.bayes_rule(np.asarray([0.01, 0.99]), np.asarray([0.99, 0.02]))
        array([0.33333333, 0.66666667])

        Many tests at once, one per row, sharing the prior:

        >>> mle.bayes_rule(np.asarray([0.01, 0.99]), np.asarray([[0.99, 0.02], [0.01, 0.98]]))
        array([[3.33333333e-01, 6.66666667e-01],
               [1.03060909e-04, 9.99896939e-01]])

    References:
        Bayes, T. (1763). An essay towards solving a problem in the doctrine of
        chances. *Philosophical Transactions of the Royal Society*, 53, 370-418.
    """
    xp, (prior, likelihood), out_dtype = _prepare(xp, prior=prior, likelihood=likelihood)
    shape = _broadcast_shape(prior=prior, likelihood=likelihood)
    axis = _check_axis(axis, len(shape))
    log_joint = _safe_log(prior, xp) + _safe_log(likelihood, xp)  # (..., H, ...)
    # A softmax of log_joint, except that zero evidence gives NaN without a 0 / 0.
    m = xp.max(log_joint, axis=axis, keepdims=True)  # (..., 1, ...); -inf if evidence is 0
    m = xp.where(xp.isfinite(m), m, 0.0)
    e = xp.exp(log_joint - m)  # (..., H, ...), the largest is 1
    evidence = xp.sum(e, axis=axis, keepdims=True)  # (..., 1, ...), P(e) / exp(m)
    positive = evidence > 0
    safe = xp.where(positive, evidence, 1.0)
    posterior = xp.where(positive, e / safe, math.nan)
    return _cast(xp, posterior, out_dtype)


def joint_probability(
    conditional: Array, marginal: Array, /, *, xp: Namespace | None = None
) -> Array:
    r"""The joint probability from a conditional and a marginal: the product rule.

    $$
    P(A, B) = P(A \mid B)\, P(B) .
    $$

    Elementwise with broadcasting: for a table `conditional[a, b]` $= P(A{=}a
    \mid B{=}b)$ of shape `(A, B)` and `marginal[b]` $= P(B{=}b)$ of shape
    `(B,)`, the result is the joint table of shape `(A, B)`.

    Args:
        conditional: $P(A \mid B)$, any shape.
        marginal: $P(B)$, broadcastable with `conditional`.
        xp: Array namespace; inferred from the inputs when omitted.

    Returns:
        $P(A, B)$ of the broadcast shape, in the inputs' floating dtype and on
        their device.

    Examples:
        A fair die: $P(\text{six} \mid \text{even}) = 1/3$ and
        $P(\text{even}) = 1/2$, so $P(\text{six}, \text{even}) = 1/6$.

        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.joint_probability(np.asarray(1 / 3), np.asarray(0.5))
        array(0.16666667)
    """
    xp, (conditional, marginal), out_dtype = _prepare(
        xp, conditional=conditional, marginal=marginal
    )
    _broadcast_shape(conditional=conditional, marginal=marginal)
    return _cast(xp, conditional * marginal, out_dtype)


def conditional_probability(
    joint: Array, marginal: Array, /, *, xp: Namespace | None = None
) -> Array:
    r"""The conditional probability from a joint and a marginal.

    $$
    P(A \mid B) = \frac{P(A, B)}{P(B)}, \qquad P(A \mid B) := 0 \text{ where } P(B) = 0 .
    $$

    Where the condition has probability 0 the conditional is undefined; it is
    returned as 0 (not NaN) and the division is guarded on both sides (the
    double where), so gradients stay finite there too.

    Args:
        joint: $P(A, B)$, any shape.
        marginal: $P(B)$, broadcastable with `joint` (e.g. the joint table
            summed over $A$ with ``keepdims=True``).
        xp: Array namespace; inferred from the inputs when omitted.

    Returns:
        $P(A \mid B)$ of the broadcast shape, in the inputs' floating dtype and
        on their device.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> joint = np.asarray([[0.1, 0.0], [0.3, 0.0]])  # P(A=a, B=b); P(B=1) = 0
        >>> b = mle.marginal_probability(joint, axis=0, keepdims=True)
        >>> mle.conditional_probability(joint, b)
        array([[0.25, 0.  ],
               [0.75, 0.  ]])
    """
    xp, (joint, marginal), out_dtype = _prepare(xp, joint=joint, marginal=marginal)
    _broadcast_shape(joint=joint, marginal=marginal)
    positive = marginal > 0
    safe = xp.where(positive, marginal, 1.0)
    out = xp.where(positive, joint / safe, 0.0)
    return _cast(xp, out, out_dtype)


def marginal_probability(
    joint: Array,
    /,
    *,
    axis: int | tuple[int, ...],
    keepdims: bool = False,
    xp: Namespace | None = None,
) -> Array:
    r"""Marginalise: sum the variables on `axis` out of a joint distribution.

    $$
    P(A{=}a) = \sum_b P(A{=}a, B{=}b) .
    $$

    Args:
        joint: The joint table, one axis per variable.
        axis: The axis (or axes) of the variables to sum out; required, since
            which variable to keep is the whole question.
        keepdims: Keep the summed axes with length 1 (handy for
            :func:`conditional_probability`).
        xp: Array namespace; inferred from `joint` when omitted.

    Returns:
        The marginal table, in the dtype of `joint` (integers give the default
        float; half precision is summed in float32) and on its device.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> joint = np.asarray([[0.1, 0.2], [0.3, 0.4]])  # rows: A, columns: B
        >>> mle.marginal_probability(joint, axis=1)  # P(A)
        array([0.3, 0.7])
        >>> mle.marginal_probability(joint, axis=0)  # P(B)
        array([0.4, 0.6])
    """
    xp, (joint,), out_dtype = _prepare(xp, joint=joint)
    axes = axis if isinstance(axis, tuple) else (axis,)
    axes = tuple(_check_axis(a, joint.ndim) for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"`axis`={axis} names an axis twice")
    out = xp.sum(joint, axis=axes, keepdims=keepdims)
    return _cast(xp, out, out_dtype)
