"""Per-call overhead: every registry equation at its tiny shapes, beside the native call.

Models call these functions thousands of times per step on small tensors, where
the time is not arithmetic but the fixed cost of a call: namespace and dtype
resolution, argument checks, one dispatch per array operation (issue 19). Each
group ``overhead[<equation>]`` lines up, on one backend, the portable function
and the library's own call for the same math where it has one
(``mlequations._native.native_equation``: ``torch.softmax``,
``F.cross_entropy``, ``scipy.special.softmax``, the one-line ``xlogy``
formula of an entropy, ...), on the registry's own inputs (``(4, 6)`` logits,
``(2, 3, 6)`` distributions). Each timed round is ``CALLS`` calls in a row.

The portable rows carry ``extra_info["ratio"]``: portable over native time,
the two timed alternately in the same process (``_bench.overhead``), so a
busy spell of a shared machine falls on both; that ratio, not the absolute
time, is the number to compare across machines.

Full sweep (one library per process, see ``conftest.py``)::

    pytest benchmarks/bench_overhead.py --benchmark-only --benchmark-group-by=group -k torch-cpu

The same numbers as a table, without pytest::

    python -c "from mlequations import _bench; from mlequations._backends import by_id; \\
        print(_bench.overhead_table(_bench.overhead(by_id('torch-cpu'))))"
"""

from __future__ import annotations

import os

import pytest

from mlequations import _bench
from mlequations._registry import equations

from .conftest import _version

QUICK = bool(os.environ.get("MLEQUATIONS_BENCH_QUICK"))
CALLS = 20  # calls per timed round: microseconds each, far above the clock's resolution
# The quick run (the test suite runs every benchmark once) keeps a few equations:
# two, enough to keep the file from rotting.
_QUICK_NAMES = ("softmax", "cross_entropy_loss")
EQUATIONS = [eq for eq in equations() if not QUICK or eq.name in _QUICK_NAMES]


@pytest.mark.parametrize("eq", EQUATIONS, ids=[eq.name for eq in EQUATIONS])
@pytest.mark.parametrize("impl", ["portable", "native"])
def bench_overhead(benchmark, bench_backend, eq, impl):
    if bench_backend.jit and not eq.jit:
        pytest.skip(f"{eq.name} does not trace under jax.jit")
    try:
        args, impls = _bench.overhead_kernels(eq, bench_backend)
    except TypeError as exc:  # non-array inputs under jax.jit
        pytest.skip(str(exc))
    if impl not in impls:
        pytest.skip(f"no native counterpart of {eq.name} on {bench_backend.library}")
    fn, sync = impls[impl], bench_backend.sync

    def run():
        for _ in range(CALLS - 1):
            fn(*args)
        return sync(fn(*args))

    benchmark.group = f"overhead[{eq.name}]"
    benchmark.extra_info.update(
        backend=bench_backend.id,
        library=bench_backend.library,
        version=_version(bench_backend.library),
        impl=impl,
        calls_per_round=CALLS,
        shapes=[list(a.shape) for a in args if hasattr(a, "shape")],
        dtype="float32",
    )
    benchmark.pedantic(run, rounds=3 if QUICK else 30, iterations=1, warmup_rounds=2)
    if impl == "portable" and "native" in impls and not QUICK:
        (row,) = _bench.overhead(bench_backend, [eq.name], calls=CALLS, repeats=15)
        benchmark.extra_info.update(ratio=row.ratio, portable_us=_us(row.portable))
        benchmark.extra_info.update(native_us=_us(row.native))


def _us(seconds):
    return None if seconds is None else seconds * 1e6
