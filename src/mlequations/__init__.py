"""mlequations: the classic machine-learning equations, written once for every array library.

Each function takes arrays of any library that follows the Python array API
standard — NumPy, PyTorch, JAX, CuPy, array-api-strict, Dask — and returns an
array of that same library, on the same device, in the same floating dtype.
"""

from ._tune import tune
from .activations import log_softmax, logsumexp, sigmoid, softmax
from .attention import attention, attention_backward, multi_head_attention
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
from .bayesopt import (
    bayesian_optimization,
    erf,
    expected_improvement,
    gp_posterior,
    matern52_kernel,
    normal_cdf,
    normal_pdf,
    rbf_kernel,
)
from .convolution import conv2d
from .diffusion import (
    alpha_bar,
    cosine_beta_schedule,
    ddpm_reverse_step,
    forward_diffusion,
    linear_beta_schedule,
    predict_x0,
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
    "alpha_bar",
    "attention",
    "attention_backward",
    "bayes_rule",
    "bayesian_optimization",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conditional_probability",
    "conv2d",
    "cosine_beta_schedule",
    "cross_entropy",
    "cross_entropy_loss",
    "ddpm_reverse_step",
    "eig",
    "eigh",
    "entropy",
    "erf",
    "expected_improvement",
    "forward_diffusion",
    "gp_posterior",
    "gradient_descent",
    "information_gain",
    "joint_probability",
    "kl_divergence",
    "least_squares_grad",
    "linear",
    "linear_backward",
    "linear_beta_schedule",
    "linear_forward",
    "log_softmax",
    "logsumexp",
    "marginal_probability",
    "matern52_kernel",
    "mlp_backward",
    "mlp_forward",
    "mlp_init",
    "mlp_train_step",
    "momentum",
    "mse",
    "mse_backward",
    "multi_head_attention",
    "mutual_information",
    "normal_cdf",
    "normal_pdf",
    "pca",
    "power_iteration",
    "predict_x0",
    "rbf_kernel",
    "relu_backward",
    "sgd",
    "sigmoid",
    "sigmoid_backward",
    "softmax",
    "svd",
    "tanh_backward",
    "tune",
]
