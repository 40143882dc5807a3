r"""Convolution: the 2-D cross-correlation of every CNN, written once for every library.

A convolution layer slides a small kernel over an image and, at every position,
takes the dot product of the kernel with the patch under it. Four portable
ways of computing the same sum are written here in the array API standard, and
:func:`conv2d` picks the fastest for the shape:

* ``"im2col"`` copies every patch into a column and does one matrix product;
* ``"shift"`` does one matrix product per kernel tap on a strided view of the
  input and sums them, so no unfolded copy is made;
* ``"fft"`` multiplies the spectra of image and kernel (the array API's fft
  extension), which costs the same for a 15×15 kernel as for a 3×3 one;
* ``"winograd"`` (3×3 kernels, stride 1) computes each 4×4 block of outputs
  with 36 multiplications per channel pair instead of 144, all of it in matrix
  products.

None of them calls a library's native convolution: those are the test oracles
and the benchmark baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import array_api_extra as xpx

from . import _autodiff, _tune
from ._xp import (
    Array,
    Namespace,
    accelerator,
    device,
    float_dtypes,
    is_jax,
    is_traced,
    namespace,
    split_batch,
)

__all__ = ["conv2d"]

_METHODS = ("auto", "im2col", "shift", "fft", "winograd")

Pair = tuple[int, int]


def _pair(value: int | Sequence[int], name: str) -> Pair:
    """A positive int or a pair of positive ints, as a pair."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"`{name}` must be a positive int or a pair of them, got {value!r}")
    return pair[0], pair[1]


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> Pair:
    """TensorFlow/Keras "same": ``ceil(size / stride)`` outputs, the odd pixel after."""
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _padding(
    padding: int | str | Sequence[int] | Sequence[Sequence[int]],
    size: Pair,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
) -> tuple[Pair, Pair]:
    """Resolve `padding` to ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return (
                _same_padding(size[0], kernel[0], stride[0], dilation[0]),
                _same_padding(size[1], kernel[1], stride[1], dilation[1]),
            )
        raise ValueError(f'`padding` must be an int, a pair, "valid" or "same", got {padding!r}')
    if isinstance(padding, int):
        pads = ((padding, padding), (padding, padding))
    else:
        items: tuple[Any, ...] = tuple(padding)
        if len(items) == 2 and all(isinstance(p, int) for p in items):
            pads = ((items[0], items[0]), (items[1], items[1]))
        elif len(items) == 2 and all(not isinstance(p, int) and len(p) == 2 for p in items):
            pads = (tuple(items[0]), tuple(items[1]))
        else:
            pads = ((-1, -1), (-1, -1))
    if not all(isinstance(p, int) and p >= 0 for pair in pads for p in pair):
        raise ValueError(
            "`padding` must be a non-negative int, a pair (pad_h, pad_w), a pair of "
            f'(before, after) pairs, "valid" or "same", got {padding!r}'
        )
    return (pads[0][0], pads[0][1]), (pads[1][0], pads[1][1])


def _fast_length(n: int) -> int:
    """The smallest 5-smooth number ≥ `n`: every FFT library is fast on those."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _zero_pad(x: Array, rows: Pair, cols: Pair, xp: Namespace) -> Array:
    """Zeros around the image: ``rows = (top, bottom)``, ``cols = (left, right)``.

    One pass where the library pads natively (``array_api_extra.pad``: torch's,
    NumPy's and JAX's own pad; on others a zero fill and one copy): the padding of
    a ResNet 3×3 at 56×56 took 1.1-1.4 ms as two concatenations, 0.5 ms in one pass.
    A batch split into Dask chunks is padded by concatenation with zero blocks
    instead, so that every sample is padded where it lives; so is a traced one,
    whose compiler fuses the concatenations into what reads them (and dynamo
    would warn about array-api-extra's cached test of the library).
    """
    if not any((*rows, *cols)):
        return x
    if not split_batch(x) and not is_traced(x):
        return xpx.pad(x, ((0, 0), (0, 0), rows, cols), xp=xp)
    for axis, (before, after) in ((2, rows), (3, cols)):
        if not before and not after:
            continue
        zeros = {}  # one block per width: symmetric padding makes one, not two (tiny images)
        for width in {before, after} - {0}:
            shape = list(x.shape)
            shape[axis] = width
            zeros[width] = xp.zeros(tuple(shape), dtype=x.dtype, device=device(x))
        parts = [zeros[before]] if before else []
        parts += [x, zeros[after]] if after else [x]
        x = xp.concat(parts, axis=axis)
    return x


def _join(parts: list[Array], axis: int, xp: Namespace) -> Array:
    """``concat`` that does not copy a single part."""
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=axis)


_CHUNK = 1 << 22  # elements of unfolded patches per matrix product (16 MiB in float32)
_FOLD = 256  # the most output pixels over which im2col multiplies all samples at once
_TRACED_BANDS = 4  # the most bands of a traced im2col (each unrolls into the program)


def _patches(
    x: Array, kernel: Pair, out: Pair, stride: Pair, dilation: Pair, xp: Namespace, top: int = 0
) -> Array:
    """The patches of the padded `x` ``(N, C, Hp, Wp)`` as ``(N, C, KH·KW·Ho·Wo)``, one gather.

    `out` is ``(Ho, Wo)`` of the output rows wanted, from output row `top` on.

    Tap ``(i, j)`` meets output pixel ``(h, w)`` at input pixel ``(h·sH + i·dH,
    w·sW + j·dW)``, flat index ``(h·sH + i·dH)·Wp + w·sW + j·dW`` of the
    row-major image: one ``take`` with those ``KH·KW·Ho·Wo`` indices unfolds
    the image, already in the patch matrix's order, without a Python loop over
    taps. The indices come from ``arange``, so a traced program holds a handful
    of operations whatever the kernel, and the compiler fuses the gather with
    the padding into one loop.
    """
    N, C, Hp, Wp = x.shape
    axes = []
    for k, o, s, d, first in zip(kernel, out, stride, dilation, (top, 0), strict=True):
        taps = xp.arange(k, device=device(x)) * d  # (k,)
        starts = xp.arange(first, first + o, device=device(x)) * s  # (o,)
        axes.append(taps[:, None] + starts[None, :])  # (k, o): input row (or column)
    rows, cols = axes
    index = rows[:, None, :, None] * Wp + cols[None, :, None, :]  # (KH, KW, Ho, Wo)
    flat = xp.reshape(x, (N, C, Hp * Wp))  # a view
    return xp.take(flat, xp.reshape(index, (-1,)), axis=2)  # (N, C, KH·KW·Ho·Wo)


