"""conv2d's gradients: every method and option, against torch's and JAX's own convolutions.

The references are ``torch.nn.functional.conv2d`` (with ``F.pad`` for the padding
it lacks: asymmetric pairs and TensorFlow's "same" at a stride) and
``jax.lax.conv_general_dilated``, differentiated by their libraries; never conv2d
itself. The last test bounds the memory autograd keeps for the backward pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import mlequations as mle
from mlequations import convolution

from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261124)
METHODS = ("im2col", "shift", "fft", "winograd", "auto")

# (id, input shape, weight shape, bias?, options): tiny, so that gradcheck is fast.
CASES = [
    ("basic", (2, 3, 6, 5), (4, 3, 3, 3), True, {}),
    ("padding-1", (1, 2, 6, 6), (3, 2, 3, 3), True, {"padding": 1}),
    ("no-bias", (2, 2, 5, 6), (3, 2, 3, 3), False, {"padding": 1}),
    # 8 rows at stride 2: the last row of the input is under no output.
    ("stride-2", (2, 2, 8, 8), (3, 2, 3, 3), True, {"stride": 2}),
    ("stride-2-padded", (1, 2, 7, 7), (3, 2, 3, 3), True, {"stride": 2, "padding": 1}),
    # 8 columns at stride 3: the last two are under no output.
    ("stride-3", (1, 2, 9, 8), (2, 2, 3, 3), True, {"stride": 3}),
    ("stride-2x1", (1, 2, 7, 6), (3, 2, 3, 2), True, {"stride": (2, 1), "padding": 1}),
    ("dilation-2", (1, 2, 8, 7), (3, 2, 3, 3), True, {"dilation": 2}),
    ("dilation-1x2", (1, 2, 7, 8), (2, 2, 2, 3), True, {"dilation": (1, 2)}),
    ("groups-2", (2, 4, 6, 6), (4, 2, 3, 3), True, {"groups": 2, "padding": 1}),
    ("depthwise", (1, 3, 7, 6), (3, 1, 3, 3), True, {"groups": 3, "padding": 1}),
    ("depthwise-x2", (1, 3, 7, 6), (6, 1, 3, 3), True, {"groups": 3, "stride": 2}),
    ("padding-asymmetric", (1, 2, 6, 6), (3, 2, 3, 3), True, {"padding": ((0, 2), (1, 0))}),
    # TensorFlow's rule: rows (1, 1), columns (0, 1), the odd pixel at the right.
    ("same-stride-2", (1, 2, 7, 8), (3, 2, 3, 3), True, {"padding": "same", "stride": 2}),
    ("same-even-kernel", (1, 2, 6, 5), (2, 2, 2, 4), True, {"padding": "same"}),
    ("valid", (1, 2, 6, 7), (2, 2, 3, 3), True, {"padding": "valid"}),
    # Padding beyond the kernel's reach: the outer outputs see zeros only.
    ("padding-3-kernel-3", (1, 2, 4, 5), (2, 2, 3, 3), True, {"padding": 3}),
    ("kernel-1x1", (2, 3, 5, 4), (4, 3, 1, 1), True, {}),
    # Every other pixel, and the last column, under no output.
    ("kernel-1x1-stride-2", (1, 3, 5, 6), (2, 3, 1, 1), True, {"stride": 2}),
    ("kernel-2x3", (1, 2, 6, 7), (3, 2, 2, 3), True, {"padding": (1, 0)}),
    ("kernel-5x5", (1, 2, 8, 8), (2, 2, 5, 5), True, {"padding": 2}),
    ("kernel-7x7-same", (1, 2, 8, 8), (2, 2, 7, 7), True, {"padding": "same"}),  # auto: fft
    # The ResNet stem, small: 8 + 6 = 14 padded rows, 4 outputs, the last row unread.
    ("kernel-7x7-stride-2", (1, 2, 8, 8), (2, 2, 7, 7), True, {"stride": 2, "padding": 3}),
    ("unbatched", (3, 6, 5), (2, 3, 3, 3), True, {"padding": 1}),
    (
        "everything",
        (2, 4, 9, 8),
        (4, 2, 3, 2),
        True,
        {"stride": (2, 3), "padding": ((2, 1), (0, 2)), "dilation": (2, 1), "groups": 2},
    ),
]
CASE = {c[0]: c for c in CASES}
# Float32 only (too large for gradcheck): "auto" picks Winograd at 32 channels.
WIDE = ("wide-3x3", (1, 32, 14, 14), (32, 32, 3, 3), True, {"padding": 1})
# 32 channels per group and 28×28 outputs or more: the weight gradient one tap at a time.
LARGE = [
    ("large-3x3", (2, 32, 28, 28), (32, 32, 3, 3), True, {"padding": 1}),
    (
        "large-grouped-dilated-strided",
        (2, 64, 61, 58),
        (64, 32, 3, 2),
        True,
        {"groups": 2, "dilation": (2, 1), "stride": 2, "padding": ((1, 2), (0, 1))},
    ),
]


def _methods(wshape, options, methods=METHODS):
    """`methods` that apply: "winograd" is for 3×3 kernels at stride 1, dilation 1 only."""
    plain = options.get("stride", 1) in (1, (1, 1)) and options.get("dilation", 1) in (1, (1, 1))
    winograd = tuple(wshape[-2:]) == (3, 3) and plain
    return [m for m in methods if m != "winograd" or winograd]


def _grid(cases, methods=METHODS):
    return [
        pytest.param(case, method, id=f"{method}-{case[0]}")
        for case in cases
        for method in _methods(case[2], case[4], methods)
    ]


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _explicit_padding(options, size, kernel):
    """((top, bottom), (left, right)) of `options["padding"]`, by the documented rules."""
    padding = options.get("padding", 0)
    stride, dilation = _pair(options.get("stride", 1)), _pair(options.get("dilation", 1))
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":  # TensorFlow: ceil(n / s) outputs, the odd pixel after
        pads = []
        for n, k, s, d in zip(size, kernel, stride, dilation, strict=True):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if isinstance(padding[0], int):
        return tuple((p, p) for p in padding)
    return tuple(tuple(p) for p in padding)


def _lax_options(case):
    _, xshape, wshape, _, options = case
    return {
        "window_strides": _pair(options.get("stride", 1)),
        "padding": _explicit_padding(options, xshape[-2:], wshape[-2:]),
        "rhs_dilation": _pair(options.get("dilation", 1)),
        "feature_group_count": options.get("groups", 1),
    }


def f_conv2d(x, w, b, case):
    """The oracle: ``F.pad`` then ``F.conv2d``, differentiable by torch's autograd."""
    torch = torch_or_skip()
    F = torch.nn.functional
    lax = _lax_options(case)
    (top, bottom), (left, right) = lax["padding"]
    return F.conv2d(
        F.pad(x, (left, right, top, bottom)),
        w,
        b,
        stride=lax["window_strides"],
        dilation=lax["rhs_dilation"],
        groups=lax["feature_group_count"],
    )


