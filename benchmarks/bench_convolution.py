"""conv2d: the portable algorithms and "auto" beside each backend's native kernel.

Each group ``conv2d[<case>]`` lines up, on one backend, ``method="auto"``, each
forced method (``im2col``, ``shift``, ``fft``, and ``winograd`` on the 3×3
stride-1 cases) and the native baselines:
torch's ``F.conv2d``, ``jax.lax.conv_general_dilated`` under ``jax.jit``, and
for NumPy the best plain-NumPy im2col (``sliding_window_view`` + ``tensordot``,
``einsum`` for grouped kernels) and a SciPy loop (``scipy.signal.correlate``
per image, output channel and input channel). The SciPy loop is timed on a
subset of the (image, output channel) pairs and extrapolated:
``extra_info["extrapolated_s"]`` is the full-size estimate, the table shows the
subset's time.

``extra_info`` holds the effective rate ``gflops`` = 2·N·K·(C/G)·KH·KW·Ho·Wo /
time and ``peak_fraction``, that rate over the backend's float32 matrix-product
rate measured in the same process (``matmul_gflops``).

Full sweep (float32)::

    pytest benchmarks/bench_convolution.py --benchmark-only --benchmark-group-by=group \
        --benchmark-json=convolution.json

Quick check (tiny shapes, one round, seconds)::

    MLEQUATIONS_BENCH_QUICK=1 pytest benchmarks/bench_convolution.py --benchmark-only
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np
import pytest

from mlequations import _bench
from mlequations.convolution import _auto, conv2d

from .bench_attention import compile_and_measure
from .conftest import measure

QUICK = bool(os.environ.get("MLEQUATIONS_BENCH_QUICK"))

# name: (N, C, K, H=W, kernel, stride, padding, groups), from the ladder that
# `mlequations bench` runs too (mlequations._bench), so the two never drift.
CASES = {
    case.label.replace(" ", "-"): (
        case.shapes[0][0],
        case.shapes[0][1],
        case.shapes[1][0],
        case.shapes[0][2],
        case.shapes[1][2],
        case.options["stride"],
        case.options["padding"],
        case.options["groups"],
    )
    for case in _bench.cases("conv2d", quick=QUICK)
}
IMPLS = ["auto", "im2col", "shift", "fft", "winograd", "native", "native-scipy"]
SCIPY_PAIRS = 4 if QUICK else 64  # (image, output channel) pairs the SciPy loop times


def _shapes(case):
    N, C, K, H, k, s, p, g = CASES[case]
    Ho = -(-H // s) if p == "same" else (H + 2 * p - k) // s + 1
    flops = 2.0 * N * K * (C // g) * k * k * Ho * Ho
    options = {"stride": s, "padding": p, "groups": g}
    return (N, C, H, H), (K, C // g, k, k), options, flops, (Ho, Ho)


def _pads(H, k, s, p):
    """Explicit (before, after) pads for the baselines that want them."""
    if p == "same":
        total = max((-(-H // s) - 1) * s + k - H, 0)
        return (total // 2, total - total // 2)
    return (p, p)


def _numpy_im2col(case):
    """The best plain-NumPy im2col: a strided window view, one tensordot (einsum if grouped)."""
    from numpy.lib.stride_tricks import sliding_window_view

    N, C, K, H, k, s, p, g = CASES[case]
    pad = _pads(H, k, s, p)

    def run(x, w):
        xpad = np.pad(x, ((0, 0), (0, 0), pad, pad))
        win = sliding_window_view(xpad, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (N,C,Ho,Wo,k,k)
        if g == 1:
            return np.moveaxis(np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])), 3, 1)
        Ho, Wo = win.shape[2:4]
        win = win.reshape(N, g, C // g, Ho, Wo, k, k)
        wg = w.reshape(g, K // g, C // g, k, k)
        y = np.einsum("ngchwij,gkcij->ngkhw", win, wg, optimize=True)
        return y.reshape(N, K, Ho, Wo)

    return run


def _scipy_loop(case):
    """``scipy.signal.correlate`` over channels, on SCIPY_PAIRS (image, output channel) pairs."""
    import scipy.signal

    N, C, K, H, k, s, p, g = CASES[case]
    pad = _pads(H, k, s, p)
    pairs = [(n, o) for n in range(N) for o in range(K)][:SCIPY_PAIRS]

    def run(x, w):
        xpad = np.pad(x, ((0, 0), (0, 0), pad, pad))
        out = []
        for n, o in pairs:
            gi = o // (K // g)
            acc = 0
            for c in range(C // g):
                acc = acc + scipy.signal.correlate(
                    xpad[n, gi * (C // g) + c], w[o, c], mode="valid"
                )
            out.append(acc[::s, ::s])
        return out

    return run, N * K / len(pairs)


def _native(backend, case):
    *_, s, p, g = CASES[case]
    if backend.library == "torch":
        import torch

        def torch_conv(x, w):
            with torch.no_grad():
                return torch.nn.functional.conv2d(x, w, stride=s, padding=p, groups=g)

        return torch_conv
    if backend.library == "jax":
        import jax

        pad = "SAME" if p == "same" else [(p, p), (p, p)]
        return jax.jit(
            lambda x, w: jax.lax.conv_general_dilated(x, w, (s, s), pad, feature_group_count=g)
        )
    if backend.library == "numpy":
        return _numpy_im2col(case)
    pytest.skip(f"no native convolution baseline for {backend.library}")


def _portable(backend, options, method):
    fn = functools.partial(conv2d, method=method, **options)
    if backend.jit:
        import jax

        return jax.jit(fn)
    if backend.library == "torch":
        import torch

        def no_grad(x, w):
            with torch.no_grad():
                return fn(x, w)

        return no_grad
    return fn


@functools.cache
def _matmul_gflops(backend):
    """The backend's float32 matrix-product rate, timed in this process (best of 5)."""
    n = 256 if QUICK else 2048
    rng = np.random.default_rng(0)
    a, b = (backend.asarray(rng.standard_normal((n, n)), "float32") for _ in range(2))
    fn = lambda x, y: x @ y  # noqa: E731
    if backend.jit:
        import jax

        fn = jax.jit(fn)
    backend.sync(fn(a, b))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        backend.sync(fn(a, b))
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("impl", IMPLS)
def bench_conv2d(benchmark, bench_backend, case, impl):
    xshape, wshape, options, flops, out = _shapes(case)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(xshape, dtype=np.float32)
    w_np = rng.standard_normal(wshape, dtype=np.float32)
    x, w = bench_backend.asarray(x_np, "float32"), bench_backend.asarray(w_np, "float32")
    extra = {}
    if impl == "native-scipy":
        if bench_backend.library != "numpy":
            pytest.skip("the SciPy loop is NumPy's baseline")
        fn, factor = _scipy_loop(case)
        flops /= factor
        extra = {"subset_fraction": 1 / factor, "extrapolated": True}
    elif impl == "native":
        fn = _native(bench_backend, case)
    else:
        if impl == "winograd" and (wshape[2:], options["stride"]) != ((3, 3), 1):
            pytest.skip("winograd is F(4×4, 3×3): 3×3 kernels with stride 1 only")
        fn = _portable(bench_backend, options, impl)
        if impl == "auto":
            channels = (wshape[1], wshape[0] // options["groups"])
            stride = (options["stride"],) * 2
            groups = options["groups"]
            picks = _auto(bench_backend.xp, groups, channels, wshape[2:], stride, (1, 1), out)
            extra["auto_picks"] = picks
    slow = impl in ("shift", "im2col") and case in ("stem-7x7-s2", "large-15x15")
    peak = _matmul_gflops(bench_backend)
    measure(
        benchmark,
        bench_backend,
        fn,
        x,
        w,
        group=f"conv2d[{case}]",
        impl=impl,
        flops=flops,
        rounds=1 if QUICK or slow else 5,
        input_shape=list(xshape),
        weight_shape=list(wshape),
        dtype="float32",
        threads=_threads(bench_backend),
        matmul_gflops=peak,
        **options,
        **extra,
    )
    if benchmark.stats is not None:
        benchmark.extra_info["peak_fraction"] = benchmark.extra_info["gflops"] / peak
        if impl == "native-scipy":
            benchmark.extra_info["extrapolated_s"] = benchmark.stats.stats.min * factor


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][7] == 1])  # dense only
def bench_conv2d_floor(benchmark, bench_backend, case):
    """The one product of an already unfolded patch matrix, beside ``F.conv2d`` (issue 21).

    ``W (K, C·KH·KW) @ patches (C·KH·KW, N·Ho·Wo)``: what ``"im2col"`` computes
    once its patch copy is done, and what no formulation through ``matmul``
    does with less. ``extra_info["ratio_beside"]``, its time over ``F.conv2d``'s
    timed right before each round, is the floor under the portable ratio.
    """
    if bench_backend.library != "torch":
        pytest.skip("the floor is measured against torch's F.conv2d")
    import torch.nn.functional as F

    xshape, wshape, options, flops, _ = _shapes(case)
    rng = np.random.default_rng(0)
    x, w = (
        bench_backend.asarray(rng.standard_normal(shape, dtype=np.float32), "float32")
        for shape in (xshape, wshape)
    )
    K, C, k, _ = wshape
    pad = _pads(xshape[2], k, options["stride"], options["padding"])
    padded = F.pad(x, (*pad, *pad))
    patches = F.unfold(padded, k, stride=options["stride"])  # (N, C·k·k, Ho·Wo)
    patches = patches.transpose(0, 1).reshape(C * k * k, -1).contiguous()
    weights = w.reshape(K, C * k * k).contiguous()
    native = _native(bench_backend, case)
    measure(
        benchmark,
        bench_backend,
        lambda a, b: a @ b,
        weights,
        patches,
        group=f"conv2d[{case}]",
        impl="floor-product",
        flops=flops,
        rounds=1 if QUICK else 5,
        beside=lambda: native(x, w),
        input_shape=list(xshape),
        weight_shape=list(wshape),
        dtype="float32",
        threads=_threads(bench_backend),
    )


def _threads(backend):
    if backend.library == "torch":
        import torch

        return torch.get_num_threads()
    return os.cpu_count()


# --- compiled: torch.compile and jax.jit (issue 19) ----------------------------------
# The cases (the ResNet stem and a ResNet 3x3 layer); the quick run takes the
# first quick case with torch's "eager" backend (see bench_attention).
COMPILED_CASES = [
    c
    for c in _bench.cases("conv2d", quick=QUICK)
    if QUICK or c.label in ("stem 7x7 s2", "resnet 3x3")
][: 1 if QUICK else None]


@pytest.mark.parametrize("case", COMPILED_CASES, ids=[c.id for c in COMPILED_CASES])
@pytest.mark.parametrize("impl", ["portable", "native"])
def bench_conv2d_compiled(benchmark, bench_backend, case, impl):
    """Compile time of the first call (``extra_info["compile_s"]``) and run time after.

    ``method="auto"`` and the native kernel (``F.conv2d``,
    ``conv_general_dilated``) compiled the same way: cold ``torch.compile``
    (default backend) on torch, ``jax.jit`` on JAX; under ``no_grad`` on torch.
    """
    compile_and_measure(benchmark, bench_backend, case, impl, "conv2d-compiled")
