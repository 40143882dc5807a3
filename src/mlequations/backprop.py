r"""Backpropagation: the chain rule written out by hand, layer by layer, no autodiff.

A network is a composition $f = f_L \circ \dots \circ f_1$. For a loss $L$ the
chain rule gives each layer's gradients from the gradient of its output,

$$
\frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,
\frac{\partial y}{\partial x},
$$

so every layer here comes as a pair: ``*_forward`` computes $y$ from $x$ (and
keeps what the backward pass needs), ``*_backward`` maps $\partial L/\partial y$
(``dy``) to the gradients of the layer's input and parameters. Chaining the
backward functions in reverse order is backpropagation; :func:`mlp_backward`
does it for a multilayer perceptron, and its results equal torch autograd's and
``jax.grad``'s.

Parameters follow ``torch.nn.Linear``: a weight of shape ``(out, in)`` and a
bias of shape ``(out,)``, so $y = x W^\top + b$; an MLP's parameters are a
tuple of ``(W, b)`` pairs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from ._xp import Array, Namespace, default_namespace, device, float_dtypes, namespace
from .activations import sigmoid

__all__ = [
    "LinearGrads",
    "TrainStep",
    "linear_backward",
    "linear_forward",
    "mlp_backward",
    "mlp_forward",
    "mlp_init",
    "mlp_train_step",
    "mse_backward",
    "relu_backward",
    "sigmoid_backward",
    "tanh_backward",
]

MLPParams = tuple[tuple[Array, Array], ...]
"""An MLP's parameters: one ``(W, b)`` pair per layer, ``W`` of shape (out, in)."""

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")


class LinearGrads(NamedTuple):
    """Gradients of a linear layer: input `dx`, weight `dw`, bias `db`."""

    dx: Array
    dw: Array
    db: Array


class TrainStep(NamedTuple):
    """One training step's result: the updated parameters and the loss before the step."""

    params: MLPParams
    loss: Array


def _as_float(xp: Namespace, **arrays: Array) -> tuple[Any, Any, list[Array]]:
    """Output dtype, compute dtype, and the arrays cast to the compute dtype (in order)."""
    out_dtype, work = float_dtypes(xp, **arrays)
    return out_dtype, work, [xp.astype(a, work, copy=False) for a in arrays.values()]


def _shape(a: Array) -> tuple[int, ...]:
    return tuple(a.shape)


# -- a linear layer ------------------------------------------------------------------------
def _check_linear(x: Array, w: Array, b: Array | None) -> None:
    if w.ndim != 2:
        raise ValueError(f"`w` must have shape (out, in), got {_shape(w)}")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"`x` must have shape (..., {w.shape[1]}) to fit `w` of shape {_shape(w)}, "
            f"got {_shape(x)}"
        )
    if b is not None and _shape(b) != (w.shape[0],):
        raise ValueError(
            f"`b` must have shape ({w.shape[0]},) to fit `w` of shape {_shape(w)}, got {_shape(b)}"
        )


def linear_forward(
    x: Array, w: Array, b: Array | None = None, /, *, xp: Namespace | None = None
) -> Array:
    r"""A fully connected layer, $y = x W^\top + b$ (``torch.nn.Linear``).

    $$
    y_{\dots j} = \sum_{i=1}^{D_\text{in}} x_{\dots i}\, W_{j i} + b_j .
    $$

    Args:
        x: Input of shape `(..., D_in)`.
        w: Weight of shape `(D_out, D_in)`.
        b: Bias of shape `(D_out,)`, or ``None``.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $y$, shape `(..., D_out)`, in the inputs' floating result dtype and on
        their device (half precision is computed in float32). Empty axes are
        allowed: no rows give no rows, and $D_\text{in} = 0$ gives $y = b$.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> x = np.asarray([[1.0, 2.0]])
        >>> w = np.asarray([[1.0, 0.0], [1.0, 1.0]])
        >>> mle.linear_forward(x, w, np.asarray([0.5, -0.5]))
        array([[1.5, 2.5]])
    """
    xp = namespace(x=x, w=w, b=b, xp=xp)
    _check_linear(x, w, b)
    bias = {} if b is None else {"b": b}
    out_dtype, _, cast = _as_float(xp, x=x, w=w, **bias)
    y = xp.matmul(cast[0], xp.matrix_transpose(cast[1]))  # (..., D_out)
    if b is not None:
        y = y + cast[2]
    return xp.astype(y, out_dtype, copy=False)


