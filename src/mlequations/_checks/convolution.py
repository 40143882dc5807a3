"""Registry entries for ``convolution.py``: a direct float64 NumPy loop over kernel taps."""

from __future__ import annotations

import numpy as np

from .. import convolution
from .._registry import Equation


def _reference(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None = None,
    *,
    stride: int = 1,
    padding: tuple[tuple[int, int], tuple[int, int]] | str = ((0, 0), (0, 0)),
    dilation: int = 1,
    groups: int = 1,
    method: str = "auto",
) -> np.ndarray:
    """The definition, term by term: pad, then for every tap add W[k, c, i, j]·x[..]."""
    del method  # every method computes the same sum
    N, _, H, W = x.shape
    K, Cg, KH, KW = w.shape
    if padding == "same":  # TensorFlow rule, as the registry options below use it
        pads = []
        for n, k in ((H, KH), (W, KW)):
            total = max((-(-n // stride) - 1) * stride + (k - 1) * dilation + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        padding = (pads[0], pads[1])
    xp_ = np.pad(x, ((0, 0), (0, 0), *padding))
    Hp, Wp = xp_.shape[2:]
    Ho = (Hp - (KH - 1) * dilation - 1) // stride + 1
    Wo = (Wp - (KW - 1) * dilation - 1) // stride + 1
    y = np.zeros((N, K, Ho, Wo))
    for k in range(K):
        g = k // (K // groups)
        for c in range(Cg):
            for i in range(KH):
                for j in range(KW):
                    rows = slice(i * dilation, i * dilation + (Ho - 1) * stride + 1, stride)
                    cols = slice(j * dilation, j * dilation + (Wo - 1) * stride + 1, stride)
                    y[:, k] += w[k, c, i, j] * xp_[:, g * Cg + c, rows, cols]
    return y if b is None else y + b[:, None, None]


def _dense(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return rng.normal(size=(2, 4, 9, 8)), rng.normal(size=(6, 4, 3, 3)), rng.normal(size=6)


def _grouped(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return rng.normal(size=(2, 4, 9, 8)), rng.normal(size=(6, 2, 3, 2)), rng.normal(size=6)


def _depthwise(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return rng.normal(size=(2, 4, 9, 8)), rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4)


def _large(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return rng.normal(size=(1, 2, 14, 13)), rng.normal(size=(3, 2, 7, 7)), rng.normal(size=3)


_STRIDED = {"stride": 2, "padding": ((1, 2), (0, 1)), "dilation": 2, "groups": 2}

EQUATIONS = [
    Equation(
        "conv2d", convolution.conv2d, _dense, _reference, options={"padding": ((1, 1), (1, 1))}
    ),
    *(
        Equation(
            f"conv2d(method={m}, strided grouped)",
            convolution.conv2d,
            _grouped,
            _reference,
            options={**_STRIDED, "method": m},
            rtol32=1e-3 if m == "fft" else 1e-4,
        )
        for m in ("im2col", "shift", "fft")
    ),
    Equation(
        "conv2d(method=winograd)",
        convolution.conv2d,
        _dense,
        _reference,
        options={"padding": ((1, 1), (1, 1)), "method": "winograd"},
        rtol32=1e-3,
    ),
    Equation(
        "conv2d(depthwise)",
        convolution.conv2d,
        _depthwise,
        _reference,
        options={"groups": 4, "padding": ((1, 1), (1, 1))},
    ),
    Equation(
        "conv2d(same, large kernel)",
        convolution.conv2d,
        _large,
        _reference,
        options={"padding": "same"},
        rtol32=1e-3,
    ),
]