def _data(case):
    _, xshape, wshape, with_bias, _ = case
    x = RNG.normal(size=xshape)
    w = RNG.normal(size=wshape)
    b = RNG.normal(size=wshape[0]) if with_bias else None
    return x, w, b


def _torch_leaves(case, dtype, requires=(True, True, True)):
    """Fresh leaf tensors for (input, weight, bias), each requiring grad as asked."""
    torch = torch_or_skip()
    return [
        None if a is None else torch.asarray(a, dtype=dtype).requires_grad_(r)
        for a, r in zip(_data(case), requires, strict=True)
    ]


def _clone(leaves):
    return [
        None if t is None else t.detach().clone().requires_grad_(t.requires_grad) for t in leaves
    ]


def _leaf(t):
    return t.detach().clone().requires_grad_(True)


def _float32_tolerance(method, expected):
    # FFT and Winograd round relative to the largest value, not to each one.
    # A sum of hundreds of products rounds to 1e-5 of the largest one.
    scale = max(float(expected.detach().abs().max()), 1.0)
    if method in ("fft", "winograd", "auto"):
        return {"rtol": 2e-4, "atol": 2e-4 * scale}
    return {"rtol": 1e-4, "atol": max(1e-4, 1e-5 * scale)}


def _conv_and_leaves(case, method, torch):
    """`conv2d` with the case's options and method, and its float64 leaves (bias if any)."""
    options = case[4]
    leaves = tuple(t for t in _torch_leaves(case, torch.float64) if t is not None)

    def conv(*args):
        return mle.conv2d(*args, method=method, **options)

    return conv, leaves


