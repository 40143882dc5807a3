"""Every registered equation on every backend, as ``mlequations check`` runs it."""

from __future__ import annotations

import numpy as np
import pytest

from mlequations._backends import by_id
from mlequations._registry import Equation, equations, run_check

EQUATIONS = equations()


@pytest.mark.parametrize("equation", EQUATIONS, ids=[e.name for e in EQUATIONS])
def test_equation_matches_its_reference(equation, backend, dtype):
    if not backend.values:
        pytest.skip("torch-meta holds no values; device propagation is tested per chapter")
    result = run_check(equation, backend, dtype)
    assert result.ok, result.message


def test_names_are_unique_and_public():
    import mlequations

    names = [e.name for e in EQUATIONS]
    assert len(names) == len(set(names))
    for name in names:
        assert name.split("(")[0] in mlequations.__all__, name


def test_numpy_readonly_hands_read_only_inputs_and_catches_a_write():
    backend = by_id("numpy-readonly")
    assert not backend.asarray(np.ones(3), "float64").flags.writeable

    def writes_its_input(x):
        x[0] = 0.0  # the mistake this column exists to catch
        return x

    eq = Equation("writes", writes_its_input, lambda rng: (rng.normal(size=3),), lambda x: x)
    result = run_check(eq, backend, "float64")
    assert not result.ok
    assert "read-only" in result.message
