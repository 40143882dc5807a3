r"""Activations: softmax, log-softmax, log-sum-exp and the logistic sigmoid.

Each turns unbounded real scores into probabilities (or their logarithms), and
each is written so that no score, however large, overflows: the exponentials
are taken only of non-positive numbers.
"""

from __future__ import annotations

from ._xp import Array, Namespace, device, float_dtypes, namespace, scalar

__all__ = ["log_softmax", "logsumexp", "sigmoid", "softmax"]


def _shifted(x: Array, axis: int | tuple[int, ...] | None, xp: Namespace) -> tuple[Array, Array]:
    """Return ``(x - m, m)`` with ``m`` the max along `axis`, replaced by 0 where infinite.

    A row of all ``-inf`` has ``m = -inf`` and ``x - m = -inf - (-inf) = NaN``;
    shifting such a row by 0 instead leaves ``exp(x - m) = 0``, so the row's
    log-sum-exp comes out as ``log 0 = -inf``, as it should.

    An axis of length 0 has no max (the libraries raise); such a row needs no
    shift, so ``m = 0`` there and the empty sum gives ``log 0 = -inf`` again.
    An empty `x` needs no shift at all (and Dask fails on a max over an empty
    chunk even along a non-empty axis).
    """
    axes = range(x.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
    reduced = {a % x.ndim for a in axes}
    if any(n == 0 for n in x.shape):  # a static shape check, fine under jit
        shape = tuple(1 if i in reduced else n for i, n in enumerate(x.shape))
        return x, xp.zeros(shape, dtype=x.dtype, device=device(x))
    m = xp.max(x, axis=axis, keepdims=True)  # (..., 1, ...)
    m = xp.where(xp.isfinite(m), m, scalar(0.0, m, xp=xp))
    return x - m, m


def _prepare(x: Array, xp: Namespace | None) -> tuple[Namespace, Array, object]:
    """Namespace, `x` in its compute dtype, and the dtype to return."""
    xp = namespace(x=x, xp=xp)
    out_dtype, work_dtype = float_dtypes(xp, x=x)
    return xp, xp.astype(x, work_dtype, copy=False), out_dtype


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
        axis: Axis or axes to reduce; ``None`` reduces all of them.
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
    xp, x, out_dtype = _prepare(x, xp)
    z, m = _shifted(x, axis, xp)  # z ≤ 0
    s = xp.sum(xp.exp(z), axis=axis, keepdims=True)  # (..., 1, ...), 0 only for all -inf
    # The "double where": log never sees 0, so neither a warning nor a NaN gradient.
    positive = s > 0
    one = scalar(1.0, s, xp=xp)
    lse = xp.where(positive, xp.log(xp.where(positive, s, one)) + m, scalar(-xp.inf, s, xp=xp))
    if not keepdims:
        lse = xp.squeeze(lse, axis=axis) if axis is not None else xp.reshape(lse, ())
    return xp.astype(lse, out_dtype, copy=False)


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
        axis: Axis that indexes the $C$ classes.
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
    xp, x, out_dtype = _prepare(x, xp)
    z, _ = _shifted(x, axis, xp)
    e = xp.exp(z)  # (..., C), each ≤ 1
    return xp.astype(e / xp.sum(e, axis=axis, keepdims=True), out_dtype, copy=False)


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
        axis: Axis that indexes the $C$ classes.
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
    xp, x, out_dtype = _prepare(x, xp)
    z, _ = _shifted(x, axis, xp)
    s = xp.sum(xp.exp(z), axis=axis, keepdims=True)  # (..., 1, ...), 0 only for empty rows
    # The "double where" of logsumexp: log 0 = -inf without a divide-by-zero warning.
    positive = s > 0
    one = scalar(1.0, s, xp=xp)
    lse = xp.where(positive, xp.log(xp.where(positive, s, one)), scalar(-xp.inf, s, xp=xp))
    return xp.astype(z - lse, out_dtype, copy=False)


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
    xp, x, out_dtype = _prepare(x, xp)
    z = xp.exp(-xp.abs(x))  # in (0, 1]
    out = xp.where(x >= 0, 1 / (1 + z), z / (1 + z))
    return xp.astype(out, out_dtype, copy=False)
