"""mse, binary_cross_entropy(_with_logits) and cross_entropy_loss on every backend.

The oracle is ``torch.nn.functional``, run in float64 on the CPU from the same
NumPy data. The full grid of options (reduction × weight × pos_weight ×
label_smoothing × ignore_index × target kind) runs in float64 on NumPy, torch
CPU and jitted JAX (``GRID``); a representative subset runs on the whole
backend matrix in every dtype.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, ClassVar

import numpy as np
import pytest

import mlequations as mle
from mlequations._backends import Backend, by_id

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

RNG = np.random.default_rng(20261124)
C = 5
REDUCTIONS = ("none", "mean", "sum")
GRID = ("numpy", "torch-cpu", "jax-jit")
# Edge cases (extreme values, clamps, masks, unbatched input) run on the grid backends in
# both precisions: the other backends share their numerics (array-api-strict and Dask wrap
# NumPy, eager JAX compiles the same ops one by one) and the matrix tests cover their types.
EDGE = pytest.mark.parametrize(
    ("backend_id", "dtype_name"), list(itertools.product(GRID, ["float32", "float64"]))
)
_REQUIRED = {lib for lib in os.environ.get("MLEQUATIONS_REQUIRE", "").split(",") if lib}

LOGITS = RNG.normal(scale=2.0, size=(6, C))
INDICES = RNG.integers(0, C, size=6)
INDICES[[1, 4]] = 2  # class 2 appears twice, so ignoring it masks two samples
PROBS = RNG.dirichlet(np.ones(C), size=6)
CLASS_WEIGHT = RNG.uniform(0.5, 2.0, size=C)
SPATIAL_LOGITS = RNG.normal(size=(3, C, 4))
SPATIAL_INDICES = RNG.integers(0, C, size=(3, 4))
P = RNG.uniform(0.02, 0.98, size=(4, 3))
X = RNG.normal(scale=4.0, size=(4, 3))
Y = RNG.uniform(size=(4, 3))
ELEMENT_WEIGHT = RNG.uniform(0.5, 2.0, size=(4, 1))
POS_WEIGHT = RNG.uniform(0.5, 3.0, size=(3,))


def grid_backend(backend_id: str) -> Backend:
    """A backend of the option grid, skipped (or failed, if required) when unavailable."""
    backend = by_id(backend_id)
    reason = backend.skip_reason()
    if reason is not None:
        if backend.library in _REQUIRED:
            pytest.fail(f"{backend_id} is required by MLEQUATIONS_REQUIRE but {reason}")
        pytest.skip(reason)
    return backend


def _t(a: Any) -> Any:
    torch = torch_or_skip()
    return None if a is None else torch.asarray(np.asarray(a))


def torch_loss(name: str, *arrays: Any, **options: Any) -> np.ndarray:
    """The float64 CPU ``torch.nn.functional`` reference for loss `name`."""
    torch_or_skip()
    import torch.nn.functional as F

    options = {k: _t(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    out = getattr(F, name)(*(_t(a) for a in arrays), **options)
    return out.numpy()


def _host(backend: Backend, x: Any, data: np.ndarray) -> np.ndarray:
    """`x` read back as float64 NumPy (`data` on torch's meta device, which holds no values)."""
    return np.asarray(backend.to_numpy(x), dtype=np.float64) if backend.values else data


def _arrays(backend: Backend, dtype: str, *arrays: Any) -> list[Any]:
    return [None if a is None else backend.asarray(a, dtype) for a in arrays]


# -- mse ----------------------------------------------------------------------------------


class TestMSE:
    def test_guide_example_is_0_02(self, backend, dtype):
        # The guide prints 0.01; (0.1² + 0.1² + 0.2²) / 3 = 0.02.
        y_true, y_pred = _arrays(backend, dtype, np.array([1.0, 2.0, 3.0]), [1.1, 1.9, 3.2])
        assert_close(backend.call(mle.mse, y_pred, y_true), 0.02, backend, dtype)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_matches_torch(self, backend, dtype, reduction):
        x, y = _arrays(backend, dtype, X, Y)
        expected = torch_loss("mse_loss", X, Y, reduction=reduction)
        assert_close(backend.call(mle.mse, x, y, reduction=reduction), expected, backend, dtype)

    def test_half_precision(self, backend, half_dtype):
        x, y = _arrays(backend, half_dtype, X, Y)
        xs, ys = _host(backend, x, X), _host(backend, y, Y)
        assert_close(backend.call(mle.mse, x, y), np.mean((xs - ys) ** 2), backend, half_dtype)


# -- binary cross-entropy -------------------------------------------------------------------


def _bce(p: Any, y: Any, w: Any, **options: Any) -> Any:
    return mle.binary_cross_entropy(p, y, weight=w, **options)


def _bce_logits(x: Any, y: Any, w: Any, q: Any, **options: Any) -> Any:
    return mle.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q, **options)


