"""The bad-input table: every kind of wrong argument → the documented exception, named.

Each row calls one public function with one wrong argument and expects the
documented exception type (``TypeError``, ``ValueError``, ``NotImplementedError``)
with the argument's name, backticked, in the message. Rows run on every backend
of the matrix. Besides the hand-written rows, three rows are generated for every
function that takes arrays:

* *mixed library*: its last array argument comes from another library
  (NumPy, or array-api-strict on the NumPy backends) → ``TypeError`` naming it;
* *mixed device*: on ``strict-device1`` and ``torch-meta``, its last array
  argument lives on the default device → ``ValueError`` naming it;
* *complex*: its first array argument is complex → ``TypeError`` naming it.

Only the (backend, row) pairs that apply are generated (``ROWS``): a mixed-device
row exists on ``strict-device1`` and ``torch-meta`` only, an option checked before
any array is made runs on NumPy only. What is skipped is skipped by the ``backend``
fixture alone, for a missing library or GPU. The optimisers, the backprop functions
and ``GaussianNaiveBayes`` have rows of every kind in the issue's list
(``_chapter_rows``): another library or device mixed in, wrong rank, mismatched
shapes, complex or integer dtypes where floats are needed, unknown option strings,
non-positive sizes, lists where arrays are required.

``GaussianNaiveBayes`` must stay unfitted after a failed ``fit`` (every backend: the
checks come before the eager class discovery).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import mlequations as mle
from mlequations._backends import BACKENDS, Backend


class Make:
    """Arrays on one backend: ``mk(2, 3)`` float32 ones-ish data, ``mk.int(3)`` labels."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __call__(self, *shape: int, value: float = 0.5, dtype: str = "float32") -> Any:
        data = np.full(shape, value) + 0.01 * np.arange(int(np.prod(shape))).reshape(shape)
        return self.backend.asarray(data, dtype)

    def int(self, *shape: int, high: int = 2) -> Any:
        return self.backend.asarray(np.arange(int(np.prod(shape))).reshape(shape) % high)


Build = Callable[[Make], tuple[tuple[Any, ...], dict[str, Any]]]

# A valid call of every function that takes arrays: (positional arrays, keyword options).
VALID: dict[str, Build] = {
    "softmax": lambda mk: ((mk(3, 4),), {}),
    "log_softmax": lambda mk: ((mk(3, 4),), {}),
    "logsumexp": lambda mk: ((mk(3, 4),), {"axis": -1}),
    "sigmoid": lambda mk: ((mk(3),), {}),
    "erf": lambda mk: ((mk(3),), {}),
    "normal_cdf": lambda mk: ((mk(3),), {}),
    "normal_pdf": lambda mk: ((mk(3),), {}),
    "bayes_rule": lambda mk: ((mk(4), mk(4)), {}),
    "joint_probability": lambda mk: ((mk(3, 4), mk(4)), {}),
    "conditional_probability": lambda mk: ((mk(3, 4), mk(4)), {}),
    "marginal_probability": lambda mk: ((mk(3, 4),), {"axis": 0}),
    "entropy": lambda mk: ((mk(3, 4),), {}),
    "kl_divergence": lambda mk: ((mk(3, 4), mk(3, 4)), {}),
    "cross_entropy": lambda mk: ((mk(3, 4), mk(3, 4)), {}),
    "mutual_information": lambda mk: ((mk(3, 4),), {}),
    "information_gain": lambda mk: ((mk(2), mk(3, 2)), {}),
    "linear": lambda mk: ((mk(2, 3), mk(4, 3), mk(4)), {}),
    "eigh": lambda mk: ((mk(3, 3),), {}),
    "svd": lambda mk: ((mk(4, 3),), {}),
    "pca": lambda mk: ((mk(6, 3),), {"n_components": 2}),
    "power_iteration": lambda mk: ((mk(3, 3),), {}),
    "mse": lambda mk: ((mk(4), mk(4)), {}),
    "binary_cross_entropy": lambda mk: ((mk(4, value=0.3), mk(4, value=0.2)), {}),
    "binary_cross_entropy_with_logits": lambda mk: ((mk(4), mk(4, value=0.2)), {}),
    "cross_entropy_loss": lambda mk: ((mk(3, 4), mk.int(3)), {}),
    "attention": lambda mk: ((mk(2, 3, 4), mk(2, 5, 4), mk(2, 5, 6)), {}),
    "conv2d": lambda mk: ((mk(1, 2, 5, 5), mk(3, 2, 3, 3)), {}),
    "alpha_bar": lambda mk: ((mk(10, value=0.01),), {}),
    "forward_diffusion": lambda mk: ((mk(2, 3), mk(2, 3), mk(2, value=0.5)), {}),
    "predict_x0": lambda mk: ((mk(2, 3), mk(2, 3), mk(2, value=0.5)), {}),
    "ddpm_reverse_step": lambda mk: ((mk(2, 3), mk(2, 3), 3, mk(10, value=0.01), mk(2, 3)), {}),
    "rbf_kernel": lambda mk: ((mk(3, 2), mk(4, 2)), {}),
    "matern52_kernel": lambda mk: ((mk(3, 2), mk(4, 2)), {}),
    "gp_posterior": lambda mk: ((mk(3, 2), mk(3), mk(4, 2)), {"kernel": mle.rbf_kernel}),
    "expected_improvement": lambda mk: ((mk(4), mk(4), mk(value=0.5)), {}),
    "least_squares_grad": lambda mk: ((mk(3), mk(5, 3), mk(5)), {}),
    "linear_forward": lambda mk: ((mk(2, 3), mk(4, 3), mk(4)), {}),
    "linear_backward": lambda mk: ((mk(2, 4), mk(2, 3), mk(4, 3)), {}),
    "sigmoid_backward": lambda mk: ((mk(3), mk(3)), {}),
    "tanh_backward": lambda mk: ((mk(3), mk(3)), {}),
    "relu_backward": lambda mk: ((mk(3), mk(3)), {}),
    "mse_backward": lambda mk: ((mk(3), mk(3)), {}),
}


