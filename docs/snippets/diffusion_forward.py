"""The forward diffusion process on a 2-D spiral: x_t for several t.

Noise a spiral of 1500 points with the cosine schedule (T = 1000) and plot x_t
at t = 0, 100, 250, 500, 750 and 999: the signal fades as sqrt(alpha_bar_t)
shrinks and the cloud becomes a standard normal.

Run ``python docs/snippets/diffusion_forward.py --out-dir DIR``; the figure goes
to the current directory without ``--out-dir``.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import mlequations as mle

rng = np.random.default_rng(0)
theta = np.sqrt(rng.uniform(0.0, 1.0, 1500)) * 3 * np.pi  # (N,)
x0 = np.stack([theta * np.cos(theta), theta * np.sin(theta)], axis=1) / 5  # (N, 2)
x0 += 0.03 * rng.normal(size=x0.shape)

abar = mle.alpha_bar(mle.cosine_beta_schedule(1000))  # (T,)
steps = [0, 100, 250, 500, 750, 999]
noise = rng.normal(size=x0.shape)  # one draw, reused: each panel is the same jump, further

fig, axes = plt.subplots(1, len(steps), figsize=(2.4 * len(steps), 3.0), sharex=True, sharey=True)
for ax, t in zip(axes, steps, strict=True):
    x_t = mle.forward_diffusion(x0, noise, abar[t])
    ax.scatter(x_t[:, 0], x_t[:, 1], s=1.5, c=theta, cmap="viridis")
    ax.set_title(f"t = {t}\n$\\bar\\alpha_t$ = {abar[t]:.3f}", fontsize=9)
    ax.set_aspect("equal")
    ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xticks=[], yticks=[])
fig.tight_layout()

out = Path(sys.argv[sys.argv.index("--out-dir") + 1]) if "--out-dir" in sys.argv else Path()
out.mkdir(parents=True, exist_ok=True)
fig.savefig(out / "diffusion_forward.png", dpi=110, bbox_inches="tight")
plt.close(fig)
print(f"x_999: mean {x_t.mean(axis=0).round(2)}, std {x_t.std(axis=0).round(2)}")