def linear_backward(
    dy: Array, x: Array, w: Array, /, *, xp: Namespace | None = None
) -> LinearGrads:
    r"""Gradients of $y = x W^\top + b$ from the gradient of its output.

    With $\delta = \partial L / \partial y$ (`dy`), summing over every leading
    (batch) index $n$:

    $$
    \frac{\partial L}{\partial x} = \delta\, W, \qquad
    \frac{\partial L}{\partial W} = \sum_n \delta_n^\top x_n, \qquad
    \frac{\partial L}{\partial b} = \sum_n \delta_n .
    $$

    Args:
        dy: $\partial L / \partial y$, shape `(..., D_out)`.
        x: The layer's input, shape `(..., D_in)` (same leading shape as `dy`).
        w: Weight of shape `(D_out, D_in)`.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        :class:`LinearGrads` ``(dx, dw, db)`` with the shapes of `x`, `w` and
        the bias `(D_out,)`, in the inputs' floating result dtype and device.
        Empty axes are allowed: a batch of no rows gives zero `dw` and `db`,
        and an empty feature axis gives the correspondingly empty gradients.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> x = np.asarray([[1.0, 2.0], [3.0, 4.0]])
        >>> w = np.asarray([[1.0, -1.0]])
        >>> grads = mle.linear_backward(np.asarray([[1.0], [0.5]]), x, w)
        >>> grads.dw, grads.db
        (array([[2.5, 4. ]]), array([1.5]))
    """
    xp = namespace(dy=dy, x=x, w=w, xp=xp)
    _check_linear(x, w, None)
    if _shape(dy) != (*_shape(x)[:-1], w.shape[0]):
        raise ValueError(
            f"`dy` must have shape {(*_shape(x)[:-1], w.shape[0])} for `x` {_shape(x)} and "
            f"`w` {_shape(w)}, got {_shape(dy)}"
        )
    out_dtype, _, (dy, x, w) = _as_float(xp, dy=dy, x=x, w=w)
    dx = xp.matmul(dy, w)  # (..., D_in)
    # N from the static shape: reshape(-1, 0) is ambiguous when a feature axis is empty.
    n = math.prod(_shape(x)[:-1])
    dy2 = xp.reshape(dy, (n, w.shape[0]))  # (N, D_out), N = prod(...)
    x2 = xp.reshape(x, (n, w.shape[1]))  # (N, D_in)
    dw = xp.matmul(xp.matrix_transpose(dy2), x2)  # (D_out, D_in)
    db = xp.sum(dy2, axis=0)  # (D_out,)
    return LinearGrads(*(xp.astype(g, out_dtype, copy=False) for g in (dx, dw, db)))


# -- activations and the loss --------------------------------------------------------------
def _elementwise(dy: Array, y: Array, xp: Namespace | None) -> tuple[Namespace, Any, Array, Array]:
    xp = namespace(dy=dy, y=y, xp=xp)
    if _shape(dy) != _shape(y):
        raise ValueError(f"`dy` must have the shape of `y`, {_shape(y)}; got {_shape(dy)}")
    out_dtype, _, (dy, y) = _as_float(xp, dy=dy, y=y)
    return xp, out_dtype, dy, y


def sigmoid_backward(dy: Array, y: Array, /, *, xp: Namespace | None = None) -> Array:
    r"""Gradient through $y = \sigma(x)$, from the *output* $y$.

    $$
    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\, y\,(1 - y),
    \qquad \text{since } \sigma'(x) = \sigma(x)\,(1 - \sigma(x)).
    $$

    Using $y$ rather than $x$ needs no second exponential and cannot overflow.

    Args:
        dy: $\partial L / \partial y$, any shape.
        y: The sigmoid's output, same shape.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $\partial L / \partial x$, shape of `y`, in the inputs' floating dtype.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.sigmoid_backward(np.ones(3), np.asarray([0.0, 0.5, 1.0]))
        array([0.  , 0.25, 0.  ])
    """
    xp, out_dtype, dy, y = _elementwise(dy, y, xp)
    return xp.astype(dy * y * (1 - y), out_dtype, copy=False)


