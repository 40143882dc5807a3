"""MkDocs hook: fill the capability matrix from the registry at build time.

The page holds a marker; the table replacing it comes from the same registry that
``mlequations check`` and the test matrix run, so the docs cannot drift from what
is tested. In the HTML, the table is wrapped in ``<div class="mle-matrix">`` so
that ``stylesheets/extra.css`` can fit its nine columns to the page and keep the
function names whole.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- capability-matrix -->"
PAGE = "capabilities.md"


def on_page_markdown(markdown: str, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from mlequations._registry import capability_matrix

    return markdown.replace(MARKER, capability_matrix())


def on_page_content(html: str, page: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE:
        return html
    start, end = html.find("<table>"), html.find("</table>")
    if start < 0 or end < start:
        raise ValueError(f"{PAGE}: the capability matrix (a <table>) is missing")
    end += len("</table>")
    return f'{html[:start]}<div class="mle-matrix">{html[start:end]}</div>{html[end:]}'
