"""Attention: the portable algorithms beside each backend's native kernel.

Each group ``attention[B,H,L,E][causal|full]`` lines up, on one backend, the
portable default, each forced algorithm (plain, query-blocked, blockwise) and
the native baselines: torch's ``scaled_dot_product_attention`` and its plain
math kernel, ``jax.nn.dot_product_attention`` under ``jax.jit``, and for NumPy
the guide's naive formula. ``extra_info["gflops"]`` is the effective rate
4·B·H·L·S·E / time; the group ``matmul-peak`` times a 2048² matrix product per
backend, the "peak" the attention rates are a fraction of.

Full sweep::

    pytest benchmarks/bench_attention.py --benchmark-only --benchmark-group-by=group \
        --benchmark-json=attention.json

Quick check (one small shape, seconds)::

    MLEQUATIONS_BENCH_QUICK=1 pytest benchmarks/bench_attention.py --benchmark-only
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mlequations import _bench
from mlequations.attention import _attention, attention

from .conftest import measure

QUICK = bool(os.environ.get("MLEQUATIONS_BENCH_QUICK"))
# The (B, H, L, E) ladder that `mlequations bench` runs too (mlequations._bench);
# causal and full are parametrised below.
SHAPES = list(dict.fromkeys(case.shapes[0] for case in _bench.cases("attention", quick=QUICK)))
# Forced (query block, key block): see mlequations.attention._attention.
FORCED = {"plain": (None, None), "query-blocked": (64, None), "blockwise": (128, 1024)}
IMPLS = ["default", *FORCED, "native", "native-math"]
# Materialising L×S scores per head (1 GiB at L = S = 16384) is what blocking avoids;
# the formulas that need them are timed only below this length.
MATERIALISED_MAX = 4096


def _inputs(backend, shape, layout_bthe=False):
    B, H, L, E = shape
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((B, H, L, E), dtype=np.float32) for _ in range(3)]
    if layout_bthe:  # jax.nn's (B, T, H, E)
        arrays = [np.ascontiguousarray(np.swapaxes(a, 1, 2)) for a in arrays]
    return [backend.asarray(a, "float32") for a in arrays]


def _native(backend, impl, causal, L):
    """The backend's own kernel for `impl` ("native" or "native-math"), or a skip."""
    if backend.library == "torch":
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        sdpa = torch.nn.functional.scaled_dot_product_attention
        if impl == "native":
            return lambda q, k, v: sdpa(q, k, v, is_causal=causal)
        if L > MATERIALISED_MAX:
            pytest.skip("torch's math kernel materialises L×S scores (1 GiB per head)")

        def math(q, k, v):
            with sdpa_kernel(SDPBackend.MATH):
                return sdpa(q, k, v, is_causal=causal)

        return math
    if backend.library == "jax":
        import jax

        if impl == "native-math":
            pytest.skip("jax.nn.dot_product_attention has one CPU implementation (XLA)")
        return jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal))
    if backend.library == "numpy":
        if impl == "native-math":
            pytest.skip("NumPy has no attention kernel; the guide's formula is `native`")
        if L > MATERIALISED_MAX:
            pytest.skip("the guide's formula materialises L×S scores (1 GiB per head)")

        def guide(q, k, v):  # the guide's naive formula, in NumPy
            scores = q @ np.swapaxes(k, -2, -1) / np.sqrt(np.float32(q.shape[-1]))
            if causal:
                scores = np.where(np.tril(np.ones(scores.shape[-2:], bool)), scores, -np.inf)
            e = np.exp(scores - scores.max(axis=-1, keepdims=True))
            return (e / e.sum(axis=-1, keepdims=True)) @ v

        return guide
    pytest.skip(f"no native attention baseline for {backend.library}")