class TestBinaryCrossEntropy:
    def test_guide_example_is_0_1446(self, backend, dtype):
        p, y = _arrays(backend, dtype, np.array([0.9, 0.1, 0.8]), np.array([1.0, 0.0, 1.0]))
        expected = -(2 * np.log(0.9) + np.log(0.8)) / 3  # 0.14462153
        assert_close(backend.call(mle.binary_cross_entropy, p, y), expected, backend, dtype)

    @pytest.mark.parametrize("backend_id", GRID)
    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_option_grid_matches_torch(self, backend_id, reduction, weighted):
        backend = grid_backend(backend_id)
        w = ELEMENT_WEIGHT if weighted else None
        p, y, wb = _arrays(backend, "float64", P, Y, w)
        expected = torch_loss("binary_cross_entropy", P, Y, weight=w, reduction=reduction)
        assert_close(
            backend.call(_bce, p, y, wb, reduction=reduction), expected, backend, "float64"
        )

    def test_matches_torch_on_the_matrix(self, backend, dtype):
        p, y, w = _arrays(backend, dtype, P, Y, ELEMENT_WEIGHT)
        expected = torch_loss("binary_cross_entropy", P, Y, weight=ELEMENT_WEIGHT, reduction="sum")
        assert_close(backend.call(_bce, p, y, w, reduction="sum"), expected, backend, dtype)

    @EDGE
    def test_log_is_clamped_at_minus_100_as_in_torch(self, backend_id, dtype_name):
        backend, dtype = grid_backend(backend_id), dtype_name
        probs = np.array([0.0, 1.0, 0.0, 1.0, 1e-30, 0.5])
        labels = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
        p, y = _arrays(backend, dtype, probs, labels)
        expected = torch_loss("binary_cross_entropy", probs, labels, reduction="none")
        out = backend.call(mle.binary_cross_entropy, p, y, reduction="none")
        assert_close(out, expected, backend, dtype)  # [100, 100, 0, 0, 69.08, 0.69]

    @pytest.mark.parametrize("backend_id", GRID)
    def test_integer_labels(self, backend_id):
        backend = grid_backend(backend_id)
        p = backend.asarray(P, "float32")
        y = backend.asarray((Y > 0.5).astype(np.int64))
        expected = torch_loss("binary_cross_entropy", P, (Y > 0.5) * 1.0)
        assert_close(backend.call(mle.binary_cross_entropy, p, y), expected, backend, "float32")

    def test_half_precision(self, backend, half_dtype):
        p, y = _arrays(backend, half_dtype, P, Y)
        ps, ys = _host(backend, p, P), _host(backend, y, Y)
        expected = torch_loss("binary_cross_entropy", ps, ys)
        assert_close(backend.call(mle.binary_cross_entropy, p, y), expected, backend, half_dtype)


