r"""Losses: mean squared error and the cross-entropies, as ``torch.nn.functional`` defines them.

Every loss takes the prediction first and the target second (as torch and
optax do) and a ``reduction``: ``"none"`` returns one loss per element (per
sample for :func:`cross_entropy_loss`), ``"sum"`` their sum, and ``"mean"``
(the default) their mean — for :func:`cross_entropy_loss` with class-index
targets, the *weighted* mean, divided by the total weight of the targets that
are not ignored, as in torch. The mean of no losses (an empty input, or every
target ignored) is NaN, as in torch, without a NumPy warning.

Probabilities are never formed where their logarithm is needed: the
cross-entropy of logits goes through :func:`~mlequations.log_softmax`, and the
binary cross-entropy of logits through a branch-free-of-overflow log-sigmoid,
so both are finite (and have finite gradients) for every finite logit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._xp import Array, Namespace, device, float_dtypes, namespace, scalar
from .activations import log_softmax

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy_loss",
    "mse",
]

_REDUCTIONS = ("none", "mean", "sum")
_LOG_FLOOR = -100.0  # torch clamps log(p) and log(1 - p) at -100 in binary_cross_entropy
_TINY = math.exp(_LOG_FLOOR)  # below this, log(p) < -100


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"`reduction` must be one of 'none', 'mean', 'sum'; got {reduction!r}")


def _astype(x: Array, dtype: object, xp: Namespace) -> Array:
    """`x` in `dtype`, without a call when it already is (most calls: issue 19)."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


def _total(x: Array, xp: Namespace) -> Array:
    """The sum of every entry as a 0-d array (NumPy's own reductions return a scalar)."""
    return xp.reshape(xp.sum(x, keepdims=True), ())


def _reduce(loss: Array, reduction: str, xp: Namespace) -> Array:
    if reduction == "mean":
        if math.prod(loss.shape) == 0:  # static: the mean of no losses is NaN, as in torch
            return xp.full((), math.nan, dtype=loss.dtype, device=device(loss))
        return xp.reshape(xp.mean(loss, keepdims=True), ())
    if reduction == "sum":
        return _total(loss, xp)
    return loss


def _check_same_shape(target: Array, input: Array, what: str = "input") -> None:
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(
            f"`target` must have the shape of `{what}`, {tuple(input.shape)}; "
            f"got shape {tuple(target.shape)}"
        )


def _check_broadcasts(name: str, array: Array | None, shape: Sequence[int]) -> None:
    """Raise unless `array` broadcasts to `shape` without enlarging it."""
    if array is None:
        return
    own = tuple(array.shape)
    if len(own) > len(shape) or any(
        s not in (1, t) for s, t in zip(own[::-1], tuple(shape)[::-1], strict=False)
    ):
        raise ValueError(
            f"`{name}` of shape {own} must broadcast to the shape of `input`, {tuple(shape)}"
        )


def _log_sigmoid(x: Array, xp: Namespace) -> Array:
    r"""$\log \sigma(x)$: $x - \log(1 + e^{x})$ below 0 and $-\log(1 + e^{-x})$ above.

    Each branch exponentiates only non-positive numbers and sees only its own
    half of the inputs (the "double where"), so neither overflows nor leaks a
    NaN into the gradient, and the gradient at 0 is exactly $1/2$.
    """
    zero = 0.0
    negative = x < 0
    below = xp.where(negative, x, zero)  # ≤ 0
    above = xp.where(negative, zero, x)  # ≥ 0
    return xp.where(negative, below - xp.log1p(xp.exp(below)), -xp.log1p(xp.exp(-above)))


def _clamped_log(p: Array, xp: Namespace) -> Array:
    """``max(log(p), -100)`` with a finite gradient at p = 0 (NaN stays NaN)."""
    floored = xp.logical_and(p >= 0, p <= _TINY)
    safe = xp.where(floored, 1.0, p)
    return xp.where(floored, _LOG_FLOOR, xp.log(safe))


def _clamped_log1m(p: Array, xp: Namespace) -> Array:
    """``max(log(1 - p), -100)``, by ``log1p(-p)``; only p = 1 reaches the floor."""
    floored = p == 1
    safe = xp.where(floored, 0.0, p)
    return xp.where(floored, _LOG_FLOOR, xp.log1p(-safe))


