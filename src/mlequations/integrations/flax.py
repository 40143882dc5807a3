"""Flax: one ``attention_fn`` for linen's and nnx's multi-head attention layers.

For ``linen.MultiHeadDotProductAttention`` and ``nnx.MultiHeadAttention``:

    >>> from flax import nnx
    >>> from mlequations.integrations.flax import attention_fn
    >>> layer = nnx.MultiHeadAttention(num_heads=4, in_features=32, num_kv_heads=2,
    ...                                attention_fn=attention_fn, decode=False, rngs=nnx.Rngs(0))

The signature is spelled out because linen passes an ``attention_fn`` only the
keywords its signature names: a bare ``**kwargs`` would silently lose the mask.

Masks follow flax's convention, not :func:`mlequations.attention`'s: a mask is
boolean or float 0/1 and *selects* (nonzero = may attend); it is never added
to the scores. ``bias`` is added to the scores, as in flax.

A query row that may attend to no key (all of its mask is 0, e.g. a padded
position) differs by design:

================================  =========================================
flax ``dot_product_attention``    the mean of the values (a large negative
                                  number, not -inf, is put in the scores)
this ``attention_fn``             zeros, with zero gradients
================================  =========================================

Rows with at least one key agree.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import mlequations as mle

__all__ = ["attention_fn"]


def attention_fn(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Any = None,
    precision: Any = None,
    module: Any = None,
    is_causal: bool = False,
) -> jax.Array:
    """Flax's ``dot_product_attention`` contract, computed by :func:`mlequations.attention`.

    Args:
        query: Shape `(..., L, Hq, E)` (flax's layout: heads after the length).
        key: Shape `(..., S, Hkv, E)`; `Hq` a multiple of `Hkv` for
            grouped-query attention (nnx ``num_kv_heads``), never repeated.
        value: Shape `(..., S, Hkv, Ev)`.
        bias: Added to the scaled scores, broadcastable to `(..., Hq, L, S)`.
        mask: Boolean or float 0/1 (nonzero = may attend), broadcastable to
            `(..., Hq, L, S)`.
        broadcast_dropout: Flax shares one dropout mask across the batch and
            heads by default; here every (batch, head) has its own, as with
            ``broadcast_dropout=False`` (the mask is a hash of its position,
            never stored, so sharing it saves nothing).
        dropout_rng: Flax's dropout key: the seed of the mask is drawn from it,
            so the same key gives the same mask.
        dropout_rate: Attention dropout probability, applied unless `deterministic`.
        deterministic: Flax's evaluation flag (no dropout).
        dtype: The computation and output dtype; default the promoted dtype of
            `query`, `key` and `value`.
        precision: Flax's matmul precision; ignored (the portable matmuls run
            at the default precision of the inputs' dtype).
        module: Set by flax when attention weights are to be sown; they are
            never formed here, so this raises.
        is_causal: Top-left causal mask (nnx), combined with `mask`.

    Returns:
        The output, shape `(..., L, Hq, Ev)`.

    Raises:
        ValueError: Dropout in training without a `dropout_rng`.
        NotImplementedError: ``sow_weights``.
    """
    seed = None
    if dropout_rate > 0.0 and not deterministic:
        if dropout_rng is None:
            raise ValueError(
                f"`dropout_rate`={dropout_rate} in training needs a `dropout_rng` "
                "(flax passes the module's 'dropout' stream)"
            )
        seed = jax.random.randint(dropout_rng, (), 0, 2**31 - 1)
    else:
        dropout_rate = 0.0
    if module is not None:
        raise NotImplementedError(
            "`sow_weights`: mlequations.attention never forms the attention weights"
        )
    if dtype is None:
        dtype = jnp.result_type(query, key, value)
    q, k, v = (jnp.swapaxes(x.astype(dtype), -3, -2) for x in (query, key, value))  # (..., H, L, E)
    scores_mask = None if mask is None else mask.astype(bool)
    if bias is not None:
        bias = bias.astype(dtype)
        scores_mask = bias if scores_mask is None else jnp.where(scores_mask, bias, -jnp.inf)
    out = mle.attention(
        q,
        k,
        v,
        mask=scores_mask,
        is_causal=is_causal,
        enable_gqa=q.shape[-3] != k.shape[-3],
        dropout_p=dropout_rate,
        dropout_seed=seed,
    )  # (..., Hq, L, Ev)
    return jnp.swapaxes(out, -3, -2)  # (..., L, Hq, Ev)
