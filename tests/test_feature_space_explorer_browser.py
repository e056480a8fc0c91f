"""FeatureSpaceExplorer in a real browser: JupyterLab on localhost, Playwright and Debian's Chromium.

The set-up of ``tests/jupyterlab_browser.py`` (JupyterLab on 127.0.0.1 with a random token,
``/usr/bin/chromium``, never a Playwright browser download; the same skip conditions). A notebook
builds an explorer of 8 images and 8 texts on the tiny net and one of 10,000 points from coordinates;
Chromium runs it, and the test checks that each map is drawn (WebGL in software: headless, no GPU),
clicks the lasso button and lassoes every point of the small map, types a query, and waits for the
ranked list.

It measures, and writes to ``test-artifacts/feature_space_explorer_browser.json`` (nothing is
asserted on the times): seconds from "run all cells" to each map's first drawn frame, bytes the page
received over the kernel's websocket for both explorers, seconds from the end of the lasso to the
updated list, and from Enter in the query box to the ranked list. Screenshots go beside it.
"""

from __future__ import annotations

import io
import json
import time

import pytest
from jupyterlab_browser import (
    ARTIFACTS,
    assert_no_stderr_output,
    assert_only_localhost,
    lab_notebook,
    skip_unless_browser,
)

# WebGL without a GPU: Chromium's software renderer (SwiftShader), which it no longer falls back to
# on its own; this page is local and trusted
WEBGL_FLAGS = ("--enable-unsafe-swiftshader",)
CELLS_S = 180
STEP_S = 60

skip_unless_browser([("jscatter", "jupyter-scatter (pip install 'blipviz[explorer]')")])

NOTEBOOK_CELLS = [
    "import numpy as np\n"
    "import blipviz\n"
    "from blipviz.explore.feature_space_explorer import FeatureSpaceExplorer\n"
    "from blipviz.testing import synthetic_images\n"
    'model = blipviz.load_model("tiny-random")\n'
    "images = synthetic_images(8, size=(120, 160))\n"
    'texts = ["a dog running on the beach", "two cats on a red sofa", "a bowl of fresh fruit",\n'
    '         "an empty street at night", "a man riding a bicycle", "a plate of <b>pasta</b> & wine",\n'
    '         "a child flying a kite", "a red square on a blue ground"]',
    'small = FeatureSpaceExplorer(model, images=images, texts=texts, method="pca", height=360)\n'
    "small.widget.add_class('blipviz-small')\n"
    "small",
    "rng = np.random.default_rng(0)\n"
    "n = 10_000\n"
    "kinds = np.where(np.arange(n) % 2 == 0, 'image', 'text').tolist()\n"
    "names = [f'{i:05d}.png' if k == 'image' else f'caption {i}' for i, k in enumerate(kinds)]\n"
    "large = FeatureSpaceExplorer.from_coordinates(model, rng.normal(size=(n, 2)), kinds, names,\n"
    "    image_fn=lambda i: images[(i // 2) % 8], height=360)\n"
    "large.widget.add_class('blipviz-large')\n"
    "large",
]


def _drawn_pixels(png: bytes, hex_colour: str) -> int:
    """Pixels of a screenshot within a small distance of a colour (the points of one kind)."""
    import numpy as np
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    target = np.array([int(hex_colour[k : k + 2], 16) for k in (1, 3, 5)])
    return int((np.abs(rgb - target).sum(axis=-1) < 60).sum())


def _wait_for_points(page, scope: str, colour: str) -> None:
    """Until the map of ``scope`` shows pixels of the points' colour: its first drawn frame."""
    canvas = page.locator(f"{scope} canvas:visible").first
    canvas.wait_for(state="visible", timeout=CELLS_S * 1000)
    deadline = time.monotonic() + CELLS_S
    while time.monotonic() < deadline:
        if _drawn_pixels(canvas.screenshot(), colour) > 0:
            return
        page.wait_for_timeout(100)
    pytest.fail(f"the map of {scope} drew no point within {CELLS_S} s")


