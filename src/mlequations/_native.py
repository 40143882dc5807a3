"""Each backend's own kernels: the baselines the portable code is measured against.

This belongs with the backend table (``_backends.py``): it names libraries, and
the equations never call it. The benchmarks and ``mlequations bench`` time these
beside the portable functions to show what portability costs on each backend.
A backend without a kernel for an operation returns ``None`` and the table says
so; for NumPy, which has no attention or convolution, the baselines are the
guide's plain formula and the best plain-NumPy im2col.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from ._backends import Backend

__all__ = ["native", "native_equation"]

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


# --- small-shape overhead: the native call of each registry equation ----------------------


def native_equation(name: str, backend: Backend, options: dict[str, Any]) -> Kernel | None:
    """The backend's own call for the registry equation `name`, or None where it has none.

    The registry calls the portable function as ``f(*inputs, **options)``; the
    kernel returned here takes the same `inputs` (the `options` bound), so the
    two can be timed on the same arrays (the per-call overhead group, issue 19).
    The natives are the library's one call where it has one (``torch.softmax``,
    ``F.cross_entropy``, ``scipy.special.softmax``); for the information
    functions, the one-line formula with the library's ``xlogy`` or
    ``rel_entr``; under ``jax-jit`` the same, jitted.
    """
    table = {"numpy": _numpy_equations, "torch": _torch_equations, "jax": _jax_equations}
    make = table.get(backend.library)
    kernel = None if make is None else make().get(name)
    if kernel is None:
        return None
    bound = functools.partial(kernel, **options)
    if backend.library == "jax":
        import jax

        return jax.jit(bound)
    return bound


def _in_base(h: Any, base: float | None) -> Any:
    return h if base is None else h / math.log(base)


def _numpy_equations() -> dict[str, Kernel]:
    import numpy as np
    import scipy.special as sc

    def linear(x: Any, w: Any, b: Any = None) -> Any:
        y = x @ w.T
        return y if b is None else y + b

    def mse(a: Any, b: Any, *, reduction: str = "mean") -> Any:
        e = (a - b) ** 2
        return e if reduction == "none" else e.mean()

    return {
        "softmax": lambda x, axis=-1: sc.softmax(x, axis=axis),
        "softmax(axis=0)": lambda x, axis=-1: sc.softmax(x, axis=axis),
        "log_softmax": lambda x, axis=-1: sc.log_softmax(x, axis=axis),
        "logsumexp": lambda x, axis=None: sc.logsumexp(x, axis=axis),
        "sigmoid": sc.expit,
        "erf": sc.erf,
        "normal_cdf": sc.ndtr,
        "entropy": lambda p, axis=-1, base=None: _in_base(sc.entr(p).sum(axis), base),
        "entropy(base=2, axis=1)": lambda p, axis=-1, base=None: _in_base(
            sc.entr(p).sum(axis), base
        ),
        "kl_divergence": lambda p, q, axis=-1: sc.rel_entr(p, q).sum(axis),
        "cross_entropy": lambda p, q, axis=-1: -sc.xlogy(p, q).sum(axis),
        "mse": mse,
        "mse(reduction='none')": mse,
        "linear": linear,
        "linear(bias=None)": linear,
        "eigh": np.linalg.eigh,
        "eig": np.linalg.eig,
        "svd": lambda a: np.linalg.svd(a, full_matrices=False),
        "svd(full_matrices=True)": lambda a, full_matrices=True: np.linalg.svd(a, full_matrices),
    }


def _torch_equations() -> dict[str, Kernel]:
    import torch
    import torch.nn.functional as F

    xlogy = torch.special.xlogy

    def mse(a: Any, b: Any, *, reduction: str = "mean") -> Any:
        return F.mse_loss(a, b, reduction=reduction)

    def cross_entropy_loss(z: Any, t: Any, weight: Any = None, *, axis: int = -1, **o: Any) -> Any:
        if z.ndim > 1 and axis % z.ndim != 1:
            z = torch.movedim(z, axis, 1)
        return F.cross_entropy(z, t, weight=weight, **o)

    def attention(q: Any, k: Any, v: Any, **o: Any) -> Any:
        return F.scaled_dot_product_attention(q, k, v, **o)

    def conv2d(x: Any, w: Any, b: Any = None, *, padding: Any = 0, **o: Any) -> Any:
        if isinstance(padding, tuple) and isinstance(padding[0], tuple):
            (top, bottom), (left, right) = padding
            x, padding = F.pad(x, (left, right, top, bottom)), 0
        return F.conv2d(x, w, b, padding=padding, **o)

    return {
        "softmax": lambda x, axis=-1: torch.softmax(x, axis),
        "softmax(axis=0)": lambda x, axis=-1: torch.softmax(x, axis),
        "log_softmax": lambda x, axis=-1: torch.log_softmax(x, axis),
        "logsumexp": lambda x, axis=-1: torch.logsumexp(x, axis),
        "sigmoid": torch.sigmoid,
        "erf": torch.special.erf,
        "normal_cdf": torch.special.ndtr,
        "entropy": lambda p, axis=-1, base=None: _in_base(-xlogy(p, p).sum(axis), base),
        "entropy(base=2, axis=1)": lambda p, axis=-1, base=None: _in_base(
            -xlogy(p, p).sum(axis), base
        ),
        # torch has no rel_entr, and F.kl_div(q.log(), p) is NaN where p = q = 0.
        "kl_divergence": lambda p, q, axis=-1: (xlogy(p, p) - xlogy(p, q)).sum(axis),
        "cross_entropy": lambda p, q, axis=-1: -xlogy(p, q).sum(axis),
        "mse": mse,
        "mse(reduction='none')": mse,
        "binary_cross_entropy(weight)": lambda p, y, w, reduction="mean": F.binary_cross_entropy(
            p, y, weight=w.expand_as(p), reduction=reduction
        ),
        "binary_cross_entropy_with_logits(weight, pos_weight)": lambda x, y, w, q, **o: (
            F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q, **o)
        ),
        "cross_entropy_loss": cross_entropy_loss,
        "cross_entropy_loss(axis=1, reduction='none')": cross_entropy_loss,
        "attention": attention,
        "attention(enable_gqa, is_causal)": attention,
        "linear": F.linear,
        "linear(bias=None)": F.linear,
        "conv2d": conv2d,
        "conv2d(depthwise)": conv2d,
        "eigh": torch.linalg.eigh,
        "eig": torch.linalg.eig,
        "svd": lambda a: torch.linalg.svd(a, full_matrices=False),
        "svd(full_matrices=True)": lambda a, full_matrices=True: torch.linalg.svd(a),
    }


def _jax_equations() -> dict[str, Kernel]:
    import jax
    import jax.numpy as jnp
    import jax.scipy.special as sc

    return {
        "softmax": lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
        "softmax(axis=0)": lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
        "log_softmax": lambda x, axis=-1: jax.nn.log_softmax(x, axis=axis),
        "logsumexp": lambda x, axis=None: jax.nn.logsumexp(x, axis=axis),
        "sigmoid": jax.nn.sigmoid,
        "erf": sc.erf,
        "normal_cdf": sc.ndtr,
        "entropy": lambda p, axis=-1, base=None: _in_base(sc.entr(p).sum(axis), base),
        "entropy(base=2, axis=1)": lambda p, axis=-1, base=None: _in_base(
            sc.entr(p).sum(axis), base
        ),
        "kl_divergence": lambda p, q, axis=-1: sc.rel_entr(p, q).sum(axis),
        "cross_entropy": lambda p, q, axis=-1: -sc.xlogy(p, q).sum(axis),
        "linear": lambda x, w, b: x @ w.T + b,
        "linear(bias=None)": lambda x, w: x @ w.T,
        "eigh": jnp.linalg.eigh,
        "svd": lambda a: jnp.linalg.svd(a, full_matrices=False),
    }
