"""The command line: info, check and bench (with its JSON schema, plot and GPU sync)."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import mlequations
from mlequations import _bench, cli
from mlequations._backends import BACKENDS
from mlequations.cli import main

CPU_BENCH = [b for b in BACKENDS if b.id in ("numpy", "torch-cpu", "jax-jit")]


def test_info_lists_every_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for backend in BACKENDS:
        assert backend.id in out
    assert "no GPU" in out or "cuda" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlequations {mlequations.__version__}"


@pytest.mark.parametrize("command", [[], ["info"], ["check"], ["bench"]])
def test_help_is_plain_text_and_lists_backend_ids(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "``" not in out, out  # no raw reST
    if command in (["check"], ["bench"]):
        for backend in BACKENDS:
            assert backend.id in re.findall(r"[\w-]+", out), backend.id  # unbroken at "-"


def test_unknown_backend_is_an_error_that_lists_the_ids(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--backend", "nump"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown backend 'nump'" in err
    assert all(backend.id in err for backend in BACKENDS)


def test_info_aligns_long_device_names(capsys):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("backend "))
    table = lines[header : header + 1 + len(BACKENDS)]
    column = table[0].index("status")
    for line in table[1:]:
        assert line[column - 1] == " ", line
        assert line[column] != " ", line
    meta = next(line for line in table if line.startswith("torch-meta "))
    if "skipped" not in meta:
        assert "no `check` column" in meta


def test_check_passes_and_prints_a_table(capsys):
    assert main(["check", "--backend", "numpy", "--only", "softmax", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "softmax" in out
    assert "all passed" in out


def test_check_footer_explains_every_column(capsys):
    assert main(["check", "--backend", "numpy-readonly", "--only", "sigmoid", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"numpy-readonly:\s+NumPy with read-only inputs", out)


def test_check_footer_says_why_torch_meta_has_no_column(capsys):
    pytest.importorskip("torch")
    assert main(["check", "--only", "sigmoid", "--jobs", "1", "--no-cache"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert "torch-cpu" in header
    assert "torch-meta" not in header
    assert re.search(r"torch-meta:\s+PyTorch's meta device: shapes and dtypes, no values", out)


def test_check_refuses_torch_meta_with_its_reason(capsys):
    pytest.importorskip("torch")
    assert main(["check", "--backend", "torch-meta", "--only", "sigmoid", "--jobs", "1"]) == 0
    assert "skipped torch-meta: holds no values" in capsys.readouterr().out


def test_check_in_worker_processes_agrees_with_one_process(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    args = ["check", "--backend", "numpy", "--backend", "strict", "--only", "softmax"]
    assert main([*args, "--jobs", "1"]) == 0
    one = capsys.readouterr()
    assert main([*args, "--jobs", "2"]) == 0
    two = capsys.readouterr()
    table = [line for line in one.out.splitlines() if line.startswith("softmax")]
    assert len(table) == 2
    assert table == [line for line in two.out.splitlines() if line.startswith("softmax")]
    # stderr is not a terminal here: plain lines, one as each backend starts and ends.
    for backend_id in ("numpy", "strict"):
        assert f"check: {backend_id} ..." in two.err
        assert f"check: {backend_id} done" in two.err


def test_check_says_why_a_backend_cannot_run_here(capsys):
    from mlequations._backends import by_id

    absent = [b.id for b in BACKENDS if b.gpu and b.skip_reason() is not None]
    if not absent:
        pytest.skip("every GPU backend runs on this machine")
    for jobs in ("1", "2"):  # asked in this process, then in the workers
        args = ["check", "--backend", "numpy", "--backend", absent[0], "--only", "sigmoid"]
        assert main([*args, "--jobs", jobs, "--no-cache"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].split() == ["equation", "numpy"]
        assert f"skipped {absent[0]}: {by_id(absent[0]).skip_reason()}" in out


def test_check_leaves_torch_and_jax_to_its_workers(tmp_path):
    # The main process only schedules: importing torch and JAX there cost seconds
    # before any worker started.
    code = (
        "import sys\n"
        "from mlequations.cli import main\n"
        "if __name__ == '__main__':\n"
        "    assert main(['check', '--only', 'sigmoid', '--jobs', '2']) == 0\n"
        "    print(sorted({'torch', 'jax', 'dask'} & set(sys.modules)))\n"
    )
    script = tmp_path / "check.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_check_workers_compile_quickly_and_keep_the_users_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.setattr(cli, "_QUEUE", None)
    cli._worker_init(None)
    flags = os.environ["XLA_FLAGS"].split()
    assert "--xla_backend_optimization_level=0" in flags
    assert flags[-1] == "--xla_force_host_platform_device_count=1"  # the user's come last


def test_python_dash_m_check_starts_its_workers(tmp_path):
    # Workers are spawned, and import __main__ again: it must not rerun the command.
    result = subprocess.run(
        [sys.executable, "-m", "mlequations", "check", "--backend", "numpy",
         "--only", "sigmoid", "--jobs", "2"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("all passed") == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_names_backend_and_equation():
    stream = _Terminal()
    progress = cli._Progress([("jax", "float32"), ("jax", "float64")], 2, stream)
    progress("start", "jax", "float32", "gp_posterior")
    assert "0/4" in stream.getvalue()
    assert "jax float32: gp_posterior" in stream.getvalue()
    progress("done", "jax", "float32", "gp_posterior")
    assert "1/4" in stream.getvalue().rsplit("\r", 1)[-1]
    progress("skip", "jax", "float64", "")  # a backend that cannot run counts as done
    assert "3/4" in stream.getvalue().rsplit("\r", 1)[-1]
    progress.close()


def test_progress_without_a_terminal_prints_plain_lines():
    stream = io.StringIO()
    progress = cli._Progress([("dask", "float32")], 1, stream)
    progress("start", "dask", "float32", "softmax")
    progress("done", "dask", "float32", "softmax")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "check: dask ..."
    assert lines[1].startswith("check: dask done (")
    assert "\r" not in stream.getvalue()


def test_check_fails_loudly_on_a_wrong_equation(capsys, monkeypatch):
    from mlequations import _registry
    from mlequations._registry import Equation

    wrong = Equation("softmax", lambda x: x * 2.0, lambda rng: (rng.normal(size=3),), lambda x: x)
    monkeypatch.setattr(_registry, "equations", lambda: [wrong])
    monkeypatch.setattr("mlequations.cli.equations", lambda: [wrong])
    assert main(["check", "--backend", "numpy", "--jobs", "1"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "backend_ids", [["numpy"], [b.id for b in CPU_BENCH]], ids=["numpy-alone", "all-cpu"]
)
def test_bench_quick_writes_table_json_and_plot(backend_ids, tmp_path, capsys):
    args = [
        "bench",
        "--quick",
        "--repeats",
        "1",
        "--no-progress",
        "--json",
        str(tmp_path / "b.json"),
        "--plot",
        str(tmp_path / "b.png"),
    ]
    for backend_id in backend_ids:
        args += ["--backend", backend_id]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "port/nat" in out
    document = json.loads((tmp_path / "b.json").read_text())
    for record in document["records"]:
        jsonschema.validate(record, _bench.RECORD_SCHEMA)
        assert record["error"] is None, record
    ops = {(r["backend"], r["op"]) for r in document["records"]}
    for backend_id in backend_ids:
        assert {(backend_id, op) for op in ("matmul", "softmax", "attention", "conv2d")} <= ops
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timer_syncs_once_per_timed_run_and_never_times_warmup():
    calls = []
    ticks = iter(range(100))

    def fn(x):
        calls.append("call")
        return x

    def sync(x):
        calls.append("sync")
        return x

    timing = _bench.time_call(fn, [1], sync, repeats=3, warmup=2, clock=lambda: next(ticks))
    # 2 warm-ups + 3 timed runs, each call followed by exactly one sync.
    assert calls == ["call", "sync"] * 5
    assert timing.runs == 3
    assert timing.best == 1  # each timed run spans one clock tick: start and stop


def test_interleaved_timer_alternates_and_drops_a_failing_implementation():
    calls = []
    ticks = iter(range(100))

    def impl(name):
        def fn(x):
            calls.append(name)
            if name == "broken" and len(calls) > 3:
                raise RuntimeError("out of memory")
            return x

        return fn

    fns = {name: impl(name) for name in ("portable", "native", "broken")}
    timings = _bench.time_interleaved(
        fns, [1], lambda x: x, repeats=2, warmup=1, clock=lambda: next(ticks)
    )
    # Round by round, each implementation once, each round starting one later;
    # "broken" raises on its second call and is dropped from the third round.
    rounds = [["portable", "native", "broken"], ["native", "broken", "portable"]]
    assert calls == [*rounds[0], *rounds[1], "portable", "native"]
    assert timings["portable"].runs == timings["native"].runs == 2
    assert isinstance(timings["broken"], RuntimeError)


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_steady_allocator_serves_large_blocks_from_the_heap():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = _Mallinfo2
    assert _bench.steady_allocator()
    before = libc.mallinfo2()
    block = np.ones(16 << 20, dtype=np.uint8)  # above glibc's default mmap threshold
    after = libc.mallinfo2()
    assert after.hblks == before.hblks  # no new mmapped block, which a free would unmap
    assert after.uordblks >= before.uordblks + block.nbytes  # but heap memory, kept when freed


def test_a_failing_backend_is_a_row_not_a_crash(monkeypatch):
    numpy_backend = next(b for b in BACKENDS if b.id == "numpy")

    def broken(case, backend):
        raise RuntimeError("device lost")

    monkeypatch.setattr(_bench, "kernels", broken)
    records = _bench.run([numpy_backend], ["softmax"], quick=True, repeats=1)
    assert records
    assert all(r.error == "RuntimeError: device lost" for r in records)


def test_benchmark_suite_runs_once_at_quick_sizes():
    # The benchmarks are not part of the test run; this keeps them from rotting:
    # every benchmark, once (--benchmark-disable), on the quick ladder.
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
            "--benchmark-disable", "-W", "ignore::pytest_benchmark.logger.PytestBenchmarkWarning",
        ],
        cwd=root,
        env={**os.environ, "MLEQUATIONS_BENCH_QUICK": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_bench_compile_shows_compile_and_run_times_side_by_side(tmp_path, capsys):
    # A tiny case, and torch's "eager" compile backend (dynamo traces, inductor
    # generates no code), so that it takes seconds; the benchmarks use inductor.
    # One library, so in this process (several run one process each: test_bench.py).
    backend_ids = [b.id for b in CPU_BENCH if b.library == "torch" and not b.skip_reason()]
    if not backend_ids:
        pytest.skip("torch is not installed")
    args = ["bench", "--compile", "--quick", "--op", "conv2d", "--size", "resnet 3x3"]
    args += ["--compile-backend", "eager", "--repeats", "1", "--no-progress"]
    args += ["--json", str(tmp_path / "c.json"), "--backend", "numpy"]
    for backend_id in backend_ids:
        args += ["--backend", backend_id]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "skipped numpy: no compiler" in captured.err
    header = captured.out.splitlines()[0]
    for column in ("compile s", "run ms", "eager ms", "compile p/n", "run p/n"):
        assert column in header
    rows = json.loads((tmp_path / "c.json").read_text())["compiled"]
    assert {(r["backend"], r["impl"]) for r in rows} == {
        (b, impl) for b in backend_ids for impl in ("portable", "native")
    }
    for r in rows:
        assert r["error"] is None, r
        assert r["compile_seconds"] > 0
        assert r["seconds"] > 0
        assert r["compiler"] == ("jax.jit" if r["backend"] == "jax-jit" else "torch.compile[eager]")
        assert (r["eager_seconds"] is not None) == (r["backend"] == "torch-cpu")
        if r["impl"] == "portable":
            assert r["compile_ratio"] == pytest.approx(
                r["compile_seconds"] / _twin(rows, r)["compile_seconds"]
            )
            assert r["ratio"] == pytest.approx(r["seconds"] / _twin(rows, r)["seconds"])
        line = next(
            ln for ln in captured.out.splitlines() if r["backend"] in ln and r["impl"] in ln
        )
        assert f"{r['compile_seconds']:.2f}" in line


def _twin(rows, row):
    return next(r for r in rows if r["backend"] == row["backend"] and r["impl"] == "native")
