"""Measured plan choice (issue 21): the accelerator rules, the tuning cache, autotuning.

Every test points the cache at its own ``tmp_path`` (the autouse fixture), so
nothing here reads or writes the user's cache.
"""

from __future__ import annotations

import importlib
import json
import warnings

import numpy as np
import pytest

import mlequations as mle
from mlequations import _tune, _xp, convolution

from ._libs import jax_or_skip, torch_or_skip

attention = importlib.import_module("mlequations.attention")  # the module, not mle.attention


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLEQUATIONS_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("MLEQUATIONS_AUTOTUNE", raising=False)
    monkeypatch.setattr(_tune, "_loaded", {})
    monkeypatch.setattr(_tune, "_warned", set())
    monkeypatch.setattr(_tune, "_wheres", {})  # the memo of which device is an accelerator
    return tmp_path


def _qkv(L=64, H=2):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, H, L, 16)).astype(np.float32) for _ in range(3)]


def _plan(q, k, v, causal=False):
    """The plan attention picks for these arrays with block_size=None."""
    xp = _xp.namespace(q)
    return attention._static(q, k, v, None, causal, None, False, None, xp).plan


def _write(path, data):
    (path / "tune.json").write_text(json.dumps(data))


def _cache_of(q, plan, causal=False):
    """A cache file whose one entry forces `plan` for the bucket of `q`."""
    bucket = _tune._attention_bucket((q, q, q, None), causal)
    key = _tune._key("attention", q, q.dtype, bucket)
    return {"format": "mlequations-tune", "version": 1, "entries": {key: {"plan": plan}}}


class TestTune:
    def test_a_winner_must_beat_the_rule_again_head_to_head(self, monkeypatch):
        # A slow spell in the first race crowns a plan that is slower than the rule's:
        # the two-way rematch keeps the rule's plan.
        from mlequations import _bench

        races = []

        def race(fns, args, sync, *, repeats, warmup):
            races.append(list(fns))
            fast = "rows=64" if len(races) == 1 else default
            return {
                n: _bench.Timing(best=1.0, median=1.0 if n == fast else 2.0, runs=1) for n in fns
            }

        q, k, v = _qkv(L=256, H=8)
        default = _tune._plan_label(tuple(_plan(q, k, v)))
        monkeypatch.setattr(_bench, "time_interleaved", race)
        result = mle.tune(q, k, v, op="attention", repeats=1, save=False)
        assert races[1] == ["rows=64", default]  # the rematch: the first winner and the rule
        assert result.winner == default
        # A winner that wins the rematch too is kept.
        races.clear()
        monkeypatch.setattr(
            _bench,
            "time_interleaved",
            lambda fns, *a, **kw: {
                n: _bench.Timing(best=1.0, median=1.0 if n == "rows=64" else 2.0, runs=1)
                for n in fns
            },
        )
        assert mle.tune(q, k, v, op="attention", repeats=1, save=False).winner == "rows=64"

    def test_cpu_candidates_keep_their_tiles_small(self):
        # On a CPU no candidate but the rule's plan and its halves holds more than 2**20
        # scores per tile (above that, glibc's history decides the speed); an
        # accelerator may go larger.
        L = S = 1024
        batch = 32
        default = (128, 2048, False, False)  # the causal rule's blocks: 4M scores a tile
        halves = [(64, 2048, False, False), (128, 512, False, False)]  # S = 1024 keys
        for on_accelerator, bound in ((False, _tune._CPU_CANDIDATE_TILE), (True, 2**26)):
            plans = _tune._attention_candidates(default, L, S, batch, on_accelerator)
            assert plans[0] == default
            assert set(halves) <= set(plans)
            tiles = [
                min(rows or L, L) * (keys or S) * (1 if per_head else batch)
                for rows, keys, per_head, looped in plans
                if (rows, keys, per_head, looped) not in [default, *halves]
            ]
            assert tiles
            assert max(tiles) <= bound
            assert on_accelerator == (max(tiles) > _tune._CPU_CANDIDATE_TILE)
        assert _tune._CPU_CANDIDATE_TILE == 2**20
        # JAX's compiled loop keeps the larger steps on a CPU too (XLA plans its buffers).
        looped = _tune._attention_candidates((256, None, False, True), 4096, 4096, 8, False)
        assert max(rows for rows, *_ in looped) * 4096 * 8 > _tune._CPU_CANDIDATE_TILE

    def test_a_second_run_checks_the_cached_plan(self, cache_dir):
        # After `tune` has stored a plan, the next one (save=False) times it among the
        # candidates, even a plan outside the candidate bounds, and reports cached/best.
        q, k, v = _qkv(L=128, H=2)
        assert mle.tune(q, k, v, op="attention", repeats=1, save=False).cached is None
        _write(cache_dir, _cache_of(q, [16, 32, False, False]))
        _tune._loaded.clear()
        again = mle.tune(q, k, v, op="attention", repeats=1, save=False)
        assert again.cached == "rows=16 keys=32"
        assert again.cached in again.seconds
        fastest = min(again.seconds.values())
        assert again.cached_over_best == pytest.approx(again.seconds[again.cached] / fastest)
        assert again.cached_over_best >= 1.0
        table = _tune.table([("numpy", "(1,2,128,16)", again)])
        assert "cached/best" in table.splitlines()[0]
        assert f"{again.cached_over_best:.2f}" in table.splitlines()[1]

    def test_writes_the_winner_under_the_right_key(self, cache_dir):
        q, k, v = _qkv()
        result = mle.tune(q, k, v, op="attention", is_causal=True, repeats=1)
        data = json.loads((cache_dir / "tune.json").read_text())
        assert (data["format"], data["version"]) == ("mlequations-tune", 1)
        entry = data["entries"][result.key]
        op, library, device, dtype, bucket = result.key.split(" | ")
        assert (op, library.split()[0], dtype) == ("attention", "numpy", "float32")
        assert device.startswith(f"cpu {_tune.cpu_model()}")
        assert bucket == "B2 L64 S64 E16 causal"
        assert entry["label"] == result.winner in result.seconds
        # The fastest of the first race, or the rule's plan if it lost the rematch.
        assert result.winner in (
            min(result.seconds, key=result.seconds.__getitem__),
            result.default,
        )
        assert entry["machine"]["cores"] >= 1
        assert entry["machine"]["numpy"] == np.__version__
        assert len(result.seconds) >= 3  # the rule's plan is one candidate among several

    def test_conv2d_winner_is_a_method(self, cache_dir):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
        w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
        result = mle.tune(x, w, op="conv2d", padding=1, repeats=1)
        assert set(result.seconds) == {"im2col", "shift", "fft", "winograd"}
        assert result.plan == result.winner
        assert result.key.endswith("N2 C8 K8 out16x16 k3x3 s1x1 d1x1 dense")
        assert json.loads((cache_dir / "tune.json").read_text())["entries"][result.key]

    def test_unknown_op_and_option(self):
        q, k, v = _qkv()
        with pytest.raises(ValueError, match="`op`"):
            mle.tune(q, k, v, op="softmax")
        with pytest.raises(TypeError, match="block_size"):
            mle.tune(q, k, v, op="attention", block_size=16)


