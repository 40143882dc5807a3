"""The hand-written backward passes and the MLP, on every backend.

Oracles: torch autograd (float64, on the CPU) for every backward pass on the
whole matrix; ``jax.grad`` and central finite differences (float64 NumPy) to
1e-10 / 1e-7; ``torch.nn`` + ``torch.optim.SGD`` for a training step; and the
guide's own torch code for its Linear(2, 1) + Sigmoid example.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import mlequations as mle

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(4)
X = RNG.normal(size=(2, 5, 3))  # two leading batch axes
W = RNG.normal(size=(4, 3))
B = RNG.normal(size=4)
DY = RNG.normal(size=(2, 5, 4))
Z = RNG.normal(scale=2.0, size=(4, 6))
DZ = RNG.normal(size=(4, 6))
SIZES = (3, 5, 4, 2)
MLP_X = RNG.normal(size=(6, 3))
MLP_Y = RNG.normal(size=(6, 2))
MLP_PARAMS = tuple(
    (RNG.normal(size=(o, i)) / np.sqrt(i), 0.1 * RNG.normal(size=o))
    for i, o in itertools.pairwise(SIZES)
)
ACTIVATIONS = ["tanh", "sigmoid", "relu", None]


def _flat(params):
    return [a for layer in params for a in layer]


def _pairs(flat):
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def _central_difference(f, x, eps=1e-6):
    """∂f/∂x for scalar f by central differences, float64."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        grad[i] = (f(up) - f(down)) / (2 * eps)
    return grad


# -- torch oracles (float64 on the CPU, computed once) --------------------------------------


@functools.cache
def _torch_linear():
    torch = torch_or_skip()
    x, w, b = (torch.asarray(a.copy(), requires_grad=True) for a in (X, W, B))
    y = torch.nn.functional.linear(x, w, b)
    (y * torch.asarray(DY)).sum().backward()
    return y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()


def _torch_activation(name, torch):
    return {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        None: lambda z: z,
    }[name]


@functools.cache
def _torch_activation_grad(name):
    torch = torch_or_skip()
    z = torch.asarray(Z.copy(), requires_grad=True)
    y = _torch_activation(name, torch)(z)
    (y * torch.asarray(DZ)).sum().backward()
    return y.detach().numpy(), z.grad.numpy()


@functools.cache
def _torch_mlp(activation, output_activation):
    """Output, gradients of L = sum(out * dy) and one SGD step on the MSE, float64."""
    torch = torch_or_skip()
    layers = []
    for i, (w, b) in enumerate(MLP_PARAMS):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.asarray(w))
            linear.bias.copy_(torch.asarray(b))
        layers.append(linear)
        name = output_activation if i == len(MLP_PARAMS) - 1 else activation
        if name is not None:
            layers.append(
                {"tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU}[name]()
            )
    model = torch.nn.Sequential(*layers)
    x = torch.asarray(MLP_X)
    out = model(x)
    dy = torch.asarray(MLP_Y)  # reused as an upstream gradient
    (out * dy).sum().backward()
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    # The guide's training step: MSELoss, SGD, zero_grad / backward / step.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    loss = torch.nn.MSELoss()(model(x), torch.asarray(MLP_Y))
    loss.backward()
    optimizer.step()
    stepped = [p.detach().numpy().copy() for p in model.parameters()]
    return out.detach().numpy(), grads, float(loss.detach()), stepped


# -- the linear layer ---------------------------------------------------------------------


class TestLinear:
    def test_forward_matches_torch(self, backend, dtype):
        args = [backend.asarray(a, dtype) for a in (X, W, B)]
        assert_close(backend.call(mle.linear_forward, *args), _torch_linear()[0], backend, dtype)

    def test_forward_without_bias(self, backend, dtype):
        args = [backend.asarray(a, dtype) for a in (X, W)]
        assert_close(backend.call(mle.linear_forward, *args), X @ W.T, backend, dtype)

    def test_backward_matches_torch_autograd(self, backend, dtype):
        args = [backend.asarray(a, dtype) for a in (DY, X, W)]
        grads = backend.call(mle.linear_backward, *args)
        assert isinstance(grads, mle.backprop.LinearGrads)
        _, dx, dw, db = _torch_linear()
        assert_close(grads.dx, dx, backend, dtype)
        assert_close(grads.dw, dw, backend, dtype)
        assert_close(grads.db, db, backend, dtype)

    def test_backward_matches_jax_grad(self):
        jax = jax_or_skip()
        jnp = jax.numpy

        def loss(x, w, b):
            return jnp.sum((x @ w.T + b) * DY)

        expected = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(X), jnp.asarray(W), jnp.asarray(B))
        grads = jax.jit(mle.linear_backward)(jnp.asarray(DY), jnp.asarray(X), jnp.asarray(W))
        for ours, theirs in zip(grads, expected, strict=True):
            np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)

    def test_backward_matches_finite_differences(self):
        grads = mle.linear_backward(DY, X, W)
        for i, arg in enumerate((X, W, B)):

            def f(a, i=i):
                args = [X, W, B]
                args[i] = a
                return np.sum(mle.linear_forward(*args) * DY)

            np.testing.assert_allclose(grads[i], _central_difference(f, arg), rtol=1e-7, atol=1e-8)

    def test_unbatched_input(self, backend, dtype):
        args = [backend.asarray(a, dtype) for a in (DY[0, 0], X[0, 0], W)]
        grads = backend.call(mle.linear_backward, *args)
        assert_close(grads.dw, np.outer(DY[0, 0], X[0, 0]), backend, dtype)
        assert_close(grads.db, DY[0, 0], backend, dtype)

    def test_shape_mismatch_names_the_argument(self):
        with pytest.raises(ValueError, match=r"`x` must have shape \(\.\.\., 3\)"):
            mle.linear_forward(np.ones((2, 4)), W, B)
        with pytest.raises(ValueError, match=r"`b` must have shape \(4,\)"):
            mle.linear_forward(X, W, np.ones(3))
        with pytest.raises(ValueError, match="`w` must have shape"):
            mle.linear_forward(X, np.ones(3))
        with pytest.raises(ValueError, match=r"`dy` must have shape \(2, 5, 4\)"):
            mle.linear_backward(np.ones((2, 5, 3)), X, W)

    def test_mixed_libraries_name_the_arguments(self):
        torch = torch_or_skip()
        with pytest.raises(TypeError, match=r"`x` is a numpy.*`w` is a torch"):
            mle.linear_forward(X, torch.asarray(W))


