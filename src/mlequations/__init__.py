"""mlequations: the classic machine-learning equations, written once for every array library.

Each function takes arrays of any library that follows the Python array API
standard — NumPy, PyTorch, JAX, CuPy, array-api-strict, Dask — and returns an
array of that same library, on the same device, in the same floating dtype.
"""

from .activations import log_softmax, logsumexp, sigmoid, softmax
from .backprop import (
    linear_backward,
    linear_forward,
    mlp_backward,
    mlp_forward,
    mlp_init,
    mlp_train_step,
    mse_backward,
    relu_backward,
    sigmoid_backward,
    tanh_backward,
)
from .information import (
    cross_entropy,
    entropy,
    information_gain,
    kl_divergence,
    mutual_information,
)
from .linalg import eig, eigh, linear, pca, power_iteration, svd
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy_loss,
    mse,
)
from .naive_bayes import GaussianNaiveBayes
from .optimize import (
    adam,
    gradient_descent,
    least_squares_grad,
    momentum,
    sgd,
)
from .probability import (
    bayes_rule,
    conditional_probability,
    joint_probability,
    marginal_probability,
)

__version__ = "0.1.0"

__all__ = [
    "GaussianNaiveBayes",
    "__version__",
    "adam",
    "bayes_rule",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conditional_probability",
    "cross_entropy",
    "cross_entropy_loss",
    "eig",
    "eigh",
    "entropy",
    "gradient_descent",
    "information_gain",
    "joint_probability",
    "kl_divergence",
    "least_squares_grad",
    "linear",
    "linear_backward",
    "linear_forward",
    "log_softmax",
    "logsumexp",
    "marginal_probability",
    "mlp_backward",
    "mlp_forward",
    "mlp_init",
    "mlp_train_step",
    "momentum",
    "mse",
    "mse_backward",
    "mutual_information",
    "pca",
    "power_iteration",
    "relu_backward",
    "sgd",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "svd",
    "tanh_backward",
]
