"""The built site, rendered in headless Chromium at 1400 px as a reader sees it.

``mkdocs build --strict`` (``test_docs.py``) proves that the Markdown compiles;
it cannot see that a formula runs off the right edge, that KaTeX failed to
parse one, that a table splits a function's name in two, or that an image is
missing. This test builds the site, serves it on localhost and loads every page
in Debian's ``chromium`` (driven through the DevTools protocol over a pipe, so
it needs nothing beyond the standard library), then fails on:

- a KaTeX error: math left unrendered, a ``.katex-error``, or a KaTeX message
  on the console;
- clipped math: a display formula wider than the text column that has no
  scrollbar of its own, or, at 1400 px, any formula that does not fit its
  column (``javascripts/katex.js`` sets a formula a little too wide smaller);
- a broken link or image: a same-site link to a page or ``#anchor`` that does
  not exist, an image that did not load;
- the capability matrix wider than its column, or a name in it broken across lines.

Set ``MLEQUATIONS_SITE_SHOTS=<dir>`` to keep a full-page screenshot of every
page (``<page>.png``) for looking at, as the review of each docs change should.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 900
MKDOCS_ARGS = ("-f", "docs/mkdocs.yml", "-d")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

    Chromium reads commands on its fd 3 and writes replies and events on fd 4,
    each a JSON message ended by a NUL byte.
    """

    def __init__(self, executable: str, profile: Path) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # posix_spawn moves the pipe ends to the child's fds 3 and 4 without running
        # Python in a forked child: a preexec_fn would fork the test process, which
        # JAX (imported by other tests in the same worker) refuses with a warning.
        self.pid = os.posix_spawn(
            executable,
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, to_chrome_r, 3),
                (os.POSIX_SPAWN_DUP2, from_chrome_w, 4),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._out = os.fdopen(to_chrome_w, "wb")
        self._in = os.fdopen(from_chrome_r, "rb")
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False)
        with contextlib.suppress(OSError):
            self._out.close()
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        self._in.close()

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._in.fileno(), 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def send(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self.session:
            command["sessionId"] = self.session
        self._out.write(json.dumps(command).encode() + b"\0")
        self._out.flush()
        while True:
            message = self._read()
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.events.append(self._read())

    def open_tab(self) -> None:
        target = self.send("Target.createTarget", session=False, url="about:blank")
        attached = self.send(
            "Target.attachToTarget", session=False, targetId=target["targetId"], flatten=True
        )
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        reply = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(json.dumps(reply["exceptionDetails"])[:2000])
        return reply["result"].get("value")

    def screenshot(self, path: Path) -> None:
        height = self.evaluate("document.documentElement.scrollHeight")
        shot = self.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": WIDTH, "height": min(height, 16000), "scale": 1},
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def console_errors(self) -> list[str]:
        messages = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "warning",
            ):
                messages.append(
                    " ".join(
                        str(a.get("value", a.get("description", "")))
                        for a in params.get("args", [])
                    )
                )
            if event.get("method") == "Runtime.exceptionThrown":
                messages.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        return messages


# Runs in each page once it has loaded: waits for KaTeX (auto-render runs on
# Material's document$), then measures. Returns plain JSON.
CHECK_PAGE = r"""
(async () => {
  const blocks = () => [...document.querySelectorAll(".md-content .arithmatex")];
  for (let i = 0; i < 100 && blocks().some(b => !b.querySelector(".katex, .katex-error")); i++) {
    await new Promise(r => setTimeout(r, 50));
  }
  await document.fonts.ready;
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  const article = document.querySelector(".md-content__inner");
  const column = article.getBoundingClientRect();
  const scrolls = el => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
  const text = el => el.textContent.replace(/\s+/g, " ").trim().slice(0, 80);
  const out = {unrendered: [], katexErrors: [], clipped: [], scrolls: [], images: [], links: [],
               ids: [], tables: [], brokenNames: []};
  for (const b of blocks()) {
    if (!b.querySelector(".katex, .katex-error")) out.unrendered.push(text(b));
  }
  for (const e of document.querySelectorAll(".md-content .katex-error")) {
    out.katexErrors.push(e.getAttribute("title") || text(e));
  }
  for (const math of document.querySelectorAll(".md-content .katex-display")) {
    const formula = math.querySelector(".katex-html") || math;
    const wide = formula.scrollWidth;
    // Wider than its column is fine only inside a box that scrolls sideways.
    let scroller = null;
    for (let el = math; el && el !== article; el = el.parentElement) {
      if (scrolls(el) && el.scrollWidth > el.clientWidth) { scroller = el; break; }
    }
    const right = math.getBoundingClientRect().left + wide;
    if (!scroller && (right > column.right + 1 || wide > math.clientWidth + 1)) {
      out.clipped.push({formula: text(math), width: wide, column: Math.round(column.width)});
    }
    const box = math.closest("div.arithmatex");
    if (box && box.clientWidth > 0 && box.scrollWidth > box.clientWidth + 1) {
      out.scrolls.push({formula: text(math), width: box.scrollWidth, box: box.clientWidth});
    }
  }
  for (const img of article.querySelectorAll("img")) {
    if (!img.complete || img.naturalWidth === 0) out.images.push(img.getAttribute("src"));
  }
  for (const a of document.querySelectorAll("a[href]")) out.links.push(a.href);
  for (const el of document.querySelectorAll("[id]")) out.ids.push(el.id);
  for (const table of article.querySelectorAll("table")) {
    out.tables.push({width: table.scrollWidth, visible: table.clientWidth,
                     column: Math.round(column.width), rows: table.rows.length});
    for (const code of table.querySelectorAll("td:first-child code")) {
      const lines = new Set([...code.getClientRects()].map(r => Math.round(r.top)));
      if (lines.size > 1) out.brokenNames.push(code.textContent);
    }
  }
  return out;
})()
"""


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def build_site(destination: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", *MKDOCS_ARGS, str(destination)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def render_site(
    site: Path,
    executable: str,
    profile: Path,
    shots: Path | None = None,
    pages: list[str] | None = None,
) -> dict:
    """Load every page of `site` (or `pages`); return ``{page: measurements}`` (CHECK_PAGE)."""
    if pages is None:
        pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
        pages = [p for p in pages if p != "404.html"]
    found: dict[str, Any] = {}
    with _serve(site) as base:
        browser = DevTools(executable, profile)
        try:
            browser.open_tab()
            for page in pages:
                browser.navigate(base + page)
                found[page] = browser.evaluate(CHECK_PAGE)
                found[page]["console"] = browser.console_errors()
                if shots is not None:
                    name = page.removesuffix("index.html").strip("/").replace("/", "_") or "home"
                    browser.screenshot(shots / f"{name}.png")
        finally:
            browser.close()
    found["__base__"] = base
    found["__site__"] = str(site)
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    executable = _chromium()
    if executable is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium)")
    pytest.importorskip("mkdocs", reason="mkdocs not installed (pip install '.[docs]')")
    site = tmp_path_factory.mktemp("site") / "site"
    build_site(site)
    return site, executable


