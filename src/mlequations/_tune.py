r"""Measured plan choice: the per-device rules and the autotuning cache (issue 21).

`attention` (``block_size=None``) and `conv2d` (``method="auto"``) pick a portable
plan by a rule measured on one kind of machine. This module adjusts that pick to
the machine a call runs on, in this order:

1. **traced calls** (``torch.compile``, ``jax.jit``) keep the rule's plan: the
   compiler tiles the program itself, and nothing is timed or looked up;
2. **the cache**: a plan that :func:`tune` (or ``mlequations tune``) measured
   fastest on this machine, library, device and dtype, for this shape bucket;
3. **with ``MLEQUATIONS_AUTOTUNE=1``**, the first eager call of a shape bucket
   not in the cache times the candidate plans on its own arrays and caches the
   winner (as ``torch.backends.cudnn.benchmark = True`` does);
4. **the device kind's rule**: on an accelerator (``_xp.accelerator``), few
   large batched tiles, never a Python loop over heads or samples; on a CPU,
   the measured rules of `attention._choose` and `convolution._auto`.

The cache is one JSON file, ``tune.json``, in ``$MLEQUATIONS_CACHE_DIR``, else
``$XDG_CACHE_HOME/mlequations``, else ``~/.cache/mlequations`` (beside the JAX
compilation cache of ``mlequations check``). ``MLEQUATIONS_AUTOTUNE=0`` switches
it off: calls neither read it nor time anything, and :func:`tune` only reports.
It is read once per process (a dict lookup per call afterwards); a file that is
not valid JSON, or not this format, is ignored with one warning.

Each entry's key names what the timing depends on:
``op | library version | device kind and model | dtype | shape bucket``, for
example ``attention | torch 2.13.0 | cpu AMD EPYC 7B13, 2 cores | float32 |
B8 L1024 S1024 E64 causal``. A bucket rounds each size up to a power of two.
"""

from __future__ import annotations

import contextvars
import functools
import importlib.metadata
import json
import math
import os
import platform
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

from ._xp import (
    Array,
    Namespace,
    accelerator,
    device,
    float_dtypes,
    is_traced,
    library_name,
    namespace,
)

__all__ = [
    "Tuned",
    "accelerator_attention_plan",
    "accelerator_conv2d_method",
    "attention_plan",
    "cache_path",
    "conv2d_method",
    "describe",
    "machine",
    "tune",
]

FORMAT = "mlequations-tune"
VERSION = 1
ENV_DIR = "MLEQUATIONS_CACHE_DIR"
ENV_AUTOTUNE = "MLEQUATIONS_AUTOTUNE"

# An accelerator wants few large products: a tile of at most this many scores
# (256 MiB in float32) over every batch element at once, so (1, 8, 4096, 64) is
# two kernels' worth of tiles, not the CPU rule's 256 one-head tiles.
_ACCELERATOR_TILE = 2**26
# Candidates whose score tile would pass this many elements are not timed (memory).
_CANDIDATE_TILE = 2**26
# On a CPU, a smaller bound (4 MiB of float32 scores): above it a plan's speed depends
# on the C allocator's history, not on the plan. glibc returns a freed block above a
# threshold that moves with the blocks freed before, and at (4, 8, 1024, 64) query
# blocks of 64 rows over all heads (8 MiB tiles) ran at 1.6x SDPA in one process state
# and 3.3-3.8x in another, where the rule's plan held 1.7-1.9x in both; a 256 MiB
# candidate slowed whichever candidate followed it in a round, so that `tune` crowned
# plans that then ran 1.3-2.4x slower than the rule's (Intel Xeon, 2 cores, torch 2.13).
_CPU_CANDIDATE_TILE = 2**20

PlanTuple = tuple[int | None, int | None, bool, bool]  # attention._Plan's fields

