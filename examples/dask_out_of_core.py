"""Least squares and Gaussian naive Bayes on a design matrix larger than the cluster's memory.

The same portable functions that run on NumPy run here on a lazily generated
Dask array: ``least_squares_grad`` and ``gradient_descent`` fit a linear model,
``GaussianNaiveBayes`` a classifier, and nothing in mlequations knows it is on
a cluster. The matrix is never held anywhere: each pass regenerates its chunks
from the seed, and only the small results (a gradient, class statistics) travel
back.

Run on a local cluster of two workers with 2 GB each (loopback only, no
dashboard), on a 10 GB matrix::

    python examples/dask_out_of_core.py --rows 12_500_000 --features 100

or against a running scheduler::

    python examples/dask_out_of_core.py --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster, progress

import mlequations as mle


def design_matrix(rows: int, features: int, chunk_rows: int, seed: int) -> tuple[Any, Any, Any]:
    """A lazy (rows, features) float64 matrix, a linear target with noise, and class labels."""
    rng = da.random.default_rng(seed)
    X = rng.standard_normal((rows, features), chunks=(chunk_rows, features))
    theta_true = np.linspace(-1.0, 1.0, features)
    y = X @ theta_true + 0.1 * rng.standard_normal(rows, chunks=chunk_rows)
    labels = (y > 0).astype(np.int64)
    return X, y, labels


def fit_least_squares(X: Any, y: Any, *, steps: int, lr: float, show: bool) -> Any:
    """Gradient descent on (1/2m)‖Xθ − y‖², one pass over X per step.

    Each gradient is persisted on the cluster as soon as it is asked for, so a
    step's graph holds a (features,) vector, not the matrix: memory stays at a
    few chunks per worker, whatever the number of rows.
    """

    def gradient(theta: Any) -> Any:
        g = mle.least_squares_grad(theta, X, y).persist()
        if show:
            progress(g)
            print()
        return g

    theta0 = da.zeros(X.shape[1], chunks=-1)
    return mle.gradient_descent(gradient, theta0, lr=lr, steps=steps)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the example; returns its figures (also printed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", help="address of a running scheduler (default: local)")
    parser.add_argument("--rows", type=int, default=12_500_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GB", help="per worker, local cluster only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            host="127.0.0.1",
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        X, y, labels = design_matrix(args.rows, args.features, args.chunk_rows, args.seed)
        gib = X.nbytes / 2**30
        print(f"X: {X.shape} float64 = {gib:.1f} GiB in {X.npartitions} chunks, generated lazily")
        start = time.perf_counter()
        theta = fit_least_squares(X, y, steps=args.steps, lr=args.lr, show=not args.quiet).compute()
        ls_seconds = time.perf_counter() - start

        start = time.perf_counter()
        classes = da.from_array(np.asarray([0, 1]))
        model = mle.GaussianNaiveBayes().fit(X, labels, classes=classes)
        model.theta_, model.var_, model.class_prior_ = dask.persist(
            model.theta_, model.var_, model.class_prior_
        )
        # Accuracy on the first chunk of rows, computed where the data is.
        head = slice(0, args.chunk_rows)
        accuracy = float(model.score(X[head], labels[head]).compute())
        nb_seconds = time.perf_counter() - start

        memory = client.run(_peak_rss)
        result = {
            "gib": gib,
            "theta": theta,
            "least_squares_seconds": ls_seconds,
            "naive_bayes_accuracy": accuracy,
            "naive_bayes_seconds": nb_seconds,
            "worker_peak_rss_gib": {w: m / 2**30 for w, m in memory.items()},
        }
        print(
            f"least squares: {args.steps} steps in {ls_seconds:.1f} s; "
            f"theta[:4] = {np.round(theta[:4], 4)}"
        )
        print(f"naive Bayes: fit + score in {nb_seconds:.1f} s; accuracy {accuracy:.4f}")
        for worker, peak in result["worker_peak_rss_gib"].items():
            print(f"worker {worker}: peak RSS {peak:.2f} GiB")
        return result
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