# -- activations and the loss --------------------------------------------------------------


BACKWARD = {"sigmoid": mle.sigmoid_backward, "tanh": mle.tanh_backward, "relu": mle.relu_backward}


class TestActivationBackward:
    @pytest.mark.parametrize("name", list(BACKWARD))
    def test_matches_torch_autograd(self, backend, dtype, name):
        y, expected = _torch_activation_grad(name)
        dy, y = backend.asarray(DZ, dtype), backend.asarray(y, dtype)
        assert_close(backend.call(BACKWARD[name], dy, y), expected, backend, dtype)

    @pytest.mark.parametrize("name", list(BACKWARD))
    def test_matches_jax_grad(self, name):
        jax = jax_or_skip()
        jnp = jax.numpy
        fn = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}[name]
        z, dz = jnp.asarray(Z), jnp.asarray(DZ)
        expected = jax.grad(lambda t: jnp.sum(fn(t) * dz))(z)
        ours = jax.jit(BACKWARD[name])(dz, fn(z))
        np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)

    @pytest.mark.parametrize("name", list(BACKWARD))
    def test_matches_finite_differences(self, name):
        fn = {
            "sigmoid": lambda t: 1 / (1 + np.exp(-t)),
            "tanh": np.tanh,
            "relu": lambda t: np.maximum(t, 0),
        }[name]
        expected = _central_difference(lambda t: np.sum(fn(t) * DZ), Z)
        np.testing.assert_allclose(BACKWARD[name](DZ, fn(Z)), expected, rtol=1e-7, atol=1e-8)

    def test_relu_subgradient_at_zero_is_zero_as_in_torch(self):
        torch = torch_or_skip()
        z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        torch.relu(z).sum().backward()
        ours = mle.relu_backward(np.ones(3), np.zeros(3))
        np.testing.assert_array_equal(ours, z.grad.numpy())

    def test_saturated_sigmoid_has_zero_gradient(self, backend, dtype):
        y = backend.asarray(np.asarray([0.0, 1.0]), dtype)
        dy = backend.asarray(np.ones(2), dtype)
        assert_close(backend.call(mle.sigmoid_backward, dy, y), [0.0, 0.0], backend, dtype)

    @pytest.mark.parametrize("name", list(BACKWARD))
    def test_shape_mismatch_names_the_argument(self, name):
        with pytest.raises(ValueError, match="`dy` must have the shape of `y`"):
            BACKWARD[name](np.ones(3), np.ones(4))