_timing = contextvars.ContextVar("mlequations_tune_timing", default=False)
_loaded: dict[Path, dict[str, Any]] = {}  # cache file -> its entries, read once
_warned: set[Path] = set()


# -- where the cache is, and what it holds ---------------------------------------------


def cache_path() -> Path:
    """The cache file: ``tune.json`` in the directory the environment names."""
    env = (os.environ.get(ENV_DIR), os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))
    path = _paths.get(env)  # every call asks: a Path built once per environment
    if path is None:
        if env[0]:
            path = Path(env[0]) / "tune.json"
        else:
            xdg = env[1] or os.path.join(os.path.expanduser("~"), ".cache")
            path = Path(xdg) / "mlequations" / "tune.json"
        _paths[env] = path
    return path


_paths: dict[tuple[str | None, ...], Path] = {}


def _mode() -> str:
    """``"off"`` (``MLEQUATIONS_AUTOTUNE=0``), ``"auto"`` (``=1``) or ``"read"`` (unset)."""
    value = os.environ.get(ENV_AUTOTUNE, "")
    return {"0": "off", "1": "auto"}.get(value.strip(), "read")


def _warn_once(path: Path, why: str) -> None:
    if path not in _warned:
        _warned.add(path)
        warnings.warn(
            f"mlequations: ignoring the tuning cache {path} ({why}); "
            f"`mlequations tune` rewrites it, or set {ENV_AUTOTUNE}=0",
            RuntimeWarning,
            stacklevel=4,
        )


def _read(path: Path) -> tuple[dict[str, Any], str | None]:
    """The entries of `path`, and why it was ignored (None when it was not)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"unreadable: {exc}"
    try:
        data = json.loads(text)
    except ValueError:
        return {}, "not valid JSON"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}, f"not a {FORMAT} file"
    if data.get("version") != VERSION or not isinstance(data.get("entries"), dict):
        return {}, f"format version {data.get('version')!r}, this mlequations reads {VERSION}"
    return data["entries"], None


def _entries(path: Path) -> dict[str, Any]:
    """The cache's entries, read once per process and file."""
    entries = _loaded.get(path)
    if entries is None:
        entries, why = _read(path)
        if why is not None:
            _warn_once(path, why)
        _loaded[path] = entries
    return entries


def _as_json(plan: Any) -> Any:
    return json.loads(json.dumps(plan))


def _cached(key: str) -> dict[str, Any] | None:
    """The cache's entry for `key`, or None (none, or the cache switched off)."""
    entry = None if _mode() == "off" else _entries(cache_path()).get(key)
    return entry if isinstance(entry, dict) and "plan" in entry else None


def _store(key: str, entry: dict[str, Any]) -> None:
    """Add one entry in memory and in the file (merged with what another process wrote)."""
    path = cache_path()
    _entries(path)[key] = entry
    on_disk, _ = _read(path)
    on_disk[key] = entry
    data = {"format": FORMAT, "version": VERSION, "entries": on_disk}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(temporary, path)  # atomic: a reader never sees half a file
    except OSError as exc:
        _warn_once(path, f"not writable: {exc}; the winner is kept for this process only")


def describe() -> str:
    """Where the cache is, whether calls use it, and its entries (for ``mlequations info``)."""
    path = cache_path()
    mode = _mode()
    use = {
        "off": f"off ({ENV_AUTOTUNE}=0)",
        "auto": f"read, and new shape buckets tuned on first call ({ENV_AUTOTUNE}=1)",
        "read": f"read (set {ENV_AUTOTUNE}=1 to tune new shape buckets on first call)",
    }[mode]
    entries, why = _read(path)
    lines = [f"tuning cache: {path}", f"  use: {use}"]
    if why is not None:
        lines.append(f"  ignored: {why}")
    lines.append(f"  entries: {len(entries)}")
    for key in sorted(entries):
        entry = entries[key]
        lines.append(f"    {key} -> {entry.get('label', entry.get('plan'))}")
    return "\n".join(lines)