def _array_names(name: str) -> list[str]:
    params = inspect.signature(getattr(mle, name)).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_ONLY]


def _foreign_library(backend: Backend, like: Any) -> Any:
    data = np.ones(tuple(like.shape), dtype=np.float32)
    if backend.library == "numpy":
        import array_api_strict

        return array_api_strict.asarray(data)
    return data


def _foreign_device(backend: Backend, like: Any) -> Any | None:
    data = np.ones(tuple(like.shape), dtype=np.float32)
    if backend.id == "strict-device1":
        import array_api_strict

        return array_api_strict.asarray(data)  # the default device
    if backend.id == "torch-meta":
        import torch

        return torch.asarray(data)  # the CPU
    return None


@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[Backend, Make], Any]
    error: type[Exception]
    name: str  # the argument the message must name
    only: tuple[str, ...] = ()  # backend ids or libraries; empty: every backend


def _generated() -> list[Case]:
    cases = []
    for fname, build in VALID.items():
        fn = getattr(mle, fname)
        names = _array_names(fname)

        def mixed(backend, mk, fn=fn, build=build, where="library"):
            args, kwargs = build(mk)
            args = list(args)
            i = max(j for j, a in enumerate(args) if hasattr(a, "shape"))
            swap = _foreign_library if where == "library" else _foreign_device
            args[i] = swap(backend, args[i])
            return fn(*args, **kwargs)

        # the last positional argument that is an array in the valid call
        probe = build(Make(_NUMPY))[0]
        last = max(j for j, a in enumerate(probe) if hasattr(a, "shape"))
        if len([a for a in probe if hasattr(a, "shape")]) >= 2:
            cases.append(Case(f"{fname}-mixed-library", mixed, TypeError, names[last]))
            cases.append(
                Case(
                    f"{fname}-mixed-device",
                    functools.partial(mixed, where="device"),
                    ValueError,
                    names[last],
                    only=("strict-device1", "torch-meta"),
                )
            )

        def complex_first(backend, mk, fn=fn, build=build):
            args, kwargs = build(mk)
            args = list(args)
            args[0] = backend.asarray(np.ones(tuple(args[0].shape), dtype=np.complex64))
            return fn(*args, **kwargs)

        if True:
            cases.append(
                Case(
                    f"{fname}-complex",
                    complex_first,
                    TypeError,
                    names[0],
                    only=(
                        "numpy",
                        "numpy-readonly",
                        "strict",
                        "strict-device1",
                        "torch-cpu",
                        "torch-meta",
                        "jax",
                        "jax-jit",
                        "dask",
                        "strict-strictest",
                    ),
                )
            )
    return cases