def mse(
    input: Array, target: Array, /, *, reduction: str = "mean", xp: Namespace | None = None
) -> Array:
    r"""Mean squared error, as ``torch.nn.functional.mse_loss``.

    $$
    \ell_i = (\hat{y}_i - y_i)^2, \qquad
    \operatorname{MSE}(\hat{y}, y) = \frac{1}{n} \sum_{i=1}^{n} \ell_i .
    $$

    Squaring penalises large errors more than small ones. Half-precision
    inputs are summed in float32.

    Args:
        input: Predictions $\hat{y}$, any shape.
        target: Targets $y$, the same shape as `input` (broadcast it yourself
            if you mean to: a silent `(N, 1)` against `(N,)` broadcast is the
            classic bug that torch only warns about).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the squared
            errors $\ell_i$, shape of `input`).
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        A 0-d array (or the shape of `input` for ``"none"``) in the floating
        dtype of the inputs, on their device.

    Raises:
        ValueError: `target` has another shape, or `reduction` is unknown.

    Examples:
        The guide's example is 0.02 (it prints 0.01): the errors are
        $0.1, -0.1, 0.2$ and $(0.01 + 0.01 + 0.04) / 3 = 0.02$.

        >>> import numpy as np
        >>> import mlequations as mle
        >>> y_true = np.array([1.0, 2.0, 3.0])
        >>> y_pred = np.array([1.1, 1.9, 3.2])
        >>> mle.mse(y_pred, y_true)
        array(0.02)
        >>> mle.mse(y_pred, y_true, reduction="none")
        array([0.01, 0.01, 0.04])

    References:
        Gauss, C. F. (1809). *Theoria motus corporum coelestium*, book 2,
        section 3.
    """
    xp = namespace(input=input, target=target, xp=xp)
    _check_reduction(reduction)
    _check_same_shape(target, input)
    out_dtype, work_dtype = float_dtypes(xp, input=input, target=target)
    error = _astype(input, work_dtype, xp) - _astype(target, work_dtype, xp)
    return _astype(_reduce(error * error, reduction, xp), out_dtype, xp)