# -- the machine a call runs on ----------------------------------------------------------


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else the platform's)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


_DISTRIBUTIONS = {"array_api_strict": "array-api-strict"}


@functools.cache
def _version(library: str) -> str:
    try:
        return importlib.metadata.version(_DISTRIBUTIONS.get(library, library))
    except importlib.metadata.PackageNotFoundError:
        return "-"


def gpu_name(dev: Any = None) -> str | None:
    """The name of a GPU: `dev`'s (a torch device, JAX device or CuPy device), else the first.

    Without `dev`, the libraries already imported are asked, then torch and
    CuPy are tried; None when no GPU is found.
    """
    torch = sys.modules.get("torch")
    if dev is not None:
        if torch is not None and isinstance(dev, torch.device):
            return str(torch.cuda.get_device_name(dev)) if dev.type == "cuda" else dev.type
        kind = getattr(dev, "device_kind", None)  # a JAX device
        if kind is not None:
            return str(kind)
        cupy = sys.modules.get("cupy")
        if cupy is not None:
            return str(cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode())
        return str(dev)
    for module in ("torch", "cupy"):
        try:
            lib = __import__(module)
            if module == "torch" and lib.cuda.is_available():
                return str(lib.cuda.get_device_name(0))
            if module == "cupy" and lib.cuda.runtime.getDeviceCount():
                return str(lib.cuda.runtime.getDeviceProperties(0)["name"].decode())
        except Exception:  # absent, or present without a driver: no GPU from it
            continue
    return None


def _where(x: Array) -> tuple[str, bool]:
    """``("<library> <version> | <device kind and model>", on an accelerator)`` for `x`.

    The hardware is ``"cpu <model>, <n> cores"`` or ``"gpu <name>"``. Memoised by
    array type and device, so that a call pays two dictionary lookups for it.
    """
    memo_key = (type(x), str(getattr(x, "device", "")))
    memo = _wheres.get(memo_key)
    if memo is None:
        library, gpu = library_name(x), accelerator(x)
        hardware = (
            f"gpu {gpu_name(device(x))}" if gpu else f"cpu {cpu_model()}, {os.cpu_count()} cores"
        )
        memo = (f"{library} {_version(library)} | {hardware}", gpu)
        _wheres[memo_key] = memo
    return memo


_wheres: dict[tuple[type, str], tuple[str, bool]] = {}


def machine(x: Array | None = None) -> dict[str, Any]:
    """What a measurement ran on: CPU model and cores, GPU name, library versions."""
    out: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "mlequations": _version("mlequations"),
        "array-api-compat": _version("array-api-compat"),
    }
    if x is not None:
        library = library_name(x)
        out |= {
            "library": library,
            library: _version(library),
            "device": str(device(x)),
            "gpu": gpu_name(device(x)) if accelerator(x) else None,
        }
    return out


