"""The guide's convolution layer, nn.Conv2d(1, 1, kernel_size=3) on a 28×28 image → 26×26.

Run on every installed library, with every algorithm, and checked against torch's
F.conv2d when torch is installed.
"""

import importlib
import importlib.util

import numpy as np

import mlequations as mle

rng = np.random.default_rng(0)
image = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)  # (N, C, H, W)
kernel = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)  # (K, C, KH, KW)
bias = np.asarray([0.1], dtype=np.float32)

libraries = [
    name for name in ("numpy", "torch", "jax.numpy") if importlib.util.find_spec(name.split(".")[0])
]
for name in libraries:
    xp = importlib.import_module(name)
    x, w, b = xp.asarray(image), xp.asarray(kernel), xp.asarray(bias)
    for method in ("auto", "im2col", "shift", "fft", "winograd"):
        y = mle.conv2d(x, w, b, method=method)
        assert tuple(y.shape) == (1, 1, 26, 26), y.shape
    print(f"{name:10s} {type(y).__module__}.{type(y).__name__} {tuple(y.shape)} {y.dtype}")

if importlib.util.find_spec("torch"):
    import torch

    expected = torch.nn.functional.conv2d(
        torch.asarray(image), torch.asarray(kernel), torch.asarray(bias)
    )
    np.testing.assert_allclose(
        np.asarray(mle.conv2d(image, kernel, bias)), expected.numpy(), rtol=1e-5, atol=1e-5
    )
