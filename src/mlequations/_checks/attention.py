"""Registry entries for ``attention.py``: plain float64 NumPy references."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._registry import Equation
from ..attention import attention, attention_backward, multi_head_attention


def _reference(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> np.ndarray:
    """softmax(s Q Kᵀ + M) V in float64; rows with no allowed key give zeros."""
    if enable_gqa:
        group = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, group, axis=-3), np.repeat(v, group, axis=-3)
    scores = q @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    allowed = np.ones(scores.shape, dtype=bool)
    if mask is not None and mask.dtype == bool:
        allowed = allowed & mask
    elif mask is not None:
        scores = scores + mask
    if is_causal:
        allowed = allowed & np.tril(np.ones(scores.shape[-2:], dtype=bool))
    scores = np.where(allowed, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True, initial=-np.inf)  # -inf without keys
    weights = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    total = weights.sum(axis=-1, keepdims=True)
    out: np.ndarray = (weights / np.where(total > 0, total, 1.0)) @ v
    return out


def _reference_backward(
    dout: np.ndarray,
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    mask: np.ndarray,
    is_causal: bool = False,
    enable_gqa: bool = False,
) -> tuple[np.ndarray, ...]:
    """dQ, dK, dV and d mask of softmax(s Q Kᵀ + M) V by the dense chain rule, in float64.

    The softmax's Jacobian term D = Σ_j P_ij dP_ij is taken as written, over the
    full L×S weights (the portable code uses D = dO·O and never forms them).
    """
    G = q.shape[-3] // k.shape[-3] if enable_gqa else 1
    kr, vr = np.repeat(k, G, axis=-3), np.repeat(v, G, axis=-3)
    s = 1 / np.sqrt(q.shape[-1])
    scores = s * q @ np.swapaxes(kr, -1, -2) + mask
    if is_causal:
        scores = np.where(np.tril(np.ones(scores.shape[-2:], dtype=bool)), scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    total = weights.sum(axis=-1, keepdims=True)
    P = weights / np.where(total > 0, total, 1.0)  # (B, Hq, L, S)
    dP = dout @ np.swapaxes(vr, -1, -2)
    dS = P * (dP - np.sum(P * dP, axis=-1, keepdims=True))
    dq = s * dS @ kr
    dk = (s * np.swapaxes(dS, -1, -2) @ q).reshape(*k.shape[:-3], k.shape[-3], G, *k.shape[-2:])
    dv = (np.swapaxes(P, -1, -2) @ dout).reshape(*v.shape[:-3], v.shape[-3], G, *v.shape[-2:])
    dmask = dS.reshape(-1, *mask.shape).sum(axis=0)  # mask (L, S) broadcast over (B, Hq)
    return dq, dk.sum(axis=-3), dv.sum(axis=-3), dmask


def _backward_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    q, k, v = _qkv(heads_kv=1)(rng)
    mask = rng.normal(size=(5, 6))
    mask[2] = -np.inf  # a row with no key to attend: zero gradients
    return rng.normal(size=(2, 3, 5, 3)), q, k, v, mask


def _backward(dout: Any, q: Any, k: Any, v: Any, mask: Any, **options: Any) -> tuple[Any, ...]:
    return tuple(attention_backward(dout, q, k, v, mask=mask, **options))


def _qkv(heads_kv: int = 3) -> Callable[[np.random.Generator], tuple[np.ndarray, ...]]:
    def make(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return (
            rng.normal(size=(2, 3, 5, 4)),
            rng.normal(size=(2, heads_kv, 6, 4)),
            rng.normal(size=(2, heads_kv, 6, 3)),
        )

    return make


def _qkv_mask(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    mask = rng.random((3, 5, 6)) > 0.3
    mask[0, 1] = False  # a row with no key to attend: zeros
    return (*_qkv()(rng), mask)


def _mha_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    x = rng.normal(size=(2, 5, 6))
    weights = [rng.normal(size=(6, 6)) / 2 for _ in range(4)]
    biases = [rng.normal(size=(6,)) for _ in range(4)]
    return (x, rng.normal(size=(2, 7, 6)), rng.normal(size=(2, 7, 6)), *weights, *biases)


def _mha(*arrays: np.ndarray, num_heads: int = 2) -> np.ndarray:
    xq, xk, xv, w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o = arrays

    def heads(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        y = x @ w.T + b
        return np.swapaxes(y.reshape(*y.shape[:-1], num_heads, y.shape[-1] // num_heads), -2, -3)

    o = _reference(heads(xq, w_q, b_q), heads(xk, w_k, b_k), heads(xv, w_v, b_v))
    o = np.swapaxes(o, -2, -3)
    y: np.ndarray = o.reshape(*o.shape[:-2], o.shape[-2] * o.shape[-1]) @ w_o.T + b_o
    return y


def _mha_portable(*arrays: Any, num_heads: int, xp: Any = None) -> Any:
    xq, xk, xv, w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o = arrays
    return multi_head_attention(
        xq, xk, xv, num_heads=num_heads, w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o,
        b_q=b_q, b_k=b_k, b_v=b_v, b_o=b_o, xp=xp,
    )  # fmt: skip


def _masked(q: Any, k: Any, v: Any, mask: Any, **options: Any) -> Any:
    return attention(q, k, v, mask=mask, **options)


EQUATIONS = [
    Equation("attention", attention, _qkv(), _reference),
    Equation(
        "attention_backward(float mask, is_causal, enable_gqa)",
        _backward,
        _backward_inputs,
        _reference_backward,
        options={"is_causal": True, "enable_gqa": True},
        grad=False,
    ),
    Equation(
        "attention(mask, is_causal)",
        _masked,
        _qkv_mask,
        _reference,
        options={"is_causal": True},
    ),
    Equation(
        "attention(enable_gqa, is_causal)",
        attention,
        _qkv(heads_kv=1),
        _reference,
        options={"enable_gqa": True, "is_causal": True},
    ),
    Equation(
        "attention(block_size=2, mask)",
        lambda q, k, v, mask, **o: attention(q, k, v, mask=mask, **o),
        _qkv_mask,
        lambda q, k, v, mask, block_size: _reference(q, k, v, mask),
        options={"block_size": 2},
    ),
    Equation(
        "multi_head_attention",
        _mha_portable,
        _mha_inputs,
        _mha,
        options={"num_heads": 2},
    ),
]