def binary_cross_entropy(
    input: Array,
    target: Array,
    /,
    *,
    reduction: str = "mean",
    weight: Array | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``.

    $$
    \ell_i = -w_i \left[ y_i \max(\log p_i, -100)
             + (1 - y_i) \max(\log(1 - p_i), -100) \right] .
    $$

    The logarithms are clamped at $-100$ exactly as torch does, so a
    confident wrong prediction ($p = 0$ for $y = 1$) costs 100, not
    $\infty$, and the gradient stays finite (it is 0 on the clamped side,
    where torch's hand-written backward returns $\approx -10^{12}$). Inputs
    outside $[0, 1]$ give NaN (torch raises on the CPU; values are not
    checked here, so the function traces). Prefer
    :func:`binary_cross_entropy_with_logits`, which never needs the clamp.

    Args:
        input: Predicted probabilities $p \in [0, 1]$, any shape.
        target: Targets $y \in [0, 1]$ (labels or soft targets), the shape of
            `input`; integer or bool labels are fine.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        weight: Rescaling $w$, broadcastable to the shape of `input`;
            ``"mean"`` still divides by the number of elements, as in torch.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        A 0-d array (the shape of `input` for ``"none"``), in the floating
        dtype of the inputs, on their device.

    Raises:
        ValueError: Mismatched shapes or an unknown `reduction`.

    Examples:
        The guide's cross-entropy example is 0.1446 (it prints 0.1643):

        >>> import numpy as np
        >>> import mlequations as mle
        >>> y_true = np.array([1, 0, 1])
        >>> y_pred = np.array([0.9, 0.1, 0.8])
        >>> mle.binary_cross_entropy(y_pred, y_true)
        array(0.14462153)

        A certain, wrong prediction costs 100, not infinity:

        >>> mle.binary_cross_entropy(np.array([0.0]), np.array([1.0]))
        array(100.)

    References:
        Goodfellow, I., Bengio, Y. and Courville, A. (2016). *Deep Learning*,
        section 6.2.2.2. MIT Press.
    """
    xp = namespace(input=input, target=target, weight=weight, xp=xp)
    _check_reduction(reduction)
    _check_same_shape(target, input)
    _check_broadcasts("weight", weight, input.shape)
    out_dtype, work_dtype = float_dtypes(xp, input=input, target=target, weight=weight)
    p = _astype(input, work_dtype, xp)
    y = _astype(target, work_dtype, xp)
    loss = -(y * _clamped_log(p, xp) + (1 - y) * _clamped_log1m(p, xp))
    if weight is not None:
        loss = loss * _astype(weight, work_dtype, xp)
    return _astype(_reduce(loss, reduction, xp), out_dtype, xp)


def binary_cross_entropy_with_logits(
    input: Array,
    target: Array,
    /,
    *,
    reduction: str = "mean",
    weight: Array | None = None,
    pos_weight: Array | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Binary cross-entropy of logits, stable for every logit, as torch's ``_with_logits``.

    $$
    \ell_i = w_i \left[ (1 - y_i)\, x_i
             - \bigl(1 + (q - 1)\, y_i\bigr) \log \sigma(x_i) \right],
    \qquad
    \log \sigma(x) = \begin{cases}
        x - \log(1 + e^{x}) & x < 0, \\
        -\log(1 + e^{-x}) & x \ge 0,
    \end{cases}
    $$

    which is $-w\,[\,q\, y \log \sigma(x) + (1 - y) \log(1 - \sigma(x))\,]$
    rewritten with $\log(1 - \sigma(x)) = \log \sigma(x) - x$ — torch's exact
    formula. The positive-class weight $q$ (`pos_weight`) trades recall for
    precision ($q > 1$ raises recall). No exponential of a positive number is
    taken, so a logit of $\pm 10^4$ gives the exact loss and gradient where
    ``binary_cross_entropy(sigmoid(x), y)`` saturates at the clamp.

    Args:
        input: Logits $x$, any shape.
        target: Targets $y \in [0, 1]$, the shape of `input`.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        weight: Rescaling $w$, broadcastable to the shape of `input`.
        pos_weight: Weight $q$ of the positive term, broadcastable to the
            shape of `input` (typically one per class, shape `(C,)`).
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        A 0-d array (the shape of `input` for ``"none"``), in the floating
        dtype of the inputs, on their device.

    Raises:
        ValueError: Mismatched shapes or an unknown `reduction`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> logits = np.array([2.1972246, -2.1972246, 1.3862944])  # sigmoid: 0.9, 0.1, 0.8
        >>> mle.binary_cross_entropy_with_logits(logits, np.array([1.0, 0.0, 1.0]))
        array(0.14462153)
        >>> mle.binary_cross_entropy_with_logits(np.array([-1e4, 1e4]), np.array([1.0, 0.0]),
        ...                                      reduction="none")
        array([10000., 10000.])

    References:
        PyTorch documentation, ``torch.nn.BCEWithLogitsLoss``.
    """
    xp = namespace(input=input, target=target, weight=weight, pos_weight=pos_weight, xp=xp)
    _check_reduction(reduction)
    _check_same_shape(target, input)
    _check_broadcasts("weight", weight, input.shape)
    _check_broadcasts("pos_weight", pos_weight, input.shape)
    out_dtype, work_dtype = float_dtypes(
        xp, input=input, target=target, weight=weight, pos_weight=pos_weight
    )
    x = _astype(input, work_dtype, xp)
    y = _astype(target, work_dtype, xp)
    log_sigmoid = _log_sigmoid(x, xp)
    if pos_weight is not None:
        log_sigmoid = (1 + (_astype(pos_weight, work_dtype, xp) - 1) * y) * log_sigmoid
    loss = (1 - y) * x - log_sigmoid
    if weight is not None:
        loss = loss * _astype(weight, work_dtype, xp)
    return _astype(_reduce(loss, reduction, xp), out_dtype, xp)


def cross_entropy_loss(
    logits: Array,
    target: Array,
    /,
    *,
    axis: int = -1,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    weight: Array | None = None,
    ignore_index: int | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Softmax cross-entropy of logits, as ``torch.nn.functional.cross_entropy``.

    With $\log p = \operatorname{log\_softmax}(z)$ over the $C$ classes,
    class weights $w_c$ (1 when not given) and smoothing $\varepsilon$:

    **Class-index targets** $t_n$, samples not ignored $n \in \mathcal{V}$:

    $$
    \ell_n = (1 - \varepsilon)\, \bigl(-w_{t_n} \log p_{n, t_n}\bigr)
           + \frac{\varepsilon}{C} \Bigl(-\sum_{c=1}^{C} w_c \log p_{n c}\Bigr),
    \qquad
    \text{mean} = \frac{\sum_{n \in \mathcal{V}} \ell_n}{\sum_{n \in \mathcal{V}} w_{t_n}} .
    $$

    **Class-probability targets** $y_{nc}$, smoothed to
    $\tilde{y} = (1 - \varepsilon) y + \varepsilon / C$:

    $$
    \ell_n = -\sum_{c=1}^{C} w_c\, \tilde{y}_{n c} \log p_{n c},
    \qquad \text{mean} = \frac{1}{N} \sum_{n} \ell_n .
    $$

    These are torch's definitions, including its two different means: the
    weighted mean of index targets divides by the total weight of the
    counted targets, the mean of probability targets by the number of
    samples. Ignored samples contribute 0 to ``"none"`` and ``"sum"``; a
    ``"mean"`` with every sample ignored is $0/0$ = NaN, as in torch. The
    class is picked by comparison with ``arange(C)`` (a one-hot mask), not by
    gathering, so it traces; an index outside $[0, C)$ that is not
    `ignore_index` matches no class and contributes 0 (torch raises;
    values are not checked here). A class with logit $-\infty$ costs 0 if its
    target probability is 0, $+\infty$ otherwise.

    Args:
        logits: Unnormalised scores $z$, classes along `axis`, e.g. `(N, C)`,
            `(C,)` or `(N, C, ...)` with ``axis=1``.
        target: Either integer class indices with the shape of `logits`
            without `axis`, or class probabilities with the shape of `logits`
            (floating).
        axis: The class axis of `logits` (torch uses 1; the default here is
            the last axis, as in :func:`~mlequations.log_softmax`).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one loss
            per sample: the shape of `logits` without `axis`).
        label_smoothing: $\varepsilon \in [0, 1]$.
        weight: Class weights $w$ of shape `(C,)`, of any sign: the weighted
            mean is $\sum_n \ell_n / \sum_n w_{t_n}$ whatever the signs, and only
            $\sum_n w_{t_n} = 0$ divides by zero — $\pm\infty$, or NaN for
            $0/0$, as in torch.
        ignore_index: A class index whose samples are skipped (index targets
            only); ``None`` (default) skips none — torch's default is -100.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        A 0-d array (or one loss per sample for ``"none"``), in the floating
        dtype of `logits` (and of probability targets), on their device.

    Raises:
        ValueError: An unknown `reduction`; `label_smoothing` outside
            $[0, 1]$; `axis` out of range; `weight` not of shape `(C,)`;
            `target` of neither accepted shape; `ignore_index` given with
            probability targets.
        TypeError: Index targets that are not integers, or probability
            targets that are not floating.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
        >>> mle.cross_entropy_loss(logits, np.array([0, 1]))
        array(0.31853977)

        One-hot probabilities give the same loss as their class indices:

        >>> mle.cross_entropy_loss(logits, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        array(0.31853977)

        An ignored sample is left out of the mean:

        >>> mle.cross_entropy_loss(logits, np.array([0, -100]), ignore_index=-100)
        array(0.41703002)

    References:
        Szegedy, C. et al. (2016). Rethinking the Inception architecture for
        computer vision. *CVPR*, 2818-2826 (label smoothing).
    """
    xp = namespace(logits=logits, target=target, weight=weight, xp=xp)
    _check_reduction(reduction)
    ndim = logits.ndim
    if ndim < 1:
        raise ValueError("`logits` must have a class axis; got a 0-d array")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"`axis` must be an int, got {axis!r}")  # 1.0 failed in shape[1.0]
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"`axis` {axis} is out of range for `logits` of shape {tuple(logits.shape)}"
        )
    axis %= ndim
    n_classes = logits.shape[axis]
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"`label_smoothing` must lie in [0, 1]; got {label_smoothing!r}")
    if weight is not None and tuple(weight.shape) != (n_classes,):
        raise ValueError(
            f"`weight` must have shape (C,) = ({n_classes},), one weight per class of `logits` "
            f"of shape {tuple(logits.shape)}; got shape {tuple(weight.shape)}"
        )
    sample_shape = tuple(logits.shape[:axis]) + tuple(logits.shape[axis + 1 :])
    probabilities = tuple(target.shape) == tuple(logits.shape)
    if not probabilities and tuple(target.shape) != sample_shape:
        raise ValueError(
            f"`target` must hold class indices of shape {sample_shape} (`logits` without axis "
            f"{axis}) or class probabilities of shape {tuple(logits.shape)}; "
            f"got shape {tuple(target.shape)}"
        )
    if probabilities and not xp.isdtype(target.dtype, "real floating"):
        raise TypeError(
            f"`target` of the shape of `logits` holds class probabilities and must be "
            f"floating; got dtype {target.dtype}"
        )
    if not probabilities and not xp.isdtype(target.dtype, "integral"):
        raise TypeError(f"`target` of class indices must be integers; got dtype {target.dtype}")
    if probabilities and ignore_index is not None:
        raise ValueError("`ignore_index` applies to class-index targets, not probabilities")

    floating = {"target": target} if probabilities else {}
    out_dtype, work_dtype = float_dtypes(xp, logits=logits, weight=weight, **floating)
    z = _last(_astype(logits, work_dtype, xp), axis, xp)  # (..., C)
    log_p = log_softmax(z, axis=-1, xp=xp)  # (..., C)
    w = None if weight is None else _astype(weight, work_dtype, xp)  # (C,)
    eps = label_smoothing
    if probabilities:
        y = _last(_astype(target, work_dtype, xp), axis, xp)  # (..., C)
        loss = _soft_cross_entropy(log_p, y * (1 - eps) + eps / n_classes if eps else y, w, xp)
        return _astype(_reduce(loss, reduction, xp), out_dtype, xp)

    zero = 0.0
    classes = xp.arange(n_classes, dtype=target.dtype, device=device(target))  # (C,)
    hit = target[..., None] == classes  # (..., C), the one-hot target
    kept = None if ignore_index is None else target != ignore_index  # (...)
    if kept is not None:
        hit = xp.logical_and(hit, kept[..., None])
    weighted_log_p = log_p if w is None else log_p * w  # (..., C)
    loss = xp.sum(xp.where(hit, -weighted_log_p, zero), axis=-1)  # (...), -w_t log p_t; +0
    parts = [loss]  # the terms torch divides by Σ w_t one by one
    if eps:
        smooth = -xp.sum(weighted_log_p, axis=-1)  # (...)
        if kept is not None:
            smooth = xp.where(kept, smooth, zero)
        parts = [(1 - eps) * loss, (eps / n_classes) * smooth]
        loss = parts[0] + parts[1]
    if reduction == "mean":
        if w is None:  # Σ w_t is the number of counted targets
            total = xp.sum(_astype(hit, log_p.dtype, xp), keepdims=True)
        else:
            total = xp.sum(xp.where(hit, w, zero), keepdims=True)  # Σ w_t, counted
        sums = [xp.sum(part, keepdims=True) for part in parts]  # each (1, ..., 1)
        if w is None and len(sums) == 1:
            # No target counted means no loss either: the sum is 0 where the count is,
            # and 0 / 0 = NaN is the one quotient by zero (what _divide gives then).
            counted = total > 0
            quotient = sums[0] / xp.where(counted, total, 1.0)
            mean = xp.reshape(xp.where(counted, quotient, math.nan), ())
        else:
            mean = xp.reshape(_divide(sums, total, xp), ())  # 0-d, also on NumPy
        return _astype(mean, out_dtype, xp)
    return _astype(_reduce(loss, reduction, xp), out_dtype, xp)


def _last(x: Array, axis: int, xp: Namespace) -> Array:
    """`x` with `axis` (non-negative) moved last; no call when it is last already."""
    return x if axis == x.ndim - 1 else xp.moveaxis(x, axis, -1)


def _divide(numerators: list[Array], denominator: Array, xp: Namespace) -> Array:
    """``Σ_k numerators[k] / denominator``, as torch divides, without NumPy's warnings.

    The weighted mean of :func:`cross_entropy_loss` divides by Σ w, which may be
    negative (issue 22: a ``total > 0`` test made every negative total NaN where
    torch gives Σ w l / Σ w). Only Σ w = 0 — no target counted, or weights that
    cancel — divides by zero, and then each term is what IEEE 754 gives (torch's
    total starts from +0, so x / 0 has the sign of x, and 0 / 0 is NaN); the terms'
    sum is ±inf if they all have that sign, NaN otherwise (∞ − ∞, 0 · ∞, NaN).
    """
    nonzero = denominator != 0
    safe = xp.where(nonzero, denominator, 1.0)
    quotient = numerators[0] / safe
    positive, negative = numerators[0] > 0, numerators[0] < 0
    for numerator in numerators[1:]:
        quotient = quotient + numerator / safe
        positive = xp.logical_and(positive, numerator > 0)
        negative = xp.logical_and(negative, numerator < 0)
    nan = scalar(math.nan, quotient, xp=xp)  # an array: `where` wants one of its two
    by_zero = xp.where(positive, math.inf, xp.where(negative, -math.inf, nan))
    return xp.where(nonzero, quotient, by_zero)


def _soft_cross_entropy(log_p: Array, y: Array, w: Array | None, xp: Namespace) -> Array:
    """``-Σ_c w_c y_c log p_c`` per sample, with ``0 · log 0 = 0`` for classes of logit -inf."""
    zero = 0.0
    masked = log_p == -xp.inf  # a class whose logit is -inf
    terms = y * xp.where(masked, zero, log_p)  # (..., C)
    terms = xp.where(xp.logical_and(masked, y > 0), -xp.inf, terms)
    if w is not None:
        terms = terms * w
    return -xp.sum(terms, axis=-1)  # (...)