class TestTorchGradcheck:
    @pytest.mark.parametrize(("case", "method"), _grid(CASES))
    def test_gradcheck_float64(self, case, method):
        torch = torch_or_skip()
        assert torch.autograd.gradcheck(*_conv_and_leaves(case, method, torch), fast_mode=True)

    @pytest.mark.parametrize(
        ("case", "method"),
        [
            pytest.param(CASE["everything"], "im2col", id="im2col-everything"),
            pytest.param(CASE["everything"], "shift", id="shift-everything"),
            pytest.param(CASE["padding-asymmetric"], "winograd", id="winograd-padding-asymmetric"),
            pytest.param(CASE["same-stride-2"], "fft", id="fft-same-stride-2"),
        ],
    )
    def test_gradgradcheck_float64(self, case, method):
        torch = torch_or_skip()
        assert torch.autograd.gradgradcheck(*_conv_and_leaves(case, method, torch), fast_mode=True)


# Which of (input, weight, bias) require grad; bias None for "no-bias".
REQUIRES = {
    "all": (True, True, True),
    "input-frozen": (False, True, True),  # a network's first layer
    "weight-frozen": (True, False, True),
    "bias-frozen": (True, True, False),
    "only-input": (True, False, False),  # saliency maps, adversarial examples
    "only-bias": (False, False, True),
    "no-bias": (True, True, None),
}
PARTIAL_CASES = [CASE[n] for n in ("everything", "depthwise-x2", "same-stride-2", "padding-1")]


class TestTorchMatchesFConv2d:
    def _check(self, case, method, requires):
        torch = torch_or_skip()
        mine = _torch_leaves(case, torch.float32, [r is True for r in requires])
        if requires[2] is None:
            mine[2] = None
        theirs = _clone(mine)
        expected = f_conv2d(*theirs, case)
        r = torch.asarray(RNG.normal(size=tuple(expected.shape)), dtype=torch.float32)
        (expected * r).sum().backward()
        out = mle.conv2d(*mine, method=method, **case[4])
        torch.testing.assert_close(out, expected, **_float32_tolerance(method, expected))
        (out * r).sum().backward()
        for name, a, e in zip(("input", "weight", "bias"), mine, theirs, strict=True):
            if a is None:
                continue
            if not a.requires_grad:
                assert a.grad is None, name
                continue
            assert a.grad is not None, name
            torch.testing.assert_close(
                a.grad,
                e.grad,
                **_float32_tolerance(method, e.grad),
                msg=lambda m, n=name: f"{n}: {m}",
            )

    @pytest.mark.parametrize(("case", "method"), _grid([*CASES, WIDE, *LARGE]))
    def test_gradients_float32(self, case, method):
        self._check(case, method, REQUIRES["all"])

    @pytest.mark.parametrize("requires", REQUIRES.values(), ids=REQUIRES.keys())
    @pytest.mark.parametrize(("case", "method"), _grid(PARTIAL_CASES))
    def test_some_inputs_require_grad(self, case, method, requires):
        self._check(case, method, requires)

    def test_no_input_requires_grad_gives_a_plain_tensor(self):
        torch = torch_or_skip()
        x, w, b = _torch_leaves(CASE["basic"], torch.float32, (False, False, False))
        out = mle.conv2d(x, w, b)
        assert not out.requires_grad
        assert out.grad_fn is None


GRADIENT_PENALTY = _grid([CASE["padding-1"]]) + _grid(
    [CASE["everything"]], ("im2col", "shift", "fft")
)


class TestTorchHigherOrder:
    @pytest.mark.parametrize(("case", "method"), GRADIENT_PENALTY)
    def test_gradient_penalty_matches_f_conv2d(self, case, method):
        # d/dW ||d loss / dx||², as WGAN-GP and input-gradient regularisers train.
        torch = torch_or_skip()
        mine = _torch_leaves(case, torch.float64)
        theirs = _clone(mine)
        out_shape = f_conv2d(*(t.detach() for t in theirs), case).shape
        r = torch.asarray(RNG.normal(size=tuple(out_shape)))

        def penalty(conv, x, w, b):
            loss = (conv(x, w, b) * r).sum()
            (gx,) = torch.autograd.grad(loss, x, create_graph=True)
            return (gx**2).sum()

        p = penalty(lambda *a: mle.conv2d(*a, method=method, **case[4]), *mine)
        q = penalty(lambda *a: f_conv2d(*a, case), *theirs)
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-9)
        (gw,) = torch.autograd.grad(p, mine[1])
        (ew,) = torch.autograd.grad(q, theirs[1])
        torch.testing.assert_close(gw, ew, rtol=1e-9, atol=1e-9)


