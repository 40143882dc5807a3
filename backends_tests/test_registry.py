"""Every registered equation on every backend, as ``mlequations check`` runs it."""

from __future__ import annotations

import pytest

from mlequations._registry import equations, run_check

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
