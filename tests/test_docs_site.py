"""The built documentation site (``docs/build.py``; ``make test`` builds it before the suite runs).

Every internal link and anchor of every page resolves; in Debian's Chromium (Playwright, file://
URLs, no server) the main pages load without a script error, the API page of :class:`blipviz.BlipITM`
lists each of its public methods, the notebooks' pages show their executed figures, and notebook
7's explorers render from their saved widget state with scripts the site serves itself.

The site's folder comes from ``BLIPVIZ_DOCS_SITE`` (``make test`` sets it); without it these tests
are skipped, unless ``BLIPVIZ_REQUIRE_DOCS=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import html.parser
import inspect
import os
import urllib.parse
from pathlib import Path

import pytest

import blipviz

SITE_ENV = "BLIPVIZ_DOCS_SITE"


@pytest.fixture(scope="module")
def site() -> Path:
    folder = os.environ.get(SITE_ENV)
    if not folder:
        if os.environ.get("BLIPVIZ_REQUIRE_DOCS") == "1":
            pytest.fail(f"BLIPVIZ_REQUIRE_DOCS=1 but {SITE_ENV} is not set (make test sets it)")
        pytest.skip(f"{SITE_ENV} is not set: build the site with `make docs` and point it there")
    path = Path(folder).resolve()
    assert (path / "index.html").is_file(), f"no built site at {path}"
    return path


class _Page(html.parser.HTMLParser):
    """A page's ids and the links and sources it points to."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") == "preload"):
                self.links.append(attrs[key])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_every_internal_link_and_anchor_resolves(site):
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)  # not theme templates
    parsed = {p: _parse(p) for p in pages}
    broken = []
    for page, content in parsed.items():
        for link in content.links:
            url = urllib.parse.urlsplit(link)
            if url.scheme or link.startswith("//"):
                continue  # external: the build is offline, nothing fetches these
            target = (page.parent / urllib.parse.unquote(url.path)).resolve() if url.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {link}")
                continue
            if url.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if url.fragment not in ids:
                    broken.append(f"{page.relative_to(site)} -> {link} (no such anchor)")
    assert len(pages) > 50 and not broken, f"{len(broken)} broken: {broken[:20]}"
    # docutils marks markup it could not read (an unknown substitution such as |x|) "problematic"
    unreadable = [str(p.relative_to(site)) for p in pages if 'class="problematic"' in p.read_text("utf-8")]
    assert not unreadable, unreadable


def test_every_notebook_has_its_executed_page(site):
    """Each notebook's page shows the outputs of its run, and its figures where it draws any."""
    import json

    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    for notebook in notebooks:
        page = site / "notebooks" / f"{notebook.stem}.html"
        assert page.is_file(), f"{notebook.name} has no page"
        text = page.read_text(encoding="utf-8")
        assert "cell_output" in text, f"{page.name} shows no output: was the notebook run before the build?"
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if ".plot(" in code or "plt." in code:
            assert "<img" in text, f"{page.name} draws figures but shows none"


def _public_methods(cls) -> list[str]:
    return sorted(
        name
        for name, member in vars(cls).items()
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    )


_IMAGE_SIZES = """async () => Promise.all([...document.querySelectorAll('.widget-image')].map(
    async (img) => [(await (await fetch(img.src)).blob()).size, img.naturalWidth]))"""


