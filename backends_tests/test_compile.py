"""Every registered equation under ``torch.compile(fullgraph=True)`` and ``jax.jit`` (issue 19).

Users who drop a function into torch code compile that code, and JAX users
always do. For each entry of the registry (the equations of ``mlequations
check``) this file checks that

* dynamo captures it in **one graph** (``fullgraph=True`` raises at a graph
  break) with no warning (pyproject's ``filterwarnings = error`` turns a warning
  printed during tracing, such as dynamo's notice about ``functools.lru_cache``,
  into a failure), with the floating inputs passed as ``torch.nn.Parameter`` as
  models pass their weights, and once more with plain tensors where
  ``requires_grad`` changes the path (the autodiff seam: attention);
* the compiled result equals the eager one, and a second call with new tensors
  of the same shapes runs the cached graph without recompiling;
* it traces under ``jax.jit`` (tracing only: the values under ``jax.jit`` are
  checked against the references by ``test_registry.py``'s ``jax-jit`` column);
* an entry marked ``no_compile`` / ``no_jit`` indeed fails to compile, so a mark
  cannot go stale.

Dynamo traces with ``backend="eager"`` (here a counting backend that returns the
captured graph unchanged): graph breaks and warnings show up without inductor's
code generation, which keeps the file fast.

``test_shape_changes`` measures what dynamo's dynamic shapes give users: a call
at a new batch size or sequence length recompiles once, with symbolic sizes,
and later sizes reuse that graph (see ``docs/content/portability.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mlequations._backends import by_id
from mlequations._registry import Equation, equations

EQUATIONS = equations()
IDS = [e.name for e in EQUATIONS]
# requires_grad changes the path of the functions registered through the autodiff
# seam (a torch.autograd.Function only when a gradient is wanted): both are compiled.
PLAIN_TOO = [e for e in EQUATIONS if e.name.startswith(("attention", "multi_head_attention"))]


def _flatten(x: Any) -> list[Any]:
    if isinstance(x, tuple | list):
        return [leaf for item in x for leaf in _flatten(item)]
    return [x]


class _Counting:
    """A dynamo backend that runs the captured graph as it is and counts the captures."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: Any, example_inputs: Any) -> Any:
        self.graphs += 1
        return gm.forward


def _torch_inputs(eq: Equation, *, parameters: bool, seed: int = 0) -> list[Any]:
    torch = pytest.importorskip("torch")
    backend = by_id("torch-cpu")
    out = []
    for a in eq.make_inputs(np.random.default_rng(seed)):
        if not hasattr(a, "shape"):
            out.append(a)
            continue
        t = backend.asarray(a, "float32")
        if parameters and t.is_floating_point():
            t = torch.nn.Parameter(t)
        out.append(t)
    return out


def _compiled(eq: Equation) -> tuple[Any, _Counting]:
    torch = pytest.importorskip("torch")

    # A silent fallback to eager would hide every failure this file looks for.
    assert not torch._dynamo.config.suppress_errors
    torch._dynamo.reset()  # each test counts its own captures
    counting = _Counting()

    def call(*args: Any) -> Any:
        return eq.func(*args, **eq.options)

    return torch.compile(call, fullgraph=True, backend=counting), counting


def _as_numpy(out: Any) -> list[np.ndarray]:
    # float64 for the comparison; eig's complex results and integer labels as they are
    return [
        leaf.detach().double().numpy() if leaf.is_floating_point() else leaf.detach().numpy()
        for leaf in _flatten(out)
    ]


def _check_torch(eq: Equation, *, parameters: bool) -> None:
    if not eq.compiles:
        pytest.fail(f"{eq.name} is marked no_compile; test_marked_entries_do_not_compile")
    fn, counting = _compiled(eq)
    args = _torch_inputs(eq, parameters=parameters)
    got = fn(*args)
    again = fn(*_torch_inputs(eq, parameters=parameters))  # new tensors, same shapes
    assert counting.graphs == 1, f"{counting.graphs} graphs for two calls of the same shapes"
    expected = eq.func(*args, **eq.options)
    for out in (got, again):
        leaves, want = _flatten(out), _flatten(expected)
        assert len(leaves) == len(want)
        for g, e in zip(leaves, want, strict=True):
            if hasattr(e, "dtype"):
                assert (type(g), g.dtype, g.shape) == (type(e), e.dtype, e.shape)
        actual, reference = _as_numpy(out), _as_numpy(expected)
        if eq.compare is not None:
            actual, reference = _flatten(eq.compare(actual)), _flatten(eq.compare(reference))
        for g, e in zip(actual, reference, strict=True):
            np.testing.assert_allclose(g, e, rtol=eq.rtol32, atol=1e-5)


@pytest.mark.parametrize("eq", [e for e in EQUATIONS if e.compiles], ids=lambda e: e.name)
def test_torch_compile_with_parameters(eq):
    _check_torch(eq, parameters=True)


@pytest.mark.parametrize("eq", [e for e in PLAIN_TOO if e.compiles], ids=lambda e: e.name)
def test_torch_compile_with_plain_tensors(eq):
    _check_torch(eq, parameters=False)