class _NumpyProbe:
    library = "numpy"

    @staticmethod
    def asarray(a: Any, dtype: str | None = None) -> Any:
        a = np.asarray(a)
        return a.astype(dtype) if dtype and np.issubdtype(a.dtype, np.floating) else a


_NUMPY: Any = _NumpyProbe()


def _kernel(mk: Make) -> Callable[..., Any]:
    return mle.rbf_kernel


HAND: list[Case] = [
    # -- options: unknown strings, out-of-range numbers, negative sizes -----------------
    Case(
        "mse-reduction",
        lambda b, mk: mle.mse(mk(3), mk(3), reduction="avg"),
        ValueError,
        "reduction",
    ),
    Case(
        "bce-reduction",
        lambda b, mk: mle.binary_cross_entropy(mk(3), mk(3), reduction="x"),
        ValueError,
        "reduction",
    ),
    Case(
        "ce-label_smoothing",
        lambda b, mk: mle.cross_entropy_loss(mk(3, 4), mk.int(3), label_smoothing=2.0),
        ValueError,
        "label_smoothing",
    ),
    Case(
        "ce-float-class-index",
        lambda b, mk: mle.cross_entropy_loss(mk(3, 4), mk(3)),
        TypeError,
        "target",
    ),
    Case("entropy-base-1", lambda b, mk: mle.entropy(mk(3), base=1), ValueError, "base"),
    Case("entropy-base-str", lambda b, mk: mle.entropy(mk(3), base="e"), TypeError, "base"),
    Case("bayes_rule-axis", lambda b, mk: mle.bayes_rule(mk(4), mk(4), axis=3), ValueError, "axis"),
    Case(
        "marginal-axis",
        lambda b, mk: mle.marginal_probability(mk(3, 4), axis=5),
        ValueError,
        "axis",
    ),
    Case(
        "pca-n_components-negative",
        lambda b, mk: mle.pca(mk(6, 3), n_components=-1),
        ValueError,
        "n_components",
    ),
    Case(
        "power_iteration-num_iters",
        lambda b, mk: mle.power_iteration(mk(3, 3), num_iters=-1),
        ValueError,
        "num_iters",
    ),
    Case(
        "attention-block_size",
        lambda b, mk: mle.attention(mk(1, 2, 4), mk(1, 3, 4), mk(1, 3, 4), block_size=-2),
        ValueError,
        "block_size",
    ),
    Case(
        "mha-num_heads-negative",
        lambda b, mk: mle.multi_head_attention(
            mk(1, 2, 4),
            mk(1, 2, 4),
            mk(1, 2, 4),
            num_heads=-1,
            w_q=mk(4, 4),
            w_k=mk(4, 4),
            w_v=mk(4, 4),
            w_o=mk(4, 4),
        ),
        ValueError,
        "num_heads",
    ),
    Case(
        "mha-num_heads-indivisible",
        lambda b, mk: mle.multi_head_attention(
            mk(1, 2, 4),
            mk(1, 2, 4),
            mk(1, 2, 4),
            num_heads=3,
            w_q=mk(4, 4),
            w_k=mk(4, 4),
            w_v=mk(4, 4),
            w_o=mk(4, 4),
        ),
        ValueError,
        "num_heads",
    ),
    Case(
        "conv2d-stride",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 2, 3, 3), stride=-1),
        ValueError,
        "stride",
    ),
    Case(
        "conv2d-dilation",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 2, 3, 3), dilation=0),
        ValueError,
        "dilation",
    ),
    Case(
        "conv2d-padding",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 2, 3, 3), padding="full"),
        ValueError,
        "padding",
    ),
    Case(
        "conv2d-method",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 2, 3, 3), method="direct"),
        ValueError,
        "method",
    ),
    Case(
        "conv2d-winograd-kernel",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 2, 3, 3), stride=2, method="winograd"),
        ValueError,
        "method",
    ),
    Case(
        "conv2d-groups",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 2, 3, 3), groups=-1),
        ValueError,
        "groups",
    ),
    Case(
        "linear_beta_schedule-num_steps",
        lambda b, mk: mle.linear_beta_schedule(-1, xp=b.xp),
        ValueError,
        "num_steps",
    ),
    Case(
        "cosine_beta_schedule-num_steps",
        lambda b, mk: mle.cosine_beta_schedule(0, xp=b.xp),
        ValueError,
        "num_steps",
    ),
    Case(
        "linear_beta_schedule-int-dtype",
        lambda b, mk: mle.linear_beta_schedule(10, xp=b.xp, dtype=b.xp.int64),
        TypeError,
        "dtype",
        only=("numpy", "strict", "torch-cpu", "jax"),
    ),
    Case(
        "forward_diffusion-alpha_bar_t",
        lambda b, mk: mle.forward_diffusion(mk(2, 3), mk(2, 3), 2.0),
        ValueError,
        "alpha_bar_t",
    ),
    Case(
        "ddpm-t-out-of-range",
        lambda b, mk: mle.ddpm_reverse_step(mk(2, 3), mk(2, 3), 100, mk(10, value=0.01), mk(2, 3)),
        ValueError,
        "t",
    ),
    Case(
        "ddpm-t-float",
        lambda b, mk: mle.ddpm_reverse_step(mk(2, 3), mk(2, 3), 1.5, mk(10, value=0.01), mk(2, 3)),
        TypeError,
        "t",
    ),
    Case(
        "rbf-length_scale",
        lambda b, mk: mle.rbf_kernel(mk(3, 2), mk(4, 2), length_scale=-1.0),
        ValueError,
        "length_scale",
    ),
    Case(
        "rbf-variance",
        lambda b, mk: mle.rbf_kernel(mk(3, 2), mk(4, 2), variance=0.0),
        ValueError,
        "variance",
    ),
    Case(
        "gp-noise",
        lambda b, mk: mle.gp_posterior(
            mk(3, 2), mk(3), mk(4, 2), kernel=mle.rbf_kernel, noise=-1.0
        ),
        ValueError,
        "noise",
    ),
    Case(
        "bo-n_init",
        lambda b, mk: mle.bayesian_optimization(lambda x: x[0], (0.0, 1.0), n_init=0),
        ValueError,
        "n_init",
        only=("numpy",),
    ),
    Case(
        "bo-objective",
        lambda b, mk: mle.bayesian_optimization(3, (0.0, 1.0)),
        TypeError,
        "objective",
        only=("numpy",),
    ),
    Case(
        "bo-bounds",
        lambda b, mk: mle.bayesian_optimization(lambda x: x[0], mk(3, 3)),
        ValueError,
        "bounds",
    ),
    Case("sgd-lr", lambda b, mk: mle.sgd(-1.0), ValueError, "lr", only=("numpy",)),
    Case(
        "momentum-beta",
        lambda b, mk: mle.momentum(0.1, beta=-0.5),
        ValueError,
        "beta",
        only=("numpy",),
    ),
    Case("adam-b1", lambda b, mk: mle.adam(0.1, b1=1.5), ValueError, "b1", only=("numpy",)),
    Case("adam-lr-str", lambda b, mk: mle.adam("0.1"), TypeError, "lr", only=("numpy",)),
    Case("gd-grad_fn", lambda b, mk: mle.gradient_descent(3, mk(3)), TypeError, "grad_fn"),
    Case(
        "gd-steps",
        lambda b, mk: mle.gradient_descent(lambda p: p, mk(3), steps=-1),
        ValueError,
        "steps",
    ),
    Case(
        "gd-params",
        lambda b, mk: mle.gradient_descent(lambda p: p, "theta"),
        TypeError,
        "params",
        only=("numpy",),
    ),
    Case(
        "mlp_init-sizes", lambda b, mk: mle.mlp_init([3, -1], seed=0, xp=b.xp), ValueError, "sizes"
    ),
    # -- wrong rank and mismatched shapes ------------------------------------------------
    Case("mse-shapes", lambda b, mk: mle.mse(mk(3), mk(4)), ValueError, "target"),
    Case("linear-weight", lambda b, mk: mle.linear(mk(2, 3), mk(4, 2)), ValueError, "weight"),
    Case("linear-bias", lambda b, mk: mle.linear(mk(2, 3), mk(4, 3), mk(5)), ValueError, "bias"),
    Case("eigh-non-square", lambda b, mk: mle.eigh(mk(3, 4)), ValueError, "a"),
    Case("svd-rank", lambda b, mk: mle.svd(mk(3)), ValueError, "a"),
    Case("pca-rank", lambda b, mk: mle.pca(mk(6), n_components=1), ValueError, "x"),
    Case(
        "mutual_information-rank", lambda b, mk: mle.mutual_information(mk(4)), ValueError, "joint"
    ),
    Case(
        "information_gain-classes",
        lambda b, mk: mle.information_gain(mk(3), mk(2, 2)),
        ValueError,
        "child_counts",
    ),
    Case(
        "attention-key-features",
        lambda b, mk: mle.attention(mk(1, 2, 4), mk(1, 3, 5), mk(1, 3, 4)),
        ValueError,
        "key",
    ),
    Case(
        "attention-value-length",
        lambda b, mk: mle.attention(mk(1, 2, 4), mk(1, 3, 4), mk(1, 5, 4)),
        ValueError,
        "value",
    ),
    Case("attention-rank", lambda b, mk: mle.attention(mk(4), mk(4), mk(4)), ValueError, "query"),
    Case(
        "attention-mask-int",
        lambda b, mk: mle.attention(mk(1, 2, 4), mk(1, 3, 4), mk(1, 3, 4), mask=mk.int(2, 3)),
        TypeError,
        "mask",
    ),
    Case(
        "conv2d-channels",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 4, 3, 3)),
        ValueError,
        "weight",
    ),
    Case("conv2d-rank", lambda b, mk: mle.conv2d(mk(5, 5), mk(3, 2, 3, 3)), ValueError, "input"),
    Case(
        "conv2d-bias",
        lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), mk(3, 2, 3, 3), mk(4)),
        ValueError,
        "bias",
    ),
    Case("alpha_bar-rank", lambda b, mk: mle.alpha_bar(mk()), ValueError, "betas"),
    Case(
        "forward_diffusion-noise",
        lambda b, mk: mle.forward_diffusion(mk(2, 3), mk(2, 4), 0.5),
        ValueError,
        "noise",
    ),
    Case(
        "ddpm-betas-rank",
        lambda b, mk: mle.ddpm_reverse_step(mk(2, 3), mk(2, 3), 3, mk(2, 10, value=0.01), mk(2, 3)),
        ValueError,
        "betas",
    ),
    Case("rbf-features", lambda b, mk: mle.rbf_kernel(mk(3, 2), mk(4, 3)), ValueError, "x2"),
    Case(
        "gp-y_train",
        lambda b, mk: mle.gp_posterior(mk(3, 2), mk(4), mk(4, 2), kernel=mle.rbf_kernel),
        ValueError,
        "y_train",
    ),
    Case(
        "least_squares-x-rank",
        lambda b, mk: mle.least_squares_grad(mk(3), mk(3), mk(3)),
        ValueError,
        "x",
    ),
    Case(
        "least_squares-theta",
        lambda b, mk: mle.least_squares_grad(mk(4), mk(5, 3), mk(5)),
        ValueError,
        "theta",
    ),
    Case(
        "linear_backward-dy",
        lambda b, mk: mle.linear_backward(mk(2, 5), mk(2, 3), mk(4, 3)),
        ValueError,
        "dy",
    ),
    Case(
        "sigmoid_backward-shapes", lambda b, mk: mle.sigmoid_backward(mk(3), mk(4)), ValueError, "y"
    ),
    Case("mse_backward-shapes", lambda b, mk: mle.mse_backward(mk(3), mk(4)), ValueError, "target"),
    Case(
        "bayes_rule-broadcast", lambda b, mk: mle.bayes_rule(mk(3), mk(4)), ValueError, "likelihood"
    ),
    # -- non-arrays where arrays are required ---------------------------------------------
    Case("softmax-list", lambda b, mk: mle.softmax([1.0, 2.0]), TypeError, "x", only=("numpy",)),
]


