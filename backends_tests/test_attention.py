"""attention and multi_head_attention on every backend, against torch's and JAX's kernels."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import mlequations as mle
from mlequations.attention import _attention

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261123)
B, HQ, HKV, L, S, E, EV = 2, 4, 2, 5, 7, 4, 3
Q = RNG.normal(size=(B, HQ, L, E))
K = RNG.normal(size=(B, HQ, S, E))
V = RNG.normal(size=(B, HQ, S, EV))
K_GQA, V_GQA = K[:, :HKV], V[:, :HKV]
BOOL_MASK = RNG.random((HQ, L, S)) > 0.3
FLOAT_MASK = RNG.normal(size=(B, 1, L, S))
# Forced (query block, key block[, per batch element]) plans: plain, query-blocked,
# blockwise (odd and uneven sizes on purpose, so that the last block is short), and
# the same tiles one batch element (head) at a time.
ALGORITHMS = [
    (None, None),
    (2, None),
    (2, 3),
    (3, 2),
    (None, 4),
    (2, None, True),
    (3, 2, True),
    (2, 3, False, True),
    (3, None, False, True),
]


def causal_mask(l_, s_):
    return np.tril(np.ones((l_, s_), dtype=bool))


def sdpa(q, k, v, *, mask=None, is_causal=False, scale=None, enable_gqa=False):
    """torch's scaled_dot_product_attention in float64 (mask and is_causal combined by hand)."""
    torch = torch_or_skip()
    f = torch.nn.functional.scaled_dot_product_attention
    t = [torch.asarray(np.asarray(a, dtype=np.float64)) for a in (q, k, v)]
    if mask is not None and is_causal:
        c = causal_mask(q.shape[-2], k.shape[-2])
        mask = mask & c if mask.dtype == bool else np.where(c, mask, -np.inf)
        is_causal = False
    m = None if mask is None else torch.asarray(mask)
    out = f(*t, attn_mask=m, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
    return out.numpy()


# name: (key, value, options); inputs are Q and these.
CASES = {
    "plain": (K, V, {}),
    "bool-mask": (K, V, {"mask": BOOL_MASK}),
    "float-mask": (K, V, {"mask": FLOAT_MASK}),
    "causal-L<S": (K, V, {"is_causal": True}),
    "causal-L>S": (K[..., :3, :], V[..., :3, :], {"is_causal": True}),
    "scale": (K, V, {"scale": 0.3}),
    "gqa": (K_GQA, V_GQA, {"enable_gqa": True}),
    "gqa-causal-mask": (K_GQA, V_GQA, {"enable_gqa": True, "is_causal": True, "mask": BOOL_MASK}),
    "float-mask-causal": (K, V, {"mask": FLOAT_MASK, "is_causal": True}),
}


def _on(backend, options, dtype):
    out = dict(options)
    if "mask" in out:
        out["mask"] = backend.asarray(out["mask"], dtype)
    return out


def _call(backend, fn, q, k, v, options):
    """Call `fn` with the mask traced (an array argument) on jax-jit, the rest static."""
    mask = options.get("mask")
    rest = {n: o for n, o in options.items() if n != "mask"}
    if mask is None:
        return backend.call(fn, q, k, v, **rest)
    return backend.call(lambda q, k, v, m, **kw: fn(q, k, v, mask=m, **kw), q, k, v, mask, **rest)


class TestAttention:
    def test_known_values(self, backend, dtype):
        # The guide's example.
        q = backend.asarray([[1.0, 0.0], [0.0, 1.0]], dtype)
        k = backend.asarray([[1.0, 1.0], [1.0, 0.0]], dtype)
        v = backend.asarray([[0.0, 1.0], [1.0, 0.0]], dtype)
        expected = [[0.5, 0.5], [0.33023845, 0.66976155]]
        assert_close(backend.call(mle.attention, q, k, v), expected, backend, dtype, atol=1e-7)

    @pytest.mark.parametrize("case", list(CASES))
    def test_matches_torch_sdpa(self, backend, dtype, case):
        k, v, options = CASES[case]
        expected = sdpa(Q, k, v, **options)
        args = [backend.asarray(a, dtype) for a in (Q, k, v)]
        out = _call(backend, mle.attention, *args, _on(backend, options, dtype))
        assert_close(out, expected, backend, dtype)

    @pytest.mark.parametrize("case", ["causal-L<S", "gqa"])
    def test_matches_jax_nn(self, backend, dtype, case):
        jax = jax_or_skip()
        k, _, options = CASES[case]
        v = k  # jax.nn needs Ev = E

        def layout(a):  # (B, H, T, E) → jax.nn's (B, T, H, E)
            return jax.numpy.asarray(np.swapaxes(a, 1, 2))

        mask = options.get("mask")
        expected = jax.nn.dot_product_attention(
            layout(Q),
            layout(k),
            layout(v),
            mask=None if mask is None else jax.numpy.asarray(mask[None]),
            is_causal=options.get("is_causal", False),
        )
        args = [backend.asarray(a, dtype) for a in (Q, k, v)]
        out = _call(backend, mle.attention, *args, _on(backend, options, dtype))
        # jax.nn computes the softmax in float32 even for float64 input.
        tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == "float64" else {}
        assert_close(out, np.swapaxes(np.asarray(expected), 1, 2), backend, dtype, **tol)

    @pytest.mark.parametrize(
        "options",
        [{}, {"is_causal": True}, {"is_causal": True, "mask": True}, {"enable_gqa": True}],
        ids=["full", "causal", "causal-bool-mask", "gqa"],
    )
    def test_default_tiles_of_a_long_sequence_match_sdpa(self, backend, dtype, options):
        # 300 queries: several query blocks in every backend's default tiling (jax too).
        rng = np.random.default_rng(7)
        q, k, v = (rng.normal(size=(1, 4, 300, 8)) for _ in range(3))
        if options.get("enable_gqa"):
            k, v = k[:, :2], v[:, :2]
        if options.get("mask"):
            options = {**options, "mask": rng.random((300, 300)) > 0.2}
        expected = sdpa(q, k, v, **options)
        args = [backend.asarray(a, dtype) for a in (q, k, v)]
        out = _call(backend, mle.attention, *args, _on(backend, options, dtype))
        assert_close(out, expected, backend, dtype)

    def test_causal_rule_halves_rows_then_keys_of_a_large_tile(self, backend, dtype, monkeypatch):
        # A causal tile over _CAUSAL_TILE scores takes half the rows (down to 64), then
        # half the keys (down to 256); a small bound forces both at a small shape.
        if backend.library == "jax":
            pytest.skip("JAX takes the compiled-loop plan, not the CPU tiles")
        attention_module = importlib.import_module("mlequations.attention")
        monkeypatch.setattr(attention_module, "_CAUSAL_TILE", 2**14)
        plan = attention_module._choose(1024, 1024, 2, True, None, False, np)
        assert (plan.rows, plan.keys) == (64, 256)  # from 128 x 1024
        rng = np.random.default_rng(11)
        q, k, v = (rng.normal(size=(1, 2, 1024, 8)) for _ in range(3))
        args = [backend.asarray(a, dtype) for a in (q, k, v)]
        out = _call(backend, mle.attention, *args, _on(backend, {"is_causal": True}, dtype))
        assert_close(out, sdpa(q, k, v, is_causal=True), backend, dtype)

    @pytest.mark.parametrize("case", ["gqa-causal-mask", "float-mask-causal", "causal-L>S"])
    def test_every_algorithm_equals_the_plain_one(self, backend, dtype, case):
        k, v, options = CASES[case]
        args = [backend.asarray(a, dtype) for a in (Q, k, v)]
        opts = _on(backend, options, dtype)
        mask, gqa = opts.get("mask"), opts.get("enable_gqa", False)
        causal = opts.get("is_causal", False)

        def forced(q, k, v, m, *, algorithm):
            return _attention(q, k, v, m, causal, None, gqa, None, algorithm, None)

        plain = backend.call(forced, *args, mask, algorithm=(None, None))
        plain = backend.to_numpy(plain) if backend.values else np.zeros(plain.shape)
        for algorithm in ALGORITHMS[1:]:
            out = backend.call(forced, *args, mask, algorithm=algorithm)
            assert_close(out, plain, backend, dtype)
        public = backend.call(
            lambda q, k, v, m: mle.attention(
                q, k, v, mask=m, is_causal=causal, enable_gqa=gqa, block_size=2
            ),
            *args,
            mask,
        )
        assert_close(public, plain, backend, dtype)

    def test_fully_masked_rows_are_zeros(self, backend, dtype):
        mask = np.ones((L, S), dtype=bool)
        mask[1] = False
        mask[3, :] = False
        additive = np.where(mask, 0.0, -np.inf)
        expected = sdpa(Q, K, V, mask=mask)
        expected[..., [1, 3], :] = 0.0
        args = [backend.asarray(a, dtype) for a in (Q, K, V)]

        def forced(q, k, v, m, *, algorithm):
            return _attention(q, k, v, m, False, None, False, None, algorithm, None)

        for algorithm in [(None, None), (2, None), (2, 3)]:
            for m in (mask, additive):
                out = backend.call(forced, *args, backend.asarray(m, dtype), algorithm=algorithm)
                assert_close(out, expected, backend, dtype)

    def test_leading_axes_broadcast_and_integer_promotion(self, backend):
        q = backend.asarray(np.arange(8).reshape(2, 4) % 3)  # integers, no batch axes
        k = backend.asarray(K[0, :1] > 0)  # booleans, batch (1,)
        v = backend.asarray(V[0, :1], "float32")
        out = backend.call(mle.attention, q, k, v)
        expected = sdpa(
            np.broadcast_to(np.arange(8).reshape(2, 4) % 3, (1, 2, 4)), K[0, :1] > 0, V[0, :1]
        )
        assert_close(out, expected, backend, "float32")

    def test_half_precision_is_finite_and_close_to_float32(self, backend, half_dtype):
        k, v, options = CASES["gqa-causal-mask"]
        args = [backend.asarray(a * 4, half_dtype) for a in (Q, k, v)]
        rounded = [backend.to_numpy(a) for a in args] if backend.values else [Q * 4, k * 4, v * 4]
        expected = sdpa(*rounded, **options)
        for block_size in (None, 2):
            out = _call(
                backend,
                mle.attention,
                *args,
                {**_on(backend, options, half_dtype), "block_size": block_size},
            )
            assert_close(out, expected, backend, half_dtype)
            if backend.values:
                assert np.isfinite(backend.to_numpy(out)).all()


class TestAutodiff:
    @pytest.mark.parametrize("case", ["bool-mask", "float-mask-causal", "gqa-causal-mask"])
    @pytest.mark.parametrize("block_size", [None, 3])
    def test_torch_autograd_matches_sdpa(self, case, block_size):
        torch = torch_or_skip()
        k, v, options = CASES[case]
        weights = torch.asarray(RNG.normal(size=(B, HQ, L, EV)), dtype=torch.float32)
        ours = [torch.asarray(a, dtype=torch.float32, requires_grad=True) for a in (Q, k, v)]
        theirs = [a.detach().clone().requires_grad_(True) for a in ours]
        mask = options.get("mask")
        out = mle.attention(
            *ours,
            mask=None
            if mask is None
            else torch.asarray(mask).to(ours[0].dtype)
            if mask.dtype != bool
            else torch.asarray(mask),
            is_causal=options.get("is_causal", False),
            enable_gqa=options.get("enable_gqa", False),
            block_size=block_size,
        )
        (out * weights).sum().backward()
        if options.get("is_causal") and mask is not None:
            c = causal_mask(L, S)
            mask = mask & c if mask.dtype == bool else np.where(c, mask, -np.inf)
            options = {**options, "is_causal": False}
        ref = torch.nn.functional.scaled_dot_product_attention(
            *theirs,
            attn_mask=None
            if mask is None
            else torch.asarray(mask).to(torch.bool if mask.dtype == bool else torch.float32),
            is_causal=options.get("is_causal", False),
            enable_gqa=options.get("enable_gqa", False),
        )
        (ref * weights).sum().backward()
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)

    def test_torch_gradient_finite_on_fully_masked_rows(self):
        torch = torch_or_skip()
        mask = torch.ones(L, S, dtype=torch.bool)
        mask[2] = False
        for block_size in (None, 2):
            q, k, v = (torch.asarray(a, requires_grad=True) for a in (Q, K, V))
            out = mle.attention(q, k, v, mask=mask, block_size=block_size)
            assert bool((out[..., 2, :] == 0).all())
            out.sum().backward()
            for t in (q, k, v):
                assert bool(torch.isfinite(t.grad).all())

    def test_jax_jit_grad_vmap(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        q, k, v = (jnp.asarray(a) for a in (Q, K_GQA, K_GQA))  # jax.nn needs Ev = E
        # Key 0 always allowed: jax.nn gives a fully masked row the mean of the values, not 0.
        mask = jnp.asarray(BOOL_MASK[None] | (np.arange(S) == 0))

        def ours(q, k, v, block_size=None):
            return mle.attention(
                q, k, v, mask=mask, is_causal=True, enable_gqa=True, block_size=block_size
            )

        def theirs(q, k, v):
            m = jnp.logical_and(mask, jnp.asarray(causal_mask(L, S)))
            out = jax.nn.dot_product_attention(
                jnp.swapaxes(q, 1, 2), jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2), mask=m
            )
            return jnp.swapaxes(out, 1, 2)

        w = jnp.asarray(RNG.normal(size=(B, HQ, L, E)))
        expected = jax.grad(lambda *a: jnp.sum(theirs(*a) * w), argnums=(0, 1, 2))(q, k, v)
        for block_size in (None, 2):
            loss = jax.jit(
                jax.grad(
                    lambda q, k, v, bs=block_size: jnp.sum(ours(q, k, v, bs) * w),
                    argnums=(0, 1, 2),
                )
            )
            for g, e in zip(loss(q, k, v), expected, strict=True):
                # jax.nn takes its softmax in float32 even for float64 input.
                np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        # vmap over the batch axis equals the batched call.
        one = lambda a, b, c: mle.attention(a, b, c, is_causal=True, enable_gqa=True)  # noqa: E731
        np.testing.assert_allclose(jax.vmap(one)(q, k, v), one(q, k, v), rtol=1e-12, atol=1e-12)

    def test_jax_gradient_finite_on_fully_masked_rows(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        mask = np.ones((L, S), dtype=bool)
        mask[0] = False
        for m in (jnp.asarray(mask), jnp.asarray(np.where(mask, 0.0, -np.inf))):
            for block_size in (None, 3):
                g = jax.grad(
                    lambda q, m=m, bs=block_size: jnp.sum(
                        mle.attention(q, jnp.asarray(K), jnp.asarray(V), mask=m, block_size=bs)
                    )
                )(jnp.asarray(Q))
                assert bool(jnp.all(jnp.isfinite(g)))


def test_blockwise_peak_memory_at_16k():
    # The plain formula needs L·S·4 bytes = 1 GiB for the float32 scores alone.
    n, e = 16384, 64
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, n, e), dtype=np.float32) for _ in range(3))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = mle.attention(q, k, v, block_size=512)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out.shape == (1, n, e)
    assert np.isfinite(out[:, :: n // 8]).all()
    print(f"peak extra memory of the blockwise path at L = S = {n}: {peak / 2**20:.1f} MiB")
    assert peak < 64 * 2**20, f"{peak / 2**20:.1f} MiB"


TRAINING_PEAK = textwrap.dedent("""
    import sys, torch
    import mlequations as mle
    from mlequations._bench import peak_rss_mib  # VmHWM: ru_maxrss is inherited across exec
    torch.set_num_threads(2)
    def step(n):
        q, k, v = (torch.randn(1, 1, n, 64, requires_grad=True) for _ in range(3))
        for t in (q, k, v):
            t.grad = torch.zeros_like(t)  # the gradients count with the inputs
        return q, k, v
    def train(q, k, v):
        mle.attention(q, k, v).sum().backward()
    train(*step(256))  # warm: threads, allocator, imports
    q, k, v = step(16384)
    before = peak_rss_mib()
    train(q, k, v)
    after = peak_rss_mib()
    assert bool(torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all())
    print(after - before)
""")


def test_training_peak_memory_at_16k_on_torch():
    # The saved state is O(L): autograd recording the tiles took 3.1 GB here.
    torch_or_skip()
    # Large blocks go straight to mmap and back, so that the peak RSS measures the
    # arrays alive at once rather than what glibc's heap keeps after freeing them.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(
        [sys.executable, "-c", TRAINING_PEAK], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    peak = float(result.stdout.split()[-1])
    print(f"peak extra memory of forward + backward at L = S = 16384: {peak:.1f} MiB")
    assert peak < 64, f"{peak:.1f} MiB"


def test_training_temporary_memory_at_16k_under_jax_jit():
    # XLA ran unrolled query blocks side by side: 2.8 GB; jax.nn's dense formula: 3 GB.
    jax = jax_or_skip()
    shape = jax.ShapeDtypeStruct((1, 1, 16384, 64), jax.numpy.float32)
    for causal in (False, True):
        loss = jax.grad(
            lambda q, k, v, c=causal: mle.attention(q, k, v, is_causal=c).sum(), argnums=(0, 1, 2)
        )
        analysis = jax.jit(loss).lower(shape, shape, shape).compile().memory_analysis()
        temp = analysis.temp_size_in_bytes / 2**20
        print(f"temporary memory of jit(grad) at L = S = 16384, causal={causal}: {temp:.1f} MiB")
        assert temp < 64, f"{temp:.1f} MiB"


SHARDED_TRAINING = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import mlequations as mle

    mesh = jax.make_mesh((2, 4), ("batch", "heads"), axis_types=(AxisType.Auto,) * 2)
    split = NamedSharding(mesh, P("batch", "heads"))
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((4, 8, 64, 16)), jnp.float32) for _ in range(3))
    grad = jax.jit(jax.grad(
        lambda q, k, v: jnp.sum(mle.attention(q, k, v, is_causal=True) ** 2), argnums=(0, 1, 2)
    ))
    single = grad(q, k, v)
    sharded = grad(*(jax.device_put(a, split) for a in (q, k, v)))
    print(json.dumps({
        "max_abs_diff": max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(sharded, single)),
        "devices": [len(g.sharding.device_set) for g in sharded],
        "specs": [str(g.sharding.spec) for g in sharded],
        "shards": [list(g.addressable_shards[0].data.shape) for g in sharded],
    }))