class TestBinaryCrossEntropyWithLogits:
    @pytest.mark.parametrize("backend_id", GRID)
    @pytest.mark.parametrize(
        ("weighted", "pos_weighted"), list(itertools.product([False, True], repeat=2))
    )
    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_option_grid_matches_torch(self, backend_id, reduction, weighted, pos_weighted):
        backend = grid_backend(backend_id)
        w = ELEMENT_WEIGHT if weighted else None
        q = POS_WEIGHT if pos_weighted else None
        args = _arrays(backend, "float64", X, Y, w, q)
        expected = torch_loss(
            "binary_cross_entropy_with_logits", X, Y, weight=w, pos_weight=q, reduction=reduction
        )
        out = backend.call(_bce_logits, *args, reduction=reduction)
        assert_close(out, expected, backend, "float64")

    def test_matches_torch_on_the_matrix(self, backend, dtype):
        args = _arrays(backend, dtype, X, Y, ELEMENT_WEIGHT, POS_WEIGHT)
        expected = torch_loss(
            "binary_cross_entropy_with_logits", X, Y, weight=ELEMENT_WEIGHT, pos_weight=POS_WEIGHT
        )
        assert_close(backend.call(_bce_logits, *args), expected, backend, dtype)

    @EDGE
    def test_stable_for_any_logit(self, backend_id, dtype_name):
        backend, dtype = grid_backend(backend_id), dtype_name
        logits = np.array([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4])
        labels = np.array([1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
        x, y = _arrays(backend, dtype, logits, labels)
        expected = torch_loss("binary_cross_entropy_with_logits", logits, labels, reduction="none")
        out = backend.call(mle.binary_cross_entropy_with_logits, x, y, reduction="none")
        # float32 cancels (1 - y) x - log σ(x) to 0 below ~1e-7, exactly as torch does.
        assert_close(out, expected, backend, dtype, atol=1e-30 if dtype == "float64" else None)

    @EDGE
    def test_equals_binary_cross_entropy_of_the_sigmoid(self, backend_id, dtype_name):
        backend, dtype = grid_backend(backend_id), dtype_name
        x, y = _arrays(backend, dtype, X / 4, Y)
        ours = backend.call(mle.binary_cross_entropy_with_logits, x, y)
        expected = torch_loss("binary_cross_entropy", 1 / (1 + np.exp(-X / 4)), Y)
        assert_close(ours, expected, backend, dtype)

    def test_half_precision(self, backend, half_dtype):
        x, y = _arrays(backend, half_dtype, X, Y)
        xs, ys = _host(backend, x, X), _host(backend, y, Y)
        expected = torch_loss("binary_cross_entropy_with_logits", xs, ys)
        out = backend.call(mle.binary_cross_entropy_with_logits, x, y)
        assert_close(out, expected, backend, half_dtype)


# -- softmax cross-entropy ------------------------------------------------------------------


def _ce(logits: Any, target: Any, weight: Any, **options: Any) -> Any:
    return mle.cross_entropy_loss(logits, target, weight=weight, **options)


def torch_ce(logits: np.ndarray, target: np.ndarray, *, axis: int = -1, **options: Any) -> Any:
    """``F.cross_entropy`` with the class axis moved to torch's axis 1 (or 0 when unbatched)."""
    if logits.ndim > 1:
        logits = np.moveaxis(logits, axis, 1)
        if target.shape != logits.shape[:1] + logits.shape[2:]:  # probabilities
            target = np.moveaxis(target, axis, 1)
    if options.get("ignore_index") is None:
        options.pop("ignore_index", None)
    return torch_loss("cross_entropy", logits, target, **options)


def _ce_cases() -> list[tuple[str, str, float, bool, int | None]]:
    """(target kind, reduction, label_smoothing, weighted, ignore_index), all valid."""
    cases = []
    for kind, reduction, eps, weighted in itertools.product(
        ["indices", "probabilities"], REDUCTIONS, [0.0, 0.15], [False, True]
    ):
        for ignore in [None, 2] if kind == "indices" else [None]:
            cases.append((kind, reduction, eps, weighted, ignore))
    return cases


class TestCrossEntropyLoss:
    @pytest.mark.parametrize("backend_id", GRID)
    @pytest.mark.parametrize(
        ("kind", "reduction", "label_smoothing", "weighted", "ignore_index"),
        _ce_cases(),
        ids=[f"{k}-{r}-eps{e}-{'w' if w else 'now'}-ignore{i}" for k, r, e, w, i in _ce_cases()],
    )
    def test_option_grid_matches_torch(
        self, backend_id, kind, reduction, label_smoothing, weighted, ignore_index
    ):
        backend = grid_backend(backend_id)
        target = INDICES if kind == "indices" else PROBS
        weight = CLASS_WEIGHT if weighted else None
        options = {
            "reduction": reduction,
            "label_smoothing": label_smoothing,
            "ignore_index": ignore_index,
        }
        expected = torch_ce(LOGITS, target, weight=weight, **options)
        z, w = _arrays(backend, "float64", LOGITS, weight)
        t = backend.asarray(target, "float64")
        out = backend.call(_ce, z, t, w, **options)
        assert_close(out, expected, backend, "float64")

    @pytest.mark.parametrize("backend_id", GRID)
    def test_torch_default_ignore_index(self, backend_id):
        # torch ignores -100 unless told otherwise; here None ignores nothing, so say -100.
        backend = grid_backend(backend_id)
        target = np.where(np.arange(6) % 3 == 0, -100, INDICES)
        expected = torch_ce(LOGITS, target, weight=CLASS_WEIGHT, label_smoothing=0.1)
        z, w = _arrays(backend, "float64", LOGITS, CLASS_WEIGHT)
        t = backend.asarray(target)
        out = backend.call(_ce, z, t, w, label_smoothing=0.1, ignore_index=-100)
        assert_close(out, expected, backend, "float64")

    @pytest.mark.parametrize(
        ("case", "options"),
        [
            ("indices", {"label_smoothing": 0.1, "ignore_index": 2}),
            ("probabilities", {"label_smoothing": 0.2, "reduction": "sum"}),
            ("spatial", {"axis": 1, "reduction": "none"}),
        ],
    )
    def test_matches_torch_on_the_matrix(self, backend, dtype, case, options):
        logits, target = {
            "indices": (LOGITS, INDICES),
            "probabilities": (LOGITS, PROBS),
            "spatial": (SPATIAL_LOGITS, SPATIAL_INDICES),
        }[case]
        weight = CLASS_WEIGHT if case != "spatial" else None
        expected = torch_ce(logits, target, weight=weight, **options)
        z, w, t = _arrays(backend, dtype, logits, weight, target)
        assert_close(backend.call(_ce, z, t, w, **options), expected, backend, dtype)

    @pytest.mark.parametrize("backend_id", GRID)
    @pytest.mark.parametrize("kind", ["indices", "probabilities"])
    @pytest.mark.parametrize("axis", [0, 1, 2, -1])
    def test_class_axis(self, backend_id, kind, axis):
        backend = grid_backend(backend_id)
        logits = np.moveaxis(SPATIAL_LOGITS, 1, axis)  # (3, 5, 4) with the classes at `axis`
        rng = np.random.default_rng(axis % 3)
        if kind == "indices":
            target = rng.integers(0, C, size=(3, 4))  # the sample axes, in order
        else:
            target = np.moveaxis(rng.dirichlet(np.ones(C), size=(3, 4)), -1, axis)
        options = {"axis": axis, "reduction": "none", "label_smoothing": 0.1}
        expected = torch_ce(logits, target, **options)
        z, t = _arrays(backend, "float64", logits, target)
        assert_close(
            backend.call(mle.cross_entropy_loss, z, t, **options), expected, backend, "float64"
        )

    @EDGE
    def test_unbatched(self, backend_id, dtype_name):
        backend, dtype = grid_backend(backend_id), dtype_name
        z, t = backend.asarray(LOGITS[0], dtype), backend.asarray(INDICES[0])
        expected = torch_ce(LOGITS[0], np.asarray(INDICES[0]))
        assert_close(backend.call(mle.cross_entropy_loss, z, t), expected, backend, dtype)

    def test_one_hot_probabilities_equal_indices(self, backend, dtype):
        z, t = backend.asarray(LOGITS, dtype), backend.asarray(INDICES)
        one_hot = backend.asarray(np.eye(C)[INDICES], dtype)
        expected = torch_ce(LOGITS, INDICES)
        assert_close(backend.call(mle.cross_entropy_loss, z, one_hot), expected, backend, dtype)
        assert_close(backend.call(mle.cross_entropy_loss, z, t), expected, backend, dtype)

    @EDGE
    def test_huge_logits_stay_finite(self, backend_id, dtype_name):
        backend, dtype = grid_backend(backend_id), dtype_name
        logits = LOGITS * 1e4
        z, t = backend.asarray(logits, dtype), backend.asarray(INDICES)
        expected = torch_ce(logits, INDICES, reduction="none")
        out = backend.call(mle.cross_entropy_loss, z, t, reduction="none")
        assert_close(out, expected, backend, dtype)

    @pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
    @pytest.mark.parametrize("backend_id", GRID)
    def test_all_ignored_mean_is_nan_as_in_torch(self, backend_id):
        backend = grid_backend(backend_id)
        z = backend.asarray(LOGITS[:2], "float32")
        t = backend.asarray(np.array([3, 3]))
        expected = torch_ce(LOGITS[:2], np.array([3, 3]), ignore_index=3)
        assert np.isnan(expected)
        out = backend.call(mle.cross_entropy_loss, z, t, ignore_index=3)
        assert_close(out, expected, backend, "float32")

    @EDGE
    def test_masked_class_with_zero_probability_costs_nothing(self, backend_id, dtype_name):
        backend, dtype = grid_backend(backend_id), dtype_name
        # torch gives NaN here (0 · -inf); 0 · log 0 = 0 is the limit.
        logits = np.array([[0.0, -np.inf, 1.0], [2.0, 0.0, -np.inf]])
        target = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
        log_p = np.where(np.isinf(logits), 0.0, logits - np.log(np.exp(logits).sum(-1))[:, None])
        expected = -(target * log_p).sum(-1)
        z, t = _arrays(backend, dtype, logits, target)
        out = backend.call(mle.cross_entropy_loss, z, t, reduction="none")
        assert_close(out, expected, backend, dtype)

    def test_half_precision(self, backend, half_dtype):
        z = backend.asarray(LOGITS, half_dtype)
        t = backend.asarray(INDICES)
        zs = _host(backend, z, LOGITS)
        expected = torch_ce(zs, INDICES, label_smoothing=0.1)
        out = backend.call(mle.cross_entropy_loss, z, t, label_smoothing=0.1)
        assert_close(out, expected, backend, half_dtype)


class TestNegativeClassWeights:
    """Issue 22: the weighted mean is Σ w l / Σ w whatever the signs, as in torch.

    ``total > 0`` made every negative total NaN. Only Σ w = 0 divides by zero: the
    IEEE quotient (±inf), and with label smoothing torch's sum of two such
    quotients (NaN where their signs differ).
    """

    LOGITS = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [-2.0, 0.25, 1.5]])
    CASES: ClassVar[dict[str, tuple[np.ndarray, np.ndarray, int | None]]] = {
        # The issue's weights: all negative, both targets of class 0.
        "all-negative": (np.array([-8.48, -1.77, -4.32]), np.array([0, 0, 2]), None),
        "mixed-signs": (np.array([2.5, -0.75, 1.25]), np.array([1, 0, 1]), None),
        "mixed-ignored": (np.array([-2.5, 0.75, -1.25]), np.array([1, 2, 0]), 1),
        # Σ w_t = 1.5 - 1.5 (class 2 ignored) = 0: torch divides by zero, -inf or NaN...
        "cancelling": (np.array([1.5, -1.5, 4.0]), np.array([0, 1, 2]), 2),
        # ... and +inf with label smoothing too, where both sums are positive.
        "cancelling-positive": (np.array([-1.5, 1.5, 4.0]), np.array([0, 1, 2]), 2),
    }

    @pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_weighted_mean_matches_torch(self, backend, dtype, case, label_smoothing):
        weight, target, ignore = self.CASES[case]
        expected = torch_ce(
            self.LOGITS,
            target,
            weight=weight,
            label_smoothing=label_smoothing,
            ignore_index=ignore,
        )
        z, w = _arrays(backend, dtype, self.LOGITS, weight)
        out = backend.call(
            _ce,
            z,
            backend.asarray(target),
            w,
            label_smoothing=label_smoothing,
            ignore_index=ignore,
        )
        assert_close(out, expected, backend, dtype)

    def test_the_issue_example_is_the_plain_mean(self, backend, dtype):
        # Equal weights cancel out of Σ w l / Σ w: the unweighted mean of the losses.
        weight, target = np.array([-8.48, -1.77, -4.32]), np.array([0, 0])
        logits = self.LOGITS[:2]
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        expected = -log_p[np.arange(2), target].mean()
        z, w = _arrays(backend, dtype, logits, weight)
        assert_close(backend.call(_ce, z, backend.asarray(target), w), expected, backend, dtype)

    @pytest.mark.parametrize("reduction", REDUCTIONS)
    def test_binary_cross_entropies_with_negative_weights_match_torch(
        self, backend, dtype, reduction
    ):
        weight = np.array([[-1.5], [0.5], [-0.25], [2.0]])  # (4, 1), broadcast over (4, 3)
        pos_weight = np.array([-0.5, 2.0, -3.0])
        p, y, w = _arrays(backend, dtype, P, Y, weight)
        expected = torch_loss("binary_cross_entropy", P, Y, weight=weight, reduction=reduction)
        assert_close(backend.call(_bce, p, y, w, reduction=reduction), expected, backend, dtype)
        x, q = _arrays(backend, dtype, X, pos_weight)
        expected = torch_loss(
            "binary_cross_entropy_with_logits",
            X,
            Y,
            weight=weight,
            pos_weight=pos_weight,
            reduction=reduction,
        )
        out = backend.call(_bce_logits, x, y, w, q, reduction=reduction)
        assert_close(out, expected, backend, dtype)


