"""The command line: ``mlequations info``, ``mlequations check``, ``mlequations bench``.

``info`` lists the array libraries and devices found on this machine, with their
versions. ``check`` runs every registered equation on every backend that can run
here, in float32 and float64, against an independent float64 NumPy reference,
and prints one table; it exits 1 if any cell disagrees. With NumPy alone
installed it still runs, showing the NumPy columns. ``bench`` times the hot
paths (attention, conv2d, softmax, and matmul as the roofline) on every backend
and device present, the portable code beside each backend's native kernel.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

from . import _bench
from ._backends import BACKENDS, FLOAT_DTYPES, Backend, by_id
from ._registry import CheckResult, equations, run_check

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
    print(f"mlequations {importlib.metadata.version('mlequations')}")
    for name in ("array-api-compat", "array-api-extra"):
        print(f"{name} {importlib.metadata.version(name)}")
    print()
    print(f"{'backend':<20} {'library':<18} {'version':<14} {'device':<28} status")
    for backend in BACKENDS:
        reason = backend.skip_reason()
        device = "-" if reason else str(backend.device or ("gpu" if backend.gpu else "cpu"))
        status = "available" if reason is None else f"skipped: {reason}"
        print(
            f"{backend.id:<20} {backend.library:<18} {_version(backend.library):<14} "
            f"{device:<28} {status}"
        )
    return 0


def _runnable(ids: Sequence[str] | None) -> tuple[list[Backend], list[tuple[str, str]]]:
    chosen = [by_id(i) for i in ids] if ids else [b for b in BACKENDS if b.values]
    runnable, skipped = [], []
    for backend in chosen:
        reason = backend.skip_reason()
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


def _check(args: argparse.Namespace) -> int:
    backends, skipped = _runnable(args.backend)
    dtypes = args.dtype or list(FLOAT_DTYPES)
    entries = [e for e in equations() if not args.only or e.name.split("(")[0] in args.only]
    failures: list[CheckResult] = []
    rows = []
    for eq in entries:
        cells = []
        for backend in backends:
            results = [run_check(eq, backend, d) for d in dtypes if d in backend.dtypes()]
            failures += [r for r in results if not r.ok]
            cells.append(_cell(results))
        rows.append((eq.name, cells))
    width = max([len("equation"), *(len(name) for name, _ in rows)])
    cols = [max(len(b.id), 9) for b in backends]
    print(
        f"{'equation':<{width}}  "
        + "  ".join(f"{b.id:<{w}}" for b, w in zip(backends, cols, strict=True))
    )
    for name, cells in rows:
        print(
            f"{name:<{width}}  " + "  ".join(f"{c:<{w}}" for c, w in zip(cells, cols, strict=True))
        )
    print(
        f"\ncells: 'ok <max abs error>' over {', '.join(dtypes)} against float64 NumPy; "
        "n/a = not supported by design (see the capability matrix)"
    )
    for backend_id, reason in skipped:
        print(f"skipped {backend_id}: {reason}")
    for r in failures:
        print(f"FAIL {r.equation} on {r.backend} ({r.dtype}): {r.message}", file=sys.stderr)
    total = len(entries) * len(backends)
    print(
        f"{len(entries)} equations x {len(backends)} backends: "
        f"{'all passed' if not failures else f'{len(failures)} failures'} ({total} cells)"
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


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _bench_table(records: list[_bench.Record]) -> str:
    header = (
        f"{'op':<10} {'case':<24} {'backend':<11} {'impl':<9} {'time ms':>10} "
        f"{'GFLOP/s':>9} {'port/nat':>9} {'% mm peak':>10} {'GPU/CPU':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        if r.error:
            lines.append(
                f"{r.op:<10} {r.case:<24} {r.backend:<11} {r.impl:<9} failed: {r.error[:80]}"
            )
            continue
        fraction = None if r.matmul_fraction is None else 100 * r.matmul_fraction
        lines.append(
            f"{r.op:<10} {r.case:<24} {r.backend:<11} {r.impl:<9} "
            f"{_fmt(r.seconds and r.seconds * 1e3, '10.3f'):>10} {_fmt(r.gflops, '9.1f'):>9} "
            f"{_fmt(r.ratio, '9.2f'):>9} {_fmt(fraction, '9.0f'):>10} "
            f"{_fmt(r.gpu_speedup, '8.1f'):>8}"
        )
    return "\n".join(lines)


def _bench_plot(records: list[_bench.Record], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in _bench.OPS if any(r.op == op and r.seconds for r in records)]
    fig, axes = plt.subplots(2, len(ops), figsize=(4.2 * len(ops), 7), squeeze=False)
    for col, op in enumerate(ops):
        rows = [r for r in records if r.op == op and r.seconds]
        top, bottom = axes[0][col], axes[1][col]
        for backend in dict.fromkeys(r.backend for r in rows):
            for impl, style in (("portable", "-o"), ("native", "--x")):
                pts = sorted(
                    (r.flops, r.seconds) for r in rows if r.backend == backend and r.impl == impl
                )
                if pts:
                    top.loglog(*zip(*pts, strict=True), style, label=f"{backend} {impl}")
            ratios = sorted(
                (r.flops, r.ratio) for r in rows if r.backend == backend and r.ratio is not None
            )
            if ratios:
                bottom.semilogx(*zip(*ratios, strict=True), "-o", label=backend)
        top.set_title(op)
        top.set_xlabel("FLOPs per call")
        top.set_ylabel("seconds (best)")
        top.legend(fontsize=7)
        if not any(r.ratio is not None for r in rows):  # matmul: the roofline, no ratio
            bottom.axis("off")
            continue
        bottom.axhline(1.0, color="grey", lw=0.8)
        bottom.set_xlabel("FLOPs per call")
        bottom.set_ylabel("portable / native time")
        if bottom.lines[1:]:
            bottom.legend(fontsize=7)
    fig.suptitle(f"mlequations bench — {platform.node()} ({platform.machine()})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bench_run(args: argparse.Namespace) -> int:
    backends, skipped = _runnable(args.backend or list(BENCH_BACKENDS))
    for backend_id, reason in skipped:
        print(f"skipped {backend_id}: {reason}", file=sys.stderr)
    ops = args.op or ["attention", "conv2d", "softmax"]
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("--plot needs matplotlib: pip install 'mlequations[bench]'", file=sys.stderr)
            return 2
    progress = None if args.no_progress else _progress
    records = _bench.run(
        backends,
        ops,
        quick=args.quick,
        dtype=args.dtype,
        repeats=args.repeats,
        labels=args.size,
        progress=progress,
    )
    print(_bench_table(records))
    if args.json:
        meta = {
            "machine": platform.machine(),
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
        _bench_plot(records, args.plot)
    failed = [r for r in records if r.error]
    for r in failed:
        print(f"failed: {r.op} {r.case} on {r.backend} ({r.impl}): {r.error}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mlequations`` command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="mlequations", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="list backends and devices with versions").set_defaults(run=_info)
    check = sub.add_parser("check", help="every equation on every backend vs float64 NumPy")
    check.add_argument(
        "--backend",
        action="append",
        metavar="ID",
        help="backend id to run (repeatable); default: all available",
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
    check.set_defaults(run=_check)
    bench = sub.add_parser("bench", help="time the hot paths, portable vs native, per backend")
    bench.add_argument(
        "--backend",
        action="append",
        metavar="ID",
        help=f"backend id (repeatable); default: {', '.join(BENCH_BACKENDS)}",
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
    bench.set_defaults(run=_bench_run)
    args = parser.parse_args(argv)
    return int(args.run(args))