# -- optimize, backprop, naive_bayes: the list, kind by kind ------------------------


def _fitted(mk: Make) -> mle.GaussianNaiveBayes:
    """A model fitted (classes given: traceable, lazy, meta) on 6 samples of 3 features."""
    return mle.GaussianNaiveBayes().fit(mk(6, 3), mk.int(6), classes=mk.int(2))


def _update(name: str, params: Any, grads: Any) -> Any:
    opt = getattr(mle, name)(0.1)
    return opt.update(params, grads, opt.init(params))


def _mlp(mk: Make) -> tuple[tuple[Any, Any], ...]:
    return ((mk(4, 3), mk(4)), (mk(2, 4), mk(2)))


def _other(backend: Backend, like: Any, where: str) -> Any:
    return (_foreign_library if where == "library" else _foreign_device)(backend, like)


def _chapter_rows() -> list[Case]:
    rows = []
    on_other_device = ("strict-device1", "torch-meta")
    for where, error in (("library", TypeError), ("device", ValueError)):
        only = () if where == "library" else on_other_device
        rows += [
            Case(
                f"GaussianNaiveBayes.predict-mixed-{where}",
                lambda b, mk, w=where: _fitted(mk).predict(_other(b, mk(2, 3), w)),
                error,
                "X",
                only=only,
            ),
            Case(
                f"GaussianNaiveBayes.fit-classes-mixed-{where}",
                lambda b, mk, w=where: mle.GaussianNaiveBayes().fit(
                    mk(6, 3), mk.int(6), classes=_other(b, mk.int(2), w)
                ),
                error,
                "classes",
                only=only,
            ),
            *(
                Case(
                    f"{name}.update-grads-mixed-{where}",
                    lambda b, mk, w=where, n=name: _update(n, mk(3), _other(b, mk(3), w)),
                    error,
                    "grads",
                    only=only,
                )
                for name in ("sgd", "momentum", "adam")
            ),
            Case(
                f"gradient_descent-params-mixed-{where}",
                lambda b, mk, w=where: mle.gradient_descent(
                    lambda p: p, (mk(3), _other(b, mk(2), w)), steps=1
                ),
                error,
                "params[1]",
                only=only,
            ),
            Case(
                f"mlp_forward-x-mixed-{where}",
                lambda b, mk, w=where: mle.mlp_forward(_mlp(mk), _other(b, mk(5, 3), w)),
                error,
                "x",
                only=only,
            ),
            Case(
                f"mlp_train_step-y-mixed-{where}",
                lambda b, mk, w=where: mle.mlp_train_step(
                    _mlp(mk), mk(5, 3), _other(b, mk(5, 2), w), lr=0.1
                ),
                error,
                "y",
                only=only,
            ),
        ]
    return [
        *rows,
        # wrong rank
        Case(
            "linear_forward-w-rank",
            lambda b, mk: mle.linear_forward(mk(2, 3), mk(3)),
            ValueError,
            "w",
        ),
        Case(
            "linear_backward-x-rank",
            lambda b, mk: mle.linear_backward(mk(2), mk(), mk(2, 3)),
            ValueError,
            "x",
        ),
        Case("mlp_forward-x-0d", lambda b, mk: mle.mlp_forward(_mlp(mk), mk()), ValueError, "x"),
        Case("predict-X-rank", lambda b, mk: _fitted(mk).predict_proba(mk(3)), ValueError, "X"),
        Case(
            "fit-classes-rank",
            lambda b, mk: mle.GaussianNaiveBayes().fit(mk(6, 3), mk.int(6), classes=mk.int(2, 1)),
            ValueError,
            "classes",
        ),
        # mismatched shapes
        Case(
            "linear_forward-b",
            lambda b, mk: mle.linear_forward(mk(2, 3), mk(4, 3), mk(3)),
            ValueError,
            "b",
        ),
        Case("predict-X-features", lambda b, mk: _fitted(mk).predict(mk(2, 4)), ValueError, "X"),
        Case(
            "score-y-length", lambda b, mk: _fitted(mk).score(mk(2, 3), mk.int(3)), ValueError, "y"
        ),
        Case(
            "sgd.update-grads-shape",
            lambda b, mk: _update("sgd", mk(3), mk(4)),
            ValueError,
            "grads",
        ),
        Case(
            "adam.update-grads-structure",
            lambda b, mk: _update("adam", (mk(3), mk(2)), (mk(3),)),
            ValueError,
            "grads",
        ),
        Case(
            "gradient_descent-grad_fn-shape",
            lambda b, mk: mle.gradient_descent(lambda p: p[:2], mk(3), steps=1),
            ValueError,
            "grad_fn(params)",
        ),
        Case(
            "mlp_forward-params-width",
            lambda b, mk: mle.mlp_forward(_mlp(mk), mk(5, 4)),
            ValueError,
            "params[0][0]",
        ),
        Case(
            "mlp_backward-dy",
            lambda b, mk: mle.mlp_backward(
                _mlp(mk), mle.mlp_forward(_mlp(mk), mk(5, 3))[1], mk(5, 3)
            ),
            ValueError,
            "dy",
        ),
        Case(
            "mlp_train_step-y",
            lambda b, mk: mle.mlp_train_step(_mlp(mk), mk(5, 3), mk(5, 3), lr=0.1),
            ValueError,
            "y",
        ),
        # wrong dtype
        Case(
            "mlp_init-int-dtype",
            lambda b, mk: mle.mlp_init([3, 2], seed=0, xp=b.xp, dtype=b.xp.int64),
            TypeError,
            "dtype",
            only=("numpy", "strict", "torch-cpu", "jax"),
        ),
        Case(
            "fit-y-complex",
            lambda b, mk: mle.GaussianNaiveBayes().fit(
                mk(6, 3), b.asarray(np.ones(6, np.complex64))
            ),
            TypeError,
            "y",
            only=("numpy", "strict", "torch-cpu", "jax", "dask"),
        ),
        Case(
            "sgd.update-params-complex",
            lambda b, mk: _update("sgd", b.asarray(np.ones(3, np.complex64)), mk(3)),
            TypeError,
            "params",
            only=("numpy", "strict", "torch-cpu", "jax", "dask"),
        ),
        # unknown option strings and out-of-range options
        Case(
            "mse_backward-reduction",
            lambda b, mk: mle.mse_backward(mk(3), mk(3), reduction="none"),
            ValueError,
            "reduction",
        ),
        Case(
            "mlp_forward-activation",
            lambda b, mk: mle.mlp_forward(_mlp(mk), mk(5, 3), activation="gelu"),
            ValueError,
            "activation",
        ),
        Case(
            "mlp_train_step-output_activation",
            lambda b, mk: mle.mlp_train_step(
                _mlp(mk), mk(5, 3), mk(5, 2), lr=0.1, output_activation="softmax"
            ),
            ValueError,
            "output_activation",
        ),
        Case(
            "gd-momentum",
            lambda b, mk: mle.gradient_descent(lambda p: p, mk(3), momentum=1.0),
            ValueError,
            "momentum",
        ),
        Case(
            "gd-lr-negative",
            lambda b, mk: mle.gradient_descent(lambda p: p, mk(3), lr=-0.1),
            ValueError,
            "lr",
        ),
        Case(
            "mlp_train_step-lr",
            lambda b, mk: mle.mlp_train_step(_mlp(mk), mk(5, 3), mk(5, 2), lr="0.1"),
            TypeError,
            "lr",
        ),
        Case(
            "adam-eps-negative",
            lambda b, mk: mle.adam(0.1, eps=-1.0),
            ValueError,
            "eps",
            only=("numpy",),
        ),
        Case(
            "momentum-nesterov",
            lambda b, mk: mle.momentum(0.1, nesterov="yes"),
            TypeError,
            "nesterov",
            only=("numpy",),
        ),
        # negative sizes
        Case(
            "mlp_init-sizes-zero",
            lambda b, mk: mle.mlp_init([3, 0, 1], seed=0, xp=b.xp),
            ValueError,
            "sizes",
        ),
        Case(
            "mlp_init-sizes-one",
            lambda b, mk: mle.mlp_init([3], seed=0, xp=b.xp),
            ValueError,
            "sizes",
        ),
        Case(
            "fit-X-no-samples",
            lambda b, mk: mle.GaussianNaiveBayes().fit(mk(0, 3), mk.int(0), classes=mk.int(2)),
            ValueError,
            "X",
        ),
        # non-arrays where arrays are required
        Case(
            "least_squares_grad-list-x",
            lambda b, mk: mle.least_squares_grad(mk(2), [[1.0, 2.0]], mk(1)),
            TypeError,
            "x",
        ),
        Case(
            "linear_forward-list-w",
            lambda b, mk: mle.linear_forward(mk(2, 3), [[1.0, 1.0, 1.0]]),
            TypeError,
            "w",
        ),
        Case(
            "sgd.update-list-grads",
            lambda b, mk: _update("sgd", mk(3), [1.0, 2.0, 3.0]),
            ValueError,
            "grads",
        ),
        Case(
            "mlp_forward-list-x",
            lambda b, mk: mle.mlp_forward(_mlp(mk), [[1.0, 2.0, 3.0]]),
            TypeError,
            "x",
        ),
        Case(
            "fit-list-X",
            lambda b, mk: mle.GaussianNaiveBayes().fit([[1.0], [2.0]], mk.int(2)),
            TypeError,
            "X",
        ),
        Case(
            "predict-list-X", lambda b, mk: _fitted(mk).predict([[1.0, 2.0, 3.0]]), TypeError, "X"
        ),
        Case(
            "mlp_init-seed",
            lambda b, mk: mle.mlp_init([3, 2], seed=1.5, xp=b.xp),
            TypeError,
            "seed",
        ),
    ]


