r"""Information theory: entropy, KL divergence, cross-entropy, mutual information.

Every quantity is a sum of terms $p \log(\cdot)$ with the convention
$0 \log 0 = 0$ (the limit as $p \to 0$), and $p \log(p / 0) = +\infty$ for
$p > 0$. Both are implemented with the "double where": the argument of the
logarithm is replaced by 1 where it would be 0 *before* the log is taken, and
the term is selected afterwards, so no NaN appears in the values nor in the
gradients that torch autograd or ``jax.grad`` compute through them.

Results are in nats (natural logarithm) unless `base` is given: ``base=2``
gives bits.
"""

from __future__ import annotations

import math

from ._xp import Array, Namespace, scalar
from .probability import _broadcast_shape, _cast, _check_axis, _prepare

__all__ = [
    "cross_entropy",
    "entropy",
    "information_gain",
    "kl_divergence",
    "mutual_information",
]


def _log_base(base: float | None) -> float | None:
    """``log(base)`` to divide by, ``None`` for nats; a ValueError naming `base` if invalid."""
    if base is None:
        return None
    if isinstance(base, bool) or not isinstance(base, int | float):
        raise TypeError(f"`base` must be a positive number other than 1, or None; got {base!r}")
    if not (base > 0 and base != 1 and math.isfinite(base)):
        raise ValueError(f"`base` must be a positive number other than 1, or None; got {base!r}")
    return math.log(base)


def _in_base(x: Array, scale: float | None) -> Array:
    """`x` (in nats) divided by ``log(base)``, as returned by :func:`_log_base`."""
    return x if scale is None else x / scale


def _xlogy(x: Array, y: Array, xp: Namespace) -> Array:
    r"""$x \log y$ with $0 \log y = 0$ (any $y \ge 0$) and $x \log 0 = -\infty$ for $x > 0$."""
    one = 1.0
    zero = 0.0
    y_positive = y > 0
    log_y = xp.log(xp.where(y_positive, y, one))  # never log 0
    term = xp.where(y_positive, x * log_y, -math.inf)
    return xp.where(x > 0, term, zero)


def _xlogx(x: Array, xp: Namespace) -> Array:
    r"""$x \log x$ with $0 \log 0 = 0$: :func:`_xlogy` with $y = x$, in two operations fewer."""
    positive = x > 0
    return xp.where(positive, x * xp.log(xp.where(positive, x, 1.0)), 0.0)


def _rel_entr(p: Array, q: Array, xp: Namespace) -> Array:
    r"""$p \log(p / q)$: 0 where $p = 0$, $+\infty$ where $q = 0 < p$."""
    one = 1.0
    p_positive, q_positive = p > 0, q > 0
    # log p - log q, not log(p / q): the ratio overflows for tiny q (1 / 1e-45 in float32).
    log_ratio = xp.log(xp.where(p_positive, p, one)) - xp.log(xp.where(q_positive, q, one))
    term = xp.where(q_positive, p * log_ratio, math.inf)
    return xp.where(p_positive, term, 0.0)