def tanh_backward(dy: Array, y: Array, /, *, xp: Namespace | None = None) -> Array:
    r"""Gradient through $y = \tanh(x)$, from the output $y$.

    $$
    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,(1 - y^2).
    $$

    Args:
        dy: $\partial L / \partial y$, any shape.
        y: The tanh's output, same shape.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $\partial L / \partial x$, shape of `y`, in the inputs' floating dtype.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.tanh_backward(np.ones(3), np.tanh(np.asarray([0.0, 1.0, 50.0])))
        array([1.        , 0.41997434, 0.        ])
    """
    xp, out_dtype, dy, y = _elementwise(dy, y, xp)
    return xp.astype(dy * (1 - y * y), out_dtype, copy=False)


def relu_backward(dy: Array, y: Array, /, *, xp: Namespace | None = None) -> Array:
    r"""Gradient through $y = \max(x, 0)$, from the output $y$ (or the input $x$).

    $$
    \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,[y > 0],
    $$

    with the subgradient 0 at $x = 0$, as torch and JAX use. $y > 0$ exactly
    where $x > 0$, so the input works as well as the output.

    Args:
        dy: $\partial L / \partial y$, any shape.
        y: The ReLU's output (or input), same shape.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $\partial L / \partial x$, shape of `y`, in the inputs' floating dtype.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.relu_backward(np.asarray([5.0, 5.0, 5.0]), np.asarray([0.0, 0.0, 2.0]))
        array([0., 0., 5.])
    """
    xp, out_dtype, dy, y = _elementwise(dy, y, xp)
    return xp.astype(xp.where(y > 0, dy, xp.zeros_like(dy)), out_dtype, copy=False)


def _identity_backward(dy: Array, y: Array, /, *, xp: Namespace | None = None) -> Array:
    return dy


def mse_backward(
    pred: Array, target: Array, /, *, reduction: str = "mean", xp: Namespace | None = None
) -> Array:
    r"""Gradient of the mean squared error with respect to the prediction.

    $$
    L = \frac{1}{n} \sum_{i=1}^{n} (\hat y_i - y_i)^2, \qquad
    \frac{\partial L}{\partial \hat y_i} = \frac{2}{n} (\hat y_i - y_i),
    $$

    over all $n$ elements (``torch.nn.MSELoss()``); ``reduction="sum"`` drops
    the $1/n$. For no elements ($n = 0$) the gradient is empty (no 0 / 0).

    Args:
        pred: Prediction $\hat y$, any shape.
        target: Target $y$, same shape.
        reduction: ``"mean"`` or ``"sum"``, as the loss was reduced.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        $\partial L / \partial \hat y$, shape of `pred`, in the inputs'
        floating result dtype and on their device.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> mle.mse_backward(np.asarray([1.0, 2.0]), np.asarray([0.0, 2.0]))
        array([1., 0.])
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"`reduction` must be 'mean' or 'sum', got {reduction!r}")
    xp = namespace(pred=pred, target=target, xp=xp)
    if _shape(pred) != _shape(target):
        raise ValueError(
            f"`target` must have the shape of `pred`, {_shape(pred)}; got {_shape(target)}"
        )
    out_dtype, _, (pred, target) = _as_float(xp, pred=pred, target=target)
    n = 1
    for size in _shape(pred):
        n *= size
    scale = 2 / max(n, 1) if reduction == "mean" else 2
    return xp.astype(scale * (pred - target), out_dtype, copy=False)


# -- a portable random initialisation ------------------------------------------------------
# Wichmann & Hill (1982), Algorithm AS 183: three small multiplicative congruential
# generators s <- a s mod m whose fractions s/m are summed modulo 1 (period ~7e12).
# Each modulus is below 2^15, so every product in the jump-ahead below stays below 2^30
# and fits int32, on every backend (JAX without x64 included).
_WH_MODULI = (30269, 30307, 30323)
_WH_MULTIPLIERS = (171, 172, 170)
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """Steele, Lea & Flood's SplitMix64 finaliser on Python ints: seeds to start states."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _wichmann_hill_states(seed: int) -> tuple[int, int, int]:
    """The three generators' start states (each in [1, m - 1]) for `seed`."""
    return tuple(  # type: ignore[return-value]
        1 + _splitmix64(seed * 3 + i) % (m - 1) for i, m in enumerate(_WH_MODULI)
    )


