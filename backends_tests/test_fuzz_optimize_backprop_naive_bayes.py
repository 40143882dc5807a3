"""Property-based fuzzing of the optimisers, backpropagation and Gaussian naive Bayes.

The same method as ``test_fuzz.py`` (see its docstring; toolkit in ``_fuzz.py``),
with drawn *shapes* for every public function of ``optimize.py``, ``backprop.py``
and ``naive_bayes.py``: batches of 0 rows, 1 feature, 1 class, 0-d parameters,
layers of width 0 and 1. Each example runs through ``backend.call`` (traced under
``jax.jit``, lazy on Dask, read-only inputs on ``numpy-readonly``) and is compared
with an independent float64 oracle computed from the inputs *as rounded to the
dtype*: ``torch.optim`` for ``sgd``/``momentum``/``adam``, torch autograd for the
MLP, scikit-learn's ``GaussianNB`` for the classifier, plain NumPy for the rest.

Tolerances follow the conditioning of each computation: the error a float of the
compute dtype (float32 for half precision) may make is scaled by the magnitude of
the terms summed (``|X| |θ|``, the absolute-value network of the MLP, the size of
the joint log-likelihood), never by a constant picked to pass. Values are drawn
within the range where the float64 result is representable in the dtype, so that
"overflow to ±inf" (IEEE, not a finding) is not confused with a wrong answer.

Invariants: an optimiser step with a zero gradient (or ``lr=0``) leaves the
parameters unchanged, bit for bit; ``predict_proba`` rows lie in [0, 1] and sum
to 1; ``predict_log_proba`` ≤ 0. Size-0 axes give the documented result: empty
arrays, zero gradients for the mean over no samples (torch autograd's), a NaN loss
for the mean of nothing (torch's), or a ``ValueError`` naming the argument where no
estimate exists (``GaussianNaiveBayes.fit`` with no samples, features or classes).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume
from hypothesis import strategies as st

import mlequations as mle
from mlequations._registry import tolerance

from ._fuzz import (
    HUGE,
    NONFINITE,
    NP_DTYPES,
    OVERFLOW_IS_NOT_A_FINDING,
    SPECIAL,
    TINY,
    arrays,
    check_meta,
    dtype_names,
    expect,
    finite,
    fuzz,
    out_dtype_name,
    reference,
    run,
    shapes,
    to_backend,
    values_of,
)
from ._libs import torch_or_skip

pytestmark = OVERFLOW_IS_NOT_A_FINDING

# Largest magnitude a drawn value may have in each dtype, so that the sums and
# products each function forms stay within the dtype's range (integers: clipped).
LIMIT = {"float16": 60.0, "bfloat16": 60.0, "float32": 1e15, "float64": 1e120, "int64": 100.0}


def bounded(dtype: str, *, nonfinite: bool = False, low: float = -20.0, high: float = 20.0):
    """Moderate floats plus the extremes (zeros, denormals, huge) that fit `dtype`."""
    limit = LIMIT[dtype]
    pool = [v for v in SPECIAL + TINY + HUGE if abs(v) <= limit]
    options = [st.floats(max(low, -limit), min(high, limit)), st.sampled_from(pool)]
    if nonfinite:
        options.append(st.sampled_from(NONFINITE))
    return st.one_of(*options)


def work_rtol(backend, dtype: str) -> float:
    """The rounding a computation makes, in the dtype it computes in (half: float32)."""
    out = out_dtype_name(backend, dtype)
    return tolerance("float32" if "16" in out else out)[0]


def absmax(*arrays_: np.ndarray) -> float:
    """The largest finite magnitude among the arrays (0 if none)."""
    parts = [np.abs(np.asarray(a, dtype=np.float64)) for a in arrays_]
    return max([float(np.max(p[np.isfinite(p)], initial=0.0)) for p in parts] + [0.0])


# == optimize ===============================================================================


def test_least_squares_grad(backend):
    """(1/m) Xᵀ(Xθ − y) for any N (0 included), D, K; ints promoted; NaN/inf propagate."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        n, d = data.draw(st.integers(0, 4), label="N"), data.draw(st.integers(0, 3), label="D")
        k = data.draw(st.sampled_from([(), (0,), (1,), (2,)]), label="K")
        nonfinite = data.draw(st.booleans(), label="nonfinite")
        values = bounded(dtype, nonfinite=nonfinite)
        theta = data.draw(arrays((d, *k), values), label="theta")
        x = data.draw(arrays((n, d), values), label="x")
        y = data.draw(arrays((n, *k), values), label="y")
        (tb, tr), (xb, xr), (yb, yr) = (to_backend(backend, a, dtype) for a in (theta, x, y))
        out = run(backend, mle.least_squares_grad, tb, xb, yb, quiet=not finite(tr, xr, yr))
        expected = reference(lambda t, a, b: a.T @ (a @ t - b) / max(n, 1), tr, xr, yr)
        if not finite(tr, xr, yr, expected):
            check_meta(out, backend, dtype, [expected.shape])
            return
        # Each entry sums N * (D + 1) products of at most max|x| (max|x| max|θ| + max|y|).
        scale = absmax(xr) * (d * absmax(xr) * absmax(tr) + absmax(yr)) * (d + 1)
        expect(out, expected, backend, dtype, atol=4 * work_rtol(backend, dtype) * scale)
        if n == 0 and backend.values:
            assert not np.isnan(values_of(backend, out)).any(), "NaN for no samples"


