"""MkDocs hook: fill the capability matrix from the registry at build time.

The page holds a marker; the table replacing it comes from the same registry that
``mlequations check`` and the test matrix run, so the docs cannot drift from what
is tested.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- capability-matrix -->"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from mlequations._registry import capability_matrix

    return markdown.replace(MARKER, capability_matrix())