def _bands(x: Array, kernel: Pair, out: Pair, traced: bool) -> list[Pair]:
    """``(first output row, rows)`` of each band whose patches are unfolded at once.

    At most ``_CHUNK`` elements of patches a band: a patch matrix of hundreds of
    megabytes would cost more in fresh memory (page faults) and cache misses than
    the product. Traced too, but in at most ``_TRACED_BANDS`` bands, each a few
    operations of the program: the compiled program allocates its patch matrix
    afresh at every call, and from 32 MiB glibc maps new pages for it (the stem's
    59 MB one, compiled by inductor: 31 ms a call against 15 once malloc was told
    not to map, Intel Xeon). A patch matrix that fits one band keeps the sizes
    symbolic (a comparison, no arithmetic on them): one graph for every batch size.
    """
    N, C = x.shape[:2]
    per_row = N * C * kernel[0] * kernel[1] * out[1]  # elements of patches per output row
    if traced and per_row * out[0] <= _CHUNK:
        return [(0, out[0])]
    band = max(1, _CHUNK // per_row)  # output rows per band
    if traced:
        band = max(band, -(-out[0] // _TRACED_BANDS))
    return [(h, min(band, out[0] - h)) for h in range(0, out[0], band)]


def _tap_phases(kernel: Pair, stride: Pair, dilation: Pair) -> list[tuple[Pair, Pair]]:
    """Each tap's stride phase and its offset in that phase, taps in order ``(i, j)``.

    Tap ``(i, j)`` meets output pixel ``(h, w)`` at input pixel ``(h·sH + i·dH,
    w·sW + j·dW)``, which is pixel ``(h + i·dH // sH, w + j·dW // sW)`` of the
    phase image ``x[i·dH mod sH :: sH, j·dW mod sW :: sW]``.
    """
    (sH, sW), (dH, dW) = stride, dilation
    return [
        (((i * dH) % sH, (j * dW) % sW), ((i * dH) // sH, (j * dW) // sW))
        for i in range(kernel[0])
        for j in range(kernel[1])
    ]


def _stride_phases(
    x: Array, kernel: Pair, stride: Pair, dilation: Pair, xp: Namespace
) -> dict[Pair, Array] | None:
    """The padded `x` split by stride phase, ``x[..., a::sH, b::sW]`` as row-major copies.

    Tap ``(i, j)`` reads the pixels of phase ``(i·dH mod sH, j·dW mod sW)`` with
    unit strides, so the patch matrix is then copied from whole runs of pixels,
    not from every sH-th one. Worth the extra copy of the image where the patch
    matrix is at least four times the image (``KH·KW ≥ 4·sH·sW``): the 7×7 stem
    at stride 2 unfolded and multiplied in 10.8 ms instead of 17.5 (torch; NumPy
    16.2 against 18.8), 5×5 and 11×11 kernels at strides 2 and 4 gained 8-27%,
    while a 3×3 at stride 2 lost 6% (Intel Xeon). None where it does not pay.
    """
    sH, sW = stride
    if (sH, sW) == (1, 1) or kernel[0] * kernel[1] < 4 * sH * sW:
        return None
    phases = {}
    for a, b in sorted({phase for phase, _ in _tap_phases(kernel, stride, dilation)}):
        view = x[:, :, a::sH, b::sW]
        A, B, H, W = view.shape
        phases[a, b] = xp.reshape(xp.reshape(view, (A, B, H * W)), (A, B, H, W))  # a copy
    return phases


def _columns(
    x: Array,
    kernel: Pair,
    groups: int,
    out: Pair,
    stride: Pair,
    dilation: Pair,
    band: Pair,
    traced: bool,
    xp: Namespace,
    *,
    channels_first: bool = False,
    phases: dict[Pair, Array] | None = None,
) -> Array:
    """The patch matrix ``(N, G, Cg·T, rows·Wo)`` of the padded `x` for one band of output rows.

    With ``channels_first=True``, `x` is ``(C, N, Hp, Wp)`` and the matrix ``(G,
    Cg·T, N·rows·Wo)``: the samples join the pixels (the weight gradient's product).

    Kernel tap ``(i, j)`` meets output pixel ``(h, w)`` at input pixel
    ``(h·sH + i·dH, w·sW + j·dW)``, so the tap's pixels for all outputs are one
    strided slice of the padded image; stacking the ``T = KH·KW`` slices is the
    patch matrix. Its rows are channel-major, ``(c, i, j)``, the order of the
    weight's own axes: the kernels multiply it as they are, a view, not a copy
    made at every call (9.4 MB for a 512-channel 3×3, 1 ms of the 6-10 ms its
    convolution takes at 7×7). Traced, it is instead one gather (:func:`_patches`,
    same order): a compiler sees a handful of operations, where the loop over
    taps unrolled into hundreds (the 7×7 stem: 616 nodes under ``torch.compile``,
    409 s to compile). With `phases` (:func:`_stride_phases` of `x`), each tap
    is a unit-stride slice of one of them instead.
    """
    N, C = x.shape[:2]
    Cg, T = C // groups, kernel[0] * kernel[1]
    h, rows = band
    if traced:
        cols = _patches(x, kernel, (rows, out[1]), stride, dilation, xp, h)  # (N, C, T·rows·Wo)
        if channels_first:  # (C, N, T·rows·Wo): N and C above are the other way round
            cols = xp.reshape(cols, (groups, N // groups, C, T, rows * out[1]))
            cols = xp.permute_dims(cols, (0, 1, 3, 2, 4))  # (G, Cg, T, N, rows·Wo)
            return xp.reshape(cols, (groups, (N // groups) * T, C * rows * out[1]))
        return xp.reshape(cols, (N, groups, Cg * T, rows * out[1]))
    (sH, sW), (dH, dW) = stride, dilation
    span = (out[1] - 1) * sW + 1  # the columns one tap reads
    top, bottom = h * sH, h * sH + (rows - 1) * sH + 1
    if phases is None:
        taps = [
            x[:, :, top + i * dH : bottom + i * dH : sH, j * dW : j * dW + span : sW]
            for i in range(kernel[0])
            for j in range(kernel[1])
        ]  # T × (N, C, rows, Wo), views of the input, one slice each (cheap on tiny images)
    else:  # output row h + r of tap (i, j) is row h + r + oi of its phase
        taps = [
            phases[phase][:, :, h + oi : h + oi + rows, oj : oj + out[1]]
            for phase, (oi, oj) in _tap_phases(kernel, stride, dilation)
        ]
    # The groups split off before the stack, so that the reshape after it only merges
    # axes (all that Dask's reshape does with a chunked axis).
    if channels_first:  # (C, N, rows, Wo) each: N and C above are the other way round
        taps = [xp.reshape(t, (groups, N // groups, C, rows, out[1])) for t in taps]
        cols = xp.stack(taps, axis=2)  # (G, Cg, T, N, rows, Wo): the one copy
        return xp.reshape(cols, (groups, (N // groups) * T, C * rows * out[1]))
    taps = [xp.reshape(t, (N, groups, Cg, rows, out[1])) for t in taps]  # still views
    cols = xp.stack(taps, axis=3)  # (N, G, Cg, T, rows, Wo): the one copy
    return xp.reshape(cols, (N, groups, Cg * T, rows * out[1]))


def _im2col(
    x: Array,
    weight: Array,
    groups: int,
    out: Pair,
    pads: tuple[Pair, Pair],
    stride: Pair,
    dilation: Pair,
    xp: Namespace,
    traced: bool = False,
) -> Array:
    """Unfold every patch into a column, then one (batched) matrix product per band.

    Over a small image (up to ``_FOLD`` output pixels) the samples join the
    pixels instead, one product ``N·Ho·Wo`` columns wide rather than `N`
    products of ``Ho·Wo``: BLAS runs a narrow product far below its peak (ResNet's
    7×7 layers, 512 channels, batch 8: 8.7 ms as 8 products of 49 columns, 6.3 ms
    as one of 392, on the Intel Xeon). The image and the result are each moved
    once to put the samples beside the pixels, which is cheap at these sizes.
    A batch in several Dask chunks keeps the per-sample products, and its chunks.
    """
    x = _zero_pad(x, *pads, xp)  # (N, C, Hp, Wp)
    N, K, (KH, KW) = x.shape[0], weight.shape[0], weight.shape[2:]
    w = xp.reshape(weight, (groups, K // groups, weight.shape[1] * KH * KW))  # a view
    if not traced and N > 1 and out[0] * out[1] <= _FOLD and not split_batch(x):
        xc = xp.permute_dims(x, (1, 0, 2, 3))  # (C, N, Hp, Wp)
        phases = _stride_phases(xc, (KH, KW), stride, dilation, xp)
        ys = [
            xp.reshape(
                w @ _columns(xc, (KH, KW), groups, out, stride, dilation, (h, rows), traced, xp,
                             channels_first=True, phases=phases),
                (groups, K // groups, N, rows * out[1]),
            )
            for h, rows in _bands(x, (KH, KW), out, traced)
        ]  # fmt: skip
        y = xp.permute_dims(_join(ys, axis=-1, xp=xp), (2, 0, 1, 3))  # (N, G, K/G, Ho·Wo)
        return xp.reshape(y, (N, K, *out))
    phases = None if traced else _stride_phases(x, (KH, KW), stride, dilation, xp)
    ys = [
        w @ _columns(x, (KH, KW), groups, out, stride, dilation, band, traced, xp, phases=phases)
        for band in _bands(x, (KH, KW), out, traced)
    ]  # each (N, G, K/G, rows·Wo)
    y = _join(ys, axis=-1, xp=xp)  # (N, G, K/G, Ho·Wo)
    return xp.reshape(y, (N, K, *out))


def _phases(
    x: Array,
    pads: tuple[Pair, Pair],
    kernel: Pair,
    out: Pair,
    stride: Pair,
    dilation: Pair,
    xp: Namespace,
) -> tuple[list[Array], int, list[tuple[int, int]]]:
    """The padded image as flat phase images, their width, and each tap's (phase, offset).

    Output pixel ``(h, w)`` meets, through kernel tap ``(i, j)``, the padded input
    at ``(h·sH + a, w·sW + b)`` with ``(a, b) = (i·dH, j·dW)``. That pixel lies in
    the phase image ``x[a mod sH :: sH, b mod sW :: sW]``, at ``(h + a // sH,
    w + b // sW)``. Seen through the row-major flattening of a phase image of
    width ``Wq``, that is flat index ``h·Wq + w`` + the tap's offset ``(a // sH)·Wq
    + b // sW``: every tap is one contiguous slice of one flat phase, and the
    output is computed on an ``(Ho, Wq)`` grid whose last ``Wq - Wo`` columns
    (which straddle two rows) are dropped afterwards. With stride 1 the one phase
    is the padded image itself, flattened without a copy; a stride copies the
    phases that some tap reads, once. The last tap reaches up to a row past the
    image: that row of zeros is added with the padding, in the same copy.
    """
    N, C, H, W = x.shape
    (top, _), (left, right) = pads  # the rows below: as many as the last tap reaches
    sH, sW = stride
    Wq = -(-(W + left + right) // sW)  # phase width
    tap_phases = _tap_phases(kernel, stride, dilation)
    phases = sorted({phase for phase, _ in tap_phases})
    taps = [(phases.index(phase), oi * Wq + oj) for phase, (oi, oj) in tap_phases]
    rows = -(-(max(o for _, o in taps) + out[0] * Wq) // Wq)  # rows the last tap reaches
    x = _zero_pad(x, (top, max(rows * sH - H - top, 0)), (left, Wq * sW - W - left), xp)
    flats = [
        xp.reshape(x[:, :, a::sH, b::sW][:, :, :rows, :], (N, C, rows * Wq)) for a, b in phases
    ]  # each (N, C, R·Wq); a copy only for a stride
    return flats, Wq, taps


def _unflatten(y: Array, out: Pair, Wq: int, xp: Namespace) -> Array:
    """``(N, G, K/G, Ho·Wq)`` on the flat grid to ``(N, K, Ho, Wo)``."""
    y = xp.reshape(y, (y.shape[0], -1, out[0], Wq))  # (N, K, Ho, Wq)
    return y[..., : out[1]]


_TILE = 1 << 19  # output elements per tile of "shift" (2 MiB in float32: one core's L2)


def _shift(
    x: Array,
    weight: Array,
    groups: int,
    out: Pair,
    pads: tuple[Pair, Pair],
    stride: Pair,
    dilation: Pair,
    xp: Namespace,
    tile: int | None,
) -> Array:
    """Sum over kernel taps of one product each: no unfolded copy of the input.

    Every tap reads and the running sum is written once per tap, so the sum is
    computed a tile at a time (as many samples as fit, or one sample and a band
    of output rows, at most `tile` output elements): the accumulator stays in
    cache across the taps instead of streaming through memory nine times for
    3×3 (depthwise 3×3: 2-3× faster on PyTorch and NumPy), and small images
    do not pay the per-operation overhead once per sample (depthwise 5×5 on
    28×28: 1.5× faster on PyTorch). ``tile=None`` makes one tile of the
    whole batch: a compiler (XLA) fuses the sum itself, and a loop would only
    grow the traced program.
    """
    N = x.shape[0]
    K, Cg, KH, KW = weight.shape
    flats, Wq, taps = _phases(x, pads, (KH, KW), out, stride, dilation, xp)  # (N, C, R·Wq)
    w = xp.reshape(weight, (groups, K // groups, Cg, KH * KW))  # (G, K/G, Cg, T)
    per_sample = K * out[0] * Wq  # output elements of one sample
    if tile is None:
        samples, band = N, out[0]
    elif per_sample <= tile:  # small images: as many whole samples as fit
        samples, band = tile // per_sample, out[0]
    else:  # large images: one sample, a band of output rows
        samples, band = 1, max(1, tile // (K * Wq))

    def tile_sum(n: int, h: int) -> Array:  # (samples, G, K/G, rows·Wq): samples n.., rows h..
        L = (min(h + band, out[0]) - h) * Wq
        y = None
        for t, (phase, o) in enumerate(taps):
            start = o + h * Wq
            xt = flats[phase][n : min(n + samples, N), :, start : start + L]  # a view
            xt = xp.reshape(xt, (xt.shape[0], groups, Cg, L))
            if Cg == 1:  # noqa: SIM108 (the comment belongs to one branch)
                # Depthwise: a product over a length-1 axis is a broadcast, not a matmul.
                term = xt * w[:, :, :, t]  # (n, G, 1, L) · (G, K/G, 1) -> (n, G, K/G, L)
            else:
                term = w[:, :, :, t] @ xt  # (n, G, K/G, L)
            if y is None:
                y = term
            else:
                y += term  # in place where the library allows it (a fresh array: ours)
        return y

    y = _join(
        [
            _join([tile_sum(n, h) for h in range(0, out[0], band)], axis=-1, xp=xp)
            for n in range(0, N, samples)
        ],
        axis=0,
        xp=xp,
    )  # (N, G, K/G, Ho·Wq)
    return _unflatten(y, out, Wq, xp)


def _dilate(weight: Array, dilation: Pair, xp: Namespace) -> Array:
    """Insert ``d - 1`` zeros between kernel taps: ``(K, Cg, (KH-1)·dh+1, (KW-1)·dw+1)``."""
    for axis, d in ((2, dilation[0]), (3, dilation[1])):
        if d == 1:
            continue
        n = weight.shape[axis]
        shape = list(weight.shape)
        shape.insert(axis + 1, d - 1)
        zeros = xp.zeros(tuple(shape), dtype=weight.dtype, device=device(weight))
        spread = xp.concat([xp.expand_dims(weight, axis=axis + 1), zeros], axis=axis + 1)
        shape[axis + 1] = d
        merged = [*shape[:axis], n * d, *shape[axis + 2 :]]
        spread = xp.reshape(spread, tuple(merged))  # taps then d-1 zeros, taps then ...
        weight = spread[:, :, : (n - 1) * d + 1, :] if axis == 2 else spread[..., : (n - 1) * d + 1]
    return weight


def _fft(
    x: Array,
    weight: Array,
    groups: int,
    out: Pair,
    pads: tuple[Pair, Pair],
    stride: Pair,
    dilation: Pair,
    xp: Namespace,
    traced: bool = False,
) -> Array:
    """Convolution theorem: multiply the spectra of the image and the flipped kernel.

    Cross-correlating with ``W`` is convolving with ``W`` flipped, and
    ``irfftn(rfftn(x) · rfftn(flip(W)))`` is the *circular* convolution on an
    ``(FH, FW)`` grid. With ``FH ≥ H + p_top + p_bottom`` the zeros that
    ``rfftn(s=...)`` appends serve as the padding on both sides (the top rows
    wrap around to the end), so the input is never padded: rolling the result
    by ``p_top - (reach_H - 1)`` rows (and likewise columns) puts output pixel
    ``(0, 0)`` first.
    """
    N, _, H, W_in = x.shape
    K, Cg = weight.shape[:2]
    size = (_fast_length(H + sum(pads[0])), _fast_length(W_in + sum(pads[1])))
    X = xp.fft.rfftn(x, s=size, axes=(-2, -1))  # (N, C, FH, FW/2+1)
    W = xp.flip(_dilate(weight, dilation, xp), axis=(-2, -1))  # (K, Cg, reach_H, reach_W)
    reach = W.shape[2:]
    if traced:  # rfftn appends the zeros; array-api-extra's pad warns under dynamo
        W = xp.fft.rfftn(W, s=size, axes=(-2, -1))  # (K, Cg, FH, FW/2+1)
    else:  # pad first: Dask transforms only single-chunk axes, which the dilation splits
        W = xpx.pad(W, ((0, 0), (0, 0), (0, size[0] - reach[0]), (0, size[1] - reach[1])), xp=xp)
        W = xp.fft.rfftn(W, axes=(-2, -1))  # (K, Cg, FH, FW/2+1)
    FH, FW = X.shape[-2:]
    F = FH * FW
    X = xp.reshape(X, (N, groups, Cg, F))  # (N, G, Cg, F)
    W = xp.reshape(W, (groups, K // groups, Cg, F))  # (G, K/G, Cg, F)
    if Cg == 1:
        Y = X * W[:, :, 0, :]  # (N, G, 1, F) · (G, K/G, F) -> (N, G, K/G, F)
    else:
        # One small complex matrix product per frequency, over the channels. The
        # operands are copied frequency-major (``reshape(copy=True)`` copies in
        # row-major order): PyTorch multiplies a batch of matrices whose batch
        # axis has unit stride one matrix at a time (15×15 benchmark: 110 ms
        # for the product of the permuted views, 3 ms after the copies).
        X = xp.reshape(xp.permute_dims(X, (3, 1, 0, 2)), (F, groups, N, Cg), copy=True)
        W = xp.reshape(xp.permute_dims(W, (3, 0, 2, 1)), (F, groups, Cg, K // groups), copy=True)
        Y = xp.permute_dims(X @ W, (2, 1, 3, 0))  # (F, G, N, K/G) -> (N, G, K/G, F)
    Y = xp.reshape(Y, (N, K, FH, FW))
    y = xp.fft.irfftn(Y, s=size, axes=(-2, -1))  # (N, K, FH, FW), circular convolution
    # The flipped kernel's last tap sits at index reach - 1: row h of the valid
    # correlation is row h + reach - 1 of the convolution, minus the top padding.
    shift = (pads[0][0] - reach[0] + 1, pads[1][0] - reach[1] + 1)
    if shift != (0, 0):
        y = xp.roll(y, shift=shift, axis=(-2, -1))
    return y[
        :, :, : (out[0] - 1) * stride[0] + 1 : stride[0], : (out[1] - 1) * stride[1] + 1 : stride[1]
    ]


def _kron(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> list[list[float]]:
    """The Kronecker product a ⊗ b of two small constant matrices, in Python floats."""
    return [[x * y for x in row_a for y in row_b] for row_a in a for row_b in b]


# Winograd's minimal filtering F(4×4, 3×3) (Lavin & Gray 2016, interpolation points
# 0, ±1, ±2 and ∞): a 6×6 input tile d and a 3×3 kernel g give the 4×4 outputs
# Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A. Bᵀ and Aᵀ hold small integers, exact in every dtype.
_WINOGRAD_BT = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_WINOGRAD_G = (
    (1 / 4, 0, 0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0, 0, 1),
)
_WINOGRAD_AT = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)
# The same transforms for a tile flattened row by row: vec(Bᵀ d B) = (Bᵀ⊗Bᵀ) vec(d).
_WINOGRAD_KRON = tuple(_kron(m, m) for m in (_WINOGRAD_BT, _WINOGRAD_G, _WINOGRAD_AT))


def _winograd(
    x: Array,
    weight: Array,
    groups: int,
    out: Pair,
    pads: tuple[Pair, Pair],
    xp: Namespace,
    traced: bool = False,
) -> Array:
    """3×3, stride 1: Winograd's F(4×4, 3×3), 36 products per 4×4 outputs instead of 144.

    The padded image is cut into 6×6 tiles ``d`` that overlap by 2 (one per 4×4
    block of outputs) and each 3×3 kernel ``g`` is turned into a 6×6 ``G g Gᵀ``;
    then, for each of the 36 tile positions ``ξ``, the channel sum is one matrix
    product, ``M[ξ] = U[ξ] V[ξ]``, and ``Y = Aᵀ M A`` gives the outputs. Every
    step is a matrix product: the transforms ``Bᵀ d B`` and ``Aᵀ M A`` of all
    tiles at once are products with the Kronecker matrices ``Bᵀ⊗Bᵀ`` (36×36) and
    ``Aᵀ⊗Aᵀ`` (16×36). The tiles are a 2.25× copy of the input, against 9× for
    ``"im2col"``. The price is rounding: with the transforms' coefficients (up
    to 64 in ``Aᵀ⊗Aᵀ``) the float32 error is 4-11·10⁻⁶ of the largest output
    for 32-256 channels, against 5-7·10⁻⁷ for a direct sum.
    """
    N, C = x.shape[:2]
    K, Cg = weight.shape[:2]
    m, a = 4, 6  # output and input tile sizes
    th, tw = -(-out[0] // m), -(-out[1] // m)  # tiles per column and row
    # The padding, and zeros below and to the right up to whole tiles (their outputs
    # are dropped at the end), in one copy.
    (top, _), (left, _) = pads
    H, W = x.shape[2:]
    x = _zero_pad(x, (top, th * m + 2 - top - H), (left, tw * m + 2 - left - W), xp)
    # Bᵀ⊗Bᵀ (36, 36), G⊗G (36, 9) and Aᵀ⊗Aᵀ (16, 36), in the input's dtype and on its device
    BT, GG, AT = (xp.asarray(k, dtype=x.dtype, device=device(x)) for k in _WINOGRAD_KRON)
    g = xp.reshape(xp.permute_dims(weight, (2, 3, 0, 1)), (9, K * Cg))  # taps first
    U = xp.reshape(GG @ g, (a * a, groups, K // groups, Cg))  # G g Gᵀ, per position ξ
    # Tile position (i, j) of every tile is one strided slice; channels lead, so the
    # tiles of the whole batch form the columns of one product per position.
    T = N * th * tw
    # Traced by dynamo: one gather, not 36 slices (see _patches), which inductor
    # compiled in 16 s instead of 35 (ResNet 3×3), for the same run time. XLA runs
    # its gather 2× slower than the slices it fuses, so a JAX trace keeps them.
    if traced and not is_jax(xp):
        Hp, Wp = x.shape[2:]
        i = xp.arange(a, device=device(x))  # position within the tile
        rows = i[:, None] + m * xp.arange(th, device=device(x))[None, :]  # (6, th)
        cols = i[:, None] + m * xp.arange(tw, device=device(x))[None, :]  # (6, tw)
        index = rows[:, None, :, None] * Wp + cols[None, :, None, :]  # (6, 6, th, tw)
        d = xp.take(xp.reshape(x, (N, C, Hp * Wp)), xp.reshape(index, (-1,)), axis=2)
        d = xp.reshape(d, (N, C, a * a, th * tw))  # (N, C, 36, th·tw)
        d = xp.permute_dims(d, (2, 1, 0, 3))  # (36, C, N, th·tw): the copy below
    else:
        xc = xp.permute_dims(x, (1, 0, 2, 3))  # (C, N, Hp, Wp), a view
        last_h, last_w = m * (th - 1) + 1, m * (tw - 1) + 1  # stops within the image
        # Rows first, then columns: 12 slices in two copies rather than 36 in one. The
        # first copy reads whole rows, the second picks every 4th column of its result;
        # the 36 slices, each every 4th pixel of every 4th row, copied 2.5-4x slower on
        # small images (14x14, torch), and XLA compiles the 12 in half the time or less
        # and runs them 1.6-1.8x faster. (Columns first was slower below 56x56.)
        rows = xp.stack([xc[:, :, i : i + last_h : m, :] for i in range(a)])  # (6, C, N, th, Wp)
        d = xp.stack([rows[..., j : j + last_w : m] for j in range(a)], axis=1)
        d = xp.reshape(d, (a * a, C, N, th, tw))  # (36, C, N, th, tw), tile position (i, j)
    V = xp.reshape(BT @ xp.reshape(d, (a * a, C * T)), (a * a, groups, Cg, T))  # Bᵀ d B
    M = U @ V  # (36, G, K/G, T): the channel sums
    Y = AT @ xp.reshape(M, (a * a, K * T))  # (16, K·T): Aᵀ M A
    Y = xp.permute_dims(xp.reshape(Y, (m, m, K, N, th, tw)), (3, 2, 4, 0, 5, 1))
    Y = xp.reshape(Y, (N, K, th * m, tw * m))  # (N, K, th, 4, tw, 4) → rows, columns
    return Y[:, :, : out[0], : out[1]]


_TRACED_TAPS = 25  # the most kernel taps "shift" may unroll into a traced program


def _auto(
    xp: Namespace,
    groups: int,
    channels: Pair,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    out: Pair,
    *,
    traced: bool = False,
) -> str:
    """The fastest portable algorithm for the shape (measured: see the chapter's benchmarks).

    ``channels`` is (input, output) channels per group.

    * A stride-1 kernel of 49 taps or more: ``"fft"``, whose cost does not grow
      with the kernel (15×15: 2.4-15× faster than ``"im2col"``, every backend).
    * Depthwise (several groups of one input channel and one or two outputs):
      ``"shift"``, nine multiply-adds per output pixel for 3×3 on a cached
      tile, where ``"im2col"`` makes a batch of products of one or two rows.
      With more outputs per group each tap's multiply-add covers all of them,
      and with one group (a single input channel, as for MNIST) ``"im2col"``
      is one real product: on PyTorch and NumPy it wins there (1→32 channels
      at 28×28: 3.1-10× faster than ``"shift"``).
    * 3×3, stride 1, at least 32 channels in and out and 14×14 outputs:
      ``"winograd"``, a quarter of the multiplications (ResNet 3×3: 0.65×
      ``lax.conv`` under JAX against 1.9× for ``"im2col"``; on PyTorch 1.46×
      ``F.conv2d`` against 1.91×). With fewer channels its transforms cost
      more than the products they save; on smaller images the transformed
      kernels (four times the weights) do.
    * Under XLA (JAX), ``"shift"`` also for one input channel per group
      whatever the outputs, and for other stride-1 kernels over images of
      32×32 outputs or more. XLA fuses the sum of per-tap products, where the
      stacked patch copy costs it more than the single product saves (1→32
      channels at 28×28: 2.7× faster than ``"im2col"``). On a small image the
      per-tap products of a dense kernel are too small and ``"im2col"`` wins.
    * Otherwise ``"im2col"``: one large product is what BLAS does best. The
      strided stem (7×7, stride 2, 3 channels) is 3.3-8.9× slower as
      ``"shift"``: 49 products over 3 channels each.

    Traced (``traced=True``: ``torch.compile`` or a JAX transformation is
    tracing, see ``_xp.is_traced``), the program the compiler sees must stay
    small, so the loops of the eager plans do not unroll into it: ``"im2col"``
    gathers its patch matrix with one ``take`` a band (at most ``_TRACED_BANDS``)
    and multiplies the whole batch at once (no loop over taps), ``"shift"``
    makes one tile of the whole batch (no loop over samples or bands) and is
    picked only for kernels of at most ``_TRACED_TAPS`` taps (its one term per
    tap is what remains), ``"im2col"`` instead. The 7×7 stem traced into 616
    FX nodes and compiled in 409 s with inductor; now 40 nodes, about the
    compile time of ``F.conv2d``'s. Under
    ``torch.compile`` (not XLA), ``"shift"`` is then the pick for every kernel of
    at most ``_TRACED_TAPS`` taps over 28×28 outputs or more, but
    ``"winograd"``'s below 56×56: inductor turns the gather into scalar loads,
    while ``"shift"``'s products on views of the image stay library calls
    (measured on the Intel Xeon, compiled, against ``F.conv2d`` eager: ResNet
    3×3 at 56×56 10 ms against 16 for ``"winograd"``, 71 for ``"im2col"`` and 9
    native; a 3×3 at stride 2 8 ms against 11 and 4; at 14×14 ``"winograd"``
    6 ms against 15; at 7×7 with 512 channels the gather's one product wins).

    The result is the same whatever the choice; only the speed and the rounding differ.
    """
    taps = kernel[0] * kernel[1]
    if stride == (1, 1) and taps >= 49 and hasattr(xp, "fft"):
        return "fft"
    if traced and taps > _TRACED_TAPS:
        # One term per tap would grow the traced program with the kernel; the
        # gathered patch matrix is a handful of operations whatever its size.
        return "im2col"
    if groups > 1 and channels[0] == 1 and channels[1] <= 2:
        return "shift"
    winograd = (
        (kernel, stride, dilation) == ((3, 3), (1, 1), (1, 1))
        and min(channels) >= 32
        and min(out) >= 14
    )
    if traced and not is_jax(xp) and min(out) >= 28 and not (winograd and min(out) < 56):
        # Inductor: one product per tap on views of the image, no gather (see above).
        return "shift"
    if winograd:
        return "winograd"
    if is_jax(xp) and (channels[0] == 1 or (stride == (1, 1) and out[0] * out[1] >= 32 * 32)):
        return "shift"
    return "im2col"


def conv2d(
    input: Array,
    weight: Array,
    bias: Array | None = None,
    /,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | str | Sequence[int] | Sequence[Sequence[int]] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    method: str = "auto",
    xp: Namespace | None = None,
) -> Array:
    r"""2-D convolution (cross-correlation) of a batch of images, as in ``torch.nn.Conv2d``.

    $$
    y_{n,k,h,w} = b_k + \sum_{c=0}^{C/G-1} \sum_{i=0}^{K_H-1} \sum_{j=0}^{K_W-1}
        W_{k,c,i,j}\; \tilde x_{n,\; g_k C/G + c,\; h s_H + i d_H,\; w s_W + j d_W},
    \qquad g_k = \left\lfloor \frac{k}{K/G} \right\rfloor ,
    $$

    where $\tilde x$ is the input zero-padded by $(p_{\text{top}}, p_{\text{bottom}})$ rows
    and $(p_{\text{left}}, p_{\text{right}})$ columns, $s$ the stride, $d$ the dilation and
    $G$ the number of groups, so that the output has

    $$
    H_o = \left\lfloor \frac{H + p_{\text{top}} + p_{\text{bottom}} - d_H (K_H - 1) - 1}{s_H}
          \right\rfloor + 1
    $$

    rows (and $W_o$ columns likewise). The kernel is *not* flipped: this is
    cross-correlation, which every deep-learning library calls convolution.
    ``padding="same"`` follows TensorFlow/Keras, also for strides above 1: it
    pads $\max((\lceil H/s\rceil - 1)s + (K_H - 1)d + 1 - H,\ 0)$ rows in
    total, the odd one at the bottom, so that $H_o = \lceil H / s \rceil$.

    All four algorithms compute the same sum in the input's dtype (float32
    for half precision); ``"fft"`` and ``"winograd"`` round relative to the
    largest output rather than to each one: in float32 to about
    $2 \cdot 10^{-7} \max|y|$ and $10^{-5} \max|y|$ (the Winograd transforms
    scale values by up to 64).

    Args:
        input: Images ``(N, C, H, W)``, or one image ``(C, H, W)``.
        weight: Kernels ``(K, C/G, KH, KW)`` (torch's OIHW layout).
        bias: Optional ``(K,)``, added to every output pixel of channel $k$.
        stride: $s$, an int or a pair ``(s_H, s_W)``.
        padding: An int, a pair ``(p_H, p_W)`` (each on both sides), a pair of
            ``(before, after)`` pairs, ``"valid"`` (no padding) or ``"same"``.
        dilation: $d$, the spacing between kernel taps, an int or a pair.
        groups: $G$; ``C`` and ``K`` must both be multiples of it. ``groups=C``
            with ``weight`` of shape ``(m·C, 1, KH, KW)`` is depthwise.
        method: ``"im2col"``, ``"shift"``, ``"fft"``, ``"winograd"`` (3×3
            kernels with stride 1 and dilation 1 only) or ``"auto"``, the
            fastest measured for the shape: ``"fft"`` for stride-1 kernels of
            49 taps or more, ``"shift"`` for depthwise kernels, ``"winograd"``
            for 3×3 stride-1 kernels with 32 channels or more in and out and
            14×14 outputs or more, ``"shift"`` for other stride-1 kernels
            with 32×32 outputs or more under JAX (whose compiler fuses the
            per-tap sum), ``"im2col"`` otherwise. Traced (``torch.compile``,
            ``jax.jit``), no loop over samples, bands or taps unrolls into
            the program but ``"shift"``'s one term per tap, and ``"auto"``
            picks ``"shift"`` only up to 25 taps (the chapter's "Under
            torch.compile and jax.jit"). Every method gives the same
            numbers for finite input; an ±inf or NaN pixel makes ``"fft"``
            NaN everywhere (each frequency mixes every pixel) and
            ``"winograd"`` NaN on the 4×4 output tiles whose input tile holds
            it, the others only where the kernel touches it.
        xp: Array namespace; inferred from the arrays when omitted.

    Returns:
        ``(N, K, Ho, Wo)`` (or ``(K, Ho, Wo)`` for one image), in the inputs'
        floating dtype and on their device. A batch of ``N = 0`` images gives
        an empty batch; ``C = 0`` input channels give the empty sum, zeros plus
        the bias (PyTorch returns no output channels there instead).

    Raises:
        ValueError: Mismatched channels or groups, a kernel larger than the
            padded input, an unknown option, or ``"winograd"`` for a kernel
            other than 3×3 at stride 1 — naming the argument.

    Examples:
        The guide's layer, ``nn.Conv2d(1, 1, kernel_size=3)`` on a 28×28 image:

        >>> import numpy as np
        >>> import mlequations as mle
        >>> image = np.ones((1, 1, 28, 28))
        >>> kernel = np.ones((1, 1, 3, 3))
        >>> y = mle.conv2d(image, kernel, np.asarray([0.5]))
        >>> y.shape, float(y[0, 0, 0, 0])
        ((1, 1, 26, 26), 9.5)

        A kernel that picks the pixel to its lower right shows there is no flip:

        >>> x = np.arange(9.0).reshape(1, 3, 3)
        >>> w = np.asarray([[[[0.0, 0.0], [0.0, 1.0]]]])
        >>> mle.conv2d(x, w)
        array([[[4., 5.],
                [7., 8.]]])

        Every method gives the same result:

        >>> rng = np.random.default_rng(0)
        >>> x, w = rng.normal(size=(1, 4, 9, 9)), rng.normal(size=(2, 4, 3, 3))
        >>> [bool(np.allclose(mle.conv2d(x, w, method=m), mle.conv2d(x, w)))
        ...  for m in ("im2col", "shift", "fft", "winograd")]
        [True, True, True, True]

    References:
        Chellapilla, K., Puri, S., Simard, P. (2006). High performance
        convolutional neural networks for document processing (im2col).
        Mathieu, M., Henaff, M., LeCun, Y. (2014). Fast training of
        convolutional networks through FFTs. arXiv:1312.5851.
        Lavin, A., Gray, S. (2016). Fast algorithms for convolutional neural
        networks. *CVPR* (Winograd's minimal filtering).
    """
    xp = namespace(input=input, weight=weight, bias=bias, xp=xp)
    out_dtype, work = float_dtypes(xp, input=input, weight=weight, bias=bias)
    if input.ndim not in (3, 4):
        raise ValueError(
            f"`input` must have shape (N, C, H, W) or (C, H, W), got {tuple(input.shape)}"
        )
    if weight.ndim != 4:
        raise ValueError(
            f"`weight` must have shape (K, C/groups, KH, KW), got {tuple(weight.shape)}"
        )
    if method not in _METHODS:
        raise ValueError(
            f"`method` must be one of {', '.join(map(repr, _METHODS))}, got {method!r}"
        )
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"`groups` must be a positive int, got {groups!r}")
    batched = input.ndim == 4
    x = input if batched else input[None, ...]  # (N, C, H, W)
    C, H, W_in = x.shape[1:]
    K, Cg, KH, KW = weight.shape
    if C % groups or K % groups:
        raise ValueError(
            f"`groups`={groups} must divide the input channels ({C}) and the output "
            f"channels ({K}) of `input` {tuple(input.shape)} and `weight` {tuple(weight.shape)}"
        )
    if Cg * groups != C:
        raise ValueError(
            f"`input` has {C} channels but `weight` {tuple(weight.shape)} expects "
            f"{Cg}·groups = {Cg * groups} (groups={groups})"
        )
    if bias is not None and tuple(bias.shape) != (K,):
        raise ValueError(f"`bias` must have shape ({K},), got {tuple(bias.shape)}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads = _padding(padding, (H, W_in), (KH, KW), stride, dilation)  # ((top, bottom), (l, r))
    (top, bottom), (left, right) = pads
    Hp, Wp = H + top + bottom, W_in + left + right
    reach = ((KH - 1) * dilation[0] + 1, (KW - 1) * dilation[1] + 1)  # the dilated kernel
    if reach[0] > Hp or reach[1] > Wp:
        raise ValueError(
            f"`weight` spans {reach[0]}×{reach[1]} pixels (kernel {KH}×{KW}, dilation "
            f"{dilation}), more than the padded `input` ({Hp}×{Wp})"
        )
    if method == "fft" and not hasattr(xp, "fft"):
        raise ValueError(
            f'`method`="fft" needs the array API fft extension, which {xp.__name__} lacks'
        )
    if method == "winograd" and ((KH, KW), stride, dilation) != ((3, 3), (1, 1), (1, 1)):
        raise ValueError(
            f'`method`="winograd" needs a 3×3 kernel with stride 1 and dilation 1, got a '
            f"{KH}×{KW} kernel with stride {stride} and dilation {dilation}"
        )
    x = xp.astype(x, work, copy=False)
    weight = xp.astype(weight, work, copy=False)
    if bias is not None:
        bias = xp.astype(bias, work, copy=False)
    traced = is_traced(input, weight, bias)
    static = _plan(x, weight, groups, pads, stride, dilation, method, traced, xp)
    # Not on JAX: XLA differentiates the forward plan itself, fusing its transposed
    # gathers; on ResNet-18's layers under jax.jit(grad) that measured as fast as the
    # rule below or faster (a 3×3 at stride 2: 1.3× lax.conv against 1.9×), where
    # torch's autograd replays the plan op by op and keeps its patch matrix.
    y = _autodiff.apply(
        _forward, _backward, (x, weight, bias), static, xp, keeps_output=False, on_jax=False
    )
    if not batched:
        y = y[0, ...]
    return xp.astype(y, out_dtype, copy=False)


# -- training: a backward pass that keeps only the inputs ------------------------------
#
# Autograd through a forward plan would keep what that plan made: im2col's patch
# matrix (KH·KW times the input), Winograd's transformed tiles, the FFT's spectra,
# and would replay its slices and stacks backwards as scatters into zeros. On
# PyTorch the rule below keeps the inputs alone and writes both gradients as what
# they are, convolutions and a patch-matrix product, so training a CNN needs the
# memory of its forward pass and each backward product runs on the forward pass's
# fast paths. (XLA differentiates the forward plan itself: see conv2d.)


class _Conv(NamedTuple):
    """Everything of one convolution but its arrays (hashable: the autodiff seam's `static`)."""

    groups: int
    out: Pair
    pads: tuple[Pair, Pair]
    stride: Pair
    dilation: Pair
    method: str
    traced: bool
    xp: Namespace


def _plan(
    x: Array,
    weight: Array,
    groups: int,
    pads: tuple[Pair, Pair],
    stride: Pair,
    dilation: Pair,
    method: str,
    traced: bool,
    xp: Namespace,
) -> _Conv:
    """The output size and, for ``method="auto"``, the method of a validated convolution."""
    K, Cg, KH, KW = weight.shape
    rows, cols = (x.shape[2] + sum(pads[0]), x.shape[3] + sum(pads[1]))  # padded
    out = (
        (rows - (KH - 1) * dilation[0] - 1) // stride[0] + 1,
        (cols - (KW - 1) * dilation[1] - 1) // stride[1] + 1,
    )
    if method == "auto":
        method = _auto(
            xp, groups, (Cg, K // groups), (KH, KW), stride, dilation, out, traced=traced
        )
        # The accelerator rule, or a measured method (issue 21, _tune.py).
        options = {"stride": stride, "padding": pads, "dilation": dilation, "groups": groups}
        method = _tune.conv2d_method(method, x, weight, options, out, xp)
    return _Conv(groups, out, pads, stride, dilation, method, traced, xp)


def _forward(arrays: tuple[Any, ...], c: _Conv) -> tuple[Array, tuple[()]]:
    """``(N, K, Ho, Wo)`` by the chosen method, plus the bias; nothing kept beyond the inputs."""
    x, weight, bias = arrays
    xp = c.xp
    K, Cg = weight.shape[:2]
    if x.shape[0] == 0 or Cg == 0 or K == 0:
        # No sample, or an empty sum over channels: zeros, computed by no algorithm
        # (Dask's reshape and MKL's FFT reject zero-size arrays).
        y = xp.zeros((x.shape[0], K, *c.out), dtype=x.dtype, device=device(x))
    elif c.method == "fft":  # every method pads (or not) as it needs: one copy at most
        y = _fft(x, weight, c.groups, c.out, c.pads, c.stride, c.dilation, xp, c.traced)
    elif c.method == "im2col":
        y = _im2col(x, weight, c.groups, c.out, c.pads, c.stride, c.dilation, xp, c.traced)
    elif c.method == "winograd":
        y = _winograd(x, weight, c.groups, c.out, c.pads, xp, c.traced)
    else:
        tile = None if c.traced or is_jax(xp) or accelerator(x) else _TILE  # no loop on a GPU
        y = _shift(x, weight, c.groups, c.out, c.pads, c.stride, c.dilation, xp, tile)
    # Row-major, as F.conv2d returns it: a plan may end on a view that is not (im2col's
    # samples moved back beside the channels, a flat grid's extra columns dropped, the
    # FFT's crop), and `y.view(N, -1)` in a user's model fails on such a view. Merging
    # the channels with the pixels copies exactly those views and is free otherwise.
    N = y.shape[0]
    y = xp.reshape(xp.reshape(y, (N, K * c.out[0] * c.out[1])), (N, K, *c.out))
    if bias is not None:
        y = y + xp.reshape(bias, (K, 1, 1))
    return y, ()


def _backward(
    arrays: tuple[Any, ...],
    out: None,
    saved: tuple[()],
    dy: Array,
    needs: tuple[bool, ...],
    c: _Conv,
) -> tuple[Array | None, ...]:
    """The gradients of (input, weight, bias) from ``dy = ∂L/∂y``, each only where needed.

    A network's first layer needs no input gradient, a frozen layer no weight
    gradient: neither is computed then. The bias gradient is the sum of `dy` over
    samples and pixels.
    """
    x, weight, bias = arrays
    dx = _input_grad(dy, weight, x.shape, c) if needs[0] else None
    dw = _weight_grad(x, dy, weight.shape, c) if needs[1] else None
    db = c.xp.sum(dy, axis=(0, 2, 3)) if bias is not None and needs[2] else None
    return dx, dw, db


def _input_grad(dy: Array, weight: Array, shape: tuple[int, ...], c: _Conv) -> Array:
    r"""$\partial L / \partial x$: the transposed convolution, written as convolutions.

    Padded input row $r$ (columns likewise) meets output row $h$ through tap
    $i$ where $r = h s + i d$, so

    $$
    \frac{\partial L}{\partial \tilde x_{n,c,r}} =
        \sum_{k \in \text{group}(c)} \; \sum_{i \,:\, s \,\mid\, r - i d}
        W_{k,c,i}\; g_{n,k,\,(r - i d)/s}, \qquad g = \partial L / \partial y .
    $$

    The rows of one phase $r \equiv a \pmod s$ meet the same taps, those with
    $i d \equiv a$: for them the sum is a cross-correlation of $g$ with those
    taps, flipped, their input and output channels swapped within each group
    (:func:`_phase` gives the taps, their spacing and the padding). So each of
    the $s_H s_W$ phases is one stride-1 convolution on the forward pass's plans
    (``"auto"``'s pick: Winograd for a ResNet 3×3), and the phases interleave
    into the gradient. No multiplication by an inserted zero is made (a stride
    of 2 with zeros spread into $g$ would make four times the products).
    """
    xp = c.xp
    N, C, H, W = shape
    K, Cg, KH, KW = weight.shape
    if N == 0 or C == 0 or K == 0:
        return xp.zeros(tuple(shape), dtype=dy.dtype, device=device(dy))
    (sH, sW), (dH, dW) = c.stride, c.dilation
    (top, _), (left, _) = c.pads
    w = xp.reshape(weight, (c.groups, K // c.groups, Cg, KH, KW))
    w = xp.reshape(xp.permute_dims(w, (0, 2, 1, 3, 4)), (C, K // c.groups, KH, KW))
    rows = [_phase(a, KH, sH, dH, top, H, c.out[0]) for a in range(sH)]
    cols = [_phase(b, KW, sW, dW, left, W, c.out[1]) for b in range(sW)]
    blocks = []
    for taps_r, dil_r, fit_r, U in rows:
        row = []
        for taps_c, dil_c, fit_c, V in cols:
            if taps_r is None or taps_c is None:  # no tap reaches this phase: no gradient
                row.append(xp.zeros((N, C, U, V), dtype=dy.dtype, device=device(dy)))
                continue
            sub = xp.flip(w[:, :, taps_r, taps_c], axis=(2, 3))
            g = _fit(dy, fit_r, fit_c, xp)
            plan = _plan(g, sub, c.groups, ((0, 0), (0, 0)), (1, 1), (dil_r, dil_c), "auto",
                         c.traced, xp)  # fmt: skip
            # The forward pass's own plans, not conv2d: a custom autograd rule called in
            # another's backward pass is what dynamo cannot trace, and autograd records
            # these operations for a double backward (create_graph=True) all the same.
            row.append(_forward((g, sub, None), plan)[0])  # (N, C, U, V)
        blocks.append(row)
    dx = _interleave(blocks, xp)  # (N, C, U·sH, V·sW): padded rows (top // sH)·sH on
    return dx[:, :, top % sH : top % sH + H, left % sW : left % sW + W]


def _phase(
    a: int, k: int, s: int, d: int, start: int, length: int, out: int
) -> tuple[slice | None, int, Pair, int]:
    """The taps, their spacing and the padding of the input gradient's row phase `a`.

    Rows ``r = s·u + a`` for ``u`` from ``start // s``, ``U`` of them (enough for
    padded rows ``start .. start + length``). Tap ``i`` reaches them when ``i·d ≡ a
    (mod s)``, first at ``i0`` then every ``s / gcd(s, d)``; from output row ``h = u
    - o_i``, ``o_i = (i·d - a) / s``, which grows by ``d / gcd(s, d)``: that is the
    dilation of the correlation over output rows, whose padding ``(before, after)``
    (negative: a crop) makes its ``U`` results the rows wanted. Returns ``(taps,
    dilation, (before, after), U)``, with `taps` None when no tap reaches the phase.
    """
    first_u, count = start // s, -(-(start % s + length) // s)
    step = s // math.gcd(s, d)
    first = next((i for i in range(min(step, k)) if (i * d - a) % s == 0), None)
    if first is None:
        return None, 1, (0, 0), count
    taps = slice(first, k, step)
    n = len(range(first, k, step))
    dilation = d // math.gcd(s, d)
    o_min = (first * d - a) // s
    o_max = o_min + (n - 1) * dilation
    return taps, dilation, (o_max - first_u, first_u + count - out - o_min), count


def _interleave(blocks: list[list[Array]], xp: Namespace) -> Array:
    """The phase blocks ``[a][b]``, each ``(N, C, U, V)``, as one ``(N, C, U·sH, V·sW)``.

    Block ``[a][b]`` holds the rows ``u·sH + a`` and the columns ``v·sW + b``.
    """
    if len(blocks) == 1 and len(blocks[0]) == 1:
        return blocks[0][0]
    N, C, U, V = blocks[0][0].shape
    rows = [xp.reshape(xp.stack(row, axis=-1), (N, C, U, V * len(row))) for row in blocks]
    return xp.reshape(xp.stack(rows, axis=3), (N, C, U * len(blocks), -1))


def _weight_grad(x: Array, dy: Array, shape: tuple[int, ...], c: _Conv) -> Array:
    r"""$\partial L / \partial W$: the output gradient times the patch matrix, transposed.

    $$
    \frac{\partial L}{\partial W_{k,c,i,j}} = \sum_{n,h,w}
        \frac{\partial L}{\partial y_{n,k,h,w}}\;
        \tilde x_{n,\; g_k C/G + c,\; h s_H + i d_H,\; w s_W + j d_W},
    $$

    per group one product of ``(K/G, N·Ho·Wo)`` by ``(N·Ho·Wo, KH·KW·Cg)``: the
    samples are a part of the long shared axis, so the product is one large
    one, not a small one per sample. The patch matrix is recomputed band by
    band, as ``"im2col"`` makes it (samples second: the channels of the padded
    input come first), rather than kept from the forward pass.

    On large images with many channels the copy into the patch matrix costs
    more than the products (a ResNet 3×3 at 56×56: 20 ms of 27 on the Intel
    Xeon), and one product per tap on a flat view of the image costs none
    (:func:`_tap_weight_grad`: 11 ms; ``conv2d_weight`` 7 ms). Measured there
    on ResNet-18's layers: per tap from 32 channels per group and 28×28
    outputs on, the patch matrix below (7×7 outputs with 512 channels: 4.5×
    faster; the 7×7 stem's 3 channels: 2.5×).
    """
    xp = c.xp
    K, Cg, KH, KW = shape
    N, G = x.shape[0], c.groups
    if N == 0 or Cg == 0 or K == 0:
        return xp.zeros(tuple(shape), dtype=dy.dtype, device=device(dy))
    if Cg >= 32 and min(c.out) >= 28 and (not c.traced or KH * KW <= _TRACED_TAPS):
        return _tap_weight_grad(x, dy, shape, c)  # traced: one term per tap, as "shift"
    xc = xp.permute_dims(_zero_pad(x, *c.pads, xp), (1, 0, 2, 3))  # (C, N, Hp, Wp), a view
    gc = xp.permute_dims(dy, (1, 0, 2, 3))  # (K, N, Ho, Wo), a view
    parts = []  # traced: one gather and one product a band, as the traced forward pass
    phases = None if c.traced else _stride_phases(xc, (KH, KW), c.stride, c.dilation, xp)
    for band in _bands(x, (KH, KW), c.out, c.traced):
        cols = _columns(xc, (KH, KW), G, c.out, c.stride, c.dilation, band, c.traced, xp,
                        channels_first=True, phases=phases)  # fmt: skip
        h, rows = band
        g = xp.reshape(gc[:, :, h : h + rows, :], (G, K // G, N * rows * c.out[1]))
        parts.append(g @ xp.matrix_transpose(cols))  # (G, K/G, Cg·T), this band's
    dw = parts[0] if len(parts) == 1 else xp.sum(xp.stack(parts), axis=0)
    return xp.reshape(dw, (K, Cg, KH, KW))


def _tap_weight_grad(x: Array, dy: Array, shape: tuple[int, ...], c: _Conv) -> Array:
    """The weight gradient one tap at a time, each a product with a view of the image.

    As in ``"shift"`` (:func:`_phases`), tap ``(i, j)`` reads one contiguous
    slice of a flat phase image for the outputs on an ``(Ho, Wq)`` grid; the
    gradient, padded with zero columns to that grid, multiplies it directly,
    no patch copied: ``(N, G, K/G, Ho·Wq) @ (N, G, Ho·Wq, Cg)``, summed over samples.
    """
    xp = c.xp
    K, Cg, KH, KW = shape
    N, G = x.shape[0], c.groups
    flats, Wq, taps = _phases(x, c.pads, (KH, KW), c.out, c.stride, c.dilation, xp)
    L = c.out[0] * Wq
    g = _zero_pad(dy, (0, 0), (0, Wq - c.out[1]), xp)  # (N, K, Ho, Wq): extra columns add 0
    g = xp.reshape(g, (N, G, K // G, L))
    terms = []
    for phase, offset in taps:
        xt = xp.reshape(flats[phase][:, :, offset : offset + L], (N, G, Cg, L))  # a view
        terms.append(xp.sum(g @ xp.matrix_transpose(xt), axis=0))  # (G, K/G, Cg)
    return xp.reshape(xp.stack(terms, axis=-1), (K, Cg, KH, KW))  # taps row-major


def _fit(x: Array, rows: Pair, cols: Pair, xp: Namespace) -> Array:
    """Pad with zeros where ``rows = (top, bottom)`` or `cols` are positive, crop where negative."""
    (top, bottom), (left, right) = rows, cols
    H, W = x.shape[2:]
    x = x[:, :, max(-top, 0) : H - max(-bottom, 0), max(-left, 0) : W - max(-right, 0)]
    return _zero_pad(x, (max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)), xp)
