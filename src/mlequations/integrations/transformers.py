"""Hugging Face transformers: ``attn_implementation="mlequations"``.

``register()`` adds :func:`attention_forward` to transformers'
``AttentionInterface`` and its mask function (transformers' own
``sdpa_mask``) to ``AttentionMaskInterface``. Both are needed: a model whose
attention implementation has no registered mask function calls it with
``attention_mask=None``, and padding is then silently ignored.

    >>> import transformers
    >>> from mlequations.integrations.transformers import register
    >>> register()
    >>> cfg = transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64)
    >>> model = transformers.AutoModelForCausalLM.from_config(
    ...     cfg, attn_implementation="mlequations")
    >>> model.config._attn_implementation
    'mlequations'

The attention function follows ``sdpa_attention_forward`` rule for rule:
grouped-query keys and values are passed with their own head count (never
repeated per query head), ``scaling`` is the score factor, ``is_causal`` holds
only for more than one query and no mask (the module's ``is_causal`` when the
model passes none), a ``position_bias`` (T5) is added to the scores, and a
``softcap`` (Gemma 2) caps them (a dense path: the blockwise attention has no
cap). A query row that may see no key (a padded position) gives zeros where
SDPA may give NaN; the rows of real tokens agree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import mlequations as mle

from .torch import dropout_seed

__all__ = ["attention_forward", "register"]


def attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention function transformers calls, with :func:`mlequations.attention` inside.

    Args:
        module: The attention layer (its ``is_causal`` is the default).
        query: Shape `(B, Hq, L, E)`.
        key: Shape `(B, Hkv, S, E)`, `Hq` a multiple of `Hkv`.
        value: Shape `(B, Hkv, S, Ev)`.
        attention_mask: Boolean (True = may attend) or additive float mask
            broadcastable to `(B, Hq, L, S)`, or None.
        dropout: Attention dropout probability (0 outside training); the
            seed of each call's mask is drawn from torch's generator.
        scaling: The score factor; default `1/sqrt(E)`.
        is_causal: Causal attention when there is more than one query and no
            mask; default ``module.is_causal``.
        **kwargs: ``position_bias`` (added to the scores); ``softcap`` (scores
            capped to c·tanh(s/c), Gemma 2: formed densely, O(L·S) memory);
            ``s_aux`` (attention sinks) raises; others (``sliding_window``,
            already in the mask) are ignored, as by SDPA.

    Returns:
        The output, shape `(B, L, Hq, Ev)`, and None for the attention weights.

    Raises:
        NotImplementedError: Attention sinks, or `dropout` with `softcap`.
    """
    if kwargs.get("s_aux") is not None:
        raise NotImplementedError(
            "`s_aux` (attention sinks) is not supported by mlequations.attention; use "
            'attn_implementation="eager" for this model'
        )
    if is_causal is None:
        is_causal = getattr(module, "is_causal", True)
    is_causal = query.shape[2] > 1 and attention_mask is None and bool(is_causal)
    mask = attention_mask
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:  # additive; a boolean mask becomes -inf outside it
        if mask is None:
            mask = position_bias
        elif mask.dtype == torch.bool:
            mask = position_bias.masked_fill(~mask, float("-inf"))
        else:
            mask = position_bias + mask
    softcap = kwargs.get("softcap")
    if softcap is not None:
        if dropout:
            raise NotImplementedError(
                f"`dropout`={dropout} with `softcap`: the capped path has no dropout; train "
                'with attention_dropout=0.0 or attn_implementation="eager"'
            )
        out = _softcapped(query, key, value, mask, is_causal, scaling, float(softcap))
    else:
        # transformers hands over transposed views; a training step of mlequations.attention
        # ran 1.3x slower on them ((4, 8, 1024, 32), 2-core CPU) than on contiguous copies.
        out = mle.attention(
            query.contiguous(),
            key.contiguous(),
            value.contiguous(),
            mask=mask,
            is_causal=is_causal,
            scale=scaling,
            enable_gqa=query.shape[1] != key.shape[1],
            dropout_p=dropout,
            dropout_seed=dropout_seed(dropout, query.device),
        )  # (B, Hq, L, Ev)
    return out.transpose(1, 2).contiguous(), None  # (B, L, Hq, Ev)


def _softcapped(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    is_causal: bool,
    scaling: float | None,
    softcap: float,
) -> torch.Tensor:
    """Attention with capped scores, c·tanh(s/c) (Gemma 2), formed densely.

    `mlequations.attention` has no score cap, so this path forms the scores:
    O(L·S) memory, differentiated by autograd. Grouped-query heads share their
    keys through a reshape, never a copy, and a row that may see no key gives
    zeros, as in `mlequations.attention`.
    """
    B, Hq, L, E = query.shape
    Hkv, S = key.shape[1], key.shape[2]
    scale = E**-0.5 if scaling is None else scaling
    compute = torch.promote_types(query.dtype, torch.float32)  # half: softmax in float32
    q = query.reshape(B, Hkv, (Hq // Hkv) * L, E)  # query head h = kv head h // (Hq/Hkv)
    scores = (q @ key.transpose(-1, -2)).to(compute) * scale  # (B, Hkv, G·L, S)
    scores = (softcap * torch.tanh(scores / softcap)).reshape(B, Hq, L, S)
    allowed = torch.ones(L, S, dtype=torch.bool, device=query.device)
    if is_causal:
        allowed = allowed.tril()
    if mask is not None and mask.dtype == torch.bool:
        allowed = allowed & mask
    elif mask is not None:
        scores = scores + mask
    scores = scores.masked_fill(~allowed, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - torch.where(torch.isfinite(top), top, 0.0))  # max-shifted
    total = weights.sum(dim=-1, keepdim=True)
    weights = (weights / torch.where(total > 0, total, 1.0)).to(value.dtype)  # empty row: 0
    out = weights.reshape(B, Hkv, (Hq // Hkv) * L, S) @ value  # (B, Hkv, G·L, Ev)
    return out.reshape(B, Hq, L, value.shape[-1])


def register(name: str = "mlequations") -> None:
    """Make `name` usable as ``attn_implementation`` in transformers models.

    Registers :func:`attention_forward` with ``AttentionInterface`` and
    ``transformers.masking_utils.sdpa_mask`` (boolean masks, or None where
    ``is_causal`` suffices) with ``AttentionMaskInterface``. Calling it again
    is harmless.

    Args:
        name: The implementation's name, e.g. for
            ``AutoModel.from_config(cfg, attn_implementation=name)`` or
            ``model.set_attn_implementation(name)``.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, attention_forward)
    AttentionMaskInterface.register(name, sdpa_mask)
