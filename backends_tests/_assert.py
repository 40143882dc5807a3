"""One assertion for every test: same library, device, dtype and shape, and close values."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from mlequations._backends import Backend
from mlequations._registry import tolerance


def assert_close(
    actual: Any,
    expected: Any,
    backend: Backend,
    dtype: str,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Assert that `actual` is `backend`'s array of `dtype`, close to float64 `expected`.

    Checks, in order: the namespace is the backend's (no silent NumPy), the device
    is the backend's (no silent host copy), the dtype is `dtype` (no silent
    float64), the shape, and — where the backend holds values (not torch's meta
    device) — the values, with tolerances keyed by dtype unless given. ``±inf``
    must match exactly and NaN must stand where NaN is expected.
    """
    expected = np.asarray(expected, dtype=np.float64)
    xp = array_api_compat.array_namespace(actual)
    assert xp is backend.xp, f"namespace {xp.__name__}, expected {backend.xp.__name__}"
    if backend.device is not None:
        assert backend.device_of(actual) == backend.device, (
            f"device {backend.device_of(actual)}, expected {backend.device}"
        )
    assert actual.dtype == backend.dtype(dtype), f"dtype {actual.dtype}, expected {dtype}"
    assert tuple(actual.shape) == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if not backend.values:
        return
    default_rtol, default_atol = tolerance(dtype)
    np.testing.assert_allclose(
        backend.to_numpy(actual),
        expected,
        rtol=default_rtol if rtol is None else rtol,
        atol=default_atol if atol is None else atol,
        equal_nan=True,
    )
