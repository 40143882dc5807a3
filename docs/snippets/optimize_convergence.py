"""The guide's gradient descent, run to convergence: where theta is after k steps.

The guide fits y = x on three points with lr 0.01 and 1000 steps and prints
"~[0., 1.]". After 1000 steps theta is [0.1107, 0.9513]: the iteration contracts
the error by 1 - lr * λ_min ≈ 0.9988 per step along the slow eigenvector of
XᵀX / m, so it takes ~20 000 steps to reach [0, 1] to 10 digits. Momentum (0.9)
gets there in ~2000.
"""

import numpy as np

import mlequations as mle

X = np.asarray([[1, 1], [1, 2], [1, 3]])
y = np.asarray([1, 2, 3])
lr = 0.01
checkpoints = (1, 10, 100, 1000, 2000, 5000, 10_000, 20_000)


def trajectory(momentum):
    """Theta at each checkpoint, recorded by the callback."""
    seen = {}

    def record(k, theta):
        if k in checkpoints:
            seen[k] = theta

    mle.gradient_descent(
        lambda theta: mle.least_squares_grad(theta, X, y),
        np.zeros(2),
        lr=lr,
        steps=checkpoints[-1],
        momentum=momentum,
        callback=record,
    )
    return seen


plain, heavy_ball = trajectory(0.0), trajectory(0.9)
print(f"{'steps':>6} | {'theta (lr 0.01)':>26} | {'theta (lr 0.01, momentum 0.9)':>30}")
for k in checkpoints:
    print(
        f"{k:>6} | {np.array2string(plain[k], precision=4):>26} | "
        f"{np.array2string(heavy_ball[k], precision=4):>30}"
    )

solution, *_ = np.linalg.lstsq(X.astype(float), y.astype(float), rcond=None)
lam = np.linalg.eigvalsh(X.T @ X / len(X))
print(
    f"least squares: {solution}; eigenvalues of XᵀX/m: {lam}; "
    f"contraction per step 1 - lr λ_min = {1 - lr * lam[0]:.5f}"
)

np.testing.assert_allclose(plain[1000], [0.1107, 0.9513], atol=5e-5)  # the guide's 1000 steps
np.testing.assert_allclose(plain[20_000], solution, atol=1e-10)
np.testing.assert_allclose(heavy_ball[2000], solution, atol=1e-10)
