"""conv2d on every backend, against torch, JAX and SciPy, with every algorithm."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal

import mlequations as mle
from mlequations import convolution
from mlequations._backends import by_id

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261123)
METHODS = ("im2col", "shift", "fft", "winograd", "auto")

# (id, input shape, weight shape, bias?, options) — every option of the contract.
CASES = [
    ("basic", (2, 3, 8, 7), (4, 3, 3, 3), True, {}),
    ("kernel-1x1", (2, 3, 5, 6), (4, 3, 1, 1), True, {}),
    ("kernel-1x1-stride-2", (2, 3, 7, 6), (4, 3, 1, 1), False, {"stride": 2}),  # one phase
    ("kernel-5x4", (2, 2, 9, 8), (3, 2, 5, 4), False, {}),
    ("stride-2", (2, 3, 9, 8), (4, 3, 3, 3), True, {"stride": 2}),
    ("stride-2x1", (1, 3, 9, 8), (4, 3, 3, 2), True, {"stride": (2, 1)}),
    ("stride-3-kernel-5", (1, 2, 13, 12), (3, 2, 5, 5), True, {"stride": 3, "padding": 2}),
    ("dilation-2", (2, 3, 9, 10), (4, 3, 3, 3), True, {"dilation": 2}),
    ("dilation-1x2", (1, 3, 8, 9), (2, 3, 2, 3), True, {"dilation": (1, 2)}),
    ("padding-int", (2, 3, 6, 7), (4, 3, 3, 3), True, {"padding": 1}),
    ("padding-pair", (2, 3, 6, 7), (4, 3, 3, 3), True, {"padding": (1, 2)}),
    ("padding-pairs", (2, 3, 6, 7), (4, 3, 3, 2), True, {"padding": ((1, 0), (2, 1))}),
    ("padding-valid", (2, 3, 6, 7), (4, 3, 3, 3), True, {"padding": "valid"}),
    ("padding-same", (2, 3, 6, 7), (4, 3, 3, 3), True, {"padding": "same"}),
    ("padding-same-even", (1, 2, 6, 7), (3, 2, 4, 2), True, {"padding": "same"}),
    ("padding-same-dilated", (1, 2, 9, 8), (3, 2, 3, 3), True, {"padding": "same", "dilation": 2}),
    ("groups-2", (2, 4, 7, 6), (6, 2, 3, 3), True, {"groups": 2}),
    ("depthwise", (2, 4, 7, 6), (4, 1, 3, 3), True, {"groups": 4, "padding": 1}),
    ("depthwise-x2", (2, 3, 7, 6), (6, 1, 3, 3), True, {"groups": 3}),
    (
        "everything",
        (2, 4, 11, 10),
        (6, 2, 3, 2),
        True,
        {"stride": (2, 3), "padding": ((2, 1), (0, 2)), "dilation": (2, 1), "groups": 2},
    ),
    ("unbatched", (3, 8, 7), (4, 3, 3, 3), True, {"padding": 1}),
    ("unbatched-strided-depthwise", (4, 9, 9), (4, 1, 3, 3), True, {"stride": 2, "groups": 4}),
    ("large-kernel", (1, 2, 12, 11), (3, 2, 7, 7), True, {"padding": "same"}),  # auto: fft
    # Kernels of at least 4·sH·sW taps unfold from the stride phases of the image.
    ("stem-7x7-stride-2", (2, 3, 16, 15), (4, 3, 7, 7), True, {"stride": 2, "padding": 3}),
    (
        "phases-5x5-stride-2x1-dilated",
        (1, 2, 15, 16),
        (3, 2, 5, 5),
        False,
        {"stride": (2, 1), "dilation": (1, 2), "padding": ((1, 2), (3, 0))},
    ),
    ("wide-3x3", (2, 32, 15, 17), (32, 32, 3, 3), True, {"padding": 1}),  # auto: winograd
]
CASE_IDS = [c[0] for c in CASES]
# The options every backend runs; the full grid runs on numpy, torch-cpu and jax-jit.
SUBSET = ("everything", "depthwise-x2", "unbatched-strided-depthwise")
FULL_GRID_BACKENDS = ("numpy", "torch-cpu", "jax-jit")


def _data(case):
    _, xshape, wshape, with_bias, options = case
    x = RNG.normal(size=xshape)
    w = RNG.normal(size=wshape)
    b = RNG.normal(size=wshape[0]) if with_bias else None
    return x, w, b, options


def torch_conv2d(x, w, b=None, **options):
    """The oracle: torch.nn.functional.conv2d in float64 on the CPU, as NumPy."""
    torch = torch_or_skip()
    F = torch.nn.functional
    t = torch.asarray(x, dtype=torch.float64)
    padding = options.pop("padding", 0)
    if isinstance(padding, tuple) and isinstance(padding[0], tuple):
        (top, bottom), (left, right) = padding
        t = F.pad(t, (left, right, top, bottom))
        padding = 0
    bias = None if b is None else torch.asarray(b, dtype=torch.float64)
    with warnings.catch_warnings():
        # torch warns that it pads a copy for "same" with an even kernel; that is fine here.
        warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
        y = F.conv2d(t, torch.asarray(w, dtype=torch.float64), bias, padding=padding, **options)
    return y.numpy()


def _tolerance(dtype, method):
    # FFT and Winograd round relative to the largest output, not to each output.
    if dtype == "float32":
        return {"rtol": 2e-4, "atol": 2e-4 if method in ("fft", "winograd", "auto") else 1e-5}
    return {"rtol": 1e-9, "atol": 1e-9}


def _methods(wshape, options, methods=METHODS):
    """`methods` that apply: "winograd" is F(4×4, 3×3), for 3×3 kernels at stride 1 only."""
    plain = options.get("stride", 1) in (1, (1, 1)) and options.get("dilation", 1) in (1, (1, 1))
    winograd = tuple(wshape[-2:]) == (3, 3) and plain
    return [m for m in methods if m != "winograd" or winograd]


def _check(backend, dtype, case, methods=METHODS):
    x, w, b, options = _data(case)
    expected = torch_conv2d(x, w, b, **options)
    args = [backend.asarray(x, dtype), backend.asarray(w, dtype)]
    if b is not None:
        args.append(backend.asarray(b, dtype))
    for method in _methods(w.shape, options, methods):
        out = backend.call(mle.conv2d, *args, method=method, **options)
        assert_close(out, expected, backend, dtype, **_tolerance(dtype, method))


def _full_grid_backend(backend_id):
    backend = by_id(backend_id)
    reason = backend.skip_reason()
    if reason:
        pytest.skip(reason)
    return backend


class TestConv2d:
    def test_guide_example(self, backend, dtype):
        # nn.Conv2d(1, 1, kernel_size=3) on a 28×28 image gives 26×26.
        x, w, b = RNG.normal(size=(1, 1, 28, 28)), RNG.normal(size=(1, 1, 3, 3)), RNG.normal(size=1)
        out = backend.call(
            mle.conv2d,
            backend.asarray(x, dtype),
            backend.asarray(w, dtype),
            backend.asarray(b, dtype),
        )
        assert tuple(out.shape) == (1, 1, 26, 26)
        assert_close(out, torch_conv2d(x, w, b), backend, dtype, **_tolerance(dtype, "auto"))

    def test_is_cross_correlation_not_convolution(self, backend, dtype):
        x = np.arange(16.0).reshape(1, 1, 4, 4)
        w = np.zeros((1, 1, 3, 3))
        w[0, 0, 0, 0] = 1.0  # picks the top-left pixel of each window: no flip
        for method in METHODS:  # winograd included: 3×3, stride 1
            out = backend.call(
                mle.conv2d, backend.asarray(x, dtype), backend.asarray(w, dtype), method=method
            )
            assert_close(
                out, x[:, :, :2, :2], backend, dtype, atol=1e-4 if dtype == "float32" else 1e-9
            )

    @pytest.mark.parametrize("case", [c for c in CASES if c[0] in SUBSET], ids=lambda c: c[0])
    def test_matches_torch_every_backend(self, backend, dtype, case):
        _check(backend, dtype, case)

    @pytest.mark.parametrize("backend_id", FULL_GRID_BACKENDS)
    @pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
    def test_matches_torch_full_grid(self, backend_id, case):
        # float64 only: float32 runs on every backend in the subset above.
        _check(_full_grid_backend(backend_id), "float64", case)

    @pytest.mark.parametrize("backend_id", FULL_GRID_BACKENDS)
    @pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
    def test_products_per_sample_match_torch(self, backend_id, case, monkeypatch):
        # These images are small enough that "im2col" multiplies all samples at
        # once; the per-sample products of larger images must agree as well.
        monkeypatch.setattr(convolution, "_FOLD", 0)
        _check(_full_grid_backend(backend_id), "float64", case, methods=("im2col",))

    @pytest.mark.parametrize("fold", [True, False], ids=["samples-in-one-product", "per-sample"])
    @pytest.mark.parametrize(
        ("case", "method"),
        [
            (c, m)
            for c in CASES
            if c[0] in ("basic", "stride-2", "large-kernel", "wide-3x3")
            for m in _methods(c[2], c[4])
        ],
        ids=lambda v: v if isinstance(v, str) else v[0],
    )
    def test_output_is_row_major_as_f_conv2d(self, case, method, fold, monkeypatch):
        # User code calls `.view` on a convolution's output (`y.view(N, -1)`), which
        # works on F.conv2d's row-major result and fails on a strided view.
        torch = torch_or_skip()
        if not fold:
            monkeypatch.setattr(convolution, "_FOLD", 0)
        x, w, b, options = _data(case)
        xt, wt = torch.asarray(x), torch.asarray(w)
        native = torch.nn.functional.conv2d(xt, wt, **options)
        for bias in (None, torch.asarray(b)):
            y = mle.conv2d(xt, wt, bias, method=method, **options)
            assert y.is_contiguous() == native.is_contiguous() == True  # noqa: E712
            assert y.view(y.shape[0], -1).shape == native.view(native.shape[0], -1).shape
            yn = mle.conv2d(x, w, None if bias is None else b, method=method, **options)
            assert yn.flags.c_contiguous

    @pytest.mark.parametrize("backend_id", FULL_GRID_BACKENDS)
    @pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
    def test_one_row_tiles_match_torch(self, backend_id, case, monkeypatch):
        # Bands of one output row, one sample per tile: every boundary between the
        # tiles of "shift" and the chunks of "im2col" is crossed.
        monkeypatch.setattr(convolution, "_TILE", 1)
        monkeypatch.setattr(convolution, "_CHUNK", 1)
        _check(_full_grid_backend(backend_id), "float64", case, methods=("im2col", "shift"))

    @pytest.mark.parametrize(
        ("size", "kernel", "stride", "pads"),
        [
            # ceil(9/2) = 5 outputs: total = (5-1)·2 + 3 - 9 = 2 -> (1, 1)
            ((9, 9), (3, 3), (2, 2), ((1, 1), (1, 1))),
            # ceil(10/3) = 4: total = 3·3 + 4 - 10 = 3 -> (1, 2)
            # ceil(8/2) = 4: total = 3·2 + 3 - 8 = 1 -> (0, 1)
            ((10, 8), (4, 3), (3, 2), ((1, 2), (0, 1))),
            # ceil(7/4) = 2: total = 4 + 2 - 7 < 0 -> no padding at all
            ((7, 7), (2, 2), (4, 4), ((0, 0), (0, 0))),
        ],
    )
    def test_same_with_stride_is_tensorflow_rule(self, backend, dtype, size, kernel, stride, pads):
        x, w = RNG.normal(size=(2, 2, *size)), RNG.normal(size=(3, 2, *kernel))
        expected = torch_conv2d(x, w, stride=stride, padding=pads)
        assert expected.shape[-2:] == tuple(-(-n // s) for n, s in zip(size, stride, strict=True))
        for method in ("auto", "fft"):
            out = backend.call(
                mle.conv2d,
                backend.asarray(x, dtype),
                backend.asarray(w, dtype),
                stride=stride,
                padding="same",
                method=method,
            )
            assert_close(out, expected, backend, dtype, **_tolerance(dtype, method))

    def test_integer_input_promotes_to_default_float(self, backend):
        x = backend.asarray(np.arange(2 * 5 * 5).reshape(1, 2, 5, 5))
        w = backend.asarray(np.ones((1, 2, 2, 2), dtype=np.int64))
        out = backend.call(mle.conv2d, x, w)
        default = backend.xp.__array_namespace_info__().default_dtypes(device=backend.device)[
            "real floating"
        ]
        assert out.dtype == default
        if backend.values:
            expected = torch_conv2d(np.arange(50.0).reshape(1, 2, 5, 5), np.ones((1, 2, 2, 2)))
            np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=1e-6)

    def test_half_precision_computes_in_float32(self, backend, half_dtype):
        x, w = RNG.normal(size=(1, 3, 6, 6)), RNG.normal(size=(2, 3, 3, 3))
        xh, wh = backend.asarray(x, half_dtype), backend.asarray(w, half_dtype)
        if backend.values:  # the reference sees the same rounded inputs
            x = np.asarray(backend.to_numpy(xh), dtype=np.float64)
            w = np.asarray(backend.to_numpy(wh), dtype=np.float64)
        out = backend.call(mle.conv2d, xh, wh, padding=1, method="im2col")
        rtol = 1e-2 if half_dtype == "float16" else 5e-2
        assert_close(out, torch_conv2d(x, w, padding=1), backend, half_dtype, rtol=rtol, atol=rtol)


class TestOtherOracles:
    @pytest.mark.parametrize(
        ("options", "lax_options"),
        [
            (
                {"stride": (2, 1), "padding": ((1, 2), (0, 1))},
                {"window_strides": (2, 1), "padding": ((1, 2), (0, 1))},
            ),
            ({"dilation": 2, "groups": 2}, {"rhs_dilation": (2, 2), "feature_group_count": 2}),
            ({"stride": 2, "padding": "same"}, {"window_strides": (2, 2), "padding": "SAME"}),
        ],
        ids=["stride-asymmetric-pad", "dilation-groups", "same-stride"],
    )
    def test_matches_jax_lax(self, backend, dtype, options, lax_options):
        jax = jax_or_skip()
        x, w = (
            RNG.normal(size=(2, 4, 9, 8)),
            RNG.normal(size=(6, 4 // options.get("groups", 1), 3, 3)),
        )
        lax_options.setdefault("window_strides", (1, 1))
        lax_options.setdefault("padding", "VALID")
        expected = np.asarray(
            jax.lax.conv_general_dilated(jax.numpy.asarray(x), jax.numpy.asarray(w), **lax_options)
        )
        out = backend.call(
            mle.conv2d, backend.asarray(x, dtype), backend.asarray(w, dtype), **options
        )
        assert_close(out, expected, backend, dtype, **_tolerance(dtype, "auto"))

    @pytest.mark.parametrize(("mode", "padding"), [("valid", 0), ("full", (3, 2))])
    def test_one_channel_matches_scipy_correlate2d(self, backend, dtype, mode, padding):
        image, kernel = RNG.normal(size=(12, 11)), RNG.normal(size=(4, 3))
        expected = scipy.signal.correlate2d(image, kernel, mode=mode)
        for method in _methods(kernel.shape, {}):
            out = backend.call(
                mle.conv2d,
                backend.asarray(image[None], dtype),
                backend.asarray(kernel[None, None], dtype),
                padding=padding,
                method=method,
            )
            assert_close(out, expected[None], backend, dtype, **_tolerance(dtype, method))


AUTODIFF_OPTIONS = {
    "padded": {"padding": 1},
    "strided-grouped": {"stride": 2, "dilation": (1, 2), "groups": 2},
    "depthwise-same": {"groups": 4, "padding": "same"},
}


class TestAutodiff:
    @pytest.mark.parametrize(
        ("method", "options"),
        [
            pytest.param(method, options, id=f"{method}-{name}")
            for name, options in AUTODIFF_OPTIONS.items()
            for method in _methods((3, 3), options)
        ],
    )
    def test_torch_autograd_matches_f_conv2d(self, method, options):
        torch = torch_or_skip()
        F = torch.nn.functional
        groups = options.get("groups", 1)
        x = torch.asarray(RNG.normal(size=(2, 4, 9, 8)), dtype=torch.float32)
        w = torch.asarray(RNG.normal(size=(4, 4 // groups, 3, 3)), dtype=torch.float32)
        b = torch.asarray(RNG.normal(size=4), dtype=torch.float32)
        r = torch.asarray(RNG.normal(size=F.conv2d(x, w, b, **options).shape), dtype=torch.float32)
        grads = []
        for fn in (
            lambda *a: mle.conv2d(*a, method=method, **options),
            lambda *a: F.conv2d(*a, **options),
        ):
            leaves = [t.detach().clone().requires_grad_(True) for t in (x, w, b)]
            (fn(*leaves) * r).sum().backward()
            grads.append([leaf.grad for leaf in leaves])
        for ours, theirs in zip(*grads, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize(
        ("method", "stride"), [("im2col", 2), ("shift", 2), ("fft", 2), ("winograd", 1)]
    )
    def test_jax_jit_grad_vmap(self, method, stride):
        jax = jax_or_skip()
        jnp = jax.numpy
        x = jnp.asarray(RNG.normal(size=(3, 2, 8, 8)))
        w = jnp.asarray(RNG.normal(size=(4, 2, 3, 3)))
        r = jnp.asarray(RNG.normal(size=(3, 4, 8 // stride, 8 // stride)))

        def conv(x, method=method):
            return mle.conv2d(x, w, stride=stride, padding=1, method=method)

        def ours(x, w):
            return jnp.sum(mle.conv2d(x, w, stride=stride, padding=1, method=method) * r)

        def theirs(x, w):
            y = jax.lax.conv_general_dilated(x, w, (stride, stride), ((1, 1), (1, 1)))
            return jnp.sum(y * r)

        expected = jax.grad(theirs, argnums=(0, 1))(x, w)
        got = jax.jit(jax.grad(ours, argnums=(0, 1)))(x, w)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-9)
        # vmap over unbatched images equals the batched call.
        np.testing.assert_allclose(
            jax.jit(jax.vmap(conv))(x), conv(x, method="im2col"), rtol=1e-9, atol=1e-9
        )


# (method, case) pairs for the traced tests: every algorithm, the gathered im2col with
# every option and with a 7×7 kernel, and "shift" as "auto"'s traced pick for depthwise.
STEM = ("stem", (2, 3, 16, 16), (4, 3, 7, 7), True, {"stride": 2, "padding": 3})
EVERYTHING = CASES[CASE_IDS.index("everything")]
TRACED = [
    ("im2col", EVERYTHING),
    ("im2col", STEM),
    ("fft", EVERYTHING),
    ("winograd", CASES[CASE_IDS.index("padding-int")]),
    ("auto", CASES[CASE_IDS.index("depthwise-x2")]),
]
TRACED_IDS = [f"{method}-{case[0]}" for method, case in TRACED]


def _traced_bound(method, wshape):
    """The most operations a traced conv2d may hold: a handful, a few per band for im2col
    (at most ``_TRACED_BANDS``, which the one-row chunks of these tests force), a few
    per tap for shift.

    The plan before the traced rule unrolled its loops over bands of output rows,
    samples and taps: with the one-row tiles of these tests, the stem's im2col
    traced into 347 FX nodes (616 at the benchmark's 224×224, where inductor took
    409 s to compile it), "shift" into several per tap and output row.
    """
    taps = wshape[-2] * wshape[-1]
    bands = 24 * (convolution._TRACED_BANDS - 1) if method in ("im2col", "auto") else 0
    return 64 + bands + (6 * taps if method in ("shift", "auto") else 0)


class TestTraced:
    """torch.compile and jax.jit trace a small program that gives the eager result."""

    @pytest.fixture(autouse=True)
    def _one_row_tiles(self, monkeypatch):
        # The eager plan's tiles at their smallest, so that a loop over bands, samples
        # or tiles left in the traced plan would show in the size of the program.
        monkeypatch.setattr(convolution, "_TILE", 1)
        monkeypatch.setattr(convolution, "_CHUNK", 1)

    @pytest.mark.parametrize(("method", "case"), TRACED, ids=TRACED_IDS)
    def test_torch_compile_fullgraph_with_parameters(self, method, case):
        torch = torch_or_skip()
        data, options = _data(case)[:3], case[-1]
        oracle = torch.asarray(torch_conv2d(*data, **options))
        x = torch.asarray(data[0], dtype=torch.float64)
        w = torch.nn.Parameter(torch.asarray(data[1], dtype=torch.float64))
        b = None if data[2] is None else torch.nn.Parameter(torch.asarray(data[2]))
        nodes = []

        def counting(gm, example_inputs):
            nodes.append(len(gm.graph.nodes))
            return gm.forward

        torch._dynamo.reset()
        traced = torch.compile(
            lambda x, w, b: mle.conv2d(x, w, b, method=method, **options),
            backend=counting,
            fullgraph=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no graph break, no dynamo warning
            # ... but torch's own notice on tracing any custom autograd.Function (the
            # training rule), hidden outside tests, as pyproject.toml's filter says.
            warnings.filterwarnings(
                "ignore", "<class 'torch.autograd.function.Function'> should not be instantiated"
            )
            got = traced(x, w, b)
        expected = mle.conv2d(x, w, b, method=method, **options)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(got, oracle, rtol=1e-9, atol=1e-9)
        assert len(nodes) == 1
        assert nodes[0] <= _traced_bound(method, w.shape), nodes

    @pytest.mark.parametrize(("method", "case"), TRACED, ids=TRACED_IDS)
    def test_jax_jit(self, method, case):
        jax = jax_or_skip()
        data, options = _data(case)[:3], case[-1]
        oracle = torch_conv2d(*data, **options)
        x, w, b = (None if a is None else jax.numpy.asarray(a) for a in data)

        def conv(x, w, b):
            return mle.conv2d(x, w, b, method=method, **options)

        traced = jax.jit(conv).trace(x, w, b)
        np.testing.assert_allclose(traced.lower().compile()(x, w, b), oracle, rtol=1e-9, atol=1e-9)
        equations = len(traced.jaxpr.eqns)
        assert equations <= _traced_bound(method, w.shape), equations

    def test_traced_rule(self):
        # Kernels of more taps than "shift" may unroll go to the gathered im2col.
        xp = mle._xp.default_namespace()
        depthwise = (8, (1, 1), (3, 3), (1, 1), (1, 1), (56, 56))
        strided_7x7 = (8, (1, 1), (7, 7), (2, 2), (1, 1), (56, 56))
        assert convolution._auto(xp, *depthwise, traced=True) == "shift"
        assert convolution._auto(xp, *strided_7x7) == "shift"
        assert convolution._auto(xp, *strided_7x7, traced=True) == "im2col"


class TestBadInput:
    def _conv(self, x_shape=(1, 4, 8, 8), w_shape=(2, 4, 3, 3), **options):
        return mle.conv2d(np.ones(x_shape), np.ones(w_shape), **options)

    def test_channels_mismatch_names_input_and_weight(self):
        with pytest.raises(ValueError, match=r"`input` has 4 channels but `weight`"):
            self._conv(w_shape=(2, 3, 3, 3))

    def test_groups_must_divide_channels(self):
        with pytest.raises(ValueError, match=r"`groups`=3 must divide"):
            self._conv(w_shape=(3, 1, 3, 3), groups=3)
        with pytest.raises(ValueError, match=r"`groups`=2 must divide"):
            self._conv(w_shape=(3, 2, 3, 3), groups=2)

    def test_kernel_larger_than_padded_input(self):
        with pytest.raises(ValueError, match=r"`weight` spans 9×9 pixels.*padded `input` \(8×8\)"):
            self._conv(w_shape=(2, 4, 5, 5), dilation=2)
        self._conv(x_shape=(1, 4, 3, 3), w_shape=(2, 4, 5, 5), padding=1)  # 5×5 fits in 5×5

    def test_unknown_method_and_padding(self):
        with pytest.raises(ValueError, match=r"`method` must be one of"):
            self._conv(method="direct")
        with pytest.raises(ValueError, match=r'`method`="winograd" needs a 3×3 kernel'):
            self._conv(w_shape=(2, 4, 5, 5), method="winograd")
        with pytest.raises(ValueError, match=r'`method`="winograd" needs .* stride 1'):
            self._conv(dilation=2, method="winograd")
        with pytest.raises(ValueError, match=r"`padding` must be"):
            self._conv(padding="full")
        with pytest.raises(ValueError, match=r"`padding` must be"):
            self._conv(padding=-1)
        with pytest.raises(ValueError, match=r"`padding` must be"):
            self._conv(padding=(1, 2, 3))

    def test_bad_stride_dilation_groups_rank_bias(self):
        with pytest.raises(ValueError, match=r"`stride` must be"):
            self._conv(stride=0)
        with pytest.raises(ValueError, match=r"`dilation` must be"):
            self._conv(dilation=(1, 2, 3))
        with pytest.raises(ValueError, match=r"`groups` must be a positive int"):
            self._conv(groups=0)
        with pytest.raises(ValueError, match=r"`input` must have shape"):
            self._conv(x_shape=(8, 8))
        with pytest.raises(ValueError, match=r"`weight` must have shape"):
            self._conv(w_shape=(4, 3, 3))
        with pytest.raises(ValueError, match=r"`bias` must have shape \(2,\)"):
            mle.conv2d(np.ones((1, 4, 8, 8)), np.ones((2, 4, 3, 3)), np.ones(3))

    def test_mixed_libraries(self):
        torch = torch_or_skip()
        with pytest.raises(TypeError, match="`weight` is a torch array"):
            mle.conv2d(np.ones((1, 1, 4, 4)), torch.ones((1, 1, 2, 2)))
