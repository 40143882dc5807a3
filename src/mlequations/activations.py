r"""Activations: softmax, log-softmax, log-sum-exp and the logistic sigmoid.

Each turns unbounded real scores into probabilities (or their logarithms), and
each is written so that no score, however large, overflows: the exponentials
are taken only of non-positive numbers.
"""

from __future__ import annotations

from ._xp import Array, Namespace, device, float_dtypes, namespace

__all__ = ["log_softmax", "logsumexp", "sigmoid", "softmax"]


def _axes(axis: object, ndim: int) -> tuple[int, ...]:
    """`axis` as a tuple of distinct non-negative axes of an array with `ndim` dimensions.

    ``None`` is every axis. A 0-d array has one element, a row of one, and takes
    ``axis=0`` or ``axis=-1`` as PyTorch's ``dim`` does (issue 22: it raised a
    ``ZeroDivisionError`` from ``axis % 0``). An axis the array cannot have is a
    ``ValueError`` naming `axis`, never a silent wrap-around.
    """
    if type(axis) is int and -max(ndim, 1) <= axis < max(ndim, 1):  # the common case
        return (axis % max(ndim, 1),)
    if axis is None:
        return tuple(range(max(ndim, 1)))
    axes = (axis,) if isinstance(axis, int) else axis
    if not isinstance(axes, tuple) or any(
        isinstance(a, bool) or not isinstance(a, int) for a in axes
    ):
        raise TypeError(f"`axis` must be an int, a tuple of ints or None, got {axis!r}")
    n = max(ndim, 1)  # a 0-d array has the one axis 0 (or -1), as in PyTorch
    if any(not -n <= a < n for a in axes):
        raise ValueError(
            f"`axis`={axis!r} is out of range for an array with {ndim} dimensions "
            f"(valid: {-n} to {n - 1})"
        )
    normalised = tuple(a % n for a in axes)
    if len(set(normalised)) != len(normalised):
        raise ValueError(f"`axis`={axis!r} names an axis twice")
    return normalised


def _sum(x: Array, axes: tuple[int, ...], xp: Namespace) -> Array:
    """The sum over `axes`, kept as length-1 axes; no axes, no sum (torch reads ``()`` as all)."""
    return xp.sum(x, axis=axes, keepdims=True) if axes else x


def _shifted(
    x: Array, axes: tuple[int, ...], xp: Namespace, *, guard: bool = True
) -> tuple[Array, Array]:
    """Return ``(x - m, m)`` with ``m`` the max along `axes`, replaced by 0 where infinite.

    A row of all ``-inf`` has ``m = -inf`` and ``x - m = -inf - (-inf) = NaN``;
    shifting such a row by 0 instead leaves ``exp(x - m) = 0``, so the row's
    log-sum-exp comes out as ``log 0 = -inf``, as it should. Without `guard`
    ``m`` is the plain max, for the callers whose such rows are NaN either way
    (softmax, log-softmax): two operations fewer on every call.

    An axis of length 0 has no max (the libraries raise); such a row needs no
    shift, so ``m = 0`` there and the empty sum gives ``log 0 = -inf`` again.
    An empty `x` needs no shift at all (and Dask fails on a max over an empty
    chunk even along a non-empty axis).
    """
    if any(n == 0 for n in x.shape):  # a static shape check, fine under jit
        shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
        return x, xp.zeros(shape, dtype=x.dtype, device=device(x))
    m = xp.max(x, axis=axes, keepdims=True) if axes else x  # (..., 1, ...)
    if guard:
        m = xp.where(xp.isfinite(m), m, 0.0)
    return x - m, m


def _prepare(
    x: Array, axis: object, xp: Namespace | None
) -> tuple[Namespace, Array, tuple[int, ...], object, bool]:
    """Namespace, `x` in its compute dtype, its axes, the dtype to return, whether 0-d.

    A 0-d `x` comes back as a row of one, shape ``(1,)``, reduced along axis 0.
    """
    xp = namespace(x=x, xp=xp)
    out_dtype, work_dtype = float_dtypes(xp, x=x)
    axes = _axes(axis, x.ndim)
    if x.dtype != work_dtype:
        x = xp.astype(x, work_dtype)
    zero_d = x.ndim == 0
    if zero_d:
        x = xp.reshape(x, (1,))  # (1,): reduced along axis 0, then made 0-d again
    return xp, x, axes, out_dtype, zero_d


