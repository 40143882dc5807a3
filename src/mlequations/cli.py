"""The command line: `mlequations info`, `mlequations check`, `mlequations bench`.

`info` lists the array libraries and devices found on this machine, with their
versions. `check` runs every registered equation on every backend that can run
here, in float32 and float64, against an independent float64 NumPy reference,
and prints one table; it exits 1 if any cell disagrees. With NumPy alone
installed it still runs, showing the NumPy columns. `bench` times the hot
paths (attention, conv2d, softmax, and matmul as the roofline) on every backend
and device present, the portable code beside each backend's native kernel.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import queue
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__, _bench, _tune
from ._backends import BACKENDS, FLOAT_DTYPES, Backend, by_id
from ._registry import CheckResult, Equation, equations, run_check

__all__ = ["main"]

_DISTRIBUTIONS = {
    "numpy": "numpy",
    "array_api_strict": "array-api-strict",
    "torch": "torch",
    "jax": "jax",
    "cupy": "cupy",
    "dask": "dask",
}


def _version(library: str) -> str:
    try:
        return importlib.metadata.version(_DISTRIBUTIONS[library])
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _info(_: argparse.Namespace) -> int:
    print(f"mlequations {__version__}")
    for name in ("array-api-compat", "array-api-extra"):
        print(f"{name} {importlib.metadata.version(name)}")
    print()
    rows = [("backend", "library", "version", "device", "status")]
    for backend in BACKENDS:
        reason = backend.skip_reason()
        device = "-" if reason else str(backend.device or ("gpu" if backend.gpu else "cpu"))
        if reason is not None:
            status = f"skipped: {reason}"
        elif not backend.values:
            status = "available, no `check` column: holds no values to compare"
        else:
            status = "available"
        rows.append((backend.id, backend.library, _version(backend.library), device, status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=False)), row[4])
    print()
    for backend in BACKENDS:
        print(f"{backend.id + ':':<{widths[0] + 2}}{backend.about}")
    print()
    print(_tune.describe())
    return 0


_NO_VALUES = "holds no values to compare (device propagation is tested per chapter)"


def _installed(library: str) -> bool:
    """Whether `library` can be imported, without importing it (torch takes seconds)."""
    return importlib.util.find_spec(library) is not None


def _runnable(ids: Sequence[str] | None) -> tuple[list[Backend], list[tuple[str, str]]]:
    chosen = [by_id(i) for i in ids] if ids else [b for b in BACKENDS if b.values]
    runnable, skipped = [], []
    for backend in chosen:
        reason = backend.skip_reason()
        if reason is None and not backend.values:
            reason = _NO_VALUES
        if reason is None:
            runnable.append(backend)
        else:
            skipped.append((backend.id, reason))
    return runnable, skipped


def _cell(results: list[CheckResult]) -> str:
    if all(r.message.startswith("n/a") for r in results):
        return "n/a"
    if not all(r.ok for r in results):
        return "FAIL"
    errors = [r.max_error for r in results if not r.message.startswith("n/a")]
    return f"ok {max(errors):.0e}"


# -- running the check: one task per (backend, dtype), in worker processes -------------
#
# Nearly all of the time goes to JAX compiling: eagerly, every operation is
# compiled once per shape and dtype (about 20-40 ms each on a small CPU, some
# 2,000 compilations for the registry), and under `jax.jit` every call is one
# larger compilation. Three things cut that without changing what is compared:
# the float32 and float64 halves (which share no compilation) run in parallel
# worker processes, one per core, and JAX's persistent compilation cache keeps
# the compiled operations in the user's cache directory, so that a second
# `mlequations check` loads them instead of compiling again; and the workers ask
# XLA for its quickest code generation (optimisation level 0, the plain emitters):
# on arrays of a few dozen numbers the code's speed is irrelevant and compiling is
# everything (35 ms per eager operation becomes 15-25 ms). XLA keeps IEEE
# arithmetic at every level; only the order of a few vectorised sums changes, which
# moved 15 of the 168 JAX cells by a few ulps, far inside every tolerance.

_Report = Callable[[str, str, str, str], None]  # (event, backend id, dtype, equation)

# Rough relative cost of one (backend, dtype) task: longest first keeps both cores
# busy to the end (the measured shares of a full check, 2 cores, no GPU).
_COST = {"jax": 40.0, "jax-jit": 12.0, "dask": 5.0, "torch-cpu": 1.0}


def _jax_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mlequations" / f"jax-{_version('jax')}"


def _use_jax_cache(directory: str) -> None:
    """Keep every compilation, however small: eager JAX compiles thousands of tiny ones."""
    import jax

    config: Any = jax.config  # its `update` is untyped
    config.update("jax_compilation_cache_dir", directory)
    config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _check_task(
    backend_id: str, dtype: str, names: Sequence[str], cache: str | None, report: _Report
) -> list[CheckResult] | str:
    """The results of `names` on one backend in one dtype, or why it cannot run here.

    The reason is asked here, in the worker, which imports the library anyway: the
    main process then never imports torch or JAX (seconds of a check's start).
    """
    backend = by_id(backend_id)
    reason = backend.skip_reason()
    if reason is not None:
        report("skip", backend_id, dtype, "")
        return reason
    if cache is not None and backend.library == "jax":
        _use_jax_cache(cache)
    wanted = set(names)
    results = []
    for eq in equations():
        if eq.name in wanted:
            report("start", backend_id, dtype, eq.name)
            results.append(run_check(eq, backend, dtype))
            report("done", backend_id, dtype, eq.name)
    return results


_QUEUE: Any = None


_QUICK_XLA = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)


def _worker_init(events: Any) -> None:
    global _QUEUE
    _QUEUE = events
    # Read when JAX first starts its CPU client, which no worker has done yet; the
    # user's own flags come last, so that they win.
    os.environ["XLA_FLAGS"] = " ".join([*_QUICK_XLA, os.environ.get("XLA_FLAGS", "")]).strip()


def _worker_task(
    backend_id: str, dtype: str, names: Sequence[str], cache: str | None
) -> list[CheckResult] | str:
    def report(event: str, backend_id: str, dtype: str, name: str) -> None:
        _QUEUE.put((event, backend_id, dtype, name))

    return _check_task(backend_id, dtype, names, cache, report)


class _Progress:
    """A one-line bar on a terminal; otherwise a plain line as each backend starts and ends."""

    def __init__(self, tasks: list[tuple[str, str]], per_task: int, stream: TextIO) -> None:
        self.stream, self.tty = stream, stream.isatty()
        self.per_task, self.total, self.done = per_task, len(tasks) * per_task, 0
        self.left = {backend_id: per_task * len([t for t in tasks if t[0] == backend_id])
                     for backend_id, _ in tasks}  # fmt: skip
        self.started: dict[str, float] = {}
        self.running: dict[tuple[str, str], str] = {}
        self.start = time.perf_counter()

    def __call__(self, event: str, backend_id: str, dtype: str, name: str) -> None:
        if event == "skip":  # cannot run here: the footer says why
            self.done += self.per_task
            self.left[backend_id] -= self.per_task
        elif backend_id not in self.started:
            self.started[backend_id] = time.perf_counter()
            if not self.tty:
                print(f"check: {backend_id} ...", file=self.stream, flush=True)
        if event == "start":
            self.running[(backend_id, dtype)] = name
        elif event == "done":
            self.running.pop((backend_id, dtype), None)
            self.done += 1
            self.left[backend_id] -= 1
            if not self.left[backend_id] and not self.tty:
                seconds = time.perf_counter() - self.started[backend_id]
                print(f"check: {backend_id} done ({seconds:.1f} s)", file=self.stream, flush=True)
        if self.tty:
            self._draw()

    def _draw(self) -> None:
        columns = shutil.get_terminal_size().columns
        width = 24
        filled = width * self.done // max(self.total, 1)
        now = ", ".join(f"{b} {d}: {n}" for (b, d), n in self.running.items())
        elapsed = time.perf_counter() - self.start
        line = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
        line += f"{elapsed:3.0f} s  {now}"
        print(f"\r{line[: columns - 1]:<{columns - 1}}", end="", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            print(f"\r{' ' * (shutil.get_terminal_size().columns - 1)}\r", end="", file=self.stream)


def _run_tasks(
    tasks: list[tuple[str, str]], names: list[str], jobs: int, cache: str | None, report: _Report
) -> list[list[CheckResult] | str]:
    if jobs <= 1 or len(tasks) <= 1:
        return [_check_task(b, d, names, cache, report) for b, d in tasks]
    # spawn, not fork: a program calling `main` may have imported JAX or torch, whose
    # threads do not survive a fork.
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    others = set(multiprocessing.active_children())
    with concurrent.futures.ProcessPoolExecutor(
        min(jobs, len(tasks)), mp_context=context, initializer=_worker_init, initargs=(events,)
    ) as pool:
        futures = [pool.submit(_worker_task, b, d, names, cache) for b, d in tasks]
        pending = set(futures)
        while pending:
            _, pending = concurrent.futures.wait(pending, timeout=0.1)
            while True:
                try:
                    report(*events.get(timeout=0.01 if pending else 0.5))
                except queue.Empty:
                    break
        outcomes = [future.result() for future in futures]
        # Every result is in: stop the workers rather than wait for each to tear down
        # its torch and JAX (about 2 s of a check's end).
        for worker in set(multiprocessing.active_children()) - others:
            worker.terminate()
        return outcomes


def _check(args: argparse.Namespace) -> int:
    chosen = [by_id(i) for i in args.backend] if args.backend else [b for b in BACKENDS if b.values]
    skipped = {b.id: _NO_VALUES for b in chosen if not b.values}
    dtypes = args.dtype or list(FLOAT_DTYPES)
    entries: list[Equation] = [
        e for e in equations() if not args.only or e.name.split("(")[0] in args.only
    ]
    names = [e.name for e in entries]
    tasks = [(b.id, d) for b in chosen if b.values for d in dtypes if d in b.dtypes()]
    order = sorted(tasks, key=lambda t: -_COST.get(t[0], 0.1))
    cache = None if args.no_cache else str(_jax_cache_dir())
    progress = _Progress(order, len(entries), sys.stderr)
    # Worker processes pay off when something compiles or builds graphs; NumPy and
    # array-api-strict alone finish in about a second, less than starting them takes.
    heavy = any(_COST.get(b, 0.0) >= 1.0 and _installed(by_id(b).library) for b, _ in tasks)
    jobs = args.jobs if args.jobs is not None else ((os.cpu_count() or 1) if heavy else 1)
    start = time.perf_counter()
    try:
        outcomes = _run_tasks(order, names, jobs, cache, progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    results: list[CheckResult] = []
    for (backend_id, _), outcome in zip(order, outcomes, strict=True):
        if isinstance(outcome, str):
            skipped[backend_id] = outcome
        else:
            results.extend(outcome)
    backends = [b for b in chosen if b.id not in skipped]
    by_cell: dict[tuple[str, str], list[CheckResult]] = {}
    for r in results:
        by_cell.setdefault((r.equation, r.backend), []).append(r)
    failures = [r for r in results if not r.ok]
    width = max([len("equation"), *(len(name) for name in names)])
    cols = [max(len(b.id), 9) for b in backends]
    print(
        f"{'equation':<{width}}  "
        + "  ".join(f"{b.id:<{w}}" for b, w in zip(backends, cols, strict=True))
    )
    for name in names:
        cells = [_cell(by_cell[(name, b.id)]) for b in backends]
        print(
            f"{name:<{width}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(cells, cols, strict=True))
        )
    print(
        f"\ncells: 'ok <max abs error>' over {', '.join(dtypes)} against float64 NumPy; "
        "n/a = not supported by design (see the capability matrix)"
    )
    pad = max([0, *(len(b.id) for b in backends)]) + 2
    for backend in backends:
        print(f"  {backend.id + ':':<{pad}}{backend.about}")
    if not args.backend:  # the installed backends that have no column, and why
        for backend in BACKENDS:
            if not backend.values and _installed(backend.library):
                print(f"  {backend.id + ':':<{pad}}{backend.about}")
    for backend in chosen:
        if backend.id in skipped:
            print(f"skipped {backend.id}: {skipped[backend.id]}")
    for r in failures:
        print(f"FAIL {r.equation} on {r.backend} ({r.dtype}): {r.message}", file=sys.stderr)
    total = len(entries) * len(backends)
    print(
        f"{len(entries)} equations x {len(backends)} backends: "
        f"{'all passed' if not failures else f'{len(failures)} failures'} ({total} cells) "
        f"in {seconds:.1f} s"
    )
    return 1 if failures else 0


BENCH_BACKENDS = ("numpy", "torch-cpu", "torch-cuda", "jax-jit", "jax-gpu", "cupy")


def _progress(done: int, total: int, what: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done == total else ""
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what:<48}",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def _bench_run(args: argparse.Namespace) -> int:
    backends, skipped = _runnable(args.backend or list(BENCH_BACKENDS))
    for backend_id, reason in skipped:
        print(f"skipped {backend_id}: {reason}", file=sys.stderr)
    ops = args.op or ["attention", "attention-train", "conv2d", "softmax"]
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'mlequations[bench]'", file=sys.stderr)
            return 2
    progress = None if args.no_progress else _progress
    if args.compile:
        return _bench_compile(args, backends, progress)
    records = _bench.run(
        backends,
        ops,
        quick=args.quick,
        dtype=args.dtype,
        repeats=args.repeats,
        labels=args.size,
        progress=progress,
    )
    print(_bench.table(records))
    if args.json:
        meta = {
            "machine": platform.machine(),
            "cpu": _tune.cpu_model(),
            "cores": os.cpu_count(),
            "gpu": _tune.gpu_name() if any(b.gpu for b in backends) else None,
            "loadavg": os.getloadavg(),
            "isolated": len({b.library for b in backends}) > 1,
            "python": platform.python_version(),
            "versions": {b.library: _version(b.library) for b in backends},
            "quick": args.quick,
            "repeats": args.repeats,
            "dtype": args.dtype,
            "steady_allocator": _bench.steady_allocator(),
        }
        records_json = [dataclasses.asdict(r) for r in records]
        Path(args.json).write_text(json.dumps({"meta": meta, "records": records_json}, indent=1))
    if args.plot:
        _bench.plot(records, args.plot, title=f"mlequations bench on {_tune.cpu_model()}")
    failed = [r for r in records if r.error]
    for r in failed:
        print(f"failed: {r.op} {r.case} on {r.backend} ({r.impl}): {r.error}", file=sys.stderr)
    return 0


def _bench_compile(
    args: argparse.Namespace,
    backends: list[Backend],
    progress: Callable[[int, int, str], None] | None,
) -> int:
    """``bench --compile``: compile time and compiled run time, portable beside native."""
    compiled = [b for b in backends if _bench.compiler_of(b) is not None]
    for b in backends:
        if b not in compiled:
            print(f"skipped {b.id}: no compiler (torch.compile or jax.jit)", file=sys.stderr)
    ops = [op for op in (args.op or list(_bench.COMPILE_OPS)) if op in _bench.COMPILE_OPS]
    records = _bench.compile_run(
        compiled,
        ops,
        quick=args.quick,
        dtype=args.dtype,
        repeats=args.repeats,
        labels=args.size,
        torch_backend=args.compile_backend,
        progress=progress,
    )
    print(_bench.compile_table(records))
    print(
        "compile s: the first call of a freshly compiled function; run ms: the best compiled "
        "run after it; eager ms: the best uncompiled run (torch); p/n: portable / native, "
        f"timed in this process on {_tune.cpu_model()}"
    )
    if args.json:
        meta = {"cpu": _tune.cpu_model(), "cores": os.cpu_count(), "loadavg": os.getloadavg()}
        rows = [dataclasses.asdict(r) for r in records]
        Path(args.json).write_text(json.dumps({"meta": meta, "compiled": rows}, indent=1))
    for r in records:
        if r.error:
            print(f"failed: {r.op} {r.case} on {r.backend} ({r.impl}): {r.error}", file=sys.stderr)
    return 0


def _tune_run(args: argparse.Namespace) -> int:
    backends, skipped = _runnable(args.backend or ["numpy", "torch-cpu", "torch-cuda", "cupy"])
    for backend_id, reason in skipped:
        print(f"skipped {backend_id}: {reason}", file=sys.stderr)
    results = _tune.tune_cases(
        [b.id for b in backends],
        args.op or ["attention", "conv2d"],
        quick=args.quick,
        labels=args.size,
        dtype=args.dtype,
        repeats=args.repeats,
        save=not args.dry_run,
        progress=None if args.no_progress else lambda what: print(what, file=sys.stderr),
    )
    print(f"on {_tune.cpu_model()} ({os.cpu_count()} cores); cache: {_tune.cache_path()}")
    print(_tune.table(results))
    return 0


def _backend_id(value: str) -> str:
    """``--backend``'s type: a known id, or an error that lists them."""
    try:
        return by_id(value).id
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_IDS = ", ".join(b.id for b in BACKENDS)


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, without breaking backend ids such as ``strict-device1``."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `mlequations` command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="mlequations",
        description="The classic ML equations, written once against the Python array API "
        "standard, checked on every array library installed here.",
        epilog="Run 'mlequations COMMAND --help' for a command's options.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"mlequations {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "info",
        formatter_class=_Formatter,
        help="list backends and devices with versions",
        description="List the backends (library, device, mode) with versions and status.",
    ).set_defaults(run=_info)
    check = sub.add_parser(
        "check",
        formatter_class=_Formatter,
        help="every equation on every backend vs float64 NumPy",
        description="Run every registered equation on every backend present, in float32 and "
        "float64, against an independent float64 NumPy reference; exit 1 on any disagreement.",
    )
    check.add_argument(
        "--backend",
        action="append",
        metavar="ID",
        type=_backend_id,
        help=f"backend id to run (repeatable); default: all available. Ids: {_IDS}",
    )
    check.add_argument(
        "--dtype",
        action="append",
        choices=FLOAT_DTYPES,
        help="dtype to run (repeatable); default: float32 and float64",
    )
    check.add_argument(
        "--only", action="append", metavar="NAME", help="equation to run (repeatable); default: all"
    )
    check.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="worker processes (default: one per CPU core when torch, JAX or Dask run; "
        "1 runs everything in this process)",
    )
    check.add_argument(
        "--no-cache",
        action="store_true",
        help="do not keep JAX's compiled operations in the user's cache directory "
        "(by default a later check loads them instead of compiling again)",
    )
    check.set_defaults(run=_check)
    bench = sub.add_parser(
        "bench",
        formatter_class=_Formatter,
        help="time the hot paths, portable vs native, per backend",
        description="Time attention, conv2d and softmax (and matmul as the roofline), the "
        "portable code beside each backend's native kernel.",
    )
    bench.add_argument(
        "--backend",
        action="append",
        metavar="ID",
        type=_backend_id,
        help=f"backend id (repeatable); default: {', '.join(BENCH_BACKENDS)}. Ids: {_IDS}",
    )
    bench.add_argument(
        "--op",
        action="append",
        choices=_bench.OPS,
        help="operation (repeatable); default: attention, conv2d, softmax "
        "(matmul always runs as the roofline reference)",
    )
    bench.add_argument(
        "--size",
        action="append",
        metavar="LABEL",
        help="only the cases with this label, e.g. '(1,8,4096,64)' (repeatable)",
    )
    bench.add_argument("--dtype", default="float32", choices=FLOAT_DTYPES)
    bench.add_argument("--repeats", type=int, default=5, help="timed runs per case (best kept)")
    bench.add_argument("--quick", action="store_true", help="a tiny ladder, for a smoke test")
    bench.add_argument("--json", metavar="PATH", help="write the records as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG: time vs size, and ratios")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.add_argument(
        "--compile",
        action="store_true",
        help="time attention and conv2d compiled (torch.compile, jax.jit): compile time of "
        "the first call and run time after, portable beside the native kernel compiled "
        "the same way",
    )
    bench.add_argument(
        "--compile-backend",
        default="inductor",
        metavar="NAME",
        help="torch.compile backend for --compile (default: inductor, what users get; "
        "'eager' traces without generating code, for a quick check)",
    )
    bench.set_defaults(run=_bench_run)
    tune = sub.add_parser(
        "tune",
        formatter_class=_Formatter,
        help="time attention/conv2d plans, cache the fastest",
        description="Time the candidate plans of attention and conv2d at the benchmark "
        "shapes and store the fastest in the tuning cache, which block_size=None and "
        "method='auto' then use (docs: tuning.md). JAX under jit is not tuned: XLA tiles.",
    )
    tune.add_argument(
        "--backend",
        action="append",
        metavar="ID",
        type=_backend_id,
        help="backend id (repeatable); default: numpy, torch-cpu, torch-cuda, cupy",
    )
    tune.add_argument("--op", action="append", choices=("attention", "conv2d"))
    tune.add_argument("--size", action="append", metavar="LABEL", help="only this case label")
    tune.add_argument("--dtype", default="float32", choices=FLOAT_DTYPES)
    tune.add_argument("--repeats", type=int, default=5, help="timed rounds per plan")
    tune.add_argument("--quick", action="store_true", help="the tiny shapes of bench --quick")
    tune.add_argument("--dry-run", action="store_true", help="time and print, cache nothing")
    tune.add_argument("--no-progress", action="store_true", help="no progress lines")
    tune.set_defaults(run=_tune_run)
    args = parser.parse_args(argv)
    return int(args.run(args))