def _descend(*arrays_: Any, leaves: int, lr: float, steps: int, momentum: float) -> Any:
    """gradient_descent on the quadratic with gradient a ⊙ θ − b, one pair per leaf."""
    thetas, a, b = arrays_[:leaves], arrays_[leaves : 2 * leaves], arrays_[2 * leaves :]

    def grad_fn(params):
        params = params if leaves > 1 else (params,)
        grads = tuple(ai * p - bi for ai, p, bi in zip(a, params, b, strict=True))
        return grads if leaves > 1 else grads[0]

    start = thetas if leaves > 1 else thetas[0]
    return mle.gradient_descent(grad_fn, start, lr=lr, steps=steps, momentum=momentum)


def _np_descend(*arrays_, leaves, lr, steps, momentum):
    thetas, a, b = arrays_[:leaves], arrays_[leaves : 2 * leaves], arrays_[2 * leaves :]
    out, largest = [], 0.0
    for theta, ai, bi in zip(thetas, a, b, strict=True):
        velocity = np.zeros_like(theta)
        for _ in range(steps):
            velocity = momentum * velocity + (ai * theta - bi)
            theta = theta - lr * velocity
            largest = max(largest, absmax(theta, ai * theta, bi, velocity))
        out.append(theta)
    return tuple(out), largest


