"""The cross-backend test matrix.

Every test that asks for ``backend`` runs once per entry of the backend table
(``mlequations._backends.BACKENDS``); a test that also asks for ``dtype`` runs
once per (backend, floating dtype) pair the backend supports — float64 is not
generated for ``strict-no-float64``. ``half_dtype`` gives (backend, float16 /
bfloat16) pairs to the tests that opt in. A test that parametrizes ``backend``
itself (rows that apply to some backends only, as the bad-input table) lists its
pairs with ``indirect=["backend"]`` and is left alone here.

A backend whose library is missing is skipped with its reason, GPU backends
with "no GPU". Set ``MLEQUATIONS_REQUIRE=torch,jax,...`` (as ``.ci/run`` does)
to turn a missing library into a failure: CI must never pass by skipping.

The GPU cases of a machine without one are counted in one line of ``pytest -ra``'s
summary, instead of one line per test and backend (``mlequations info`` gives each
backend's reason).

Markers: ``@pytest.mark.skip_xp_backend("dask", reason=...)`` and
``@pytest.mark.xfail_xp_backend("jax-jit", reason=...)`` take a backend id or a
library name and record a documented exception.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from mlequations._backends import BACKENDS, Backend

_REQUIRED = {lib for lib in os.environ.get("MLEQUATIONS_REQUIRE", "").split(",") if lib}


def _parametrized_names(metafunc: pytest.Metafunc) -> set[str]:
    """Argument names the test parametrizes itself (``@pytest.mark.parametrize``)."""
    names: set[str] = set()
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0]
        if isinstance(argnames, str):
            argnames = [name.strip() for name in argnames.split(",")]
        names.update(argnames)
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if "backend" not in names:
        return
    if "backend" in _parametrized_names(metafunc):
        # The test lists its own (backend, ...) rows, with ``indirect=["backend"]`` so
        # that the fixture below still skips missing libraries and honours the markers.
        return
    if "dtype" in names:
        pairs = [(b, d) for b in BACKENDS for d in b.dtypes()]
        metafunc.parametrize(
            ("backend", "dtype"), pairs, indirect=["backend"], ids=[f"{b.id}-{d}" for b, d in pairs]
        )
    elif "half_dtype" in names:
        pairs = [(b, d) for b in BACKENDS for d in b.half]
        metafunc.parametrize(
            ("backend", "half_dtype"),
            pairs,
            indirect=["backend"],
            ids=[f"{b.id}-{d}" for b, d in pairs],
        )
    else:
        metafunc.parametrize("backend", BACKENDS, indirect=True, ids=[b.id for b in BACKENDS])


_NO_GPU = "no GPU"
_GPU_IDS = ", ".join(b.id for b in BACKENDS if b.gpu)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Give every "no GPU" skip one location and reason, so ``-ra`` folds them into one line."""
    report = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        message = str(longrepr[2])
        if message.removeprefix("Skipped: ").startswith(_NO_GPU):
            report.longrepr = (
                __file__,
                None,
                f"Skipped: {_NO_GPU} on this machine: the {_GPU_IDS} cases "
                "(`mlequations info` gives each backend's reason)",
            )
    return report


def _matches(marker: pytest.Mark, backend: Backend) -> bool:
    return marker.args[0] in (backend.id, backend.library)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend under test (see ``mlequations._backends.Backend``)."""
    b: Backend = request.param
    reason = b.skip_reason()
    if reason is not None:
        if b.library in _REQUIRED and not b.gpu:
            pytest.fail(f"{b.id} is required by MLEQUATIONS_REQUIRE but {reason}")
        pytest.skip(reason)
    for marker in request.node.iter_markers("skip_xp_backend"):
        if _matches(marker, b):
            pytest.skip(marker.kwargs["reason"])
    for marker in request.node.iter_markers("xfail_xp_backend"):
        if _matches(marker, b):
            request.applymarker(pytest.mark.xfail(reason=marker.kwargs["reason"], strict=True))
    return b