""")


def test_sharded_jax_gradients_on_8_host_devices():
    # Batch and heads split over a 2 x 4 mesh: the gradients stay split like the inputs.
    jax_or_skip()
    result = subprocess.run(
        [sys.executable, "-c", SHARDED_TRAINING], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == [8, 8, 8], report
    assert all("'batch'" in s and "'heads'" in s for s in report["specs"]), report
    assert report["shards"] == [[2, 2, 64, 16]] * 3, report
    assert report["max_abs_diff"] <= 1e-5, report


class TestBadInput:
    def test_head_dims_differ(self):
        with pytest.raises(ValueError, match="`key` must have the head dimension E = 4"):
            mle.attention(Q, K[..., :3], V)

    def test_value_length_differs(self):
        with pytest.raises(ValueError, match="`value` must have the S = 7 rows"):
            mle.attention(Q, K, V[..., :6, :])

    def test_mask_does_not_broadcast(self):
        with pytest.raises(ValueError, match=r"`mask` of shape \(5, 6\) does not broadcast"):
            mle.attention(Q, K, V, mask=np.ones((L, 6), dtype=bool))

    def test_integer_mask(self):
        with pytest.raises(TypeError, match="`mask` must be boolean or real floating"):
            mle.attention(Q, K, V, mask=np.ones((L, S), dtype=np.int64))

    def test_gqa_heads_do_not_divide(self):
        with pytest.raises(ValueError, match=r"`enable_gqa`.*multiple"):
            mle.attention(Q, K[:, :3], V[:, :3], enable_gqa=True)

    def test_heads_differ_without_gqa(self):
        with pytest.raises(ValueError, match=r"do not broadcast.*`query`"):
            mle.attention(Q, K_GQA, V_GQA)

    @pytest.mark.parametrize("block_size", [0, -1, 2.5, True])
    def test_bad_block_size(self, block_size):
        with pytest.raises(ValueError, match="`block_size` must be a positive int"):
            mle.attention(Q, K, V, block_size=block_size)

    def test_mixed_libraries(self):
        torch = torch_or_skip()
        with pytest.raises(TypeError, match="`key` is a torch array"):
            mle.attention(Q, torch.asarray(K), V)


# --- multi_head_attention ---------------------------------------------------------
D, HEADS, DK, DV, DO = 6, 2, 5, 4, 3
XQ = RNG.normal(size=(B, L, D))
XK = RNG.normal(size=(B, S, D))
XV = RNG.normal(size=(B, S, D))
WEIGHTS = {
    "w_q": RNG.normal(size=(D, D)) / 2,
    "w_k": RNG.normal(size=(D, D)) / 2,
    "w_v": RNG.normal(size=(D, D)) / 2,
    "w_o": RNG.normal(size=(D, D)) / 2,
    "b_q": RNG.normal(size=(D,)),
    "b_k": RNG.normal(size=(D,)),
    "b_v": RNG.normal(size=(D,)),
    "b_o": RNG.normal(size=(D,)),
}
MHA_MASK = RNG.random((L, S)) > 0.3


def torch_mha(xq, xk, xv, *, mask=None, is_causal=False, bias=True):
    """torch.nn.MultiheadAttention (batch_first) with WEIGHTS, in float64."""
    torch = torch_or_skip()
    mha = torch.nn.MultiheadAttention(D, HEADS, bias=bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        w = WEIGHTS
        mha.in_proj_weight.copy_(torch.asarray(np.concatenate([w["w_q"], w["w_k"], w["w_v"]])))
        mha.out_proj.weight.copy_(torch.asarray(w["w_o"]))
        if bias:
            mha.in_proj_bias.copy_(torch.asarray(np.concatenate([w["b_q"], w["b_k"], w["b_v"]])))
            mha.out_proj.bias.copy_(torch.asarray(w["b_o"]))
        allowed = np.ones((L, S), dtype=bool) if mask is None else mask
        if is_causal:
            allowed = allowed & causal_mask(L, S)
        # torch's attn_mask marks the keys that may NOT be attended (True = masked out).
        attn_mask = None if allowed.all() else torch.asarray(~allowed)
        out, _ = mha(
            *(torch.asarray(a) for a in (xq, xk, xv)), attn_mask=attn_mask, need_weights=False
        )
    return out.numpy()


class TestMultiHeadAttention:
    @pytest.mark.parametrize(
        ("case", "options"),
        [
            ("self", {}),
            ("cross", {}),
            ("mask", {"mask": MHA_MASK}),
            ("causal", {"is_causal": True}),
            ("no-bias", {}),
        ],
    )
    def test_matches_torch(self, backend, dtype, case, options):
        xq, xk, xv = (XQ, XQ, XQ) if case in ("self", "causal") else (XQ, XK, XV)
        if case == "causal":
            xk = xv = XK[:, :S]
        bias = case != "no-bias"
        expected = torch_mha(xq, xk, xv, bias=bias, **options)
        weights = {
            n: backend.asarray(w, dtype) for n, w in WEIGHTS.items() if bias or n.startswith("w_")
        }
        args = [backend.asarray(a, dtype) for a in (xq, xk, xv)]
        mask = options.get("mask")
        names = list(weights)

        def run(xq, xk, xv, m, *ws):
            return mle.multi_head_attention(
                xq,
                xk,
                xv,
                num_heads=HEADS,
                mask=m,
                is_causal=options.get("is_causal", False),
                **dict(zip(names, ws, strict=True)),
            )

        m = None if mask is None else backend.asarray(mask)
        out = backend.call(run, *args, m, *weights.values())
        assert_close(out, expected, backend, dtype)

    def test_different_input_widths(self, backend, dtype):
        # kdim/vdim differ from the embedding width: reference by hand in float64.
        xk, xv = RNG.normal(size=(B, S, DK)), RNG.normal(size=(B, S, DV))
        wk, wv, wo = (
            RNG.normal(size=(D, DK)),
            RNG.normal(size=(D, DV)),
            RNG.normal(size=(DO, D)),
        )
        q = (XQ @ WEIGHTS["w_q"].T).reshape(B, L, HEADS, -1).transpose(0, 2, 1, 3)
        k = (xk @ wk.T).reshape(B, S, HEADS, -1).transpose(0, 2, 1, 3)
        v = (xv @ wv.T).reshape(B, S, HEADS, -1).transpose(0, 2, 1, 3)
        expected = sdpa(q, k, v).transpose(0, 2, 1, 3).reshape(B, L, D) @ wo.T
        arrays = [backend.asarray(a, dtype) for a in (XQ, xk, xv, WEIGHTS["w_q"], wk, wv, wo)]

        def run(xq, xk, xv, w_q, w_k, w_v, w_o):
            return mle.multi_head_attention(
                xq, xk, xv, num_heads=HEADS, w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o
            )

        assert_close(backend.call(run, *arrays), expected, backend, dtype)

    def test_bad_input(self):
        w = {n: WEIGHTS[n] for n in ("w_q", "w_k", "w_v", "w_o")}
        with pytest.raises(ValueError, match="`num_heads` = 4 must divide"):
            mle.multi_head_attention(XQ, XK, XV, num_heads=4, **w)
        with pytest.raises(ValueError, match="`w_k` must have shape"):
            mle.multi_head_attention(XQ, XK, XV, num_heads=2, **{**w, "w_k": w["w_k"][:, :5]})
        with pytest.raises(ValueError, match="`b_o` must have shape"):
            mle.multi_head_attention(XQ, XK, XV, num_heads=2, **w, b_o=np.ones(2))


# --- the backward pass --------------------------------------------------------------
DOUT = RNG.normal(size=(B, HQ, L, EV))  # dL/dO for every gradient test
FULLY_MASKED = np.ones((L, S), dtype=bool)
FULLY_MASKED[[1, 3]] = False  # two query rows that may attend to no key
BACKWARD_CASES = {
    **CASES,
    "fully-masked-rows": (K, V, {"mask": FULLY_MASKED}),
    "fully-masked-float": (K, V, {"mask": np.where(FULLY_MASKED, FLOAT_MASK, -np.inf)}),
}


def sdpa_grads(q, k, v, dout, *, mask=None, is_causal=False, scale=None, enable_gqa=False):
    """dQ, dK, dV (and the float mask's) through torch SDPA's autograd, in float64.

    torch gives a row with no key to attend NaN; its gradients are zero by our
    convention, which equals SDPA's on the same problem with that row allowed
    everywhere and its output gradient zero.
    """
    torch = torch_or_skip()
    dout = np.array(dout, dtype=np.float64)
    if mask is not None:
        allowed = mask if mask.dtype == bool else np.isfinite(mask)
        if is_causal:
            allowed = allowed & causal_mask(q.shape[-2], k.shape[-2])
        empty = ~np.broadcast_to(allowed, (*dout.shape[:-1], k.shape[-2])).any(axis=-1)
        dout[empty] = 0.0
        if empty.any():  # the mask's own rows that are empty (emptiness follows the mask)
            rows = empty.any(axis=tuple(range(empty.ndim - mask.ndim + 1)))
            ones = tuple(i for i, n in enumerate(mask.shape[:-1]) if n == 1)
            rows = rows.any(axis=ones, keepdims=True) if ones else rows
            fill = True if mask.dtype == bool else 0.0
            mask = np.where(rows[..., None], fill, mask)
    t = [torch.asarray(np.asarray(a, dtype=np.float64)).requires_grad_(True) for a in (q, k, v)]
    m = None if mask is None else torch.asarray(mask)
    if m is not None and m.dtype != torch.bool:
        m = m.double().requires_grad_(True)
    attn_mask = m
    if m is not None and is_causal:
        c = torch.asarray(causal_mask(q.shape[-2], k.shape[-2]))
        attn_mask = m & c if m.dtype == torch.bool else m.masked_fill(~c, -torch.inf)
        is_causal = False
    out = torch.nn.functional.scaled_dot_product_attention(
        *t, attn_mask=attn_mask, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa
    )
    out.backward(torch.asarray(dout))
    dmask = None if m is None or m.dtype == torch.bool else m.grad.numpy()
    return (*(a.grad.numpy() for a in t), dmask)


class TestBackward:
    @pytest.mark.parametrize("case", list(BACKWARD_CASES))
    def test_attention_backward_matches_sdpa_autograd(self, backend, dtype, case):
        k, v, options = BACKWARD_CASES[case]
        expected = sdpa_grads(Q, k, v, DOUT, **options)
        args = [backend.asarray(a, dtype) for a in (DOUT, Q, k, v)]
        opts = _on(backend, options, dtype)
        mask = opts.pop("mask", None)
        grads = backend.call(
            lambda do, q, k, v, m, **o: mle.attention_backward(do, q, k, v, mask=m, **o),
            *args,
            mask,
            **opts,
        )
        for got, want in zip(grads[:3], expected[:3], strict=True):
            assert_close(got, want, backend, dtype)
        if expected[3] is None:
            assert grads.dmask is None
        else:  # summed over the heads the (B, 1, L, S) mask was broadcast along
            assert_close(grads.dmask, expected[3], backend, dtype)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    @pytest.mark.parametrize(
        "case", ["float-mask-causal", "gqa-causal-mask", "causal-L>S", "fully-masked-float"]
    )
    def test_every_algorithm_trains_like_sdpa(self, case, algorithm, dtype):
        torch = torch_or_skip()
        k, v, options = BACKWARD_CASES[case]
        expected = sdpa_grads(Q, k, v, DOUT, **options)
        ours = [
            torch.asarray(a, dtype=getattr(torch, dtype), requires_grad=True) for a in (Q, k, v)
        ]
        mask = options.get("mask")
        m = None if mask is None else torch.asarray(mask)
        if m is not None and m.dtype != torch.bool:
            m = m.to(ours[0].dtype).requires_grad_(True)
        out = _attention(
            *ours,
            m,
            options.get("is_causal", False),
            None,
            options.get("enable_gqa", False),
            None,
            algorithm,
            None,
        )
        out.backward(torch.asarray(DOUT, dtype=out.dtype))
        tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == "float32" else {"rtol": 1e-10, "atol": 1e-12}
        for a, e in zip([*ours, m], expected, strict=True):
            if e is not None:
                np.testing.assert_allclose(a.grad.double().numpy(), e, **tol)

    def test_torch_gradcheck_float64(self):
        torch = torch_or_skip()
        rng = np.random.default_rng(3)
        q = torch.asarray(rng.normal(size=(1, 4, 5, 3)), requires_grad=True)
        k, v = (torch.asarray(rng.normal(size=(1, 2, 6, 3)), requires_grad=True) for _ in range(2))
        bias = torch.asarray(rng.normal(size=(4, 5, 6)), requires_grad=True)  # per head, ALiBi-like

        def f(q, k, v, bias):
            return mle.attention(q, k, v, mask=bias, is_causal=True, enable_gqa=True, block_size=2)

        assert torch.autograd.gradcheck(f, (q, k, v, bias))

    def test_double_backward_works(self):
        # create_graph=True records the backward pass itself (recomputed from the inputs).
        torch = torch_or_skip()
        rng = np.random.default_rng(4)
        q, k, v = (torch.asarray(rng.normal(size=(2, 2, 4, 3)), requires_grad=True) for _ in "qkv")
        bias = torch.asarray(rng.normal(size=(4, 4)), requires_grad=True)

        def f(q, k, v, bias):
            return mle.attention(q, k, v, mask=bias, is_causal=True, block_size=2)

        assert torch.autograd.gradgradcheck(f, (q, k, v, bias))

    def test_torch_compile_and_torch_func(self):
        torch = torch_or_skip()
        q, k, v = (torch.nn.Parameter(torch.asarray(a, dtype=torch.float32)) for a in (Q, K, V))
        mask = torch.asarray(BOOL_MASK)

        def loss(q, k, v):
            return (mle.attention(q, k, v, mask=mask, is_causal=True) ** 2).sum()

        loss(q, k, v).backward()
        eager = [t.grad.clone() for t in (q, k, v)]
        for t in (q, k, v):
            t.grad = None
        compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")  # forward + backward
        compiled(q, k, v).backward()
        for t, e in zip((q, k, v), eager, strict=True):
            torch.testing.assert_close(t.grad, e, rtol=1e-5, atol=1e-6)
        grad = torch.func.grad(loss, argnums=(0, 1, 2))(*(t.detach() for t in (q, k, v)))
        for g, e in zip(grad, eager, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
        # vmap over the batch axis: per-sample gradients equal the batched ones.
        per_sample = torch.func.vmap(torch.func.grad(loss))(*(t.detach() for t in (q, k, v)))
        torch.testing.assert_close(per_sample, eager[0], rtol=1e-5, atol=1e-6)

    def test_compiled_causal_blocks_halved_under_the_mapped_size(self, monkeypatch):
        # Long causal sequences under torch.compile take up to twice the blocks, until
        # a block's scores fit _MAPPED: small constants force it at a small shape.
        torch = torch_or_skip()
        import torch.nn.functional as F

        attention_module = importlib.import_module("mlequations.attention")
        monkeypatch.setattr(attention_module, "_SMALL", 0)
        monkeypatch.setattr(attention_module, "_TRACED_TILE", 2**12)
        rows = attention_module._choose(512, 512, 2, True, None, True, np).rows
        monkeypatch.setattr(attention_module, "_MAPPED", 2**13)
        halved = attention_module._choose(512, 512, 2, True, None, True, np).rows
        assert (rows, halved) == (64, 16)  # 8 blocks, then 32: this test's path is taken
        rng = np.random.default_rng(7)
        q, k, v, do = (torch.asarray(rng.normal(size=(1, 2, 512, 8)), dtype=torch.float32)
                       for _ in range(4))  # fmt: skip

        def grads(attend):
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            out = attend(*leaves)
            return (out, *torch.autograd.grad(out, leaves, do))

        ours = torch.compile(
            lambda q, k, v: mle.attention(q, k, v, is_causal=True),
            fullgraph=True,
            backend="aot_eager",
        )
        native = grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        for got, want in zip(grads(ours), native, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)

    def test_no_grad_and_inference_skip_the_autograd_function(self):
        torch = torch_or_skip()
        q, k, v = (torch.asarray(a, requires_grad=True) for a in (Q, K, V))
        with torch.no_grad():
            assert mle.attention(q, k, v).grad_fn is None
        assert type(mle.attention(q, k, v).grad_fn).__name__ == "RuleBackward"

    def test_half_precision_gradients(self, backend, half_dtype):
        if backend.library not in ("torch", "jax"):
            pytest.skip("autodiff exists in torch and JAX")
        k, v, options = BACKWARD_CASES["gqa-causal-mask"]
        args = [backend.asarray(a, half_dtype) for a in (DOUT, Q, k, v)]
        rounded = [backend.to_numpy(a) for a in args] if backend.values else [DOUT, Q, k, v]
        expected = sdpa_grads(*rounded[1:], rounded[0], **options)
        mask = backend.asarray(options["mask"])
        grads = backend.call(
            lambda do, q, k, v, m: mle.attention_backward(
                do, q, k, v, mask=m, is_causal=True, enable_gqa=True
            ),
            *args,
            mask,
        )
        for got, want in zip(grads[:3], expected[:3], strict=True):
            assert_close(got, want, backend, half_dtype, rtol=5e-2, atol=5e-2)

    def test_jax_grad_of_a_float_bias_matches_jax_nn(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        q, k = jnp.asarray(Q), jnp.asarray(K_GQA)
        bias = jnp.asarray(RNG.normal(size=(1, HQ, L, S)))  # a learned per-head bias
        w = jnp.asarray(RNG.normal(size=(B, HQ, L, E)))

        def ours(q, k, v, bias):
            return jnp.sum(mle.attention(q, k, v, mask=bias, enable_gqa=True) * w)

        def theirs(q, k, v, bias):
            t = lambda a: jnp.swapaxes(a, 1, 2)  # noqa: E731 - jax.nn's (B, T, N, H)
            return jnp.sum(t(jax.nn.dot_product_attention(t(q), t(k), t(v), bias=bias)) * w)

        expected = jax.grad(theirs, argnums=(0, 1, 2, 3))(q, k, k, bias)
        for fn in (jax.grad(ours, argnums=(0, 1, 2, 3)), jax.jit(jax.grad(ours, (0, 1, 2, 3)))):
            for g, e in zip(fn(q, k, k, bias), expected, strict=True):
                np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)  # jax.nn: float32 softmax
        # jax.checkpoint recomputes the forward in the backward pass: same gradients.
        remat = jax.grad(jax.checkpoint(ours), argnums=(0, 1, 2, 3))(q, k, k, bias)
        for g, e in zip(remat, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        # vmap of the gradient over the batch axis equals the batched gradient.
        per_sample = jax.vmap(jax.grad(lambda q, k, v: jnp.sum(mle.attention(q, k, v) ** 2)))
        batched = jax.grad(lambda q, k, v: jnp.sum(mle.attention(q, k, v) ** 2))
        args = (jnp.asarray(Q), jnp.asarray(K), jnp.asarray(V))
        np.testing.assert_allclose(per_sample(*args), batched(*args), rtol=1e-12, atol=1e-12)


class TestMultiHeadAttentionTrains:
    def test_weight_gradients_match_torch(self):
        torch = torch_or_skip()
        mha = torch.nn.MultiheadAttention(D, HEADS, batch_first=True, dtype=torch.float64)
        x, mem = torch.asarray(XQ), torch.asarray(XK)
        allowed = MHA_MASK & causal_mask(L, S)
        theirs, _ = mha(x, mem, mem, attn_mask=torch.asarray(~allowed), need_weights=False)
        theirs.backward(torch.asarray(DOUT[:, 0, :, :1].repeat(D, axis=-1)))
        w_q, w_k, w_v = (
            p.detach().clone().requires_grad_(True) for p in mha.in_proj_weight.chunk(3)
        )
        b_q, b_k, b_v = (p.detach().clone().requires_grad_(True) for p in mha.in_proj_bias.chunk(3))
        w_o = mha.out_proj.weight.detach().clone().requires_grad_(True)
        b_o = mha.out_proj.bias.detach().clone().requires_grad_(True)
        ours = mle.multi_head_attention(
            x, mem, mem, num_heads=HEADS, w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o,
            b_q=b_q, b_k=b_k, b_v=b_v, b_o=b_o, mask=torch.asarray(MHA_MASK), is_causal=True,
        )  # fmt: skip
        ours.backward(torch.asarray(DOUT[:, 0, :, :1].repeat(D, axis=-1)))
        torch.testing.assert_close(ours, theirs)
        w_in = torch.cat([w_q.grad, w_k.grad, w_v.grad])
        b_in = torch.cat([b_q.grad, b_k.grad, b_v.grad])
        torch.testing.assert_close(w_in, mha.in_proj_weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(b_in, mha.in_proj_bias.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(w_o.grad, mha.out_proj.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(b_o.grad, mha.out_proj.bias.grad, rtol=1e-10, atol=1e-12)


# Dropout. The mask is specified, not sampled: weight (n, i, j) of the flattened batch
# and head n, query row i and key column j is kept when the low 31 bits of
# mix(mix(mix(mix(seed) ^ n) ^ i) ^ j) are at least round(p·2³¹), with mix = lowbias32.
# The reference below computes it in plain uint64 NumPy, apart from the library's int32 code.
_WORD = np.uint64(0xFFFFFFFF)


def _lowbias32(x):
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & _WORD
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & _WORD
    return x ^ (x >> np.uint64(16))


def dropout_keep(seed, p, heads, rows, cols):
    """The documented keep mask, shape (heads, rows, cols), for a Python int seed."""
    u64 = np.uint64
    head = _lowbias32(_lowbias32(u64(seed % 2**32)) ^ np.arange(heads, dtype=u64))
    row = _lowbias32(head[:, None] ^ np.arange(rows, dtype=u64)[None, :])
    h = _lowbias32(row[:, :, None] ^ np.arange(cols, dtype=u64)[None, None, :])
    return (h & u64(0x7FFFFFFF)) >= u64(round(p * 2**31))


def kept_by(backend, dtype, shape, p, seed, **options):
    """The mask an attention call keeps, read off with zero scores and identity values.

    With Q = K = 0 every weight is 1/S, so the output is Z / ((1 - p)·S): the keep mask
    Z itself, up to a known factor.
    """
    *batch, L, S = shape
    q = backend.asarray(np.zeros((*batch, L, 1)), dtype)
    k = backend.asarray(np.zeros((*batch, S, 1)), dtype)
    v = backend.asarray(np.broadcast_to(np.eye(S), (*batch, S, S)).copy(), dtype)
    out = backend.call(mle.attention, q, k, v, dropout_p=p, dropout_seed=seed, **options)
    if not backend.values:  # torch's meta device: the call ran, on that device, nothing to read
        assert tuple(out.shape) == tuple(shape)
        assert str(out.device) == "meta"
        return None
    out = backend.to_numpy(out)
    kept = out > 0
    np.testing.assert_allclose(out[kept], 1.0 / ((1.0 - p) * S), rtol=1e-6)
    return kept


class TestDropout:
    SHAPE = (2, 3, 33, 40)  # several query and key blocks under the forced plans

    def test_mask_is_the_documented_hash_on_every_backend(self, backend, dtype):
        seed, p = 2**40 + 12345, 0.3  # a seed above 2³²: its low 32 bits count
        kept = kept_by(backend, dtype, self.SHAPE, p, seed)
        if kept is None:
            return
        expected = dropout_keep(seed, p, 6, *self.SHAPE[-2:]).reshape(self.SHAPE)
        np.testing.assert_array_equal(kept, expected)

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    def test_mask_does_not_depend_on_the_tiling(self, algorithm):
        *batch, L, S = self.SHAPE
        q, k = np.zeros((*batch, L, 1)), np.zeros((*batch, S, 1))
        v = np.broadcast_to(np.eye(S), (*batch, S, S))
        out = _attention(
            q, k, v, None, False, None, False, None, algorithm, None, dropout_p=0.5, dropout_seed=7
        )
        expected = dropout_keep(7, 0.5, 6, L, S).reshape(self.SHAPE)
        np.testing.assert_array_equal(out > 0, expected)

    @pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
    def test_kept_fraction_is_one_minus_p_within_binomial_error(self, p):
        from mlequations._backends import by_id

        kept = kept_by(by_id("numpy"), "float64", (4, 256, 256), p, 2026)
        n = kept.size
        sigma = np.sqrt(p * (1 - p) / n)
        assert abs(kept.mean() - (1 - p)) < 5 * sigma
        # Neighbours are independent: both kept at the rate (1 - p)², along rows and columns.
        for pair in (kept[..., 1:] & kept[..., :-1], kept[..., 1:, :] & kept[..., :-1, :]):
            q2 = (1 - p) ** 2
            assert abs(pair.mean() - q2) < 5 * np.sqrt(q2 * (1 - q2) / pair.size)
        # Another seed gives another mask: agreement at p² + (1 - p)², not 1.
        other = kept_by(by_id("numpy"), "float64", (4, 256, 256), p, 2027)
        agree = p**2 + (1 - p) ** 2
        assert abs((kept == other).mean() - agree) < 5 * np.sqrt(agree * (1 - agree) / n)

    def test_p_one_drops_everything_and_p_zero_needs_no_seed(self):
        rng = np.random.default_rng(0)
        q, k, v = (rng.normal(size=(2, 5, 3)) for _ in range(3))
        np.testing.assert_array_equal(mle.attention(q, k, v, dropout_p=1.0, dropout_seed=1), 0.0)
        np.testing.assert_array_equal(mle.attention(q, k, v, dropout_p=0.0), mle.attention(q, k, v))

    def test_seed_arrays_give_the_mask_of_their_int(self):
        torch, jax = torch_or_skip(), jax_or_skip()
        seed, p = 2**40 + 99, 0.25
        q, k = np.zeros((3, 9, 1)), np.zeros((3, 11, 1))
        v = np.broadcast_to(np.eye(11), (3, 11, 11)).copy()
        expected = dropout_keep(seed, p, 3, 9, 11)
        got = [
            mle.attention(q, k, v, dropout_p=p, dropout_seed=np.asarray(seed)),
            mle.attention(
                *map(torch.asarray, (q, k, v)), dropout_p=p, dropout_seed=torch.tensor(seed)
            ),
            jax.jit(lambda q, k, v, s: mle.attention(q, k, v, dropout_p=p, dropout_seed=s))(
                q,
                k,
                v,
                jax.numpy.asarray(seed % 2**32, dtype=jax.numpy.int32),  # 99: < 2³¹
            ),
        ]
        for out in got:
            np.testing.assert_array_equal(np.asarray(out) > 0, expected)

    @pytest.mark.parametrize("algorithm", [None, *ALGORITHMS])
    @pytest.mark.parametrize("case", ["float-mask-causal", "gqa-causal-mask", "plain"])
    def test_gradients_equal_autograd_through_the_same_mask(self, case, algorithm):
        torch = torch_or_skip()
        k_np, v_np, options = BACKWARD_CASES[case]
        p, seed = 0.4, 31
        keep = dropout_keep(seed, p, B * HQ, L, S).reshape(B, HQ, L, S)
        q, k, v = (torch.asarray(a, requires_grad=True) for a in (Q, k_np, v_np))
        mask = options.get("mask")
        m = None if mask is None else torch.asarray(mask)
        if m is not None and m.dtype != torch.bool:
            m.requires_grad_(True)
        causal, gqa = options.get("is_causal", False), options.get("enable_gqa", False)
        # The reference: the weights, times the explicit mask, by autograd.
        rk, rv = (x.repeat_interleave(HQ // x.shape[1], 1) for x in (k, v))
        scores = q @ rk.transpose(-1, -2) / np.sqrt(E)
        allowed = torch.ones(L, S, dtype=torch.bool)
        if causal:
            allowed = allowed.tril()
        if m is not None:
            scores = scores + m if m.dtype != torch.bool else scores
            allowed = allowed & m if m.dtype == torch.bool else allowed
        weights = torch.softmax(scores.masked_fill(~allowed, -torch.inf), -1).nan_to_num()
        expected = (weights * torch.asarray(keep) / (1 - p)) @ rv
        out = _attention(
            q, k, v, m, causal, None, gqa, None, algorithm, None, dropout_p=p, dropout_seed=seed
        )
        dout = torch.asarray(DOUT)
        inputs = [x for x in (q, k, v, m) if x is not None and x.requires_grad]
        want = torch.autograd.grad(expected, inputs, dout)
        got = torch.autograd.grad(out, inputs, dout)
        np.testing.assert_allclose(out.detach(), expected.detach(), rtol=1e-10, atol=1e-12)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
        # attention_backward, called directly, is the same chain rule.
        grads = mle.attention_backward(
            dout,
            q.detach(),
            k.detach(),
            v.detach(),
            mask=None if m is None else m.detach(),
            is_causal=causal,
            enable_gqa=gqa,
            dropout_p=p,
            dropout_seed=seed,
        )
        for g, w in zip(grads[:3], want[:3], strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)

    def test_jax_grad_under_jit_with_a_traced_seed(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        p, seed = 0.3, 5
        keep = jnp.asarray(dropout_keep(seed, p, B * HQ, L, S).reshape(B, HQ, L, S))

        def expected(q, k, v):
            rk, rv = jnp.repeat(k, HQ // HKV, 1), jnp.repeat(v, HQ // HKV, 1)
            s = jnp.where(causal_mask(L, S), q @ jnp.swapaxes(rk, -1, -2) / np.sqrt(E), -jnp.inf)
            return jnp.sum((jax.nn.softmax(s, -1) * keep / (1 - p)) @ rv * DOUT)

        def ours(q, k, v, s):
            out = mle.attention(
                q, k, v, is_causal=True, enable_gqa=True, dropout_p=p, dropout_seed=s
            )
            return jnp.sum(out * DOUT)

        args = [jnp.asarray(a) for a in (Q, K_GQA, V_GQA)]
        got = jax.jit(jax.grad(ours, (0, 1, 2)))(*args, jnp.asarray(seed, dtype=jnp.int32))
        for g, w in zip(got, jax.grad(expected, (0, 1, 2))(*args), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)

    def test_compiles_with_a_seed_tensor_and_parameters(self):
        torch = torch_or_skip()
        q, k, v = (torch.nn.Parameter(torch.asarray(a)) for a in (Q, K, V))

        def step(q, k, v, seed):
            return mle.attention(q, k, v, is_causal=True, dropout_p=0.2, dropout_seed=seed)

        seed = torch.tensor(17)
        compiled = torch.compile(step, fullgraph=True, backend="eager")  # dynamo: graph breaks
        got, want = compiled(q, k, v, seed), step(q, k, v, seed)
        torch.testing.assert_close(got, want)
        (g,) = torch.autograd.grad(got.sum(), [q])
        (w,) = torch.autograd.grad(want.sum(), [q])
        torch.testing.assert_close(g, w)

    @pytest.mark.parametrize(
        ("options", "error"),
        [
            ({"dropout_p": 0.1}, ValueError),  # no seed
            ({"dropout_p": 1.5, "dropout_seed": 1}, ValueError),
            ({"dropout_p": -0.1, "dropout_seed": 1}, ValueError),
            ({"dropout_p": 0.1, "dropout_seed": 1.0}, TypeError),
            ({"dropout_p": 0.1, "dropout_seed": True}, TypeError),
            ({"dropout_p": 0.1, "dropout_seed": np.asarray([1, 2])}, TypeError),
            ({"dropout_p": 0.1, "dropout_seed": np.asarray(1.0)}, TypeError),
        ],
    )
    def test_bad_dropout_arguments(self, options, error):
        with pytest.raises(error, match="dropout"):
            mle.attention(Q, K, V, **options)