def test_gradient_descent(backend):
    """Any parameter shapes (0-d, size 0), 1 or 2 arrays, with and without momentum.

    With a zero gradient, or ``lr=0``, the parameters come back unchanged."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        out_dtype = out_dtype_name(backend, dtype)
        leaves = data.draw(st.integers(1, 2), label="leaves")
        steps = data.draw(st.sampled_from([0, 1, 3]), label="steps")
        lr = data.draw(st.sampled_from([0.0, 0.01, 0.1]), label="lr")
        momentum = data.draw(st.sampled_from([0.0, 0.5]), label="momentum")
        zero = data.draw(st.booleans(), label="zero gradient")
        shapes_ = [data.draw(shapes(min_dims=0, max_dims=2), label="shape") for _ in range(leaves)]
        # a in [0, 2] and lr <= 0.1 keep every step a contraction: no drawn overflow.
        limit = LIMIT[dtype] / 8
        thetas = [data.draw(arrays(s, bounded(dtype, low=-limit, high=limit))) for s in shapes_]
        a = [data.draw(arrays(s, st.floats(0.0, 2.0) | st.just(0.0))) for s in shapes_]
        b = [data.draw(arrays(s, bounded(dtype, low=-limit, high=limit))) for s in shapes_]
        if zero:
            a, b = [np.zeros(s) for s in shapes_], [np.zeros(s) for s in shapes_]
        # The user's gradient is computed in the parameters' (promoted) dtype.
        thetas = [to_backend(backend, t, dtype) for t in thetas]
        a = [to_backend(backend, ai, out_dtype) for ai in a]
        b = [to_backend(backend, bi, out_dtype) for bi in b]
        args = [x for x, _ in thetas + a + b]
        refs = [r for _, r in thetas + a + b]
        options = {"leaves": leaves, "lr": lr, "steps": steps, "momentum": momentum}
        out = run(backend, _descend, *args, **options)
        expected, largest = reference(_np_descend, *refs, **options)
        expected = expected if leaves > 1 else expected[0]
        if zero or lr == 0.0 or steps == 0:
            # Unchanged, bit for bit (the promoted start is exact: ints are clipped to 100).
            expect(out, [r for _, r in thetas], backend, dtype, rtol=0.0, atol=0.0)
            return
        atol = 4 * (steps + 1) * tolerance(out_dtype)[0] * max(largest, 1e-300)
        expect(out, expected, backend, dtype, atol=atol)


OPTIMISERS = {
    "sgd": {"lr": [0.1, 1.0]},
    "momentum": {"lr": [0.1], "beta": [0.5, 0.9], "nesterov": [False, True]},
    "adam": {"lr": [0.1, 1e-3], "b1": [0.9, 0.0], "b2": [0.999, 0.5], "eps": [1e-8, 1e-3]},
}


def _optimise(*arrays_: Any, name: str, leaves: int, hyper: tuple) -> Any:
    """`steps` updates of optimiser `name`: params, then one gradient per param per step."""
    opt = getattr(mle, name)(**dict(hyper))
    params = tuple(arrays_[:leaves])
    state = opt.init(params)
    for k in range(leaves, len(arrays_), leaves):
        params, state = opt.update(params, tuple(arrays_[k : k + leaves]), state)
    return params


def _torch_optimise(*arrays_: np.ndarray, name: str, leaves: int, hyper: tuple) -> Any:
    """The oracle: ``torch.optim`` in float64 on the CPU."""
    torch = torch_or_skip()
    params = [torch.tensor(a, dtype=torch.float64) for a in arrays_[:leaves]]
    h = dict(hyper)
    if name == "adam":
        betas = (h.get("b1", 0.9), h.get("b2", 0.999))
        opt = torch.optim.Adam(params, lr=h["lr"], betas=betas, eps=h.get("eps", 1e-8))
    else:
        opt = torch.optim.SGD(
            params,
            lr=h["lr"],
            momentum=h.get("beta", 0.9) if name == "momentum" else 0.0,  # mle's defaults
            nesterov=h.get("nesterov", False),
        )
    for k in range(leaves, len(arrays_), leaves):
        for p, g in zip(params, arrays_[k : k + leaves], strict=True):
            p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return tuple(p.detach().numpy() for p in params)


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_optimiser(backend, name):
    """sgd / momentum / adam step for step equal to ``torch.optim`` in float64, for
    parameters of any shape (0-d and size 0 included) and gradients with zeros, tiny
    and huge entries; a zero gradient leaves the parameters unchanged."""

    @fuzz(backend, st.data(), scale=0.7)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        out_dtype = out_dtype_name(backend, dtype)
        leaves = data.draw(st.integers(1, 2), label="leaves")
        steps = data.draw(st.integers(1, 3), label="steps")
        hyper = tuple(
            (key, data.draw(st.sampled_from(choices), label=key))
            for key, choices in OPTIMISERS[name].items()
        )
        zero = data.draw(st.booleans(), label="zero gradient")
        shapes_ = [data.draw(shapes(min_dims=0, max_dims=2), label="shape") for _ in range(leaves)]
        # Adam squares the gradient: it must fit the compute dtype (float32 for half).
        limit = min(LIMIT[dtype], 1e15 if dtype != "float64" else LIMIT[dtype])
        values = bounded(dtype, low=-limit, high=limit)
        params = [data.draw(arrays(s, values), label="params") for s in shapes_]
        grads = [
            np.zeros(s) if zero else data.draw(arrays(s, values), label="grad")
            for _ in range(steps)
            for s in shapes_
        ]
        converted = [to_backend(backend, a, dtype) for a in params + grads]
        options = {"name": name, "leaves": leaves, "hyper": hyper}
        out = run(backend, _optimise, *(b for b, _ in converted), **options)
        rounded_params = [r for _, r in converted[:leaves]]
        if zero:
            expect(out, rounded_params, backend, dtype, rtol=0.0, atol=0.0)
            return
        expected = reference(_torch_optimise, *(r for _, r in converted), **options)
        h = dict(hyper)
        # sgd/momentum move by at most lr * (sum of |g|) per step; adam by about lr.
        moved = h["lr"] * steps * (1 if name == "adam" else 2 * absmax(*(r for _, r in converted)))
        scale = max(absmax(*rounded_params), moved)
        # Adam divides by sqrt(v) + eps: where |g| is near eps the quotient is
        # sensitive to the rounding of g (relative error ~ rtol).
        expect(out, expected, backend, dtype, atol=8 * tolerance(out_dtype)[0] * scale)

    if name == "adam":
        _adam_zero_gradient_with_eps_0(backend)


def _adam_zero_gradient_with_eps_0(backend):
    @fuzz(backend, st.data(), scale=0.5)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        shape = data.draw(shapes(min_dims=0, max_dims=2), label="shape")
        params = data.draw(arrays(shape, bounded(dtype)), label="params")
        pb, pr = to_backend(backend, params, dtype)
        zeros = backend.asarray(np.zeros(shape), dtype)
        hyper = (("lr", 0.1), ("b1", 0.9), ("b2", 0.999), ("eps", 0.0))
        out = run(backend, _optimise, pb, zeros, zeros, name="adam", leaves=1, hyper=hyper)
        expect(out, [pr], backend, dtype, rtol=0.0, atol=0.0)


def test_regression_adam_zero_gradient_without_eps(backend):
    """Found by fuzzing: ``adam(0.1, eps=0.0)`` given a zero gradient returned NaN
    parameters: m̂ / (√v̂ + ε) was 0 / 0. (``torch.optim.Adam(eps=0)`` gives NaN too.)
    A coordinate that has only ever seen zero gradients now does not move."""
    opt = mle.adam(0.1, eps=0.0)
    params = backend.asarray(np.asarray([1.0, -2.0]), "float32")
    grads = backend.asarray(np.asarray([0.0, 3.0]), "float32")

    def two_steps(p, g):
        state = opt.init(p)
        p, state = opt.update(p, g, state)
        return opt.update(p, g, state)[0]

    out = run(backend, two_steps, params, grads)
    # coordinate 1: Adam's first steps are lr each, whatever the gradient's scale.
    expect(out, np.asarray([1.0, -2.2]), backend, "float32")


# == backprop ===============================================================================


@st.composite
def linear_shapes(draw):
    batch = draw(shapes(min_dims=0, max_dims=2, max_side=3))
    return batch, draw(st.integers(0, 3)), draw(st.integers(0, 3))


def test_linear_forward(backend):
    """y = x Wᵀ + b for any batch shape (none, size 0), D_in and D_out in 0..3."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        batch, d_in, d_out = data.draw(linear_shapes(), label="batch, D_in, D_out")
        nonfinite = data.draw(st.booleans(), label="nonfinite")
        values = bounded(dtype, nonfinite=nonfinite)
        x = data.draw(arrays((*batch, d_in), values), label="x")
        w = data.draw(arrays((d_out, d_in), values), label="w")
        bias = data.draw(st.none() | arrays((d_out,), values), label="b")
        inputs = [to_backend(backend, a, dtype) for a in (x, w) + (() if bias is None else (bias,))]
        rs = [r for _, r in inputs]
        out = run(backend, mle.linear_forward, *(b for b, _ in inputs), quiet=not finite(*rs))
        expected = reference(lambda x, w, b=0.0: x @ w.T + b, *rs)
        if not finite(*rs, expected):
            check_meta(out, backend, dtype, [expected.shape])
            return
        scale = (d_in + 1) * (absmax(rs[0]) * absmax(rs[1]) + absmax(*rs[2:]))
        expect(out, expected, backend, dtype, atol=4 * work_rtol(backend, dtype) * scale)


