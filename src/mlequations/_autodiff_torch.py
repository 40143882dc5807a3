"""The PyTorch half of the autodiff seam (see ``_autodiff.py``): one ``autograd.Function``.

It lives in a module of its own so that importing mlequations never imports torch:
``_autodiff.apply`` imports it on the first call with torch tensors. The class is
defined once, at import, and takes the rule's two functions as arguments: a class
built inside a traced call would break dynamo's graph.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Rule"]


class Rule(torch.autograd.Function):
    """``Rule.apply(forward, backward, static, keeps_output, *arrays)`` → ``(out, *saved)``."""

    # torch.func.vmap runs the forward and backward passes batched: both are standard code.
    generate_vmap_rule = True

    @staticmethod
    def forward(forward: Any, backward: Any, static: Any, keeps_output: bool, *arrays: Any) -> Any:
        """Run the portable forward pass (autograd is off in here: nothing is recorded)."""
        out, saved = forward(arrays, static)
        return (out, *saved)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        """Keep the inputs, the output (if the rule reads it) and the forward's saved arrays."""
        forward, backward, static, keeps_output, *arrays = inputs
        out, *saved = output
        ctx.rule, ctx.static, ctx.count = (forward, backward), static, len(arrays)
        ctx.keeps_output = keeps_output
        ctx.mark_non_differentiable(*saved)
        ctx.save_for_backward(*arrays, *([out] if keeps_output else []), *saved)

    @staticmethod
    def backward(ctx: Any, dout: Any, *_: Any) -> Any:
        """Run the portable backward pass (differentiably, when create_graph=True)."""
        (forward, backward), n = ctx.rule, ctx.count
        tensors = ctx.saved_tensors
        arrays, rest = tuple(tensors[:n]), tensors[n:]
        out, saved = (rest[0], tuple(rest[1:])) if ctx.keeps_output else (None, tuple(rest))
        # out.sum().backward() hands in an expanded (stride-0) gradient, and a transposed
        # view of another layout is common: the products of the backward pass run 3x
        # slower on them than on one contiguous copy, which costs O(L) memory.
        dout = dout.contiguous()
        if torch.is_grad_enabled():
            # create_graph=True (double backward, gradient penalties, torch.func): the
            # saved arrays lost their link to the inputs, so recompute them from the
            # inputs, for autograd to record; the gradients are then differentiable,
            # at the memory cost of the plain formula.
            out, saved = forward(arrays, ctx.static)
        grads = backward(arrays, out, saved, dout, ctx.needs_input_grad[4:], ctx.static)
        return (None, None, None, None, *grads)