def _jax_trace(eq: Equation) -> Any:
    pytest.importorskip("jax")
    import jax

    backend = by_id("jax")
    args = [
        backend.asarray(a, "float32") if hasattr(a, "shape") else a
        for a in eq.make_inputs(np.random.default_rng(0))
    ]
    traced = [i for i, a in enumerate(args) if hasattr(a, "shape")]

    def call(*arrays: Any) -> Any:
        full = list(args)
        for i, a in zip(traced, arrays, strict=True):
            full[i] = a
        return eq.func(*full, **eq.options)

    return jax.jit(call).trace(*(args[i] for i in traced))


@pytest.mark.parametrize("eq", [e for e in EQUATIONS if e.jit], ids=lambda e: e.name)
def test_jax_jit_traces(eq):
    traced = _jax_trace(eq)
    assert traced.jaxpr is not None


MARKED = [e for e in EQUATIONS if not (e.compiles and e.jit)]


@pytest.mark.parametrize("eq", MARKED, ids=lambda e: e.name)
def test_marked_entries_do_not_compile(eq):
    """A mark is a claim too: the entry must really fail where it says it does."""
    if not eq.compiles:
        torch = pytest.importorskip("torch")
        fn, _ = _compiled(eq)
        # A graph break (Unsupported) or a guard on a value (UserError); not a
        # warning turned error (InternalTorchDynamoError), which is another bug.
        with pytest.raises((torch._dynamo.exc.Unsupported, torch._dynamo.exc.UserError)):
            fn(*_torch_inputs(eq, parameters=True))
    if not eq.jit:
        import jax

        with pytest.raises(jax.errors.ConcretizationTypeError):
            _jax_trace(eq)


def test_every_mark_has_a_reason_and_some_entries_are_marked():
    # The marks are reasons, printed in the capability matrix; an entry marked for
    # one library only is fine, but every mark must say why.
    for eq in EQUATIONS:
        for reason in (eq.no_compile, eq.no_jit):
            assert reason == "" or len(reason) > 20, (eq.name, reason)
    assert MARKED, "no marked entry: test_marked_entries_do_not_compile tests nothing"


# -- shape changes ---------------------------------------------------------------------------


def _shape_cases() -> list[Any]:
    import mlequations as mle

    def randn(*shape: int) -> Any:
        import torch

        return torch.asarray(np.random.default_rng(sum(shape)).normal(size=shape)).float()

    def labels(n: int) -> Any:
        import torch

        return torch.arange(n) % 10

    return [
        pytest.param(lambda n: (randn(n, 10),), mle.softmax, id="softmax(batch)"),
        pytest.param(lambda n: (randn(n, 10), randn(n, 10)), mle.mse, id="mse(batch)"),
        pytest.param(
            lambda n: (randn(n, 10), labels(n)), mle.cross_entropy_loss, id="cross_entropy_loss"
        ),
        pytest.param(
            lambda n: (randn(n, 5) ** 2, randn(n, 5) ** 2), mle.bayes_rule, id="bayes_rule(batch)"
        ),
        pytest.param(
            lambda n: (randn(n, 3, 8, 8), randn(4, 3, 3, 3)),
            lambda x, w: mle.conv2d(x, w, padding=1),
            id="conv2d(batch)",
        ),
        pytest.param(
            lambda n: (randn(2, 3, 4 * n, 4 * n), randn(4, 3, 3, 3)),
            lambda x, w: mle.conv2d(x, w, padding=1),
            id="conv2d(image size)",
        ),
        pytest.param(
            lambda n: (randn(n, 2, 8, 4), randn(n, 2, 8, 4), randn(n, 2, 8, 4)),
            mle.attention,
            id="attention(batch)",
        ),
        pytest.param(
            lambda n: (randn(1, 2, 4 * n, 4), randn(1, 2, 4 * n, 4), randn(1, 2, 4 * n, 4)),
            mle.attention,
            id="attention(length)",
        ),
    ]


@pytest.mark.parametrize(("make", "fn"), _shape_cases())
def test_shape_changes(make, fn):
    """Sizes 2, 3, 5: a static graph, one recompile with symbolic sizes, then reuse.

    That is dynamo's automatic dynamic shapes (``dynamic=None``, the default): the
    first call specializes on its sizes, a size change marks that size dynamic and
    recompiles once. It stays dynamic only if our code never turns the size into a
    Python constant (a set or dict of sizes, ``int()``, a loop over it, a branch).
    """
    pytest.importorskip("torch")
    compiled, counting = _compiled(Equation("shapes", fn, make, fn))
    for n in (2, 3, 5):
        args = make(n)
        actual, expected = _as_numpy(compiled(*args)), _as_numpy(fn(*args))
        for g, e in zip(actual, expected, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)  # plans may differ
    assert counting.graphs == 2, f"{counting.graphs} graphs for sizes 2, 3 and 5"


def test_a_warning_while_tracing_fails_the_compile():
    """The guard behind 'no warnings': pyproject's filterwarnings = error reaches dynamo.

    Dynamo warns when it traces through a ``functools.lru_cache``-wrapped function
    (array-api-compat's namespace lookup was one); under this project's pytest
    settings that warning must stop the compile, or the registry test above could
    pass while users' consoles fill with warnings.
    """
    torch = pytest.importorskip("torch")
    import functools

    @functools.lru_cache
    def cached(n: int) -> int:
        return n + 1

    def fn(x: Any) -> Any:
        return x * cached(2)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=_Counting())
    with pytest.raises(torch._dynamo.exc.TorchDynamoException, match="lru_cache"):
        compiled(torch.ones(3))
