"""The benchmark cases and the timer, shared by ``mlequations bench`` and ``benchmarks/``.

One definition of what is measured — operations, sizes, FLOP counts, inputs,
the portable call and the native baseline — so the command line and the
pytest-benchmark suite never drift apart.

Timing is honest on asynchronous devices: each timed run ends with the backend's
``sync`` (``block_until_ready``, ``torch.cuda.synchronize``, the CuPy stream), and
warm-up runs — which include JAX's compilation — are never timed.

Timing is honest on a shared CPU too. Each array library keeps its own thread
pool (OpenBLAS for NumPy, OpenMP for PyTorch, Eigen for XLA), sized to every
core, and a pool's workers keep spinning for a while after each call. With two
libraries in one process those pools fight for the same cores, and a
2-thread kernel waits a whole scheduler slice for its descheduled half: a
128×128 matmul that takes 0.04 ms alone took 12 ms right after the other
library's. So when several libraries are timed, each runs in a fresh process
of its own (:func:`run`); a reading that is still physically impossible is
flagged (:attr:`Record.flag`), never reported as a rate.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import pickle
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._backends import Backend, by_id
from ._native import native, native_equation

__all__ = [
    "COMPILE_OPS",
    "OPS",
    "RECORD_SCHEMA",
    "Case",
    "CompileRecord",
    "Overhead",
    "Record",
    "Timing",
    "cases",
    "compile_case",
    "compile_kernel",
    "compile_run",
    "compile_table",
    "compiler_of",
    "kernels",
    "make_inputs",
    "overhead",
    "overhead_kernels",
    "overhead_table",
    "plot",
    "run",
    "steady_allocator",
    "table",
    "time_call",
    "time_interleaved",
]

OPS = ("matmul", "softmax", "attention", "attention-train", "conv2d")


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
        least_flops: The least arithmetic any algorithm we know needs for the
            call (causal attention skips the masked half; Winograd F(4×4, 3×3)
            does a quarter of a 3×3 convolution's multiplications; an FFT can
            do far fewer for large kernels). A time shorter than `least_flops`
            at the matmul peak is physically impossible. Defaults to `flops`.
    """

    op: str
    label: str
    shapes: tuple[tuple[int, ...], ...]
    options: dict[str, Any] = field(default_factory=dict)
    flops: float = 0.0
    least_flops: float | None = None

    @property
    def floor(self) -> float:
        """`least_flops`, or `flops` where no cheaper algorithm is known."""
        return self.flops if self.least_flops is None else self.least_flops

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
    flops = 4.0 * B * H * L * L * E
    visible = (L + 1) / (2 * L) if causal else 1.0  # the causal mask keeps a triangle
    return Case(
        "attention", label, (shape, shape, shape), {"is_causal": causal}, flops, flops * visible
    )


