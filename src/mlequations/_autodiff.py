"""The autodiff seam: the one module that knows automatic differentiation exists.

Some equations have a backward pass worth writing by hand: attention's, which
recomputes its tiles instead of letting autograd record them, so that training
keeps the memory bound of the forward pass, and conv2d's, which keeps only its
inputs where autograd would keep a patch matrix. Both halves are written once in the
standard; this module registers the pair with the library's own autodiff:

* PyTorch: a ``torch.autograd.Function`` (in ``_autodiff_torch.py``, imported
  only once torch is in use; with ``setup_context``, so that ``torch.compile``,
  ``torch.func.grad`` and ``torch.func.vmap`` work through it);
* JAX: a ``jax.custom_vjp`` (so ``jax.grad``, ``jax.jit``, ``jax.vmap`` and
  ``jax.checkpoint`` do);
* every other library gets the forward pass alone.

A rule is two functions of the standard:

``forward(arrays, static) -> (out, saved)``
    `arrays` is a tuple of arrays or ``None`` (the differentiable inputs),
    `static` a hashable tuple of Python values (shapes, flags, plans). `saved`
    is a tuple of arrays kept for the backward pass beside the inputs and `out`
    (attention keeps its row log-sum-exp: ``O(L)``).
``backward(arrays, out, saved, dout, needs, static) -> grads``
    one gradient (or ``None``) per entry of `arrays`; `needs` says which of them
    are wanted (PyTorch knows; JAX asks for all and drops what it does not use).
    `out` is ``None`` for a rule registered with ``keeps_output=False``
    (convolution's backward pass needs only the inputs): PyTorch then holds no
    reference to the output, so a user's in-place operation on it (``relu_``)
    stays legal, as it is after ``F.conv2d``.

Double backward: on PyTorch, a backward pass run with ``create_graph=True``
recomputes the forward's saved arrays from the inputs, so autograd records the
backward pass and higher derivatives are exact (``gradgradcheck`` in the tests);
JAX differentiates the backward rule as written, exact as well. Forward mode (``jvp``) raises
each library's own error for a custom backward rule.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ._xp import Array, Namespace, is_jax, is_torch

__all__ = ["Backward", "Forward", "apply"]

Forward = Callable[[tuple[Any, ...], Any], tuple[Array, tuple[Array, ...]]]
Backward = Callable[..., tuple[Array | None, ...]]


def apply(
    forward: Forward,
    backward: Backward,
    arrays: tuple[Any, ...],
    static: Any,
    xp: Namespace,
    *,
    keeps_output: bool = True,
    on_jax: bool = True,
) -> Array:
    """`forward(arrays, static)[0]`, differentiable through `backward` where autodiff exists.

    `keeps_output`: whether `backward` reads the output (else it gets ``None``).
    `on_jax`: register the rule with JAX too; ``False`` lets XLA differentiate
    `forward` as written, for a forward pass whose gathers XLA transposes and
    fuses faster than the rule runs (conv2d's).
    """
    if is_torch(xp):
        import torch

        # Outside autograd's reach (no input needs a gradient, or grad mode is off, as
        # under torch.no_grad and inference) the Function's bookkeeping is pure cost.
        wants_grad = torch.is_grad_enabled() and any(
            a is not None and a.requires_grad for a in arrays
        )
        if wants_grad:
            from ._autodiff_torch import Rule

            out: Array = Rule.apply(forward, backward, static, keeps_output, *arrays)[0]  # type: ignore[no-untyped-call]
            return out
    elif is_jax(xp) and on_jax:
        return _jax_function(forward, backward, keeps_output)(static, arrays)
    return forward(arrays, static)[0]


@functools.cache
def _jax_function(
    forward: Forward, backward: Backward, keeps_output: bool
) -> Callable[[Any, Any], Array]:
    import jax

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def rule(static: Any, arrays: tuple[Any, ...]) -> Array:
        return forward(arrays, static)[0]

    def rule_forward(static: Any, arrays: tuple[Any, ...]) -> tuple[Array, Any]:
        out, saved = forward(arrays, static)
        return out, (arrays, out if keeps_output else None, saved)

    def rule_backward(static: Any, residuals: Any, dout: Array) -> tuple[Any]:
        arrays, out, saved = residuals
        # None is JAX's symbolic zero: integer, boolean and absent inputs get no gradient.
        needs = tuple(
            a is not None and jax.numpy.issubdtype(a.dtype, jax.numpy.inexact) for a in arrays
        )
        return (tuple(backward(arrays, out, saved, dout, needs, static)),)

    rule.defvjp(rule_forward, rule_backward)
    return rule
