"""The documentation: every snippet runs, and the site builds strictly.

The Markdown pages' own ``>>>`` examples run through pytest's doctest collection
(``--doctest-glob=*.md`` over ``docs/content`` in ``pyproject.toml``); the
README's tour is checked by ``test_readme.py``.
"""

from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import pytest

from .test_site import build_site

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = sorted((ROOT / "docs" / "snippets").glob("*.py"))


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.stem for s in SNIPPETS])
def test_snippet_runs(snippet, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that write figures write them here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    runpy.run_path(str(snippet), run_name="__main__")


def test_site_builds_strictly(tmp_path):
    if shutil.which("mkdocs") is None and not _has_module("mkdocs"):
        pytest.skip("mkdocs not installed (pip install '.[docs]')")
    build_site(tmp_path / "site")
    import mlequations

    public = [n for n in mlequations.__all__ if n != "__version__"]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert not [n for n in public if n not in api], "missing from the API reference"
    matrix = (tmp_path / "site" / "capabilities" / "index.html").read_text()
    # Every equation; `tune` computes none (it times the plans of two of them).
    tools = [n for n in public if getattr(getattr(mlequations, n), "__mle_unregistered__", 0)]
    equations = [n for n in public if n not in tools]
    missing = [n for n in equations if f"<code>{n}</code>" not in matrix]
    assert not missing, f"missing from the capability matrix: {missing}"
    # Math renders offline: the KaTeX copy is in the site and no page loads a CDN.
    assert (tmp_path / "site" / "assets" / "katex" / "katex.min.js").exists()
    for page in (tmp_path / "site").rglob("*.html"):
        assert "cdn.jsdelivr" not in page.read_text(), page


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