def test_linear_backward(backend):
    """dx = δ W, dW = Σ δᵀ x, db = Σ δ for any batch shape (none, size 0), widths 0..3."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        batch, d_in, d_out = data.draw(linear_shapes(), label="batch, D_in, D_out")
        values = bounded(dtype)
        dy = data.draw(arrays((*batch, d_out), values), label="dy")
        x = data.draw(arrays((*batch, d_in), values), label="x")
        w = data.draw(arrays((d_out, d_in), values), label="w")
        converted = [to_backend(backend, a, dtype) for a in (dy, x, w)]
        dyr, xr, wr = (r for _, r in converted)
        out = run(backend, mle.linear_backward, *(b for b, _ in converted))
        n = math.prod(batch)
        dy2, x2 = dyr.reshape(n, d_out), xr.reshape(n, d_in)
        expected = reference(lambda: (dyr @ wr, dy2.T @ x2, dy2.sum(axis=0)))
        if not finite(*expected):
            check_meta(out, backend, dtype, [e.shape for e in expected])
            return
        rtol = 4 * work_rtol(backend, dtype)
        for got, want, terms in zip(
            out,
            expected,
            (d_out * absmax(dyr) * absmax(wr), n * absmax(dyr) * absmax(xr), n * absmax(dyr)),
            strict=True,
        ):
            expect(got, want, backend, dtype, atol=rtol * terms)


def test_mse_backward(backend):
    """2 (ŷ − y) / n for any shape; the mean over no elements has an empty gradient."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        shape = data.draw(shapes(min_dims=0), label="shape")
        reduction = data.draw(st.sampled_from(["mean", "sum"]), label="reduction")
        nonfinite = data.draw(st.booleans(), label="nonfinite")
        pred = data.draw(arrays(shape, bounded(dtype, nonfinite=nonfinite)), label="pred")
        target = data.draw(arrays(shape, bounded(dtype)), label="target")
        (pb, pr), (tb, tr) = to_backend(backend, pred, dtype), to_backend(backend, target, dtype)
        out = run(backend, mle.mse_backward, pb, tb, reduction=reduction, quiet=not finite(pr))
        n = max(math.prod(shape), 1) if reduction == "mean" else 1
        expected = reference(lambda p, t: 2 * (p - t) / n, pr, tr)
        expect(out, expected, backend, dtype, atol=4 * work_rtol(backend, dtype) * absmax(pr, tr))


# -- the MLP against torch autograd ---------------------------------------------------------

ACTIVATIONS = ["tanh", "relu", "sigmoid", None]


def _torch_mlp(x, y, dy, *flat, hidden, last, lr):
    """Forward, autograd backward of ``sum(out * dy)``, and one SGD step on the MSE."""
    torch = torch_or_skip()
    act = {
        "tanh": torch.tanh,
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        None: lambda z: z,
    }
    params = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in flat]

    def forward():
        a = torch.tensor(x, dtype=torch.float64)
        for i in range(0, len(params), 2):
            a = act[last if i == len(params) - 2 else hidden](a @ params[i].T + params[i + 1])
        return a

    out = forward()
    grads = torch.autograd.grad((out * torch.tensor(dy)).sum(), params, allow_unused=True)
    loss = torch.nn.functional.mse_loss(forward(), torch.tensor(y))
    step = torch.autograd.grad(loss, params, allow_unused=True)
    new = [p.detach() - lr * g for p, g in zip(params, step, strict=True)]
    return (
        out.detach().numpy(),
        tuple(g.numpy() for g in grads),
        tuple(p.numpy() for p in new),
        loss.detach().numpy(),
    )


def _mlp(x, y, dy, *flat, hidden, last, lr):
    params = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
    options = {"activation": hidden, "output_activation": last}
    out, cache = mle.mlp_forward(params, x, **options)
    grads = mle.mlp_backward(params, cache, dy, **options)
    step = mle.mlp_train_step(params, x, y, lr=lr, **options)
    return (
        out,
        tuple(g for layer in grads for g in layer),
        tuple(p for layer in step.params for p in layer),
        step.loss,
    )