def entropy(
    p: Array,
    /,
    *,
    axis: int = -1,
    base: float | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Shannon entropy of a discrete distribution, with $0 \log 0 = 0$.

    $$
    H(p) = -\sum_{i=1}^{C} p_i \log p_i , \qquad 0 \le H(p) \le \log C .
    $$

    Entries with $p_i = 0$ contribute exactly 0, and their gradient is 0 rather
    than NaN (the double where). `p` is used as given: unlike
    ``scipy.stats.entropy`` it is not renormalised to sum to 1.

    Args:
        p: Probabilities of shape `(..., C)` (outcomes along `axis`).
        axis: The axis of the $C$ outcomes.
        base: Logarithm base; ``None`` gives nats, ``2`` bits.
        xp: Array namespace; inferred from `p` when omitted.

    Returns:
        $H(p)$ with `axis` removed, in the dtype of `p` (integers give the
        default float; half precision is summed in float32) and on its device.

    Examples:
        The guide's coins, in nats and in bits (the guide prints 0.4699 for the
        biased coin; the right value is 0.3251 nats = 0.4690 bits):

        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.entropy(np.asarray([[0.5, 0.5], [0.9, 0.1]]))
        array([0.69314718, 0.32508297])
        >>> mle.entropy(np.asarray([[0.5, 0.5], [0.9, 0.1]]), base=2)
        array([1.       , 0.46899559])

        A certain outcome carries no information, and a zero is harmless:

        >>> mle.entropy(np.asarray([0.0, 1.0, 0.0]))
        array(0.)

    References:
        Shannon, C. E. (1948). A mathematical theory of communication. *Bell
        System Technical Journal*, 27(3), 379-423.
    """
    scale = _log_base(base)
    xp, (p,), out_dtype = _prepare(xp, p=p)
    axis = _check_axis(axis, p.ndim)
    h = 0.0 - xp.sum(_xlogx(p, xp), axis=axis)  # (...); 0 - 0 is +0, not -0
    return _cast(xp, _in_base(h, scale), out_dtype)


def kl_divergence(
    p: Array,
    q: Array,
    /,
    *,
    axis: int = -1,
    base: float | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Kullback-Leibler divergence of $q$ from $p$ (relative entropy).

    $$
    D_{\mathrm{KL}}(p \,\|\, q) = \sum_{i=1}^{C} p_i \log \frac{p_i}{q_i} \;\ge\; 0,
    $$

    with $0 \log(0 / q) = 0$ for every $q \ge 0$ and $p \log(p / 0) = +\infty$
    for $p > 0$ (as ``scipy.special.rel_entr``). It is 0 exactly when $p = q$,
    and it is not symmetric. Gradients are finite everywhere, including at
    $p_i = 0$. The argument order is the mathematician's; note that
    ``torch.nn.functional.kl_div(input, target)`` takes $\log q$ first.

    Args:
        p: The reference distribution, shape `(..., C)`.
        q: The approximating distribution, broadcastable with `p`.
        axis: The axis of the $C$ outcomes (of the broadcast shape).
        base: Logarithm base; ``None`` gives nats, ``2`` bits.
        xp: Array namespace; inferred from the inputs when omitted.

    Returns:
        $D_{\mathrm{KL}}(p \| q)$ with `axis` removed from the broadcast shape,
        in the inputs' floating dtype and on their device.

    Examples:
        The guide's example:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.kl_divergence(np.asarray([0.7, 0.3]), np.asarray([0.5, 0.5]))
        array(0.08228288)

        Zeros in $p$ cost nothing; zeros in $q$ where $p > 0$ cost everything:

        >>> p = np.asarray([[0.0, 1.0], [0.5, 0.5]])
        >>> q = np.asarray([[0.5, 0.5], [1.0, 0.0]])
        >>> mle.kl_divergence(p, q)
        array([0.69314718,        inf])

    References:
        Kullback, S., & Leibler, R. A. (1951). On information and sufficiency.
        *Annals of Mathematical Statistics*, 22(1), 79-86.
    """
    scale = _log_base(base)
    xp, (p, q), out_dtype = _prepare(xp, p=p, q=q)
    shape = _broadcast_shape(p=p, q=q)
    axis = _check_axis(axis, len(shape))
    d = xp.sum(_rel_entr(p, q, xp), axis=axis)  # (...)
    return _cast(xp, _in_base(d, scale), out_dtype)


