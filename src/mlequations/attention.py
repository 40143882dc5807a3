r"""Attention: scaled dot-product attention and multi-head attention.

$$
\operatorname{Attention}(Q, K, V) = \operatorname{softmax}\!\left(s\, Q K^\top + M\right) V,
\qquad s = \frac{1}{\sqrt{E}},
$$

with queries $Q$ of shape `(..., L, E)`, keys $K$ of shape `(..., S, E)`, values
$V$ of shape `(..., S, Ev)` and a mask $M$ that is $0$ where a query may attend
to a key and $-\infty$ where it may not. The output has shape `(..., L, Ev)`.

Three portable algorithms compute the same numbers:

* **plain**: the formula as written, with the cheap choices made — $Q$ is
  scaled (`L·E` products, not `L·S`) and the `L×Ev` output is divided by the row
  sums instead of normalising the `L×S` probabilities;
* **query-blocked**: the plain formula on blocks of queries, each seeing every
  key: the softmax is exact, and the `block×S` scores stay in cache;
* **blockwise** (flash attention's forward pass): blocks of keys too, combined
  by the online-softmax recurrence, with `O(L·block)` extra memory; with
  `is_causal`, key blocks entirely above the diagonal are never computed.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

from ._xp import Array, Namespace, device, exp2, float_dtypes, is_jax, namespace, scalar

__all__ = ["attention", "multi_head_attention"]


class _Plan(NamedTuple):
    """How the scores are tiled.

    `rows` queries (None: all) by `keys` keys (None: an exact softmax over all of
    them), over every batch element at once or, with `per_element`, over one batch
    element (one head of one sample) at a time.
    """

    rows: int | None
    keys: int | None
    per_element: bool = False


# Block sizes and the choice rule, measured on this project's 2-core CPU (torch 2.13,
# NumPy 2.4, float32; docs/content/benchmarks.md). Without causality, one head at a
# time in 1024 × 512 tiles keeps each product and its scores in cache (2 MiB) while
# amortising the per-call overhead. With causality, blocks of L/8 queries (64 to 256)
# by 2048 keys, batched over the heads: the diagonal tiles, half of them above the
# diagonal, then cost at most 1/16 more work, and larger blocks pay for fewer calls.
_ELEMENT_TILE = _Plan(1024, 512, per_element=True)
_CAUSAL_KEYS = 2048
_JAX_BLOCKS = 16  # query blocks at most under JAX, each with an exact softmax
_LOG2_E = math.log2(math.e)


def attention(
    query: Array,
    key: Array,
    value: Array,
    /,
    *,
    mask: Array | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    block_size: int | None = None,
    xp: Namespace | None = None,
) -> Array:
    r"""Scaled dot-product attention, with masks, causality and grouped-query heads.

    $$
    O = \operatorname{softmax}\!\left(s\, Q K^\top + M\right) V, \qquad
    s = \frac{1}{\sqrt{E}} \text{ unless given}, \qquad
    M_{ij} = \begin{cases} 0 & \text{query } i \text{ may attend to key } j \\
                           -\infty & \text{otherwise.} \end{cases}
    $$

    Each row of $\operatorname{softmax}$ is shifted by its maximum, so no
    exponential overflows; a row with no key to attend (all $-\infty$) gives a
    zero output row, never NaN, in the values and in their gradients. Half
    precision is computed in float32 and cast back. Empty axes are allowed: no
    query or an empty batch gives an empty result, no key gives zeros, and
    with $E = 0$ every score is an empty dot product, $0$, so each row is the
    mean of the rows of $V$ it may see (as in PyTorch).

    Args:
        query: Queries $Q$, shape `(..., L, E)`.
        key: Keys $K$, shape `(..., S, E)`.
        value: Values $V$, shape `(..., S, Ev)`.
        mask: Either boolean (True = may attend) or a real array added to the
            scaled scores (use $-\infty$ to forbid); broadcastable to
            `(..., L, S)`. May be combined with `is_causal`.
        is_causal: Query $i$ attends only to keys $j \le i$ (top-left
            alignment, PyTorch's `tril(ones(L, S))`, also when $L \ne S$).
        scale: The factor $s$; default $1/\sqrt{E}$.
        enable_gqa: Grouped-query attention: the query head axis (-3) holds
            `Hq` heads, a multiple of the `Hkv` key/value heads; query head $h$
            uses key/value head $\lfloor h / (Hq/Hkv) \rfloor$. Keys and values
            are never copied per query head.
        block_size: `None` picks the fastest portable algorithm for the shape;
            an int forces the blockwise online-softmax algorithm with key blocks
            of that size (`O(L·block_size)` extra memory). Every choice gives
            the same result up to rounding.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        The attention output, shape `(..., L, Ev)` (the broadcast batch shape
        of the inputs), in the floating dtype and on the device of the inputs.

    Raises:
        ValueError: Shapes that do not fit together (head dimensions, key and
            value lengths, a mask that does not broadcast, GQA head counts that
            do not divide), or a bad `block_size`.
        TypeError: A mask that is neither boolean nor real floating.

    Examples:
        The guide's example, two queries and two keys of dimension 2:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> Q = np.asarray([[1.0, 0.0], [0.0, 1.0]])
        >>> K = np.asarray([[1.0, 1.0], [1.0, 0.0]])
        >>> V = np.asarray([[0.0, 1.0], [1.0, 0.0]])
        >>> mle.attention(Q, K, V)
        array([[0.5       , 0.5       ],
               [0.33023845, 0.66976155]])

        With `is_causal` the first query sees only the first key; a query that
        may see no key at all gets zeros:

        >>> mle.attention(Q, K, V, is_causal=True)
        array([[0.        , 1.        ],
               [0.33023845, 0.66976155]])
        >>> mle.attention(Q, K, V, mask=np.asarray([[False, False], [True, True]]))
        array([[0.        , 0.        ],
               [0.33023845, 0.66976155]])

    References:
        Vaswani, A. et al. (2017). Attention is all you need. *NeurIPS*.
        Dao, T. et al. (2022). FlashAttention: fast and memory-efficient exact
        attention with IO-awareness. *NeurIPS*.
    """
    return _attention(query, key, value, mask, is_causal, scale, enable_gqa, block_size, None, xp)


def _attention(
    query: Array,
    key: Array,
    value: Array,
    mask: Array | None,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
    block_size: int | None,
    algorithm: tuple[int | None, int | None] | tuple[int | None, int | None, bool] | None,
    xp: Namespace | None,
) -> Array:
    """`attention`, with `algorithm` = `_Plan(rows, keys[, per_element])` forced if given.

    A query block of `None` means all queries at once; a key block of `None`
    means an exact softmax over all keys. `(None, None)` is the plain formula,
    `(b, None)` the query-blocked one, `(b, k)` the blockwise recurrence.
    """
    xp = namespace(query=query, key=key, value=value, mask=mask, xp=xp)
    out_dtype, work = float_dtypes(xp, query=query, key=key, value=value)
    L, S, E, G = _check(query, key, value, mask, enable_gqa, block_size, scale, xp)
    plan = _Plan(*algorithm) if algorithm is not None else _choose(L, is_causal, block_size, xp)

    # With E = 0 every score is an empty dot product, 0 whatever the scale (as in torch).
    s = (1.0 / math.sqrt(E) if E else 1.0) if scale is None else float(scale)
    # The softmax runs in base 2, softmax(x) = 2^(x·log2 e - m) / Σ 2^(x·log2 e - m): exp2
    # is 1.4-2.9x faster than exp (see _xp.exp2), and log2 e folds into the scale of Q.
    q = xp.astype(query, work, copy=False) * (s * _LOG2_E)  # (..., Hq, L, E): not Q Kᵀ
    k = xp.astype(key, work, copy=False)  # (..., Hkv, S, E)
    v = xp.astype(value, work, copy=False)  # (..., Hkv, S, Ev)
    # Query heads grouped by the key head they share: (..., Hkv, G, L, E); G = 1 without GQA.
    q = _split_heads(q, G, xp)
    if mask is not None:
        bias = mask if xp.isdtype(mask.dtype, "bool") else xp.astype(mask, work, copy=False)
        mask = _split_heads(bias if bias.ndim >= 2 else xp.reshape(bias, (1, -1)), G, xp)
    kT = xp.matrix_transpose(k)  # (..., Hkv, E, S), a view
    empty_batch = any(0 in x.shape[:-2] for x in (query, key, value))
    if S == 0 or L == 0 or empty_batch:  # no key (rows fully masked: zeros), or nothing
        out = (_fold(q, G, L, xp) @ kT) @ v  # (..., Hkv, G·L, Ev)
        out = xp.reshape(out, (*out.shape[:-2], G, L, out.shape[-1]))
        return xp.astype(_merge_heads(out, G, xp), out_dtype, copy=False)

    if not plan.per_element:
        out = _tiled(q, kT, v, mask, is_causal, G, plan, xp)  # (..., Hkv, G, L, Ev)
    else:
        batch = _broadcast(
            {"query": q.shape[:-3], "key": kT.shape[:-2], "value": v.shape[:-2]}, "batch axes"
        )
        # One batch element at a time: the same tiles, each a single matrix product.
        outs = [
            _tiled(
                _element(q, index, 3),  # (G, L, E)
                _element(kT, index, 2),  # (E, S)
                _element(v, index, 2),  # (S, Ev)
                None if mask is None else _element(mask, index, 3),  # (G|1, L|1, S|1)
                is_causal,
                G,
                plan,
                xp,
            )
            for index in itertools.product(*(range(n) for n in batch))
        ]
        out = xp.reshape(xp.stack(outs), (*batch, *outs[0].shape))  # (..., Hkv, G, L, Ev)
    return xp.astype(_merge_heads(out, G, xp), out_dtype, copy=False)


def _choose(L: int, is_causal: bool, block_size: int | None, xp: Namespace) -> _Plan:
    """The tiling that ran fastest for this shape (see the module constants)."""
    rows = min(256, max(64, L // 8))  # query blocks of the batched tiles
    if block_size is not None:
        return _Plan(rows, block_size)
    if is_jax(xp):
        # XLA fuses each block's formula itself; query blocks keep the scores in cache
        # (and skip the keys after the diagonal), at most 16 keep the traced program small.
        return _Plan(max(rows, -(-L // _JAX_BLOCKS)), None)
    return _Plan(rows, _CAUSAL_KEYS) if is_causal else _ELEMENT_TILE


def _element(x: Array, index: tuple[int, ...], trailing: int) -> Array:
    """`x` at batch `index`, its last `trailing` axes kept; an axis of 1 broadcasts."""
    lead = x.ndim - trailing
    if lead == 0:
        return x
    at = tuple(i if n > 1 else 0 for i, n in zip(index[-lead:], x.shape[:lead], strict=True))
    return x[(*at, ...)]


def _tiled(
    q: Array,
    kT: Array,
    v: Array,
    mask: Array | None,
    is_causal: bool,
    G: int,
    plan: _Plan,
    xp: Namespace,
) -> Array:
    """softmax(scores) @ v block by block: (..., G, L, E) queries → (..., G, L, Ev)."""
    L, S = q.shape[-2], kT.shape[-1]
    rows = L if plan.rows is None else min(plan.rows, L)
    blocks = []
    for p0 in range(0, L, rows):
        p1 = min(p0 + rows, L)
        qt = _fold(q[..., p0:p1, :], G, p1 - p0, xp)  # (..., G·Lb, E)
        key_blocks = _key_blocks(S, p0, p1, is_causal, plan.keys)
        out = _softmax_times(qt, kT, v, mask, is_causal, G, p0, p1, key_blocks, xp)
        blocks.append(xp.reshape(out, (*out.shape[:-2], G, p1 - p0, out.shape[-1])))
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=-2)


def _key_blocks(
    S: int, p0: int, p1: int, is_causal: bool, keys: int | None
) -> list[tuple[int, int]]:
    """The key ranges [c0, c1) that queries [p0, p1) see, `keys` at a time (None: all).

    With `is_causal`, keys after the block's last query are never seen, and the
    keys before its first query are seen by every query of the block: only the
    ranges from `p0` on, the diagonal, need the causal mask.
    """

    def split(start: int, stop: int) -> list[tuple[int, int]]:
        step = keys or max(stop - start, 1)
        return [(c0, min(c0 + step, stop)) for c0 in range(start, stop, step)]

    if not is_causal:
        return split(0, S)
    below = min(p0, S)
    return split(0, below) + split(below, min(p1, S))


def _softmax_times(
    qt: Array,
    kT: Array,
    v: Array,
    mask: Array | None,
    is_causal: bool,
    G: int,
    p0: int,
    p1: int,
    key_blocks: list[tuple[int, int]],
    xp: Namespace,
) -> Array:
    """softmax(scores) @ v over key blocks, by the online-softmax recurrence.

    The scores are in base 2 (see `_attention`). After each block, `m` is the
    running row maximum, `total` the sum of 2^(score - m) and `acc` the sum of
    2^(score - m) v over the keys seen so far; a new maximum rescales both by
    2^(m_old - m_new). With one block this is the plain formula, the row sums
    applied to the `Lb×Ev` output rather than to the `Lb×Kb` probabilities.
    """
    # Only a mask can leave a row without a key: with `is_causal` alone, every query's
    # first block holds a key it sees. Without one, the guards below are skipped.
    guarded = mask is not None
    m = total = acc = None
    for c0, c1 in key_blocks:
        scores = _scores(qt, kT, mask, is_causal, G, p0, p1, c0, c1, xp)  # (..., G·Lb, Kb)
        m_new = xp.max(scores, axis=-1, keepdims=True)  # (..., G·Lb, 1)
        if m is not None:
            m_new = xp.maximum(m, m_new)
        shift = m_new
        if guarded:  # a row with no key yet (max -inf) is shifted by 0: 2^-inf stays 0
            shift = xp.where(xp.isfinite(m_new), m_new, scalar(0.0, m_new, xp=xp))
        p = exp2(scores - shift, xp)  # (..., G·Lb, Kb), each ≤ 1
        pv = p @ v[..., c0:c1, :]  # (..., G·Lb, Ev)
        row_sum = xp.sum(p, axis=-1, keepdims=True)  # (..., G·Lb, 1)
        if m is None:
            total, acc = row_sum, pv
        else:
            alpha = exp2(m - shift, xp)  # (..., G·Lb, 1): 0 while a row has seen no key
            total = alpha * total + row_sum
            acc = alpha * acc + pv
        m = m_new
    if not guarded:
        return acc / total  # total ≥ 1: the row maximum contributes 2^0
    # total is 0 only for a row that may see no key: its output is 0, not 0/0.
    return acc / xp.where(total > 0, total, scalar(1.0, total, xp=xp))


def _scores(
    qt: Array,
    kT: Array,
    mask: Array | None,
    is_causal: bool,
    G: int,
    p0: int,
    p1: int,
    c0: int,
    c1: int,
    xp: Namespace,
) -> Array:
    """Masked scaled scores of query positions [p0, p1) against keys [c0, c1)."""
    scores = qt @ kT[..., c0:c1]  # (..., Hkv, G·Lb, Kb)
    allowed = None
    if mask is not None:
        tile = mask[..., p0:p1, :] if mask.shape[-2] > 1 else mask
        tile = _fold(tile[..., c0:c1] if tile.shape[-1] > 1 else tile, G, p1 - p0, xp)
        if xp.isdtype(tile.dtype, "bool"):
            allowed = tile
        else:
            scores = scores + tile * _LOG2_E  # in base 2, as the scores; per tile: no mask copy
    if is_causal and c1 - 1 > p0:  # some key lies after some query of the block
        row = xp.arange(p0, p1, device=device(qt))  # query positions
        if G > 1:
            row = xp.reshape(xp.broadcast_to(row, (G, p1 - p0)), (-1,))
        causal = row[:, None] >= xp.arange(c0, c1, device=device(qt))[None, :]  # (G·Lb, Kb)
        allowed = causal if allowed is None else xp.logical_and(allowed, causal)
    if allowed is not None:
        scores = xp.where(allowed, scores, scalar(-math.inf, scores, xp=xp))
    return scores


def _split_heads(x: Array, G: int, xp: Namespace) -> Array:
    """(..., Hq, L, E) → (..., Hkv, G, L, E); a head axis of 1 (or none) gets G = 1."""
    if G == 1 or x.ndim < 3 or x.shape[-3] == 1:
        return xp.expand_dims(x, axis=-3)
    return xp.reshape(x, (*x.shape[:-3], x.shape[-3] // G, G, *x.shape[-2:]))


def _fold(x: Array, G: int, rows: int, xp: Namespace) -> Array:
    """(..., G|1, rows|1, K) → (..., G·rows, K): the query heads of a group become rows."""
    if x.shape[-3] == 1 and (G == 1 or x.shape[-2] == 1):
        return xp.squeeze(x, axis=-3)  # (..., rows|1, K): broadcasts over the rows as it is
    full = xp.broadcast_to(x, (*x.shape[:-3], G, rows, x.shape[-1]))
    return xp.reshape(full, (*x.shape[:-3], G * rows, x.shape[-1]))


def _merge_heads(x: Array, G: int, xp: Namespace) -> Array:
    """(..., Hkv, G, L, Ev) → (..., Hq, L, Ev), or drop the G = 1 axis."""
    if G == 1:
        return xp.squeeze(x, axis=-3)
    return xp.reshape(x, (*x.shape[:-4], x.shape[-4] * G, *x.shape[-2:]))


def _broadcast(shapes: dict[str, tuple[int, ...]], what: str) -> tuple[int, ...]:
    """The broadcast of `shapes`, or a ValueError naming the arguments."""
    ndim = max(len(s) for s in shapes.values())
    out = []
    for i in range(-ndim, 0):
        sizes = {s[i] for s in shapes.values() if len(s) >= -i} - {1}
        if len(sizes) > 1:
            described = ", ".join(f"`{name}` {s}" for name, s in shapes.items())
            raise ValueError(f"the {what} do not broadcast: {described}")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _check(
    query: Array,
    key: Array,
    value: Array,
    mask: Array | None,
    enable_gqa: bool,
    block_size: int | None,
    scale: float | None,
    xp: Namespace,
) -> tuple[int, int, int, int]:
    """Validate shapes and options; return (L, S, E, G) with G query heads per key head."""
    for name, x in (("query", query), ("key", key), ("value", value)):
        if x.ndim < 2:
            raise ValueError(f"`{name}` must have shape (..., length, features), got {x.shape}")
    L, E = query.shape[-2:]
    S = key.shape[-2]
    if key.shape[-1] != E:
        raise ValueError(
            f"`key` must have the head dimension E = {E} of `query` (shape {query.shape}), "
            f"got shape {key.shape}"
        )
    if value.shape[-2] != S:
        raise ValueError(
            f"`value` must have the S = {S} rows of `key` (shape {key.shape}), "
            f"got shape {value.shape}"
        )
    G = 1
    batch_q = tuple(query.shape[:-2])
    if enable_gqa:
        if min(query.ndim, key.ndim, value.ndim) < 3:
            raise ValueError(
                "`enable_gqa` needs a head axis (-3) in `query`, `key` and `value`, got shapes "
                f"{query.shape}, {key.shape}, {value.shape}"
            )
        Hq, Hkv = query.shape[-3], key.shape[-3]
        if value.shape[-3] != Hkv:
            raise ValueError(
                f"`value` must have the {Hkv} heads of `key` (shape {key.shape}), "
                f"got shape {value.shape}"
            )
        if Hq % Hkv:
            raise ValueError(
                f"`enable_gqa`: the query heads of `query` (shape {query.shape}, Hq = {Hq}) "
                f"must be a multiple of the heads of `key` (shape {key.shape}, Hkv = {Hkv})"
            )
        G = Hq // Hkv
        batch_q = (*batch_q[:-1], Hkv)
    batch = _broadcast(
        {"query": batch_q, "key": tuple(key.shape[:-2]), "value": tuple(value.shape[:-2])},
        "batch axes (...) of query, key and value",
    )
    if G > 1:
        batch = (*batch[:-1], batch[-1] * G)
    if mask is not None:
        if not (xp.isdtype(mask.dtype, "bool") or xp.isdtype(mask.dtype, "real floating")):
            raise TypeError(f"`mask` must be boolean or real floating, got dtype {mask.dtype}")
        target = (*batch, L, S)
        fits = mask.ndim <= len(target) and all(
            m in (1, t) for m, t in zip(mask.shape[::-1], target[::-1], strict=False)
        )
        if not fits:
            raise ValueError(
                f"`mask` of shape {mask.shape} does not broadcast to (..., L, S) = {target}"
            )
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
    ):
        raise ValueError(f"`block_size` must be a positive int or None, got {block_size!r}")
    if scale is not None and not isinstance(scale, int | float):
        raise TypeError(f"`scale` must be a Python number or None, got {type(scale).__name__}")
    return L, S, E, G


def multi_head_attention(
    query: Array,
    key: Array,
    value: Array,
    /,
    *,
    num_heads: int,
    w_q: Array,
    w_k: Array,
    w_v: Array,
    w_o: Array,
    b_q: Array | None = None,
    b_k: Array | None = None,
    b_v: Array | None = None,
    b_o: Array | None = None,
    mask: Array | None = None,
    is_causal: bool = False,
    xp: Namespace | None = None,
) -> Array:
    r"""Multi-head attention: project, attend per head, concatenate, project.

    $$
    \operatorname{MHA}(X_q, X_k, X_v) = \operatorname{concat}_{h=1}^{H}
      \operatorname{Attention}\!\left(X_q W_q^{(h)\top} + b_q^{(h)},\;
      X_k W_k^{(h)\top} + b_k^{(h)},\; X_v W_v^{(h)\top} + b_v^{(h)}\right)
      W_o^\top + b_o ,
    $$

    where $W^{(h)}$ are the rows $h\,D/H, \dots, (h+1)\,D/H - 1$ of each
    projection (head dimension $E = D/H$, scale $1/\sqrt{E}$) — PyTorch's
    `nn.MultiheadAttention` with `batch_first=True`.

    Args:
        query: $X_q$, shape `(..., L, Dq)`.
        key: $X_k$, shape `(..., S, Dk)`.
        value: $X_v$, shape `(..., S, Dv)`.
        num_heads: $H$; must divide the projected width $D$.
        w_q: Query projection, `(D, Dq)` (nn.Linear layout: out, in).
        w_k: Key projection, `(D, Dk)`.
        w_v: Value projection, `(D, Dv)`.
        w_o: Output projection, `(Do, D)`.
        b_q: Optional bias `(D,)`; likewise `b_k`, `b_v`.
        b_k: Optional key bias `(D,)`.
        b_v: Optional value bias `(D,)`.
        b_o: Optional output bias `(Do,)`.
        mask: As in :func:`attention` (True = may attend, or additive),
            broadcastable to `(..., H, L, S)`.
        is_causal: As in :func:`attention`.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        Shape `(..., L, Do)`, in the floating dtype and on the device of the inputs.

    Examples:
        With identity projections and one head this is :func:`attention`:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> x = np.asarray([[1.0, 0.0], [0.0, 1.0]])
        >>> eye = np.eye(2) * np.sqrt(2.0)  # cancels the 1/sqrt(2) scale in w_q
        >>> out = mle.multi_head_attention(
        ...     x, x, x, num_heads=1, w_q=eye, w_k=np.eye(2), w_v=np.eye(2), w_o=np.eye(2)
        ... )
        >>> np.allclose(out, mle.attention(x, x, x, scale=1.0))
        True

    References:
        Vaswani, A. et al. (2017). Attention is all you need. *NeurIPS*.
    """
    arrays = {"query": query, "key": key, "value": value, "w_q": w_q, "w_k": w_k}
    arrays.update(w_v=w_v, w_o=w_o, b_q=b_q, b_k=b_k, b_v=b_v, b_o=b_o)
    xp = namespace(**arrays, mask=mask, xp=xp)
    out_dtype, work = float_dtypes(xp, **arrays)
    D = _check_projections(arrays, num_heads)
    cast = {n: None if a is None else xp.astype(a, work, copy=False) for n, a in arrays.items()}

    def project(x: Array, w: Array, b: Array | None) -> Array:
        y = x @ xp.matrix_transpose(w)  # (..., T, D)
        y = y if b is None else y + b
        y = xp.reshape(y, (*y.shape[:-1], num_heads, D // num_heads))  # (..., T, H, E)
        return xp.moveaxis(y, -2, -3)  # (..., H, T, E)

    q = project(cast["query"], cast["w_q"], cast["b_q"])
    k = project(cast["key"], cast["w_k"], cast["b_k"])
    v = project(cast["value"], cast["w_v"], cast["b_v"])
    o = attention(q, k, v, mask=mask, is_causal=is_causal, xp=xp)  # (..., H, L, E)
    o = xp.moveaxis(o, -3, -2)  # (..., L, H, E)
    o = xp.reshape(o, (*o.shape[:-2], D)) @ xp.matrix_transpose(cast["w_o"])  # (..., L, Do)
    o = o if cast["b_o"] is None else o + cast["b_o"]
    return xp.astype(o, out_dtype, copy=False)


def _check_projections(arrays: dict[str, Array | None], num_heads: int) -> int:
    """Validate the projection shapes of :func:`multi_head_attention`; return D."""
    for name in ("query", "key", "value"):
        if arrays[name].ndim < 2:
            raise ValueError(f"`{name}` must have shape (..., length, features)")
    D = arrays["w_q"].shape[0]
    for name, x in (("w_q", "query"), ("w_k", "key"), ("w_v", "value")):
        w, features = arrays[name], arrays[x].shape[-1]
        if w.ndim != 2 or w.shape != (D, features):
            raise ValueError(
                f"`{name}` must have shape (D, {features}) = ({D}, {features}) to project "
                f"`{x}` (shape {arrays[x].shape}), got {w.shape}"
            )
    if arrays["w_o"].ndim != 2 or arrays["w_o"].shape[1] != D:
        raise ValueError(f"`w_o` must have shape (Do, {D}), got {arrays['w_o'].shape}")
    for name, size in (("b_q", D), ("b_k", D), ("b_v", D), ("b_o", arrays["w_o"].shape[0])):
        b = arrays[name]
        if b is not None and tuple(b.shape) != (size,):
            raise ValueError(f"`{name}` must have shape ({size},), got {b.shape}")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"`num_heads` must be a positive int, got {num_heads!r}")
    if D % num_heads:
        raise ValueError(f"`num_heads` = {num_heads} must divide the projected width D = {D}")
    return D
