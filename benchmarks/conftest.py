"""Shared benchmark fixtures: the performance backends and one honest timing helper.

Run: ``pytest benchmarks --benchmark-only --benchmark-group-by=group``
(``--benchmark-json=out.json`` to keep the numbers). Each group lines up the
portable code and the backend's native kernel for one shape, so the table reads
as "what portability costs" on each backend.

Every library keeps a thread pool that spins for a while after each call
(OpenBLAS for NumPy, OpenMP for PyTorch, Eigen for XLA); two pools in one
process fight for the cores, and a 2-thread kernel then waits out a scheduler
slice: a 0.04 ms NumPy matmul measured 12-40 ms right after torch's. So the
benchmarks run one library at a time (all of NumPy's, then all of torch's, ...)
instead of alternating libraries at every test. To compare libraries across the
board, ``mlequations bench`` times each in a process of its own; here, ``-k
numpy`` (or ``torch-cpu``, ``jax-jit``) gives one library per process.
"""

from __future__ import annotations

import importlib.metadata
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytest

from mlequations._backends import BACKENDS, Backend
from mlequations._bench import steady_allocator

# The compiled groups time a cold compile: an inductor cache of this session alone, so
# that no kernel compiled by an earlier run is loaded from disk (read before torch
# compiles anything; a cache the user chose is kept).
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="mlequations-inductor-"))

# The backends worth timing: the array libraries people run models on (array-api-strict
# is a conformance tool, read-only NumPy and torch's meta device are test devices).
PERFORMANCE_BACKENDS = [
    b
    for b in BACKENDS
    if b.id in ("numpy", "torch-cpu", "torch-cuda", "jax-jit", "jax-gpu", "cupy")
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run each library's benchmarks together (a stable sort on the backend's library)."""
    libraries = list(dict.fromkeys(b.library for b in PERFORMANCE_BACKENDS))

    def library(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("bench_backend") if callspec is not None else None
        return libraries.index(backend.library) if isinstance(backend, Backend) else -1

    items.sort(key=library)


@pytest.fixture(scope="session", autouse=True)
def _steady_allocator() -> None:
    """Freed memory is reused, not faulted in again: see ``_bench.steady_allocator``."""
    steady_allocator()


@pytest.fixture(params=PERFORMANCE_BACKENDS, ids=[b.id for b in PERFORMANCE_BACKENDS])
def bench_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    reason = backend.skip_reason()
    if reason:
        pytest.skip(reason)
    return backend


def _version(library: str) -> str:
    name = {"array_api_strict": "array-api-strict"}.get(library, library)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def measure(
    benchmark: Any,
    backend: Backend,
    fn: Callable[..., Any],
    *args: Any,
    group: str,
    impl: str,
    flops: float | None = None,
    rounds: int = 5,
    beside: Callable[[], Any] | None = None,
    **extra: Any,
) -> Any:
    """Time ``fn(*args)`` on `backend`: warm-up (and JIT compile) excluded, device synced.

    `fn` should already be jitted where that is the point (``jax.jit``); the
    synchronisation (``block_until_ready``, ``torch.cuda.synchronize``, the CuPy
    stream) happens inside the timed call, so asynchronous dispatch cannot hide
    work. `flops` gives effective GFLOP/s in ``extra_info``.

    `beside`, the native counterpart, runs (timed, untimed by pytest-benchmark) just
    before each round of `fn`: a change of load on a shared machine then falls on
    both sides of the pair, where two benchmarks run one after the other put it on
    one side only. ``extra_info`` gets its times (``beside_s``) and
    ``ratio_beside``, the median of `fn`'s rounds over the median of its own.
    """
    benchmark.group = group
    benchmark.extra_info.update(
        backend=backend.id,
        library=backend.library,
        version=_version(backend.library),
        device=str(backend.device),
        impl=impl,
        **extra,
    )

    def run() -> Any:
        return backend.sync(fn(*args))

    beside_s: list[float] = []

    def run_beside() -> None:
        assert beside is not None
        start = time.perf_counter()
        backend.sync(beside())
        beside_s.append(time.perf_counter() - start)

    setup = None if beside is None else run_beside
    warmup = 2
    result = benchmark.pedantic(run, setup=setup, rounds=rounds, warmup_rounds=warmup)
    if benchmark.stats is None:  # --benchmark-disable: one plain call
        return result
    if flops is not None:
        benchmark.extra_info["gflops"] = flops / benchmark.stats.stats.min / 1e9
    if beside is not None:
        beside_s = beside_s[warmup:]  # the warm-up rounds' native calls are not kept
        benchmark.extra_info["beside_s"] = beside_s
        benchmark.extra_info["ratio_beside"] = benchmark.stats.stats.median / statistics.median(
            beside_s
        )
    return result