def test_pages_load_in_chromium(site):
    from jupyterlab_browser import CHROMIUM, CHROMIUM_FLAGS, skip_unless_browser

    skip_unless_browser()
    from playwright.sync_api import sync_playwright

    pages = ["index.html", "README.html", "reading-the-numbers.html", "api.html", "api/BlipITM.html"]
    pages += ["notebooks/02_image_text_matrix.html", "docs/gallery/README.html"]
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
            for name in pages:
                response = page.goto((site / name).as_uri())
                assert response is None or response.ok, name
                assert page.locator("main").count() == 1, f"{name}: no main content"
                assert page.title(), f"{name}: no title"
            # the API page of BlipITM lists every public method, each with its own anchor
            page.goto((site / "api" / "BlipITM.html").as_uri())
            listed = set(page.eval_on_selector_all("dt[id]", "nodes => nodes.map(n => n.id)"))
            missing = [m for m in _public_methods(blipviz.BlipITM) if f"blipviz.BlipITM.{m}" not in listed]
            assert not missing, f"BlipITM's page lacks {missing}"
            # a notebook page shows its executed figures, loaded (not broken images)
            page.goto((site / "notebooks" / "02_image_text_matrix.html").as_uri())
            widths = page.eval_on_selector_all("img", "nodes => nodes.map(n => n.naturalWidth)")
            assert widths and min(widths) > 0, widths
            # the explorers render from their saved state, served by the site itself (no CDN)
            page.goto((site / "notebooks" / "07_interactive_explorer.html").as_uri())
            page.wait_for_selector(".widget-slider", timeout=30_000)
            scripts = page.eval_on_selector_all("script[src]", "nodes => nodes.map(n => n.src)")
            assert not [src for src in scripts if not src.startswith("file:")], scripts
            for kind in (".widget-image", ".widget-slider", ".widget-toggle-buttons", ".widget-text"):
                assert page.locator(kind).count() > 0, f"notebook 7 shows no {kind} widget"
            images = page.evaluate(_IMAGE_SIZES)  # [bytes saved, decoded width] per image widget
            assert any(size for size, _ in images) and all(width > 0 for size, width in images if size), (
                images
            )
            assert page.locator(".jupyter-widgets-error-widget").count() == 0, "a widget failed to render"
            assert page.get_by_text("needs a live kernel").count() == 1  # the WebGL map's place
        finally:
            browser.close()
    assert not errors, errors


def test_a_widget_the_site_cannot_load_says_it_needs_a_kernel(tmp_path):
    """docs/build.py's static_widgets: ipywidgets' own models are kept as saved; any other
    package's model (jupyter-scatter's anywidget) becomes an HTML widget saying a kernel is needed."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))
    try:
        import build
    finally:
        sys.path.pop(0)

    def model(module: str, name: str, **state) -> dict:
        return {"model_module": module, "model_module_version": "1", "model_name": name, "state": state}

    state = {
        "a": model("@jupyter-widgets/controls", "HTMLModel", value="<b>title</b>", layout="IPY_MODEL_l"),
        "l": model("@jupyter-widgets/base", "LayoutModel"),
        "s": model("anywidget", "AnyModel", _esm="export default {}"),
        "t": model("jupyter-scatter", "JupyterScatterModel"),
    }
    notebook = tmp_path / "n.ipynb"
    nb = {"cells": [], "metadata": {"widgets": {build.WIDGET_STATE: {"state": state, "version_major": 2}}}}
    notebook.write_text(json.dumps(nb))
    assert build.static_widgets(notebook) == 2
    saved = json.loads(notebook.read_text())["metadata"]["widgets"][build.WIDGET_STATE]["state"]
    assert saved["a"] == state["a"] and saved["l"] == state["l"]  # ipywidgets' own: unchanged
    for key in ("s", "t"):
        assert (
            saved[key]["model_name"] == "HTMLModel"
            and saved[key]["model_module"] == "@jupyter-widgets/controls"
        )
        assert "needs a live kernel" in saved[key]["state"]["value"]
        assert f"({state[key]['model_module']})" in saved[key]["state"]["value"]  # which package
        assert saved[key]["state"]["layout"] == "IPY_MODEL_l"  # a model the state holds
    assert build.static_widgets(notebook) == 0  # nothing left to replace
    plain = tmp_path / "plain.ipynb"
    plain.write_text(json.dumps({"cells": [], "metadata": {}}))
    assert build.static_widgets(plain) == 0 and json.loads(plain.read_text()) == {"cells": [], "metadata": {}}
