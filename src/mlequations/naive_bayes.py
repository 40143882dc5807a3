r"""Gaussian naive Bayes: Bayes' rule with independent normal features per class.

The classifier keeps, for each class $c$, a prior $P(c)$ and per-feature means
$\theta_{c d}$ and variances $\sigma^2_{c d}$, and predicts with Bayes' rule in
log space. It gives scikit-learn's ``GaussianNB`` results (same formulas, same
variance smoothing, same attribute names) on any array library.

Every per-class statistic is a matrix product with the one-hot matrix
$Y_{n c} = [y_n = c]$ — never a boolean mask, whose result has a data-dependent
shape — so ``fit`` (given ``classes=``) and every ``predict*`` method trace
under ``jax.jit``, stay lazy on Dask and run under array-api-strict's strictest
flags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._xp import Array, Namespace, device, float_dtypes, namespace, scalar
from .activations import logsumexp
from .probability import _cast, _known

__all__ = ["GaussianNaiveBayes", "NotFittedError"]

_FITTED = ("classes_", "theta_", "var_", "class_prior_", "class_count_", "epsilon_")


class NotFittedError(ValueError, AttributeError):
    """A ``predict*`` method was called before ``fit`` (as scikit-learn's error of that name)."""


class GaussianNaiveBayes:
    r"""Gaussian naive Bayes classifier, equal to scikit-learn's ``GaussianNB``.

    Fitting estimates, from samples $x_n \in \mathbb{R}^D$ with labels $y_n$,

    $$
    N_c = \sum_n [y_n = c], \qquad
    \theta_{c d} = \frac{1}{N_c} \sum_{n: y_n = c} x_{n d}, \qquad
    \sigma^2_{c d} = \frac{1}{N_c} \sum_{n: y_n = c} (x_{n d} - \theta_{c d})^2 + \epsilon,
    $$

    with $\epsilon$ = `var_smoothing` $\times \max_d \operatorname{Var}(x_{\cdot d})$
    (a fraction of the largest feature variance, which keeps every variance
    positive), and the prior $P(c) = N_c / N$ unless `priors` is given.
    Prediction applies Bayes' rule with the "naive" assumption that features
    are independent given the class:

    $$
    \log P(c \mid x) = \underbrace{\log P(c) - \tfrac12 \sum_{d}
      \Bigl[\log(2 \pi \sigma^2_{c d}) + \frac{(x_d - \theta_{c d})^2}{\sigma^2_{c d}}\Bigr]}_{
      \text{joint log-likelihood } J_c(x)}
      - \operatorname{LSE}_{c'} J_{c'}(x) .
    $$

    Sums over the samples of a class are matrix products with the one-hot
    matrix of the labels, so the fitted statistics and every prediction are
    traceable (``jax.jit``), lazy on Dask, and free of boolean masks.

    **Class discovery is eager.** Without ``classes=``, ``fit`` finds the
    classes with ``xp.unique_values(y)``, whose output shape depends on the
    data: that needs concrete values, so it fails under ``jax.jit``, on torch's
    ``meta`` device and under array-api-strict's ``data_dependent_shapes=False``.
    On Dask it is the one eager step of ``fit``: the distinct labels are
    computed once (as dask-ml's ``GaussianNB`` does), and the statistics and
    every ``predict*`` stay lazy. Pass ``classes=`` (the sorted class labels,
    an array of `y`'s library) to skip discovery; then ``fit`` is traceable and
    computes nothing. Labels that are not in ``classes`` are not checked (that
    would look at values): their samples count for no class.

    Args:
        var_smoothing: Fraction of the largest feature variance added to every
            variance, $\ge 0$.
        priors: Class prior probabilities, one per class in sorted class
            order; estimated from the class frequencies when ``None``. A Python
            sequence is checked to be non-negative and to sum to 1 (as
            scikit-learn does); an array is checked for its shape only.

    Attributes:
        classes_: The class labels, shape `(C,)`, in `y`'s dtype and library.
        theta_: Per-class feature means, shape `(C, D)`.
        var_: Per-class feature variances (smoothed), shape `(C, D)`.
        class_prior_: $P(c)$, shape `(C,)`.
        class_count_: $N_c$, shape `(C,)`, floating.
        epsilon_: The variance added, a 0-d array.
        n_features_in_: $D$, a Python int.

    The floating attributes have the dtype of `X` (integer `X` gives the
    default float) and live on its device; a failed ``fit`` leaves the model
    unfitted.

    **Degenerate data.** If every feature of `X` is constant (a single sample,
    or identical rows), $\epsilon = 0$ and the variances are 0: the Gaussians
    have no density and the predictions are NaN, as in scikit-learn. A class in
    ``classes`` without samples gets prior 0 (log-probability $-\infty$), mean
    0 and variance $\epsilon$. Predicting on 0 rows gives `(0, C)` arrays;
    ``score`` of 0 rows is NaN (the mean of nothing).

    Examples:
        >>> import numpy as np
        >>> import mlequations as mle
        >>> X = np.asarray([[0.0], [1.0], [3.0], [4.0]])
        >>> y = np.asarray([0, 0, 1, 1])
        >>> model = mle.GaussianNaiveBayes().fit(X, y)
        >>> model.theta_, model.var_
        (array([[0.5],
               [3.5]]), array([[0.25],
               [0.25]]))
        >>> model.predict_proba(np.asarray([[0.5], [2.0], [3.0]]))
        array([[9.99999985e-01, 1.52299823e-08],
               [5.00000000e-01, 5.00000000e-01],
               [6.14417534e-06, 9.99993856e-01]])

        A point half-way between the class means is a tie, and ``predict``
        takes the first class, as ``argmax`` and scikit-learn do (the guide's
        ``GaussianNB`` example, whose comment claims ``[1]``, is such a tie):

        >>> model.predict(np.asarray([[0.5], [2.0], [3.0]]))
        array([0, 0, 1])

    References:
        Chan, T. F., Golub, G. H., & LeVeque, R. J. (1979). Updating formulae
        and a pairwise algorithm for computing sample variances. Stanford
        CS tech report STAN-CS-79-773. (The variances of scikit-learn's
        ``GaussianNB``.)
    """

    # Set by ``fit`` (annotations only: an unfitted model has none of them).
    classes_: Array
    theta_: Array
    var_: Array
    class_prior_: Array
    class_count_: Array
    epsilon_: Array
    n_features_in_: int

    def __init__(self, var_smoothing: float = 1e-9, priors: Any = None) -> None:
        self.var_smoothing = var_smoothing
        self.priors = priors
        self._check_params()

    def __repr__(self) -> str:
        return f"GaussianNaiveBayes(var_smoothing={self.var_smoothing!r}, priors={self.priors!r})"

    def _check_params(self) -> None:
        smoothing = self.var_smoothing
        if isinstance(smoothing, bool) or not isinstance(smoothing, int | float):
            raise TypeError(f"`var_smoothing` must be a non-negative number, got {smoothing!r}")
        if not (smoothing >= 0 and math.isfinite(smoothing)):
            raise ValueError(f"`var_smoothing` must be a non-negative number, got {smoothing!r}")
        if isinstance(self.priors, Sequence):
            values = [float(v) for v in self.priors]
            if any(v < 0 for v in values):
                raise ValueError(f"`priors` must be non-negative, got {self.priors!r}")
            if not math.isclose(math.fsum(values), 1.0, rel_tol=1e-9, abs_tol=1e-9):
                raise ValueError(f"`priors` must sum to 1, got {self.priors!r}")

    # -- fitting ----------------------------------------------------------------
    def fit(
        self, X: Array, y: Array, /, *, classes: Array | None = None, xp: Namespace | None = None
    ) -> GaussianNaiveBayes:
        """Estimate the class priors, means and variances from labelled samples.

        Args:
            X: Training samples, shape `(N, D)`, real (integers are promoted).
            y: Their labels, shape `(N,)`, integer, boolean or real.
            classes: The class labels, shape `(C,)`, sorted, of `y`'s library.
                Without it the classes are discovered eagerly with
                ``xp.unique_values(y)`` — on Dask, one computation over the
                labels (see the class notes).
            xp: Array namespace; inferred from the inputs when omitted.

        Returns:
            The fitted model itself.

        Raises:
            TypeError: Mixed libraries, or complex `X` or `y`.
            ValueError: Wrong shapes, mixed devices, no samples or no features
                in `X` or no `classes` (nothing to estimate; scikit-learn also
                refuses), or classes that cannot be discovered on this backend
                (pass `classes`).
        """
        for name in (*_FITTED, "n_features_in_"):
            self.__dict__.pop(name, None)
        self._check_params()
        xp = namespace(X=X, y=y, classes=classes, xp=xp)
        out_dtype, work_dtype = float_dtypes(xp, X=X)
        if X.ndim != 2:
            raise ValueError(f"`X` must have shape (N, D), got shape {tuple(X.shape)}")
        if y.ndim != 1 or (_known(y.shape[0]) and _known(X.shape[0]) and y.shape[0] != X.shape[0]):
            raise ValueError(
                f"`y` must have shape (N,) with N = {X.shape[0]} rows of `X`, "
                f"got shape {tuple(y.shape)}"
            )
        if any(_known(n) and n == 0 for n in X.shape):
            # Nothing to estimate (scikit-learn also needs a sample and a feature); the
            # variance smoothing, a max over the feature variances, has no value either.
            raise ValueError(
                f"`X` must have at least one sample and one feature, got shape {tuple(X.shape)}"
            )
        if xp.isdtype(y.dtype, "complex floating"):
            raise TypeError(f"`y` must hold real or integer labels, got dtype {y.dtype}")
        if classes is None:
            classes = _discover_classes(y, xp)
        elif classes.ndim != 1 or (_known(classes.shape[0]) and classes.shape[0] == 0):
            raise ValueError(
                f"`classes` must have shape (C,) with C >= 1, got shape {tuple(classes.shape)}"
            )
        x = xp.astype(X, work_dtype, copy=False)  # (N, D)
        one_hot = xp.astype(y[:, None] == classes[None, :], work_dtype)  # (N, C)
        count = xp.sum(one_hot, axis=0)  # (C,)
        per_class = xp.where(count > 0, count, scalar(1.0, count, xp=xp))[:, None]  # (C, 1)
        theta = (one_hot.T @ x) / per_class  # (C, D)
        centred = x - one_hot @ theta  # (N, D): each sample minus its class mean
        epsilon = self.var_smoothing * xp.max(xp.var(x, axis=0))  # ()
        var = (one_hot.T @ (centred * centred)) / per_class + epsilon  # (C, D)
        prior = self._class_prior(count, classes, xp)  # (C,)
        fitted = {
            "classes_": classes,
            "theta_": theta,
            "var_": var,
            "class_prior_": prior,
            "class_count_": count,
            "epsilon_": epsilon,
        }
        for name, value in fitted.items():
            if name != "classes_":
                value = xp.astype(value, out_dtype, copy=False)
            setattr(self, name, value)
        self.n_features_in_ = int(X.shape[1])
        return self

    def _class_prior(self, count: Array, classes: Array, xp: Namespace) -> Array:
        if self.priors is None:
            return count / xp.sum(count)
        prior = xp.asarray(self.priors, dtype=count.dtype, device=device(count))
        n_classes = classes.shape[0]
        if prior.ndim != 1 or (_known(n_classes) and prior.shape[0] != n_classes):
            raise ValueError(
                f"`priors` must have one entry per class ({n_classes}), got shape "
                f"{tuple(prior.shape)}"
            )
        return prior

    # -- predicting ---------------------------------------------------------------
    def _check_fitted(self) -> None:
        missing = [name for name in _FITTED if name not in self.__dict__]
        if missing:
            raise NotFittedError(
                "this GaussianNaiveBayes is not fitted yet; call `fit(X, y)` before predicting"
            )

    def predict_joint_log_proba(self, X: Array, /) -> Array:
        r"""The joint log-likelihood $J_c(x) = \log P(c) + \log p(x \mid c)$, shape `(N, C)`.

        Args:
            X: Samples, shape `(N, D)`, of the fitted model's library and device.

        Returns:
            $J$ of shape `(N, C)`, in the result dtype of `X` and the fitted
            attributes; columns follow ``classes_``.

        Examples:
            >>> import numpy as np
            >>> import mlequations as mle
            >>> X, y = np.asarray([[0.0], [1.0], [3.0], [4.0]]), np.asarray([0, 0, 1, 1])
            >>> model = mle.GaussianNaiveBayes().fit(X, y)
            >>> model.predict_joint_log_proba(np.asarray([[0.5], [3.0]]))
            array([[ -0.91893854, -18.91893836],
                   [-13.41893841,  -1.41893853]])
        """
        self._check_fitted()
        xp = namespace(X=X, theta_=self.theta_)
        out_dtype, work_dtype = float_dtypes(xp, X=X, theta_=self.theta_)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"`X` must have shape (N, {self.n_features_in_}) (the features seen in fit), "
                f"got shape {tuple(X.shape)}"
            )
        x = xp.astype(X, work_dtype, copy=False)
        theta = xp.astype(self.theta_, work_dtype, copy=False)  # (C, D)
        var = xp.astype(self.var_, work_dtype, copy=False)  # (C, D)
        prior = xp.astype(self.class_prior_, work_dtype, copy=False)  # (C,)
        positive = prior > 0
        log_prior = xp.where(
            positive,
            xp.log(xp.where(positive, prior, scalar(1.0, prior, xp=xp))),
            scalar(-math.inf, prior, xp=xp),
        )  # (C,), -inf for a class with prior 0
        log_norm = -0.5 * xp.sum(xp.log((2.0 * math.pi) * var), axis=1)  # (C,)
        diff = x[:, None, :] - theta[None, :, :]  # (N, C, D)
        jll = log_prior + log_norm - 0.5 * xp.sum(diff * diff / var, axis=2)  # (N, C)
        return xp.astype(jll, out_dtype, copy=False)

    def predict_log_proba(self, X: Array, /) -> Array:
        r"""Log posterior $\log P(c \mid x) = J_c(x) - \operatorname{LSE}_{c'} J_{c'}(x)$.

        Args:
            X: Samples, shape `(N, D)`.

        Returns:
            Shape `(N, C)`; columns follow ``classes_``.

        Examples:
            >>> import numpy as np
            >>> import mlequations as mle
            >>> X, y = np.asarray([[0.0], [1.0], [3.0], [4.0]]), np.asarray([0, 0, 1, 1])
            >>> model = mle.GaussianNaiveBayes().fit(X, y)
            >>> model.predict_log_proba(np.asarray([[0.5], [3.0]]))
            array([[-1.52299823e-08, -1.79999998e+01],
                   [-1.20000060e+01, -6.14419421e-06]])
        """
        jll = self.predict_joint_log_proba(X)
        return jll - logsumexp(jll, axis=1, keepdims=True)

    def predict_proba(self, X: Array, /) -> Array:
        r"""Posterior probabilities $P(c \mid x)$, each row summing to 1.

        Args:
            X: Samples, shape `(N, D)`.

        Returns:
            Shape `(N, C)`; columns follow ``classes_``.

        Examples:
            >>> import numpy as np
            >>> import mlequations as mle
            >>> X, y = np.asarray([[0.0], [1.0], [3.0], [4.0]]), np.asarray([0, 0, 1, 1])
            >>> model = mle.GaussianNaiveBayes().fit(X, y)
            >>> model.predict_proba(np.asarray([[0.5], [3.0]]))
            array([[9.99999985e-01, 1.52299823e-08],
                   [6.14417534e-06, 9.99993856e-01]])
        """
        log_proba = self.predict_log_proba(X)
        xp = namespace(log_proba=log_proba)
        return xp.exp(log_proba)

    def predict(self, X: Array, /) -> Array:
        r"""The most probable class, $\arg\max_c J_c(x)$, as labels from ``classes_``.

        Args:
            X: Samples, shape `(N, D)`.

        Returns:
            Labels of shape `(N,)`, in the dtype of ``classes_``.

        Examples:
            >>> import numpy as np
            >>> import mlequations as mle
            >>> X, y = np.asarray([[0.0], [1.0], [3.0], [4.0]]), np.asarray([3, 3, 7, 7])
            >>> model = mle.GaussianNaiveBayes().fit(X, y)
            >>> model.predict(np.asarray([[0.5], [3.0]]))
            array([3, 7])
        """
        jll = self.predict_joint_log_proba(X)
        xp = namespace(jll=jll)
        index = xp.argmax(jll, axis=1)  # (N,)
        return xp.take(self.classes_, index, axis=0)

    def score(self, X: Array, y: Array, /) -> Array:
        r"""Accuracy: the fraction of samples whose predicted label equals `y`.

        $$
        \operatorname{acc} = \frac{1}{N} \sum_{n=1}^{N} [\hat y_n = y_n] .
        $$

        Args:
            X: Samples, shape `(N, D)`.
            y: True labels, shape `(N,)`.

        Returns:
            A 0-d array in the dtype of the probabilities (not a Python float, so
            that it traces and stays on the device); NaN for no samples.

        Examples:
            >>> import numpy as np
            >>> import mlequations as mle
            >>> X, y = np.asarray([[0.0], [1.0], [3.0], [4.0]]), np.asarray([0, 0, 1, 1])
            >>> model = mle.GaussianNaiveBayes().fit(X, y)
            >>> model.score(np.asarray([[0.5], [2.0], [3.0]]), np.asarray([0, 1, 1]))
            array(0.66666667)
        """
        jll = self.predict_joint_log_proba(X)
        xp = namespace(X=X, y=y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"`y` must have shape (N,) with N = {X.shape[0]} rows of `X`, "
                f"got shape {tuple(y.shape)}"
            )
        if _known(X.shape[0]) and X.shape[0] == 0:  # static: the mean of nothing is NaN
            return xp.full((), math.nan, dtype=jll.dtype, device=device(jll))
        predicted = xp.take(self.classes_, xp.argmax(jll, axis=1), axis=0)  # (N,)
        return _cast(xp, xp.mean(xp.astype(predicted == y, jll.dtype)), jll.dtype)