def _p2(n: int) -> int:
    """`n` rounded up to a power of two (0 stays 0)."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


def _key(op: str, x: Array, dtype: Any, bucket: str) -> str:
    name = _dtype_names.get(dtype)
    if name is None:
        name = _dtype_names[dtype] = str(dtype).rsplit(".", 1)[-1]
    return f"{op} | {_where(x)[0]} | {name} | {bucket}"


_dtype_names: dict[Any, str] = {}


# -- attention ------------------------------------------------------------------------


def accelerator_attention_plan(L: int, S: int, batch: int, looped: bool) -> PlanTuple:
    """The accelerator rule: every batch element at once, query blocks as large as fit.

    A block holds at most ``_ACCELERATOR_TILE`` scores (``batch·rows·S``); all
    queries at once (the plain formula) when they fit. `looped` keeps the rule's
    compiled loop (JAX), whose steps then are these large blocks too.
    """
    fit = _ACCELERATOR_TILE // max(1, batch * S)
    rows = max(16, 1 << max(fit.bit_length() - 1, 0))
    if rows >= L:
        return (L, None, False, True) if looped else (None, None, False, False)
    return (rows, None, False, looped)


def _attention_bucket(arrays: tuple[Array, ...], is_causal: bool) -> str:
    query, key, value, mask = arrays
    batch = max(math.prod(x.shape[:-2]) for x in (query, key, value))
    L, S, E = query.shape[-2], key.shape[-2], query.shape[-1]
    bucket = f"B{_p2(batch)} L{_p2(L)} S{_p2(S)} E{_p2(E)}"
    return bucket + (" causal" if is_causal else "") + (" mask" if mask is not None else "")


def _attention_candidates(
    default: PlanTuple, L: int, S: int, batch: int, on_accelerator: bool
) -> list[PlanTuple]:
    """Plans worth timing: the rule's, the accelerator rule's, and the tilings around them.

    Besides the rule's own plan and its halves (half the query rows, or half the
    keys, of its blocks), only those whose score tile stays within
    ``_CANDIDATE_TILE`` elements on an accelerator or in JAX's compiled loop, and
    ``_CPU_CANDIDATE_TILE`` for the eager tiles on a CPU.
    """
    looped = default[3]
    found: list[PlanTuple] = [default, accelerator_attention_plan(L, S, batch, looped)]
    rows, keys, per_element, _ = default
    halves: list[PlanTuple] = []
    # Halves of what the blocks really hold: 2048 keys of a 512-key sequence are 512.
    if rows is not None and min(rows, L) >= 32:
        halves.append((min(rows, L) // 2, keys, per_element, looped))
    if keys is not None and min(keys, S) >= 32:
        halves.append((rows, min(keys, S) // 2, per_element, looped))
    found += halves
    if looped:  # a compiled loop (JAX): only the step size varies
        base = default[0] or L
        found += [(min(L, max(16, base * f // 4)), None, False, True) for f in (1, 2, 8, 16)]
    else:
        found += [
            (None, None, False, False),
            (64, None, False, False),
            (256, None, False, False),
            (1024, None, False, False),
            (256, 2048, False, False),
            (1024, 512, True, False),
            (1024, None, True, False),
            (256, None, True, False),
        ]
    # The CPU bound is for the tiles of a Python loop, allocated call by call; a JAX
    # loop's steps live in buffers XLA plans for the whole program (not measured).
    bound = _CANDIDATE_TILE if on_accelerator or looped else _CPU_CANDIDATE_TILE
    out: list[PlanTuple] = []
    for plan in found:
        per_tile = min(plan[0] or L, L) * (plan[1] or S) * (1 if plan[2] else batch)
        if plan not in out and (plan == default or plan in halves or per_tile <= bound):
            out.append(plan)
    return out


def _int(n: Any) -> int | None:
    return None if n is None else int(n)


def _stored_plan(entry: dict[str, Any]) -> PlanTuple:
    """An attention plan as the cache stores it (a JSON list) back as a plan tuple."""
    rows, keys, per_element, looped = entry["plan"]
    return (_int(rows), _int(keys), bool(per_element), bool(looped))


def _plan_label(plan: PlanTuple) -> str:
    rows, keys, per_element, looped = plan
    if rows is None and keys is None:
        return "plain"
    words = [f"rows={rows}"] + ([f"keys={keys}"] if keys else [])
    words += ["per-head"] if per_element else []
    words += ["looped"] if looped else []
    return " ".join(words)


def attention_plan(
    default: PlanTuple,
    arrays: tuple[Array, ...],
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
    xp: Namespace,
) -> PlanTuple:
    """The plan for an `attention` call with ``block_size=None`` (see the module docstring).

    `default` is `attention._choose`'s plan; `arrays` are (query, key, value, mask).
    """
    query, key, value, _ = arrays
    if is_traced(*arrays) or _timing.get():  # in this order: dynamo cannot trace a ContextVar
        return default
    mode = _mode()
    entries = {} if mode == "off" else _entries(cache_path())
    if entries or mode == "auto":  # no key is built while the cache is empty
        key_ = _key("attention", query, query.dtype, _attention_bucket(arrays, is_causal))
        entry = entries.get(key_)
        if entry is not None:
            return _stored_plan(entry)
        if mode == "auto":
            tuned = _tune_attention(arrays, is_causal, scale, enable_gqa, xp, default, 3, True)
            plan: PlanTuple = tuned.plan
            return plan
    if _where(query)[1]:  # on an accelerator
        batch = max(math.prod(x.shape[:-2]) for x in (query, key, value))
        return accelerator_attention_plan(query.shape[-2], key.shape[-2], batch, default[3])
    return default


def _tune_attention(
    arrays: tuple[Array, ...],
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
    xp: Namespace,
    default: PlanTuple,
    repeats: int,
    save: bool,
) -> Tuned:
    from .attention import _attention

    query, key, value, mask = arrays
    batch = max(math.prod(x.shape[:-2]) for x in (query, key, value))
    L, S = query.shape[-2], key.shape[-2]
    key_ = _key("attention", query, query.dtype, _attention_bucket(arrays, is_causal))
    plans = _attention_candidates(default, L, S, batch, _where(query)[1])
    before = _cached(key_)
    if before is not None:  # the cached plan is timed too, whatever the bounds
        plans.append(_stored_plan(before))
    calls: dict[str, tuple[Any, Callable[[], Any]]] = {
        _plan_label(plan): (
            plan,
            functools.partial(
                _attention,
                query,
                key,
                value,
                mask,
                is_causal,
                scale,
                enable_gqa,
                None,
                cast(Any, plan),  # _attention's annotation predates the `looped` field
                xp,
            ),
        )
        for plan in plans
    }
    return _time_and_store(key_, calls, _plan_label(default), query, repeats, save)


# -- conv2d ------------------------------------------------------------------------------


def accelerator_conv2d_method(default: str, kernel: tuple[int, int], depthwise: bool) -> str:
    """The accelerator rule: one large batched product (``"im2col"``), with two exceptions.

    The rule's pick stays where it does no product at all (``"shift"`` of a depthwise
    kernel) or where its cost does not grow with the kernel (``"fft"``).
    """
    if default == "fft" or (default == "shift" and depthwise):
        return default
    return "im2col"


def _conv2d_bucket(x: Array, weight: Array, options: dict[str, Any], out: tuple[int, int]) -> str:
    N, C = x.shape[:2]
    K, Cg, KH, KW = weight.shape
    (sh, sw), (dh, dw), groups = options["stride"], options["dilation"], options["groups"]
    kind = "dense" if groups == 1 else "depthwise" if Cg == 1 else f"groups{_p2(groups)}"
    return (
        f"N{_p2(N)} C{_p2(C)} K{_p2(K)} out{_p2(out[0])}x{_p2(out[1])} "
        f"k{KH}x{KW} s{sh}x{sw} d{dh}x{dw} {kind}"
    )


def conv2d_method(
    default: str,
    x: Array,
    weight: Array,
    options: dict[str, Any],
    out: tuple[int, int],
    xp: Namespace,
) -> str:
    """The method for a `conv2d` call with ``method="auto"`` (see the module docstring).

    `default` is `convolution._auto`'s pick; `x` is the batched input ``(N, C, H, W)``,
    `options` the normalised ``stride``, ``padding`` (pairs of pairs), ``dilation``
    and ``groups``; `out` the output's ``(Ho, Wo)``.
    """
    if is_traced(x, weight) or _timing.get():
        return default
    mode = _mode()
    entries = {} if mode == "off" else _entries(cache_path())
    if entries or mode == "auto":
        key_ = _key("conv2d", x, x.dtype, _conv2d_bucket(x, weight, options, out))
        entry = entries.get(key_)
        if entry is not None:
            return str(entry["plan"])
        if mode == "auto":
            return str(_tune_conv2d(x, weight, options, out, xp, default, 3, True).plan)
    if _where(x)[1]:  # on an accelerator
        return accelerator_conv2d_method(default, weight.shape[2:], weight.shape[1] == 1)
    return default


def _tune_conv2d(
    x: Array,
    weight: Array,
    options: dict[str, Any],
    out: tuple[int, int],
    xp: Namespace,
    default: str,
    repeats: int,
    save: bool,
) -> Tuned:
    from .convolution import conv2d

    methods = ["im2col", "shift"] + (["fft"] if hasattr(xp, "fft") else [])
    if (tuple(weight.shape[2:]), options["stride"], options["dilation"]) == (
        (3, 3),
        (1, 1),
        (1, 1),
    ):
        methods.append("winograd")
    calls: dict[str, tuple[Any, Callable[[], Any]]] = {
        m: (m, functools.partial(conv2d, x, weight, method=m, xp=xp, **options)) for m in methods
    }
    key_ = _key("conv2d", x, x.dtype, _conv2d_bucket(x, weight, options, out))
    return _time_and_store(key_, calls, default, x, repeats, save)


# -- timing ---------------------------------------------------------------------------------


class Tuned(NamedTuple):
    """What :func:`tune` measured for one call.

    Attributes:
        key: The cache key (op, library and version, device, dtype, shape bucket).
        winner: The fastest candidate's label (a method, or a tiling of attention),
            if it also beat the rule's plan in a head-to-head rematch; else the rule's.
        plan: The winner as the cache stores it.
        default: The label of the plan the rules pick untuned.
        seconds: Median seconds per call of every candidate, by label.
        machine: CPU model, core count, GPU name and library versions.
        cached: The label the cache held for this key before this call, or None:
            after a first :func:`tune`, a second one (``save=False``) checks it.
    """

    key: str
    winner: str
    plan: Any
    default: str
    seconds: dict[str, float]
    machine: dict[str, Any]
    cached: str | None = None

    @property
    def speedup(self) -> float:
        """The default's time over the winner's: what tuning gains (1.0: nothing)."""
        return self.seconds.get(self.default, math.nan) / self.seconds[self.winner]

    @property
    def cached_over_best(self) -> float:
        """The cached plan's time over the fastest candidate's (NaN: nothing cached).

        What a call with ``block_size=None`` or ``method="auto"`` loses to the best
        plan on this machine now that the cache decides: issue 21 asks for 1.05 at most.
        """
        if self.cached not in self.seconds:
            return math.nan
        return self.seconds[self.cached] / min(self.seconds.values())


def _sync(x: Any) -> Any:
    """Wait for `x` to be computed: a GPU and JAX's dispatch return before the work is done."""
    ready = getattr(x, "block_until_ready", None)
    if ready is not None:
        return ready()
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type not in ("cpu", "meta"):
            getattr(torch, x.device.type).synchronize()
        return x
    synchronize = getattr(getattr(x, "device", None), "synchronize", None)
    if synchronize is not None:  # CuPy's device
        synchronize()
    return x