COMPILED = [
    *(pytest.param(*p.values, "eager", id=f"{p.id}-eager") for p in _grid([CASE["padding-1"]])),
    pytest.param(CASE["everything"], "im2col", "eager", id="im2col-everything-eager"),
    pytest.param(CASE["kernel-7x7-stride-2"], "auto", "eager", id="auto-kernel-7x7-stride-2-eager"),
    # "aot_eager" traces the backward pass too, as inductor compiles it.
    pytest.param(CASE["padding-1"], "winograd", "aot_eager", id="winograd-padding-1-aot_eager"),
    pytest.param(CASE["everything"], "im2col", "aot_eager", id="im2col-everything-aot_eager"),
    # 28×28 outputs and more: "auto" picks "shift" under dynamo, and the weight gradient
    # runs one product per tap.
    *(pytest.param(c, "auto", "aot_eager", id=f"auto-{c[0]}-aot_eager") for c in LARGE),
]


BANDED = [CASE["everything"], CASE["kernel-7x7-stride-2"]]


class TestTorchTraced:
    @pytest.mark.parametrize(("case", "method", "compiler"), COMPILED)
    def test_compile_fullgraph_backward(self, case, method, compiler):
        torch = torch_or_skip()
        x, w, b = _torch_leaves(case, torch.float64, (False, False, False))
        weight, bias = torch.nn.Parameter(w.clone()), torch.nn.Parameter(b.clone())
        r = torch.asarray(RNG.normal(size=tuple(f_conv2d(x, w, b, case).shape)))

        def loss(x):
            return (mle.conv2d(x, weight, bias, method=method, **case[4]) * r).sum()

        torch._dynamo.reset()
        compiled = torch.compile(loss, fullgraph=True, backend=compiler)
        xs = _leaf(x)
        compiled(xs).backward()
        x_ref, w_ref, b_ref = _leaf(x), _leaf(w), _leaf(b)
        (f_conv2d(x_ref, w_ref, b_ref, case) * r).sum().backward()
        for got, expected in [(xs, x_ref), (weight, w_ref), (bias, b_ref)]:
            torch.testing.assert_close(got.grad, expected.grad, rtol=1e-9, atol=1e-9)

    @pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
    @pytest.mark.parametrize("case", BANDED, ids=lambda c: c[0])
    def test_banded_patches(self, case, compiler, monkeypatch):
        # Traced, a patch matrix over _CHUNK elements is gathered in bands of output
        # rows (at most _TRACED_BANDS), forward and weight gradient: chunks of one
        # element force the most bands.
        monkeypatch.setattr(convolution, "_CHUNK", 1)
        self.test_compile_fullgraph_backward(case, "im2col", compiler)

    @pytest.mark.parametrize("method", ["im2col", "shift", "auto"])
    def test_torch_func_per_sample_gradients(self, method):
        # torch.func.vmap of torch.func.grad over the batch: per-sample weight
        # gradients (as DP-SGD computes them), which sum to the batch's.
        torch = torch_or_skip()
        case = CASE["groups-2"]
        x, w, b = _torch_leaves(case, torch.float64, (False, False, False))
        r = torch.asarray(RNG.normal(size=tuple(f_conv2d(x, w, b, case).shape)))

        def loss(w, b, x, r):
            return (mle.conv2d(x, w, b, method=method, **case[4]) * r).sum()

        per_sample = torch.func.vmap(torch.func.grad(loss, argnums=(0, 1)), (None, None, 0, 0))
        gw, gb = per_sample(w, b, x, r)
        for n in range(x.shape[0]):
            w_ref, b_ref = _leaf(w), _leaf(b)
            (f_conv2d(x[n : n + 1], w_ref, b_ref, case) * r[n : n + 1]).sum().backward()
            torch.testing.assert_close(gw[n], w_ref.grad, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(gb[n], b_ref.grad, rtol=1e-9, atol=1e-9)


# Each method once or twice, with groups, strides and asymmetric padding among them.
JAX_GRID = [
    pytest.param(CASE["everything"], "im2col", id="im2col-everything"),
    pytest.param(CASE["same-stride-2"], "shift", id="shift-same-stride-2"),
    pytest.param(CASE["depthwise-x2"], "fft", id="fft-depthwise-x2"),
    pytest.param(CASE["groups-2"], "winograd", id="winograd-groups-2"),
    pytest.param(CASE["kernel-7x7-stride-2"], "auto", id="auto-kernel-7x7-stride-2"),
]
JAX_VMAP = [
    pytest.param(CASE["everything"], "im2col", id="im2col-everything"),
    pytest.param(CASE["same-stride-2"], "shift", id="shift-same-stride-2"),
    pytest.param(CASE["groups-2"], "fft", id="fft-groups-2"),
]


class TestJax:
    def _loss_and_reference(self, case, method):
        jax = jax_or_skip()
        jnp = jax.numpy
        lax_options = _lax_options(case)
        x, w, b = (jnp.asarray(a) for a in _data(case))
        out_shape = jax.lax.conv_general_dilated(x, w, **lax_options).shape
        r = jnp.asarray(RNG.normal(size=out_shape))

        def ours(x, w, b):
            return jnp.sum(mle.conv2d(x, w, b, method=method, **case[4]) * r)

        def theirs(x, w, b):
            y = jax.lax.conv_general_dilated(x, w, **lax_options) + b[:, None, None]
            return jnp.sum(y * r)

        return (x, w, b), ours, theirs

    @pytest.mark.parametrize(("case", "method"), JAX_GRID)
    def test_jit_grad_matches_lax(self, case, method):
        jax = jax_or_skip()
        args, ours, theirs = self._loss_and_reference(case, method)
        assert args[0].dtype == jax.numpy.float64
        expected = jax.grad(theirs, argnums=(0, 1, 2))(*args)
        got = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(*args)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)

    @pytest.mark.parametrize("case", BANDED, ids=lambda c: c[0])
    def test_banded_patches(self, case, monkeypatch):
        monkeypatch.setattr(convolution, "_CHUNK", 1)  # as TestTorchTraced's
        self.test_jit_grad_matches_lax(case, "im2col")

    @pytest.mark.parametrize(("case", "method"), JAX_VMAP)
    def test_vmap_grad_over_weights(self, case, method):
        jax = jax_or_skip()
        jnp = jax.numpy
        (x, w, b), ours, theirs = self._loss_and_reference(case, method)
        ws = jnp.stack([w, 2.0 * w + 1.0, -w])
        grads = jax.jit(jax.vmap(jax.grad(ours, argnums=(0, 1, 2)), in_axes=(None, 0, None)))
        got = grads(x, ws, b)
        for i in range(ws.shape[0]):
            expected = jax.grad(theirs, argnums=(0, 1, 2))(x, ws[i], b)
            for g, e in zip(got, expected, strict=True):
                np.testing.assert_allclose(g[i], e, rtol=1e-9, atol=1e-9)


