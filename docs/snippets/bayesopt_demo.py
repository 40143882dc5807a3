"""The guide's Bayesian-optimisation demo: a Matern GP surrogate and expected improvement.

Maximise a 1-D black box on [0, 1] with 5 random initial points and 8 EI-guided
evaluations, then draw the two figures of the guide: the GP posterior (mean,
95% band, evaluated points) and the convergence curve (best value so far).

Run ``python docs/snippets/bayesopt_demo.py --out-dir DIR``; the figures go to
the current directory without ``--out-dir``.
"""

import functools
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import mlequations as mle


def objective(x):
    """The black box: x sin(10 x), maximum 0.7917 at x = 0.7979 (local one at 0.20)."""
    return x[0] * np.sin(10 * x[0])


res = mle.bayesian_optimization(objective, (0.0, 1.0), n_init=5, n_iter=8, seed=0)
print(f"best x = {float(res.x[0]):.4f}, best f(x) = {float(res.value):.4f}")

# The surrogate after the last evaluation, as the loop fits it: Matern 5/2 with
# length scale 0.1 on standardised values (mean 0, standard deviation 1).
grid = np.linspace(0.0, 1.0, 501)
y = res.y_history
post = mle.gp_posterior(
    res.x_history,
    (y - y.mean()) / y.std(),
    grid[:, None],
    kernel=functools.partial(mle.matern52_kernel, length_scale=0.1),
    noise=1e-6,
)
mean, std = post.mean * y.std() + y.mean(), post.std * y.std()

out = Path(sys.argv[sys.argv.index("--out-dir") + 1]) if "--out-dir" in sys.argv else Path()
out.mkdir(parents=True, exist_ok=True)

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(grid, grid * np.sin(10 * grid), "k--", lw=1, label="objective $f(x)$")
ax.plot(grid, mean, "C0", label="GP mean $\\mu(x)$")
ax.fill_between(grid, mean - 1.96 * std, mean + 1.96 * std, color="C0", alpha=0.2, label="95% band")
ax.scatter(res.x_history[:5, 0], y[:5], c="C1", zorder=3, label="initial points")
ax.scatter(res.x_history[5:, 0], y[5:], c="C3", marker="x", zorder=3, label="EI picks")
ax.scatter(res.x, res.value, s=150, facecolors="none", edgecolors="k", zorder=4, label="best")
ax.set(xlabel="$x$", ylabel="$f(x)$", title="GP posterior after 5 + 8 evaluations")
ax.legend(loc="lower left", fontsize=8)
fig.tight_layout()
fig.savefig(out / "bayesopt_posterior.png", dpi=110)

fig, ax = plt.subplots(figsize=(7, 3.2))
ax.plot(np.arange(1, len(y) + 1), res.best_history, "o-")
ax.axvline(5.5, color="grey", ls=":", label="end of the random start")
ax.axhline(0.7917, color="k", ls="--", lw=1, label="true maximum 0.7917")
ax.set(xlabel="evaluation", ylabel="best $f$ so far", title="Convergence")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out / "bayesopt_convergence.png", dpi=110)
plt.close("all")