def _time_and_store(
    key: str,
    calls: dict[str, tuple[Any, Callable[[], Any]]],
    default: str,
    like: Array,
    repeats: int,
    save: bool,
) -> Tuned:
    from ._bench import time_interleaved

    token = _timing.set(True)
    try:
        timings = time_interleaved(
            {label: call for label, (_, call) in calls.items()},
            [],
            _sync,
            repeats=repeats,
            warmup=1,
        )
    finally:
        _timing.reset(token)
    seconds = {k: t.median for k, t in timings.items() if not isinstance(t, Exception)}
    if not seconds:
        raise RuntimeError(f"tune: every candidate failed for {key}: {timings}")
    winner = min(seconds, key=seconds.__getitem__)
    if winner != default and default in seconds:
        winner = _confirmed(winner, default, calls, repeats)
    plan = calls[winner][0]
    before = _cached(key)
    cached = next(  # the cache stores a plan as JSON: a tuple comes back as a list
        (
            label
            for label, (p, _) in calls.items()
            if before and _as_json(p) == _as_json(before["plan"])
        ),
        None,
    )
    if save and _mode() != "off":
        entry = {"plan": plan, "label": winner, "seconds": seconds, "machine": machine(like)}
        _store(key, entry)
    return Tuned(key, winner, plan, default, seconds, machine(like), cached)


