"""JupyterLab on localhost and Debian's Chromium driven by Playwright: what the browser tests share.

:func:`skip_unless_browser` skips a test module when Chromium or a package is missing (and fails
it instead under ``BLIPVIZ_REQUIRE_BROWSER=1``, which ``.ci/run`` sets: CI must run it).
:func:`lab_notebook` writes a notebook of code cells, serves it with JupyterLab on 127.0.0.1 (a
random port and token, every Jupyter folder inside the test's temporary folder), opens it in
Chromium (``/usr/bin/chromium``, never a Playwright browser download) and yields the page once the
kernel is idle; on the way out it closes both and keeps JupyterLab's log in ``test-artifacts/``.

Sockets: the suite runs with ``--disable-socket``; a browser test lifts that for 127.0.0.1 only
(pytest-socket's ``allow_hosts`` marker), and :func:`assert_only_localhost` checks it did.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
#: Headless, no first-run or background traffic (this machine's network is closed).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
)
SERVER_START_S = 120  # 2 cores shared with other test runs: generous


def skip_unless_browser(modules: Sequence[tuple[str, str]] = ()) -> None:
    """Skip the calling module when Chromium, playwright, jupyterlab or one of ``modules``
    (``(import name, what to install)``) is missing; under ``BLIPVIZ_REQUIRE_BROWSER=1`` raise."""
    reason = None
    if not CHROMIUM.exists():
        reason = (
            "Debian's Chromium is missing at /usr/bin/chromium "
            "(apt-get install -y chromium; `make test` does it when run as root)"
        )
    else:
        needed = [("playwright", "playwright (the PyPI package)"), ("jupyterlab", "jupyterlab"), *modules]
        for module, package in needed:
            if importlib.util.find_spec(module) is None:
                reason = f"{package} is not installed (pip install -e '.[dev]')"
                break
    if reason is None:
        return
    if os.environ.get("BLIPVIZ_REQUIRE_BROWSER") == "1":  # set by .ci/run: CI must run these tests
        raise RuntimeError(f"BLIPVIZ_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason, allow_module_level=True)


def assert_only_localhost() -> None:
    """The test may reach 127.0.0.1 and nothing else."""
    from pytest_socket import SocketConnectBlockedError

    with pytest.raises(SocketConnectBlockedError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)


def write_notebook(path: Path, cells: Sequence[str]) -> None:
    """A notebook of code cells, not yet run."""
    code = [
        {
            "id": f"cell-{i}",
            "cell_type": "code",
            "metadata": {},
            "source": src,
            "outputs": [],
            "execution_count": None,
        }
        for i, src in enumerate(cells)
    ]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(
        json.dumps({"cells": code, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5})
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


def _lab_command(work: Path, port: int, token: str) -> list[str]:
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
    return command


def _lab_environment(tmp_path: Path) -> dict[str, str]:
    """This checkout on the path, offline, and every Jupyter folder inside ``tmp_path``."""
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
    news.mkdir(parents=True)  # no "get notified about news?" toast over the screenshots
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    return env


@contextmanager
def lab_notebook(
    tmp_path: Path,
    cells: Sequence[str],
    *,
    name: str,
    timeout_s: float,
    extra_flags: Sequence[str] = (),
    before_open: Callable[[object], None] | None = None,
) -> Iterator[object]:
    """The Playwright page of a notebook of ``cells`` opened in JupyterLab, its kernel idle.

    Parameters
    ----------
    tmp_path : Path
        The test's temporary folder: the notebook, Jupyter's folders and Chromium's profile.
    cells : sequence of str
        The code cells; run them with ``notebook:run-all-cells``.
    name : str
        The notebook's stem; JupyterLab's log is kept as ``test-artifacts/<name>_jupyter.log``.
    timeout_s : float
        The page's default timeout, and how long the kernel may take to start.
    extra_flags : sequence of str
        Chromium flags beside :data:`CHROMIUM_FLAGS`.
    before_open : callable, optional
        Called with the page before the notebook is opened (to listen to its websockets, say).
    """
    from playwright.sync_api import sync_playwright

    work = tmp_path / "lab"
    work.mkdir()
    write_notebook(work / f"{name}.ipynb", cells)
    port, token = _free_port(), secrets.token_hex(16)
    env = _lab_environment(tmp_path)
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    log = tmp_path / "jupyter.log"
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            _lab_command(work, port, token), stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=work
        )
    try:
        _wait_for_server(f"{base}/api/status?token={token}", server, log)
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
                executable_path=str(CHROMIUM),
                args=[*CHROMIUM_FLAGS, *extra_flags],
                headless=True,
                viewport={"width": 1280, "height": 1400},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(timeout_s * 1000)
                if before_open is not None:
                    before_open(page)
                page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}")
                page.wait_for_function(
                    """() => {
                        const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                        const kernel = w && w.sessionContext && w.sessionContext.session
                            && w.sessionContext.session.kernel;
                        return kernel && kernel.status === 'idle';
                    }""",
                    timeout=timeout_s * 1000,
                )
                yield page
            finally:
                context.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        shutil.copy(log, ARTIFACTS / f"{name}_jupyter.log")


def assert_no_stderr_output(page) -> None:
    """No cell of the notebook wrote to stderr (a traceback, a warning)."""
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()