def _saved_bytes(run):
    """Bytes of the tensors autograd saves for backward while `run()` runs, once per storage."""
    torch = torch_or_skip()
    sizes = {}

    def pack(t):
        storage = t.untyped_storage()
        # A view counts its own elements (an expanded one its storage at most).
        size = min(t.numel() * t.element_size(), storage.nbytes())
        sizes[storage.data_ptr()] = max(sizes.get(storage.data_ptr(), 0), size)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return sum(sizes.values()), out


class TestMemory:
    @pytest.mark.parametrize("method", ["im2col", "auto"])
    def test_saves_no_more_than_inputs_and_output(self, method):
        # The backward rule recomputes from the inputs: autograd through the im2col plan
        # would keep the 9× larger patch matrix (and every intermediate of the others).
        torch = torch_or_skip()
        x = torch.asarray(RNG.normal(size=(4, 16, 32, 32)), dtype=torch.float32)
        x.requires_grad_(True)
        weight = torch.nn.Parameter(
            torch.asarray(RNG.normal(size=(16, 16, 3, 3)), dtype=torch.float32)
        )
        bias = torch.nn.Parameter(torch.asarray(RNG.normal(size=16), dtype=torch.float32))
        saved, out = _saved_bytes(lambda: mle.conv2d(x, weight, bias, padding=1, method=method))
        bound = sum(t.numel() * t.element_size() for t in (x, weight, bias, out))
        assert saved <= bound, (
            f"{saved} bytes saved for backward, more than the {bound} of the arrays"
        )
        out.backward(torch.ones_like(out))  # the saved tensors still give the gradients
        assert x.grad is not None
        assert weight.grad is not None
        assert bias.grad is not None
