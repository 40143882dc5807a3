"""GaussianNaiveBayes on every backend, against scikit-learn's GaussianNB.

The oracle is ``sklearn.naive_bayes.GaussianNB`` fitted on the same float64
data (iris, wine and breast cancer, bundled with scikit-learn): the fitted
statistics, the predictions (identical) and the probabilities (within 1e-6 in
float64).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB

import mlequations as mle
from mlequations._backends import by_id
from mlequations.naive_bayes import NotFittedError

from ._assert import assert_close
from ._libs import jax_or_skip, torch_or_skip

DATASETS = ["iris", "wine", "breast_cancer"]


@functools.cache
def _data(name: str) -> tuple[np.ndarray, ...]:
    """A 70/30 split (seed 42), the classes, and the fitted scikit-learn oracle."""
    loader = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer}[name]
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42)
    return X_train, X_test, y_train, y_test, np.unique(y_train)


@functools.cache
def _oracle(name: str) -> GaussianNB:
    X_train, _, y_train, _, _ = _data(name)
    return GaussianNB().fit(X_train, y_train)


def _fit_predict(X, y, classes, X_test):
    """Fit (classes given: traceable, lazy) and predict, as one call on the backend."""
    m = mle.GaussianNaiveBayes().fit(X, y, classes=classes)
    fitted = (m.theta_, m.var_, m.class_prior_, m.class_count_, m.epsilon_)
    return fitted, (m.predict_proba(X_test), m.predict_log_proba(X_test), m.predict(X_test))


def _margins(oracle: GaussianNB, X: np.ndarray) -> np.ndarray:
    """Gap between the two largest joint log-likelihoods: small means a near tie."""
    jll = np.sort(oracle.predict_joint_log_proba(X), axis=1)
    return jll[:, -1] - jll[:, -2]


def _inputs(backend, dtype, name):
    X_train, X_test, y_train, _, classes = _data(name)
    return (
        backend.asarray(X_train, dtype),
        backend.asarray(y_train),
        backend.asarray(classes),
        backend.asarray(X_test, dtype),
    )


class TestMatchesScikitLearn:
    @pytest.mark.parametrize("name", DATASETS)
    def test_fit_and_predict(self, backend, dtype, name):
        X, y, classes, X_test = _inputs(backend, dtype, name)
        oracle = _oracle(name)
        X_test_np = _data(name)[1]
        fitted, predictions = backend.call(_fit_predict, X, y, classes, X_test)
        theta, var, prior, count, epsilon = fitted
        proba, log_proba, predicted = predictions
        loose = {"rtol": 1e-3} if dtype == "float32" else {}  # var of ~1e5-scale features
        assert_close(theta, oracle.theta_, backend, dtype)
        assert_close(var, oracle.var_, backend, dtype, **loose)
        assert_close(prior, oracle.class_prior_, backend, dtype)
        assert_close(count, oracle.class_count_, backend, dtype)
        assert_close(epsilon, oracle.epsilon_, backend, dtype, **loose)
        expected_proba = oracle.predict_proba(X_test_np)
        if dtype == "float64":
            assert_close(proba, expected_proba, backend, dtype, rtol=0, atol=1e-6)
            assert_close(
                log_proba,
                oracle.predict_log_proba(X_test_np),
                backend,
                dtype,
                rtol=1e-6,
                atol=1e-6,
            )
        else:
            # float32 joint log-likelihoods of size ~1e3 carry absolute errors ~1e-4.
            assert_close(proba, expected_proba, backend, dtype, rtol=0, atol=2e-3)
        assert predicted.dtype == classes.dtype
        if backend.values:
            got = backend.to_numpy(predicted)
            clear = _margins(oracle, X_test_np) > (1e-6 if dtype == "float64" else 1e-2)
            np.testing.assert_array_equal(got[clear], oracle.predict(X_test_np)[clear])
            if dtype == "float64":
                np.testing.assert_array_equal(got, oracle.predict(X_test_np))


class TestEagerFitTracedPredict:
    """``fit`` discovers the classes eagerly; ``predict*`` then run as users run them."""

    @pytest.mark.skip_xp_backend("torch-meta", reason="class discovery needs values (meta)")
    def test_fit_then_predict(self, backend, dtype):
        X_train, X_test, y_train, y_test, _ = _data("iris")
        oracle = _oracle("iris")
        # Outside backend.call: eager, as a user fits. (jax-jit: predict_proba is jitted;
        # Dask: fit computes the classes once, and backend.call fails any computation in
        # predict*, which must stay lazy — issue 22.)
        model = mle.GaussianNaiveBayes().fit(
            backend.asarray(X_train, dtype), backend.asarray(y_train)
        )
        assert_close(model.theta_, oracle.theta_, backend, dtype)
        np.testing.assert_array_equal(backend.to_numpy(model.classes_), oracle.classes_)
        X = backend.asarray(X_test, dtype)
        proba = backend.call(model.predict_proba, X)
        assert_close(
            proba,
            oracle.predict_proba(X_test),
            backend,
            dtype,
            rtol=0,
            atol=1e-6 if dtype == "float64" else 1e-3,
        )
        predicted = backend.call(model.predict, X)
        np.testing.assert_array_equal(backend.to_numpy(predicted), oracle.predict(X_test))
        accuracy = backend.call(model.score, X, backend.asarray(y_test))
        assert_close(accuracy, oracle.score(X_test, y_test), backend, dtype)

    @pytest.mark.parametrize("backend_id", ["strict-strictest", "jax-jit", "torch-meta"])
    def test_discovery_where_impossible_asks_for_classes(self, backend_id):
        backend = by_id(backend_id)
        if backend.skip_reason():
            pytest.skip(backend.skip_reason())
        X = backend.asarray(np.ones((4, 2)), "float32")
        y = backend.asarray(np.asarray([0, 1, 0, 1]))
        with pytest.raises(ValueError, match="pass the sorted labels as `classes=`"):
            backend.call(lambda X, y: mle.GaussianNaiveBayes().fit(X, y).theta_, X, y)

    @pytest.mark.parametrize("classes_given", [False, True])
    def test_dask_fit_computes_the_classes_once_and_predict_stays_lazy(self, classes_given):
        """Issue 22: without ``classes=``, one computation of ``unique_values(y)``; with it,
        none. Labels 7, -2, 30 (unsorted, negative, sparse) against scikit-learn."""
        backend = by_id("dask")
        if backend.skip_reason():
            pytest.skip(backend.skip_reason())
        import dask

        X_train, X_test, y_train, _, _ = _data("iris")
        labels = np.asarray([7, -2, 30])[y_train]
        oracle = GaussianNB().fit(X_train, labels)
        computed = []

        def counting(dsk, keys, **kwargs):
            computed.append(keys)
            return dask.get(dsk, keys, **kwargs)

        X, y = backend.asarray(X_train, "float64"), backend.asarray(labels)
        classes = backend.asarray(np.unique(labels)) if classes_given else None
        with dask.config.set(scheduler=counting):
            model = mle.GaussianNaiveBayes().fit(X, y, classes=classes)
            proba = model.predict_proba(backend.asarray(X_test, "float64"))
            predicted = model.predict(backend.asarray(X_test, "float64"))
        assert len(computed) == (0 if classes_given else 1), computed
        assert model.classes_.shape == (3,)  # a known length: nothing after fit computes
        np.testing.assert_array_equal(backend.to_numpy(model.classes_), oracle.classes_)
        assert_close(model.theta_, oracle.theta_, backend, "float64")
        assert_close(model.var_, oracle.var_, backend, "float64")
        assert_close(proba, oracle.predict_proba(X_test), backend, "float64", rtol=0, atol=1e-6)
        np.testing.assert_array_equal(backend.to_numpy(predicted), oracle.predict(X_test))

    def test_jax_jit_of_bound_methods_and_grad(self):
        jax = jax_or_skip()
        jnp = jax.numpy
        X_train, X_test, y_train, _, _ = _data("wine")
        model = mle.GaussianNaiveBayes().fit(jnp.asarray(X_train), jnp.asarray(y_train))
        X = jnp.asarray(X_test)
        np.testing.assert_array_equal(jax.jit(model.predict)(X), _oracle("wine").predict(X_test))
        # The log posterior is differentiable in the inputs (a saliency map).
        g = jax.jit(jax.grad(lambda x: jnp.sum(model.predict_log_proba(x)[:, 0])))(X)
        assert bool(jnp.all(jnp.isfinite(g)))

    def test_torch_autograd_through_predict_log_proba(self):
        torch = torch_or_skip()
        X_train, X_test, y_train, _, _ = _data("iris")
        model = mle.GaussianNaiveBayes().fit(torch.asarray(X_train), torch.asarray(y_train))
        X = torch.asarray(X_test[:5], requires_grad=True)
        model.predict_log_proba(X)[:, 1].sum().backward()
        # d log P(c | x) / dx = d J_c / dx - sum_c' P(c' | x) d J_c' / dx, with
        # d J_c / dx = -(x - theta_c) / var_c.
        x = X_test[:5]
        oracle = _oracle("iris")
        d_jll = -(x[:, None, :] - oracle.theta_) / oracle.var_  # (N, C, D)
        proba = oracle.predict_proba(x)
        expected = d_jll[:, 1] - np.einsum("nc,ncd->nd", proba, d_jll)
        np.testing.assert_allclose(X.grad.numpy(), expected, rtol=1e-6, atol=1e-8)


class TestOptions:
    def test_priors_match_sklearn(self, backend, dtype):
        X_train, X_test, y_train, _, _ = _data("iris")
        priors = [0.5, 0.3, 0.2]
        model = mle.GaussianNaiveBayes(priors=priors)
        if backend.id in ("dask", "torch-meta"):
            model.fit(
                backend.asarray(X_train, dtype),
                backend.asarray(y_train),
                classes=backend.asarray(np.asarray([0, 1, 2])),
            )
        else:
            model.fit(backend.asarray(X_train, dtype), backend.asarray(y_train))
        oracle = GaussianNB(priors=priors).fit(X_train, y_train)
        assert_close(model.class_prior_, priors, backend, dtype)
        proba = backend.call(model.predict_proba, backend.asarray(X_test, dtype))
        assert_close(
            proba,
            oracle.predict_proba(X_test),
            backend,
            dtype,
            rtol=0,
            atol=1e-6 if dtype == "float64" else 1e-3,
        )

    def test_var_smoothing(self):
        X_train, X_test, y_train, _, _ = _data("breast_cancer")
        model = mle.GaussianNaiveBayes(var_smoothing=1e-3).fit(X_train, y_train)
        oracle = GaussianNB(var_smoothing=1e-3).fit(X_train, y_train)
        np.testing.assert_allclose(model.epsilon_, oracle.epsilon_, rtol=1e-12)
        np.testing.assert_allclose(
            model.predict_proba(X_test), oracle.predict_proba(X_test), atol=1e-6
        )

    def test_absent_class_has_zero_prior(self):
        X_train, X_test, y_train, _, _ = _data("iris")
        classes = np.asarray([0, 1, 2, 7])  # 7 never occurs
        model = mle.GaussianNaiveBayes().fit(X_train, y_train, classes=classes)
        np.testing.assert_array_equal(model.class_count_[3], 0.0)
        np.testing.assert_array_equal(model.class_prior_[3], 0.0)
        proba = model.predict_proba(X_test)
        assert np.all(np.isfinite(proba))
        np.testing.assert_array_equal(proba[:, 3], 0.0)
        np.testing.assert_allclose(proba[:, :3], _oracle("iris").predict_proba(X_test), atol=1e-6)

    def test_labels_keep_their_dtype_and_values(self):
        X_train, X_test, y_train, _, _ = _data("iris")
        labels = np.asarray([-5.5, 2.0, 10.0])[y_train]
        model = mle.GaussianNaiveBayes().fit(X_train, labels)
        np.testing.assert_array_equal(model.classes_, [-5.5, 2.0, 10.0])
        predicted = model.predict(X_test)
        np.testing.assert_array_equal(
            predicted, np.asarray([-5.5, 2.0, 10.0])[_oracle("iris").predict(X_test)]
        )

    def test_integer_features_promote(self):
        X = np.asarray([[0, 1], [1, 1], [3, 4], [4, 5]])
        model = mle.GaussianNaiveBayes().fit(X, np.asarray([0, 0, 1, 1]))
        assert model.theta_.dtype == np.float64
        oracle = GaussianNB().fit(X, [0, 0, 1, 1])
        np.testing.assert_allclose(model.predict_proba(X), oracle.predict_proba(X), atol=1e-12)

    def test_guide_example_is_a_tie(self):
        # The guide says [1]; the point is half-way between the class means, and both
        # scikit-learn and this model pick the first class of the tie.
        X = np.asarray([[1, 2], [2, 3], [3, 4], [4, 5]], dtype=float)
        y = np.asarray([0, 0, 1, 1])
        point = np.asarray([[2.5, 3.5]])
        assert mle.GaussianNaiveBayes().fit(X, y).predict(point).tolist() == [0]
        assert GaussianNB().fit(X, y).predict(point).tolist() == [0]


class TestBadInput:
    def test_predict_before_fit(self):
        model = mle.GaussianNaiveBayes()
        for method in (model.predict, model.predict_proba, model.predict_log_proba):
            with pytest.raises(NotFittedError, match="not fitted yet"):
                method(np.ones((2, 3)))
        with pytest.raises(ValueError, match="not fitted"):
            model.score(np.ones((2, 3)), np.ones(2))

    def test_failed_fit_leaves_the_model_unfitted(self):
        X_train, X_test, y_train, _, _ = _data("iris")
        model = mle.GaussianNaiveBayes().fit(X_train, y_train)
        with pytest.raises(ValueError, match="`y` must have shape"):
            model.fit(X_train, y_train[:-1])
        assert not hasattr(model, "theta_")
        with pytest.raises(NotFittedError):
            model.predict(X_test)
        model.priors = [0.5, 0.5]  # three classes
        with pytest.raises(ValueError, match="`priors` must have one entry per class"):
            model.fit(X_train, y_train)
        with pytest.raises(NotFittedError):
            model.predict(X_test)

    def test_shapes(self):
        X_train, X_test, y_train, _, _ = _data("iris")
        with pytest.raises(ValueError, match=r"`X` must have shape \(N, D\)"):
            mle.GaussianNaiveBayes().fit(X_train[:, 0], y_train)
        with pytest.raises(ValueError, match="`classes` must have shape"):
            mle.GaussianNaiveBayes().fit(X_train, y_train, classes=np.ones((2, 2)))
        model = mle.GaussianNaiveBayes().fit(X_train, y_train)
        with pytest.raises(ValueError, match=r"`X` must have shape \(N, 4\)"):
            model.predict(X_test[:, :3])
        with pytest.raises(ValueError, match="`y` must have shape"):
            model.score(X_test, y_train)

    def test_options(self):
        with pytest.raises(ValueError, match="`var_smoothing`"):
            mle.GaussianNaiveBayes(var_smoothing=-1.0)
        with pytest.raises(TypeError, match="`var_smoothing`"):
            mle.GaussianNaiveBayes(var_smoothing="small")
        with pytest.raises(ValueError, match="`priors` must sum to 1"):
            mle.GaussianNaiveBayes(priors=[0.5, 0.6])
        with pytest.raises(ValueError, match="`priors` must be non-negative"):
            mle.GaussianNaiveBayes(priors=[1.5, -0.5])

    def test_types(self):
        X_train, _, y_train, _, _ = _data("iris")
        with pytest.raises(TypeError, match="`X` must be a real array"):
            mle.GaussianNaiveBayes().fit(X_train.astype(complex), y_train)
        with pytest.raises(TypeError, match="`y` must hold real or integer labels"):
            mle.GaussianNaiveBayes().fit(X_train, y_train.astype(complex))
        torch = torch_or_skip()
        with pytest.raises(TypeError, match="`X` is a numpy array, `y` is a torch array"):
            mle.GaussianNaiveBayes().fit(X_train, torch.asarray(y_train))
        model = mle.GaussianNaiveBayes().fit(X_train, y_train)
        with pytest.raises(TypeError, match="`X` is a torch array, `theta_` is a numpy array"):
            model.predict(torch.asarray(X_train))
