"""The guide's iris demo: Gaussian naive Bayes written by hand, checked against scikit-learn.

Load iris, split 70/30 with seed 42, fit a hand-written Gaussian naive Bayes
(per-class priors, means and variances; log-likelihoods summed over features)
and mlequations.GaussianNaiveBayes, and compare both with sklearn's GaussianNB.
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB

import mlequations as mle


class SimpleGaussianNB:
    """The guide's classifier, vectorised; the log of the density is taken directly."""

    def fit(self, X, y):
        self.classes = np.unique(y)
        self.priors = np.asarray([np.mean(y == c) for c in self.classes])  # (C,)
        self.means = np.stack([X[y == c].mean(axis=0) for c in self.classes])  # (C, D)
        # The guide adds 1e-9; sklearn adds 1e-9 times the largest feature variance.
        self.vars = np.stack([X[y == c].var(axis=0) for c in self.classes]) + 1e-9  # (C, D)
        return self

    def predict(self, X):
        # log N(x | mean, var) = -0.5 log(2 pi var) - (x - mean)^2 / (2 var), summed over d.
        # (Taking log(exp(...)) as the guide does underflows to log 0 for far outliers.)
        diff = X[:, None, :] - self.means  # (N, C, D)
        log_lik = -0.5 * (np.log(2 * np.pi * self.vars) + diff**2 / self.vars).sum(axis=2)
        return self.classes[np.argmax(np.log(self.priors) + log_lik, axis=1)]

    def score(self, X, y):
        return np.mean(self.predict(X) == y)


iris = load_iris()
X_train, X_test, y_train, y_test = train_test_split(
    iris.data, iris.target, test_size=0.3, random_state=42
)

by_hand = SimpleGaussianNB().fit(X_train, y_train)
portable = mle.GaussianNaiveBayes().fit(X_train, y_train)
reference = GaussianNB().fit(X_train, y_train)

print(f"hand-written accuracy:           {by_hand.score(X_test, y_test):.4f}")
print(f"mlequations.GaussianNaiveBayes:  {float(portable.score(X_test, y_test)):.4f}")
print(f"sklearn GaussianNB:              {reference.score(X_test, y_test):.4f}")

assert np.array_equal(by_hand.predict(X_test), reference.predict(X_test))
assert np.array_equal(portable.predict(X_test), reference.predict(X_test))
gap = np.max(np.abs(portable.predict_proba(X_test) - reference.predict_proba(X_test)))
print(f"largest probability difference vs sklearn: {gap:.1e}")
assert gap < 1e-6

sample = np.asarray([[5.1, 3.5, 1.4, 0.2]])
print("sample", sample, "->", iris.target_names[portable.predict(sample)[0]])
