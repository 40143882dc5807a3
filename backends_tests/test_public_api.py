"""The public surface: sorted ``__all__``, the math and an example in every docstring."""

from __future__ import annotations

import inspect

import pytest

import mlequations
from mlequations._registry import equations

PUBLIC = [n for n in mlequations.__all__ if n != "__version__"]


def test_all_is_sorted():
    assert mlequations.__all__ == sorted(mlequations.__all__)


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_has_math_and_an_example(name):
    doc = inspect.getdoc(getattr(mlequations, name)) or ""
    assert "$$" in doc or "$" in doc, f"{name}: no math in the docstring"
    assert ">>>" in doc, f"{name}: no example in the docstring"


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_function_is_registered(name):
    registered = {e.name.split("(")[0] for e in equations()}
    obj = getattr(mlequations, name)
    if getattr(obj, "__mle_unregistered__", False):
        pytest.skip(f"{name} times plans and computes no equation (tested in test_tune.py)")
    if inspect.isclass(obj):
        pytest.skip(f"{name} is exercised through its methods' registry entries")
    assert name in registered, f"{name} is not registered with `mlequations check`"
