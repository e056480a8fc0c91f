"""FeatureSpaceExplorer in a real browser: JupyterLab on localhost, Playwright and Debian's Chromium.

The same set-up as ``tests/test_widgets_browser.py`` (JupyterLab on 127.0.0.1 with a random token,
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
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    # WebGL without a GPU: Chromium's software renderer (SwiftShader), which it no longer falls back
    # to on its own; this page is local and trusted
    "--enable-unsafe-swiftshader",
]
SERVER_START_S = 120  # 2 cores shared with other test runs: generous
CELLS_S = 180
STEP_S = 60


def _missing() -> str | None:
    import importlib.util

    if not CHROMIUM.exists():
        return (
            "Debian's Chromium is missing at /usr/bin/chromium "
            "(apt-get install -y chromium; `make test` does it when run as root)"
        )
    for module, package in (
        ("playwright", "playwright (the PyPI package)"),
        ("jupyterlab", "jupyterlab"),
        ("jscatter", "jupyter-scatter (pip install 'blipviz[explorer]')"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[dev]')"
    return None


if (_reason := _missing()) is not None:
    if os.environ.get("BLIPVIZ_REQUIRE_BROWSER") == "1":  # set by .ci/run: CI must run this test
        raise RuntimeError(f"BLIPVIZ_REQUIRE_BROWSER=1 but {_reason}")
    pytest.skip(_reason, allow_module_level=True)

NOTEBOOK_CELLS = [
    "import numpy as np\n"
    "import blipviz\n"
    "from blipviz.display.feature_space_explorer import FeatureSpaceExplorer\n"
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


def _notebook(path: Path) -> None:
    cells = [
        {
            "id": f"cell-{i}",
            "cell_type": "code",
            "metadata": {},
            "source": src,
            "outputs": [],
            "execution_count": None,
        }
        for i, src in enumerate(NOTEBOOK_CELLS)
    ]
    path.write_text(
        json.dumps(
            {
                "cells": cells,
                "metadata": {
                    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
                },
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_server(url: str, process: subprocess.Popen, log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


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
    from playwright.sync_api import sync_playwright
    from pytest_socket import SocketConnectBlockedError

    from blipviz.display.labels import palette

    with pytest.raises(SocketConnectBlockedError):  # only localhost is open to this test
        socket.create_connection(("192.0.2.1", 80), timeout=1)

    image_colour = palette(2)[0]
    work = tmp_path / "lab"
    work.mkdir()
    _notebook(work / "explorer.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    news = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)  # no "get notified about news?" toast over the screenshot
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = tmp_path / "jupyter.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # CI runs as root
        command.append("--allow-root")
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    measured: dict[str, float | int | str] = {}
    console: list[str] = []
    received = {"bytes": 0}
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        _wait_for_server(f"{base}/api/status?token={token}", server, log)
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
                executable_path=str(CHROMIUM),
                args=CHROMIUM_FLAGS,
                headless=True,
                viewport={"width": 1280, "height": 1400},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(CELLS_S * 1000)

                def count(frame) -> None:
                    received["bytes"] += len(frame if isinstance(frame, bytes | str) else b"")

                page.on("websocket", lambda ws: ws.on("framereceived", count))
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.goto(f"{base}/lab/tree/explorer.ipynb?token={token}")
                page.wait_for_function(
                    """() => {
                        const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                        const kernel = w && w.sessionContext && w.sessionContext.session
                            && w.sessionContext.session.kernel;
                        return kernel && kernel.status === 'idle';
                    }""",
                    timeout=CELLS_S * 1000,
                )
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
                errors = page.locator(
                    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                )
                assert errors.count() == 0, errors.all_inner_texts()
                small.screenshot(path=str(ARTIFACTS / "feature_space_explorer_browser.png"))
                page.locator(".blipviz-large").screenshot(
                    path=str(ARTIFACTS / "feature_space_explorer_browser_10000.png")
                )
            finally:
                context.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        shutil.copy(log, ARTIFACTS / "feature_space_explorer_browser_jupyter.log")
        (ARTIFACTS / "feature_space_explorer_browser.json").write_text(json.dumps(measured, indent=1))
        (ARTIFACTS / "feature_space_explorer_browser_console.log").write_text("\n".join(console))
