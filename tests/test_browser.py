"""A learner's view, in a real browser: JupyterLab (headless, on 127.0.0.1) opens a notebook
with the bias explorer of notebook 05 (`utils.bias.explorer`, two ipywidgets dropdowns above a
figure) in Debian's Chromium driven by Playwright; we run it, wait for the widget, pick another
prompt and check that the figure changed. A screenshot is saved (`COURSE_SCREENSHOT_DIR`, else
pytest's temporary folder).

Needs Debian's `chromium` (`apt-get install chromium`) and the `playwright` Python package
(`pip install -e ".[browser]"`); no browser is downloaded. `.ci/run` installs both. Where either
is missing the test skips and says which.
"""

import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import preclass_check  # noqa: E402  (starts JupyterLab here as it does for the pre-class check)

NOTEBOOK_CELLS = [
    f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom utils import bias, toyworld",
    # the toy world's training images, grouped by shape; labels: each image's colour
    "images, attributes, _ = toyworld.make_dataset(240, seed=0)\n"
    "galleries = {f'{shape}s in the data': ([im for im, a in zip(images, attributes) if a.shape == shape],\n"
    "                                      [a.color for a in attributes if a.shape == shape])\n"
    "             for shape in toyworld.SHAPES}\n"
    "list(galleries)",
    "bias.explorer(galleries, toyworld.COLORS)",
]


# the open notebook's kernel has started and is idle (JupyterLab exposes its app with expose_app_in_browser)
KERNEL_READY = """() => {
    const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const context = widget && widget.sessionContext;
    const kernel = context && context.session && context.session.kernel;
    return Boolean(context && context.isReady && kernel && kernel.status === 'idle');
}"""


def chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab on a free loopback port, serving `tmp_path`; yields (base URL, token)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, tmp_path / "explorer.ipynb")
    env = {**os.environ, "COURSE_PROFILE": "toy", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    options = ["--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}"]
    with preclass_check.jupyterlab(tmp_path, *options, env=env) as (base, token, server, _log):
        for _ in range(300):
            assert server.poll() is None, "JupyterLab stopped at once"
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        yield base, token


@pytest.fixture
def browser_path():
    """Debian's Chromium, where it and playwright are installed (checked before JupyterLab starts)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: "
                        "pip install -e '.[browser]' (.ci/run does it)")
    path = chromium()
    if path is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`; .ci/run does it as root)")
    return path


def test_bias_explorer_reacts_in_chromium(browser_path, jupyterlab, tmp_path):
    from playwright import sync_api as playwright

    base, token = jupyterlab
    shots = Path(os.environ.get("COURSE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/lab/tree/explorer.ipynb?token={token}")
            page.wait_for_function(KERNEL_READY, timeout=45_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            selects = page.locator(".widget-dropdown select")
            selects.nth(1).wait_for(timeout=40_000)
            figure = page.locator("img.widget-image").first
            figure.wait_for(timeout=30_000)
            before = figure.get_attribute("src")
            shown = [selects.nth(k).evaluate("el => el.options[el.selectedIndex].text") for k in (0, 1)]
            other = next(o for o in selects.nth(1).locator("option").all_inner_texts() if o not in shown)
            selects.nth(1).select_option(label=other)  # the learner picks another prompt B
            page.wait_for_function(
                "before => { const img = document.querySelector('img.widget-image');"
                " return img && img.getAttribute('src') !== before; }", arg=before, timeout=30_000)
            figure.scroll_into_view_if_needed()
            if page.get_by_text("official Jupyter news").is_visible():  # JupyterLab's first-run question
                page.get_by_role("button", name="No", exact=True).click()
                page.get_by_text("official Jupyter news").wait_for(state="hidden", timeout=5_000)
            page.screenshot(path=str(shots / "bias_explorer.png"))
            after = figure.get_attribute("src")
            drawn = figure.evaluate("img => img.complete && img.naturalWidth")  # pixels wide, 0 if not a picture
        except Exception:
            page.screenshot(path=str(shots / "bias_explorer_failed.png"))  # what the page showed
            raise
        finally:
            browser.close()
    assert after != before, f"picking {other!r} as prompt B did not redraw the explorer"
    assert drawn > 100, "the explorer's image shows no figure"
