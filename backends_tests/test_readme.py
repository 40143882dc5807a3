"""The README's tour is a doctest: every printed line is compared, not just run.

It runs in a fresh interpreter, as a reader would paste it: the test process
has switched on JAX's float64 (``jax_enable_x64``), which would change what
``jnp.asarray([1.0, 2.0, 3.0])`` makes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_RUN = """
import doctest, sys
flags = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
result = doctest.testfile(sys.argv[1], module_relative=False, optionflags=flags)
print(f"attempted={result.attempted} failed={result.failed}")
"""


def _tour() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A ten-line tour", 1)[1]
    return section.split("```pycon\n", 1)[1].split("```", 1)[0]


def test_readme_tour_is_a_doctest_with_outputs():
    tour = _tour()
    prompts = [line for line in tour.splitlines() if line.startswith(">>> ")]
    outputs = [line for line in tour.splitlines() if line and not line.startswith(">>> ")]
    assert len(prompts) >= 8, tour
    assert any(line.startswith("Array(") for line in outputs), "the JAX line shows its output"


def test_readme_tour_prints_what_it_says(tmp_path):
    path = tmp_path / "tour.txt"
    path.write_text(_tour())
    result = subprocess.run(
        [sys.executable, "-c", _RUN, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.endswith("failed=0"), result.stdout
    assert not summary.startswith("attempted=0"), result.stdout
