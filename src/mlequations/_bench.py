"""The benchmark cases and the timer, shared by ``mlequations bench`` and ``benchmarks/``.

One definition of what is measured — operations, sizes, FLOP counts, inputs,
the portable call and the native baseline — so the command line and the
pytest-benchmark suite never drift apart.

Timing is honest on asynchronous devices: each timed run ends with the backend's
``sync`` (``block_until_ready``, ``torch.cuda.synchronize``, the CuPy stream), and
warm-up runs — which include JAX's compilation — are never timed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._backends import Backend
from ._native import native

__all__ = [
    "OPS",
    "RECORD_SCHEMA",
    "Case",
    "Record",
    "Timing",
    "cases",
    "kernels",
    "make_inputs",
    "run",
    "steady_allocator",
    "time_call",
    "time_interleaved",
]

OPS = ("matmul", "softmax", "attention", "conv2d")


@dataclass(frozen=True)
class Case:
    """One operation at one size.

    Attributes:
        op: ``"matmul"``, ``"softmax"``, ``"attention"`` or ``"conv2d"``.
        label: How tables and plots name the size.
        shapes: Input shapes, in call order.
        options: Keyword options of the portable function (and the baseline).
        flops: Floating-point operations of one call (the effective count: 2 per
            multiply-add; attention 4·B·H·L·S·E, even when causal).
    """

    op: str
    label: str
    shapes: tuple[tuple[int, ...], ...]
    options: dict[str, Any] = field(default_factory=dict)
    flops: float = 0.0

    @property
    def id(self) -> str:
        """A compact id for pytest parametrisation."""
        return f"{self.op}-{self.label}".replace(" ", "")


def _matmul(n: int) -> Case:
    return Case("matmul", f"{n}x{n}", ((n, n), (n, n)), flops=2.0 * n**3)


def _softmax(rows: int, cols: int) -> Case:
    return Case("softmax", f"{rows}x{cols}", ((rows, cols),), flops=5.0 * rows * cols)


def _attention(B: int, H: int, L: int, E: int, causal: bool) -> Case:
    label = f"({B},{H},{L},{E})" + (" causal" if causal else "")
    shape = (B, H, L, E)
    return Case(
        "attention", label, (shape, shape, shape), {"is_causal": causal}, 4.0 * B * H * L * L * E
    )


def _conv2d(
    name: str,
    N: int,
    C: int,
    K: int,
    size: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int | str = 0,
    groups: int = 1,
) -> Case:
    if padding == "same":
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads = (total // 2, total - total // 2)
    else:
        pads = (int(padding), int(padding))
    out = (size + pads[0] + pads[1] - kernel) // stride + 1
    options = {"stride": stride, "padding": padding, "groups": groups}
    return Case(
        "conv2d",
        name,
        ((N, C, size, size), (K, C // groups, kernel, kernel)),
        options,
        2.0 * N * K * (C // groups) * kernel * kernel * out * out,
    )


_LADDERS: dict[str, list[Case]] = {
    "matmul": [_matmul(n) for n in (256, 512, 1024, 2048)],
    "softmax": [_softmax(r, 1024) for r in (256, 1024, 4096, 16384)],
    "attention": [
        _attention(*shape, causal)
        for shape in ((8, 8, 512, 64), (4, 8, 1024, 64), (1, 8, 4096, 64), (1, 1, 16384, 64))
        for causal in (False, True)
    ],
    "conv2d": [
        _conv2d("resnet 3x3", 8, 64, 64, 56, 3, padding=1),
        _conv2d("stem 7x7 s2", 8, 3, 64, 224, 7, stride=2, padding=3),
        _conv2d("deep 3x3", 8, 256, 256, 14, 3, padding=1),
        _conv2d("depthwise 3x3", 8, 128, 128, 56, 3, padding=1, groups=128),
        _conv2d("large 15x15", 4, 16, 16, 128, 15, padding="same"),
    ],
}

_QUICK: dict[str, list[Case]] = {
    "matmul": [_matmul(n) for n in (64, 128)],
    "softmax": [_softmax(r, 256) for r in (16, 64)],
    "attention": [_attention(1, 2, 64, 16, False), _attention(1, 2, 128, 16, True)],
    # The same kinds of convolution as the full ladder, small enough to run in seconds.
    "conv2d": [
        _conv2d("resnet 3x3", 1, 8, 8, 14, 3, padding=1),
        _conv2d("stem 7x7 s2", 1, 3, 8, 28, 7, stride=2, padding=3),
        _conv2d("deep 3x3", 1, 32, 32, 7, 3, padding=1),
        _conv2d("depthwise 3x3", 1, 16, 16, 14, 3, padding=1, groups=16),
        _conv2d("large 15x15", 1, 4, 4, 32, 15, padding="same"),
    ],
}


def cases(op: str, *, quick: bool = False) -> list[Case]:
    """The ladder of sizes for `op` (a tiny one with `quick`)."""
    if op not in OPS:
        raise ValueError(f"`op` must be one of {', '.join(OPS)}, got {op!r}")
    return list((_QUICK if quick else _LADDERS)[op])


def make_inputs(case: Case, backend: Backend, dtype: str = "float32", seed: int = 0) -> list[Any]:
    """The case's inputs on `backend`, drawn from a seeded generator."""
    rng = np.random.default_rng(seed)
    return [backend.asarray(rng.standard_normal(shape), dtype) for shape in case.shapes]