# -- errors ---------------------------------------------------------------------------------


class TestBadInput:
    @pytest.mark.parametrize(
        "call",
        [
            lambda: mle.mse(np.ones(3), np.ones(3), reduction="avg"),
            lambda: mle.binary_cross_entropy(np.ones(3) / 2, np.ones(3), reduction="avg"),
            lambda: mle.binary_cross_entropy_with_logits(np.ones(3), np.ones(3), reduction="avg"),
            lambda: mle.cross_entropy_loss(np.ones((2, 3)), np.array([0, 1]), reduction="avg"),
        ],
    )
    def test_unknown_reduction(self, call):
        with pytest.raises(ValueError, match="`reduction` must be one of"):
            call()

    def test_target_of_neither_shape(self):
        with pytest.raises(ValueError, match=r"`target` must hold class indices of shape \(4,\)"):
            mle.cross_entropy_loss(np.ones((4, 3)), np.array([0, 1, 2]))
        with pytest.raises(ValueError, match=r"`target`.*got shape \(4, 2\)"):
            mle.cross_entropy_loss(np.ones((4, 3)), np.ones((4, 2)))

    def test_target_dtypes(self):
        with pytest.raises(TypeError, match="`target` of class indices must be integers"):
            mle.cross_entropy_loss(np.ones((4, 3)), np.ones(4))
        with pytest.raises(TypeError, match=r"`target` of the shape of `logits`.*floating"):
            mle.cross_entropy_loss(np.ones((4, 3)), np.ones((4, 3), dtype=np.int64))

    def test_bad_options(self):
        z, t = np.ones((4, 3)), np.array([0, 1, 2, 0])
        with pytest.raises(ValueError, match="`weight` must have shape \\(C,\\) = \\(3,\\)"):
            mle.cross_entropy_loss(z, t, weight=np.ones(4))
        with pytest.raises(ValueError, match="`label_smoothing`"):
            mle.cross_entropy_loss(z, t, label_smoothing=1.5)
        with pytest.raises(ValueError, match="`axis`"):
            mle.cross_entropy_loss(z, t, axis=2)
        with pytest.raises(TypeError, match="`axis` must be an int"):  # failed in shape[1.0]
            mle.cross_entropy_loss(z, t, axis=1.0)
        with pytest.raises(ValueError, match="`ignore_index`"):
            mle.cross_entropy_loss(z, np.ones((4, 3)) / 3, ignore_index=0)

    def test_shape_mismatch_names_the_argument(self):
        with pytest.raises(ValueError, match="`target` must have the shape of `input`"):
            mle.mse(np.ones((4, 1)), np.ones(4))
        with pytest.raises(ValueError, match="`target`"):
            mle.binary_cross_entropy(np.ones(3) / 2, np.ones(4))
        with pytest.raises(ValueError, match="`pos_weight` of shape \\(4,\\)"):
            mle.binary_cross_entropy_with_logits(
                np.ones((2, 3)), np.ones((2, 3)), pos_weight=np.ones(4)
            )
        with pytest.raises(ValueError, match="`weight` of shape"):
            mle.binary_cross_entropy(np.ones(3) / 2, np.ones(3), weight=np.ones((2, 3)))

    def test_mixed_libraries(self):
        torch = torch_or_skip()
        with pytest.raises(TypeError, match="`target` is a torch array"):
            mle.mse(np.ones(3), torch.ones(3))


