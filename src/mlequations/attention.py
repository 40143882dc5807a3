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

Training keeps that memory bound: the forward pass saves the output and each
row's log-sum-exp, and the backward pass (FlashAttention-2's, `attention_backward`)
recomputes the tiles from them. `_autodiff.py` registers the pair with torch's
autograd and `jax.custom_vjp`; this module never names a library.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from typing import Any, NamedTuple

from . import _autodiff, _tune
from ._xp import (
    Array,
    Namespace,
    device,
    exp2,
    float_dtypes,
    is_jax,
    is_traced,
    namespace,
    scalar,
    scan,
)

__all__ = ["AttentionGrads", "attention", "attention_backward", "multi_head_attention"]


class _Plan(NamedTuple):
    """How the scores are tiled.

    `rows` queries (None: all) by `keys` keys (None: an exact softmax over all of
    them), over every batch element at once or, with `per_element`, over one batch
    element (one head of one sample) at a time; with `looped`, the query blocks are
    the steps of a loop that the compiler runs (`_xp.scan`), not unrolled by Python.
    """

    rows: int | None
    keys: int | None
    per_element: bool = False
    looped: bool = False


# Block sizes and the choice rule, measured on this project's 2-core CPU (torch 2.13,
# NumPy 2.4, float32; docs/content/benchmarks.md). Without causality, one head at a
# time in 1024 × 512 tiles keeps each product and its scores in cache (2 MiB) while
# amortising the per-call overhead. With causality, blocks of L/8 queries (64 to 256)
# by 2048 keys, batched over the heads: the diagonal tiles, half of them above the
# diagonal, then cost at most 1/16 more work, and larger blocks pay for fewer calls.
# While a tile would pass _CAUSAL_TILE scores (4 MiB in float32), half the rows (down
# to 64), then half the keys (down to 256): above it the tiles' speed moved with the C
# allocator's state (glibc maps large blocks and faults them in again: the same plan
# ran at 1.6-2.2x SDPA). On an Intel Xeon, at (1, 8, 4096, 64), 64 x 2048 tiles took
# 0.53-0.59x the time of 128 x 2048 ones in a fresh process (torch; NumPy 0.78x), and
# (8, 8, 512, 64) and (4, 8, 1024, 64) gained 2-17 % (issue 21).
_ELEMENT_TILE = _Plan(1024, 512, per_element=True)
_CAUSAL_KEYS = 2048
_CAUSAL_TILE = 2**20
# Up to this many scores in all (1 MiB in float32: they stay in cache), the plain
# formula over the whole batch at once: a dozen operations per call, where tiles cost
# a dozen per tile and their per-call overhead dominates (issue 19's tiny shapes).
_SMALL = 2**18
_JAX_TILE = 2**21  # scores per step of the compiled loop under JAX (8 MiB in float32)
_TRACED_BLOCKS = 16  # query blocks at most in a graph traced by torch.compile
# and up to this many scores a block (16 MiB in float32) in fewer. Each of a block's
# score buffers is allocated afresh at every call of the compiled program; from 32 MiB
# glibc always maps new pages for it, and faulting them in cost more than the softmax
# (64 MiB blocks: 47 ms forward at (8, 8, 512, 64) where 16 MiB ones took 29, and 27.6
# with 64 MiB blocks once malloc was told not to map; Intel Xeon, torch 2.13).
_TRACED_TILE = 2**22
# With is_causal, the 16 blocks of a long sequence can each pass that threshold (the
# last block of (1, 1, 16384, 64) sees 1024 x 16384 scores, 64 MiB), and the compiled
# forward pass ran at 1.3x our eager code (1.0x with malloc told never to map). There,
# up to twice as many blocks, until a block's scores are within 32 MiB: 1.0-1.1x eager,
# at twice the compile time (the same rule without causality measured no gain).
_MAPPED = 2**23
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
    dropout_p: float = 0.0,
    dropout_seed: int | Array | None = None,
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
        dropout_p: Attention dropout: each weight $P_{ij}$ is dropped with
            probability $p$ and the kept ones are scaled by $1/(1-p)$,
            $O = (P \circ Z)\,V / (1 - p)$. Applied whenever $p > 0$ (as
            `torch.nn.functional.scaled_dot_product_attention` does): pass
            `0.0` at evaluation.
        dropout_seed: Needed when `dropout_p > 0`: a Python int or a 0-d
            integer array (traced under `jax.jit` is fine). $Z_{ij}$ is a hash
            of the seed and the weight's (batch, head, row, column), written in
            the standard's int32 operations, so a seed gives the same mask on
            every library, device and tiling, and the backward pass regenerates
            it instead of storing it. Use a fresh seed for every step.
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
    return _attention(
        query,
        key,
        value,
        mask,
        is_causal,
        scale,
        enable_gqa,
        block_size,
        None,
        xp,
        dropout_p=dropout_p,
        dropout_seed=dropout_seed,
    )


class AttentionGrads(NamedTuple):
    """Gradients of attention: queries `dq`, keys `dk`, values `dv`, float mask `dmask`."""

    dq: Array
    dk: Array
    dv: Array
    dmask: Array | None