def _mlp_bounds(x, flat, dy, hidden, last):
    """Magnitudes of the absolute-value network: what each layer's sums add up.

    ``(forward, ambiguous)``: the largest sum of |terms| of any pre-activation, and
    whether a ReLU pre-activation lies within rounding of its kink at 0 (where the
    subgradient flips between 0 and 1: ambiguous below float64)."""
    a = np.abs(x)
    largest = absmax(a, dy)
    grad_scale = absmax(dy)
    ambiguous = False
    z_ref = x
    layers = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    for i, (w, b) in enumerate(layers):
        s = a @ np.abs(w).T + np.abs(b)  # sum of |terms| of each pre-activation
        z = z_ref @ w.T + b
        name = last if i == len(layers) - 1 else hidden
        if name == "relu":
            ambiguous |= bool(np.any((np.abs(z) <= 1e-3 * s) & (s > 0)))
        largest = max(largest, absmax(s))
        grad_scale = max(grad_scale, absmax(s) * max(1.0, absmax(w)))
        a = np.minimum(s, 1.0) if name in ("tanh", "sigmoid") else s
        z_ref = np.tanh(z) if name == "tanh" else z
    return largest, grad_scale, ambiguous


def test_mlp(backend):
    """mlp_forward, mlp_backward and mlp_train_step equal torch autograd in float64,
    for batches of 0, 1 and more rows (or none), widths 1..3, every activation."""

    @fuzz(backend, st.data(), scale=0.7)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        out_dtype = out_dtype_name(backend, dtype)
        sizes = data.draw(st.lists(st.integers(0, 3), min_size=2, max_size=3), label="sizes")
        batch = data.draw(st.sampled_from([(), (0,), (1,), (3,), (2, 2)]), label="batch")
        hidden = data.draw(st.sampled_from(ACTIVATIONS), label="activation")
        last = data.draw(st.sampled_from(ACTIVATIONS), label="output_activation")
        lr = data.draw(st.sampled_from([0.0, 0.1]), label="lr")
        x = data.draw(arrays((*batch, sizes[0]), bounded(dtype)), label="x")
        y = data.draw(arrays((*batch, sizes[-1]), bounded(dtype)), label="y")
        dy = data.draw(arrays((*batch, sizes[-1]), bounded(dtype)), label="dy")
        weights = st.floats(-2.0, 2.0) | st.sampled_from([0.0, 1e-30, 1.0])
        flat = []
        for d_in, d_out in itertools.pairwise(sizes):
            flat += [
                data.draw(arrays((d_out, d_in), weights)),
                data.draw(arrays((d_out,), weights)),
            ]
        converted = [to_backend(backend, a, dtype) for a in (x, y, dy, *flat)]
        rs = [r for _, r in converted]
        options = {"hidden": hidden, "last": last, "lr": lr}
        out = run(backend, _mlp, *(b for b, _ in converted), **options)
        expected = reference(_torch_mlp, *rs, **options)
        largest, grad_scale, ambiguous = _mlp_bounds(rs[0], rs[3:], rs[2], hidden, last)
        layers = len(sizes) - 1
        rtol = 8 * layers * max(sizes) * tolerance(out_dtype)[0]
        if not math.prod(batch):
            # The mean of no errors is NaN (torch's); the gradients of nothing are 0.
            assert np.isnan(expected[3])
        if ambiguous and out_dtype != "float64":
            check_meta(out[:2], backend, dtype, [expected[0].shape])
            expect(out[0], expected[0], backend, dtype, atol=rtol * largest)
            return
        expect(out[0], expected[0], backend, dtype, atol=rtol * largest)
        expect(out[1], expected[1], backend, dtype, atol=rtol * grad_scale * max(1, x.size))
        loss_scale = (largest + absmax(rs[1])) ** 2
        expect(out[3], expected[3], backend, dtype, atol=rtol * loss_scale)
        expect(
            out[2],
            expected[2],
            backend,
            dtype,
            atol=rtol * (absmax(*rs[3:]) + lr * grad_scale * (largest + absmax(rs[1]))),
        )
        if lr == 0.0:
            expect(out[2], rs[3:], backend, dtype, rtol=0.0, atol=0.0)


def test_mlp_init(backend):
    """`mlp_init` over drawn widths (1 to 3 layers of 1 to 5) and seeds (negative and
    beyond 64 bits included), in every dtype: ``torch.nn.Linear``'s shapes, every entry
    within ±1/√fan_in, and the same numbers as NumPy in float64, rounded to the dtype."""

    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        sizes = tuple(data.draw(st.lists(st.integers(1, 5), min_size=2, max_size=4), label="sizes"))
        seed = data.draw(
            st.one_of(st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 2**31 - 1, 2**32])),
            label="seed",
        )
        params = run(
            backend,
            lambda: mle.mlp_init(
                sizes,
                seed=seed,
                xp=backend.module,
                device=backend.device,
                dtype=backend.dtype(dtype),
            ),
        )
        reference = mle.mlp_init(sizes, seed=seed, xp=np, dtype=np.float64)
        for (w, b), (rw, rb), fan_in in zip(params, reference, sizes[:-1], strict=True):
            bound = 1 / math.sqrt(fan_in)
            assert np.abs(rw).max() <= bound
            assert np.abs(rb).max() <= bound
            expect((w, b), (rw, rb), backend, dtype)


