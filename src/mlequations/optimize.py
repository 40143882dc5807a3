r"""Optimization: gradient descent and the optimisers that train neural networks.

Every update here is a few elementwise operations on arrays, so it runs on any
array library. The parameters may be one array or a (nested) tuple of arrays —
a model's weights and biases — and each result comes back in the same
structure. Nothing is updated in place: each step returns new arrays, so the
steps trace under ``jax.jit`` and leave the caller's arrays untouched.

* :func:`gradient_descent` runs a fixed number of (momentum) steps of a given
  gradient function; with ``tol`` it stops early, eagerly.
* :func:`least_squares_grad` is the gradient of the least-squares loss.
* :func:`sgd`, :func:`momentum` and :func:`adam` are optimisers in the optax
  style: pure ``(init, update)`` pairs whose steps equal ``torch.optim.SGD``
  and ``torch.optim.Adam`` step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ._xp import Array, Namespace, compute_dtype, float_dtypes, namespace, repeat, scalar

__all__ = [
    "AdamState",
    "MomentumState",
    "Optimizer",
    "SGDState",
    "adam",
    "gradient_descent",
    "least_squares_grad",
    "momentum",
    "sgd",
]

Params = Any
"""An array, or a (nested) tuple or list of arrays."""


# -- parameter structures ("pytrees" of tuples) ------------------------------------------
def _is_node(tree: object) -> bool:
    return isinstance(tree, tuple | list)


def _rebuild(tree: Any, children: list[Any]) -> Any:
    if hasattr(tree, "_fields"):  # a NamedTuple
        return type(tree)(*children)
    return type(tree)(children)


def _named_leaves(tree: Params, name: str) -> list[tuple[str, Array]]:
    """The arrays of `tree` with the paths users know them by: ``params[1][0]``."""
    if _is_node(tree):
        return [leaf for i, t in enumerate(tree) for leaf in _named_leaves(t, f"{name}[{i}]")]
    return [(name, tree)]


def _tree_map(fn: Callable[..., Any], tree: Params, *rest: Params) -> Any:
    """Apply `fn` leaf by leaf to trees of one structure (checked by :func:`_check_like`)."""
    if _is_node(tree):
        return _rebuild(tree, [_tree_map(fn, t, *(r[i] for r in rest)) for i, t in enumerate(tree)])
    return fn(tree, *rest)


def _check_like(tree: Params, reference: Params, name: str, ref_name: str) -> None:
    """Raise if `tree` has not the structure and leaf shapes of `reference`."""
    if _is_node(reference):
        if not _is_node(tree) or len(tree) != len(reference):
            raise ValueError(
                f"`{name}` must have the structure of `{ref_name}` (a tuple of "
                f"{len(reference)}), got {type(tree).__name__}"
            )
        for i, (t, r) in enumerate(zip(tree, reference, strict=True)):
            _check_like(t, r, f"{name}[{i}]", f"{ref_name}[{i}]")
        return
    if _is_node(tree) or not hasattr(tree, "shape"):
        raise ValueError(f"`{name}` must be an array like `{ref_name}`, got {type(tree).__name__}")
    if tuple(tree.shape) != tuple(reference.shape):
        raise ValueError(
            f"`{name}` must have the shape of `{ref_name}`, {tuple(reference.shape)}; "
            f"got {tuple(tree.shape)}"
        )


def _prepare_params(params: Params, name: str = "params") -> tuple[Namespace, Params]:
    """Namespace of the leaves, and the leaves as floating arrays (ints promoted)."""
    leaves = _named_leaves(params, name)
    if not leaves or not all(hasattr(leaf, "shape") for _, leaf in leaves):
        raise TypeError(f"`{name}` must be an array or a tuple of arrays, got {params!r}")
    xp = namespace(**dict(leaves))

    names = iter([leaf_name for leaf_name, _ in leaves])  # _tree_map visits in this order

    def promote(p: Array) -> Array:
        out_dtype, _ = float_dtypes(xp, **{next(names): p})  # complex: names the leaf
        return xp.astype(p, out_dtype, copy=False)

    return xp, _tree_map(promote, params)


def _array(xp: Namespace, a: Array) -> Array:
    """`a` as an array: NumPy's arithmetic on 0-d arrays returns scalars, which are not."""
    return xp.reshape(xp.expand_dims(a, axis=0), ()) if a.ndim == 0 else a