def _native_padding(case: Case) -> tuple[int, int, int, int]:
    padding = case.options.get("padding", 0)
    if padding == "same":
        size, kernel = case.shapes[0][-1], case.shapes[1][-1]
        stride = case.options.get("stride", 1)
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        return (total // 2, total - total // 2) * 2
    return (int(padding),) * 4


def kernels(case: Case, backend: Backend) -> dict[str, Callable[..., Any]]:
    """The implementations to time for `case` on `backend`: ``{"portable": f, "native": g}``.

    matmul has only the native kernel (it is the roofline reference); a backend
    without a native kernel for the op has only the portable one. Under JAX both
    are jitted, as users run them.
    """
    import mlequations as mle

    found: dict[str, Callable[..., Any]] = {}
    portable = {
        "softmax": lambda x: mle.softmax(x, axis=-1),
        "attention": lambda q, k, v: mle.attention(q, k, v, **case.options),
        "conv2d": lambda x, w: mle.conv2d(x, w, **case.options),
    }.get(case.op)
    if portable is not None:
        if backend.library == "jax":
            import jax

            portable = jax.jit(portable)
        found["portable"] = portable
    options = dict(case.options)
    if case.op == "conv2d":
        options["padding"] = _native_padding(case)
    baseline = native(case.op, backend, **options)
    if baseline is not None:
        found["native"] = baseline
    return found


def steady_allocator() -> bool:
    """Make the C allocator keep freed memory for reuse; True where it applies (glibc).

    glibc hands a freed block above its mmap threshold back to the OS, and the
    threshold moves with the largest block freed so far. A call whose output
    lies above it page-faults all of its memory in again (about 10 ms for the
    13 MB output of the depthwise case, five times the convolution itself), and
    whether it does depends on which call ran before: the same native kernel
    measured 2 ms or 17 ms. Fixing both thresholds at their ceiling times every
    candidate, portable or native, in the state of a training loop after its
    first step; PyTorch's CPU performance guide advises jemalloc or tcmalloc
    for the same reason. Blocks above 32 MiB (glibc's ceiling) still fault.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the best and the median of the timed runs."""

    best: float
    median: float
    runs: int


def time_call(
    fn: Callable[..., Any],
    args: list[Any],
    sync: Callable[[Any], Any],
    *,
    repeats: int = 5,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``fn(*args)``: `warmup` untimed runs (JIT compiles here), then `repeats` timed.

    `sync` is called on the result inside every timed run, once, so an
    asynchronous device (a GPU, JAX's dispatch) cannot return before the work is
    done.
    """
    timing = time_interleaved({"fn": fn}, args, sync, repeats=repeats, warmup=warmup, clock=clock)
    result = timing["fn"]
    if isinstance(result, Exception):
        raise result
    return result


def time_interleaved(
    fns: dict[str, Callable[..., Any]],
    args: list[Any],
    sync: Callable[[Any], Any],
    *,
    repeats: int = 5,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing | Exception]:
    """Time several implementations of one call in alternating rounds.

    Each round times every implementation once, so a slow spell of a shared
    machine (seconds long, ±30 % here) falls on all of them rather than on
    whichever ran then; the ratios between them are what the tables report.
    An implementation that raises is dropped from later rounds and its
    exception returned in its place.
    """
    out: dict[str, Timing | Exception] = {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            if name in out:
                continue
            try:
                start = clock()
                sync(fn(*args))
                stop = clock()
            except Exception as exc:  # reported as a record with `error`, not a crash
                out[name] = exc
                continue
            if round_ >= warmup:
                times[name].append(stop - start)
    for name, ts in times.items():
        if name not in out:
            ts.sort()
            out[name] = Timing(best=ts[0], median=ts[len(ts) // 2], runs=repeats)
    return out


@dataclass
class Record:
    """One row of ``mlequations bench``: one implementation of one case on one backend.

    The JSON output is a list of these, as dictionaries (see ``RECORD_SCHEMA``).
    """

    backend: str
    device: str
    op: str
    case: str
    impl: str
    dtype: str
    flops: float
    seconds: float | None = None
    median_seconds: float | None = None
    gflops: float | None = None
    ratio: float | None = None
    matmul_fraction: float | None = None
    gpu_speedup: float | None = None
    error: str | None = None


RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "backend",
        "device",
        "op",
        "case",
        "impl",
        "dtype",
        "flops",
        "seconds",
        "median_seconds",
        "gflops",
        "ratio",
        "matmul_fraction",
        "gpu_speedup",
        "error",
    ],
    "properties": {
        "backend": {"type": "string"},
        "device": {"type": "string"},
        "op": {"enum": list(OPS)},
        "case": {"type": "string"},
        "impl": {"enum": ["portable", "native"]},
        "dtype": {"type": "string"},
        "flops": {"type": "number"},
        "seconds": {"type": ["number", "null"]},
        "median_seconds": {"type": ["number", "null"]},
        "gflops": {"type": ["number", "null"]},
        "ratio": {
            "type": ["number", "null"],
            "description": "portable time / native time, on portable rows",
        },
        "matmul_fraction": {
            "type": ["number", "null"],
            "description": "GFLOP/s / the same backend's best matmul GFLOP/s",
        },
        "gpu_speedup": {
            "type": ["number", "null"],
            "description": "CPU time / GPU time of the same library and impl",
        },
        "error": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}
"""JSON Schema of one record; ``--json`` writes ``{"records": [...], "meta": {...}}``."""


def run(
    backends: list[Backend],
    ops: list[str],
    *,
    quick: bool = False,
    dtype: str = "float32",
    repeats: int = 5,
    labels: list[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[Record]:
    """Time every case of `ops` on every backend; failures become records with `error`.

    A matmul calibration is always included, since "fraction of matmul peak" needs it.
    The allocator is made steady first (:func:`steady_allocator`).
    """
    steady_allocator()
    ops = ["matmul", *[op for op in ops if op != "matmul"]]
    plan = [
        (b, c)
        for b in backends
        for op in ops
        for c in cases(op, quick=quick)
        if labels is None or c.label in labels or c.op == "matmul"
    ]
    records: list[Record] = []
    for done, (backend, case) in enumerate(plan):
        if progress is not None:
            progress(done, len(plan), f"{case.op} {case.label} on {backend.id}")
        records.extend(_run_case(backend, case, dtype, repeats))
    if progress is not None:
        progress(len(plan), len(plan), "done")
    _derive(records)
    return records


def _run_case(backend: Backend, case: Case, dtype: str, repeats: int) -> list[Record]:
    device = str(backend.device or ("gpu" if backend.gpu else "cpu"))

    def record(impl: str, **values: Any) -> Record:
        return Record(backend.id, device, case.op, case.label, impl, dtype, case.flops, **values)

    try:
        args = make_inputs(case, backend, dtype)
        impls = kernels(case, backend)
    except Exception as exc:  # a backend that cannot even start is a row, not a crash
        return [record("portable", error=f"{type(exc).__name__}: {exc}")]
    out = []
    timings = time_interleaved(impls, args, backend.sync, repeats=repeats)
    for impl, timing in timings.items():
        if isinstance(timing, Exception):
            out.append(record(impl, error=f"{type(timing).__name__}: {timing}"))
            continue
        out.append(
            record(
                impl,
                seconds=timing.best,
                median_seconds=timing.median,
                gflops=case.flops / timing.best / 1e9,
            )
        )
    return out


def _derive(records: list[Record]) -> None:
    """Fill the ratios: portable/native, fraction of matmul peak, GPU over CPU."""
    by_key = {(r.backend, r.op, r.case, r.impl): r for r in records}
    peak: dict[str, float] = {}
    for r in records:
        if r.op == "matmul" and r.gflops:
            peak[r.backend] = max(peak.get(r.backend, 0.0), r.gflops)
    cpu_of = {"torch-cuda": "torch-cpu", "jax-gpu": "jax-jit", "cupy": "numpy"}
    for r in records:
        if r.seconds is None:
            continue
        twin = by_key.get((r.backend, r.op, r.case, "native"))
        if r.impl == "portable" and twin is not None and twin.seconds:
            r.ratio = r.seconds / twin.seconds
        if r.gflops and peak.get(r.backend):
            r.matmul_fraction = r.gflops / peak[r.backend]
        cpu = by_key.get((cpu_of.get(r.backend, ""), r.op, r.case, r.impl))
        if cpu is not None and cpu.seconds:
            r.gpu_speedup = cpu.seconds / r.seconds