def _finish(out: Array, zero_d: bool, out_dtype: object, xp: Namespace) -> Array:
    """`out` in the dtype to return; a 0-d input gives a 0-d result, as in PyTorch."""
    if zero_d:
        out = xp.reshape(out, ())
    return out if out.dtype == out_dtype else xp.astype(out, out_dtype)


def logsumexp(
    x: Array,
    /,
    *,
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
    xp: Namespace | None = None,
) -> Array:
    r"""Log of the sum of exponentials, without overflow.

    $$
    \operatorname{LSE}(x) = \log \sum_i e^{x_i} = m + \log \sum_i e^{x_i - m},
    \qquad m = \max_i x_i .
    $$

    Every exponent $x_i - m$ is $\le 0$, so no term overflows and the largest is
    exactly 1, so the sum never underflows to 0 unless every $x_i = -\infty$ — and
    then the result is $-\infty$, not NaN. Half-precision input is summed in
    float32.

    Args:
        x: Real array of any shape; integer input is promoted to the default
            floating dtype.
        axis: Axis or axes to reduce; ``None`` reduces all of them, ``()``
            none. A 0-d `x` takes ``0`` or ``-1`` and gives `x` back, as
            ``torch.logsumexp``; any other axis is a ``ValueError``.
        keepdims: Keep the reduced axes with length 1.
        xp: Array namespace; inferred from `x` when omitted.

    Returns:
        The log-sum-exp, in the dtype and on the device of `x`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.logsumexp(np.asarray([1000.0, 1000.0]))
        array(1000.69314718)
        >>> mle.logsumexp(np.asarray([[-np.inf, -np.inf], [0.0, 0.0]]), axis=-1)
        array([      -inf, 0.69314718])
    """
    xp, x, axes, out_dtype, zero_d = _prepare(x, axis, xp)
    z, m = _shifted(x, axes, xp)  # z ≤ 0
    s = _sum(xp.exp(z), axes, xp)  # (..., 1, ...), 0 only for all -inf
    # The "double where": log never sees 0, so neither a warning nor a NaN gradient.
    # Tested as `s == 0`, not `s > 0`, so that a NaN in the row stays NaN (it gave -inf).
    empty = s == 0
    lse = xp.where(empty, -xp.inf, xp.log(xp.where(empty, 1.0, s)) + m)
    if not keepdims and axes:
        lse = xp.squeeze(lse, axis=axes)
    return _finish(lse, zero_d, out_dtype, xp)


def softmax(x: Array, /, *, axis: int = -1, xp: Namespace | None = None) -> Array:
    r"""Turn real-valued scores into a probability distribution along `axis`.

    $$
    \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_{j=1}^{C} e^{x_j - m}},
    \qquad m = \max_j x_j .
    $$

    Subtracting $m$ changes nothing (numerator and denominator both gain a factor
    $e^{-m}$) but keeps every exponent $\le 0$, so nothing overflows. A row of
    all $-\infty$ has no distribution and gives NaN, as in SciPy, PyTorch and
    JAX; use :func:`logsumexp` (which gives $-\infty$) to detect such rows.

    Args:
        x: Scores ("logits") of shape `(..., C)`, real dtype; integer input is
            promoted to the default floating dtype.
        axis: Axis that indexes the $C$ classes. A 0-d `x` is one class:
            ``axis`` 0 or -1 gives 1, as ``torch.softmax``; any other axis
            is a ``ValueError``.
        xp: Array namespace; inferred from `x` when omitted.

    Returns:
        Array with the shape, dtype and device of `x`; entries lie in $[0, 1]$
        and sum to 1 along `axis`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.softmax(np.asarray([1.0, 2.0, 3.0]))
        array([0.09003057, 0.24472847, 0.66524096])

        Adding a constant to every score changes nothing:

        >>> mle.softmax(np.asarray([1001.0, 1002.0, 1003.0]))
        array([0.09003057, 0.24472847, 0.66524096])

    References:
        Bridle, J. S. (1990). Probabilistic interpretation of feedforward
        classification network outputs. In *Neurocomputing*, 227-236.
    """
    xp, x, axes, out_dtype, zero_d = _prepare(x, axis, xp)
    # The plain max: a row of -inf, or with a +inf or a NaN, is NaN, guarded or not.
    z, _ = _shifted(x, axes, xp, guard=False)
    e = xp.exp(z)  # (..., C), each ≤ 1
    return _finish(e / _sum(e, axes, xp), zero_d, out_dtype, xp)


