"""The guide's loss examples on every installed backend, with the errata fixed.

The guide prints 0.01 for its MSE example (it is 0.02) and 0.1643 for its binary
cross-entropy example (it is 0.1446).
"""

import importlib
import importlib.util

import numpy as np

import mlequations as mle

libraries = [
    name for name in ("numpy", "torch", "jax.numpy") if importlib.util.find_spec(name.split(".")[0])
]
for name in libraries:
    xp = importlib.import_module(name)
    mse = mle.mse(xp.asarray([1.1, 1.9, 3.2]), xp.asarray([1.0, 2.0, 3.0]))
    bce = mle.binary_cross_entropy(xp.asarray([0.9, 0.1, 0.8]), xp.asarray([1.0, 0.0, 1.0]))
    ce = mle.cross_entropy_loss(
        xp.asarray([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]), xp.asarray([0, 1]), label_smoothing=0.1
    )
    print(f"{name:10s} MSE = {float(mse):.4f}  BCE = {float(bce):.4f}  CE = {float(ce):.4f}")
    np.testing.assert_allclose(float(mse), 0.02, rtol=1e-6)
    np.testing.assert_allclose(float(bce), 0.14462153, rtol=1e-6)
