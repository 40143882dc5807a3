"""The fuzzing toolkit shared by the ``test_fuzz*.py`` modules.

A fixed, derandomized hypothesis profile (CI sees the same examples every run), value
pools of extremes (huge, tiny, denormal, ±inf, NaN, exact zeros), shape and
distribution strategies, and ``run`` / ``expect``: call a function on a backend the
way its users would and compare it, per output, with a float64 NumPy reference
rounded to the dtype. The module docstring of ``test_fuzz.py`` says what is checked.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlequations._registry import tolerance

from ._assert import assert_close

settings.register_profile(
    "mlequations-fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
PROFILE = settings.get_profile("mlequations-fuzz")

# A result beyond the dtype's range is +-inf, as IEEE 754 says, and NumPy warns about it
# (on Dask only when the result is computed, after the call): not a finding. Each fuzz
# module sets ``pytestmark = OVERFLOW_IS_NOT_A_FINDING``.
OVERFLOW_IS_NOT_A_FINDING = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


# Examples per (test, backend): NumPy is cheap and sees the most; every jitted
# example compiles, so jax-jit sees the fewest.
EXAMPLES = {"numpy": 15, "jax-jit": 3, "jax": 3, "torch-meta": 3, "dask": 3}
DEFAULT_EXAMPLES = 5


# -- values -------------------------------------------------------------------------------

HUGE = [1e4, -1e4, 6e4, 1e30, -1e30, 1e300]
TINY = [1e-30, -1e-30, 1e-300, 5e-324, 1e-310, 1e-40, 1e-45, 6e-8, 1e-5]  # denormals too
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5]
NONFINITE = [math.inf, -math.inf, math.nan]


def reals(*, nonfinite: bool = True, extreme: bool = True, low=-20.0, high=20.0):
    """Floats: mostly moderate, with exact zeros, tiny, huge and (optionally) ±inf/NaN."""
    pool = SPECIAL + (TINY + HUGE if extreme else [])
    options = [st.floats(low, high), st.sampled_from(pool)]
    if nonfinite:
        options.append(st.sampled_from(NONFINITE))
    return st.one_of(*options)


def nonnegative(*, extreme: bool = True):
    """Non-negative floats with exact zeros, tiny and (optionally) huge values."""
    pool = [0.0, 0.0, 1.0] + ([1e-30, 1e-300, 5e-324, 1e-40, 1e30] if extreme else [])
    return st.one_of(st.floats(0.0, 10.0), st.sampled_from(pool))


@st.composite
def arrays(draw, shape, elements):
    size = int(np.prod(shape, dtype=np.int64))
    values = draw(st.lists(elements, min_size=size, max_size=size))
    return np.asarray(values, dtype=np.float64).reshape(shape)


def shapes(min_dims=1, max_dims=3, min_side=0, max_side=4):
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(
        tuple
    )


@st.composite
def distributions(draw, shape, *, one_hot=True, extreme=True):
    """Distributions along the last axis: zeros, one-hot rows, tiny masses."""
    w = draw(arrays(shape, nonnegative(extreme=extreme)))
    if shape and shape[-1] > 0:
        flat = w.reshape(-1, shape[-1])
        if one_hot and flat.shape[0] and draw(st.booleans()):
            flat[0] = 0.0
            flat[0, draw(st.integers(0, shape[-1] - 1))] = 1.0
        flat[flat.sum(axis=-1) == 0, 0] = 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            w = flat / flat.sum(axis=-1, keepdims=True)
        w = w.reshape(shape)
    return w


# -- running a function on a backend ------------------------------------------------------


def examples_for(backend) -> int:
    return EXAMPLES.get(backend.id, DEFAULT_EXAMPLES)


def fuzz(backend, strategy, *, scale: float = 1.0):
    """Decorate a body ``f(drawn)``: run it on `backend` under the fixed profile."""

    def decorate(body):
        n = max(2, int(examples_for(backend) * scale))
        run = settings(PROFILE, max_examples=n)(given(strategy)(body))
        run()

    return decorate


def dtype_names(backend, *, half=True, integer=False) -> list[str]:
    names = list(backend.dtypes(half=half))
    if integer:
        names.append("int64")
    return names


def out_dtype_name(backend, dtype: str) -> str:
    """The floating dtype a result has for inputs of `dtype` (integers promote)."""
    if dtype.startswith("int"):
        xp = backend.xp
        default = xp.__array_namespace_info__().default_dtypes(device=backend.device)
        return "float64" if default["real floating"] == xp.float64 else "float32"
    return dtype


NP_DTYPES = {
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "float32": np.float32,
    "float64": np.float64,
}


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """`a` as it is on the backend in `dtype`, read back as float64."""
    if dtype.startswith("int"):
        return a.astype(np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return a.astype(NP_DTYPES[dtype]).astype(np.float64)


def as_int(a: np.ndarray, dtype: str = "int64") -> np.ndarray:
    """Integer data from drawn floats: NaN -> 0, everything clipped to [-100, 100]."""
    return np.rint(np.clip(np.nan_to_num(a), -100, 100)).astype(dtype)


def to_backend(backend, a: np.ndarray, dtype: str):
    """``(array on the backend, its values as float64 NumPy)``."""
    if dtype.startswith("int"):
        ints = as_int(a, dtype)
        return backend.asarray(ints), ints.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return backend.asarray(a, dtype), rounded(a, dtype)


def flat(x: Any) -> list[Any]:
    if isinstance(x, tuple | list):
        return [leaf for item in x for leaf in flat(item)]
    return [x]


def run(
    backend,
    fn: Callable[..., Any],
    *args: Any,
    lazy: bool = True,
    quiet: bool = False,
    **options: Any,
) -> Any:
    """Call `fn` on `backend`; on NumPy, fail if any input array changed.

    Floating-point warnings are errors (pyproject) except with ``quiet=True``, for
    inputs holding ±inf or NaN, where NumPy's warnings about them are expected.
    """
    before = [np.array(a, copy=True) for a in args if isinstance(a, np.ndarray)]
    with warnings.catch_warnings():
        # A result beyond the dtype's range is +-inf, as IEEE says; NumPy warns about it.
        warnings.filterwarnings("ignore", "overflow encountered", RuntimeWarning)
        if quiet:
            warnings.simplefilter("ignore", RuntimeWarning)
        out = backend.call(fn, *args, lazy=lazy or backend.library != "dask", **options)
    after = [a for a in args if isinstance(a, np.ndarray)]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b, err_msg="an input array was modified in place")
    return out


def expect(
    actual: Any,
    expected: Any,
    backend,
    dtype: str,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """`assert_close` per output, after rounding the float64 reference to `dtype`."""
    out_dtype = out_dtype_name(backend, dtype)
    default_rtol, default_atol = tolerance(out_dtype)
    for got, want in zip(flat(actual), flat(expected), strict=True):
        want = rounded(np.asarray(want, dtype=np.float64), out_dtype)
        assert_close(
            got,
            want,
            backend,
            out_dtype,
            rtol=default_rtol if rtol is None else rtol,
            atol=default_atol if atol is None else atol,
        )


def check_meta(actual: Any, backend, dtype: str, shapes_: list[tuple[int, ...]]) -> None:
    """Namespace, device, dtype and shape only (for inputs where values are not compared)."""
    out_dtype = out_dtype_name(backend, dtype)
    blind = dataclasses.replace(backend, values=False)
    for got, shape in zip(flat(actual), shapes_, strict=True):
        assert_close(got, np.zeros(shape), blind, out_dtype)


def values_of(backend, x: Any) -> np.ndarray | None:
    return backend.to_numpy(x) if backend.values else None


def finite(*arrays_: np.ndarray) -> bool:
    return all(np.isfinite(a).all() for a in arrays_)


def reference(fn, *args, **kwargs):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)
