"""mlequations: the classic machine-learning equations, written once for every array library.

Each function takes arrays of any library that follows the Python array API
standard — NumPy, PyTorch, JAX, CuPy, array-api-strict, Dask — and returns an
array of that same library, on the same device, in the same floating dtype.
"""

from .activations import log_softmax, logsumexp, sigmoid, softmax

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "log_softmax",
    "logsumexp",
    "sigmoid",
    "softmax",
]
