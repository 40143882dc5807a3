"""The backend seam: the one module that knows array libraries exist.

Every equation in mlequations starts with :func:`namespace` and then calls only
functions of the array API standard on the namespace it returns. What the
standard leaves open — which library an array comes from, which device it lives
on, which floating dtype to compute in — is decided here, once:

* :func:`namespace` resolves the caller's library (or the ``xp=`` override) and
  rejects mixed libraries (``TypeError``) and mixed devices (``ValueError``),
  naming the arguments.
* :func:`float_dtypes` applies the dtype policy: integer and boolean inputs are
  promoted to the namespace's default floating dtype; float16 and bfloat16 are
  computed in float32 and cast back; complex input is a ``TypeError``.
* :func:`scalar` makes a constant with the dtype and device of a given array, so
  that a constant never promotes float32 to float64 nor crosses devices.
* :func:`library_name` names an array's library for error messages.

The few gaps in the standard that have no portable formulation (a general,
non-symmetric eigen-solver) are filled here too, and nowhere else, as is the one
function the standard lacks whose native form is much faster (:func:`exp2`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, TypeAlias

import array_api_compat

__all__ = [
    "Array",
    "Namespace",
    "accelerator",
    "as_array",
    "compute_dtype",
    "device",
    "exp2",
    "float_dtypes",
    "is_jax",
    "is_torch",
    "is_traced",
    "library_name",
    "namespace",
    "repeat",
    "scalar",
    "scan",
    "split_batch",
]

Array: TypeAlias = Any
"""Any array of a library that follows (or is wrapped to follow) the standard."""

Namespace: TypeAlias = Any
"""An array API namespace: the module-like object returned by :func:`namespace`."""


def library_name(x: object) -> str:
    """Name the library that made `x` ("numpy", "torch", "jax", ...) for messages."""
    module = type(x).__module__.split(".")[0]
    return {"jaxlib": "jax", "array_api_strict": "array_api_strict"}.get(module, module)


def device(x: Array, /) -> Any:
    """The device of `x` (array-api-compat's ``device``; a torch tensor's own, directly).

    Torch tensors skip array-api-compat's cached type lookups, which dynamo warns
    about on every traced call (see :func:`_all_torch_on_one_device`).
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.device
    return array_api_compat.device(x)


def _is_array(x: object) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):  # no cached lookup (see namespace)
        return True
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, int | float | complex)


def _resolve(xp: Any) -> Namespace:
    """Turn a library module (``numpy``, ``torch``, ``jax.numpy``) into its namespace."""
    if getattr(xp, "__name__", "").startswith("array_api_compat."):
        return xp
    # Asking the library for a 0-d array and resolving *that* maps every spelling
    # (``numpy``, ``torch``, ``jax.numpy``, ``array_api_strict``, ``dask.array``)
    # onto the namespace array_api_compat would give for the user's own arrays.
    try:
        probe = xp.asarray(0)
    except AttributeError:
        raise TypeError(f"xp must be an array library or namespace, got {xp!r}") from None
    return array_api_compat.array_namespace(probe)


def namespace(*arrays: Any, xp: Any = None, **named: Any) -> Namespace:
    """Return the array API namespace of the inputs, after checking that they agree.

    Arrays can be given positionally or by keyword; keyword names appear in the
    error messages, so equations pass their arguments as ``namespace(query=q,
    key=k)``. ``None`` and Python scalars are ignored.

    Args:
        *arrays: Arrays (or ``None``/Python scalars, which are skipped).
        xp: An explicit namespace or library module; it wins over inference.
        **named: Arrays passed under the names users know them by.

    Returns:
        The namespace: ``xp`` if given, else the one shared by all arrays.

    Raises:
        TypeError: The arrays come from different libraries, or an argument is
            neither an array, ``None`` nor a Python number (a list, say).
        ValueError: The arrays live on different devices.
    """
    values = (*arrays, *named.values()) if named else arrays
    # The fast paths (per-call overhead, issue 19): inputs that plainly agree are
    # resolved without building names or comparing devices one by one. Anything
    # else falls through to the general checks, which raise the clear errors.
    if _all_torch_on_one_device(values):
        return _torch_ns() if xp is None else _resolve(xp)
    same = _one_library(values)
    if same is not None:
        return same if xp is None else _resolve(xp)
    items = [(f"argument {i}", a) for i, a in enumerate(arrays)] + list(named.items())
    for name, a in items:
        if a is not None and not isinstance(a, int | float) and not _is_array(a):
            # A list or tuple would otherwise slip through and fail later, naming nothing.
            raise TypeError(f"`{name}` must be an array, got {type(a).__name__}")
    items = [(name, a) for name, a in items if a is not None and _is_array(a)]
    libraries = {library_name(a) for _, a in items}
    if len(libraries) > 1:
        described = ", ".join(f"`{name}` is a {library_name(a)} array" for name, a in items)
        raise TypeError(
            f"inputs mix array libraries ({' and '.join(sorted(libraries))}): "
            f"{described}; convert them to one library first"
        )
    devices: dict[str, tuple[str, Any]] = {}
    for name, a in items:
        dev = device(a)
        # Traced values (jax.jit) have no concrete device; the tracer checks itself.
        if dev is not None:
            devices.setdefault(_device_key(dev), (name, dev))
    if len(devices) > 1:
        described = ", ".join(f"`{name}` is on {dev}" for name, dev in devices.values())
        raise ValueError(
            f"inputs live on different devices: {described}; move them to one device first"
        )
    if xp is not None:
        return _resolve(xp)
    if not items:
        raise TypeError(
            "expected at least one array argument, got none (pass `xp=` to choose a library)"
        )
    return array_api_compat.array_namespace(*(a for _, a in items))


