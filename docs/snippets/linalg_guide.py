"""The guide's linear-algebra examples on every installed backend, with the erratum fixed.

The guide prints [4, 7] for A x + b; that is A x alone, and A x + b is [4, 8].
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
    A = xp.asarray([[2.0, 1.0], [1.0, 3.0]])
    x = xp.asarray([1.0, 2.0])
    b = xp.asarray([0.0, 1.0])
    y = mle.linear(x, A, b)  # the same library and dtype as A, x and b
    S = mle.svd(xp.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).S
    eigenvalues = mle.eigh(A).eigenvalues
    print(f"{name:10s} A x + b = {np.asarray(y)}  singular values = {np.asarray(S)}")
    np.testing.assert_allclose(np.asarray(y), [4.0, 8.0])
    np.testing.assert_allclose(np.asarray(mle.linear(x, A)), [4.0, 7.0])
    np.testing.assert_allclose(np.asarray(S), [9.52551809, 0.51430058], rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(eigenvalues), [(5 - 5**0.5) / 2, (5 + 5**0.5) / 2], rtol=1e-5
    )
