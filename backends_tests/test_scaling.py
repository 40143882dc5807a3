"""Beyond one machine: lazy Dask arrays, a dask.distributed cluster, sharded JAX arrays.

The per-function Dask checks live in each chapter's tests and in the registry test
(``dask`` is a backend of the matrix, and ``Backend.call`` fails any function
that computes inside). Here: chunk structure, the out-of-core example on a real
(local) cluster, and JAX sharding across 8 host devices.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mlequations as mle
from mlequations._backends import by_id

from ._assert import assert_close

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(7)


@pytest.fixture
def dask_backend():
    backend = by_id("dask")
    reason = backend.skip_reason()
    if reason:
        pytest.skip(reason)
    return backend


def _batched(backend, a, chunks):
    da = backend.module
    return da.from_array(a.astype(np.float32), chunks=chunks)


class TestDaskKeepsBatchChunks:
    """Functions that work per sample keep the batch chunks: no rechunk, no gather."""

    def test_attention(self, dask_backend):
        q, k, v = (RNG.standard_normal((6, 2, 8, 4)) for _ in range(3))
        args = [_batched(dask_backend, a, (2, -1, -1, -1)) for a in (q, k, v)]
        out = dask_backend.call(mle.attention, *args, is_causal=True)
        assert out.chunks[0] == (2, 2, 2)
        expected = mle.attention(q, k, v, is_causal=True)
        assert_close(out, expected, dask_backend, "float32")

    def test_conv2d(self, dask_backend):
        x, w = RNG.standard_normal((6, 3, 10, 10)), RNG.standard_normal((4, 3, 3, 3))
        xd = _batched(dask_backend, x, (3, -1, -1, -1))
        wd = _batched(dask_backend, w, -1)
        out = dask_backend.call(mle.conv2d, xd, wd, padding=1)
        assert out.chunks[0] == (3, 3)
        assert_close(out, mle.conv2d(x, w, padding=1), dask_backend, "float32")

    @pytest.mark.parametrize("fn", [mle.softmax, mle.log_softmax, mle.sigmoid])
    def test_activations(self, dask_backend, fn):
        x = RNG.standard_normal((9, 5))
        out = dask_backend.call(fn, _batched(dask_backend, x, (3, -1)))
        assert out.chunks == ((3, 3, 3), (5,))
        assert_close(out, fn(x), dask_backend, "float32")

    def test_forward_diffusion(self, dask_backend):
        x0, noise = RNG.standard_normal((6, 2, 4)), RNG.standard_normal((6, 2, 4))
        alpha = RNG.uniform(0.1, 0.9, size=6)
        args = [_batched(dask_backend, a, (2,) + (-1,) * (a.ndim - 1)) for a in (x0, noise, alpha)]
        out = dask_backend.call(mle.forward_diffusion, *args)
        assert out.chunks[0] == (2, 2, 2)
        assert_close(out, mle.forward_diffusion(x0, noise, alpha), dask_backend, "float32")

    def test_pca_on_tall_and_skinny_data(self, dask_backend):
        x = RNG.standard_normal((400, 5)) @ RNG.standard_normal((5, 5))
        xd = dask_backend.module.from_array(x, chunks=(100, 5))  # Dask's TSQR SVD
        result = dask_backend.call(mle.pca, xd, n_components=3)
        from sklearn.decomposition import PCA

        ref = PCA(n_components=3, svd_solver="full").fit(x)
        assert_close(result.components, ref.components_, dask_backend, "float64")
        assert_close(result.explained_variance, ref.explained_variance_, dask_backend, "float64")


class TestDaskSaysWhatItCannotDo:
    @pytest.mark.parametrize("fn", [mle.eigh, mle.eig])
    def test_eigensolvers_name_dask(self, dask_backend, fn):
        a = dask_backend.module.from_array(np.eye(4), chunks=2)
        with pytest.raises(NotImplementedError, match="dask"):
            fn(a)


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="dask.distributed not installed (pip install 'mlequations[dask]')",
)
def test_out_of_core_example_on_a_local_cluster(dask_backend):
    """The example script, small, on 2 worker processes on loopback, equals NumPy."""
    spec = importlib.util.spec_from_file_location(
        "example", ROOT / "examples" / "dask_out_of_core.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = [
        "--rows",
        "40000",
        "--features",
        "8",
        "--chunk-rows",
        "10000",
        "--steps",
        "4",
        "--memory-limit",
        "1GB",
        "--quiet",
    ]
    result = example.main(args)
    X, y, _ = example.design_matrix(40000, 8, 10000, seed=0)
    X, y = np.asarray(X.compute(scheduler="sync")), np.asarray(y.compute(scheduler="sync"))
    theta = np.zeros(8)
    for _ in range(4):  # the same 4 gradient steps, in plain float64 NumPy
        theta = theta - 0.5 * X.T @ (X @ theta - y) / len(y)
    np.testing.assert_allclose(result["theta"], theta, rtol=1e-10)
    assert result["naive_bayes_accuracy"] > 0.9


SHARDED = textwrap.dedent("""
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import mlequations as mle

    assert len(jax.devices()) == 8, jax.devices()
    mesh = jax.make_mesh((8,), ("batch",), axis_types=(AxisType.Auto,))
    batch = NamedSharding(mesh, P("batch"))
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((16, 4, 64, 16)), jnp.float32) for _ in range(3))
    x = jnp.asarray(rng.standard_normal((16, 3, 20, 20)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((8, 3, 3, 3)), jnp.float32)
    attend = jax.jit(lambda a, b, c: mle.attention(a, b, c, is_causal=True))
    convolve = jax.jit(lambda a, b: mle.conv2d(a, b, padding=1))
    report = {}
    for name, fn, args in [("attention", attend, (q, k, v)), ("conv2d", convolve, (x, w))]:
        single = fn(*args)
        sharded_args = [jax.device_put(args[0], batch), *args[1:]]
        if name == "attention":
            sharded_args = [jax.device_put(a, batch) for a in args]
        out = fn(*sharded_args)
        report[name] = {
            "max_abs_diff": float(jnp.max(jnp.abs(out - single))),
            "devices": len(out.sharding.device_set),
            "spec": str(out.sharding.spec),
            "shards": [list(s.data.shape) for s in out.addressable_shards][:1],
        }
    print(json.dumps(report))
""")


def test_sharded_jax_attention_and_conv2d_on_8_host_devices():
    backend = by_id("jax")
    if backend.skip_reason():
        pytest.skip(backend.skip_reason())
    result = subprocess.run(
        [sys.executable, "-c", SHARDED], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("attention", "conv2d"):
        assert report[name]["devices"] == 8, report
        assert "'batch'" in report[name]["spec"], report
        assert report[name]["shards"][0][0] == 2, report  # 16 samples / 8 devices
        assert report[name]["max_abs_diff"] <= 1e-5, report


@pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="dask.distributed not installed (pip install 'mlequations[dask]')",
)
def test_gaussian_naive_bayes_finds_its_classes_on_a_local_cluster(dask_backend, monkeypatch):
    """Issue 22: ``fit(X, y)`` on Dask without ``classes=`` runs one computation on the
    cluster (the distinct labels), ``predict*`` none; results equal scikit-learn's."""
    from dask.distributed import Client, LocalCluster
    from sklearn.naive_bayes import GaussianNB

    rng = np.random.default_rng(22)
    labels = np.asarray([4, -1, 9])[rng.integers(0, 3, size=3000)]
    X = rng.normal(size=(3000, 5)) + labels[:, None] / 4
    da = dask_backend.module
    Xd, yd = da.from_array(X, chunks=(500, -1)), da.from_array(labels, chunks=500)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="1GB",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        computations = []
        get = client.get

        def counting(*args, **kwargs):
            computations.append(args[1] if len(args) > 1 else kwargs.get("keys"))
            return get(*args, **kwargs)

        monkeypatch.setattr(client, "get", counting)
        model = mle.GaussianNaiveBayes().fit(Xd, yd)
        assert len(computations) == 1, computations  # unique_values(y), once
        proba, predicted = model.predict_proba(Xd), model.predict(Xd)
        assert len(computations) == 1, computations  # predict* stay lazy
        assert model.classes_.shape == (3,)
        assert proba.chunks[0] == Xd.chunks[0]  # per-chunk work, no gather
        proba, predicted, theta = (a.compute() for a in (proba, predicted, model.theta_))
    oracle = GaussianNB().fit(X, labels)
    np.testing.assert_array_equal(model.classes_.compute(scheduler="sync"), oracle.classes_)
    np.testing.assert_allclose(theta, oracle.theta_, rtol=1e-12)
    np.testing.assert_allclose(proba, oracle.predict_proba(X), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(predicted, oracle.predict(X))
