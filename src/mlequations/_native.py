"""Each backend's own kernels: the baselines the portable code is measured against.

This belongs with the backend table (``_backends.py``): it names libraries, and
the equations never call it. The benchmarks and ``mlequations bench`` time these
beside the portable functions to show what portability costs on each backend.
A backend without a kernel for an operation returns ``None`` and the table says
so; for NumPy, which has no attention or convolution, the baselines are the
guide's plain formula and the best plain-NumPy im2col.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._backends import Backend

__all__ = ["native"]

Kernel = Callable[..., Any]


def native(op: str, backend: Backend, **options: Any) -> Kernel | None:
    """The backend's own kernel for `op`, called with the same arrays as the portable one.

    `options` are the operation's keyword options (``is_causal``; ``stride``,
    ``padding``, ``groups`` — padding as ``(top, bottom, left, right)``).
    """
    library = backend.library
    if library == "numpy":
        return _numpy(op, **options)
    if library == "torch":
        return _torch(op, **options)
    if library == "jax":
        return _jax(op, **options)
    if library == "cupy":
        return _cupy(op, **options)
    return None


def _numpy(op: str, **options: Any) -> Kernel | None:
    import numpy as np

    if op == "matmul":
        return np.matmul
    if op == "softmax":

        def softmax(x: Any) -> Any:
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

        return softmax
    if op == "attention":
        causal = options.get("is_causal", False)

        def naive_attention(q: Any, k: Any, v: Any) -> Any:
            # The guide's formula: softmax(Q Kᵀ / √d) V, scores materialised in full.
            scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
            if causal:
                L, S = scores.shape[-2:]
                scores = np.where(np.tri(L, S, dtype=bool), scores, -np.inf)
            weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            return weights @ v

        return naive_attention
    if op == "conv2d":
        return _numpy_im2col(**options)
    return None


def _numpy_im2col(
    *, stride: int = 1, padding: tuple[int, int, int, int] = (0, 0, 0, 0), groups: int = 1, **_: Any
) -> Kernel:
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    top, bottom, left, right = padding

    def im2col(x: Any, w: Any) -> Any:
        # The best plain-NumPy convolution: a strided window view (no copy) contracted
        # with the kernel by one tensordot per group.
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        K, Cg, KH, KW = w.shape
        windows = sliding_window_view(x, (KH, KW), axis=(2, 3))[:, :, ::stride, ::stride]
        outs = [
            np.tensordot(
                windows[:, g * Cg : (g + 1) * Cg],
                w[g * (K // groups) : (g + 1) * (K // groups)],
                axes=([1, 4, 5], [1, 2, 3]),
            )
            for g in range(groups)
        ]  # each (N, Ho, Wo, K/G)
        return np.moveaxis(np.concatenate(outs, axis=-1), -1, 1)

    return im2col


def _torch(op: str, **options: Any) -> Kernel | None:
    import torch
    import torch.nn.functional as F

    if op == "matmul":
        return torch.matmul
    if op == "softmax":
        return lambda x: torch.softmax(x, dim=-1)
    if op == "attention":
        causal = options.get("is_causal", False)
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    if op == "conv2d":
        top, bottom, left, right = options.get("padding", (0, 0, 0, 0))
        stride, groups = options.get("stride", 1), options.get("groups", 1)

        def conv(x: Any, w: Any) -> Any:
            if (top, left) != (bottom, right):
                x = F.pad(x, (left, right, top, bottom))
                return F.conv2d(x, w, stride=stride, groups=groups)
            return F.conv2d(x, w, stride=stride, padding=(top, left), groups=groups)

        return conv
    return None


def _jax(op: str, **options: Any) -> Kernel | None:
    import jax
    import jax.numpy as jnp

    if op == "matmul":
        return jax.jit(jnp.matmul)
    if op == "softmax":
        return jax.jit(lambda x: jax.nn.softmax(x, axis=-1))
    if op == "attention":
        causal = options.get("is_causal", False)

        def sdpa(q: Any, k: Any, v: Any) -> Any:
            # jax.nn takes (B, L, H, E); the library's layout is (B, H, L, E).
            q, k, v = (jnp.swapaxes(t, -2, -3) for t in (q, k, v))
            out = jax.nn.dot_product_attention(q, k, v, is_causal=causal)
            return jnp.swapaxes(out, -2, -3)

        return jax.jit(sdpa)
    if op == "conv2d":
        top, bottom, left, right = options.get("padding", (0, 0, 0, 0))
        stride, groups = options.get("stride", 1), options.get("groups", 1)
        return jax.jit(
            lambda x, w: jax.lax.conv_general_dilated(
                x,
                w,
                (stride, stride),
                ((top, bottom), (left, right)),
                feature_group_count=groups,
                dimension_numbers=("NCHW", "OIHW", "NCHW"),
            )
        )
    return None


def _cupy(op: str, **_: Any) -> Kernel | None:
    import cupy

    if op == "matmul":
        matmul: Kernel = cupy.matmul  # cupy is untyped (Any) where it is not installed
        return matmul
    return None
