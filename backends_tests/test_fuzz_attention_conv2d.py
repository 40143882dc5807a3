"""Shape fuzzing of the two hot paths, ``attention`` and ``conv2d``, on every backend.

Hypothesis draws the shapes (size-0 and size-1 axes included: no batch, no query,
no key, a head dimension of 0, no sample, no channel), the options (masks of both
kinds with ``is_causal``, grouped-query heads, forced algorithms; stride, padding,
dilation, groups, bias, every method) and the values (moderate, tiny, huge, exact
zeros), and compares with the float64 NumPy references of the registry
(``mlequations/_checks``). The checks are those of ``test_fuzz.py``: namespace,
device, dtype and shape preserved, values equal to the reference rounded to the
dtype, no input modified, and for attention that every output row is a convex
combination of the rows of ``V`` it may see (within [min V, max V] per column),
or zero when it may see none.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import mlequations as mle
from mlequations._checks.attention import _reference as attention_reference
from mlequations._checks.convolution import _reference as conv2d_reference
from mlequations._registry import tolerance

from ._fuzz import (
    OVERFLOW_IS_NOT_A_FINDING,
    arrays,
    dtype_names,
    expect,
    fuzz,
    reals,
    run,
    to_backend,
    values_of,
)

pytestmark = OVERFLOW_IS_NOT_A_FINDING


# Moderate values, exact and signed zeros, tiny and denormal values, and values large
# enough that an unshifted exponential of their products would overflow.
VALUES = st.one_of(
    st.floats(-4.0, 4.0),
    st.sampled_from([0.0, -0.0, 1e-30, -1e-40, 6e-8, 100.0, -100.0, 250.0]),
)


def _magnitude(*arrays_: np.ndarray) -> float:
    return max([float(np.max(np.abs(a), initial=0.0)) for a in arrays_] + [1.0])


# == attention ============================================================================


@st.composite
def attention_inputs(draw):
    """Q, K, V (and options) with drawn batch, head, length and feature sizes."""
    batch = tuple(draw(st.lists(st.integers(0, 2), max_size=2), label="batch"))
    gqa = len(batch) >= 1 and batch[-1] > 0 and draw(st.booleans(), label="enable_gqa")
    L, S = draw(st.integers(0, 5), label="L"), draw(st.integers(0, 6), label="S")
    E, Ev = draw(st.integers(0, 4), label="E"), draw(st.integers(0, 3), label="Ev")
    q_batch = (*batch[:-1], batch[-1] * draw(st.integers(1, 3), label="group")) if gqa else batch
    values = VALUES
    q = draw(arrays((*q_batch, L, E), values), label="query")
    k = draw(arrays((*batch, S, E), values), label="key")
    v = draw(arrays((*batch, S, Ev), values), label="value")
    options = {"enable_gqa": gqa, "is_causal": draw(st.booleans(), label="is_causal")}
    kind = draw(st.sampled_from([None, "bool", "additive"]), label="mask")
    if kind == "bool":
        options["mask"] = draw(arrays((L, S), st.sampled_from([0.0, 1.0, 1.0])), label="m") > 0
    elif kind == "additive":
        pool = st.one_of(st.floats(-3.0, 3.0), st.just(-math.inf))
        options["mask"] = draw(arrays((L, S), pool), label="m")
    options["block_size"] = draw(st.sampled_from([None, 1, 2, 4]), label="block_size")
    return q, k, v, options


def test_attention(backend):
    @fuzz(backend, st.data(), scale=2.0)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        q, k, v, options = data.draw(attention_inputs(), label="inputs")
        (qb, qr), (kb, kr), (vb, vr) = (to_backend(backend, a, dtype) for a in (q, k, v))
        mask = options.pop("mask", None)
        if mask is not None and mask.dtype != bool:
            mb, mask = to_backend(backend, mask, dtype)
        elif mask is not None:
            mb = backend.asarray(mask)

        # Hypothesis draws the keyword options; a traced call takes only arrays.
        def call(q, k, v, m=None):
            return mle.attention(q, k, v, mask=m, **options)

        out = run(backend, call, *((qb, kb, vb) if mask is None else (qb, kb, vb, mb)))
        del options["block_size"]  # every algorithm computes the same sum
        # With E = 0 a score is an empty dot product, 0, whatever the scale (1/√0 here).
        scale = None if q.shape[-1] else 1.0
        expected = attention_reference(qr, kr, vr, mask, scale=scale, **options)
        _check_attention(backend, dtype, out, expected, qr, kr, vr)


def _check_attention(backend, dtype, out, expected, qr, kr, vr):
    rtol, atol = tolerance(dtype)
    scale = _magnitude(qr, kr) ** 2 * _magnitude(vr) * max(1, qr.shape[-1])
    expect(out, expected, backend, dtype, rtol=rtol * 4, atol=atol * scale)
    got = values_of(backend, out)
    if got is None or got.size == 0 or vr.shape[-2] == 0:
        return
    # Convex combinations of V's rows (or zero): within [min V, max V] per column.
    lo = np.min(vr, axis=-2, keepdims=True) - atol * scale
    hi = np.max(vr, axis=-2, keepdims=True) + atol * scale
    if qr.ndim >= 3 and qr.shape[-3] != vr.shape[-3] and vr.shape[-3]:
        lo = np.repeat(lo, qr.shape[-3] // vr.shape[-3], axis=-3)
        hi = np.repeat(hi, qr.shape[-3] // vr.shape[-3], axis=-3)
    assert np.all(np.isfinite(got)), "NaN or inf from finite attention inputs"
    assert np.all((got >= lo) | (got == 0))
    assert np.all((got <= hi) | (got == 0))


def test_multi_head_attention(backend):
    @fuzz(backend, st.data())
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        batch = tuple(data.draw(st.lists(st.integers(0, 2), max_size=1), label="batch"))
        H, E = data.draw(st.integers(1, 3), label="H"), data.draw(st.integers(1, 2), label="E")
        L, S, F = (data.draw(st.integers(0, 4), label=n) for n in ("L", "S", "F"))
        D, Do = H * E, data.draw(st.integers(0, 3), label="Do")
        values = reals(nonfinite=False, extreme=False, low=-2.0, high=2.0)
        shapes = [(*batch, L, F), (*batch, S, F), (*batch, S, F)]
        shapes += [(D, F), (D, F), (D, F), (Do, D), (D,), (D,), (D,), (Do,)]
        inputs = [data.draw(arrays(s, values), label=f"x{i}") for i, s in enumerate(shapes)]
        converted = [to_backend(backend, a, dtype) for a in inputs]
        names = ("w_q", "w_k", "w_v", "w_o", "b_q", "b_k", "b_v", "b_o")

        def call(xq, xk, xv, *params):
            return mle.multi_head_attention(
                xq, xk, xv, num_heads=H, **dict(zip(names, params, strict=True))
            )

        out = run(backend, call, *(b for b, _ in converted))
        r = [r for _, r in converted]
        from mlequations._checks.attention import _mha

        expected = _mha(*r, num_heads=H)
        rtol, atol = tolerance(dtype)
        scale = _magnitude(*r) ** 4 * max(1, F) ** 2 * max(1, D)
        expect(out, expected, backend, dtype, rtol=rtol * 4, atol=atol * scale)


# == conv2d ===============================================================================


@st.composite
def conv2d_inputs(draw):
    """Input, weight, bias and options: batch and channel sizes down to 0."""
    groups = draw(st.integers(1, 2), label="groups")
    N = draw(st.integers(0, 2), label="N")
    Cg, Kg = draw(st.integers(0, 2), label="C/groups"), draw(st.integers(0, 2), label="K/groups")
    method = draw(st.sampled_from(["auto", "im2col", "shift", "fft", "winograd"]), label="method")
    KH, KW = draw(st.integers(1, 3), label="KH"), draw(st.integers(1, 3), label="KW")
    stride = (draw(st.integers(1, 2), label="sH"), draw(st.integers(1, 2), label="sW"))
    dilation = (draw(st.integers(1, 2), label="dH"), draw(st.integers(1, 2), label="dW"))
    if method == "winograd":  # F(4×4, 3×3): 3×3 kernels, stride 1, no dilation
        KH, KW, stride, dilation = 3, 3, (1, 1), (1, 1)
    padding = draw(st.sampled_from([0, 1, 2, "valid", "same", ((0, 1), (2, 0))]), label="pad")
    reach = ((KH - 1) * dilation[0] + 1, (KW - 1) * dilation[1] + 1)
    H = draw(st.integers(reach[0], reach[0] + 4), label="H")
    W = draw(st.integers(reach[1], reach[1] + 4), label="W")
    values = VALUES
    x = draw(arrays((N, Cg * groups, H, W), values), label="input")
    w = draw(arrays((Kg * groups, Cg, KH, KW), values), label="weight")
    b = draw(st.one_of(st.none(), arrays((Kg * groups,), values)), label="bias")
    options = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return x, w, b, options | {"method": method}


def _conv2d_reference(x, w, b, options):
    """The registry reference, with the padding resolved as conv2d documents it."""
    stride, dilation, padding = options["stride"], options["dilation"], options["padding"]
    if padding == "valid":
        padding = ((0, 0), (0, 0))
    elif padding == "same":
        pads = []
        for n, k, s, d in zip(x.shape[2:], w.shape[2:], stride, dilation, strict=True):
            total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        padding = tuple(pads)
    elif isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    xp_ = np.pad(x, ((0, 0), (0, 0), *padding))
    # The reference takes one stride and dilation: subsample a stride-1 result per axis.
    full = conv2d_reference(xp_, _spread(w, dilation), b, groups=options["groups"])
    return full[:, :, :: stride[0], :: stride[1]]


def _spread(w: np.ndarray, dilation: tuple[int, int]) -> np.ndarray:
    """The dilated kernel, zeros between taps."""
    KH, KW = w.shape[2:]
    out = np.zeros((*w.shape[:2], (KH - 1) * dilation[0] + 1, (KW - 1) * dilation[1] + 1))
    out[:, :, :: dilation[0], :: dilation[1]] = w
    return out


def test_conv2d(backend):
    @fuzz(backend, st.data(), scale=2.0)
    def _(data):
        dtype = data.draw(st.sampled_from(dtype_names(backend)), label="dtype")
        x, w, b, options = data.draw(conv2d_inputs(), label="inputs")
        unbatched = x.shape[0] == 1 and data.draw(st.booleans(), label="unbatched")
        (xb, xr), (wb, wr) = to_backend(backend, x, dtype), to_backend(backend, w, dtype)
        args = [xb[0, ...] if unbatched else xb, wb]
        br = None
        if b is not None:
            bb, br = to_backend(backend, b, dtype)
            args.append(bb)
        out = run(backend, lambda *a: mle.conv2d(*a, **options), *args)
        expected = _conv2d_reference(xr, wr, br, options)
        atol = tolerance(dtype)[1]
        taps = max(1, w.shape[1] * w.shape[2] * w.shape[3])
        scale = _magnitude(xr) * _magnitude(wr) * taps + _magnitude(br if b is not None else xr)
        expect(out, expected[0] if unbatched else expected, backend, dtype, atol=atol * scale)


# == regressions found by the fuzzing above ===============================================


def test_regression_attention_without_queries_or_features(backend):
    """Found by fuzzing: L = 0 raised "range() arg 3 must not be zero", and E = 0 raised
    ZeroDivisionError (the default scale 1/√E). No query gives an empty output; with
    E = 0 every score is an empty dot product, 0, so each row is the mean of V (as in
    torch's scaled_dot_product_attention)."""
    v = np.arange(8.0).reshape(2, 4, 1)
    for block_size in (None, 2):
        empty = (backend.asarray(np.zeros(s), "float32") for s in ((2, 0, 3), (2, 4, 3)))
        q0, k0 = empty
        out = run(backend, mle.attention, q0, k0, backend.asarray(v, "float32"))
        expect(out, np.zeros((2, 0, 1)), backend, "float32")
        q, k = (backend.asarray(np.zeros(s), "float32") for s in ((2, 3, 0), (2, 4, 0)))
        out = run(
            backend,
            lambda q, k, v, b=block_size: mle.attention(q, k, v, block_size=b),
            q,
            k,
            backend.asarray(v, "float32"),
        )
        expect(out, np.broadcast_to(v.mean(axis=-2, keepdims=True), (2, 3, 1)), backend, "float32")


def test_regression_conv2d_without_samples_or_channels(backend):
    """Found by fuzzing: a batch of N = 0 raised ZeroDivisionError in "im2col" (its band
    size) and a reshape error in "shift"; C = 0 input channels raised in "im2col". No
    sample gives an empty batch; no channel gives the empty sum, zeros plus the bias
    (torch returns no output channels there instead)."""
    w = backend.asarray(np.ones((3, 2, 3, 3)), "float32")
    w0 = backend.asarray(np.ones((3, 0, 3, 3)), "float32")
    bias = backend.asarray(np.asarray([1.0, 2.0, 3.0]), "float32")
    for method in ("auto", "im2col", "shift", "fft", "winograd"):
        for stride in (1, 2) if method != "winograd" else (1,):
            x = backend.asarray(np.ones((0, 2, 5, 5)), "float32")
            out = run(
                backend, lambda x, w, s=stride, m=method: mle.conv2d(x, w, stride=s, method=m), x, w
            )
            side = {1: 3, 2: 2}[stride]  # (5 - 3) // stride + 1
            expect(out, np.zeros((0, 3, side, side)), backend, "float32")
            x = backend.asarray(np.ones((1, 0, 5, 5)), "float32")
            out = run(
                backend,
                lambda x, w, b, s=stride, m=method: mle.conv2d(
                    x, w, b, padding=1, stride=s, method=m
                ),
                x,
                w0,
                bias,
            )
            side = 5 if stride == 1 else 3
            want = np.broadcast_to(np.asarray([1.0, 2.0, 3.0])[:, None, None], (1, 3, side, side))
            expect(out, want, backend, "float32")