def test_regression_linear_backward_with_an_empty_feature_axis(backend):
    """Found by fuzzing: ``linear_backward(dy, x, w)`` with ``D_in = 0`` (x of shape
    (4, 0), w of shape (2, 0)) or ``D_out = 0`` raised "cannot reshape array of size
    0 into shape (-1, 0)": -1 is ambiguous for an empty array. The batch is now
    flattened with its static size. dx is empty, dW is (2, 0), db sums dy."""
    dy = backend.asarray(np.asarray([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]), "float32")
    x = backend.asarray(np.zeros((4, 0)), "float32")
    w = backend.asarray(np.zeros((2, 0)), "float32")
    out = run(backend, mle.linear_backward, dy, x, w)
    expect(out, (np.zeros((4, 0)), np.zeros((2, 0)), np.asarray([16.0, 20.0])), backend, "float32")
    dy0 = backend.asarray(np.zeros((4, 0)), "float32")
    x3 = backend.asarray(np.ones((4, 3)), "float32")
    w0 = backend.asarray(np.zeros((0, 3)), "float32")
    out = run(backend, mle.linear_backward, dy0, x3, w0)
    expect(out, (np.zeros((4, 3)), np.zeros((0, 3)), np.zeros(0)), backend, "float32")


def test_regression_mean_over_no_samples(backend):
    """Found by fuzzing: ``least_squares_grad`` of 0 samples divided 0 / 0 (NaN and a
    NumPy warning), and ``mlp_train_step`` on a batch of 0 rows warned "Mean of empty
    slice". As torch autograd gives: the gradient of a mean over no samples is 0 (the
    parameters do not move) and the loss of no samples is NaN, now without a warning."""
    theta = backend.asarray(np.asarray([1.0, 2.0]), "float32")
    x = backend.asarray(np.zeros((0, 2)), "float32")
    y = backend.asarray(np.zeros((0,)), "float32")
    expect(run(backend, mle.least_squares_grad, theta, x, y), np.zeros(2), backend, "float32")
    w = np.asarray([[0.5, -1.0]])
    params = ((backend.asarray(w, "float32"), backend.asarray(np.asarray([0.25]), "float32")),)
    step = run(
        backend, mle.mlp_train_step, params, x, backend.asarray(np.zeros((0, 1)), "float32"), lr=0.1
    )
    expect(step.loss, np.nan, backend, "float32")
    expect(step.params[0], (w, np.asarray([0.25])), backend, "float32", rtol=0.0, atol=0.0)


# == Gaussian naive Bayes ===================================================================


def _nb(X, y, classes, Xq, yq, *, var_smoothing, priors):
    model = mle.GaussianNaiveBayes(var_smoothing=var_smoothing, priors=priors)
    model.fit(X, y, classes=classes)
    fitted = (model.theta_, model.var_, model.class_prior_, model.class_count_, model.epsilon_)
    return fitted, (
        model.predict_joint_log_proba(Xq),
        model.predict_log_proba(Xq),
        model.predict_proba(Xq),
        model.predict(Xq),
        model.score(Xq, yq),
    )


def _sklearn(X, y, n_classes, *, var_smoothing, priors):
    from sklearn.naive_bayes import GaussianNB

    model = GaussianNB(var_smoothing=var_smoothing, priors=priors)
    # partial_fit with the classes given: classes without samples are kept (count 0).
    return model.partial_fit(X, y, classes=np.arange(n_classes))


def _jll(Xq, theta, var, prior):
    """The joint log-likelihood from given (read-back) attributes, in float64."""
    with np.errstate(divide="ignore"):
        log_prior = np.log(prior)
    diff = Xq[:, None, :] - theta[None]
    return (
        log_prior
        - 0.5 * np.sum(np.log(2 * np.pi * var), axis=1)
        - 0.5 * np.sum(diff * diff / var, axis=2)
    )


