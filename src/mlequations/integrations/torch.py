"""PyTorch modules and functions backed by the portable equations.

``scaled_dot_product_attention`` takes the signature of
``torch.nn.functional.scaled_dot_product_attention``, so a call site can switch
to it by name; ``Conv2d`` is an ``nn.Conv2d`` (same parameters, same
``state_dict``) whose forward pass is :func:`mlequations.conv2d`; and
``convert_conv2d(model)`` swaps every ``nn.Conv2d`` of a model for it in place.

Differences from torch, by design: a query row that may attend to no key gives
zeros (torch gives NaN, or zeros in recent versions), and `attn_mask` may be
combined with `is_causal` (torch raises). Attention dropout draws its seed from
torch's generator (``torch.manual_seed`` makes it repeatable) and its mask from
:func:`mlequations.attention`'s hash, so it differs from torch's own mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import mlequations as mle

__all__ = ["Conv2d", "convert_conv2d", "dropout_seed", "scaled_dot_product_attention"]


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """:func:`mlequations.attention` with the signature of torch's SDPA.

    Args:
        query: Queries, shape `(..., L, E)`.
        key: Keys, shape `(..., S, E)`.
        value: Values, shape `(..., S, Ev)`.
        attn_mask: Boolean (True = may attend) or additive float mask,
            broadcastable to `(..., L, S)`.
        dropout_p: Attention dropout probability, applied whenever it is
            positive, as by torch's SDPA; the seed of the mask is drawn from
            torch's default generator on each call (see :func:`dropout_seed`).
        is_causal: Top-left causal mask, as torch's.
        scale: Score factor; default `1/sqrt(E)`.
        enable_gqa: Grouped-query attention (query heads on axis -3 a multiple
            of the key heads), without repeating keys and values.

    Returns:
        The attention output, shape `(..., L, Ev)`.

    Examples:
        >>> import torch
        >>> from mlequations.integrations.torch import scaled_dot_product_attention
        >>> q = k = v = torch.ones(1, 2, 3, 4)
        >>> scaled_dot_product_attention(q, k, v, is_causal=True).shape
        torch.Size([1, 2, 3, 4])
    """
    # Callers often pass transposed views, on which a training step of mlequations.attention
    # ran 1.3x slower ((4, 8, 1024, 32), 2-core CPU) than on contiguous copies.
    q, k, v = query.contiguous(), key.contiguous(), value.contiguous()
    out: torch.Tensor = mle.attention(
        q,
        k,
        v,
        mask=attn_mask,
        is_causal=is_causal,
        scale=scale,
        enable_gqa=enable_gqa,
        dropout_p=dropout_p,
        dropout_seed=dropout_seed(dropout_p, q.device),
    )
    return out


def dropout_seed(p: float, device: torch.device) -> torch.Tensor | None:
    """A fresh seed for :func:`mlequations.attention`'s dropout, or None when `p` is 0.

    Drawn from torch's default generator for `device` (``torch.manual_seed``
    makes a run repeatable), as a 0-d tensor on that device, so that neither
    ``torch.compile`` nor a CUDA graph bakes one seed into the program.
    """
    if p == 0.0:
        return None
    return torch.randint(2**31 - 1, (), device=device)


class Conv2d(nn.Conv2d):
    """An ``nn.Conv2d`` whose forward pass is :func:`mlequations.conv2d`.

    It takes the same arguments, holds the same parameters and gives the same
    ``state_dict``, so weights load unchanged; every `padding_mode` works
    (non-zero modes pad with ``F.pad`` first, as ``nn.Conv2d`` does).

    Examples:
        >>> import torch
        >>> from mlequations.integrations.torch import Conv2d
        >>> conv = Conv2d(3, 8, 3, padding=1)
        >>> conv(torch.ones(1, 3, 5, 5)).shape
        torch.Size([1, 8, 5, 5])
    """

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        padding: str | tuple[int, ...] | int
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding if isinstance(self.padding, str) else tuple(self.padding)
        out: torch.Tensor = mle.conv2d(
            input,
            weight,
            bias,
            stride=tuple(self.stride),
            padding=padding,
            dilation=tuple(self.dilation),
            groups=self.groups,
        )
        return out


def convert_conv2d(module: nn.Module) -> nn.Module:
    """Swap every ``nn.Conv2d`` in `module` (itself included) for :class:`Conv2d`, in place.

    The swap changes each layer's class and nothing else: parameters, buffers,
    hooks and an optimizer that holds them are untouched. Subclasses of
    ``nn.Conv2d`` are left alone, since they may define their own forward.

    Args:
        module: A model.

    Returns:
        `module`, for chaining.

    Examples:
        >>> from torch import nn
        >>> from mlequations.integrations.torch import Conv2d, convert_conv2d
        >>> model = convert_conv2d(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
        >>> type(model[0]) is Conv2d
        True
    """
    for layer in module.modules():
        if type(layer) is nn.Conv2d:
            layer.__class__ = Conv2d
    return module