def _confirmed(
    winner: str, default: str, calls: dict[str, tuple[Any, Callable[[], Any]]], repeats: int
) -> str:
    """`winner` if it beats the rule's plan again, head to head; else the rule's plan.

    A slow spell of a shared machine can make one plan look fast in one round of
    many candidates (a 2-core VM ranked a plan 2.4x slower than the rule's first,
    once): a second, two-way race decides, so tuning never makes a call slower.
    It runs twice the rounds of the first, at two calls a round: with five, a
    plan 4-17 % faster in 25 rounds (64 x 256 blocks against the rule's 64 x 2048
    at (8, 8, 512, 64) causal, torch on an Intel Xeon) lost the rematch.
    """
    from ._bench import Timing, time_interleaved

    token = _timing.set(True)
    try:
        again = time_interleaved(
            {winner: calls[winner][1], default: calls[default][1]},
            [],
            _sync,
            repeats=2 * repeats + 1,
            warmup=0,
        )
    finally:
        _timing.reset(token)
    new, old = again[winner], again[default]
    if isinstance(new, Timing) and isinstance(old, Timing) and new.median < old.median:
        return winner
    return default


def tune(
    *arrays: Array,
    op: str,
    repeats: int = 5,
    save: bool = True,
    xp: Namespace | None = None,
    **options: Any,
) -> Tuned:
    r"""Time the candidate plans of one `attention` or `conv2d` call, and cache the fastest.

    Every candidate computes the same numbers; the winner is the one of least
    median time $\operatorname{arg\,min}_p \operatorname{median}(t_p)$ over
    `repeats` interleaved rounds (so a slow spell of a shared machine falls on
    all of them). It is stored under this machine, library and version, device,
    dtype and the shape's power-of-two bucket, and from then on
    ``block_size=None`` and ``method="auto"`` use it for every call of that
    bucket, in every process (see ``docs/content/tuning.md``).

    Args:
        *arrays: The call's arrays, of the library, device and dtype to tune
            for: ``(query, key, value)`` for attention, ``(input, weight)`` for conv2d.
        op: ``"attention"`` or ``"conv2d"``.
        repeats: Timed rounds per candidate (after one warm-up round).
        save: Write the winner to the cache (``False``: only report).
        xp: Array namespace; inferred from the arrays when omitted.
        **options: The call's options: ``mask``, ``is_causal``, ``scale``,
            ``enable_gqa`` for attention; ``stride``, ``padding``, ``dilation``,
            ``groups`` for conv2d.

    Returns:
        A :class:`Tuned`: the cache key, the winner, every candidate's median
        seconds, the untuned default's label, and the machine it ran on.

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> q = np.ones((1, 2, 64, 16), dtype=np.float32)
        >>> result = mle.tune(q, q, q, op="attention", is_causal=True, save=False, repeats=1)
        >>> result.key.split(" | ")[0], result.winner in result.seconds
        ('attention', True)
    """
    if op == "attention":
        from .attention import _static

        query, key, value = arrays
        mask = options.pop("mask", None)
        is_causal = bool(options.pop("is_causal", False))
        scale, enable_gqa = options.pop("scale", None), bool(options.pop("enable_gqa", False))
        if options:
            raise TypeError(f"tune: unknown attention options {sorted(options)}")
        xp = namespace(query=query, key=key, value=value, mask=mask, xp=xp)
        token = _timing.set(True)  # the rule's own plan, not a cached one
        try:
            static = _static(query, key, value, mask, is_causal, scale, enable_gqa, None, xp)
        finally:
            _timing.reset(token)
        default = tuple(static.plan)
        arrays4 = (query, key, value, mask)
        return _tune_attention(arrays4, is_causal, scale, enable_gqa, xp, default, repeats, save)  # type: ignore[arg-type]
    if op == "conv2d":
        return _tune_conv2d_call(*arrays, xp=xp, repeats=repeats, save=save, **options)
    raise ValueError(f"`op` must be 'attention' or 'conv2d', got {op!r}")