def test_gaussian_naive_bayes(backend):
    """fit then every predict method, classes given (traceable, lazy), against
    scikit-learn's GaussianNB in float64: N in 2..6, D in 1..3, C in 1..3 (classes
    with no sample included), drawn var_smoothing and priors. predict_proba rows lie
    in [0, 1] and sum to 1; predict_log_proba ≤ 0; queries of 0 rows give (0, C)."""

    @fuzz(backend, st.data(), scale=0.7)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend, integer=True)), label="dtype")
        out_dtype = out_dtype_name(backend, dtype)
        n, d = data.draw(st.integers(2, 6), label="N"), data.draw(st.integers(1, 3), label="D")
        c = data.draw(st.integers(1, 3), label="C")
        m = data.draw(st.integers(0, 3), label="N query")
        half = "16" in out_dtype
        # A float16 var_ must hold var_smoothing * max variance: not below ~1e-4 there.
        smoothing = data.draw(st.sampled_from([1e-2, 0.1] if half else [1e-9, 1e-3]), "smooth")
        priors = data.draw(st.none() | st.just([1.0 / c] * c), label="priors")
        nonfinite = data.draw(st.booleans(), label="nonfinite")
        values = bounded(dtype, nonfinite=nonfinite)
        X = data.draw(arrays((n, d), values), label="X")
        Xq = data.draw(arrays((m, d), values), label="X query")
        y = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), np.int64)
        yq = np.asarray(
            data.draw(st.lists(st.integers(0, c - 1), min_size=m, max_size=m)), np.int64
        )
        (Xb, Xr), (Xqb, Xqr) = to_backend(backend, X, dtype), to_backend(backend, Xq, dtype)
        labels = [backend.asarray(a) for a in (y, np.arange(c), yq)]
        options = {"var_smoothing": smoothing, "priors": priors}
        quiet = not finite(Xr, Xqr)
        # Every feature constant (var_smoothing * max variance = 0, or below what the
        # dtype holds): the Gaussians are degenerate (variance 0) and the posterior is
        # NaN, as in scikit-learn (documented), so such draws are not compared.
        floor = 1e3 * float(
            ml_dtypes.finfo(NP_DTYPES["float32" if half else out_dtype]).smallest_normal
        )
        if half:
            floor = max(floor, 1e3 * float(ml_dtypes.finfo(NP_DTYPES[out_dtype]).smallest_normal))
        assume(quiet or smoothing * float(np.max(reference(np.var, Xr, axis=0))) > floor)
        fitted, predicted = run(
            backend, _nb, Xb, labels[0], labels[1], Xqb, labels[2], quiet=quiet, **options
        )
        if quiet:
            check_meta(fitted[:2] + predicted[:3], backend, dtype, [(c, d)] * 2 + [(m, c)] * 3)
            return
        oracle = reference(_sklearn, Xr, y, c, **options)
        rtol = work_rtol(backend, dtype)
        big = absmax(Xr)
        expect(fitted[0], oracle.theta_, backend, dtype, atol=4 * rtol * big)
        expect(
            fitted[1],
            oracle.var_,
            backend,
            dtype,
            rtol=8 * rtol + tolerance(out_dtype)[0],
            atol=8 * rtol * big * big,
        )
        expect(fitted[2], oracle.class_prior_, backend, dtype)
        expect(fitted[3], oracle.class_count_, backend, dtype, rtol=0.0, atol=0.0)
        expect(fitted[4], oracle.epsilon_, backend, dtype, rtol=8 * rtol + tolerance(out_dtype)[0])
        if not backend.values:
            check_meta(predicted[:3], backend, dtype, [(m, c)] * 3)
            return
        # Predictions against float64 Bayes' rule on the model's own (read-back) fit:
        # the error then scales with the terms summed into each joint log-likelihood.
        theta, var, prior = (values_of(backend, a) for a in fitted[:3])
        assume(np.all(var > 0))
        jll = reference(_jll, Xqr, theta, var, prior)
        terms = reference(
            lambda: (
                np.abs(np.log(2 * np.pi * var)).sum(axis=1)
                + ((np.abs(Xqr)[:, None, :] + np.abs(theta)[None]) ** 2 / var).sum(axis=2)
            )
        )
        finite_terms = np.where(np.isfinite(terms), terms, 0.0)
        slack = 8 * rtol * (d + 2) * np.max(finite_terms, axis=1, keepdims=True, initial=1.0)
        log_proba = reference(lambda j: j - scipy_logsumexp(j), jll)
        expect(
            predicted[0],
            jll,
            backend,
            dtype,
            rtol=tolerance(out_dtype)[0],
            atol=float(np.max(slack, initial=0.0)),
        )
        got_log, got_proba = (values_of(backend, a) for a in predicted[1:3])
        assert (got_log <= tolerance(out_dtype)[1]).all(), "a log-probability above 0"
        assert ((got_proba >= 0) & (got_proba <= 1 + tolerance(out_dtype)[0])).all()
        if m:
            np.testing.assert_allclose(got_proba.sum(axis=1), 1.0, atol=8 * tolerance(out_dtype)[0])
        two = 2 * slack  # log p(c|x) = J_c - LSE J: both carry the slack; (M, 1)
        rtol_out = tolerance(out_dtype)[0]
        within(got_log, log_proba, rtol=rtol_out, atol=two + 1e-12)
        within(got_proba, np.exp(log_proba), rtol=0.0, atol=two + rtol_out)
        # Labels: where the top two classes are further apart than the slack.
        if m and c > 1:
            top = np.sort(jll, axis=1)
            clear = (top[:, -1] - top[:, -2]) > 2 * slack[:, 0]
            got_labels = values_of(backend, predicted[3])
            np.testing.assert_array_equal(got_labels[clear], jll.argmax(axis=1)[clear])
        if m and out_dtype == "float64" and finite(oracle.var_):
            # End to end against scikit-learn, where the fit is well conditioned.
            assume(np.all(oracle.var_ > 1e-6 * big * big))
            expect(
                predicted[2],
                reference(oracle.predict_proba, Xqr),
                backend,
                dtype,
                rtol=1e-6,
                atol=1e-6 + float(np.max(two, initial=0)),
            )


