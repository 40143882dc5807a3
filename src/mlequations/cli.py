"""The command line: ``mlequations info`` and ``mlequations check``.

``info`` lists the array libraries and devices found on this machine, with their
versions. ``check`` runs every registered equation on every backend that can run
here, in float32 and float64, against an independent float64 NumPy reference,
and prints one table; it exits 1 if any cell disagrees. With NumPy alone
installed it still runs, showing the NumPy columns.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from collections.abc import Sequence

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
    args = parser.parse_args(argv)
    return int(args.run(args))
