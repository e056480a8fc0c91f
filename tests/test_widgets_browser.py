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
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
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
]
SERVER_START_S = 120  # 2 cores shared with other test runs: generous
CELLS_S = 120
STEP_S = 30


def _missing() -> str | None:
    import importlib.util

    if not CHROMIUM.exists():
        return (
            "Debian's Chromium is missing at /usr/bin/chromium "
            "(apt-get install -y chromium; `make test` does it when run as root)"
        )
    for module, package in (("playwright", "playwright (the PyPI package)"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[dev]')"
    return None


if (_reason := _missing()) is not None:
    if os.environ.get("BLIPVIZ_REQUIRE_BROWSER") == "1":  # set by .ci/run: CI must run this test
        raise RuntimeError(f"BLIPVIZ_REQUIRE_BROWSER=1 but {_reason}")
    pytest.skip(_reason, allow_module_level=True)

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
    from playwright.sync_api import sync_playwright
    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):  # only localhost is open to this test
        socket.create_connection(("192.0.2.1", 80), timeout=1)

    work = tmp_path / "lab"
    work.mkdir()
    _notebook(work / "explorers.ipynb")
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
        f"--IdentityProvider.token={token}",  # ServerApp.token is its deprecated name
        f"--ServerApp.root_dir={work}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # CI runs as root
        command.append("--allow-root")
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
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
                page.goto(f"{base}/lab/tree/explorers.ipynb?token={token}")
                page.wait_for_function(
                    """() => {
                        const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                        const kernel = w && w.sessionContext && w.sessionContext.session
                            && w.sessionContext.session.kernel;
                        return kernel && kernel.status === 'idle';
                    }""",
                    timeout=CELLS_S * 1000,
                )
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
                errors = page.locator(
                    ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                )
                assert errors.count() == 0, errors.all_inner_texts()
                overlay.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "widgets_browser.png"))
                for name in ("ranking", "matrix", "attention"):
                    page.locator(f".blipviz-{name}-explorer").screenshot(
                        path=str(ARTIFACTS / f"widgets_browser_{name}.png")
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
        shutil.copy(log, ARTIFACTS / "widgets_browser_jupyter.log")
