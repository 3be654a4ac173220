"""The rendered book, opened in headless Debian chromium with the network cut off.

Needs `make book` first (the `test` target of the Makefile builds it). For every page in the
table of contents: the figures its source declares (``{glue:figure}`` with ``:name:``) are
shown as images, no traceback or error output, math typeset by the local MathJax with no raw
``$$`` left, no glued value shown as NaN/inf, no request leaves localhost, and the Colab button
of a notebook page points at a file tracked by git.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.book

# what the issue asks to see on specific pages, beyond the figures their sources declare
EXTRA = {
    "book/toy_model": {"min_sliders": 5, "figures": ["fig-toy-loss", "fig-toy-circle"]},
    "book/lm_phenomenon": {"min_sliders": 6, "figures": ["fig-lm-fig1", "fig-lm-laptop"]},
    "book/lm_scale": {"min_sliders": 3, "figures": ["fig-lm-scale-laptop"]},
    "book/lm_factors": {"min_sliders": 8, "figures": ["fig-lm-fig5", "fig-lm-summary"]},
    "book/inside_dynamics": {
        "min_sliders": 2,
        "figures": ["fig-probe-maps", "fig-probe-helix", "fig-probe-fig18"],
    },
    "book/beyond_language": {"min_sliders": 4, "figures": ["fig-vision-ci", "fig-vision-laptop"]},
    "book/zapping_transfer": {"min_sliders": 3, "figures": ["fig-zap-transfer"]},
    "book/zap_divergence": {"min_sliders": 2, "figures": ["fig-div-cos-laptop", "fig-div-shock"]},
    "book/optimizers_sequential": {"min_sliders": 3, "figures": ["fig-opt-heatmaps", "fig-opt-lr"]},
    "book/why_adam": {
        "min_sliders": 5,
        "figures": ["fig-why-variants", "fig-why-boundary", "fig-why-memory", "fig-why-robust"],
    },
    "book/own_model": {"min_sliders": 4, "figures": ["fig-own-report"]},
    "book/running_sweeps": {"min_sliders": 2, "figures": ["fig-sweeps-band"]},
}


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]


def declared_figures(page: str) -> list[str]:
    src = ROOT / f"{page}.ipynb"
    if not src.exists():
        return []
    text = "\n".join(
        "".join(c["source"])
        for c in json.loads(src.read_text())["cells"]
        if c["cell_type"] == "markdown"
    )
    return re.findall(r"```\{glue:figure\}[^\n]*\n:name: ([\w-]+)", text)


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").exists():
        pytest.fail("the rendered book is missing: run `make book` first (make test does)")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(HTML.resolve()))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: `apt-get install chromium` (.ci/run does)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield b
        b.close()


def open_page(browser, url: str):
    page = browser.new_page()
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith("http://127.0.0.1"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(url, wait_until="load")
    if page.locator("script[src*='mathjax']").count():  # Sphinx adds MathJax to pages with math
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
    return page, outside


@pytest.mark.parametrize("name", toc_pages())
def test_page(site, browser, name):
    page, outside = open_page(browser, f"{site}/{name}.html")
    try:
        body = page.inner_text("main")
        assert "Traceback" not in body, f"{name}: a traceback is shown"
        assert page.locator(".output.traceback, .output.error, .cell_output .stderr").count() == 0
        assert "$$" not in body and "\\begin{" not in body, f"{name}: raw TeX left on the page"
        if page.locator(".math").count():
            assert page.locator("mjx-container").count() > 0, f"{name}: math not typeset"
        for text in page.locator(".pasted-text").all_inner_texts():
            assert text.strip().lower() not in ("nan", "inf", "-inf"), f"{name}: glued {text!r}"
        extra = EXTRA.get(name, {})
        for fig_id in sorted(set(declared_figures(name)) | set(extra.get("figures", []))):
            img = page.locator(f"figure#{fig_id} img")
            assert img.count() == 1, f"{name}: figure {fig_id} missing"
            width = img.evaluate("el => el.complete ? el.naturalWidth : 0")
            assert width > 100, f"{name}: figure {fig_id} has no image"
        if extra.get("min_sliders"):
            page.wait_for_selector(".widget-slider", timeout=15000)
            assert page.locator(".widget-slider").count() >= extra["min_sliders"]
        assert outside == [], f"{name}: requests left localhost: {outside[:5]}"
    finally:
        page.close()


@pytest.mark.parametrize("name", [p for p in toc_pages() if (ROOT / f"{p}.ipynb").exists()])
def test_colab_button_points_at_a_tracked_notebook(site, browser, name):
    page, _ = open_page(browser, f"{site}/{name}.html")
    try:
        hrefs = [
            a.get_attribute("href")
            for a in page.locator("a[href*='colab.research.google.com']").all()
        ]
    finally:
        page.close()
    assert hrefs, f"{name}: no Colab launch button"
    tracked = set(
        subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    )
    for href in hrefs:
        m = re.search(r"/blob/[^/]+/(.+\.ipynb)$", href)
        assert m, href
        assert m.group(1) in tracked, f"Colab URL {href} points at {m.group(1)}, not tracked by git"