def _tune_conv2d_call(
    x: Array,
    weight: Array,
    *,
    xp: Namespace | None,
    repeats: int,
    save: bool,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Tuned:
    from .convolution import _auto, _padding, _pair

    xp = namespace(input=x, weight=weight, xp=xp)
    _, work = float_dtypes(xp, input=x, weight=weight)  # conv2d's key: the dtype it computes in
    x = xp.astype(x if x.ndim == 4 else x[None, ...], work, copy=False)
    weight = xp.astype(weight, work, copy=False)
    K, Cg, KH, KW = weight.shape
    stride_, dilation_ = _pair(stride, "stride"), _pair(dilation, "dilation")
    pads = _padding(padding, tuple(x.shape[2:]), (KH, KW), stride_, dilation_)
    Hp, Wp = x.shape[2] + sum(pads[0]), x.shape[3] + sum(pads[1])
    out = (
        (Hp - (KH - 1) * dilation_[0] - 1) // stride_[0] + 1,
        (Wp - (KW - 1) * dilation_[1] - 1) // stride_[1] + 1,
    )
    options = {"stride": stride_, "padding": pads, "dilation": dilation_, "groups": groups}
    default = _auto(xp, groups, (Cg, K // groups), (KH, KW), stride_, dilation_, out)
    return _tune_conv2d(x, weight, options, out, xp, default, repeats, save)


tune.__mle_unregistered__ = True  # type: ignore[attr-defined]  # times plans, computes no equation


def tune_cases(
    backend_ids: list[str],
    ops: list[str],
    *,
    quick: bool = False,
    labels: list[str] | None = None,
    dtype: str = "float32",
    repeats: int = 5,
    save: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, str, Tuned]]:
    """:func:`tune` at every benchmark case of `ops` on each backend: ``(backend, case, Tuned)``."""
    from ._backends import by_id
    from ._bench import cases, make_inputs

    results = []
    for backend_id in backend_ids:
        backend = by_id(backend_id)
        for op in ops:
            for case in cases(op, quick=quick):
                if labels and case.label not in labels:
                    continue
                if progress is not None:
                    progress(f"{op} {case.label} on {backend_id}")
                arrays = make_inputs(case, backend, dtype)
                result = tune(*arrays, op=op, repeats=repeats, save=save, **case.options)
                results.append((backend_id, case.label, result))
    return results


def table(results: list[tuple[str, str, Tuned]]) -> str:
    """One line per tuned case: backend, case, default and winner, and default/best.

    Where the cache held a plan before (a second ``mlequations tune``, or one with
    ``--dry-run``), two more columns check it against this run's fastest candidate.
    """
    checked = any(r.cached is not None for _, _, r in results)
    rows: list[tuple[str, ...]] = [("backend", "case", "default", "winner", "default/best")]
    rows[0] += ("cached", "cached/best") if checked else ()
    for backend_id, label, r in results:
        row: tuple[str, ...] = (
            backend_id,
            f"{r.key.split(' | ')[0]} {label}",
            r.default,
            r.winner,
            f"{r.speedup:.2f}",
        )
        if checked:
            row += (r.cached or "-", f"{r.cached_over_best:.2f}" if r.cached else "-")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)) for row in rows
    )