def attention_backward(
    dout: Array,
    query: Array,
    key: Array,
    value: Array,
    /,
    *,
    mask: Array | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    dropout_p: float = 0.0,
    dropout_seed: int | Array | None = None,
    block_size: int | None = None,
    xp: Namespace | None = None,
) -> AttentionGrads:
    r"""Gradients of :func:`attention` from the gradient of its output, by the chain rule.

    With $P = \operatorname{softmax}(S)$ the attention weights of the scores
    $S = s\,Q K^\top + M$, and $dO = \partial L / \partial O$ (`dout`):

    $$
    dV = P^\top dO, \qquad dP = dO\, V^\top, \qquad
    dS_{ij} = P_{ij} \left(dP_{ij} - D_i\right), \quad D_i = \sum_j P_{ij}\, dP_{ij}
            = dO_i \cdot O_i ,
    $$

    $$
    dQ = s\, dS\, K, \qquad dK = s\, dS^\top Q, \qquad dM = dS .
    $$

    The softmax couples a row only through $D_i$, and $D_i = dO_i \cdot O_i$
    needs no $P$ at all. So nothing of size `L×S` is kept: the row
    log-sum-exp $\ell_i$ of the scores gives back every weight,
    $P_{ij} = e^{S_{ij} - \ell_i}$, and the tiles of the forward pass are
    recomputed one at a time (FlashAttention-2's backward pass), with the
    forward's `O(L·block)` memory. This is the backward pass that PyTorch's
    autograd and `jax.grad` run through :func:`attention`; calling it directly
    shows the chain rule at work. Key blocks entirely after the queries of a
    block are skipped with `is_causal`; with grouped-query heads, `dk` and `dv`
    are summed over each group without copying keys or values per query head;
    a row with no key to attend has zero gradients.

    Args:
        dout: $\partial L / \partial O$, the shape of the attention output `(..., L, Ev)`.
        query: As in :func:`attention`.
        key: As in :func:`attention`.
        value: As in :func:`attention`.
        mask: As in :func:`attention`.
        is_causal: As in :func:`attention`.
        scale: As in :func:`attention`.
        enable_gqa: As in :func:`attention`.
        dropout_p: As in :func:`attention`.
        dropout_seed: As in :func:`attention`: the same seed gives the same mask.
        block_size: As in :func:`attention`: the tiles of both passes.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        :class:`AttentionGrads` `(dq, dk, dv, dmask)` with the shapes and dtypes
        of `query`, `key`, `value` and `mask` (summed over the axes they were
        broadcast along); `dmask` is `None` unless `mask` is a float array.

    Examples:
        The gradient of the guide's example for $L = \sum O$: each row of
        `dv` is a key's total attention weight, and `dq` agrees with a finite
        difference:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> Q = np.asarray([[1.0, 0.0], [0.0, 1.0]])
        >>> K = np.asarray([[1.0, 1.0], [1.0, 0.0]])
        >>> V = np.asarray([[0.0, 1.0], [1.0, 2.0]])
        >>> grads = mle.attention_backward(np.ones((2, 2)), Q, K, V)
        >>> grads.dv
        array([[1.16976155, 1.16976155],
               [0.83023845, 0.83023845]])
        >>> h = 1e-6
        >>> nudged = mle.attention(Q + np.asarray([[0.0, h], [0.0, 0.0]]), K, V)
        >>> float(grads.dq[0, 1]), float((nudged.sum() - mle.attention(Q, K, V).sum()) / h)
        (-0.35355..., -0.35355...)

    References:
        Dao, T. (2023). FlashAttention-2: faster attention with better
        parallelism and work partitioning. *ICLR 2024*.
    """
    xp = namespace(dout=dout, query=query, key=key, value=value, mask=mask, xp=xp)
    static = _static(query, key, value, mask, is_causal, scale, enable_gqa, block_size, xp)
    static, seed = _dropout(static, dropout_p, dropout_seed, query, xp)
    arrays = (query, key, value, mask, seed)
    out, saved = _forward(arrays, static)
    if tuple(dout.shape) != tuple(out.shape):
        raise ValueError(
            f"`dout` must have the output's shape {tuple(out.shape)}, got {tuple(dout.shape)}"
        )
    floating = mask is not None and xp.isdtype(mask.dtype, "real floating")
    dq, dk, dv, dmask, _ = _backward(arrays, out, saved, dout, (True, True, True, floating), static)
    return AttentionGrads(dq, dk, dv, dmask)


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
    *,
    dropout_p: float = 0.0,
    dropout_seed: int | Array | None = None,
) -> Array:
    """`attention`, with `algorithm` = `_Plan(rows, keys[, per_element])` forced if given.

    A query block of `None` means all queries at once; a key block of `None`
    means an exact softmax over all keys. `(None, None)` is the plain formula,
    `(b, None)` the query-blocked one, `(b, k)` the blockwise recurrence.
    """
    xp = namespace(query=query, key=key, value=value, mask=mask, xp=xp)
    static = _static(query, key, value, mask, is_causal, scale, enable_gqa, block_size, xp)
    if algorithm is not None:
        static = static._replace(plan=_Plan(*algorithm))
    static, seed = _dropout(static, dropout_p, dropout_seed, query, xp)
    return _autodiff.apply(_forward, _backward, (query, key, value, mask, seed), static, xp)


class _Static(NamedTuple):
    """Everything but the arrays that the forward and backward passes need."""

    is_causal: bool
    s: float  # the scale of the scores
    G: int  # query heads per key/value head
    plan: _Plan
    out_dtype: object
    work: object  # the dtype computed in: float32 for half precision
    xp: Namespace
    drop: int | None = None  # dropout: a weight is dropped where its hash < drop (None: no dropout)
    rescale: float = 1.0  # 1 / (1 - p), the factor of the weights kept (0 when p = 1)


def _static(
    query: Array,
    key: Array,
    value: Array,
    mask: Array | None,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
    block_size: int | None,
    xp: Namespace,
) -> _Static:
    """Validate the inputs and decide the dtypes, the scale and the tiling."""
    out_dtype, work = float_dtypes(xp, query=query, key=key, value=value)
    L, S, E, G = _check(query, key, value, mask, enable_gqa, block_size, scale, xp)
    # With E = 0 every score is an empty dot product, 0 whatever the scale (as in torch).
    s = (1.0 / math.sqrt(E) if E else 1.0) if scale is None else float(scale)
    batch = max(math.prod(x.shape[:-2]) for x in (query, key, value))
    traced = is_traced(query, key, value, mask)
    plan = _choose(L, S, batch, is_causal, block_size, traced, xp)
    if block_size is None:  # the accelerator rule, or a measured plan (issue 21, _tune.py)
        arrays = (query, key, value, mask)
        plan = _Plan(*_tune.attention_plan(plan, arrays, is_causal, scale, enable_gqa, xp))
    return _Static(bool(is_causal), s, G, plan, out_dtype, work, xp)


def _dropout(
    static: _Static, p: float, seed: int | Array | None, like: Array, xp: Namespace
) -> tuple[_Static, Array | None]:
    """`static` with the dropout threshold and rescale set, and the seed as an int32 array.

    A weight is kept when the low 31 bits of its hash are at least round(p·2³¹): with
    probability 1 - p, exact for every p of the form k/2³¹.
    """
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise ValueError(f"`dropout_p` must be a Python number in [0, 1], got {p!r}")
    if p == 0.0:
        return static, None
    if seed is None:
        raise ValueError(
            "`dropout_p` > 0 needs a `dropout_seed` (a Python int or a 0-d integer array): "
            "the dropout mask is a hash of the seed and each weight's position, the same "
            "on every library and device; draw a fresh seed for each step "
            "(torch.randint(2**31 - 1, ()), jax.random.randint(key, (), 0, 2**31 - 1))"
        )
    if not isinstance(seed, int) or isinstance(seed, bool):
        dtype = getattr(seed, "dtype", None)
        if getattr(seed, "shape", None) != () or dtype is None or not xp.isdtype(dtype, "integral"):
            raise TypeError(
                f"`dropout_seed` must be a Python int or a 0-d integer array, got {seed!r}"
            )
        seed = xp.astype(seed, xp.int32)  # wraps: the low 32 bits, on every library
    else:
        low = seed % 2**32  # the low 32 bits as a signed int32, as an array's cast would
        seed = xp.asarray(low - 2**32 if low >= 2**31 else low, dtype=xp.int32, device=device(like))
    drop = round(float(p) * 2**31)
    return static._replace(drop=drop, rescale=0.0 if p == 1.0 else 1.0 / (1.0 - p)), seed