# -- autodiff -------------------------------------------------------------------------------


def _torch_grads(fn: Any, *arrays: np.ndarray) -> list[Any]:
    torch = torch_or_skip()
    leaves = [torch.asarray(a, requires_grad=True) for a in arrays]
    fn(*leaves).backward()
    return [leaf.grad for leaf in leaves]


class TestAutodiff:
    """torch autograd and ``jax.grad`` through the portable losses equal torch's own gradients."""

    def _cases(self) -> list[tuple[Any, Any, tuple[np.ndarray, ...]]]:
        torch_or_skip()
        import torch.nn.functional as F

        w, q, cw = _t(ELEMENT_WEIGHT), _t(POS_WEIGHT), _t(CLASS_WEIGHT)
        indices = _t(INDICES)
        return [
            (lambda x, y: mle.mse(x, y), lambda x, y: F.mse_loss(x, y), (X, Y)),
            (
                lambda p, y: mle.binary_cross_entropy(p, y, weight=w, reduction="sum"),
                lambda p, y: F.binary_cross_entropy(p, y, weight=w, reduction="sum"),
                (P, Y),
            ),
            (
                lambda x, y: mle.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q),
                lambda x, y: F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=q),
                (X, Y),
            ),
            (
                lambda z: mle.cross_entropy_loss(
                    z, indices, weight=cw, label_smoothing=0.1, ignore_index=2
                ),
                lambda z: F.cross_entropy(
                    z, indices, weight=cw, label_smoothing=0.1, ignore_index=2
                ),
                (LOGITS,),
            ),
            (
                lambda z, y: mle.cross_entropy_loss(z, y, weight=cw, label_smoothing=0.2),
                lambda z, y: F.cross_entropy(z, y, weight=cw, label_smoothing=0.2),
                (LOGITS, PROBS),
            ),
        ]

    def test_torch_autograd_matches_torch(self):
        torch = torch_or_skip()
        for ours, theirs, arrays in self._cases():
            for g1, g2 in zip(
                _torch_grads(ours, *arrays), _torch_grads(theirs, *arrays), strict=True
            ):
                torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)

    def test_jax_grad_under_jit_matches_torch(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        cw = jnp.asarray(CLASS_WEIGHT)
        cases = {
            "mse": (lambda x, y: mle.mse(x, y), (X, Y)),
            "bce": (
                lambda p, y: mle.binary_cross_entropy(
                    p, y, weight=jnp.asarray(ELEMENT_WEIGHT), reduction="sum"
                ),
                (P, Y),
            ),
            "bce_logits": (
                lambda x, y: mle.binary_cross_entropy_with_logits(
                    x, y, weight=jnp.asarray(ELEMENT_WEIGHT), pos_weight=jnp.asarray(POS_WEIGHT)
                ),
                (X, Y),
            ),
            "ce_indices": (
                lambda z: mle.cross_entropy_loss(
                    z, jnp.asarray(INDICES), weight=cw, label_smoothing=0.1, ignore_index=2
                ),
                (LOGITS,),
            ),
            "ce_probabilities": (
                lambda z, y: mle.cross_entropy_loss(z, y, weight=cw, label_smoothing=0.2),
                (LOGITS, PROBS),
            ),
        }
        for (name, (fn, arrays)), (_, theirs, _) in zip(cases.items(), self._cases(), strict=True):
            argnums = tuple(range(len(arrays)))
            ours = jax.jit(jax.grad(fn, argnums=argnums))(*(jnp.asarray(a) for a in arrays))
            expected = _torch_grads(theirs, *arrays)
            for g1, g2 in zip(ours, expected, strict=True):
                np.testing.assert_allclose(g1, g2.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)

    def test_gradients_finite_at_the_extremes(self):
        torch = torch_or_skip()
        # BCE at p = 0 and p = 1 (clamped logs); BCE with logits at ±1e4; CE at huge logits.
        p = torch.asarray([0.0, 1.0, 0.0, 1.0], requires_grad=True)
        mle.binary_cross_entropy(p, torch.asarray([1.0, 0.0, 0.0, 1.0])).backward()
        assert torch.isfinite(p.grad).all()
        x = torch.asarray([-1e4, 1e4, 0.0], requires_grad=True)
        mle.binary_cross_entropy_with_logits(x, torch.asarray([1.0, 0.0, 1.0])).backward()
        torch.testing.assert_close(x.grad, torch.asarray([-1.0, 1.0, -0.5]) / 3)
        z = torch.asarray(LOGITS * 1e4, requires_grad=True)
        mle.cross_entropy_loss(z, torch.asarray(INDICES), label_smoothing=0.1).backward()
        assert torch.isfinite(z.grad).all()