def _uniform(n: int, seed: int, xp: Namespace, device: Any, dtype: Any) -> Array:
    r"""The first `n` numbers in $[0, 1)$ of the Wichmann–Hill stream of `seed`.

    Element $k$ is computed directly from $k$ (counter-based), by jumping each
    generator $k + 1$ steps ahead: $s_k = a^{k+1} s_0 \bmod m$, with
    $a^{k+1}$ taken by binary exponentiation over the bits of $k + 1$. The
    powers $a^{2^j} \bmod m$ are Python integers, so the arrays see only int32
    multiplications, remainders and shifts, and every backend draws the same
    numbers.
    """
    count = xp.arange(1, n + 1, dtype=xp.int32, device=device)  # (n,), k + 1
    u = None
    for s0, a, m in zip(_wichmann_hill_states(seed), _WH_MULTIPLIERS, _WH_MODULI, strict=True):
        state = xp.full((n,), s0, dtype=xp.int32, device=device)
        power = a  # a^(2^j) mod m
        for j in range(max(n, 1).bit_length()):
            bit = ((count >> j) & 1) == 1
            state = xp.where(bit, (state * power) % m, state)
            power = power * power % m
        part = xp.astype(state, dtype) / m  # (n,), in (0, 1)
        u = part if u is None else u + part
    return u - xp.floor(u)  # (n,), the sum modulo 1