def _discover_classes(y: Array, xp: Namespace) -> Array:
    """The sorted distinct labels of `y`; eager, since the result's length depends on values.

    On a lazy library (Dask) the length of ``unique_values(y)`` is unknown until
    computed, so it is computed here, once — the one eager step of ``fit``, as
    dask-ml's ``GaussianNB`` does (issue 22: it asked for ``classes=`` instead) —
    and the labels come back as an array of `y`'s library with a known length,
    so everything after it stays lazy.
    """
    try:
        classes = xp.sort(xp.unique_values(y))
    except Exception as exc:  # jax tracers, torch meta, strict flags: each its own error type
        raise ValueError(
            "`y`: finding the classes needs concrete label values (xp.unique_values), which "
            f"this array library or mode cannot give ({type(exc).__name__}: {exc}); "
            "pass the sorted labels as `classes=`"
        ) from exc
    if not _known(classes.shape[0]):
        compute = getattr(classes, "compute", None)  # a lazy array's own, one computation
        if compute is None:
            raise ValueError(
                "`y`: the number of classes is unknown on this lazy array library "
                "(unique_values has a data-dependent length); pass the sorted labels as "
                "`classes=`"
            )
        classes = xp.asarray(compute(), device=device(y))  # (C,), C now known
    return classes