class TestMSEBackward:
    @pytest.mark.parametrize("reduction", ["mean", "sum"])
    def test_matches_torch_autograd(self, backend, dtype, reduction):
        torch = torch_or_skip()
        pred = torch.asarray(Z.copy(), requires_grad=True)
        torch.nn.functional.mse_loss(pred, torch.asarray(DZ), reduction=reduction).backward()
        args = [backend.asarray(a, dtype) for a in (Z, DZ)]
        out = backend.call(mle.mse_backward, *args, reduction=reduction)
        assert_close(out, pred.grad.numpy(), backend, dtype)

    def test_matches_jax_grad_and_finite_differences(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        expected = jax.grad(lambda p: jnp.mean((p - DZ) ** 2))(jnp.asarray(Z))
        np.testing.assert_allclose(mle.mse_backward(Z, DZ), expected, rtol=1e-10, atol=1e-12)
        fd = _central_difference(lambda p: np.mean((p - DZ) ** 2), Z)
        np.testing.assert_allclose(mle.mse_backward(Z, DZ), fd, rtol=1e-7, atol=1e-9)

    def test_bad_input_names_the_argument(self):
        with pytest.raises(ValueError, match="`reduction` must be 'mean' or 'sum'"):
            mle.mse_backward(Z, DZ, reduction="none")
        with pytest.raises(ValueError, match="`target` must have the shape of `pred`"):
            mle.mse_backward(Z, DZ[:2])


# -- the MLP -------------------------------------------------------------------------------


def _forward(activation, output_activation, x, *flat):
    out, _ = mle.mlp_forward(
        _pairs(flat), x, activation=activation, output_activation=output_activation
    )
    return out


def _gradients(activation, output_activation, x, dy, *flat):
    params = _pairs(flat)
    options = {"activation": activation, "output_activation": output_activation}
    _, cache = mle.mlp_forward(params, x, **options)
    return tuple(_flat(mle.mlp_backward(params, cache, dy, **options)))


def _train_step(activation, output_activation, x, y, *flat, lr):
    params, loss = mle.mlp_train_step(
        _pairs(flat), x, y, lr=lr, activation=activation, output_activation=output_activation
    )
    return (*_flat(params), loss)


NETWORKS = [("tanh", None), ("relu", "sigmoid"), ("sigmoid", "tanh")]
MATRIX_NETWORKS = NETWORKS[:2]  # sigmoid as a hidden activation: the jax.grad tests below


class TestMLP:
    @pytest.mark.parametrize(("activation", "output_activation"), MATRIX_NETWORKS)
    def test_forward_matches_torch(self, backend, dtype, activation, output_activation):
        args = [backend.asarray(a, dtype) for a in (MLP_X, *_flat(MLP_PARAMS))]
        out = backend.call(_forward, activation, output_activation, *args)
        assert_close(out, _torch_mlp(activation, output_activation)[0], backend, dtype)

    @pytest.mark.parametrize(("activation", "output_activation"), MATRIX_NETWORKS)
    def test_backward_matches_torch_autograd(self, backend, dtype, activation, output_activation):
        args = [backend.asarray(a, dtype) for a in (MLP_X, MLP_Y, *_flat(MLP_PARAMS))]
        grads = backend.call(_gradients, activation, output_activation, *args)
        expected = _torch_mlp(activation, output_activation)[1]
        assert len(grads) == len(expected)
        for ours, theirs in zip(grads, expected, strict=True):
            assert_close(ours, theirs, backend, dtype)

    @pytest.mark.parametrize(("activation", "output_activation"), MATRIX_NETWORKS)
    def test_train_step_matches_torch_sgd(self, backend, dtype, activation, output_activation):
        args = [backend.asarray(a, dtype) for a in (MLP_X, MLP_Y, *_flat(MLP_PARAMS))]
        out = backend.call(_train_step, activation, output_activation, *args, lr=0.1)
        _, _, loss, stepped = _torch_mlp(activation, output_activation)
        assert_close(out[-1], loss, backend, dtype)
        for ours, theirs in zip(out[:-1], stepped, strict=True):
            assert_close(ours, theirs, backend, dtype)

    @pytest.mark.parametrize(("activation", "output_activation"), NETWORKS)
    def test_backward_matches_jax_grad(self, activation, output_activation):
        jax = jax_or_skip()
        jnp = jax.numpy
        act = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, None: lambda z: z}
        x, dy = jnp.asarray(MLP_X), jnp.asarray(MLP_Y)
        flat = [jnp.asarray(a) for a in _flat(MLP_PARAMS)]

        def loss(flat):
            a = x
            for i, (w, b) in enumerate(_pairs(flat)):
                last = i == len(flat) // 2 - 1
                a = act[output_activation if last else activation](a @ w.T + b)
            return jnp.sum(a * dy)

        expected = jax.grad(loss)(flat)
        ours = jax.jit(functools.partial(_gradients, activation, output_activation))(x, dy, *flat)
        for a, b in zip(ours, expected, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)

    def test_backward_matches_finite_differences(self):
        flat = _flat(MLP_PARAMS)
        grads = _gradients("tanh", "sigmoid", MLP_X, MLP_Y, *flat)
        for i, param in enumerate(flat):

            def f(p, i=i):
                changed = list(flat)
                changed[i] = p
                return np.sum(_forward("tanh", "sigmoid", MLP_X, *changed) * MLP_Y)

            np.testing.assert_allclose(
                grads[i], _central_difference(f, param), rtol=1e-6, atol=1e-8
            )

    def test_torch_autograd_flows_through_the_forward_pass(self):
        # mlp_forward is plain array code, so torch can differentiate it too.
        torch = torch_or_skip()
        flat = [torch.asarray(a.copy(), requires_grad=True) for a in _flat(MLP_PARAMS)]
        out = _forward("tanh", None, torch.asarray(MLP_X), *flat)
        (out * torch.asarray(MLP_Y)).sum().backward()
        for p, theirs in zip(flat, _torch_mlp("tanh", None)[1], strict=True):
            np.testing.assert_allclose(p.grad.numpy(), theirs, rtol=1e-10, atol=1e-12)

    def test_bad_input_names_the_argument(self):
        params = MLP_PARAMS
        with pytest.raises(
            ValueError, match=r"`params\[0\]\[0\]` of shape \(5, 3\) must take 4 inputs from `x`"
        ):
            mle.mlp_forward(params, np.ones((2, 4)))
        broken = (params[0], (np.ones((4, 3)), np.ones(4)))
        with pytest.raises(ValueError, match=r"`params\[1\]\[0\]` of shape \(4, 3\) must take 5"):
            mle.mlp_forward(broken, MLP_X)
        with pytest.raises(ValueError, match=r"`params\[0\]` must be W \(out, in\) and b \(out,\)"):
            mle.mlp_forward(((params[0][0], np.ones(3)),), MLP_X)
        with pytest.raises(ValueError, match="`activation` must be one of"):
            mle.mlp_forward(params, MLP_X, activation="gelu")
        with pytest.raises(ValueError, match="`output_activation` must be one of"):
            mle.mlp_forward(params, MLP_X, output_activation="softmax")
        out, cache = mle.mlp_forward(params, MLP_X)
        with pytest.raises(ValueError, match="`dy` must have the shape of the output"):
            mle.mlp_backward(params, cache, np.ones((6, 3)))
        with pytest.raises(ValueError, match="`cache` must have one entry per layer"):
            mle.mlp_backward(params, cache[:1], out)
        with pytest.raises(ValueError, match="`y` must have the shape of the output"):
            mle.mlp_train_step(params, MLP_X, np.ones((6, 1)), lr=0.1)
        with pytest.raises(TypeError, match="`lr` must be a Python number"):
            mle.mlp_train_step(params, MLP_X, MLP_Y, lr=None)