def _portable(backend, impl, causal, L):
    if impl == "plain" and L > MATERIALISED_MAX:
        pytest.skip("the plain formula materialises L×S scores (1 GiB per head)")
    if backend.jit and impl in ("query-blocked", "blockwise") and L > MATERIALISED_MAX // 4:
        # Python-level blocks unroll into the traced program: thousands of tiles at
        # L = 16384 make XLA's compilation take many minutes (why JAX defaults to plain).
        pytest.skip("forced blocks unroll into a huge XLA program under jax.jit")
    if impl == "default":
        fn = lambda q, k, v: attention(q, k, v, is_causal=causal)  # noqa: E731
    else:
        algorithm = FORCED[impl]
        fn = lambda q, k, v: _attention(  # noqa: E731
            q, k, v, None, causal, None, False, None, algorithm, None
        )
    if backend.jit:
        import jax

        return jax.jit(fn)
    return fn


@pytest.mark.parametrize("shape", SHAPES, ids=[",".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("impl", IMPLS)
def bench_attention(benchmark, bench_backend, shape, causal, impl):
    B, H, L, E = shape
    native = impl.startswith("native")
    if native:
        fn = _native(bench_backend, impl, causal, L)
    else:
        fn = _portable(bench_backend, impl, causal, L)
    args = _inputs(bench_backend, shape, layout_bthe=native and bench_backend.library == "jax")
    flops = 4.0 * B * H * L * L * E  # 2·L·S·E for Q Kᵀ, as much for P V; causal counted full
    run = fn
    if bench_backend.library == "torch":
        import torch

        def run(*a):
            with torch.no_grad():
                return fn(*a)

    measure(
        benchmark,
        bench_backend,
        run,
        *args,
        group=f"attention[{B},{H},{L},{E}][{'causal' if causal else 'full'}]",
        impl=impl,
        flops=flops,
        rounds=3 if L >= 4096 else 5,
        shape=list(shape),
        dtype="float32",
        causal=causal,
        threads=_threads(bench_backend),
    )


def bench_matmul_peak(benchmark, bench_backend):
    """A 2048 × 2048 float32 matrix product: the backend's matmul rate on this machine."""
    n = 256 if QUICK else 2048
    rng = np.random.default_rng(0)
    a, b = (bench_backend.asarray(rng.standard_normal((n, n)), "float32") for _ in range(2))
    fn = lambda x, y: x @ y  # noqa: E731
    if bench_backend.jit:
        import jax

        fn = jax.jit(fn)
    measure(
        benchmark,
        bench_backend,
        fn,
        a,
        b,
        group="matmul-peak",
        impl="matmul",
        flops=2.0 * n**3,
        rounds=5,
        shape=[n, n, n],
        dtype="float32",
        threads=_threads(bench_backend),
    )


def _threads(backend):
    if backend.library == "torch":
        import torch

        return torch.get_num_threads()
    return os.cpu_count()


# --- training: forward + backward ---------------------------------------------------
TRAIN_IMPLS = ["default", "native"]


def _training_step(backend, impl, causal):
    """forward + backward of sum(attention(q, k, v) * w), the gradients of q, k and v."""
    if backend.library == "torch":
        import torch

        sdpa = torch.nn.functional.scaled_dot_product_attention

        def step(q, k, v, w):
            ts = [t.detach().requires_grad_(True) for t in (q, k, v)]
            if impl == "native":
                out = sdpa(*ts, is_causal=causal)
            else:
                out = attention(*ts, is_causal=causal)
            return torch.autograd.grad((out * w).sum(), ts)

        return step
    if backend.library == "jax" and backend.jit:
        import jax

        def loss(q, k, v, w):
            if impl == "native":  # jax.nn's (B, T, H, E) layout, transposed in the program
                t = lambda a: jax.numpy.swapaxes(a, 1, 2)  # noqa: E731
                out = t(jax.nn.dot_product_attention(t(q), t(k), t(v), is_causal=causal))
            else:
                out = attention(q, k, v, is_causal=causal)
            return (out * w).sum()

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    pytest.skip(f"no autodiff to train with on {backend.id}")


@pytest.mark.parametrize("shape", SHAPES, ids=[",".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("impl", TRAIN_IMPLS)
def bench_attention_training(benchmark, bench_backend, shape, causal, impl):
    """One training step's attention: forward and backward, portable beside native."""
    B, H, L, E = shape
    step = _training_step(bench_backend, impl, causal)
    rng = np.random.default_rng(1)
    args = [
        *_inputs(bench_backend, shape),
        bench_backend.asarray(rng.standard_normal(shape, dtype=np.float32), "float32"),
    ]
    extra = {}
    if bench_backend.library == "jax":  # XLA's temporaries for the whole step
        analysis = step.lower(*args).compile().memory_analysis()
        extra["temp_mib"] = analysis.temp_size_in_bytes / 2**20
    measure(
        benchmark,
        bench_backend,
        step,
        *args,
        group=f"attention-training[{B},{H},{L},{E}][{'causal' if causal else 'full'}]",
        impl=impl,
        flops=10.0 * B * H * L * L * E,  # 2 products forward, 5 backward (one recomputed)
        rounds=3 if L >= 4096 else 5,
        shape=list(shape),
        dtype="float32",
        causal=causal,
        threads=_threads(bench_backend),
        **extra,
    )


@pytest.mark.parametrize("shape", SHAPES, ids=[",".join(map(str, s)) for s in SHAPES])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def bench_attention_floor(benchmark, bench_backend, shape, causal):
    """The two matrix products of the default's tiles alone, beside SDPA (issue 21).

    The tiles of the rule's plan (``attention._choose``; on a CPU one head at a
    time in 1024 x 512 tiles, or causal query blocks over all heads, each block's
    keys cut at its diagonal), cut by attention's own ``_query_blocks`` and
    ``_key_blocks``, and in each only ``Q Kᵀ`` and ``P V``:
    no softmax, no mask, no rescaling. ``extra_info["ratio_beside"]``, its time
    over SDPA's timed right before each round, is the floor under the portable
    forward's ratio to SDPA for this tiling.
    """
    if bench_backend.library != "torch":
        pytest.skip("the floor is measured against torch's SDPA")
    import torch

    from mlequations.attention import _choose, _key_blocks, _query_blocks

    B, H, L, E = shape
    inputs = _inputs(bench_backend, shape)
    plan = _choose(L, L, B * H, causal, None, False, bench_backend.xp)
    if plan.per_element:  # one head at a time
        q, k, v = (a.reshape(B * H, 1, L, E) for a in inputs)
    else:  # one step over all heads at once
        q, k, v = (a[None] for a in inputs)

    def products(q, k, v):
        for h in range(q.shape[0]):
            for p0, p1 in _query_blocks(L, plan.rows or L):
                qt = q[h, ..., p0:p1, :]
                for c0, c1 in _key_blocks(L, p0, p1, causal, plan.keys):
                    (qt @ k[h, ..., c0:c1, :].mT) @ v[h, ..., c0:c1, :]
        return q

    sdpa = torch.nn.functional.scaled_dot_product_attention
    measure(
        benchmark,
        bench_backend,
        products,
        q,
        k,
        v,
        group=f"attention[{B},{H},{L},{E}][{'causal' if causal else 'full'}]",
        impl="floor-products",
        flops=4.0 * B * H * L * L * E,
        rounds=3 if L >= 4096 else 5,
        beside=lambda: sdpa(*inputs, is_causal=causal),
        shape=list(shape),
        dtype="float32",
        causal=causal,
        plan=[plan.rows, plan.keys, plan.per_element],
        threads=_threads(bench_backend),
    )


@pytest.mark.parametrize("shape", SHAPES, ids=[",".join(map(str, s)) for s in SHAPES])
def bench_attention_training_floor(benchmark, bench_backend, shape):
    """The seven matrix products of the default tiles alone: what no portable step avoids.

    One head at a time in 1024 x 512 tiles, as the default plan: two products
    forward, five backward (the scores recomputed, dV, dP, dQ, dK), and nothing
    else, no softmax, no mask. Its time over SDPA's whole training step is the
    floor of the portable step's ratio (the benchmarks page).
    """
    if bench_backend.library != "torch":
        pytest.skip("the floor is measured against torch's SDPA")
    B, H, L, E = shape
    q, k, v = (a.reshape(B * H, L, E) for a in _inputs(bench_backend, shape))
    do = q.flip(-2)  # any dO of the output's shape: the products do not look at values
    rows, keys = min(1024, L), min(512, L)

    def products(q, k, v, do):
        for h in range(q.shape[0]):
            for p0 in range(0, L, rows):
                qt, dot = q[h, p0 : p0 + rows], do[h, p0 : p0 + rows]
                for c0 in range(0, L, keys):
                    kt, vt = k[h, c0 : c0 + keys], v[h, c0 : c0 + keys]
                    s = qt @ kt.T
                    s @ vt  # forward
                    s = qt @ kt.T  # backward: the scores recomputed, dV, dP, dQ, dK
                    s.T @ dot
                    dp = dot @ vt.T
                    dp @ kt
                    dp.T @ qt
        return q

    measure(
        benchmark,
        bench_backend,
        products,
        q,
        k,
        v,
        do,
        group=f"attention-training[{B},{H},{L},{E}][full]",
        impl="floor-products",
        flops=14.0 * B * H * L * L * E,
        rounds=3 if L >= 4096 else 5,
        shape=list(shape),
        dtype="float32",
        threads=_threads(bench_backend),
    )


# --- compiled: torch.compile and jax.jit (issue 19) ----------------------------------
# The shapes; the quick run takes the first quick case with torch's "eager"
# backend (dynamo traces, inductor generates no code), so that it stays seconds long.
COMPILED_CASES = [
    c
    for c in _bench.cases("attention", quick=QUICK)
    if QUICK or c.shapes[0] in ((1, 8, 4096, 64), (4, 8, 1024, 64))
][: 1 if QUICK else None]
TORCH_BACKEND = os.environ.get("MLEQUATIONS_BENCH_TORCH_BACKEND", "eager" if QUICK else "inductor")


@pytest.mark.parametrize("case", COMPILED_CASES, ids=[c.id for c in COMPILED_CASES])
@pytest.mark.parametrize("impl", ["portable", "native"])
def bench_attention_compiled(benchmark, bench_backend, case, impl):
    """Compile time of the first call (``extra_info["compile_s"]``) and run time after.

    The portable function and the native kernel (SDPA, ``jax.nn``) compiled the
    same way: ``torch.compile`` (default backend, cold: dynamo reset) on torch,
    ``jax.jit`` on JAX; forward only, under ``no_grad`` on torch.
    """
    compile_and_measure(benchmark, bench_backend, case, impl, "attention-compiled")


def compile_and_measure(benchmark, backend, case, impl, name):
    """Shared by the compiled groups of attention and conv2d (bench_convolution)."""
    import contextlib
    import time

    compiler = _bench.compiler_of(backend, TORCH_BACKEND)
    if compiler is None:
        pytest.skip(f"{backend.id} has no compiler (torch.compile or jax.jit)")
    fn = _bench.kernels(case, backend, jit=False).get(impl)
    if fn is None:
        pytest.skip(f"no native {case.op} kernel on {backend.library}")
    no_grad = contextlib.nullcontext()
    if backend.library == "torch":
        import torch

        no_grad = torch.no_grad()
    with no_grad:
        args = _bench.make_inputs(case, backend)
        compiled = _bench.compile_kernel(fn, backend, TORCH_BACKEND)
        start = time.perf_counter()
        backend.sync(compiled(*args))
        compile_s = time.perf_counter() - start
        measure(
            benchmark,
            backend,
            compiled,
            *args,
            group=f"{name}[{case.label}]",
            impl=impl,
            flops=case.flops,
            rounds=3,
            compiler=compiler,
            compile_s=compile_s,
            shapes=[list(s) for s in case.shapes],
            dtype="float32",
            threads=_threads(backend),
            **case.options,
        )
