"""The registry of equations: one entry per public function, one list for everything.

``mlequations check``, the cross-backend registry test and the capability matrix
in the docs all read :func:`equations`, so what is checked, what is tested and
what is documented cannot drift apart. Each chapter module has a sibling file
``_checks/<chapter>.py`` that defines ``EQUATIONS``, a list of
:class:`Equation` entries; adding an equation is adding one entry there.

An entry pairs the portable function with *independent* float64 NumPy code for
the same math (the reference), inputs drawn from a seeded generator, and the
capabilities the tests hold it to: captured whole by ``torch.compile`` and
traceable under ``jax.jit`` (``backends_tests/test_compile.py``), differentiable,
lazy on Dask. Where an entry cannot be compiled, it says why (`no_compile`,
`no_jit`), the tests check that it indeed cannot, and the capability matrix
prints the reason.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._backends import Backend, LazyComputeError

__all__ = [
    "CheckResult",
    "Equation",
    "capability_matrix",
    "equations",
    "run_check",
    "tolerance",
]


@dataclass(frozen=True)
class Equation:
    """One public function, checked against an independent float64 NumPy reference.

    Attributes:
        name: The public name (``"softmax"``); the entry's id in every table.
        func: The portable function, called as ``func(*inputs, **options)``.
        make_inputs: Draws float64 (or integer) NumPy inputs from a generator.
        reference: Plain float64 NumPy code for the same math, called like `func`.
        options: Keyword arguments for both `func` and `reference`.
        no_compile: Why ``torch.compile(fullgraph=True)`` cannot capture it in
            one graph; empty when it can (the default, and what is tested).
        no_jit: Why ``jax.jit`` cannot trace it; empty when it can.
        grad: Differentiable with respect to its first floating input.
        lazy: Runs lazily on Dask (no computation inside the call).
        compare: Maps an output (as float64 NumPy) to what is compared, for
            results defined only up to sign or order (eigenvectors).
        rtol32: Relative tolerance in float32 (float64 uses 1e-9).
    """

    name: str
    func: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator], tuple[Any, ...]]
    reference: Callable[..., Any]
    options: Mapping[str, Any] = field(default_factory=dict)
    no_compile: str = ""
    no_jit: str = ""
    grad: bool = True
    lazy: bool = True
    compare: Callable[[Any], Any] | None = None
    rtol32: float = 1e-4

    @property
    def jit(self) -> bool:
        """Traces under ``jax.jit``."""
        return not self.no_jit

    @property
    def compiles(self) -> bool:
        """``torch.compile(fullgraph=True)`` captures it in one graph."""
        return not self.no_compile


def equations() -> list[Equation]:
    """Every registered equation, chapter by chapter in alphabetical order."""
    from . import _checks

    found: list[Equation] = []
    for info in sorted(pkgutil.iter_modules(_checks.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{_checks.__name__}.{info.name}")
        found.extend(module.EQUATIONS)
    return found


def tolerance(dtype: str) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing a result of `dtype` with a float64 reference."""
    return {
        "float64": (1e-9, 1e-12),
        "float32": (1e-4, 1e-6),
        "float16": (5e-3, 1e-3),
        "bfloat16": (3e-2, 1e-2),
    }[dtype]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one equation on one backend in one dtype."""

    equation: str
    backend: str
    dtype: str
    ok: bool
    max_error: float
    message: str = ""


def _flatten(x: Any) -> list[Any]:
    if isinstance(x, tuple | list):
        return [leaf for item in x for leaf in _flatten(item)]
    return [x]


def run_check(eq: Equation, backend: Backend, dtype: str, *, seed: int = 0) -> CheckResult:
    """Run `eq` on `backend` in `dtype` and compare it with its float64 reference.

    Besides the values, the result must keep the backend's namespace, device and
    dtype: an equation that silently returns NumPy, or float64 for float32 input,
    fails here even if its numbers are right.
    """
    import array_api_compat

    inputs = eq.make_inputs(np.random.default_rng(seed))
    expected = eq.reference(*inputs, **eq.options)
    args = [backend.asarray(a, dtype) if hasattr(a, "shape") else a for a in inputs]
    lazy = eq.lazy or backend.library != "dask"
    try:
        if backend.jit and not eq.jit:
            raise _NotApplicableError(f"not traceable under jax.jit: {eq.no_jit}")
        if backend.library == "dask" and not eq.lazy:
            raise _NotApplicableError("not lazy on dask")
        actual = backend.call(eq.func, *args, lazy=lazy, **eq.options)
    except _NotApplicableError as exc:
        return CheckResult(eq.name, backend.id, dtype, True, float("nan"), f"n/a: {exc}")
    except LazyComputeError as exc:
        return CheckResult(eq.name, backend.id, dtype, False, float("nan"), str(exc))
    except Exception as exc:  # report, never crash the table
        return CheckResult(
            eq.name, backend.id, dtype, False, float("nan"), f"{type(exc).__name__}: {exc}"
        )
    xp = backend.xp
    problems = []
    for leaf in _flatten(actual):
        if not hasattr(leaf, "dtype"):
            continue
        if array_api_compat.array_namespace(leaf) is not xp:
            problems.append(f"namespace {array_api_compat.array_namespace(leaf).__name__}")
        if xp.isdtype(leaf.dtype, "real floating") and leaf.dtype != backend.dtype(dtype):
            problems.append(f"dtype {leaf.dtype}")
        if backend.device is not None and backend.device_of(leaf) != backend.device:
            problems.append(f"device {backend.device_of(leaf)}")
    got = backend.to_numpy(actual)
    if eq.compare is not None:
        got, expected = eq.compare(got), eq.compare(expected)
    rtol, atol = tolerance(dtype)
    if dtype == "float32":
        rtol = eq.rtol32
    error = 0.0
    for g, e in zip(_flatten(got), _flatten(expected), strict=True):
        g, e = np.asarray(g, dtype=np.float64), np.asarray(e, dtype=np.float64)
        if g.shape != e.shape:
            problems.append(f"shape {g.shape} != {e.shape}")
            continue
        if g.size:
            both_inf = np.isinf(e) & (g == e)  # inf - inf would warn (an error under pytest)
            with np.errstate(invalid="ignore"):
                diff = np.where(both_inf, 0.0, np.abs(g - e))
            scale = np.where(both_inf, 1.0, atol + rtol * np.abs(e))
            error = max(error, float(np.nanmax(diff)) if np.isfinite(diff).all() else np.inf)
            if not np.all(diff <= scale) or np.isnan(g).sum() != np.isnan(e).sum():
                problems.append("values differ")
    return CheckResult(eq.name, backend.id, dtype, not problems, error, "; ".join(problems))


class _NotApplicableError(Exception):
    pass


def _cell(flags: list[bool], yes: str, no: str) -> str:
    """A capability cell; some modes of a function may be eager (`gradient_descent(tol=)`)."""
    return yes if all(flags) else (f"{yes}, one mode {no}" if any(flags) else no)


def _compile_note(eq: Equation) -> tuple[str, str] | None:
    """``(label, reason)`` when `eq` cannot be compiled by torch, JAX or both, else None."""
    torch, jax = eq.no_compile, eq.no_jit
    if not torch and not jax:
        return None
    if torch and jax:
        reason = torch if torch == jax else f"`torch.compile`: {torch}; `jax.jit`: {jax}"
        return "eager only", reason
    return ("`jax.jit` only", torch) if torch else ("`torch.compile` only", jax)


def _superscript(n: int) -> str:
    return "".join("⁰¹²³⁴⁵⁶⁷⁸⁹"[int(d)] for d in str(n))


def capability_matrix() -> str:
    """The capability matrix as a Markdown table: public function × backend.

    Generated from the registry, which ``backends_tests/test_registry.py`` verifies
    on every backend present and ``backends_tests/test_compile.py`` under
    ``torch.compile(fullgraph=True)`` and ``jax.jit`` (including that each entry
    marked as not compiling indeed fails to), so the table cannot claim what is
    not tested. Each mark's reason is printed as a numbered note under the table.
    """
    functions: dict[str, list[Equation]] = {}
    for eq in equations():
        functions.setdefault(eq.name.split("(")[0], []).append(eq)
    header = (
        "| function | NumPy | array-api-strict | torch CPU / CUDA | JAX "
        "| `torch.compile`, `jax.jit` | CuPy | Dask | differentiable |"
    )
    lines = [header, "|---" * 9 + "|"]
    notes: list[str] = []
    for name, entries in sorted(functions.items()):
        grad = all(e.grad for e in entries)
        marked = [(e, note) for e in entries if (note := _compile_note(e)) is not None]
        compiled = "✓"
        if marked:
            labels = []
            for eq, (label, reason) in marked:
                notes.append(f"`{eq.name}`: {reason}")
                labels.append(f"{label}{_superscript(len(notes) + 2)}")
            if len(marked) == len(entries):
                compiled = ", ".join(labels)
            else:
                compiled = f"✓, {'one mode' if len(marked) == 1 else 'some modes'} " + ", ".join(
                    labels
                )
        cells = [
            f"`{name}`",
            "✓",
            "✓",
            "✓",
            "✓",
            compiled,
            "✓¹",
            _cell([e.lazy for e in entries], "✓ lazy", "✗²"),
            "autograd, `jax.grad`" if grad else "—",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("¹ The same portable code; exercised only on machines with a GPU.")
    lines.append("")
    lines.append(
        "² Not lazy on Dask: `eigh` and `eig` raise `NotImplementedError` naming Dask "
        "(it has no eigen-solver), `svd(full_matrices=True)` raises Dask's own error "
        "(it has only the reduced SVD), and the documented eager loops "
        "(`gradient_descent(tol=...)`, `bayesian_optimization`) compute at every step."
    )
    for i, reason in enumerate(notes, start=3):
        lines.append("")
        lines.append(f"{_superscript(i)} {reason}")
    return "\n".join(lines)