class TestCache:
    def test_a_call_uses_the_cached_plan(self, cache_dir):
        q, k, v = _qkv()
        untuned = _plan(q, k, v)
        forced = [32, 16, False, False]
        assert tuple(untuned) != tuple(forced)
        _write(cache_dir, _cache_of(q, forced))
        _tune._loaded.clear()  # the file is read once per process: as a new process would
        assert tuple(_plan(q, k, v)) == tuple(forced)
        assert tuple(_plan(q, k, v, causal=True)) != tuple(forced)  # another bucket
        np.testing.assert_allclose(
            mle.attention(q, k, v),
            attention._attention(q, k, v, None, False, None, False, None, tuple(untuned), None),
            rtol=1e-5,
            atol=1e-6,
        )

    def test_a_conv2d_call_uses_the_cached_method(self, cache_dir, monkeypatch):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
        w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
        result = mle.tune(x, w, op="conv2d", repeats=1, save=False)
        assert result.default == "im2col"
        cache = {
            "format": "mlequations-tune",
            "version": 1,
            "entries": {result.key: {"plan": "fft"}},
        }
        _write(cache_dir, cache)
        _tune._loaded.clear()  # tune read the (empty) cache: as a new process would, read again
        calls = []
        fft = convolution._fft
        monkeypatch.setattr(convolution, "_fft", lambda *a: calls.append(1) or fft(*a))
        y = mle.conv2d(x, w)
        assert calls == [1]
        np.testing.assert_allclose(y, mle.conv2d(x, w, method="im2col"), rtol=1e-4, atol=1e-4)

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("{not json", "not valid JSON"),
            ('{"format": "somebody-else", "entries": {}}', "not a mlequations-tune file"),
            ('{"format": "mlequations-tune", "version": 99, "entries": {}}', "format version 99"),
        ],
    )
    def test_corrupt_or_foreign_file_warns_once_and_is_ignored(self, cache_dir, text, why):
        (cache_dir / "tune.json").write_text(text)
        q, k, v = _qkv()
        with pytest.warns(RuntimeWarning, match=why):
            plan = _plan(q, k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _plan(q, k, v) == plan  # no second warning
        assert tuple(plan) == tuple(
            attention._choose(64, 64, 2, False, None, False, _xp.namespace(q))
        )

    def test_environment_relocates_and_disables(self, cache_dir, monkeypatch, tmp_path_factory):
        assert _tune.cache_path() == cache_dir / "tune.json"
        monkeypatch.delenv("MLEQUATIONS_CACHE_DIR")
        xdg = tmp_path_factory.mktemp("xdg")
        monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
        assert _tune.cache_path() == xdg / "mlequations" / "tune.json"
        monkeypatch.setenv("MLEQUATIONS_CACHE_DIR", str(cache_dir))
        q, k, v = _qkv()
        _write(cache_dir, _cache_of(q, [32, 16, False, False]))
        monkeypatch.setenv("MLEQUATIONS_AUTOTUNE", "0")
        assert tuple(_plan(q, k, v))[:2] != (32, 16)  # switched off: the rule's plan
        (cache_dir / "tune.json").unlink()
        mle.tune(q, k, v, op="attention", repeats=1)
        assert not (cache_dir / "tune.json").exists()  # and tune writes nothing
        assert "MLEQUATIONS_AUTOTUNE=0" in _tune.describe()


class TestAutotune:
    def test_times_once_per_shape_bucket(self, cache_dir, monkeypatch):
        monkeypatch.setenv("MLEQUATIONS_AUTOTUNE", "1")
        timed = []
        real = _tune._time_and_store
        monkeypatch.setattr(
            _tune, "_time_and_store", lambda key, *a: timed.append(key) or real(key, *a)
        )
        q, k, v = _qkv(L=64)
        mle.attention(q, k, v)
        mle.attention(q, k, v)
        q2, k2, v2 = _qkv(L=60)  # the same bucket, L rounded up to 64
        mle.attention(q2, k2, v2)
        assert len(timed) == 1
        q3, k3, v3 = _qkv(L=100)  # a new bucket
        mle.attention(q3, k3, v3)
        assert len(timed) == 2
        entries = json.loads((cache_dir / "tune.json").read_text())["entries"]
        assert set(entries) == set(timed)

    def test_without_opt_in_nothing_is_timed(self, monkeypatch):
        monkeypatch.setattr(_tune, "_time_and_store", pytest.fail)
        q, k, v = _qkv()
        mle.attention(q, k, v)

    def test_nothing_is_timed_while_tracing(self, cache_dir, monkeypatch):
        jax = jax_or_skip()
        monkeypatch.setenv("MLEQUATIONS_AUTOTUNE", "1")
        monkeypatch.setattr(_tune, "_time_and_store", pytest.fail)
        q = jax.numpy.asarray(_qkv()[0])
        jax.block_until_ready(jax.jit(lambda q: mle.attention(q, q, q))(q))
        assert not (cache_dir / "tune.json").exists()


class TestAcceleratorRules:
    def test_attention_rule_is_batched_with_few_tiles(self):
        # (1, 8, 4096, 64): the CPU rule's 256 one-head tiles become two batched blocks.
        assert _tune.accelerator_attention_plan(4096, 4096, 8, looped=False) == (
            2048,
            None,
            False,
            False,
        )
        assert _tune.accelerator_attention_plan(1024, 1024, 32, looped=False) == (
            None,
            None,
            False,
            False,
        )
        rows, keys, per_element, looped = _tune.accelerator_attention_plan(
            16384, 16384, 1, looped=True
        )
        assert (rows, keys, per_element, looped) == (4096, None, False, True)

    def test_conv2d_rule(self):
        assert _tune.accelerator_conv2d_method("winograd", (3, 3), depthwise=False) == "im2col"
        assert _tune.accelerator_conv2d_method("shift", (3, 3), depthwise=True) == "shift"
        assert _tune.accelerator_conv2d_method("fft", (15, 15), depthwise=False) == "fft"

    def test_meta_device_takes_the_cpu_plan(self):
        torch = torch_or_skip()
        q = torch.empty((1, 8, 4096, 64), device="meta")
        assert not _xp.accelerator(q)
        assert _plan(q, q, q).per_element  # the CPU rule: one head at a time

    def test_on_an_accelerator_no_loop_over_heads(self, monkeypatch):
        torch = torch_or_skip()
        monkeypatch.setattr(_tune, "accelerator", lambda x: True)
        q = torch.empty((1, 8, 4096, 64), device="meta")
        plan = _plan(q, q, q)
        assert not plan.per_element
        assert tuple(plan) == (2048, None, False, False)