@pytest.mark.skip_xp_backend("jax-jit", reason="class discovery is eager by design")
@pytest.mark.skip_xp_backend("torch-meta", reason="class discovery reads label values")
@pytest.mark.skip_xp_backend("strict-strictest", reason="unique_values: data-dependent shape")
def test_gaussian_naive_bayes_discovers_classes(backend):
    """``fit`` without ``classes=``: the sorted distinct labels (negative, sparse, one
    class, float labels) as scikit-learn finds them, and ``predict`` returns them."""

    @fuzz(backend, st.data(), scale=0.5)
    def _(data):
        n = data.draw(st.integers(2, 6), label="N")
        pool = data.draw(st.sampled_from([[-3, 2, 7], [0], [1.5, -0.5]]), label="labels")
        y = np.asarray(data.draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)))
        X = np.arange(n * 2, dtype=np.float64).reshape(n, 2) ** 1.5 / n
        labels = backend.asarray(y, "float32")  # float labels as float32; ints stay ints
        model = mle.GaussianNaiveBayes().fit(backend.asarray(X, "float32"), labels)
        classes = np.unique(y)  # sorted distinct labels, as scikit-learn's classes_
        np.testing.assert_array_equal(backend.to_numpy(model.classes_), classes)
        got = backend.to_numpy(run(backend, model.predict, backend.asarray(X, "float32")))
        assert set(got.tolist()) <= set(classes.tolist())
        if len(classes) == 1:
            np.testing.assert_array_equal(got, y)


def within(got: np.ndarray, want: np.ndarray, *, rtol: float, atol: Any) -> None:
    """``|got - want| <= atol + rtol |want|`` with a per-entry `atol`; equal ±inf match."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(got - want))
        bound = np.broadcast_to(atol, got.shape) + rtol * np.abs(np.where(same, 0.0, want))
    bad = ~(err <= bound)
    assert not bad.any(), f"got {got[bad]}, expected {want[bad]} (bound {bound[bad]})"


def scipy_logsumexp(j):
    import scipy.special

    if j.shape[1] == 0:
        return np.full((j.shape[0], 1), -np.inf)
    return scipy.special.logsumexp(j, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("n", "d", "c", "name"),
    [(0, 2, 2, "X"), (4, 0, 2, "X"), (4, 2, 0, "classes")],
    ids=["no samples", "no features", "no classes"],
)
def test_regression_fit_with_an_empty_axis(backend, n, d, c, name):
    """Found by fuzzing: ``fit`` on ``X`` of shape (0, 2) warned "Degrees of freedom
    <= 0" and fitted NaN statistics; on ``X`` of shape (4, 0) it raised NumPy's "zero-
    size array to reduction operation maximum"; with ``classes`` of shape (0,) it
    fitted a model whose probabilities were NaN. There is nothing to estimate: each
    now raises a ValueError naming the argument (as scikit-learn, which needs at
    least one sample and one feature), and the model stays unfitted."""
    X = backend.asarray(np.ones((n, d)), "float32")
    y = backend.asarray(np.zeros(n, dtype=np.int64))
    classes = backend.asarray(np.arange(c))
    model = mle.GaussianNaiveBayes()
    with pytest.raises(ValueError, match=f"`{name}`"):
        run(backend, model.fit, X, y, classes=classes)
    assert not [a for a in vars(model) if a.endswith("_")]


def test_regression_score_of_no_samples(backend):
    """Found by fuzzing: ``score`` of 0 query rows warned "Mean of empty slice"; the
    accuracy over no samples is NaN (the mean of nothing, as the losses give), now
    without a warning. ``predict*`` of 0 rows give (0,) and (0, C) arrays."""
    X = backend.asarray(np.asarray([[0.0], [1.0], [3.0], [4.0]]), "float32")
    y, classes = backend.asarray(np.asarray([0, 0, 1, 1])), backend.asarray(np.arange(2))
    empty, no_labels = (
        backend.asarray(np.zeros((0, 1)), "float32"),
        backend.asarray(np.zeros(0, np.int64)),
    )

    def fit_score(X, y, classes, Xq, yq):
        model = mle.GaussianNaiveBayes().fit(X, y, classes=classes)
        return model.score(Xq, yq), model.predict_proba(Xq)

    score, proba = run(backend, fit_score, X, y, classes, empty, no_labels)
    expect(score, np.nan, backend, "float32")
    expect(proba, np.zeros((0, 2)), backend, "float32")


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "gradient_descent"])
def test_regression_optimisers_keep_0d_parameters_arrays(backend, name):
    """Found by fuzzing: on NumPy, a step on 0-d parameters returned a NumPy *scalar*
    (NumPy's arithmetic on 0-d arrays does), not an array, so the next ``update``
    raised "expected at least one array argument". Every leaf is now kept an array."""
    p = backend.asarray(np.asarray(1.0), "float64" if backend.float64 else "float32")
    dtype = "float64" if backend.float64 else "float32"
    if name == "gradient_descent":
        out = run(backend, mle.gradient_descent, lambda t: t, p, lr=0.5, steps=2, momentum=0.5)
        expect(out, 0.0, backend, dtype)  # v1 = 1, p = 0.5; v2 = 0.5 v1 + 0.5 = 1, p = 0
        return
    g = backend.asarray(np.asarray(0.5), dtype)
    out = run(backend, _optimise, p, g, g, g, name=name, leaves=1, hyper=(("lr", 0.1),))
    arrays_ = (np.asarray(v) for v in (1.0, 0.5, 0.5, 0.5))
    expected = reference(_torch_optimise, *arrays_, name=name, leaves=1, hyper=(("lr", 0.1),))
    expect(out, expected, backend, dtype)
    if backend.library == "numpy":
        assert isinstance(out[0], np.ndarray)