def _all_torch_on_one_device(values: tuple[Any, ...]) -> bool:
    """Whether every array among `values` is a torch tensor, all on one device (and one is).

    A direct ``isinstance`` check, without array-api-compat's cached type lookups:
    under ``torch.compile`` those print a warning per call ("Dynamo detected a call
    to a ``functools.lru_cache``-wrapped function") and guard on library internals,
    and an ``nn.Parameter`` (a tensor subclass) broke the graph. It is also the
    cheap path for eager calls. ``None`` and Python numbers are skipped.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    dev = None
    for a in values:
        if isinstance(a, torch.Tensor):
            if dev is None:
                dev = a.device
            elif a.device != dev:
                return False
        elif a is not None and not isinstance(a, int | float):
            return False
    return dev is not None


def _torch_ns() -> Namespace:
    import array_api_compat.torch as torch_namespace

    return torch_namespace


# Namespace by array type, and whether that library has one device only (NumPy):
# array-api-compat's own lookup walks its list of libraries on every call.
_BY_TYPE: dict[type, tuple[Namespace, bool]] = {}


def _one_library(values: tuple[Any, ...]) -> Namespace | None:
    """The namespace when the arrays among `values` need no further check, else None.

    That is one array (of any library), or several of one type whose library has
    a single device. ``None`` and Python numbers are skipped; anything unusual
    (no array, a list, mixed types, several arrays that may sit on different
    devices) returns None, for the general checks to judge and name.
    """
    first: Any = None
    several = False
    for a in values:
        if a is None or isinstance(a, int | float):
            continue
        if first is None:
            first = a
        elif type(a) is not type(first):
            return None
        else:
            several = True
    if first is None:
        return None
    known = _BY_TYPE.get(type(first))
    if known is None:
        if not _is_array(first):
            return None
        ns = array_api_compat.array_namespace(first)
        known = _BY_TYPE[type(first)] = (ns, bool(array_api_compat.is_numpy_namespace(ns)))
    ns, single_device = known
    return ns if single_device or not several else None


def _device_key(dev: Any) -> str:
    # JAX devices and shardings compare by identity; their repr is stable and exact.
    return repr(dev)


def accelerator(x: Array, /) -> bool:
    """Whether `x` lives on an accelerator, the device kind the choice rules ask about.

    An accelerator is a CUDA/ROCm (or other non-CPU) torch device, a JAX GPU or
    TPU, or a CuPy array; there the rules pick few, large, batched tiles (issue 21).

    torch's ``meta`` device is not one: it runs no kernels, only shapes and dtypes,
    so a meta call takes the CPU's plan (and shows which plan the CPU would run).
    A JAX tracer carries no device; the default backend's platform stands in.
    """
    dev = device(x)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dev, torch.device):
        return dev.type not in ("cpu", "meta")
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.core.Tracer) and dev is None:
        return bool(jax.default_backend() != "cpu")
    platform = getattr(dev, "platform", None)  # a JAX device: "cpu", "gpu", "tpu"
    if platform is not None:
        return bool(platform != "cpu")
    return library_name(x) == "cupy"


def is_jax(xp: Namespace) -> bool:
    """Whether `xp` is JAX's namespace (used only to choose between equal algorithms)."""
    return bool(array_api_compat.is_jax_namespace(xp))