def log_softmax(x: Array, /, *, axis: int = -1, xp: Namespace | None = None) -> Array:
    r"""Logarithm of :func:`softmax`, computed without ever forming the softmax.

    $$
    \log \operatorname{softmax}(x)_i = (x_i - m) - \log \sum_{j=1}^{C} e^{x_j - m},
    \qquad m = \max_j x_j .
    $$

    Taking ``log(softmax(x))`` instead would round tiny probabilities to 0 and
    return $-\infty$; this form stays finite for every finite score.

    Args:
        x: Scores of shape `(..., C)`, real dtype (integers are promoted).
        axis: Axis that indexes the $C$ classes. A 0-d `x` is one class:
            ``axis`` 0 or -1 gives 0, as ``torch.log_softmax``.
        xp: Array namespace; inferred from `x` when omitted.

    Returns:
        Array with the shape, dtype and device of `x`; its exponentials sum to 1
        along `axis`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.log_softmax(np.asarray([0.0, 1000.0]))
        array([-1000.,     0.])
    """
    xp, x, axes, out_dtype, zero_d = _prepare(x, axis, xp)
    # Shifted by the plain max, s = Σ exp(x - m) ≥ 1 (the max's own term is 1) unless
    # m is not finite — a row of -inf, a +inf or a NaN — and then s is NaN and so is
    # the row, as in PyTorch and JAX. So log s needs no guard, except for an empty
    # class axis (a static shape), whose s = 0 takes the double where of logsumexp.
    z, _ = _shifted(x, axes, xp, guard=False)
    s = _sum(xp.exp(z), axes, xp)  # (..., 1, ...)
    if any(n == 0 for n in x.shape):
        empty = s == 0
        return _finish(
            z - xp.where(empty, -xp.inf, xp.log(xp.where(empty, 1.0, s))), zero_d, out_dtype, xp
        )
    return _finish(z - xp.log(s), zero_d, out_dtype, xp)


def sigmoid(x: Array, /, *, xp: Namespace | None = None) -> Array:
    r"""The logistic sigmoid, stable for every real input.

    $$
    \sigma(x) = \frac{1}{1 + e^{-x}} =
    \begin{cases}
      \dfrac{1}{1 + e^{-|x|}} & x \ge 0, \\[1ex]
      \dfrac{e^{-|x|}}{1 + e^{-|x|}} & x < 0 .
    \end{cases}
    $$

    Both branches use $z = e^{-|x|} \in (0, 1]$, which never overflows; the
    naive $1 / (1 + e^{-x})$ overflows for $x \lesssim -89$ in float32 (and its
    gradient turns to NaN), and $e^x / (1 + e^x)$ gives $\infty / \infty$ for
    large $x$.

    Args:
        x: Real array of any shape (integers are promoted).
        xp: Array namespace; inferred from `x` when omitted.

    Returns:
        Array with the shape, dtype and device of `x`, entries in $[0, 1]$.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.sigmoid(np.asarray([-1e4, 0.0, 1e4]))
        array([0. , 0.5, 1. ])
    """
    xp = namespace(x=x, xp=xp)
    out_dtype, work_dtype = float_dtypes(xp, x=x)
    if x.dtype != work_dtype:
        x = xp.astype(x, work_dtype)
    z = xp.exp(-xp.abs(x))  # in (0, 1]
    # One division for both branches: 1 / (1 + z) where x >= 0, z / (1 + z) below.
    out = xp.where(x >= 0, 1.0, z) / (1 + z)
    return out if out.dtype == out_dtype else xp.astype(out, out_dtype)