class TestGuideExample:
    """The guide's Linear(2, 1) + Sigmoid, MSE, one SGD step at lr 0.01, from torch's weights."""

    @staticmethod
    @functools.cache
    def guide(dtype):
        torch = torch_or_skip()
        torch.manual_seed(0)
        # --- the guide's code (float32 as written; float64 by converting model and data) ---
        nn = torch.nn
        model = nn.Sequential(nn.Linear(2, 1), nn.Sigmoid()).to(getattr(torch, dtype))
        initial = [p.detach().clone().numpy().astype(np.float64) for p in model.parameters()]
        loss_fn = nn.MSELoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        X = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=getattr(torch, dtype))
        y = torch.tensor([[0.0], [1.0]], dtype=getattr(torch, dtype))
        optimizer.zero_grad()
        output = model(X)
        loss = loss_fn(output, y)
        loss.backward()
        optimizer.step()
        # ---
        updated = [p.detach().numpy().astype(np.float64) for p in model.parameters()]
        return initial, loss.item(), updated  # the guide prints loss.item()

    def test_same_loss_and_updated_weights(self, backend, dtype):
        initial, loss, updated = self.guide(dtype)
        x = backend.asarray([[0.0, 0.0], [1.0, 1.0]], dtype)
        y = backend.asarray([[0.0], [1.0]], dtype)
        w, b = (backend.asarray(a, dtype) for a in initial)
        out = backend.call(_train_step, None, "sigmoid", x, y, w, b, lr=0.01)
        assert_close(out[2], loss, backend, dtype)
        assert_close(out[0], updated[0], backend, dtype)
        assert_close(out[1], updated[1], backend, dtype)


