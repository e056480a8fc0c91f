"""The explorers in a real browser: JupyterLab on localhost, driven by Playwright and Debian's Chromium.

A notebook that builds the three explorers on the tiny offline net is written to a temporary folder;
JupyterLab serves it on 127.0.0.1 with a random token; Chromium (``/usr/bin/chromium``, never a
Playwright browser download) opens it, runs all cells, waits for the widgets, moves the token
dropdown and the layer slider of the attention explorer, and checks that the overlay image changed.
A screenshot is saved in ``test-artifacts/``.

Sockets: the suite runs with ``--disable-socket``; this test lifts that for 127.0.0.1 only
(pytest-socket's ``allow_hosts`` marker; ``enable_socket`` would lift every restriction).
"""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from jupyterlab_browser import (
    ARTIFACTS,
    assert_no_stderr_output,
    assert_only_localhost,
    lab_notebook,
    skip_unless_browser,
)

CELLS_S = 120
STEP_S = 30

skip_unless_browser()

NOTEBOOK_CELLS = [
    "import blipviz\n"
    "from blipviz.testing import synthetic_images\n"
    'model = blipviz.load_model("tiny-random")\n'
    "images = synthetic_images(3)\n"
    'texts = ["a dog running on the beach", "two cats on a red sofa", "a bowl of fresh fruit"]',
    "blipviz.RankingExplorer(model, images, texts)",
    "blipviz.MatrixExplorer(model, images, texts)",
    'explorer = blipviz.AttentionExplorer(model, images[0], "a dog running on the beach")\nexplorer',
]


def _overlay_digest(page) -> tuple[str, str]:
    """(src, sha256 of the bytes behind it) of the attention overlay <img>."""
    src, data = page.evaluate(
        """async () => {
            const img = document.querySelector('img.blipviz-overlay');
            const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
            let s = '';
            for (const b of bytes) s += String.fromCharCode(b);
            return [img.src, btoa(s)];
        }"""
    )
    return src, hashlib.sha256(base64.b64decode(data)).hexdigest()


def _wait_for_new_overlay(page, before: tuple[str, str]) -> tuple[str, str]:
    deadline = time.monotonic() + STEP_S
    while time.monotonic() < deadline:
        now = _overlay_digest(page)
        if now[0] != before[0] and now[1] != before[1]:
            return now
        page.wait_for_timeout(250)
    pytest.fail(f"the overlay did not change within {STEP_S} s")


@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")
def test_explorers_render_and_react_in_jupyterlab(tmp_path):
    assert_only_localhost()
    with lab_notebook(tmp_path, NOTEBOOK_CELLS, name="widgets_browser", timeout_s=CELLS_S) as page:
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        for selector in (
            ".blipviz-ranking-explorer .blipviz-ranking-table table",
            ".blipviz-matrix-explorer img.blipviz-heatmap",
            "img.blipviz-overlay",
        ):
            page.wait_for_selector(selector, state="attached", timeout=CELLS_S * 1000)
        page.wait_for_function(
            "() => { const i = document.querySelector('img.blipviz-overlay');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        overlay = page.locator("img.blipviz-overlay")
        overlay.scroll_into_view_if_needed()
        first = _overlay_digest(page)

        page.locator(".blipviz-token select").select_option(label="2: dog")
        second = _wait_for_new_overlay(page, first)

        handle = page.locator(".blipviz-layer .noUi-handle")
        handle.focus()
        handle.press("End")  # the default layer (0 of the tiny net's 2) -> layer 1
        third = _wait_for_new_overlay(page, second)
        assert len({first[1], second[1], third[1]}) == 3

        caption = page.locator(".blipviz-caption").inner_text()
        assert "layer 1" in caption and "“dog”" in caption, caption
        assert page.locator(".blipviz-message").first.inner_text().strip() == ""
        assert_no_stderr_output(page)
        overlay.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "widgets_browser.png"))
        for name in ("ranking", "matrix", "attention"):
            page.locator(f".blipviz-{name}-explorer").screenshot(
                path=str(ARTIFACTS / f"widgets_browser_{name}.png")
            )