def is_traced(*arrays: Any) -> bool:
    """Whether this call is being traced into a program rather than run.

    ``torch.compile`` (dynamo) and ``jax.jit``/``jax.grad`` trace: a Python loop
    over heads or tiles is then unrolled into the program the compiler sees, so
    the choice rules pick plans that stay small there (batched tiles, a compiled
    loop) and leave the tiling to the compiler. Nothing is ever timed while tracing.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.compiler.is_compiling():
        return True
    jax = sys.modules.get("jax")
    return jax is not None and any(isinstance(a, jax.core.Tracer) for a in arrays)


def split_batch(x: Array, /) -> bool:
    """Whether `x` is stored in several blocks along its first (batch) axis.

    A chunked lazy array (Dask) computes block by block, each where it lives; a
    product that mixes samples would gather the blocks into one and lose that.
    Equations keep to per-sample work there even where mixing is faster in memory.
    """
    chunks = getattr(x, "chunks", None)  # Dask's block sizes per axis; no other library has it
    return chunks is not None and len(chunks[0]) > 1


def is_torch(xp: Namespace) -> bool:
    """Whether `xp` is PyTorch's namespace (for the autodiff seam).

    By name: array-api-compat's ``is_torch_namespace`` is cached, which dynamo warns about.
    """
    return getattr(xp, "__name__", None) == "array_api_compat.torch"


def compute_dtype(xp: Namespace, dtype: Any) -> Any:
    """The dtype to compute in for an output of `dtype`: half precision runs in float32."""
    if dtype == xp.float32 or dtype == xp.float64:  # the common case, without a finfo
        return dtype
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def float_dtypes(xp: Namespace, *arrays: Any, **named: Any) -> tuple[Any, Any]:
    """Apply the floating dtype policy to the inputs of one equation.

    Args:
        xp: The namespace of the arrays.
        *arrays: Inputs whose dtypes decide the result dtype (``None`` is skipped).
        **named: The same, named for error messages.

    Returns:
        ``(out_dtype, compute_dtype)``: the dtype the result is returned in (the
        inputs' floating result type, or the namespace's default floating dtype
        when every input is integer or boolean), and the dtype to compute in
        (float32 for float16/bfloat16 outputs, else the same).

    Raises:
        TypeError: An input has a complex dtype.
    """
    values = (*arrays, *named.values()) if named else arrays
    common = _common_dtype(values)
    # The fast path (per-call overhead, issue 19): every input of one floating dtype.
    if common is not None and (common == xp.float32 or common == xp.float64):
        return common, common
    if common is not None and xp.isdtype(common, "real floating"):
        return common, compute_dtype(xp, common)
    items = [(f"argument {i}", a) for i, a in enumerate(arrays)] + list(named.items())
    floating = []
    for name, a in items:
        if a is None or not _is_array(a):
            continue
        if xp.isdtype(a.dtype, "complex floating"):
            raise TypeError(f"`{name}` must be a real array, got dtype {a.dtype}")
        if xp.isdtype(a.dtype, "real floating"):
            floating.append(a.dtype)
    if floating:
        out = xp.result_type(*floating)
    else:
        dev = next((device(a) for _, a in items if a is not None and _is_array(a)), None)
        out = xp.__array_namespace_info__().default_dtypes(device=dev)["real floating"]
    return out, compute_dtype(xp, out)


def _common_dtype(values: tuple[Any, ...]) -> Any:
    """The dtype shared by every array among `values`; None if they differ or none is one."""
    common = None
    for a in values:
        if a is None or isinstance(a, int | float | complex):
            continue
        dtype = getattr(a, "dtype", None)
        if dtype is None:
            return None
        if common is None:
            common = dtype
        elif dtype != common:
            return None
    return common


def as_array(x: Any, xp: Namespace) -> Array:
    """`x` as an array of `xp`: NumPy's reductions to 0-d give NumPy scalars, made 0-d arrays.

    Anything else comes back as it is, without an operation (issue 19: a round trip
    through 1-d cost two operations on every 0-d result of every library).
    """
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(x, numpy.generic):
        return xp.asarray(x)
    return x


def scalar(value: float, like: Array, /, *, xp: Namespace | None = None) -> Array:
    """A 0-d array holding `value` with the dtype and device of `like`.

    A NumPy scalar such as ``np.float64(0.5)`` would silently turn a float32
    computation into float64, and a host constant would drag a GPU computation
    back to the CPU; a constant made here does neither.
    """
    if xp is None:
        xp = namespace(like)
    # `full`, not `asarray`: array-api-compat's asarray inspects its argument at length.
    return xp.full((), value, dtype=like.dtype, device=device(like))


def default_namespace(xp: Any = None) -> Namespace:
    """The namespace for functions that make arrays from nothing (schedules, grids).

    Such a function has no input array to infer a library from, so it takes
    ``xp=`` (a library module such as ``torch`` or ``jax.numpy``, or a namespace)
    and falls back to NumPy's namespace, the embedded default, when it is ``None``.
    """
    if xp is None:
        import array_api_compat.numpy as numpy_namespace

        return numpy_namespace
    return _resolve(xp)


def exp2(x: Array, xp: Namespace) -> Array:
    """``2**x`` elementwise: the library's own ``exp2``, else ``exp(x · ln 2)``.

    ``exp2`` is not in the standard (an open RFC, data-apis/array-api#591), but
    NumPy, PyTorch, JAX, CuPy and Dask have it, and it is the cheaper function:
    on this project's CPU (float32, 2 threads) ``torch.exp2`` ran at 5.8 G
    elements/s against 2.0 for ``torch.exp``, and NumPy's at 3.1 against 2.2,
    both within 2 ulp. A softmax in base 2 (attention's) spends most of its
    elementwise time here. array-api-strict has no ``exp2`` and gets the formula.
    """
    native = getattr(xp, "exp2", None)
    if native is not None:
        return native(x)
    return xp.exp(x * math.log(2.0))


# --8<-- [start:general_eig]
def general_eig(a: Array, xp: Namespace) -> tuple[Array, Array]:
    """``(eigenvalues, eigenvectors)`` of a general square `a` by `xp`'s own solver.

    The standard has no non-symmetric eigen-solver, and none can be written in
    it, so this is the one place that uses a library's own: ``linalg.eig`` of
    NumPy, PyTorch, JAX (CPU) and array-api-strict, all returning complex
    results. A library without one gets a ``NotImplementedError`` naming it.
    """
    solver = getattr(getattr(xp, "linalg", None), "eig", None)
    if solver is None:
        library = getattr(xp, "__name__", repr(xp)).removeprefix("array_api_compat.")
        raise NotImplementedError(
            f"eig: the {library} backend has no general eigen-solver (linalg.eig); "
            "use eigh for symmetric matrices, or convert `a` to NumPy, PyTorch or JAX"
        )
    values, vectors = solver(a)
    return values, vectors


# --8<-- [end:general_eig]


def cholesky(a: Array, xp: Namespace) -> Array:
    """The lower Cholesky factor ``L`` of a symmetric positive-definite `a` (``a = L Lᵀ``).

    The standard's ``linalg.cholesky`` returns the lower factor, and so do NumPy,
    PyTorch, JAX, CuPy and array-api-strict. Dask's ``linalg.cholesky`` defaults
    to the *upper* one, array-api-compat's wrapper passes that through, and Dask
    also insists on square chunks: both gaps are closed here, lazily.
    """
    # By name: array-api-compat's is_dask_namespace is cached, which dynamo warns about.
    if getattr(xp, "__name__", None) in ("dask.array", "array_api_compat.dask.array"):
        import dask.array as da

        return da.linalg.cholesky(a.rechunk(a.shape[-1]), lower=True)  # type: ignore[no-untyped-call]
    return xp.linalg.cholesky(a)


def scan(
    body: Callable[[Any, tuple[Array, ...]], tuple[Any, tuple[Array, ...]]],
    carry: Any,
    xs: tuple[Array, ...],
    xp: Namespace,
) -> tuple[Any, tuple[Array, ...]]:
    """``carry, y = body(carry, x)`` for each `x` along the first axis of `xs`; the ys stacked.

    The standard has no loop construct. Python's loop is right everywhere but under
    JAX, where tracing unrolls it, and XLA's CPU scheduler then runs the unrolled
    blocks side by side, with every block's temporaries alive at once (2.8 GB for
    attention's backward pass at L = 16384). ``jax.lax.scan`` traces `body` once
    and runs the blocks one after another in the memory of one. `carry` is a
    (nested) tuple of arrays or None whose shapes `body` keeps.
    """
    if is_jax(xp):
        import jax

        out: tuple[Any, tuple[Array, ...]] = jax.lax.scan(body, carry, xs)
        return out
    ys = []
    for i in range(xs[0].shape[0]):
        carry, y = body(carry, tuple(x[i, ...] for x in xs))
        ys.append(y)
    return carry, tuple(xp.stack(parts) for parts in zip(*ys, strict=True))


def repeat(steps: int, body: Callable[[Any], Any], init: Any, xp: Namespace) -> Any:
    """Apply ``carry = body(carry)`` `steps` times (a static count) and return the carry.

    The standard has no loop construct. A Python loop is right everywhere but
    under JAX, where tracing unrolls it: compile time then grows with the step
    count (1000 gradient steps take minutes to compile). ``jax.lax.fori_loop``
    traces `body` once instead. The carry is a (nested) tuple of arrays whose
    shapes and dtypes `body` keeps; `body` must be traceable on JAX.
    """
    if is_jax(xp):
        import jax

        return jax.lax.fori_loop(0, steps, lambda _, carry: body(carry), init)
    for _ in range(steps):
        init = body(init)
    return init
