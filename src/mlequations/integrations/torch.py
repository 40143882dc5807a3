"""PyTorch modules and functions backed by the portable equations.

``scaled_dot_product_attention`` takes the signature of
``torch.nn.functional.scaled_dot_product_attention``, so a call site can switch
to it by name; ``Conv2d`` is an ``nn.Conv2d`` (same parameters, same
``state_dict``) whose forward pass is :func:`mlequations.conv2d`; and
``convert_conv2d(model)`` swaps every ``nn.Conv2d`` of a model for it in place.

Differences from torch, by design: a query row that may attend to no key gives
zeros (torch gives NaN, or zeros in recent versions), and `attn_mask` may be
combined with `is_causal` (torch raises).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import mlequations as mle

__all__ = ["Conv2d", "convert_conv2d", "scaled_dot_product_attention"]


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
        dropout_p: Attention dropout probability. Only 0 is supported until
            `mlequations.attention` has dropout.
        is_causal: Top-left causal mask, as torch's.
        scale: Score factor; default `1/sqrt(E)`.
        enable_gqa: Grouped-query attention (query heads on axis -3 a multiple
            of the key heads), without repeating keys and values.

    Returns:
        The attention output, shape `(..., L, Ev)`.

    Raises:
        NotImplementedError: `dropout_p` > 0.

    Examples:
        >>> import torch
        >>> from mlequations.integrations.torch import scaled_dot_product_attention
        >>> q = k = v = torch.ones(1, 2, 3, 4)
        >>> scaled_dot_product_attention(q, k, v, is_causal=True).shape
        torch.Size([1, 2, 3, 4])
    """
    _check_dropout(dropout_p, "dropout_p")
    # Callers often pass transposed views, on which a training step of mlequations.attention
    # ran 1.3x slower ((4, 8, 1024, 32), 2-core CPU) than on contiguous copies.
    q, k, v = query.contiguous(), key.contiguous(), value.contiguous()
    out: torch.Tensor = mle.attention(
        q, k, v, mask=attn_mask, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa
    )
    return out


def _check_dropout(p: float, name: str) -> None:
    if p != 0.0:
        raise NotImplementedError(
            f"`{name}`={p}: attention dropout is not available in mlequations.attention yet; "
            "use 0.0 (for a model: evaluation mode, or an attention-dropout probability of 0 "
            "in its config)"
        )


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
