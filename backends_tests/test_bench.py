"""``mlequations._bench``: libraries timed apart, impossible readings flagged, the plot.

The table and timer of the command line are tested in ``test_cli.py``; these
tests pin what makes the numbers trustworthy (issue 23, point 2).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mlequations import _bench
from mlequations._backends import Backend, by_id


def _record(backend, op, case, impl, seconds, flops):
    return _bench.Record(
        backend,
        "cpu",
        op,
        case,
        impl,
        "float32",
        flops,
        seconds=seconds,
        gflops=flops / seconds / 1e9,
    )


def _matmuls(backend, times_ms):
    return [
        _record(backend, "matmul", f"{n}x{n}", "native", ms / 1e3, 2.0 * n**3)
        for n, ms in zip((256, 512, 1024), times_ms, strict=True)
    ]


def _conv(label):
    return next(c for c in _bench.cases("conv2d", quick=True) if c.label == label)


class TestFlags:
    def test_a_stalled_matmul_is_flagged_and_left_out_of_the_peak(self):
        # The reading: a small matmul 100x slower than a larger one.
        records = _matmuls("numpy", [40.0, 1.4, 11.0])
        _bench._derive(records)
        stalled, fine, big = records
        assert stalled.flag is not None
        assert "larger matmul" in stalled.flag
        assert stalled.seconds == pytest.approx(0.040)
        assert (stalled.gflops, stalled.matmul_fraction) == (None, None)  # nothing to quote
        assert fine.flag is None
        assert big.flag is None
        # The peak is the best unflagged size (1024: 195 GFLOP/s); 512 reads 98 %.
        assert big.matmul_fraction == pytest.approx(1.0)
        assert fine.matmul_fraction == pytest.approx(fine.gflops / big.gflops)

    def test_a_native_kernel_far_slower_than_its_neighbours_is_flagged(self):
        case = _conv("deep 3x3")
        records = [*_matmuls("numpy", [0.2, 1.4, 11.0]), *_matmuls("torch-cpu", [0.2, 1.4, 11.0])]
        records += [
            _record("numpy", "conv2d", case.label, "portable", 1e-4, case.flops),
            _record("numpy", "conv2d", case.label, "native", 1.2e-4, case.flops),
            _record("torch-cpu", "conv2d", case.label, "portable", 1.1e-4, case.flops),
            _record("torch-cpu", "conv2d", case.label, "native", 0.02, case.flops),  # 170x
        ]
        _bench._derive(records)
        numpy_portable, numpy_native, torch_portable, torch_native = records[-4:]
        assert "slower than the other readings" in torch_native.flag
        assert torch_portable.flag == "ratio to a flagged native reading"
        assert torch_portable.ratio is None
        assert numpy_portable.flag is None
        assert numpy_native.flag is None
        assert numpy_portable.ratio == pytest.approx(1e-4 / 1.2e-4)

    def test_faster_than_the_peak_allows_is_flagged(self):
        case = next(c for c in _bench.cases("softmax", quick=True))
        records = _matmuls("numpy", [0.2, 1.4, 11.0])  # peak about 192 GFLOP/s
        impossible = case.flops / 500e9  # 500 GFLOP/s of a formula nothing can shorten
        records.append(_record("numpy", "softmax", case.label, "native", impossible, case.flops))
        _bench._derive(records)
        assert records[-1].flag == "faster than the matmul peak allows for this case"

    def test_fast_algorithms_above_the_formulas_count_are_not_flagged(self):
        # Winograd on a 3x3 convolution and the causal half of attention really
        # beat the textbook count: 150 % of the peak is believable there.
        records = _matmuls("torch-cpu", [0.2, 1.4, 11.0])
        peak = max(r.gflops for r in records)
        conv = _conv("resnet 3x3")
        attention = next(c for c in _bench.cases("attention", quick=True) if "causal" in c.label)
        for case in (conv, attention):
            seconds = case.flops / (1.5 * peak * 1e9)
            records.append(_record("torch-cpu", case.op, case.label, "native", seconds, case.flops))
        _bench._derive(records)
        assert [r.flag for r in records] == [None] * len(records)
        assert records[-1].matmul_fraction == pytest.approx(1.5)

    def test_least_flops_per_case(self):
        causal = next(c for c in _bench.cases("attention") if c.label == "(1,1,16384,64) causal")
        assert causal.floor == pytest.approx(causal.flops * 16385 / 32768)
        assert _conv("resnet 3x3").floor <= _conv("resnet 3x3").flops / 4
        large = next(c for c in _bench.cases("conv2d") if c.label == "large 15x15")
        assert large.floor < large.flops / 10  # the FFT's count
        matmul = _bench.cases("matmul")[0]
        assert matmul.floor == matmul.flops

    def test_the_table_prints_no_rate_for_a_flagged_reading(self):
        records = _matmuls("numpy", [40.0, 1.4, 11.0])
        _bench._derive(records)
        lines = _bench.table(records).splitlines()
        stalled = next(line for line in lines if line.split()[:2] == ["matmul", "256x256"])
        assert "40.000?" in stalled
        assert "suspect [1]" in stalled
        assert "0.8" not in stalled  # its would-be GFLOP/s
        assert any(line.startswith("[1] suspect: over 10x slower than a larger") for line in lines)
        assert "Rerun on a quiet machine" in lines[-1]

    def test_quick_peak_sizes_are_compute_bound(self):
        # 64x64 and 128x128 fit in cache and finish in microseconds: timer and
        # thread start-up noise, not the peak.
        assert min(c.shapes[0][0] for c in _bench.cases("matmul", quick=True)) >= 256
        assert len(_bench.cases("matmul", quick=True)) >= 3


class TestIsolation:
    def test_a_worker_process_times_its_library_alone(self):
        numpy_backend = by_id("numpy")
        steps = []
        records = _bench._run_isolated(
            [numpy_backend], ["matmul"], True, "float32", 1, ["256x256"], steps.append
        )
        assert [r.case for r in records] == [c.label for c in _bench.cases("matmul", quick=True)]
        assert all(r.error is None and r.seconds for r in records)
        assert steps == [f"matmul {r.case} on numpy" for r in records]

    def test_a_worker_that_dies_is_an_error_row_not_a_crash(self):
        ghost = Backend("no-such-backend", "numpy")  # by_id fails in the child
        records = _bench._run_isolated([ghost], ["softmax"], True, "float32", 1, None, print)
        assert records
        assert all("died (exit code 1)" in (r.error or "") for r in records)

    @pytest.mark.skipif(
        importlib.util.find_spec("torch") is None, reason="needs a second library (torch)"
    )
    def test_several_libraries_run_one_process_each(self, monkeypatch):
        groups = []
        real = _bench._run_isolated

        def spy(backends, *args):
            groups.append([b.id for b in backends])
            return real(backends, *args)

        monkeypatch.setattr(_bench, "_run_isolated", spy)
        backends = [by_id("numpy"), by_id("torch-cpu")]
        records = _bench.run(backends, ["softmax"], quick=True, repeats=1, labels=["16x256"])
        assert groups == [["numpy"], ["torch-cpu"]]
        assert {r.backend for r in records if r.seconds} == {"numpy", "torch-cpu"}
        assert not [r for r in records if r.error]

    @pytest.mark.parametrize(
        "ids", [["torch-cpu", "jax-jit"], ["torch-cpu"]], ids=["two-libraries", "one-library"]
    )
    def test_compiled_libraries_run_one_fresh_process_each(self, ids, monkeypatch):
        # One library alone too: its compile times must be as cold as beside another.
        groups = []

        def spy(ids, job):
            groups.append(ids)
            return [_bench.CompileRecord(i, "conv2d", "c", "portable", "x") for i in ids]

        monkeypatch.setattr(_bench, "_compile_isolated", spy)
        records = _bench.compile_run([by_id(i) for i in ids], ["conv2d"], quick=True)
        assert groups == [[i] for i in ids]
        assert [r.backend for r in records] == ids

    def test_the_compile_process_starts_with_an_empty_inductor_cache(self, monkeypatch):
        import subprocess
        from pathlib import Path

        seen = {}

        def fake_run(command, **kwargs):
            seen.update(kwargs["env"])
            return subprocess.CompletedProcess(command, 1, b"", b"boom")

        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/warm")
        monkeypatch.setattr(_bench.subprocess, "run", fake_run)
        records = _bench._compile_isolated(
            ["torch-cpu"], (["conv2d"], True, "float32", 1, None, "eager")
        )
        cache = seen["TORCHINDUCTOR_CACHE_DIR"]
        assert cache != "/somewhere/warm"
        assert not Path(cache).exists()  # a directory of that run alone, gone with it
        assert "died (exit 1): boom" in (records[0].error or "")

    def test_compile_kernel_warms_the_compiler_before_the_timed_compile(self, monkeypatch):
        pytest.importorskip("torch")
        warmed = []
        monkeypatch.setattr(_bench, "warm_compiler", lambda *a: warmed.append(a))
        compiled = _bench.compile_kernel(lambda x: x + 1, by_id("torch-cpu"), "eager")
        assert warmed == [("torch", "eager")]
        import torch

        assert torch.equal(compiled(torch.ones(3)), torch.full((3,), 2.0))

    def test_one_library_runs_in_process(self, monkeypatch):
        monkeypatch.setattr(_bench, "_run_isolated", None)  # would fail if called
        records = _bench.run([by_id("numpy")], ["softmax"], quick=True, repeats=1)
        assert records
        assert not [r for r in records if r.error]


def test_plot_draws_every_operation_with_flags_and_errors(tmp_path):
    pytest.importorskip("matplotlib")
    records = _matmuls("numpy", [40.0, 1.4, 11.0])
    for case in _bench.cases("conv2d", quick=True):
        records.append(_record("numpy", "conv2d", case.label, "portable", 2e-4, case.flops))
        records.append(_record("numpy", "conv2d", case.label, "native", 3e-4, case.flops))
    records.append(
        _bench.Record(
            "jax-jit", "cpu", "conv2d", "stem 7x7 s2", "native", "float32", 1.0, error="x"
        )
    )
    _bench._derive(records)
    path = tmp_path / "bench.png"
    _bench.plot(records, str(path), title="test")
    from matplotlib.image import imread

    image = imread(path)
    assert image.shape[1] == 1000  # 10 in at 100 dpi: near 1:1 in the docs column
    assert image.shape[0] > 2 * 390  # one row per operation: matmul and conv2d


def test_plot_without_timings_says_so(tmp_path):
    pytest.importorskip("matplotlib")
    failed = _bench.Record(
        "numpy", "cpu", "softmax", "16x256", "portable", "float32", 1.0, error="x"
    )
    _bench.plot([failed], str(tmp_path / "empty.png"))
    assert (tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"


class TestTrainingRows:
    @pytest.mark.parametrize("backend_id", ["torch-cpu", "jax-jit"])
    def test_portable_and_native_steps_give_the_same_gradients(self, backend_id):
        backend = by_id(backend_id)
        if backend.skip_reason():
            pytest.skip(backend.skip_reason())
        case = _bench.cases("attention-train", quick=True)[1]  # causal
        impls = _bench.kernels(case, backend)
        args = _bench.make_inputs(case, backend)
        ours, theirs = (impls[name](*args) for name in ("portable", "native"))
        assert len(ours) == len(theirs) == 3
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), atol=1e-5)

    def test_no_training_step_without_autodiff(self):
        case = _bench.cases("attention-train", quick=True)[0]
        assert _bench.kernels(case, by_id("numpy")) == {}

    def test_peak_memory_is_measured_beside_the_time(self):
        jax_backend = by_id("jax-jit")
        if jax_backend.skip_reason():
            pytest.skip(jax_backend.skip_reason())
        case = _bench.cases("attention-train", quick=True)[0]
        temp = _bench.peak_memory(case, jax_backend, "portable")
        assert temp is not None
        assert 0 < temp < 64
        forward = _bench.cases("attention", quick=True)[0]
        rss = _bench.peak_memory(forward, by_id("numpy"), "portable")
        assert rss is not None
        assert 0 <= rss < 64


class TestOverhead:
    """The per-call overhead group: natives that compute the same thing, and its table."""

    # JAX's natives are jax.nn's and jax.scipy's own functions; compiling some twenty
    # of them took 11 s here, too long for the suite's budget.
    @pytest.mark.parametrize("backend_id", ["numpy", "torch-cpu"])
    def test_every_native_counterpart_computes_the_portable_result(self, backend_id):
        # A native call that computes something else would make the ratio meaningless.
        from mlequations._registry import equations

        backend = by_id(backend_id)
        if backend.skip_reason():
            pytest.skip(backend.skip_reason())
        compared = []
        for eq in equations():
            if backend.jit and not eq.jit:
                continue
            try:
                args, impls = _bench.overhead_kernels(eq, backend, "float64")
            except TypeError:  # non-array inputs under jax.jit
                continue
            if "native" not in impls:
                continue
            ours, theirs = (backend.to_numpy(impls[k](*args)) for k in ("portable", "native"))
            if eq.compare is not None:  # eigenvectors: defined up to sign
                ours, theirs = eq.compare(ours), eq.compare(theirs)
            for a, b in zip(_leaves(ours), _leaves(theirs), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9, err_msg=eq.name)
            compared.append(eq.name)
        assert {"softmax", "log_softmax", "logsumexp", "sigmoid"} <= set(compared)
        assert {"entropy", "kl_divergence", "cross_entropy", "linear"} <= set(compared)
        if backend.library == "torch":
            assert {"cross_entropy_loss", "mse", "attention", "conv2d"} <= set(compared)

    def test_rows_time_both_and_give_the_ratio(self):
        rows = _bench.overhead(by_id("numpy"), ["softmax", "pca"], calls=2, repeats=2)
        softmax, pca = rows
        assert softmax.portable > 0
        assert softmax.native > 0
        assert softmax.ratio == pytest.approx(softmax.portable / softmax.native)
        assert (pca.native, pca.ratio) == (None, None)  # no native counterpart
        table = _bench.overhead_table(rows)
        assert "softmax" in table
        assert f"{softmax.ratio:.2f}" in table


def _leaves(x):
    return [leaf for item in x for leaf in _leaves(item)] if isinstance(x, tuple | list) else [x]