# A list where an array is required: ``_xp.namespace`` rejects it by name (it used to
# skip non-arrays silently, and the call failed later with an AttributeError).
NON_ARRAY: list[Case] = [
    Case(
        "conv2d-list-weight", lambda b, mk: mle.conv2d(mk(1, 2, 5, 5), [[1.0]]), TypeError, "weight"
    ),
    Case(
        "linear-list-weight",
        lambda b, mk: mle.linear(mk(2, 3), [[1.0, 1.0, 1.0]]),
        TypeError,
        "weight",
    ),
    Case("mse-list-target", lambda b, mk: mle.mse(mk(3), [1.0, 2.0, 3.0]), TypeError, "target"),
]

CASES = _generated() + HAND + _chapter_rows()


def _applies(case: Case, backend: Backend) -> bool:
    return not case.only or backend.id in case.only or backend.library in case.only


# Only the (backend, case) rows that apply: a row restricted to some backends (another
# device exists only on strict-device1 and torch-meta) is not generated elsewhere.
ROWS = [(b, c) for c in CASES for b in BACKENDS if _applies(c, b)]


@pytest.mark.parametrize(
    ("backend", "case"), ROWS, indirect=["backend"], ids=[f"{b.id}-{c.id}" for b, c in ROWS]
)
def test_bad_input(backend, case):
    with pytest.raises(case.error) as info:
        case.call(backend, Make(backend))
    # An empty name: no argument to name (the foundation's "no array at all" message).
    assert not case.name or f"`{case.name}`" in str(info.value), (
        f"{type(info.value).__name__} does not name `{case.name}`: {info.value}"
    )