@pytest.mark.allow_hosts(["127.0.0.1"])
@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")
def test_feature_space_explorer_renders_selects_and_ranks_in_jupyterlab(tmp_path):
    from blipviz.display.labels import palette

    assert_only_localhost()
    image_colour = palette(2)[0]
    measured: dict[str, float | int | str] = {}
    console: list[str] = []
    received = {"bytes": 0}

    def listen(page) -> None:
        def count(frame) -> None:
            received["bytes"] += len(frame if isinstance(frame, bytes | str) else b"")

        page.on("websocket", lambda ws: ws.on("framereceived", count))
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

    try:
        with lab_notebook(
            tmp_path,
            NOTEBOOK_CELLS,
            name="feature_space_explorer_browser",
            timeout_s=CELLS_S,
            extra_flags=WEBGL_FLAGS,
            before_open=listen,
        ) as page:
            measured["webgl"] = page.evaluate(
                """() => { const c = document.createElement('canvas');
                    const gl = c.getContext('webgl2') || c.getContext('webgl');
                    if (!gl) return 'none';
                    const info = gl.getExtension('WEBGL_debug_renderer_info');
                    return info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : 'webgl'; }"""
            )
            before = received["bytes"]
            start = time.monotonic()
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            for name in ("small", "large"):
                page.wait_for_selector(f".blipviz-{name} canvas", state="attached")
                shown = time.monotonic()
                _wait_for_points(page, f".blipviz-{name}", image_colour)
                measured[f"{name}_run_all_to_points_s"] = time.monotonic() - start
                measured[f"{name}_view_to_points_s"] = time.monotonic() - shown
            # both explorers (each: jupyter-scatter's script, its points, the list and panel)
            measured["received_bytes"] = received["bytes"] - before

            # lasso every point of the small map: the lasso button, then a drag along the inside
            # of the canvas, starting at the top middle (away from the legend)
            small = page.locator(".blipviz-small")
            small.scroll_into_view_if_needed()
            small.locator(".blipviz-drag button", has_text="lasso").click()
            page.wait_for_timeout(500)  # the mode reaches the map through the kernel
            box = page.locator(".blipviz-small canvas:visible").first.bounding_box()
            dx, dy = 0.04 * box["width"], 0.04 * box["height"]
            x0, y0 = box["x"] + dx, box["y"] + dy
            x1, y1 = box["x"] + box["width"] - dx, box["y"] + box["height"] - dy
            xm = (x0 + x1) / 2
            page.mouse.move(xm, y0)
            page.mouse.down()
            for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0), (xm - 10, y0)]:
                page.mouse.move(x, y, steps=20)
            small.screenshot(path=str(ARTIFACTS / "feature_space_explorer_browser_lasso.png"))
            page.mouse.up()
            lasso_end = time.monotonic()
            listing = page.locator(".blipviz-small .blipviz-selection-list")
            page.wait_for_function(
                "() => document.querySelector('.blipviz-small .blipviz-selection-list')"
                ".innerText.includes('16 selected')",
                timeout=STEP_S * 1000,
            )
            measured["lasso_to_list_s"] = time.monotonic() - lasso_end
            text = listing.inner_text()
            assert "8 images, 8 texts" in text, text
            assert "a plate of <b>pasta</b> & wine" in text  # shown as text, not as HTML

            query = page.locator(".blipviz-small .blipviz-query input")
            query.fill("a red square on a blue ground")
            enter = time.monotonic()
            query.press("Enter")
            page.wait_for_function(
                "() => document.querySelector('.blipviz-small .blipviz-selection-list')"
                ".innerText.includes('ranked by ITM probability')",
                timeout=STEP_S * 1000,
            )
            measured["query_to_ranking_s"] = time.monotonic() - enter
            assert listing.locator("table.blipviz-selected-images tbody tr").count() == 8
            assert page.locator(".blipviz-small .blipviz-message").inner_text().strip() == ""
            assert_no_stderr_output(page)
            small.screenshot(path=str(ARTIFACTS / "feature_space_explorer_browser.png"))
            page.locator(".blipviz-large").screenshot(
                path=str(ARTIFACTS / "feature_space_explorer_browser_10000.png")
            )
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "feature_space_explorer_browser.json").write_text(json.dumps(measured, indent=1))
        (ARTIFACTS / "feature_space_explorer_browser_console.log").write_text("\n".join(console))
