"""The oracle libraries for tests that call torch or JAX directly (autograd, jax.grad)."""

from __future__ import annotations

from typing import Any

import pytest

from mlequations._backends import by_id


def torch_or_skip() -> Any:
    """``torch``, configured like the torch backends; skips only if it is not installed."""
    backend = by_id("torch-cpu")
    reason = backend.skip_reason()
    if reason:
        pytest.skip(reason)
    return backend.module


def jax_or_skip() -> Any:
    """``jax`` with float64 enabled; skips only if it is not installed."""
    backend = by_id("jax")
    reason = backend.skip_reason()
    if reason:
        pytest.skip(reason)
    import jax

    return jax