def _mix(x: Array) -> Array:
    """lowbias32: a bijection of 32-bit words with nearly full avalanche.

    Each input bit flips each output bit with probability close to 1/2
    (C. Wellons, "Hash function prospector", 2018).
    Written in int32, the one integer type every library has (JAX without x64 too):
    products wrap around modulo 2³², and a right shift is made logical by masking
    the sign bits it copies in.
    """
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * 0x7FEB352D
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * (0x846CA68B - 2**32)  # the multiplier as an int32
    return x ^ ((x >> 16) & 0xFFFF)


def _heads(seed: Array, q: Array, kT: Array, v: Array, G: int, xp: Namespace) -> Array:
    """The dropout hash of each (batch, head): `(*batch, Hkv, G, 1, 1)` int32.

    The heads are numbered in the order of the output's flattened batch axes
    `(..., Hq)`, so a mask does not depend on how the work is tiled.
    """
    batch = _batch(q, kT, v)  # (..., Hkv)
    index = xp.arange(math.prod(batch) * G, dtype=xp.int32, device=device(q))
    # The seed as a 1-d array: NumPy warns of wrapping products on 0-d arrays only.
    return _mix(_mix(xp.reshape(seed, (1,))) ^ xp.reshape(index, (*batch, G, 1, 1)))


def _row_hashes(heads: Array, positions: Array, G: int, xp: Namespace) -> Array:
    """The dropout hash of each query row of a block: `(..., G·Lb, 1)`."""
    rows = _mix(heads ^ xp.astype(positions, xp.int32)[:, None])  # (..., G, Lb, 1)
    return _fold(rows, G, rows.shape[-2], xp)


def _kept(rows: _Rows, c0: int, c1: int, xp: Namespace) -> Array:
    """Which weights of the block's rows and keys [c0, c1) dropout keeps: `(..., G·Lb, Kb)`."""
    keys = xp.arange(c0, c1, dtype=xp.int32, device=device(rows.hashes))
    return (_mix(rows.hashes ^ keys) & 0x7FFFFFFF) >= rows.drop


def _prepare(
    arrays: tuple[Array, ...], static: _Static
) -> tuple[Array, Array, Array, Array | None, Array | None, bool]:
    """Queries scaled to base 2 and split by key head, keys, values, mask, dropout; emptiness.

    The dropout entry is the hash of each head (None without dropout).

    The softmax runs in base 2, softmax(x) = 2^(x·log2 e - m) / Σ 2^(x·log2 e - m):
    exp2 is 1.4-2.9x faster than exp (see _xp.exp2), and log2 e folds into the scale
    of Q (L·E products, not L·S).
    """
    query, key, value, mask, seed = arrays
    xp, work, G = static.xp, static.work, static.G
    q = xp.astype(query, work, copy=False) * (static.s * _LOG2_E)  # (..., Hq, L, E)
    k = xp.astype(key, work, copy=False)  # (..., Hkv, S, E)
    v = xp.astype(value, work, copy=False)  # (..., Hkv, S, Ev)
    # Query heads grouped by the key head they share: (..., Hkv, G, L, E); G = 1 without GQA.
    q = _split_heads(q, G, xp)
    if mask is not None:
        bias = mask if xp.isdtype(mask.dtype, "bool") else xp.astype(mask, work, copy=False)
        mask = _split_heads(bias if bias.ndim >= 2 else xp.reshape(bias, (1, -1)), G, xp)
    empty = (
        key.shape[-2] == 0
        or query.shape[-2] == 0
        or any(0 in x.shape[:-2] for x in (query, key, value))
    )
    heads = None if seed is None else _heads(seed, q, xp.matrix_transpose(k), v, G, xp)
    return q, k, v, mask, heads, empty


def _forward(arrays: tuple[Array, ...], static: _Static) -> tuple[Array, tuple[Array]]:
    """The output `(..., Hq, L, Ev)`, and the row log-sum-exp for the backward pass.

    The log-sum-exp `(..., Hq, L, 1)` is of the base-2 scores, +inf for a row with
    no key to attend (so that 2^(score - lse) is 0 on every key of that row).
    """
    xp, G, plan = static.xp, static.G, static.plan
    q, k, v, mask, heads, empty = _prepare(arrays, static)
    drop = _Drop(heads, static.drop)
    kT = xp.matrix_transpose(k)  # (..., Hkv, E, S), a view
    L = q.shape[-2]
    if empty:  # no key (rows fully masked: zeros), or nothing
        out = (_fold(q, G, L, xp) @ kT) @ v  # (..., Hkv, G·L, Ev)
        out = xp.reshape(out, (*out.shape[:-2], G, L, out.shape[-1]))
        lse = xp.full((*out.shape[:-1], 1), math.inf, dtype=static.work, device=device(out))
    elif plan.looped:
        out, lse = _looped(q, kT, v, mask, drop, static.is_causal, G, plan, xp)
    elif not plan.per_element:
        out, lse = _tiled(q, kT, v, mask, drop, static.is_causal, G, plan, xp)  # (..., G, L, ·)
    else:
        # One batch element (one head of one sample) at a time: each tile one matrix product.
        batch = _batch(q, kT, v)
        parts = [
            _tiled(
                _element(q, index, 3),  # (G, L, E)
                _element(kT, index, 2),  # (E, S)
                _element(v, index, 2),  # (S, Ev)
                None if mask is None else _element(mask, index, 3),  # (G|1, L|1, S|1)
                drop._replace(heads=None if heads is None else _element(heads, index, 3)),
                static.is_causal,
                G,
                plan,
                xp,
            )
            for index in itertools.product(*(range(n) for n in batch))
        ]
        out, lse = (_stack([part[i] for part in parts], batch, xp) for i in (0, 1))
    if heads is not None:  # the kept weights scaled by 1 / (1 - p): the output, at once
        out = out * static.rescale
    out = xp.astype(_merge_heads(out, G, xp), static.out_dtype, copy=False)
    return out, (_merge_heads(lse, G, xp),)