def _check_number(
    value: object, name: str, *, low: float = 0.0, below: float | None = None
) -> float:
    """Validate a Python-number option (never an array value)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a Python number, got {type(value).__name__}")
    if value < low or (below is not None and value >= below):
        upper = f" and < {below}" if below is not None else ""
        raise ValueError(f"`{name}` must be >= {low}{upper}, got {value}")
    return float(value)


# -- gradient descent ----------------------------------------------------------------------
def gradient_descent(
    grad_fn: Callable[[Params], Params],
    params: Params,
    /,
    *,
    lr: float = 0.01,
    steps: int = 1000,
    momentum: float = 0.0,
    tol: float | None = None,
    callback: Callable[[int, Params], object] | None = None,
) -> Params:
    r"""Follow the negative gradient for a number of steps, with optional momentum.

    $$
    v_{k+1} = \mu\, v_k + \nabla L(\theta_k), \qquad
    \theta_{k+1} = \theta_k - \eta\, v_{k+1}, \qquad v_0 = 0,
    $$

    with learning rate $\eta$ (`lr`) and momentum $\mu$; $\mu = 0$ is plain
    gradient descent $\theta_{k+1} = \theta_k - \eta \nabla L(\theta_k)$. This is
    ``torch.optim.SGD(lr=lr, momentum=momentum)`` step for step.

    With ``tol=None`` (the default) the loop runs exactly `steps` times over a
    static count, so a function that calls it traces under ``jax.jit`` and
    stays lazy on Dask. Under JAX the step is traced once (``lax.fori_loop``,
    through the seam's ``repeat``) rather than unrolled, so 1000 steps compile
    as fast as one; `grad_fn` must then be traceable. With a `tol`, the
    loop stops after the first step whose update is small,
    $\lVert \theta_{k+1} - \theta_k \rVert_2 \le$ `tol` (over all arrays of
    `params`); that test reads a value back, so this mode is **eager**: it
    cannot run under ``jax.jit`` (the one documented exception to the
    traceability rule) and computes Dask arrays at every step.

    Args:
        grad_fn: The gradient $\nabla L$: called with parameters of the
            structure of `params`, returns gradients of the same structure and
            shapes (cast to each parameter's dtype).
        params: Initial parameters $\theta_0$: an array or a (nested) tuple of
            arrays, real floating (integers are promoted to the default float).
        lr: Learning rate $\eta \ge 0$.
        steps: Number of steps (the maximum number when `tol` is given).
        momentum: Momentum $\mu \in [0, 1)$.
        tol: Stop once the update norm is at most `tol` (eager); ``None`` runs
            all `steps`.
        callback: Called as ``callback(k, params)`` after step ``k = 1, 2, ...``,
            e.g. to record a trajectory; its return value is ignored.

    Returns:
        The final parameters, in the structure, dtypes and device of `params`
        (every leaf an array, 0-d and size-0 parameters included).

    Raises:
        TypeError: `grad_fn` is not callable or `params` holds no arrays.
        ValueError: An option is out of range, or `grad_fn` returns gradients
            whose structure or shapes differ from `params`.

    Examples:
        The guide's least-squares problem, $y = x$ on three points: after 1000
        steps at ``lr=0.01``, $\theta$ is still on its way to $(0, 1)$.

        >>> import numpy as np
        >>> import mlequations as mle
        >>> X = np.asarray([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
        >>> y = np.asarray([1.0, 2.0, 3.0])
        >>> grad = lambda theta: mle.least_squares_grad(theta, X, y)
        >>> mle.gradient_descent(grad, np.zeros(2), lr=0.01, steps=1000)
        array([0.11071521, 0.95129619])
        >>> mle.gradient_descent(grad, np.zeros(2), lr=0.01, steps=20000).round(8)
        array([0., 1.])

    References:
        Polyak, B. T. (1964). Some methods of speeding up the convergence of
        iteration methods. *USSR Computational Mathematics and Mathematical
        Physics*, 4(5), 1-17.
    """
    if not callable(grad_fn):
        raise TypeError(f"`grad_fn` must be callable, got {type(grad_fn).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative int, got {steps!r}")
    lr = _check_number(lr, "lr")
    mu = _check_number(momentum, "momentum", below=1.0)
    if tol is not None:
        tol = _check_number(tol, "tol")
    if callback is not None and not callable(callback):
        raise TypeError(f"`callback` must be callable or None, got {type(callback).__name__}")
    xp, theta = _prepare_params(params)
    velocity = _tree_map(xp.zeros_like, theta) if mu != 0 else None

    def step(state: tuple[Params, Any]) -> tuple[Params, Any, Params]:
        theta, velocity = state
        grads = grad_fn(theta)
        _check_like(grads, theta, "grad_fn(params)", "params")
        # A gradient in another dtype (a float64 constant in grad_fn) must not promote theta.
        grads = _tree_map(lambda g, p: xp.astype(g, p.dtype, copy=False), grads, theta)
        # mu is a Python float: with mu = 0 the velocity is the gradient, with no extra ops
        velocity = (
            grads if mu == 0 else _tree_map(lambda v, g: _array(xp, mu * v + g), velocity, grads)
        )
        update = _tree_map(lambda v: lr * v, velocity)
        return _tree_map(lambda p, u: _array(xp, p - u), theta, update), velocity, update

    if tol is None and callback is None:
        # The traceable mode: one traced step under JAX (not `steps` unrolled ones).
        def traced(state: tuple[Params, Any]) -> tuple[Params, Any]:
            theta, velocity, _ = step(state)
            return theta, None if mu == 0 else velocity  # the carry keeps its structure

        theta, _ = repeat(steps, traced, (theta, velocity), xp)
        return theta
    for k in range(1, steps + 1):
        theta, velocity, update = step((theta, velocity))
        if callback is not None:
            callback(k, theta)
        if tol is not None and float(_norm(update, xp)) <= tol:  # eager by design
            break
    return theta


def _norm(tree: Params, xp: Namespace) -> Array:
    """Euclidean norm over every array of `tree`, accumulated in at least float32."""
    total = None
    for _, leaf in _named_leaves(tree, "update"):
        leaf = xp.astype(leaf, compute_dtype(xp, leaf.dtype), copy=False)
        part = xp.sum(leaf * leaf)
        total = part if total is None else total + xp.astype(part, total.dtype, copy=False)
    return xp.sqrt(total)


def least_squares_grad(
    theta: Array, x: Array, y: Array, /, *, xp: Namespace | None = None
) -> Array:
    r"""Gradient of the least-squares loss of a linear model.

    $$
    L(\theta) = \frac{1}{2m} \lVert X\theta - y \rVert_2^2, \qquad
    \nabla L(\theta) = \frac{1}{m} X^\top (X\theta - y),
    $$

    for $m$ samples (the rows of $X$). Its zero is the least-squares solution,
    the fixed point of :func:`gradient_descent`. With no samples ($m = 0$) the
    sum is empty and the gradient is 0, as torch autograd gives for a mean over
    no samples (the loss itself is NaN there); no 0 / 0 is formed.

    Args:
        theta: Parameters, shape `(D,)` (or `(D, K)` for $K$ targets at once).
        x: Design matrix $X$, shape `(N, D)`; integers are promoted.
        y: Targets, shape `(N,)` (or `(N, K)`).
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        The gradient, shape of `theta`, in the floating result dtype of the
        inputs and on their device (half precision is computed in float32).

    Raises:
        ValueError: The shapes do not fit together (the message names the
            argument and the shapes).

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> X = np.asarray([[1, 1], [1, 2], [1, 3]])
        >>> y = np.asarray([1, 2, 3])
        >>> mle.least_squares_grad(np.zeros(2), X, y)
        array([-2.        , -4.66666667])

        At the least-squares solution $\theta = (0, 1)$ the gradient vanishes:

        >>> mle.least_squares_grad(np.asarray([0.0, 1.0]), X, y)
        array([0., 0.])
    """
    xp = namespace(theta=theta, x=x, y=y, xp=xp)
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape (N, D), got {tuple(x.shape)}")
    n, d = x.shape
    if theta.ndim not in (1, 2) or theta.shape[0] != d:
        raise ValueError(
            f"`theta` must have shape ({d},) or ({d}, K) to fit `x` of shape {tuple(x.shape)}, "
            f"got {tuple(theta.shape)}"
        )
    if y.ndim != theta.ndim or y.shape[0] != n or tuple(y.shape[1:]) != tuple(theta.shape[1:]):
        expected = (n, *theta.shape[1:])
        raise ValueError(
            f"`y` must have shape {expected} to fit `x` {tuple(x.shape)} and `theta` "
            f"{tuple(theta.shape)}, got {tuple(y.shape)}"
        )
    out_dtype, work = float_dtypes(xp, theta=theta, x=x, y=y)
    X, theta, y = (xp.astype(a, work, copy=False) for a in (x, theta, y))
    residual = xp.matmul(X, theta) - y  # (N,) or (N, K)
    # N = 0: the sum is empty (0) and so is the gradient, as torch autograd gives for the
    # mean over no samples; dividing by max(N, 1) avoids forming 0 / 0.
    grad = xp.matmul(xp.matrix_transpose(X), residual) / max(n, 1)  # (D,) or (D, K)
    return xp.astype(grad, out_dtype, copy=False)


# -- optax-style optimisers ----------------------------------------------------------------
class Optimizer(NamedTuple):
    """A pure optimiser: ``state = init(params)``; ``params, state = update(params, grads, state)``.

    Both functions are pure (they return new arrays and never modify their
    arguments), so a training step that calls them traces under ``jax.jit``.
    """

    init: Callable[[Params], Any]
    update: Callable[[Params, Params, Any], tuple[Params, Any]]


class SGDState(NamedTuple):
    """Plain SGD keeps no state."""


class MomentumState(NamedTuple):
    """The momentum buffer $b$, in the structure of the parameters."""

    momentum_buffer: Params


class AdamState(NamedTuple):
    """Adam's step count $t$ and moment estimates $m$, $v$, per parameter array.

    `step` holds one 0-d array per parameter array (as ``torch.optim.Adam``
    keeps one ``step`` per parameter), made with that parameter's compute
    dtype and device, so the state traces under ``jax.jit``.
    """

    step: Params
    exp_avg: Params
    exp_avg_sq: Params


def _prepare_update(params: Params, grads: Params) -> tuple[Namespace, Params, Params]:
    xp, params = _prepare_params(params)
    _check_like(grads, params, "grads", "params")
    xp = namespace(**dict(_named_leaves(params, "params")), **dict(_named_leaves(grads, "grads")))
    return xp, params, grads


def _in_compute_dtype(xp: Namespace, a: Array, like: Array) -> Array:
    return xp.astype(a, compute_dtype(xp, like.dtype), copy=False)


def sgd(lr: float) -> Optimizer:
    r"""Stochastic gradient descent, as ``torch.optim.SGD(params, lr)``.

    $$
    \theta_{t} = \theta_{t-1} - \eta\, g_t .
    $$

    Args:
        lr: Learning rate $\eta \ge 0$.

    Returns:
        An :class:`Optimizer`; its state is an empty :class:`SGDState`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> opt = mle.sgd(0.1)
        >>> params = np.asarray([1.0, -2.0])
        >>> state = opt.init(params)
        >>> params, state = opt.update(params, np.asarray([0.5, 0.5]), state)
        >>> params
        array([ 0.95, -2.05])
    """
    eta = _check_number(lr, "lr")

    def init(params: Params) -> SGDState:
        _prepare_params(params)
        return SGDState()

    def update(params: Params, grads: Params, state: SGDState) -> tuple[Params, SGDState]:
        xp, params, grads = _prepare_update(params, grads)

        def step(p: Array, g: Array) -> Array:
            g = _in_compute_dtype(xp, g, p)
            new = _in_compute_dtype(xp, p, p) - eta * g
            return _array(xp, xp.astype(new, p.dtype, copy=False))

        return _tree_map(step, params, grads), state

    return Optimizer(init, update)


def momentum(lr: float, beta: float = 0.9, nesterov: bool = False) -> Optimizer:
    r"""SGD with (Nesterov) momentum, as ``torch.optim.SGD(lr, momentum=beta, nesterov=...)``.

    $$
    b_t = \beta\, b_{t-1} + g_t, \quad b_0 = 0; \qquad
    \theta_t = \theta_{t-1} - \eta
    \begin{cases} b_t & \text{(heavy ball)} \\ g_t + \beta\, b_t & \text{(Nesterov)} \end{cases}
    $$

    This is torch's form (no dampening): starting from $b_0 = 0$ gives its
    first buffer $b_1 = g_1$ exactly. (Sutskever et al. write the velocity as
    $v_t = \beta v_{t-1} - \eta g_t$; the two coincide for a constant $\eta$.)
    The buffer is kept in float32 for half-precision parameters.

    Args:
        lr: Learning rate $\eta \ge 0$.
        beta: Momentum $\beta \in [0, 1)$.
        nesterov: Use Nesterov's look-ahead gradient.

    Returns:
        An :class:`Optimizer` whose state is a :class:`MomentumState`.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> opt = mle.momentum(0.1, beta=0.9)
        >>> params = np.asarray([1.0])
        >>> state = opt.init(params)
        >>> for _ in range(2):  # the same gradient twice: the second step is 1.9x longer
        ...     params, state = opt.update(params, np.asarray([1.0]), state)
        >>> params
        array([0.71])

    References:
        Sutskever, I., Martens, J., Dahl, G., & Hinton, G. (2013). On the
        importance of initialization and momentum in deep learning. *ICML*.
    """
    eta = _check_number(lr, "lr")
    mu = _check_number(beta, "beta", below=1.0)
    if not isinstance(nesterov, bool):
        raise TypeError(f"`nesterov` must be a bool, got {type(nesterov).__name__}")

    def init(params: Params) -> MomentumState:
        xp, params = _prepare_params(params)
        return MomentumState(
            _tree_map(lambda p: xp.zeros_like(_in_compute_dtype(xp, p, p)), params)
        )

    def update(params: Params, grads: Params, state: MomentumState) -> tuple[Params, MomentumState]:
        xp, params, grads = _prepare_update(params, grads)
        _check_like(state.momentum_buffer, params, "state.momentum_buffer", "params")

        def buffer(b: Array, g: Array, p: Array) -> Array:
            return _array(xp, b * mu + _in_compute_dtype(xp, g, p))

        bufs = _tree_map(buffer, state.momentum_buffer, grads, params)

        def step(p: Array, g: Array, b: Array) -> Array:
            direction = _in_compute_dtype(xp, g, p) + mu * b if nesterov else b
            new = _in_compute_dtype(xp, p, p) - eta * direction
            return _array(xp, xp.astype(new, p.dtype, copy=False))

        return _tree_map(step, params, grads, bufs), MomentumState(bufs)

    return Optimizer(init, update)


def adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    r"""Adam, as ``torch.optim.Adam(params, lr, betas=(b1, b2), eps=eps)``.

    $$
    \begin{aligned}
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, &
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2, \\
    \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}\,
      \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}, &
    m_0 &= v_0 = 0 .
    \end{aligned}
    $$

    The bias corrections are applied exactly where torch applies them: $\epsilon$
    is added to $\sqrt{\hat v_t}$ *after* dividing by $\sqrt{1 - \beta_2^t}$ (the
    paper's $\hat m_t / (\sqrt{\hat v_t} + \epsilon)$), and the first moment is
    updated as torch's ``lerp``, $m_{t-1} + (1 - \beta_1)(g_t - m_{t-1})$. The
    step count $t$ is a 0-d array, so a jitted step does not recompile as $t$
    grows. The moments and $t$ are kept in float32 for half-precision
    parameters (a float16 $\epsilon = 10^{-8}$ would be 0). With ``eps=0`` a
    coordinate whose gradients have all been 0 ($\hat v_t = 0$) does not move
    (torch forms 0 / 0 = NaN there). Parameters of any shape work, 0-d and
    size 0 included; the second moment $g^2$ is beyond float32's range for
    $|g| > 1.8 \cdot 10^{19}$, as in torch.

    Args:
        lr: Learning rate $\eta \ge 0$.
        b1: Decay $\beta_1 \in [0, 1)$ of the first moment.
        b2: Decay $\beta_2 \in [0, 1)$ of the second moment.
        eps: $\epsilon \ge 0$, added to the denominator.

    Returns:
        An :class:`Optimizer` whose state is an :class:`AdamState`.

    Examples:
        Adam's first step moves every coordinate by about `lr`, whatever the
        gradient's scale:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> opt = mle.adam(0.1)
        >>> params = np.asarray([1.0, 1.0])
        >>> state = opt.init(params)
        >>> params, state = opt.update(params, np.asarray([1e-3, 1e3]), state)
        >>> params
        array([0.900001, 0.9     ])

    References:
        Kingma, D. P., & Ba, J. (2015). Adam: A method for stochastic
        optimization. *ICLR*.
    """
    eta = _check_number(lr, "lr")
    beta1 = _check_number(b1, "b1", below=1.0)
    beta2 = _check_number(b2, "b2", below=1.0)
    epsilon = _check_number(eps, "eps")

    def init(params: Params) -> AdamState:
        xp, params = _prepare_params(params)

        def zeros(p: Array) -> Array:
            return xp.zeros_like(_in_compute_dtype(xp, p, p))

        step = _tree_map(lambda p: scalar(0.0, zeros(p), xp=xp), params)
        return AdamState(step, _tree_map(zeros, params), _tree_map(zeros, params))

    def update(params: Params, grads: Params, state: AdamState) -> tuple[Params, AdamState]:
        xp, params, grads = _prepare_update(params, grads)
        _check_like(state.exp_avg, params, "state.exp_avg", "params")
        _check_like(state.exp_avg_sq, params, "state.exp_avg_sq", "params")
        steps = _tree_map(lambda t: _array(xp, t + 1), state.step)  # 0-d each
        # torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2)
        exp_avg = _tree_map(
            lambda m, g, p: _array(xp, m + (1 - beta1) * (_in_compute_dtype(xp, g, p) - m)),
            state.exp_avg,
            grads,
            params,
        )

        def second(v: Array, g: Array, p: Array) -> Array:
            g = _in_compute_dtype(xp, g, p)
            return _array(xp, v * beta2 + (1 - beta2) * (g * g))

        exp_avg_sq = _tree_map(second, state.exp_avg_sq, grads, params)

        def step(p: Array, t: Array, m: Array, v: Array) -> Array:
            step_size = eta / (1 - beta1**t)  # 0-d
            denom = xp.sqrt(v) / xp.sqrt(1 - beta2**t) + epsilon
            # With eps = 0 a coordinate that has only seen zero gradients has m = v = 0:
            # it does not move (torch gives 0 / 0 = NaN). Double where: no 0 / 0 is formed.
            moving = denom > 0
            ratio = xp.where(moving, m / xp.where(moving, denom, xp.ones_like(denom)), 0 * m)
            new = _in_compute_dtype(xp, p, p) - step_size * ratio
            return _array(xp, xp.astype(new, p.dtype, copy=False))

        new_params = _tree_map(step, params, steps, exp_avg, exp_avg_sq)
        return new_params, AdamState(steps, exp_avg, exp_avg_sq)

    return Optimizer(init, update)