def cross_entropy(
    p: Array,
    q: Array,
    /,
    *,
    axis: int = -1,
    base: float | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Cross-entropy of $q$ relative to $p$: the cost of coding $p$ with $q$'s code.

    $$
    H(p, q) = -\sum_{i=1}^{C} p_i \log q_i = H(p) + D_{\mathrm{KL}}(p \,\|\, q) .
    $$

    Terms with $p_i = 0$ are 0 even where $q_i = 0$; a $q_i = 0$ under
    $p_i > 0$ gives $+\infty$. For a loss on logits and class labels, see
    :func:`mlequations.cross_entropy_loss`.

    Args:
        p: The true distribution, shape `(..., C)`.
        q: The predicted distribution, broadcastable with `p`.
        axis: The axis of the $C$ outcomes (of the broadcast shape).
        base: Logarithm base; ``None`` gives nats, ``2`` bits.
        xp: Array namespace; inferred from the inputs when omitted.

    Returns:
        $H(p, q)$ with `axis` removed from the broadcast shape, in the inputs'
        floating dtype and on their device.

    Examples:
        The guide's binary cross-entropy example is the mean over three samples
        of $H([y, 1 - y], [\hat y, 1 - \hat y])$; it is 0.1446 (the guide
        prints 0.1643):

        >>> import numpy as np
        >>> import mlequations as mle
        >>> y = np.asarray([1.0, 0.0, 1.0])
        >>> y_hat = np.asarray([0.9, 0.1, 0.8])
        >>> p = np.stack([y, 1 - y], axis=-1)
        >>> q = np.stack([y_hat, 1 - y_hat], axis=-1)
        >>> float(np.mean(mle.cross_entropy(p, q)))
        0.14462152754328741

        Cross-entropy is entropy plus KL divergence:

        >>> p, q = np.asarray([0.7, 0.3]), np.asarray([0.5, 0.5])
        >>> bool(np.isclose(mle.cross_entropy(p, q), mle.entropy(p) + mle.kl_divergence(p, q)))
        True
    """
    scale = _log_base(base)
    xp, (p, q), out_dtype = _prepare(xp, p=p, q=q)
    shape = _broadcast_shape(p=p, q=q)
    axis = _check_axis(axis, len(shape))
    h = 0.0 - xp.sum(_xlogy(p, q, xp), axis=axis)  # (...)
    return _cast(xp, _in_base(h, scale), out_dtype)


def mutual_information(
    joint: Array,
    /,
    *,
    base: float | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Mutual information of two discrete variables, from their joint table.

    $$
    I(X; Y) = \sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)\, p(y)}
            = D_{\mathrm{KL}}\bigl(p(x, y) \,\|\, p(x)\, p(y)\bigr) \;\ge\; 0,
    $$

    with $p(x) = \sum_y p(x, y)$ and $p(y) = \sum_x p(x, y)$. It is 0 exactly
    when $X$ and $Y$ are independent. The logarithm is taken as
    $\log p(x, y) - \log p(x) - \log p(y)$, so tiny marginals whose product
    underflows still give a finite result. The table is divided by its total first,
    so a contingency table of counts works as well as a probability table (as
    in ``sklearn.metrics.mutual_info_score(None, None, contingency=...)``), and
    the result is clipped at 0 against rounding, as scikit-learn does.

    Args:
        joint: $p(x, y)$ or counts, shape `(..., X, Y)`: the last two axes are
            the two variables, leading axes are a batch of tables.
        base: Logarithm base; ``None`` gives nats, ``2`` bits.
        xp: Array namespace; inferred from `joint` when omitted.

    Returns:
        $I(X; Y)$ of shape `(...)`, in the dtype of `joint` (integer counts give
        the default float) and on its device. An all-zero table gives 0.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.mutual_information(np.asarray([[0.5, 0.0], [0.0, 0.5]]), base=2)
        array(1.)
        >>> mle.mutual_information(np.outer([0.3, 0.7], [0.6, 0.4]))  # independent
        array(0.)
    """
    scale = _log_base(base)
    xp, (joint,), out_dtype = _prepare(xp, joint=joint)
    if joint.ndim < 2:
        raise ValueError(
            f"`joint` must have at least 2 dimensions (..., X, Y), got shape {tuple(joint.shape)}"
        )
    zero = 0.0
    total = xp.sum(joint, axis=(-2, -1), keepdims=True)  # (..., 1, 1)
    positive = total > 0
    p_xy = xp.where(positive, joint / xp.where(positive, total, 1.0), zero)
    p_x = xp.sum(p_xy, axis=-1, keepdims=True)  # (..., X, 1)
    p_y = xp.sum(p_xy, axis=-2, keepdims=True)  # (..., 1, Y)
    # log p(x, y) - log p(x) - log p(y): the product p(x) p(y) is never formed, as it
    # underflows to 0 for tiny marginals (1e-30 * 1e-30 in float32) and would turn a
    # finite term into +inf. p(x, y) > 0 implies p(x) > 0 and p(y) > 0.
    one = 1.0
    support = p_xy > 0
    log_ratio = (
        xp.log(xp.where(support, p_xy, one))
        - xp.log(xp.where(support, p_x, one))
        - xp.log(xp.where(support, p_y, one))
    )  # (..., X, Y)
    mi = xp.sum(xp.where(support, p_xy * log_ratio, zero), axis=(-2, -1))  # (...)
    mi = xp.maximum(mi, scalar(0.0, mi, xp=xp))
    return _cast(xp, _in_base(mi, scale), out_dtype)


def information_gain(
    parent_counts: Array,
    child_counts: Array,
    /,
    *,
    base: float | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Information gain of a decision-tree split, from class counts.

    $$
    \mathrm{IG} = H\!\left(\frac{n}{N}\right)
      - \sum_{k=1}^{K} \frac{N_k}{N}\, H\!\left(\frac{n_k}{N_k}\right),
    \qquad N = \sum_c n_c,\quad N_k = \sum_c n_{k c},
    $$

    where $n$ are the parent node's class counts, $n_k$ those of child $k$ and
    $H$ is :func:`entropy`. For a split that partitions the parent
    ($\sum_k n_k = n$) this is the mutual information between the class and
    the branch taken, so $0 \le \mathrm{IG} \le H(n / N)$. Empty children (and
    an empty parent) contribute 0.

    Args:
        parent_counts: Class counts of the node, shape `(..., C)`.
        child_counts: Class counts of its $K$ children, shape `(..., K, C)`;
            leading axes broadcast with those of `parent_counts`.
        base: Logarithm base; ``None`` gives nats, ``2`` bits.
        xp: Array namespace; inferred from the inputs when omitted.

    Returns:
        The gain, of shape `(...)`, in the inputs' floating dtype (integer
        counts give the default float) and on their device.

    Examples:
        A split of 5 positives and 5 negatives into (4, 1) and (1, 4):

        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.information_gain(np.asarray([5, 5]), np.asarray([[4, 1], [1, 4]]), base=2)
        array(0.27807191)

        A perfect split gains the parent's whole entropy:

        >>> mle.information_gain(np.asarray([5, 5]), np.asarray([[5, 0], [0, 5]]), base=2)
        array(1.)

    References:
        Quinlan, J. R. (1986). Induction of decision trees. *Machine Learning*,
        1(1), 81-106.
    """
    scale = _log_base(base)
    xp, (parent, children), out_dtype = _prepare(
        xp, parent_counts=parent_counts, child_counts=child_counts
    )
    if parent.ndim < 1 or children.ndim < 2:
        raise ValueError(
            "`parent_counts` must have shape (..., C) and `child_counts` shape (..., K, C); "
            f"got {tuple(parent.shape)} and {tuple(children.shape)}"
        )
    if parent.shape[-1] != children.shape[-1]:
        raise ValueError(
            f"`parent_counts` with shape {tuple(parent.shape)} and `child_counts` with shape "
            f"{tuple(children.shape)} must have the same number of classes C (last axis)"
        )
    _broadcast_shape(parent_counts=parent[..., None, :], child_counts=children)
    n = xp.sum(parent, axis=-1)  # (...)
    n_k = xp.sum(children, axis=-1)  # (..., K)
    h_parent = _entropy_of_counts(parent, n, xp)  # (...)
    h_children = _entropy_of_counts(children, n_k, xp)  # (..., K)
    n_safe = xp.where(n > 0, n, 1.0)
    weights = n_k / n_safe[..., None]  # (..., K)
    gain = h_parent - xp.sum(weights * h_children, axis=-1)  # (...)
    return _cast(xp, _in_base(gain, scale), out_dtype)


def _entropy_of_counts(counts: Array, total: Array, xp: Namespace) -> Array:
    """Entropy (nats) of ``counts / total`` along the last axis; 0 where ``total == 0``."""
    positive = total > 0
    safe = xp.where(positive, total, 1.0)
    p = counts / safe[..., None]  # (..., C), all 0 where total == 0
    return 0.0 - xp.sum(_xlogx(p, xp), axis=-1)