def _attention_train(B: int, H: int, L: int, E: int, causal: bool) -> Case:
    """Forward + backward of attention: the gradients of q, k and v for a given dO."""
    label = f"({B},{H},{L},{E})" + (" causal" if causal else "")
    shape = (B, H, L, E)
    # 7 matrix products of 2·B·H·L·S·E: 2 forward, 5 backward (one recomputes the scores);
    # a method that keeps the weights from the forward pass needs 6.
    flops = 14.0 * B * H * L * L * E
    visible = (L + 1) / (2 * L) if causal else 1.0
    return Case(
        "attention-train",
        label,
        (shape,) * 4,
        {"is_causal": causal},
        flops,
        flops * visible * 6 / 7,
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
    direct = 2.0 * N * K * (C // groups) * kernel * kernel * out * out
    least = [direct]
    if kernel == 3 and stride == 1:
        least.append(direct / 4)  # Winograd F(4×4, 3×3): 36 products per 16 outputs, not 144
    # FFT: real transforms of the N·C images, the K·C/G kernels and the N·K
    # outputs at the padded size P (about 2.5·P·log2 P each), and a complex
    # multiply-add (8 flops) per frequency (P/2 of them) and channel pair.
    P = (size + pads[0] + pads[1]) ** 2
    transforms = N * C + K * (C // groups) + N * K
    least.append(transforms * 2.5 * P * math.log2(P) + 8.0 * N * K * (C // groups) * P / 2)
    return Case(
        "conv2d",
        name,
        ((N, C, size, size), (K, C // groups, kernel, kernel)),
        options,
        direct,
        min(least),
    )


_LADDERS: dict[str, list[Case]] = {
    "matmul": [_matmul(n) for n in (256, 512, 1024, 2048)],
    "softmax": [_softmax(r, 1024) for r in (256, 1024, 4096, 16384)],
    "attention": [
        _attention(*shape, causal)
        for shape in ((8, 8, 512, 64), (4, 8, 1024, 64), (1, 8, 4096, 64), (1, 1, 16384, 64))
        for causal in (False, True)
    ],
    "attention-train": [
        _attention_train(*shape, causal)
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
    # matmul is the peak that "% of matmul peak" divides by: even a smoke test
    # measures it at sizes large enough to be compute-bound, and keeps the best.
    "matmul": [_matmul(n) for n in (256, 512, 1024)],
    "softmax": [_softmax(r, 256) for r in (16, 64)],
    "attention": [_attention(1, 2, 64, 16, False), _attention(1, 2, 128, 16, True)],
    "attention-train": [
        _attention_train(1, 2, 64, 16, False),
        _attention_train(1, 2, 128, 16, True),
    ],
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


def kernels(case: Case, backend: Backend, *, jit: bool = True) -> dict[str, Callable[..., Any]]:
    """The implementations to time for `case` on `backend`: ``{"portable": f, "native": g}``.

    matmul has only the native kernel (it is the roofline reference); a backend
    without a native kernel for the op has only the portable one. Under JAX both
    are jitted, as users run them (with `jit` False the portable function is left
    for the caller to compile: :func:`compile_run`).
    """
    import mlequations as mle

    found: dict[str, Callable[..., Any]] = {}
    calls: dict[str, Callable[..., Any]] = {
        "softmax": lambda x: mle.softmax(x, axis=-1),
        "attention": lambda q, k, v: mle.attention(q, k, v, **case.options),
        "conv2d": lambda x, w: mle.conv2d(x, w, **case.options),
    }
    portable = calls.get(case.op)
    if case.op == "attention-train":  # only where autodiff exists
        portable = training_step(
            lambda q, k, v: mle.attention(q, k, v, **case.options), backend.library
        )

    if portable is not None:
        found["portable"] = jax_jit(portable) if jit and backend.library == "jax" else portable
    options = dict(case.options)
    if case.op == "conv2d":
        options["padding"] = _native_padding(case)
    if case.op == "attention-train":
        attend = native("attention", backend, **options)
        baseline = None if attend is None else training_step(attend, backend.library)
        if baseline is not None and backend.library == "jax":
            baseline = jax_jit(baseline)
    else:
        baseline = native(case.op, backend, **options)
    if baseline is not None:
        found["native"] = baseline
    return found


def jax_jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fn)``: users of JAX run its functions compiled."""
    import jax

    return jax.jit(fn)


def training_step(attend: Callable[..., Any], library: str) -> Callable[..., Any] | None:
    """``step(q, k, v, dO) → (dQ, dK, dV)``: `attend`'s forward and backward, or None.

    torch's autograd, or JAX's ``grad`` (which :func:`kernels` jits); libraries
    without autodiff have no training step to time.
    """
    if library == "torch":
        import torch

        def step(q: Any, k: Any, v: Any, dout: Any) -> Any:
            inputs = [t.detach().requires_grad_(True) for t in (q, k, v)]
            return torch.autograd.grad(attend(*inputs), inputs, dout)

        return step
    if library == "jax":
        import jax

        def loss(q: Any, k: Any, v: Any, dout: Any) -> Any:
            return (attend(q, k, v) * dout).sum()

        return jax.grad(loss, argnums=(0, 1, 2))
    return None


def peak_memory(case: Case, backend: Backend, impl: str, dtype: str = "float32") -> float | None:
    """The extra memory (MiB) of one call of `impl`, above its inputs and outputs.

    Under JAX, XLA's temporaries for the compiled call (exact, nothing is run).
    On a CPU elsewhere, the rise of the peak resident memory of a fresh process
    over one call, warmed on the quick case first, with glibc returning large
    freed blocks at once (``MALLOC_MMAP_THRESHOLD_``), so that what is measured
    is the memory alive together rather than what the allocator kept; minus
    the outputs (a training step's gradients). None where neither applies.
    """
    if backend.library == "jax":
        kernel = kernels(case, backend).get(impl)
        if kernel is None or not hasattr(kernel, "lower"):
            return None
        args = make_inputs(case, backend, dtype)
        analysis = kernel.lower(*args).compile().memory_analysis()
        return float(analysis.temp_size_in_bytes) / 2**20
    if backend.gpu or backend.library not in ("torch", "numpy"):
        return None
    job = (backend.id, case, impl, dtype)
    code = (
        "import pickle, sys; from mlequations._bench import _peak_worker; "
        "print(_peak_worker(*pickle.loads(bytes.fromhex(sys.argv[1]))))"
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run(
        [sys.executable, "-c", code, pickle.dumps(job).hex()],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if done.returncode != 0:
        return None
    return float(done.stdout.split()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (``VmHWM``; ``ru_maxrss`` elsewhere).

    Linux keeps ``ru_maxrss`` across ``exec``: a child started by a process that
    once held gigabytes reports that peak until it exceeds it. ``VmHWM`` belongs
    to the process's own address space and starts afresh.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _peak_worker(backend_id: str, case: Case, impl: str, dtype: str) -> float:
    backend = by_id(backend_id)
    warm = next(c for c in cases(case.op, quick=True))
    kernels(warm, backend)[impl](*make_inputs(warm, backend, dtype))
    args = make_inputs(case, backend, dtype)
    kernel = kernels(case, backend)[impl]
    before = peak_rss_mib()
    out = backend.sync(kernel(*args))
    after = peak_rss_mib()
    outputs = out if isinstance(out, tuple | list) else (out,)
    kept = sum(math.prod(o.shape) * o.dtype.itemsize for o in outputs) / 2**20
    return max(after - before - float(kept), 0.0)


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
    Each round starts one implementation later than the one before, so none
    always runs right after the same neighbour (one that maps and frees 256 MiB
    slowed whichever ran next). An implementation that raises is dropped from
    later rounds and its exception returned in its place.
    """
    out: dict[str, Timing | Exception] = {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(warmup + repeats):
        shift = round_ % max(1, len(names))
        for name in names[shift:] + names[:shift]:
            if name in out:
                continue
            try:
                start = clock()
                sync(fns[name](*args))
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


# --- per-call overhead at the registry's tiny shapes (issue 19) ----------------------------


def overhead_kernels(
    eq: Any, backend: Backend, dtype: str = "float32"
) -> tuple[list[Any], dict[str, Callable[..., Any]]]:
    """The inputs of registry entry `eq` on `backend` and ``{"portable": f, "native": g}``.

    Both take the same inputs (the entry's options bound); under ``jax-jit``
    both are jitted over their array inputs, as users run them. ``"native"`` is
    absent where the library has no counterpart (:func:`native_equation`).
    """
    inputs = eq.make_inputs(np.random.default_rng(0))
    args = [backend.asarray(a, dtype) if hasattr(a, "shape") else a for a in inputs]
    portable: Callable[..., Any] = functools.partial(eq.func, **eq.options)
    if backend.jit:
        if any(not hasattr(a, "shape") for a in args):
            raise TypeError(f"{eq.name}: non-array inputs are not timed under jax.jit")
        portable = jax_jit(portable)
    found = {"portable": portable}
    baseline = native_equation(eq.name, backend, dict(eq.options))
    if baseline is not None:
        found["native"] = baseline
    return args, found


def _batched(fn: Callable[..., Any], calls: int, sync: Callable[[Any], Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        for _ in range(calls - 1):
            fn(*args)
        return sync(fn(*args))

    return run


def _equal_rounds(
    impls: dict[str, Callable[..., Any]], args: list[Any], sync: Callable[[Any], Any], calls: int
) -> dict[str, int]:
    """Calls per timed round for each implementation, so that every round lasts as long.

    The slower implementation makes `calls` calls a round; one ten times faster
    makes ten times as many. On a loaded machine the best of several
    rounds favours short rounds (a quiet spell is likelier to cover them), which
    would flatter whichever is faster; rounds of one length are exposed alike.
    """
    per_call = {}
    for name, fn in impls.items():
        try:
            sync(fn(*args))  # compile (JAX), warm caches
            start = time.perf_counter()
            for _ in range(3):
                sync(fn(*args))
            per_call[name] = max((time.perf_counter() - start) / 3, 1e-9)
        except Exception:  # time_interleaved reports it
            per_call[name] = 0.0
    reference = per_call.get("portable") or max(per_call.values(), default=0.0)
    # Never fewer than `calls`: a lone native call after a round of portable ones
    # waited for torch's sleeping thread pool (9.5 ms for a (4, 6) torch.softmax on
    # the loaded 2-core machine, 2-4 us within a round of 50).
    return {
        name: calls if not t or not reference else max(calls, round(calls * reference / t))
        for name, t in per_call.items()
    }


@dataclass(frozen=True)
class Overhead:
    """One registry entry's time per call at its tiny shapes, portable and native."""

    name: str
    backend: str
    portable: float | None
    native: float | None = None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        """Portable over native time, measured interleaved in one process."""
        if self.portable is None or self.native is None:
            return None
        return self.portable / self.native


def overhead(
    backend: Backend,
    names: list[str] | None = None,
    *,
    calls: int = 50,
    repeats: int = 15,
    dtype: str = "float32",
) -> list[Overhead]:
    """Time every registry entry (or those in `names`) at its own tiny shapes.

    What is measured is the fixed cost of a call: namespace and dtype
    resolution, checks, and one dispatch per array operation. Each timed run is
    `calls` calls in a row (so the clock's resolution does not matter), portable
    and native alternate run by run (:func:`time_interleaved`), and the best
    run is kept, so a busy spell of a shared machine falls on both.
    """
    from ._registry import equations

    out = []
    for eq in equations():
        if names is not None and eq.name not in names:
            continue
        try:
            args, impls = overhead_kernels(eq, backend, dtype)
        except Exception as exc:  # a row, not a crash
            out.append(Overhead(eq.name, backend.id, None, error=f"{type(exc).__name__}: {exc}"))
            continue
        counts = _equal_rounds(impls, args, backend.sync, calls)
        batched = {k: _batched(f, counts[k], backend.sync) for k, f in impls.items()}
        timings = time_interleaved(batched, args, backend.sync, repeats=repeats, warmup=2)
        per_call = {k: t.best / counts[k] for k, t in timings.items() if isinstance(t, Timing)}
        errors = [
            f"{k}: {type(t).__name__}: {t}" for k, t in timings.items() if isinstance(t, Exception)
        ]
        out.append(
            Overhead(
                eq.name,
                backend.id,
                per_call.get("portable"),
                per_call.get("native"),
                "; ".join(errors) or None,
            )
        )
    return out


def overhead_table(rows: list[Overhead]) -> str:
    """The overhead rows as a fixed-width table: µs per call and the ratio."""
    header = f"{'equation':<58} {'backend':<10} {'portable us':>11} {'native us':>10} {'ratio':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        if r.portable is None:
            lines.append(f"{r.name:<58} {r.backend:<10} failed: {(r.error or '')[:60]}")
            continue
        native = "-" if r.native is None else f"{r.native * 1e6:.1f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        lines.append(
            f"{r.name:<58} {r.backend:<10} {r.portable * 1e6:>11.1f} {native:>10} {ratio:>7}"
        )
    return "\n".join(lines)


# --- compiled: torch.compile and jax.jit, compile time and run time (issue 19) ----------

COMPILE_OPS = ("attention", "conv2d")


@dataclass
class CompileRecord:
    """One implementation of one case compiled on one backend: compile and run times.

    `compile_seconds` is the first call of a freshly compiled function (tracing,
    code generation and one run); `seconds` the best compiled run after it;
    `eager_seconds` the best uncompiled run (torch only: JAX users always jit).
    The ratios are portable over native, measured in the same process.
    """

    backend: str
    op: str
    case: str
    impl: str
    compiler: str
    compile_seconds: float | None = None
    seconds: float | None = None
    eager_seconds: float | None = None
    compile_ratio: float | None = None
    ratio: float | None = None
    error: str | None = None


def compiler_of(backend: Backend, torch_backend: str = "inductor") -> str | None:
    """How `backend`'s users compile: ``torch.compile(backend=...)``, ``jax.jit``, or None."""
    if backend.library == "torch":
        return f"torch.compile[{torch_backend}]"
    if backend.library == "jax":
        return "jax.jit"
    return None


@functools.cache
def warm_compiler(library: str, torch_backend: str = "inductor") -> None:
    """Compile and run a one-line function once per process, before any timed compile.

    The first compile of a process pays for the compiler itself: inductor's
    imports, its C++ toolchain probe and the precompiled header of its kernels
    (8 s on a cold cache of the Intel Xeon), XLA's client start. Charged to
    whichever case is timed first, that made `torch.compile(mle.attention)`
    read 5.3 s where its own compile takes 2.6 s (SDPA, timed second: 0.2 s).
    """
    if library == "torch":  # compile_kernel resets dynamo after this
        import torch

        torch.compile(lambda x: (x.sin() + 1).sum(), backend=torch_backend)(torch.ones(8))
    elif library == "jax":
        import jax.numpy as jnp

        jax_jit(lambda x: (jnp.sin(x) + 1).sum())(jnp.ones(8)).block_until_ready()


def compile_kernel(
    fn: Callable[..., Any], backend: Backend, torch_backend: str = "inductor"
) -> Callable[..., Any]:
    """`fn` compiled as `backend`'s users compile: cold `torch.compile`, or `jax.jit`.

    Cold for `fn` only: the compiler itself is warmed once per process first
    (:func:`warm_compiler`), so that no case pays for the process's first compile.
    """
    warm_compiler(backend.library, torch_backend)
    if backend.library == "torch":
        import torch

        torch._dynamo.reset()  # a cold compile: nothing reused from an earlier case
        compiled: Callable[..., Any] = torch.compile(fn, backend=torch_backend)
        return compiled
    return jax_jit(fn)


def compile_case(
    case: Case,
    backend: Backend,
    *,
    dtype: str = "float32",
    repeats: int = 5,
    torch_backend: str = "inductor",
) -> list[CompileRecord]:
    """Compile the portable function and the native kernel of `case` the same way; time both.

    torch: ``torch.compile`` with `torch_backend` (the default, inductor, is what
    users get; ``"eager"`` only traces, for a quick check), forward cases under
    ``no_grad``; JAX: ``jax.jit``. Each implementation is compiled cold (dynamo
    reset), its first call timed as the compile time, then its runs timed.
    """
    import contextlib

    compiler = compiler_of(backend, torch_backend)
    if compiler is None:
        return [
            CompileRecord(backend.id, case.op, case.label, "portable", "-", error="no compiler")
        ]
    grad_off: Any = contextlib.nullcontext()
    if backend.library == "torch":
        import torch

        grad_off = torch.no_grad()
    out: list[CompileRecord] = []
    with grad_off:
        args = make_inputs(case, backend, dtype)
        for impl, fn in kernels(case, backend, jit=False).items():
            record = CompileRecord(backend.id, case.op, case.label, impl, compiler)
            try:
                compiled = compile_kernel(fn, backend, torch_backend)
                start = time.perf_counter()
                backend.sync(compiled(*args))
                record.compile_seconds = time.perf_counter() - start
                record.seconds = time_call(
                    compiled, args, backend.sync, repeats=repeats, warmup=1
                ).best
                if backend.library == "torch":
                    record.eager_seconds = time_call(
                        fn, args, backend.sync, repeats=repeats, warmup=1
                    ).best
            except Exception as exc:  # a row, not a crash
                record.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            out.append(record)
    twin = {r.impl: r for r in out}
    portable, baseline = twin.get("portable"), twin.get("native")
    if portable is not None and baseline is not None:
        if portable.compile_seconds and baseline.compile_seconds:
            portable.compile_ratio = portable.compile_seconds / baseline.compile_seconds
        if portable.seconds and baseline.seconds:
            portable.ratio = portable.seconds / baseline.seconds
    return out


def compile_run(
    backends: list[Backend],
    ops: list[str],
    *,
    quick: bool = False,
    dtype: str = "float32",
    repeats: int = 5,
    labels: list[str] | None = None,
    torch_backend: str = "inductor",
    progress: Callable[[int, int, str], None] | None = None,
    isolate: bool = True,
) -> list[CompileRecord]:
    """:func:`compile_case` for every case of `ops` (attention, conv2d) on every backend.

    With `isolate` (the default), each library runs in a fresh process of its
    own, as in :func:`run`, with an empty inductor cache: torch's and XLA's
    thread pools in one process made a compiled (1, 8, 14, 14) convolution read
    39-68 ms instead of a fraction of one, and kernels cached on disk by an
    earlier run are not compiled again, so a second run read the portable
    attention's compile as 0.5 s where a first one takes 2.6 s.
    """
    libraries = list(dict.fromkeys(b.library for b in backends))
    if isolate:
        job = (ops, quick, dtype, repeats, labels, torch_backend)
        found: list[CompileRecord] = []
        for library in libraries:
            ids = [b.id for b in backends if b.library == library]
            if progress is not None:
                progress(libraries.index(library), len(libraries), f"{library} (own process)")
            found += _compile_isolated(ids, job)
        if progress is not None:
            progress(len(libraries), len(libraries), "done")
        return found
    plan = [
        (b, c)
        for b in backends
        for op in ops
        if op in COMPILE_OPS
        for c in cases(op, quick=quick)
        if labels is None or c.label in labels
    ]
    out: list[CompileRecord] = []
    for done, (backend, case) in enumerate(plan):
        if progress is not None:
            progress(done, len(plan), f"{backend.id} {case.op} {case.label}")
        out += compile_case(
            case, backend, dtype=dtype, repeats=repeats, torch_backend=torch_backend
        )
    if progress is not None:
        progress(len(plan), len(plan), "done")
    return out


def _compile_isolated(ids: list[str], job: tuple[Any, ...]) -> list[CompileRecord]:
    """:func:`compile_run` for the backends `ids` (one library) in a fresh interpreter."""
    import tempfile

    package_root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH")) if p
            ),
            # An empty inductor cache: kernels compiled by an earlier run (the FX graph
            # cache, the C++ objects) would make a second run's compile times read
            # 0.5 s where a user's first compile takes 2.6 s.
            "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "inductor"),
        }
        result = Path(tmp) / "records.pickle"
        code = "from mlequations._bench import _compile_worker; _compile_worker()"
        done = subprocess.run(
            [sys.executable, "-c", code, str(result)],
            input=pickle.dumps((ids, *job)),
            env=env,
            capture_output=True,
            timeout=3600,
        )
        if done.returncode == 0 and result.exists():
            records: list[CompileRecord] = pickle.loads(result.read_bytes())
            return records
    tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    error = f"the compile process for {', '.join(ids)} died (exit {done.returncode}): {tail[0]}"
    return [CompileRecord(i, "-", "-", "portable", "-", error=error) for i in ids]


def _compile_worker() -> None:
    """The child process of :func:`_compile_isolated`: the job on stdin, a pickle to argv[1]."""
    ids, ops, quick, dtype, repeats, labels, torch_backend = pickle.loads(sys.stdin.buffer.read())
    steady_allocator()
    records = compile_run(
        [by_id(i) for i in ids],
        ops,
        quick=quick,
        dtype=dtype,
        repeats=repeats,
        labels=labels,
        torch_backend=torch_backend,
        isolate=False,
    )
    Path(sys.argv[1]).write_bytes(pickle.dumps(records))


def compile_table(records: list[CompileRecord]) -> str:
    """The compiled timings side by side: compile s, compiled and eager ms, portable/native."""

    def cell(value: float | None, scale: float, spec: str) -> str:
        return "-" if value is None else format(value * scale, spec)

    header = (
        f"{'op':<10} {'case':<24} {'backend':<10} {'compiler':<22} {'impl':<9} "
        f"{'compile s':>9} {'run ms':>9} {'eager ms':>9} {'compile p/n':>11} {'run p/n':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        start = f"{r.op:<10} {r.case:<24} {r.backend:<10} {r.compiler:<22} {r.impl:<9}"
        if r.error:
            lines.append(f"{start} failed: {r.error[:80]}")
            continue
        lines.append(
            f"{start} {cell(r.compile_seconds, 1, '.2f'):>9} {cell(r.seconds, 1e3, '.3f'):>9} "
            f"{cell(r.eager_seconds, 1e3, '.3f'):>9} {cell(r.compile_ratio, 1, '.2f'):>11} "
            f"{cell(r.ratio, 1, '.2f'):>8}"
        )
    return "\n".join(lines)


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
    flag: str | None = None
    peak_mib: float | None = None


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
        "flag",
        "peak_mib",
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
        "flag": {
            "type": ["string", "null"],
            "description": "why the reading is physically impossible (not a rate to trust)",
        },
        "peak_mib": {
            "type": ["number", "null"],
            "description": "extra memory of one call, MiB (attention): see peak_memory",
        },
    },
    "additionalProperties": False,
}
"""JSON Schema of one record; ``--json`` writes ``{"records": [...], "meta": {...}}``."""


# A kernel this many times slower than the other readings of the same case (on
# the same kind of device) did not measure the kernel.
SUSPECT_FACTOR = 100.0
# Nor did one this many times slower than a larger case of the same ladder: the
# matmul, softmax and attention ladders scale one computation up (the conv2d
# cases are different kinds of convolution, and a small depthwise one may
# rightly be slower than a large dense one).
LADDER_FACTOR = 10.0
_LADDER_OPS = ("matmul", "softmax", "attention", "attention-train")
# The operations whose memory is the point: blockwise attention, forward and training.
_MEMORY_OPS = ("attention", "attention-train")

# Each GPU backend and the CPU backend of the same library, for "GPU over CPU".
_CPU_OF = {"torch-cuda": "torch-cpu", "jax-gpu": "jax-jit", "cupy": "numpy"}

# Matmul sizes that keep a GPU busy enough to show its peak (the CPU ladder does not).
_GPU_MATMUL = [_matmul(n) for n in (4096, 8192)]


def run(
    backends: list[Backend],
    ops: list[str],
    *,
    quick: bool = False,
    dtype: str = "float32",
    repeats: int = 5,
    labels: list[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    isolate: bool | None = None,
) -> list[Record]:
    """Time every case of `ops` on every backend; failures become records with `error`.

    A matmul calibration is always included, since "fraction of matmul peak" needs it.
    The allocator is made steady first (:func:`steady_allocator`).

    With `isolate` (the default when the backends span more than one library),
    each library is timed in a fresh process of its own, so no other library's
    thread pool competes for the cores (see the module's docstring). Readings
    that are still physically impossible get a :attr:`Record.flag`.
    """
    steady_allocator()
    ops = ["matmul", *[op for op in ops if op != "matmul"]]
    groups: dict[str, list[Backend]] = {}
    for backend in backends:
        groups.setdefault(backend.library, []).append(backend)
    if isolate is None:
        isolate = len(groups) > 1
    total = sum(len(_plan(group, ops, quick, labels)) for group in groups.values())
    done = 0

    def step(what: str) -> None:
        nonlocal done
        if progress is not None:
            progress(done, total, what)
        done += 1

    records: list[Record] = []
    for group in groups.values():
        if isolate:
            records += _run_isolated(group, ops, quick, dtype, repeats, labels, step)
        else:
            records += _run_group(group, ops, quick, dtype, repeats, labels, step)
    done = total
    if progress is not None:
        progress(total, total, "done")
    _derive(records)
    return records


def _plan(
    backends: list[Backend], ops: list[str], quick: bool, labels: list[str] | None
) -> list[tuple[Backend, Case]]:
    return [
        (b, c)
        for b in backends
        for op in ops
        for c in cases(op, quick=quick) + (_GPU_MATMUL if op == "matmul" and b.gpu else [])
        if labels is None or c.label in labels or c.op == "matmul"
    ]


def _run_group(
    backends: list[Backend],
    ops: list[str],
    quick: bool,
    dtype: str,
    repeats: int,
    labels: list[str] | None,
    step: Callable[[str], None],
) -> list[Record]:
    records: list[Record] = []
    for backend, case in _plan(backends, ops, quick, labels):
        step(f"{case.op} {case.label} on {backend.id}")
        records.extend(_run_case(backend, case, dtype, repeats))
    return records


def _run_isolated(
    backends: list[Backend],
    ops: list[str],
    quick: bool,
    dtype: str,
    repeats: int,
    labels: list[str] | None,
    step: Callable[[str], None],
) -> list[Record]:
    """:func:`_run_group` in a fresh interpreter; progress and records come back by a pipe.

    A plain ``python -c`` child rather than ``multiprocessing``: it imports only
    this package and the libraries of `backends`, and never re-imports the
    caller's ``__main__`` (a script without a ``__main__`` guard would run again).
    """
    ids = [b.id for b in backends]
    job = (ids, ops, quick, dtype, repeats, labels)
    read_fd, write_fd = os.pipe()
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
    }
    code = f"from mlequations._bench import _worker; _worker({write_fd})"
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env
    ) as child:
        os.close(write_fd)  # the child holds the only writing end now: EOF when it exits
        assert child.stdin is not None
        child.stdin.write(pickle.dumps(job))
        child.stdin.close()
        records: list[Record] | None = None
        with os.fdopen(read_fd, "rb") as pipe:
            try:
                while records is None:
                    kind, payload = pickle.load(pipe)
                    if kind == "step":
                        step(payload)
                    else:
                        records = payload
            except EOFError:
                pass
    if records is not None:
        return records
    error = f"the benchmark process for {', '.join(ids)} died (exit code {child.returncode})"
    return [
        Record(b.id, "-", c.op, c.label, "portable", dtype, c.flops, error=error)
        for b, c in _plan(backends, ops, quick, labels)
    ]


def _worker(fd: int) -> None:
    """The child process of :func:`_run_isolated`: the job on stdin, pickles to `fd`."""
    ids, ops, quick, dtype, repeats, labels = pickle.loads(sys.stdin.buffer.read())
    with os.fdopen(fd, "wb") as pipe:

        def send(kind: str, payload: Any) -> None:
            pickle.dump((kind, payload), pipe)
            pipe.flush()

        steady_allocator()
        backends = [by_id(i) for i in ids]
        records = _run_group(
            backends, ops, quick, dtype, repeats, labels, lambda what: send("step", what)
        )
        send("records", records)


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
                peak_mib=peak_memory(case, backend, impl, dtype)
                if case.op in _MEMORY_OPS
                else None,
            )
        )
    return out


def _case_of(record: Record) -> Case | None:
    ladder = cases(record.op) + cases(record.op, quick=True) + _GPU_MATMUL
    return next(
        (c for c in ladder if (c.op, c.label, c.flops) == (record.op, record.case, record.flops)),
        None,
    )


def _derive(records: list[Record]) -> None:
    """Fill the ratios (portable/native, fraction of matmul peak, GPU over CPU) and flags.

    Two readings cannot be true and are flagged instead of believed: a time more
    than :data:`SUSPECT_FACTOR` times the median of the other readings of the
    same case on the same kind of device, or :data:`LADDER_FACTOR` times that of
    a larger case of the same ladder on the same backend (a stalled thread pool,
    a page-fault storm); and a time
    shorter than the least arithmetic of the case (:attr:`Case.least_flops`)
    takes at the backend's matmul peak. The peak is the best matmul rate among
    the sizes that were not flagged themselves. A flagged record keeps its
    measured `seconds` and loses every number derived from it (GFLOP/s, the
    ratios, the fraction of peak), so no table or JSON reader can quote them.
    """
    timed = [r for r in records if r.seconds]
    seconds = {id(r): float(r.seconds or 0.0) for r in timed}
    on_gpu = {r.backend for r in timed if r.backend in _CPU_OF}
    for r in timed:
        peers = [
            seconds[id(p)]
            for p in timed
            if p is not r
            and (p.op, p.case) == (r.op, r.case)
            and (p.backend in on_gpu) == (r.backend in on_gpu)
        ]
        larger = [
            seconds[id(p)]
            for p in timed
            if (p.backend, p.op, p.impl) == (r.backend, r.op, r.impl)
            and r.op in _LADDER_OPS
            and p.case != r.case
            and p.flops >= r.flops
        ]
        if peers and seconds[id(r)] > SUSPECT_FACTOR * statistics.median(peers):
            r.flag = f"over {SUSPECT_FACTOR:.0f}x slower than the other readings of this case"
        elif larger and seconds[id(r)] > LADDER_FACTOR * min(larger):
            r.flag = f"over {LADDER_FACTOR:.0f}x slower than a larger {r.op} on {r.backend}"
    by_key = {(r.backend, r.op, r.case, r.impl): r for r in records}
    peak: dict[str, float] = {}
    for r in timed:
        if r.op == "matmul" and r.gflops and r.flag is None:
            peak[r.backend] = max(peak.get(r.backend, 0.0), r.gflops)
    for r in timed:
        case = _case_of(r)
        floor = case.floor if case is not None else r.flops
        if r.gflops and peak.get(r.backend):
            r.matmul_fraction = r.gflops / peak[r.backend]
            if r.flag is None and floor / seconds[id(r)] / 1e9 > peak[r.backend]:
                r.flag = "faster than the matmul peak allows for this case"
    for r in timed:
        twin = by_key.get((r.backend, r.op, r.case, "native"))
        if r.impl == "portable" and twin is not None and twin.seconds:
            r.ratio = seconds[id(r)] / twin.seconds
            if r.flag is None and twin.flag is not None:
                r.flag = "ratio to a flagged native reading"
        cpu = by_key.get((_CPU_OF.get(r.backend, ""), r.op, r.case, r.impl))
        if cpu is not None and cpu.seconds:
            r.gpu_speedup = cpu.seconds / seconds[id(r)]
    for r in timed:
        if r.flag is not None:  # keep the measured time; derive nothing from it
            r.gflops = r.ratio = r.matmul_fraction = r.gpu_speedup = None


def _cell(value: float | None, spec: str, flagged: bool) -> str:
    if value is None:
        return "-"
    return "?" if flagged else format(value, spec)


def table(records: list[Record]) -> str:
    """The records as a fixed-width table, flagged readings marked and explained below it.

    A flagged reading shows its measured time with a ``?`` and no rate, ratio
    or fraction: those would be derived from a number that cannot be true.
    """
    header = (
        f"{'op':<15} {'case':<24} {'backend':<11} {'impl':<9} {'time ms':>10} "
        f"{'GFLOP/s':>9} {'port/nat':>9} {'% mm peak':>10} {'GPU/CPU':>8} {'peak MiB':>9}  note"
    )
    flags = list(dict.fromkeys(r.flag for r in records if r.flag))
    lines = [header, "-" * len(header)]
    for r in records:
        start = f"{r.op:<15} {r.case:<24} {r.backend:<11} {r.impl:<9}"
        if r.error:
            lines.append(f"{start} failed: {r.error[:80]}")
            continue
        flagged = r.flag is not None
        ms = None if r.seconds is None else r.seconds * 1e3
        time_ms = "-" if ms is None else f"{ms:.3f}" + ("?" if flagged else "")
        fraction = None if r.matmul_fraction is None else 100 * r.matmul_fraction
        note = f"suspect [{flags.index(r.flag) + 1}]" if r.flag else ""
        lines.append(
            f"{start} {time_ms:>10} {_cell(r.gflops, '.1f', flagged):>9} "
            f"{_cell(r.ratio, '.2f', flagged):>9} {_cell(fraction, '.0f', flagged):>10} "
            f"{_cell(r.gpu_speedup, '.1f', flagged):>8} {_cell(r.peak_mib, '.1f', False):>9}  "
            f"{note}".rstrip()
        )
    lines += [f"[{number}] suspect: {flag}" for number, flag in enumerate(flags, 1)]
    if flags:
        lines.append(
            "Suspect readings are not the kernels' speed (a stalled thread pool, a busy "
            "machine): no rate is derived from them. Rerun on a quiet machine."
        )
    return "\n".join(lines)


# One colour per backend, the same in every panel and every figure.
COLOURS = {
    "numpy": "#4c72b0",
    "torch-cpu": "#dd8452",
    "jax-jit": "#55a868",
    "torch-cuda": "#c44e52",
    "jax-gpu": "#8172b3",
    "cupy": "#937860",
}


def plot(records: list[Record], path: str, *, title: str | None = None) -> None:
    """Write a PNG, 1000 px wide: two panels per operation, its cases by name along the axis.

    Above, grouped bars of the time per call (log scale) for every backend —
    solid the portable code, hatched the native kernel, a backend's colour the
    same everywhere. Below it, on the same cases, the portable/native time
    ratio against the 1× line (for matmul, the rate that the "% of peak"
    column divides by). Flagged readings are drawn hollow and red with a ``?``.
    Needs matplotlib; no global pyplot state is touched.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    timed = [r for r in records if r.seconds]
    ops = [op for op in OPS if any(r.op == op for r in timed)]
    backends = list(dict.fromkeys(r.backend for r in timed))
    if not ops:
        fig = Figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "no successful timings (see the table)", ha="center")
        fig.savefig(path, dpi=100)
        return
    fig = Figure(figsize=(10, 0.8 + 4.6 * len(ops)), layout="constrained")
    axes = fig.subplots(2 * len(ops), 1, squeeze=False, height_ratios=(2.8, 1.8) * len(ops))
    for row, op in enumerate(ops):
        rows = [r for r in timed if r.op == op]
        labels = list(dict.fromkeys(r.case for r in rows))
        series = [
            (b, impl)
            for b in backends
            for impl in ("portable", "native")
            if any(r.backend == b and r.impl == impl for r in rows)
        ]
        top, bottom = axes[2 * row][0], axes[2 * row + 1][0]
        _bars(
            top,
            labels,
            [
                (b, impl, {r.case: r for r in rows if (r.backend, r.impl) == (b, impl)})
                for b, impl in series
            ],
            lambda r: 1e3 * float(r.seconds or 0.0),
        )
        _log_axis(top, "{:g}")
        top.set_ylabel("ms per call (best)", fontsize=9)
        top.set_title(f"{op}: time per call", loc="left", fontsize=11, fontweight="bold")
        top.tick_params(axis="x", labelbottom=False)
        if op == "matmul":
            _bars(
                bottom,
                labels,
                [(b, "native", {r.case: r for r in rows if r.backend == b}) for b in backends],
                lambda r: float(r.gflops or 0.0),
            )
            bottom.set_ylabel("GFLOP/s", fontsize=9)
            bottom.set_title("rate: the best unflagged one is the peak", loc="left", fontsize=9)
            continue
        ratios = [
            (b, "portable", {r.case: r for r in rows if r.backend == b and r.ratio is not None})
            for b in backends
        ]
        ratios = [s for s in ratios if s[2]]
        if not ratios:
            bottom.axis("off")
            continue
        _bars(bottom, labels, ratios, lambda r: float(r.ratio or 0.0), base=1.0)
        _log_axis(bottom, "{:g}×")
        bottom.axhline(1.0, color="black", lw=0.9)
        bottom.set_ylabel("portable / native", fontsize=9)
        bottom.set_title(
            "portable / native time: below 1× the portable code is faster", loc="left", fontsize=9
        )
    handles = [Patch(facecolor=COLOURS.get(b, "grey"), label=b) for b in backends]
    handles += [
        Patch(facecolor="white", edgecolor="black", label="portable (solid)"),
        Patch(facecolor="white", edgecolor="black", hatch="///", label="native (hatched)"),
    ]
    if any(r.flag for r in timed):
        handles.append(Patch(facecolor="none", edgecolor="red", label="? suspect reading"))
    # At the top, where a reader starts; the title rides on the legend, as
    # constrained layout would set a separate suptitle over the legend.
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncol=len(handles),
        frameon=False,
        title=title,
        title_fontsize=10.5,
    )
    fig.savefig(path, dpi=100)


def _bars(
    ax: Any,
    labels: list[str],
    series: list[tuple[str, str, dict[str, Record]]],
    value: Callable[[Record], float],
    base: float = 0.0,
) -> None:
    """Grouped bars: one group per case label, one bar per (backend, impl) series.

    Bars rise (or hang) from `base`: 1 for ratios, so a bar below the line is a
    portable code that is faster.
    """
    width = 0.84 / max(len(series), 1)
    for k, (backend, impl, by_case) in enumerate(series):
        colour = COLOURS.get(backend, "grey")
        for i, label in enumerate(labels):
            r = by_case.get(label)
            if r is None:
                continue
            x = i - 0.42 + width * (k + 0.5)
            flagged = r.flag is not None
            ax.bar(
                x,
                value(r) - base,
                width,
                bottom=base,
                color="none" if flagged else colour,
                edgecolor="red" if flagged else ("white" if impl == "portable" else colour),
                hatch="///" if impl == "native" and not flagged else None,
                alpha=1.0 if impl == "portable" else 0.55,
                linewidth=0.6,
            )
            if flagged:
                ax.annotate("?", (x, value(r)), ha="center", va="bottom", color="red")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels([label.replace(" ", "\n", 1) for label in labels], fontsize=8.5)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.set_axisbelow(True)


def _log_axis(ax: Any, fmt: str) -> None:
    """A log y axis labelled 1, 2, 5 per decade in plain numbers (no 3×10⁶ glyphs)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.format(float(f"{v:.3g}"))))
    ax.yaxis.set_minor_formatter(NullFormatter())