def _choose(
    L: int,
    S: int,
    batch: int,
    is_causal: bool,
    block_size: int | None,
    traced: bool,
    xp: Namespace,
) -> _Plan:
    """The tiling that ran fastest for this shape (see the module constants)."""
    rows = min(256, max(64, L // 8))  # query blocks of the batched tiles
    if block_size is not None:
        return _Plan(rows, block_size)
    if is_jax(xp):
        # Query blocks as the steps of a compiled loop, each an exact softmax over all
        # keys for every batch element, at most _JAX_TILE scores a step: XLA fuses each
        # step's formula itself, and runs the steps one after another (unrolled, it ran
        # them side by side: 2.8 GB for forward + backward at L = 16384, 52 MiB now).
        fit = _JAX_TILE // max(1, batch * S)
        return _Plan(min(L, max(16, 1 << max(fit.bit_length() - 1, 0))), None, looped=True)
    if batch * L * S <= _SMALL:
        return _Plan(None, None)
    if traced:
        # torch.compile unrolls Python loops into its graph: no loop over heads, and at
        # most _TRACED_BLOCKS query blocks (fewer while a block's scores fit _TRACED_TILE),
        # each an exact softmax over the keys it sees in one tile; the compiler fuses
        # each block's formula itself. The graph, and its compile time, grow with the blocks.
        # Comparisons only: a size traced symbolically then stays symbolic (bit_length or
        # a log would fix it to a constant, and compile again for each new size).
        rows = max(rows, -(-L // _TRACED_BLOCKS))
        while rows < L and batch * S * rows * 2 <= _TRACED_TILE:
            rows *= 2
        while is_causal and batch * S * rows > _MAPPED and rows * 2 * _TRACED_BLOCKS > L:
            rows //= 2
        return _Plan(rows, None)
    if not is_causal:
        return _ELEMENT_TILE
    keys = min(S, _CAUSAL_KEYS)
    while batch * rows * keys > _CAUSAL_TILE and (rows > 64 or keys > 256):
        if rows > 64:
            rows //= 2
        else:
            keys //= 2
    return _Plan(rows, keys)


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
    drop: _Drop,
    is_causal: bool,
    G: int,
    plan: _Plan,
    xp: Namespace,
) -> tuple[Array, Array]:
    """softmax(scores) @ v block by block: (..., G, L, E) queries → (..., G, L, Ev) and lse."""
    L, S = q.shape[-2], kT.shape[-1]
    rows = L if plan.rows is None else min(plan.rows, L)
    outs, lses = [], []
    for p0, p1 in _query_blocks(L, rows):
        qt = _fold(q[..., p0:p1, :], G, p1 - p0, xp)  # (..., G·Lb, E)
        key_blocks = _key_blocks(S, p0, p1, is_causal, plan.keys)
        rows_ = _rows(mask, drop, is_causal, p0, p1, G, q, xp)
        out, lse = _softmax_times(qt, kT, v, rows_, G, key_blocks, xp)
        outs.append(_unfold(out, G, xp))  # (..., G, Lb, Ev)
        lses.append(_unfold(lse, G, xp))  # (..., G, Lb, 1)
    if len(outs) == 1:
        return outs[0], lses[0]
    return xp.concat(outs, axis=-2), xp.concat(lses, axis=-2)


def _query_blocks(L: int, rows: int) -> list[tuple[int, int]]:
    """The query ranges [p0, p1) of `rows` queries each (the last one shorter).

    When one block holds them all, its range is (0, L) with no loop over L: under
    torch.compile L then stays a symbolic size, one graph for every length.
    """
    if rows >= L:
        return [(0, L)]
    return [(p0, min(p0 + rows, L)) for p0 in range(0, L, rows)]


def _looped(
    q: Array,
    kT: Array,
    v: Array,
    mask: Array | None,
    drop: _Drop,
    is_causal: bool,
    G: int,
    plan: _Plan,
    xp: Namespace,
) -> tuple[Array, Array]:
    """`_tiled` with the query blocks as the steps of a compiled loop (`_xp.scan`).

    Every block sees every key block (the causal skip needs a block's position
    as a Python int, which a traced loop does not have); the mask does the rest.
    """
    L, S = q.shape[-2], kT.shape[-1]
    rows = min(plan.rows or L, L)
    key_blocks = _key_blocks(S, 0, 0, False, plan.keys)

    def block(carry: None, x: tuple[Array, ...]) -> tuple[None, tuple[Array, Array]]:
        qb, positions, *mask_rows = x
        these = _looped_rows(mask_rows[0] if mask_rows else mask, drop, is_causal, positions, G, xp)
        out, lse = _softmax_times(_fold(qb, G, rows, xp), kT, v, these, G, key_blocks, xp)
        return carry, (_unfold(out, G, xp), _unfold(lse, G, xp))

    _, (out, lse) = scan(block, None, _row_blocks((q,), mask, rows, xp), xp)
    return _from_row_blocks(out, L, xp), _from_row_blocks(lse, L, xp)


def _row_blocks(
    arrays: tuple[Array, ...], mask: Array | None, rows: int, xp: Namespace
) -> tuple[Array, ...]:
    """`arrays` `(..., L, ·)` cut into `(n, ..., rows, ·)` blocks, with their positions.

    The last block is zero-padded; the mask's rows are cut too when it has them.
    """
    L = arrays[0].shape[-2]
    n = -(-L // rows)
    cut = [*arrays, *([mask] if mask is not None and mask.shape[-2] > 1 else [])]
    blocks = []
    for x in cut:
        if n * rows > L:
            pad = xp.zeros(
                (*x.shape[:-2], n * rows - L, x.shape[-1]), dtype=x.dtype, device=device(x)
            )
            x = xp.concat([x, pad], axis=-2)
        x = xp.reshape(x, (*x.shape[:-2], n, rows, x.shape[-1]))  # (..., n, rows, ·)
        blocks.append(xp.moveaxis(x, -3, 0))  # (n, ..., rows, ·)
    positions = xp.reshape(xp.arange(n * rows, device=device(arrays[0])), (n, rows))
    return (*blocks[: len(arrays)], positions, *blocks[len(arrays) :])


def _from_row_blocks(y: Array, L: int, xp: Namespace) -> Array:
    """`(n, ..., rows, ·)` blocks back to `(..., L, ·)`: the inverse of `_row_blocks`."""
    y = xp.moveaxis(y, 0, -3)  # (..., n, rows, ·)
    y = xp.reshape(y, (*y.shape[:-3], y.shape[-3] * y.shape[-2], y.shape[-1]))
    return y[..., :L, :]


def _key_blocks(
    S: int, p0: int, p1: int, is_causal: bool, keys: int | None
) -> list[tuple[int, int]]:
    """The key ranges [c0, c1) that queries [p0, p1) see, `keys` at a time (None: all).

    With `is_causal`, keys after the block's last query are never seen, and the
    keys before its first query are seen by every query of the block: only the
    ranges from `p0` on, the diagonal, need the causal mask (without key blocks,
    one tile takes all the keys the block sees, masked).
    """

    def split(start: int, stop: int) -> list[tuple[int, int]]:
        if keys is None:  # one range, no loop over a (perhaps symbolic) size
            return [(start, stop)]
        return [(c0, min(c0 + keys, stop)) for c0 in range(start, stop, keys)]

    if not is_causal:
        return split(0, S)
    if keys is None:  # one tile, the diagonal's causal mask over all of it
        return split(0, min(p1, S))
    below = min(p0, S)
    return split(0, below) + split(below, min(p1, S))


def _softmax_times(
    qt: Array,
    kT: Array,
    v: Array,
    rows: _Rows,
    G: int,
    key_blocks: list[tuple[int, int]],
    xp: Namespace,
) -> tuple[Array, Array]:
    """softmax(scores) @ v over key blocks, by the online-softmax recurrence; and the lse.

    The scores are in base 2 (see `_attention`). After each block, `m` is the
    running row maximum, `total` the sum of 2^(score - m) and `acc` the sum of
    2^(score - m) v over the keys seen so far; a new maximum rescales both by
    2^(m_old - m_new). With one block this is the plain formula, the row sums
    applied to the `Lb×Ev` output rather than to the `Lb×Kb` probabilities. The
    base-2 log-sum-exp of each row's scores, m + log2(total), comes out beside it.
    """
    # Only a mask can leave a row without a key: with `is_causal` alone, every query's
    # first block holds a key it sees. Without one, the guards below are skipped.
    guarded = rows.mask is not None
    m: Array = None
    total: Array = None
    acc: Array = None
    for c0, c1 in key_blocks:
        scores = _scores(qt, kT, rows, G, c0, c1, xp)  # (..., G·Lb, Kb)
        m_new = xp.max(scores, axis=-1, keepdims=True)  # (..., G·Lb, 1)
        if m is not None:
            m_new = xp.maximum(m, m_new)
        shift = m_new
        if guarded:  # a row with no key yet (max -inf) is shifted by 0: 2^-inf stays 0
            shift = xp.where(xp.isfinite(m_new), m_new, scalar(0.0, m_new, xp=xp))
        p = exp2(scores - shift, xp)  # (..., G·Lb, Kb), each ≤ 1
        kept = (
            p
            if rows.hashes is None
            else xp.where(_kept(rows, c0, c1, xp), p, scalar(0.0, p, xp=xp))
        )
        pv = kept @ v[..., c0:c1, :]  # (..., G·Lb, Ev); the row sums keep every weight
        row_sum = xp.sum(p, axis=-1, keepdims=True)  # (..., G·Lb, 1)
        if m is None:
            total, acc = row_sum, pv
        else:
            alpha = exp2(m - shift, xp)  # (..., G·Lb, 1): 0 while a row has seen no key
            total = alpha * total + row_sum
            acc = alpha * acc + pv
        m = m_new
    if not guarded:  # total ≥ 1: the row maximum contributes 2^0
        return acc / total, m + xp.log2(total)
    # total is 0 only for a row that may see no key: its output is 0, not 0/0, and its
    # log-sum-exp +inf, so that the backward pass's 2^(score - lse) is 0 there too.
    seen = total > 0
    total = xp.where(seen, total, scalar(1.0, total, xp=xp))
    return acc / total, xp.where(seen, m + xp.log2(total), scalar(math.inf, total, xp=xp))


class _Drop(NamedTuple):
    """Dropout, for the whole call: the hash of each head and the threshold (see `_dropout`)."""

    heads: Array | None  # (..., Hkv, G, 1, 1) int32; None without dropout
    drop: int | None


class _Rows(NamedTuple):
    """A block of query rows: its mask rows, its causal positions, its dropout hashes.

    `positions` holds the block's query positions when `is_causal` (else None);
    `first`, the first of them as a Python int, lets a tile wholly below the
    diagonal skip the causal mask (None: unknown while tracing a loop, always mask).
    """

    mask: Array | None  # (..., G|1, Lb|1, S|1)
    positions: Array | None  # (Lb,)
    first: int | None
    hashes: Array | None = None  # (..., G·Lb, 1) int32; None without dropout
    drop: int | None = None


def _rows(
    mask: Array | None,
    drop: _Drop,
    is_causal: bool,
    p0: int,
    p1: int,
    G: int,
    like: Array,
    xp: Namespace,
) -> _Rows:
    """The `_Rows` of query positions [p0, p1)."""
    if mask is not None and mask.shape[-2] > 1:
        mask = mask[..., p0:p1, :]
    positions = xp.arange(p0, p1, device=device(like)) if is_causal else None
    hashes = None
    if drop.heads is not None:
        hashes = _row_hashes(drop.heads, xp.arange(p0, p1, device=device(like)), G, xp)
    return _Rows(mask, positions, p0, hashes, drop.drop)


def _looped_rows(
    mask: Array | None, drop: _Drop, is_causal: bool, positions: Array, G: int, xp: Namespace
) -> _Rows:
    """The `_Rows` of a step of a compiled loop, whose `positions` are traced."""
    hashes = None if drop.heads is None else _row_hashes(drop.heads, positions, G, xp)
    return _Rows(mask, positions if is_causal else None, None, hashes, drop.drop)


def _scores(qt: Array, kT: Array, rows: _Rows, G: int, c0: int, c1: int, xp: Namespace) -> Array:
    """Masked scaled scores of a block of query rows against keys [c0, c1)."""
    scores = qt @ kT[..., c0:c1]  # (..., Hkv, G·Lb, Kb)
    Lb = qt.shape[-2] // G
    allowed = None
    if rows.mask is not None:
        tile = rows.mask[..., c0:c1] if rows.mask.shape[-1] > 1 else rows.mask
        tile = _fold(tile, G, Lb, xp)
        if xp.isdtype(tile.dtype, "bool"):
            allowed = tile
        else:
            scores = scores + tile * _LOG2_E  # in base 2, as the scores; per tile: no mask copy
    # Only where some key lies after some query of the block.
    if rows.positions is not None and (rows.first is None or c1 - 1 > rows.first):
        row = rows.positions  # query positions
        if G > 1:
            row = xp.reshape(xp.broadcast_to(row, (G, Lb)), (-1,))
        causal = row[:, None] >= xp.arange(c0, c1, device=device(qt))[None, :]  # (G·Lb, Kb)
        allowed = causal if allowed is None else xp.logical_and(allowed, causal)
    if allowed is not None:
        scores = xp.where(allowed, scores, scalar(-math.inf, scores, xp=xp))
    return scores


def _backward(
    arrays: tuple[Array, ...],
    out: Array,
    saved: tuple[Array, ...],
    dout: Array,
    needs: tuple[bool, ...],
    static: _Static,
) -> tuple[Array | None, ...]:
    """The gradients of (query, key, value, mask) from dout, by recomputing the tiles.

    FlashAttention-2's backward pass: with P = 2^(scores - lse) recomputed tile by
    tile from the saved base-2 row log-sum-exp, and D = rowsum(dO ∘ O),

        dV += Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP - D),   dQ += s·dS K,   dK += s·dSᵀ Q,

    and the gradient of a float mask is dS itself, summed over its broadcast axes.

    With dropout, O = (P ∘ Z) V / (1 - p) for the kept weights Z, regenerated tile by
    tile from their hashes: dV = (P ∘ Z)ᵀ dO / (1 - p), and dP is zero where a weight
    was dropped, dO Vᵀ / (1 - p) where it was kept; D = Σ_j P dP = dO · O still holds.
    """
    query, key, value, mask, _ = arrays
    (lse,) = saved
    xp, G, work = static.xp, static.G, static.work
    q, k, v, m, heads, empty = _prepare(arrays, static)
    drop = _Drop(heads, static.drop)
    want_mask = m is not None and needs[3] and not xp.isdtype(m.dtype, "bool")
    do = xp.astype(dout, work, copy=False)  # (..., Hq, L, Ev)
    o = xp.astype(out, work, copy=False)
    # D = rowsum(dO ∘ O), the one term of the softmax's Jacobian that couples a row.
    D = xp.sum(do * o, axis=-1, keepdims=True)  # (..., Hq, L, 1)
    if heads is not None:  # dO / (1 - p), the factor of every kept weight
        do = do * static.rescale
    do, D, lse = (_split_heads(a, G, xp) for a in (do, D, lse))  # (..., Hkv, G, L, ·)
    if empty:  # nothing was attended: every gradient is zero
        dq, dk, dv = (xp.zeros_like(a) for a in (q, k, v))
        dm = xp.zeros(m.shape, dtype=work, device=device(q)) if m is not None else None
    elif static.plan.looped:
        dq, dk, dv, dm = _looped_backward(q, k, v, m, drop, do, D, lse, static, want_mask)
    elif not static.plan.per_element:
        dq, dk, dv, dm = _tiled_backward(q, k, v, m, drop, do, D, lse, static, want_mask)
    else:
        batch = _batch(q, xp.matrix_transpose(k), v)
        parts = [
            _tiled_backward(
                _element(q, index, 3),  # (G, L, E)
                _element(k, index, 2),  # (S, E)
                _element(v, index, 2),  # (S, Ev)
                None if m is None else _element(m, index, 3),  # (G|1, L|1, S|1)
                drop._replace(heads=None if heads is None else _element(heads, index, 3)),
                _element(do, index, 3),  # (G, L, Ev)
                _element(D, index, 3),  # (G, L, 1)
                _element(lse, index, 3),  # (G, L, 1)
                static,
                want_mask,
            )
            for index in itertools.product(*(range(n) for n in batch))
        ]
        dq, dk, dv = (_stack([part[i] for part in parts], batch, xp) for i in range(3))
        dm = _stack([part[3] for part in parts], batch, xp) if want_mask else None
    dq = _merge_heads(_sum_to(dq, q.shape, xp), G, xp)
    dk, dv = _sum_to(dk, k.shape, xp), _sum_to(dv, v.shape, xp)
    grads = [
        xp.astype(xp.reshape(g, a.shape), a.dtype, copy=False) if need else None
        for g, a, need in zip((dq, dk, dv), (query, key, value), needs, strict=False)
    ]
    if want_mask and m is not None and mask is not None:
        grads.append(xp.astype(xp.reshape(_sum_to(dm, m.shape, xp), mask.shape), mask.dtype))
    else:
        grads.append(None)
    return (*grads, None)  # the dropout seed has none


def _tiled_backward(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None,
    drop: _Drop,
    do: Array,
    D: Array,
    lse: Array,
    static: _Static,
    want_mask: bool,
) -> tuple[Array, Array, Array, Array | None]:
    """The gradients dQ `(..., G, L, E)`, dK `(..., S, E)`, dV `(..., S, Ev)`, d mask, by tiles.

    Key blocks outside, query blocks inside (FlashAttention-2's order): the
    gradients of a key block are summed over the queries that see it, then set
    aside; those of a query block are summed over the key blocks. With
    `is_causal`, a key block after every query of a block is skipped.
    """
    xp, G, plan = static.xp, static.G, static.plan
    if plan.keys is None:
        return _row_backward(q, k, v, mask, drop, do, D, lse, static, want_mask)
    L, S = q.shape[-2], k.shape[-2]
    rows = L if plan.rows is None else min(plan.rows, L)
    step = plan.keys
    if static.is_causal:  # key blocks that line up with the query blocks can be skipped
        step = min(step, rows)
    kT, vT = xp.matrix_transpose(k), xp.matrix_transpose(v)  # (..., E|Ev, S), views
    # Each query block folded once, (..., G·Lb, ·): its queries, dO, lse and D.
    blocks = []
    for p0, p1 in _query_blocks(L, rows):
        blocks.append((p0, p1, *(_fold(a[..., p0:p1, :], G, p1 - p0, xp) for a in (q, do, lse, D))))
    dq: list[Array] = []
    dks: list[Array] = []
    dvs: list[Array] = []
    dmask: dict[tuple[int, int], Array] = {}
    for c0 in range(0, S, step):
        c1 = min(c0 + step, S)
        dk = dv = None
        for i, (p0, p1, qt, dot, lset, Dt) in enumerate(blocks):
            if static.is_causal and c0 >= p1:  # every key comes after every query
                continue
            rows_ = _rows(mask, drop, static.is_causal, p0, p1, G, q, xp)
            dq_t, dk_t, dv_t, ds = _tile_backward(qt, kT, vT, rows_, dot, lset, Dt, c0, c1, static)
            if c0 == 0:  # the first key block is seen by every query block
                dq.append(dq_t)
            else:
                dq[i] = dq[i] + dq_t
            dk = dk_t if dk is None else dk + dk_t
            dv = dv_t if dv is None else dv + dv_t
            if want_mask:
                dmask[i, c0] = _sum_to(_unfold(ds, G, xp), _tile_shape(mask, p1 - p0, c1 - c0), xp)
        if dk is None:  # causal, S > L: no query sees these keys (block 0 always has one)
            dk, dv = (
                xp.zeros_like(dks[0][..., : c1 - c0, :]),
                xp.zeros_like(dvs[0][..., : c1 - c0, :]),
            )
        # The tiles used q·s·log2 e: dK = s·Σ dSᵀ Q = ln 2·Σ dSᵀ q (scaled block by
        # block, so that no full-size copy is made for it).
        dks.append(dk * math.log(2.0))
        dvs.append(dv)
    for i, a in enumerate(dq):
        dq[i] = _unfold(a * static.s, G, xp)  # dQ = s·Σ dS K
    dm = _assemble(dmask, mask, blocks, S, step, xp) if want_mask else None
    return _concat(dq, xp), _concat(dks, xp), _concat(dvs, xp), dm


def _row_backward(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None,
    drop: _Drop,
    do: Array,
    D: Array,
    lse: Array,
    static: _Static,
    want_mask: bool,
) -> tuple[Array, Array, Array, Array | None]:
    """`_tiled_backward` for plans without key blocks: one tile per query block.

    Each query block's tile spans every key it sees (with `is_causal`, the keys up
    to its last query), so a causal pass makes n tiles, not the n²/2 of aligned
    key blocks, and the program a compiler traces grows with n. Query blocks
    outside: a tile's share of dK and dV, zero-padded to all S keys, is added up.
    """
    xp, G, plan = static.xp, static.G, static.plan
    L, S = q.shape[-2], k.shape[-2]
    rows = L if plan.rows is None else min(plan.rows, L)
    kT, vT = xp.matrix_transpose(k), xp.matrix_transpose(v)  # (..., E|Ev, S), views
    dqs: list[Array] = []
    dms: list[Array] = []
    dk: Array = None
    dv: Array = None
    for p0, p1 in _query_blocks(L, rows):
        c1 = min(p1, S) if static.is_causal else S  # keys after the block's last query: none
        qt, dot, lset, Dt = (_fold(a[..., p0:p1, :], G, p1 - p0, xp) for a in (q, do, lse, D))
        rows_ = _rows(mask, drop, static.is_causal, p0, p1, G, q, xp)
        dq_t, dk_t, dv_t, ds = _tile_backward(qt, kT, vT, rows_, dot, lset, Dt, 0, c1, static)
        dqs.append(_unfold(dq_t * static.s, G, xp))  # dQ = s·dS K
        dk_t, dv_t = (_pad_rows(a, S, xp) for a in (dk_t, dv_t))
        dk = dk_t if dk is None else dk + dk_t
        dv = dv_t if dv is None else dv + dv_t
        if want_mask and mask is not None:
            dm = _sum_to(_unfold(ds, G, xp), _tile_shape(mask, p1 - p0, c1), xp)
            if mask.shape[-1] != 1:  # keys no query of the block sees: zero gradient
                dm = xp.matrix_transpose(_pad_rows(xp.matrix_transpose(dm), S, xp))
            dms.append(dm)
    # The tiles used q·s·log2 e: dK = s·Σ dSᵀ Q = ln 2·Σ dSᵀ q.
    dm = _join(dms, -2, mask.shape[-2] != 1, xp) if want_mask and mask is not None else None
    return _concat(dqs, xp), dk * math.log(2.0), dv, dm


def _pad_rows(x: Array, rows: int, xp: Namespace) -> Array:
    """`x` `(..., r, ·)` with zero rows appended up to `rows`."""
    if x.shape[-2] == rows:
        return x
    pad = xp.zeros(
        (*x.shape[:-2], rows - x.shape[-2], x.shape[-1]), dtype=x.dtype, device=device(x)
    )
    return xp.concat([x, pad], axis=-2)


def _looped_backward(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None,
    drop: _Drop,
    do: Array,
    D: Array,
    lse: Array,
    static: _Static,
    want_mask: bool,
) -> tuple[Array, Array, Array, Array | None]:
    """`_tiled_backward` with the query blocks as the steps of a compiled loop.

    Query blocks outside: each step returns its block's dQ (and mask rows) and
    adds its share of dK and dV, over all keys, to the loop's carry.
    """
    xp, G, plan = static.xp, static.G, static.plan
    L, S = q.shape[-2], k.shape[-2]
    rows = min(plan.rows or L, L)
    kT, vT = xp.matrix_transpose(k), xp.matrix_transpose(v)
    key_blocks = _key_blocks(S, 0, 0, False, plan.keys)
    batch = _batch(q, kT, v)
    mask_rows = mask is not None and mask.shape[-2] > 1
    carry = (
        xp.zeros((*batch, S, k.shape[-1]), dtype=q.dtype, device=device(q)),
        xp.zeros((*batch, S, v.shape[-1]), dtype=q.dtype, device=device(q)),
        xp.zeros(_tile_shape(mask, 1, S), dtype=q.dtype, device=device(q))
        if want_mask and not mask_rows
        else None,
    )

    def block(carry: Any, x: tuple[Array, ...]) -> tuple[Any, tuple[Array, ...]]:
        dk, dv, dm = carry
        qb, dob, lseb, Db, positions, *mask_block = x
        qt, dot, lset, Dt = (_fold(a, G, rows, xp) for a in (qb, dob, lseb, Db))
        these = _looped_rows(
            mask_block[0] if mask_block else mask, drop, static.is_causal, positions, G, xp
        )
        dq: Array = None
        dks, dvs, dms = [], [], []
        for c0, c1 in key_blocks:
            dq_t, dk_t, dv_t, ds = _tile_backward(qt, kT, vT, these, dot, lset, Dt, c0, c1, static)
            dq = dq_t if dq is None else dq + dq_t
            dks.append(dk_t)
            dvs.append(dv_t)
            if want_mask:
                dms.append(_sum_to(_unfold(ds, G, xp), _tile_shape(these.mask, rows, c1 - c0), xp))
        dk = dk + xp.concat(dks, axis=-2) * math.log(2.0)  # dK = ln 2·Σ dSᵀ q
        dv = dv + xp.concat(dvs, axis=-2)
        ys: tuple[Array, ...] = (_unfold(dq * static.s, G, xp),)  # dQ = s·Σ dS K
        if want_mask and mask is not None:
            dm_rows = _join(dms, -1, mask.shape[-1] != 1, xp)
            if mask_rows:
                ys = (*ys, dm_rows)
            else:
                dm = dm + dm_rows
        return (dk, dv, dm), ys

    (dk, dv, dm), ys = scan(block, carry, _row_blocks((q, do, lse, D), mask, rows, xp), xp)
    dq = _from_row_blocks(ys[0], L, xp)
    if want_mask and mask_rows:
        dm = _from_row_blocks(ys[1], L, xp)
    return dq, dk, dv, dm


def _tile_backward(
    qt: Array,
    kT: Array,
    vT: Array,
    rows: _Rows,
    dot: Array,
    lset: Array,
    Dt: Array,
    c0: int,
    c1: int,
    static: _Static,
) -> tuple[Array, Array, Array, Array]:
    """One tile's Σ dS K, Σ dSᵀ q and dV, and its dS: a block of queries by keys [c0, c1).

    A function of its own so that its `Lb×Kb` temporaries are freed on return.
    """
    xp = static.xp
    scores = _scores(qt, kT, rows, static.G, c0, c1, xp)
    p = exp2(scores - lset, xp)  # P, the attention weights (0 where masked), (..., G·Lb, Kb)
    del scores
    dp = dot @ vT[..., c0:c1]  # dP = dO Vᵀ
    if rows.hashes is None:
        dv_t = xp.matrix_transpose(p) @ dot  # (..., Kb, Ev)
    else:  # only the weights dropout kept carry a gradient (dO was scaled by 1 / (1 - p))
        kept = _kept(rows, c0, c1, xp)
        dv_t = xp.matrix_transpose(xp.where(kept, p, scalar(0.0, p, xp=xp))) @ dot
        dp = xp.where(kept, dp, scalar(0.0, dp, xp=xp))
    ds = p * (dp - Dt)  # dS = P ∘ (dP - D)
    del p, dp
    dq_t = ds @ xp.matrix_transpose(kT[..., c0:c1])  # (..., G·Lb, E)
    dk_t = xp.matrix_transpose(ds) @ qt  # (..., Kb, E): summed over the group
    return dq_t, dk_t, dv_t, ds


def _concat(parts: list[Array], xp: Namespace) -> Array:
    """`parts` joined along the rows (-2), without a copy when there is one."""
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-2)


def _tile_shape(mask: Array, rows: int, keys: int) -> tuple[int, ...]:
    """The shape of `mask`'s part in a tile of `rows` queries by `keys` keys."""
    *lead, Lm, Sm = mask.shape
    return (*lead, rows if Lm != 1 else 1, keys if Sm != 1 else 1)


def _assemble(
    pieces: dict[tuple[int, int], Array],
    mask: Array,
    blocks: list[tuple[Any, ...]],
    S: int,
    step: int,
    xp: Namespace,
) -> Array:
    """The mask gradient from its tiles.

    Tiles are joined along the axes the mask has in full and summed along its
    broadcast ones; a tile that causality skipped is zero.
    """
    like = pieces[0, 0]  # the first tile is never skipped
    rows = []
    for i, (p0, p1, *_) in enumerate(blocks):
        cols = []
        for c0 in range(0, S, step):
            tile = pieces.get((i, c0))
            if tile is None:
                shape = _tile_shape(mask, p1 - p0, min(c0 + step, S) - c0)
                tile = xp.zeros(shape, dtype=like.dtype, device=device(like))
            cols.append(tile)
        rows.append(_join(cols, -1, mask.shape[-1] != 1, xp))
    return _join(rows, -2, mask.shape[-2] != 1, xp)


def _join(parts: list[Array], axis: int, full: bool, xp: Namespace) -> Array:
    """Concatenate `parts` along `axis` if the mask has it in full, else sum them."""
    if full:
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=axis)
    return functools.reduce(operator.add, parts)


def _unfold(x: Array, G: int, xp: Namespace) -> Array:
    """(..., G·rows, K) → (..., G, rows, K): the inverse of `_fold`."""
    return xp.reshape(x, (*x.shape[:-2], G, x.shape[-2] // G, x.shape[-1]))


def _batch(q: Array, kT: Array, v: Array) -> tuple[int, ...]:
    """The broadcast batch axes of split queries, transposed keys and values."""
    return _broadcast(
        {"query": q.shape[:-3], "key": kT.shape[:-2], "value": v.shape[:-2]}, "batch axes"
    )


def _stack(parts: list[Array], batch: tuple[int, ...], xp: Namespace) -> Array:
    """Per-element results, in `itertools.product` order, stacked into `(*batch, ...)`."""
    whole = parts[0] if len(parts) == 1 else xp.stack(parts)  # one element: no copy
    return xp.reshape(whole, (*batch, *parts[0].shape))


def _sum_to(x: Array, shape: tuple[int, ...], xp: Namespace) -> Array:
    """`x` summed over the axes that broadcasting added to, or widened from, `shape`."""
    lead = x.ndim - len(shape)
    widened = (lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
    axes = (*range(lead), *widened)
    if axes:
        x = xp.sum(x, axis=axes, keepdims=True)
    return xp.reshape(x, tuple(shape))


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
        # A list, not a set: hashing a size that torch.compile traces symbolically would
        # fix it to a constant, and compile again for every batch size.
        sizes = [s[i] for s in shapes.values() if len(s) >= -i and s[i] != 1]
        if any(n != sizes[0] for n in sizes[1:]):
            described = ", ".join(f"`{name}` {s}" for name, s in shapes.items())
            raise ValueError(f"the {what} do not broadcast: {described}")
        out.append(sizes[0] if sizes else 1)
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
            raise ValueError(
                f"`{name}` must have shape (..., length, features), got {tuple(x.shape)}"
            )
    L, E = query.shape[-2:]
    S = key.shape[-2]
    if key.shape[-1] != E:
        raise ValueError(
            f"`key` must have the head dimension E = {E} of `query` (shape {tuple(query.shape)}), "
            f"got shape {tuple(key.shape)}"
        )
    if value.shape[-2] != S:
        raise ValueError(
            f"`value` must have the S = {S} rows of `key` (shape {tuple(key.shape)}), "
            f"got shape {tuple(value.shape)}"
        )
    G = 1
    batch_q = tuple(query.shape[:-2])
    if enable_gqa:
        if min(query.ndim, key.ndim, value.ndim) < 3:
            raise ValueError(
                "`enable_gqa` needs a head axis (-3) in `query`, `key` and `value`, got shapes "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        Hq, Hkv = query.shape[-3], key.shape[-3]
        if value.shape[-3] != Hkv:
            raise ValueError(
                f"`value` must have the {Hkv} heads of `key` (shape {tuple(key.shape)}), "
                f"got shape {tuple(value.shape)}"
            )
        if Hq % Hkv:
            raise ValueError(
                f"`enable_gqa`: the query heads of `query` (shape {tuple(query.shape)}, Hq = {Hq}) "
                f"must be a multiple of the heads of `key` (shape {tuple(key.shape)}, Hkv = {Hkv})"
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
                f"`mask` of shape {tuple(mask.shape)} does not broadcast to (..., L, S) = {target}"
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
    dropout_p: float = 0.0,
    dropout_seed: int | Array | None = None,
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
        dropout_p: As in :func:`attention`: dropout of the attention weights
            (`nn.MultiheadAttention`'s `dropout`, in training).
        dropout_seed: As in :func:`attention`.
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
    o = attention(  # (..., H, L, E)
        q,
        k,
        v,
        mask=mask,
        is_causal=is_causal,
        dropout_p=dropout_p,
        dropout_seed=dropout_seed,
        xp=xp,
    )
    o = xp.moveaxis(o, -3, -2)  # (..., L, H, E)
    o = xp.reshape(o, (*o.shape[:-2], D)) @ xp.matrix_transpose(cast["w_o"])  # (..., L, Do)
    o = o if cast["b_o"] is None else o + cast["b_o"]
    return xp.astype(o, out_dtype, copy=False)


def _check_projections(arrays: dict[str, Array], num_heads: int) -> int:
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
                f"`{x}` (shape {tuple(arrays[x].shape)}), got {tuple(w.shape)}"
            )
    if arrays["w_o"].ndim != 2 or arrays["w_o"].shape[1] != D:
        raise ValueError(f"`w_o` must have shape (Do, {D}), got {tuple(arrays['w_o'].shape)}")
    for name, size in (("b_q", D), ("b_k", D), ("b_v", D), ("b_o", arrays["w_o"].shape[0])):
        b = arrays[name]
        if b is not None and tuple(b.shape) != (size,):
            raise ValueError(f"`{name}` must have shape ({size},), got {tuple(b.shape)}")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"`num_heads` must be a positive int, got {num_heads!r}")
    if D % num_heads:
        raise ValueError(f"`num_heads` = {num_heads} must divide the projected width D = {D}")
    return int(D)