@pytest.mark.parametrize("case", NON_ARRAY, ids=[c.id for c in NON_ARRAY])
def test_non_array_argument(case):
    from mlequations._backends import by_id

    backend = by_id("numpy")
    with pytest.raises(case.error, match=f"`{case.name}`"):
        case.call(backend, Make(backend))


# -- estimators: a failed fit leaves no partial state -------------------------------------


def _assert_unfitted(model: mle.GaussianNaiveBayes, mk: Make) -> None:
    fitted = [a for a in vars(model) if a.endswith("_") and not a.startswith("_")]
    assert not fitted, f"fitted attributes left behind by a failed fit: {fitted}"
    with pytest.raises(ValueError, match="fit"):
        model.predict(mk(2, 3))


BAD_FITS = {
    "X-rank": lambda mk: ((mk(6), mk.int(6)), {}, "X"),
    "y-length": lambda mk: ((mk(6, 3), mk.int(5)), {}, "y"),
    "X-complex": lambda mk: (
        (mk.backend.asarray(np.ones((6, 3), np.complex64)), mk.int(6)),
        {},
        "X",
    ),
    "y-mixed-library": lambda mk: ((mk(6, 3), _foreign_library(mk.backend, mk.int(6))), {}, "y"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FITS))
def test_failed_fit_leaves_the_estimator_unfitted(backend, kind):
    mk = Make(backend)
    args, kwargs, name = BAD_FITS[kind](mk)
    model = mle.GaussianNaiveBayes()
    with pytest.raises((TypeError, ValueError)) as info:
        model.fit(*args, **kwargs)
    assert f"`{name}`" in str(info.value), str(info.value)
    _assert_unfitted(model, mk)


@pytest.mark.parametrize(
    ("options", "name"),
    [({"var_smoothing": -1.0}, "var_smoothing"), ({"priors": [0.7, 0.7]}, "priors")],
)
def test_bad_estimator_options(options, name):
    """Options are checked when the estimator is made, before anything is fitted."""
    with pytest.raises(ValueError, match=f"`{name}`"):
        mle.GaussianNaiveBayes(**options)


def test_predict_before_fit_names_fit():
    with pytest.raises(ValueError, match="fit"):
        mle.GaussianNaiveBayes().predict(np.ones((2, 3)))
