"""The backend table shared by the tests, the benchmarks and the command line.

The equations themselves never look at this module: they see only the array
API namespace of their inputs (see ``_xp.py``). This table is the other side of
that contract — how a *caller* makes arrays on each library and device, runs a
function there (eagerly, or under ``jax.jit``), reads the result back, and waits
for a device to finish. It is the one place outside ``_xp.py`` that names
libraries, so adding a backend to every test, benchmark and ``mlequations
check`` at once is one entry in :data:`BACKENDS`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BACKENDS", "FLOAT_DTYPES", "HALF_DTYPES", "Backend", "LazyComputeError", "by_id"]

FLOAT_DTYPES = ("float32", "float64")
HALF_DTYPES = ("float16", "bfloat16")


class LazyComputeError(AssertionError):
    """A function that must stay lazy on Dask triggered a computation."""


@functools.cache
def _configure(library: str) -> Any:
    """Import `library` once, with the settings under which results are comparable."""
    module = importlib.import_module(library)
    if library == "jax":
        # float64 on request (JAX defaults to float32 only), and full-precision
        # matmuls so that float32 results are comparable across backends.
        module.config.update("jax_enable_x64", True)
        module.config.update("jax_default_matmul_precision", "highest")
    if library == "torch":
        module.backends.cuda.matmul.allow_tf32 = False
        module.backends.cudnn.allow_tf32 = False
    return module


@dataclass(frozen=True)
class Backend:
    """One library on one device, in one mode.

    Attributes:
        id: Readable test id, e.g. ``"numpy"``, ``"strict-device1"``, ``"jax-jit"``.
        library: Importable module that makes the arrays.
        device_name: The library's name for the device (``None``: its default).
        jit: Run functions under ``jax.jit``.
        readonly: Inputs are read-only NumPy arrays (catches in-place writes).
        strictest: array-api-strict with boolean indexing and data-dependent
            shapes switched off (what ``jax.jit`` and lazy backends forbid).
        values: Results can be read back (``False`` on torch's ``meta`` device,
            which carries shapes, dtypes and devices but no numbers).
        gpu: Needs a GPU.
        half: Half-precision dtypes the backend has.
        float64: Whether the device has float64.
        about: One line for the legends of ``mlequations check`` and ``info``:
            what the column proves beyond the library's name.
    """

    id: str
    library: str
    device_name: str | None = None
    jit: bool = False
    readonly: bool = False
    strictest: bool = False
    values: bool = True
    gpu: bool = False
    half: tuple[str, ...] = ()
    float64: bool = True
    about: str = ""

    # -- availability -------------------------------------------------------------
    def skip_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None`` when it can."""
        try:
            module = _configure(self.library)
        except ImportError as exc:
            if self.gpu:
                return f"no GPU ({self.library} not installed: {exc})"
            return f"{self.library} not installed ({exc})"
        if (
            self.library == "torch"
            and self.device_name == "cuda"
            and not module.cuda.is_available()
        ):
            return "no GPU (torch.cuda.is_available() is False)"
        if self.library == "jax" and self.gpu:
            try:
                module.devices("gpu")
            except RuntimeError:
                return "no GPU (jax has no gpu backend)"
        if self.library == "cupy":
            try:
                count = module.cuda.runtime.getDeviceCount()
            except Exception as exc:  # CUDA runtime errors have no common base
                return f"no GPU ({exc})"
            if count == 0:
                return "no GPU"
        return None

    @property
    def installed(self) -> bool:
        """Whether the library imports (GPU or not)."""
        try:
            _configure(self.library)
        except ImportError:
            return False
        return True

    # -- the library and device ---------------------------------------------------
    @property
    def module(self) -> Any:
        """The library module (``numpy``, ``torch``, ``jax.numpy``, ...)."""
        module = _configure(self.library)
        if self.library == "jax":
            return importlib.import_module("jax.numpy")
        if self.library == "dask":
            return importlib.import_module("dask.array")
        return module

    @property
    def xp(self) -> Any:
        """The array API namespace that results must belong to."""
        import array_api_compat

        return array_api_compat.array_namespace(self.asarray(np.zeros(1), "float32"))

    @property
    def device(self) -> Any:
        """The device object arrays are made on."""
        module = _configure(self.library)
        if self.library == "array_api_strict":
            return module.Device(self.device_name or "CPU_DEVICE")
        if self.library == "torch":
            return module.device(self.device_name or "cpu")
        if self.library == "jax":
            return module.devices("gpu" if self.gpu else "cpu")[0]
        return None  # NumPy and Dask arrays live in host memory; CuPy on the current GPU

    def dtypes(self, *, half: bool = False) -> tuple[str, ...]:
        """Floating dtypes this backend runs (half precision on request)."""
        full = FLOAT_DTYPES if self.float64 else ("float32",)
        return full + (self.half if half else ())

    def dtype(self, name: str) -> Any:
        """The library's dtype object called `name`."""
        if self.library in ("numpy", "dask"):
            return np.dtype(name)
        return getattr(self.module, name)

    # -- moving data in and out ---------------------------------------------------
    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        """Put NumPy data `a` on this backend; floats become `dtype` when given.

        Integer and boolean data keep their kind (class labels, masks).
        """
        a = np.asarray(a)
        floating = np.issubdtype(a.dtype, np.floating)
        target = dtype if (floating and dtype is not None) else None
        lib = self.library
        if lib == "numpy":
            out = a.astype(target) if target else a.copy()
            if self.readonly:
                out.setflags(write=False)
            return out
        module = self.module
        if lib == "torch":
            t = module.asarray(a.copy())
            if target:
                t = t.to(self.dtype(target))
            return t.to(self.device)
        if lib == "jax":
            import jax

            # Cast on the host: an eager `astype` would compile one XLA conversion per
            # shape, which is most of what eager JAX spends outside the equations.
            return jax.device_put(a.astype(target) if target else a, self.device)
        if lib == "array_api_strict":
            return module.asarray(
                a, dtype=self.dtype(target) if target else None, device=self.device
            )
        if lib == "dask":
            host = a.astype(target) if target else a
            # Two chunks along the first axis, so that reductions really combine chunks.
            chunks = tuple(max(1, (n + 1) // 2) if i == 0 else -1 for i, n in enumerate(a.shape))
            return module.from_array(host, chunks=chunks or -1)
        if lib == "cupy":
            return module.asarray(a.astype(target) if target else a)
        raise AssertionError(f"unknown library {lib}")

    def to_numpy(self, x: Any) -> Any:
        """Read a result back as NumPy (floats as float64); tuples element-wise."""
        if isinstance(x, tuple | list):
            items = [self.to_numpy(v) for v in x]
            return type(x)(*items) if hasattr(x, "_fields") else type(x)(items)
        if isinstance(x, int | float | bool):
            return np.asarray(x)
        lib = self.library
        if lib == "torch":
            x = x.detach()
            if x.dtype.is_floating_point:
                x = x.double()
            out = x.cpu().numpy()
        elif lib == "array_api_strict":
            module = self.module
            out = np.asarray(module.asarray(x, copy=True).to_device(module.Device())._array)
        elif lib == "dask":
            # One thread: the check's arrays hold a few dozen numbers, and the threaded
            # scheduler's hand-offs cost more than the arithmetic (a third of the time).
            out = np.asarray(x.compute(scheduler="synchronous"))
        elif lib == "cupy":
            out = x.get()
        else:
            out = np.asarray(x)
        return out.astype(np.float64) if np.issubdtype(out.dtype, np.floating) else out

    def device_of(self, x: Any) -> Any:
        """The device of a result, in the form of :attr:`device`."""
        from array_api_compat import device

        dev = device(x)
        if self.library == "jax" and not isinstance(dev, type(self.device)):
            # A committed single-device jax.Array reports a sharding-free Device;
            # older versions report a set of devices.
            devices = x.devices()
            return next(iter(devices)) if len(devices) == 1 else devices
        return dev if self.library in ("torch", "array_api_strict", "jax") else None

    # -- running ------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], /, *args: Any, lazy: bool = True, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` the way this backend's users would.

        On ``jax-jit`` the array arguments are traced and everything else is
        static. On Dask, with ``lazy=True``, the call fails if `fn` computes
        anything. On the strictest array-api-strict mode, the flags that JAX and
        lazy backends impose are switched on around the call.
        """
        if self.jit:
            import jax

            traced = [i for i, a in enumerate(args) if hasattr(a, "shape")]

            def partial(*arrays: Any) -> Any:
                full = list(args)
                for i, a in zip(traced, arrays, strict=True):
                    full[i] = a
                return fn(*full, **kwargs)

            return jax.jit(partial)(*(args[i] for i in traced))
        with self._context(lazy=lazy):
            return fn(*args, **kwargs)

    @contextlib.contextmanager
    def _context(self, *, lazy: bool) -> Iterator[None]:
        if self.strictest:
            import array_api_strict

            with array_api_strict.ArrayAPIStrictFlags(
                boolean_indexing=False, data_dependent_shapes=False
            ):
                yield
        elif self.library == "dask" and lazy:
            import dask

            computes = []

            def forbidden(dsk: Any, keys: Any, **kwargs: Any) -> Any:
                computes.append(keys)
                return dask.get(dsk, keys, **kwargs)  # type: ignore[attr-defined]

            with dask.config.set(scheduler=forbidden):
                yield
            if computes:
                raise LazyComputeError(
                    f"{len(computes)} dask computation(s) ran inside a function that must stay lazy"
                )
        else:
            yield

    def sync(self, x: Any) -> Any:
        """Wait until `x` is computed (GPU kernels and JAX dispatch are asynchronous)."""
        if self.library == "jax":  # any pytree: a training step returns a tuple of gradients
            return _configure("jax").block_until_ready(x)
        if self.library == "torch" and self.device_name == "cuda":
            _configure("torch").cuda.synchronize()
        if self.library == "cupy":
            _configure("cupy").cuda.get_current_stream().synchronize()
        return x


BACKENDS: tuple[Backend, ...] = (
    Backend("numpy", "numpy", half=("float16",), about="NumPy, the embedded default"),
    Backend(
        "numpy-readonly",
        "numpy",
        readonly=True,
        about="NumPy with read-only inputs: fails if an equation writes into its input",
    ),
    Backend("strict", "array_api_strict", about="array-api-strict: the standard and nothing else"),
    Backend(
        "strict-device1",
        "array_api_strict",
        "device1",
        about="array-api-strict on a second device: fails on any array made on the default one",
    ),
    Backend(
        "strict-no-float64",
        "array_api_strict",
        "no_float64",
        float64=False,
        about="array-api-strict on a device without float64 (float32 only)",
    ),
    Backend(
        "strict-strictest",
        "array_api_strict",
        strictest=True,
        about="array-api-strict without boolean indexing or data-dependent shapes",
    ),
    Backend("torch-cpu", "torch", "cpu", half=("float16", "bfloat16"), about="PyTorch on the CPU"),
    Backend(
        "torch-meta",
        "torch",
        "meta",
        values=False,
        about="PyTorch's meta device: shapes and dtypes, no values, so no check column "
        "(device propagation is tested per chapter in backends_tests)",
    ),
    Backend(
        "torch-cuda",
        "torch",
        "cuda",
        gpu=True,
        half=("float16", "bfloat16"),
        about="PyTorch on a CUDA GPU",
    ),
    Backend("jax", "jax", half=("float16", "bfloat16"), about="JAX eager, operation by operation"),
    Backend(
        "jax-jit",
        "jax",
        jit=True,
        half=("float16", "bfloat16"),
        about="JAX, each call traced and compiled by jax.jit",
    ),
    Backend(
        "jax-gpu",
        "jax",
        jit=True,
        gpu=True,
        half=("float16", "bfloat16"),
        about="JAX under jax.jit on a GPU",
    ),
    Backend("cupy", "cupy", gpu=True, half=("float16",), about="CuPy on a CUDA GPU"),
    Backend("dask", "dask", about="Dask arrays in two chunks: fails if a lazy equation computes"),
)
"""Every backend the project knows, in the order tables list them."""


def by_id(backend_id: str) -> Backend:
    """Look a backend up by its id."""
    for backend in BACKENDS:
        if backend.id == backend_id:
            return backend
    known = ", ".join(b.id for b in BACKENDS)
    raise ValueError(f"unknown backend {backend_id!r}; known: {known}")