@pytest.fixture(scope="module")
def rendered(built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    site, executable = built
    shots = os.environ.get("MLEQUATIONS_SITE_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
    profile = tmp_path_factory.mktemp("profile")
    return render_site(site, executable, profile, Path(shots) if shots else None)


def _pages(rendered: dict) -> dict[str, dict]:
    return {k: v for k, v in rendered.items() if not k.startswith("__")}


def test_every_page_was_rendered(rendered):
    pages = _pages(rendered)
    assert "index.html" in pages
    assert "chapters/attention/index.html" in pages
    assert len(pages) >= 15


def test_math_renders_without_katex_errors(rendered):
    problems = {
        page: (m["unrendered"], m["katexErrors"], [c for c in m["console"] if "KaTeX" in c])
        for page, m in _pages(rendered).items()
        if m["unrendered"] or m["katexErrors"] or any("KaTeX" in c for c in m["console"])
    }
    assert not problems


def test_no_display_math_is_clipped(rendered):
    clipped = {page: m["clipped"] for page, m in _pages(rendered).items() if m["clipped"]}
    assert not clipped


def test_display_math_fits_the_column_at_1400px(rendered):
    # At the width the site is read at, no formula should need its scrollbar:
    # katex.js sets a formula that is a little too wide smaller (down to 65 %).
    scrolling = {page: m["scrolls"] for page, m in _pages(rendered).items() if m["scrolls"]}
    assert not scrolling


def test_images_load_and_site_links_resolve(rendered):
    pages = _pages(rendered)
    images = {page: m["images"] for page, m in pages.items() if m["images"]}
    assert not images
    assert not _broken_links(pages, rendered["__base__"], Path(rendered["__site__"]))


def _broken_links(pages: dict[str, dict], base: str, site: Path) -> set[tuple[str, str]]:
    """Same-site links whose page, file or ``#anchor`` does not exist in the built `site`."""
    broken = set()
    for page, m in pages.items():
        for link in m["links"]:
            url, fragment = urldefrag(link)
            if not url.startswith(base):
                continue  # another site: no network here, and not ours to fix
            path = urlparse(url).path.lstrip("/")
            target = site / (path + "index.html" if path.endswith("/") or not path else path)
            if not target.is_file() or (
                fragment and target.suffix == ".html" and fragment not in _ids(target)
            ):
                broken.add((page, link))
    return broken


@functools.cache
def _ids(page: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', page.read_text()))


def test_capability_matrix_fits_and_keeps_names_whole(rendered):
    matrix = _pages(rendered)["capabilities/index.html"]
    assert matrix["tables"], "no table on the capabilities page"
    table = max(matrix["tables"], key=lambda t: t["rows"])
    assert table["width"] <= table["visible"] + 1, table  # no column off-screen
    assert table["width"] <= table["column"] + 1, table
    assert not matrix["brokenNames"]


# A page of the real site with one of each fault the checks above look for.
FAULTS = r"""
<div class="arithmatex">\[ \frac{1}{ \]</div>
<div class="arithmatex">\[ x \notacommand y \]</div>
<div class="arithmatex" style="overflow: hidden">\[ TERMS \]</div>
<img src="../img/no-such-figure.png" alt="missing">
<a href="../no-such-page/">a dead link</a>
<a href="../capabilities/#no-such-anchor">a dead anchor</a>
""".replace("TERMS", " + ".join(f"x_{{{i}}}" for i in range(150)))


def test_the_checks_catch_each_fault(built, tmp_path):
    site, executable = built
    page = site / "faults" / "index.html"
    page.parent.mkdir()
    html = (site / "shapes" / "index.html").read_text()
    page.write_text(html.replace("</article>", FAULTS + "</article>", 1))
    try:
        found = render_site(site, executable, tmp_path / "profile", pages=["faults/index.html"])
        faults = found["faults/index.html"]
        broken = _broken_links({"faults/index.html": faults}, found["__base__"], site)
    finally:
        shutil.rmtree(page.parent)
    assert len(faults["unrendered"]) == 2  # an unclosed brace, an unknown command
    assert any("KaTeX" in c and "notacommand" in c for c in faults["console"])
    assert len(faults["clipped"]) == 1
    assert faults["images"] == ["../img/no-such-figure.png"]
    assert {link.split("/", 3)[-1] for _, link in broken} == {
        "no-such-page/",
        "capabilities/#no-such-anchor",
    }