# -- the portable initialisation -------------------------------------------------------------


class TestMLPInit:
    def test_same_weights_on_every_backend(self, backend, dtype):
        reference = _flat(mle.mlp_init(SIZES, seed=3, xp=np, dtype=np.float64))
        params = mle.mlp_init(
            SIZES, seed=3, xp=backend.module, device=backend.device, dtype=backend.dtype(dtype)
        )
        for ours, theirs in zip(_flat(params), reference, strict=True):
            assert_close(ours, theirs, backend, dtype)

    def test_traces_under_jit(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        jitted = jax.jit(lambda: _flat(mle.mlp_init(SIZES, seed=3, xp=jnp, dtype=jnp.float64)))
        for ours, theirs in zip(jitted(), _flat(mle.mlp_init(SIZES, seed=3, xp=np)), strict=True):
            # XLA may fuse the three divisions differently: equal to the last bit or two.
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=4 * np.finfo(np.float64).eps)

    def test_default_is_numpy_float64_and_torch_default_float32(self):
        params = mle.mlp_init((2, 1), seed=0)
        assert isinstance(params[0][0], np.ndarray)
        assert params[0][0].dtype == np.float64
        torch = torch_or_skip()
        assert mle.mlp_init((2, 1), seed=0, xp=torch)[0][0].dtype == torch.float32

    def test_bounds_and_shapes_follow_torch_linear(self):
        params = mle.mlp_init((64, 32, 1), seed=1, xp=np)
        assert [(w.shape, b.shape) for w, b in params] == [((32, 64), (32,)), ((1, 32), (1,))]
        for (w, b), fan_in in zip(params, (64, 32), strict=True):
            bound = 1 / np.sqrt(fan_in)
            assert np.abs(w).max() <= bound
            assert np.abs(b).max() <= bound
        # Spread over the whole interval, as U(-bound, bound) should be.
        assert np.abs(params[0][0]).max() > 0.95 / 8

    def test_uniform_statistics(self):
        # 20000 draws: mean 1/2 and variance 1/12 within a few standard errors,
        # every tenth-interval about equally full, no correlation between neighbours.
        ((w, _),) = mle.mlp_init((1, 20000), seed=11, xp=np)
        u = (w[:, 0] + 1) / 2
        assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)
        assert abs(u.var() - 1 / 12) < 0.003
        counts = np.histogram(u, bins=10, range=(0, 1))[0]
        chi2 = ((counts - u.size / 10) ** 2 / (u.size / 10)).sum()
        assert chi2 < 30  # 9 degrees of freedom: P(chi2 > 30) < 0.001
        assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.03

    def test_seeds_differ_and_repeat(self):
        a = _flat(mle.mlp_init(SIZES, seed=0, xp=np))
        b = _flat(mle.mlp_init(SIZES, seed=1, xp=np))
        c = _flat(mle.mlp_init(SIZES, seed=0, xp=np))
        assert not any(np.allclose(x, y) for x, y in zip(a, b, strict=True))
        for x, y in zip(a, c, strict=True):
            np.testing.assert_array_equal(x, y)

    def test_half_precision(self, backend, half_dtype):
        params = mle.mlp_init(
            SIZES, seed=3, xp=backend.module, device=backend.device, dtype=backend.dtype(half_dtype)
        )
        reference = _flat(mle.mlp_init(SIZES, seed=3, xp=np))
        for ours, theirs in zip(_flat(params), reference, strict=True):
            assert_close(ours, theirs, backend, half_dtype)

    def test_bad_input_names_the_argument(self):
        with pytest.raises(ValueError, match="`sizes` must be at least two positive ints"):
            mle.mlp_init((3,), seed=0)
        with pytest.raises(ValueError, match="`sizes`"):
            mle.mlp_init((3, 0), seed=0)
        with pytest.raises(TypeError, match="`sizes` must be a sequence"):
            mle.mlp_init(3, seed=0)
        with pytest.raises(TypeError, match="`seed` must be a Python int"):
            mle.mlp_init((3, 2), seed=1.5)
        with pytest.raises(TypeError, match="`dtype` must be a real floating dtype"):
            mle.mlp_init((3, 2), seed=0, xp=np, dtype=np.int32)