def mlp_init(
    sizes: Sequence[int],
    /,
    *,
    seed: int,
    device: Any = None,
    dtype: Any = None,
    xp: Any = None,
) -> MLPParams:
    r"""Random initial parameters of an MLP, the same on every backend for one seed.

    Layer $l$ maps `sizes[l]` features to `sizes[l + 1]`; its weight and bias
    are drawn uniformly, as ``torch.nn.Linear`` initialises them,

    $$
    W^{(l)}_{ji},\ b^{(l)}_j \sim \mathcal U\!\left(-\frac{1}{\sqrt{d_l}},
    \frac{1}{\sqrt{d_l}}\right), \qquad d_l = \texttt{sizes}[l] .
    $$

    The uniform numbers come from a tiny portable generator written in the
    standard: Wichmann and Hill's three small congruential generators,
    evaluated directly at each index with int32 arithmetic only (see
    ``_uniform``). So the same `seed` gives the same weights on NumPy, PyTorch,
    JAX, CuPy, array-api-strict and Dask, up to the rounding of `dtype` — not
    the numbers ``torch.manual_seed`` would give, and not a generator for
    cryptography or large simulations.

    Args:
        sizes: Layer widths $(d_0, d_1, \dots, d_L)$, at least two positive ints.
        seed: Any Python int; equal seeds give equal weights.
        device: Device of the parameters (the library's default when omitted).
        dtype: Real floating dtype (the library's default floating dtype when
            omitted); half precision is drawn in float32 and rounded.
        xp: The array library (``numpy``, ``torch``, ``jax.numpy``, ...) or its
            array API namespace; NumPy when omitted.

    Returns:
        A tuple of $L$ ``(W, b)`` pairs, ``W`` of shape `(sizes[l + 1], sizes[l])`
        and ``b`` of shape `(sizes[l + 1],)`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> params = mle.mlp_init([2, 3, 1], seed=0, xp=np)
        >>> [(w.shape, b.shape) for w, b in params]
        [((3, 2), (3,)), ((1, 3), (1,))]
        >>> bound = 1 / np.sqrt(2)
        >>> bool(np.all(np.abs(params[0][0]) <= bound))
        True

    References:
        Wichmann, B. A., & Hill, I. D. (1982). Algorithm AS 183: An efficient
        and portable pseudo-random number generator. *Applied Statistics*,
        31(2), 188-190.
    """
    if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence):
        raise TypeError(f"`sizes` must be a sequence of ints, got {type(sizes).__name__}")
    if len(sizes) < 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes
    ):
        raise ValueError(f"`sizes` must be at least two positive ints, got {list(sizes)!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"`seed` must be a Python int, got {type(seed).__name__}")
    xp = default_namespace(xp)
    if dtype is None:
        dtype = xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
    elif not xp.isdtype(dtype, "real floating"):
        raise TypeError(f"`dtype` must be a real floating dtype, got {dtype}")
    work = xp.float32 if xp.finfo(dtype).bits < 32 else dtype
    shapes = [((d_out, d_in), d_in) for d_in, d_out in itertools.pairwise(sizes)]
    total = sum(o * i + o for (o, i), _ in shapes)
    if total >= 2**31 - 1:
        raise ValueError(f"`sizes` {list(sizes)} need {total} numbers; at most 2**31 - 2")
    u = _uniform(total, seed, xp, device, work)  # (total,)
    params = []
    start = 0
    for (d_out, d_in), fan_in in shapes:
        bound = fan_in**-0.5
        w = u[start : start + d_out * d_in]
        b = u[start + d_out * d_in : start + d_out * d_in + d_out]
        start += d_out * d_in + d_out
        w = xp.reshape(bound * (2 * w - 1), (d_out, d_in))
        b = bound * (2 * b - 1)
        params.append((xp.astype(w, dtype, copy=False), xp.astype(b, dtype, copy=False)))
    return tuple(params)


# -- a multilayer perceptron ---------------------------------------------------------------
def _activation(name: str | None, argument: str) -> str:
    name = "identity" if name is None else name
    if name not in ACTIVATIONS:
        raise ValueError(f"`{argument}` must be one of {ACTIVATIONS} or None, got {name!r}")
    return name


def _apply(name: str, z: Array, xp: Namespace) -> Array:
    if name == "tanh":
        return xp.tanh(z)
    if name == "relu":
        return xp.where(z > 0, z, xp.zeros_like(z))
    if name == "sigmoid":
        return sigmoid(z, xp=xp)
    return z


_BACKWARD = {
    "identity": _identity_backward,
    "relu": relu_backward,
    "sigmoid": sigmoid_backward,
    "tanh": tanh_backward,
}


def _check_mlp(params: MLPParams, x: Array) -> None:
    if not isinstance(params, tuple | list) or not params:
        raise TypeError(f"`params` must be a non-empty tuple of (W, b) pairs, got {params!r}")
    if x.ndim == 0:
        raise ValueError(f"`x` must have shape (..., D_0) (at least one axis), got {_shape(x)}")
    width = x.shape[-1]
    for i, layer in enumerate(params):
        if not isinstance(layer, tuple | list) or len(layer) != 2:
            raise TypeError(f"`params[{i}]` must be a (W, b) pair, got {type(layer).__name__}")
        w, b = layer
        if w.ndim != 2 or _shape(b) != (w.shape[0],):
            raise ValueError(
                f"`params[{i}]` must be W (out, in) and b (out,), got {_shape(w)} and {_shape(b)}"
            )
        if w.shape[1] != width:
            what = "`x`" if i == 0 else f"`params[{i - 1}]`"
            raise ValueError(
                f"`params[{i}][0]` of shape {_shape(w)} must take {width} inputs from {what}"
                + (f" of shape {_shape(x)}" if i == 0 else "")
            )
        width = w.shape[0]


def _leaves(params: MLPParams) -> dict[str, Array]:
    return {f"params[{i}][{j}]": a for i, layer in enumerate(params) for j, a in enumerate(layer)}


def mlp_forward(
    params: MLPParams,
    x: Array,
    /,
    *,
    activation: str | None = "tanh",
    output_activation: str | None = None,
    xp: Namespace | None = None,
) -> tuple[Array, tuple[tuple[Array, Array], ...]]:
    r"""Run a multilayer perceptron, keeping what the backward pass needs.

    $$
    a^{(0)} = x, \qquad a^{(l)} = \phi_l\!\left(a^{(l-1)} W^{(l)\top} + b^{(l)}\right),
    \quad l = 1, \dots, L,
    $$

    with $\phi_l$ = `activation` for the hidden layers and `output_activation`
    for the last. The cache holds each layer's input $a^{(l-1)}$ and output
    $a^{(l)}$: the sigmoid, tanh and ReLU derivatives are functions of the
    output, so nothing else is needed.

    Args:
        params: Tuple of ``(W, b)`` pairs (see :func:`mlp_init`).
        x: Input of shape `(..., D_0)`.
        activation: ``"tanh"``, ``"sigmoid"``, ``"relu"`` or ``"identity"``
            (``None``) for the hidden layers.
        output_activation: The same choices for the last layer (default none).
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        ``(output, cache)``: the output $a^{(L)}$ of shape `(..., D_L)` in the
        floating result dtype of the inputs, and a tuple of ``(input, output)``
        pairs, one per layer, to hand to :func:`mlp_backward`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> params = ((np.asarray([[1.0, -1.0]]), np.asarray([0.0])),)
        >>> out, cache = mle.mlp_forward(params, np.asarray([[2.0, 2.0]]),
        ...                              output_activation="sigmoid")
        >>> out
        array([[0.5]])
    """
    hidden = _activation(activation, "activation")
    last = _activation(output_activation, "output_activation")
    xp = namespace(x=x, xp=xp, **_leaves(params) if isinstance(params, tuple | list) else {})
    _check_mlp(params, x)
    a = x
    cache = []
    for i, (w, b) in enumerate(params):
        z = linear_forward(a, w, b, xp=xp)  # (..., D_l)
        y = _apply(last if i == len(params) - 1 else hidden, z, xp)
        cache.append((a, y))
        a = y
    return a, tuple(cache)


def mlp_backward(
    params: MLPParams,
    cache: tuple[tuple[Array, Array], ...],
    dy: Array,
    /,
    *,
    activation: str | None = "tanh",
    output_activation: str | None = None,
    xp: Namespace | None = None,
) -> MLPParams:
    r"""Backpropagate $\partial L / \partial a^{(L)}$ through an MLP: the chain rule, by hand.

    From the last layer to the first, with $\delta^{(L)}$ = `dy`:

    $$
    \begin{aligned}
    g^{(l)} &= \delta^{(l)} \odot \phi_l'\big(a^{(l)}\big)
      && \text{(activation backward: sigmoid, tanh, ReLU)} \\
    \frac{\partial L}{\partial W^{(l)}} &= \sum_n g^{(l)\top}_n a^{(l-1)}_n, \qquad
    \frac{\partial L}{\partial b^{(l)}} = \sum_n g^{(l)}_n
      && \text{(linear backward)} \\
    \delta^{(l-1)} &= g^{(l)} W^{(l)} .
    \end{aligned}
    $$

    Args:
        params: The tuple of ``(W, b)`` pairs the forward pass used.
        cache: The cache :func:`mlp_forward` returned.
        dy: $\partial L / \partial a^{(L)}$, the shape of the output.
        activation: The hidden activation the forward pass used.
        output_activation: The output activation the forward pass used.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        The gradients as a tuple of ``(dW, db)`` pairs, in the structure and
        shapes of `params` — equal to what autodiff gives.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> params = ((np.asarray([[1.0, -1.0]]), np.asarray([0.0])),)
        >>> x = np.asarray([[2.0, 1.0]])
        >>> out, cache = mle.mlp_forward(params, x, output_activation=None)
        >>> mle.mlp_backward(params, cache, np.ones((1, 1)), output_activation=None)
        ((array([[2., 1.]]), array([1.])),)
    """
    hidden = _activation(activation, "activation")
    last = _activation(output_activation, "output_activation")
    if not isinstance(cache, tuple | list) or not isinstance(params, tuple | list):
        raise TypeError("`params` and `cache` must be the tuples mlp_forward used and returned")
    if len(cache) != len(params):
        raise ValueError(f"`cache` must have one entry per layer ({len(params)}), got {len(cache)}")
    xp = namespace(dy=dy, xp=xp, **_leaves(params))
    _check_mlp(params, cache[0][0])
    if _shape(dy) != _shape(cache[-1][1]):
        raise ValueError(
            f"`dy` must have the shape of the output, {_shape(cache[-1][1])}; got {_shape(dy)}"
        )
    grads = []
    delta = dy
    for i in range(len(params) - 1, -1, -1):
        w, _ = params[i]
        a_in, a_out = cache[i]
        backward = _BACKWARD[last if i == len(params) - 1 else hidden]
        g = backward(delta, a_out, xp=xp)  # (..., D_l)
        layer = linear_backward(g, a_in, w, xp=xp)
        grads.append((layer.dw, layer.db))
        delta = layer.dx  # (..., D_{l-1})
    return tuple(reversed(grads))


def mlp_train_step(
    params: MLPParams,
    x: Array,
    y: Array,
    /,
    *,
    lr: float,
    activation: str | None = "tanh",
    output_activation: str | None = None,
    xp: Namespace | None = None,
) -> TrainStep:
    r"""One step of gradient descent on the mean squared error of an MLP.

    $$
    L = \frac{1}{n} \sum_i \big(f_\theta(x)_i - y_i\big)^2, \qquad
    \theta \leftarrow \theta - \eta\, \nabla_\theta L,
    $$

    with $\nabla_\theta L$ from :func:`mse_backward` and :func:`mlp_backward`.
    It is the guide's training step (``nn.MSELoss``, ``torch.optim.SGD``,
    ``zero_grad``/``backward``/``step``) without autodiff.

    Args:
        params: Tuple of ``(W, b)`` pairs.
        x: Input of shape `(..., D_0)`.
        y: Target of the output's shape `(..., D_L)`.
        lr: Learning rate $\eta$.
        activation: Hidden activation (see :func:`mlp_forward`).
        output_activation: Output activation.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        :class:`TrainStep` ``(params, loss)``: the updated parameters (same
        structure, dtypes, device) and the loss *before* the update, a 0-d array.
        A batch of no rows has loss NaN (the mean of nothing, as in torch) and
        zero gradients, so the parameters come back unchanged.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> params = ((np.asarray([[0.5, -0.5]]), np.asarray([0.0])),)
        >>> x = np.asarray([[0.0, 0.0], [1.0, 1.0]])
        >>> y = np.asarray([[0.0], [1.0]])
        >>> params, loss = mle.mlp_train_step(params, x, y, lr=0.01,
        ...                                   output_activation="sigmoid")
        >>> loss
        array(0.25)
    """
    if isinstance(lr, bool) or not isinstance(lr, int | float):
        raise TypeError(f"`lr` must be a Python number, got {type(lr).__name__}")
    xp = namespace(x=x, y=y, xp=xp, **_leaves(params) if isinstance(params, tuple | list) else {})
    out, cache = mlp_forward(
        params, x, activation=activation, output_activation=output_activation, xp=xp
    )
    if _shape(y) != _shape(out):
        raise ValueError(f"`y` must have the shape of the output, {_shape(out)}; got {_shape(y)}")
    out_dtype, _, (pred, target) = _as_float(xp, out=out, y=y)
    diff = pred - target
    if math.prod(_shape(diff)) == 0:  # static: the mean of no errors is NaN, as in torch
        loss = xp.full((), math.nan, dtype=diff.dtype, device=device(diff))
    else:
        # keepdims, then reshape: a 0-d array on every backend (NumPy's mean gives a scalar)
        loss = xp.reshape(xp.mean(diff * diff, keepdims=True), ())  # 0-d
    loss = xp.astype(loss, out_dtype, copy=False)
    dy = mse_backward(out, y, xp=xp)
    grads = mlp_backward(
        params, cache, dy, activation=activation, output_activation=output_activation, xp=xp
    )

    def descend(p: Array, g: Array) -> Array:
        p_dtype, _ = float_dtypes(xp, p)  # integer parameters are promoted
        p = xp.astype(p, p_dtype, copy=False)
        return p - lr * xp.astype(g, p_dtype, copy=False)

    new = tuple(
        (descend(w, dw), descend(b, db)) for (w, b), (dw, db) in zip(params, grads, strict=True)
    )
    return TrainStep(new, loss)
