"""The app in a real browser: headless Chromium driven by Playwright, one visitor's path through all tabs.

Uses the ImageNet-trained EfficientNet-Lite0 for Classify and Retrieve (real answers) and a tiny
SE-ResNeXt for Explain. Each test asserts what a person sees (labels, gallery captions, a plot, the error
a refused file gets) and saves a screenshot in test-artifacts/. Chromium is Debian's (apt-get install
chromium) or the one $SENET_CHROMIUM names; the tests skip with that hint when there is none, except in
CI (SENET_REQUIRE_BROWSER=1), where a missing browser fails.
"""
from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from fixtures import REPO_ROOT, folder_spec, free_port


def find_chromium() -> str | None:
    """$SENET_CHROMIUM if set (and nothing else then), else ``chromium`` on PATH, else Debian's
    /usr/bin/chromium; never Playwright's own download."""
    named = os.environ.get("SENET_CHROMIUM")
    candidates = [named] if named else [shutil.which("chromium"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


CHROMIUM = find_chromium()
HOW_TO_ENABLE = "apt-get install chromium, or set SENET_CHROMIUM=/path/to/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
ARTIFACTS = REPO_ROOT / "test-artifacts"

# CI sets SENET_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
if os.environ.get("SENET_REQUIRE_BROWSER") == "1":
    from playwright import sync_api as playwright_sync
    assert CHROMIUM, f"Chromium not found: {HOW_TO_ENABLE}"
else:
    playwright_sync = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed: pip install -r requirements-dev.txt")
    pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=f"Chromium not found: {HOW_TO_ENABLE}")



@contextmanager
def served(services):
    """The app over ``services`` on a free local port, launched as app.py launches it (the theme, CSS,
    catalogue and file rules): its URL, closed afterwards."""
    from senet_demo.ui import build_demo, launch_options

    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(services))
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, for one test module."""
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_senet):
    """The ImageNet-trained EfficientNet-Lite0 for Classify and Retrieve, a tiny SE-ResNeXt for Explain."""
    from senet_demo.config import AppConfig
    from senet_demo.convert import export_lite0
    from senet_demo.services import Services

    lite0 = export_lite0(tmp_path_factory.mktemp("lite0") / "tf_efficientnet_lite0")
    config = AppConfig.from_specs([f"tf_efficientnet_lite0={lite0}"], [folder_spec(tiny_senet)], offline=True,
                                  feature_cache_dir=tmp_path_factory.mktemp("features"))
    with served(Services.create(config)) as url:
        yield url


PAGE_ERRORS: list[str] = []  # uncaught errors in the page's scripts, in order


@pytest.fixture(scope="module")
def page(app_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.on("pageerror", lambda error: PAGE_ERRORS.append(str(error)))
    page.goto(app_url)
    page.locator("#classify-image").wait_for(timeout=60_000)
    yield page
    page.close()


@pytest.fixture(autouse=True)
def no_script_errors():
    """Each test leaves no uncaught error in the page's scripts: a figure that throws while it is drawn
    (as plotly.js did for several heatmaps on one category axis) may leave the rest of the page looking fine."""
    already = len(PAGE_ERRORS)
    yield
    assert PAGE_ERRORS[already:] == []


def _skimage(name: str) -> str:
    import skimage

    return str(Path(skimage.__file__).parent / "data" / name)


def test_classify_tab_names_espresso(page):
    # uploading runs the classification at once; no click needed
    page.locator("#classify-image input[type=file]").set_input_files(_skimage("coffee.png"))
    page.get_by_text("espresso").first.wait_for(timeout=120_000)
    page.get_by_text("latency").first.wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "classify.png"), full_page=True)
    assert "espresso" in page.locator("body").inner_text()
    # the README's picture (docs/images/classify.png is a copy of it): a laptop's first screen
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "readme-classify.png"))
    page.set_viewport_size({"width": 1400, "height": 1100})


def _error_toast(page, text: str, timeout: float = 60_000):
    """Gradio's error toast carrying ``text``: what a person sees when the app refuses an input."""
    toast = page.locator(".toast-body").filter(has_text=text)
    toast.first.wait_for(timeout=timeout)
    page.wait_for_timeout(1000)  # let it finish fading in, for the screenshot
    return toast.first


def _close_toasts(page):
    for close in page.locator(".toast-body .toast-close").all():
        close.click()


def test_classify_tab_refuses_a_pdf_named_jpg_and_keeps_answering(page, tmp_path):
    from fixtures import MINIMAL_PDF

    bogus = tmp_path / "invoice.jpg"
    bogus.write_bytes(MINIMAL_PDF)
    page.locator("#classify-image").get_by_role("button", name="Remove Image").click()
    page.locator("#classify-image input[type=file]").set_input_files(str(bogus))
    toast = _error_toast(page, "invoice.jpg is not an image this app reads")
    assert "it looks like a PDF document" in toast.inner_text()
    assert "upload a JPEG, PNG" in toast.inner_text()
    page.screenshot(path=str(ARTIFACTS / "classify-bad-input.png"))  # the viewport: toasts are fixed there

    _close_toasts(page)
    page.locator("#classify-image").get_by_role("button", name="Remove Image").click()
    page.locator("#classify-image input[type=file]").set_input_files(_skimage("chelsea.png"))
    page.get_by_text(re.compile(r"^(tabby|tiger cat|Egyptian cat)")).first.wait_for(timeout=120_000)
    assert "espresso" not in page.locator("body").inner_text()  # a fresh answer, not the previous one


def test_retrieve_tab_finds_the_source_image(page):
    query = REPO_ROOT / "queries" / "fruit__orange__brightness.jpg"
    if not query.exists():
        query = sorted((REPO_ROOT / "queries").glob("fruit__*.jpg"))[0]
    page.get_by_role("tab", name="Retrieve").click()
    page.locator("#retrieve-image").wait_for(timeout=30_000)
    page.locator("#retrieve-image input[type=file]").set_input_files(str(query))
    page.get_by_role("button", name="Retrieve", exact=True).click()
    page.get_by_text("Most frequent label among them").wait_for(timeout=180_000)
    page.screenshot(path=str(ARTIFACTS / "retrieve.png"), full_page=True)
    text = page.locator("body").inner_text()
    assert "Most frequent label among them: fruit" in text
    captions = re.findall(r"^([\w-]+) · (0\.\d{3}|1\.000)$", text, flags=re.MULTILINE)  # "label · cosine"
    assert len(captions) == 5 and captions[0][0] == "fruit", captions
    scores = [float(score) for _, score in captions]
    assert scores == sorted(scores, reverse=True)


def test_retrieve_tab_refuses_a_zip_pointing_outside_itself(page, tmp_path):
    from fixtures import tiny_png, zip_with

    archive = zip_with(tmp_path / "holiday.zip", {"beach/a.png": tiny_png(1), "../../escaped.png": tiny_png(2)})
    page.get_by_text("Add your own images (this session only)").click()
    page.locator("input[type=file][multiple]").set_input_files(str(archive))
    page.get_by_role("button", name="Add to my gallery").click()
    toast = _error_toast(page, "holiday.zip was rejected")
    assert "'../../escaped.png' points outside the archive" in toast.inner_text()
    page.screenshot(path=str(ARTIFACTS / "retrieve-bad-zip.png"))
    _close_toasts(page)
    assert not list(tmp_path.parent.rglob("escaped.png"))


def test_explain_tab_shows_the_block_step_by_step(page):
    """Every view at three sizes is in test_explain_views.py; here the Explain tab in this visitor's path."""
    page.get_by_role("tab", name="Explain").click()
    page.locator("#explain-image").wait_for(timeout=30_000)
    page.locator("#explain-image input[type=file]").set_input_files(_skimage("chelsea.png"))
    page.get_by_role("button", name="Explain", exact=True).click()
    page.locator("#explain-steps-plot .js-plotly-plot").wait_for(timeout=120_000)
    page.wait_for_function("document.querySelectorAll('#explain-scale img').length >= 4", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "explain.png"), full_page=True)
    text = page.locator("#explain-steps").inner_text()
    assert "SE_4_1" in text and "1024 channels of" in text  # the tiny SE-ResNeXt's default block, stage 4
    assert "① Squeeze" in text and "② Excitation" in text and "③ Scale" in text
    sources = page.locator("#explain-scale img").evaluate_all("images => images.map(i => i.getAttribute('src'))")
    assert len(sources) == 4 and all("/gradio_api/file=" in src and src.endswith(".png") for src in sources)
    page.locator("#explain-view").get_by_text("Compare", exact=True).click()
    depth = page.locator("#explain-depth-plot .js-plotly-plot")
    depth.wait_for(timeout=30_000)
    assert "Mean s per block" in depth.inner_text()


def test_the_models_panel_reads_each_model_when_opened(page, tiny_senet):
    page.get_by_text("Models: IDs, weights and engines", exact=True).first.click()
    row = page.get_by_text(f"{tiny_senet.arch}=", exact=False).first
    row.wait_for(timeout=30_000)
    page.get_by_text("tf_efficientnet_lite0=", exact=False).first.wait_for(timeout=10_000)
    text = page.locator("body").inner_text()
    assert "Checking the models" not in text  # the placeholder was replaced by the check
    assert "loaded (local); engine:" in text or "ready (local)" in text
    page.screenshot(path=str(ARTIFACTS / "models.png"), full_page=True)


def test_one_click_fills_every_tab(page, app_url):
    page.goto(app_url)  # a fresh page: nothing in any tab yet
    page.locator("#classify-image").wait_for(timeout=60_000)
    page.locator("#classify-image input[type=file]").set_input_files(_skimage("coffee.png"))
    page.get_by_text("espresso").first.wait_for(timeout=120_000)  # the upload classifies at once
    page.locator("#every-tab-button").click()
    page.get_by_role("tab", name="Retrieve").click()
    page.get_by_text("gallery images by cosine similarity").first.wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "every-tab-retrieve.png"), full_page=True)
    page.get_by_role("tab", name="Explain").click()
    page.locator("#explain-steps-plot .js-plotly-plot").wait_for(timeout=30_000)
    assert "SE_4_1" in page.locator("#explain-steps").inner_text()
    page.screenshot(path=str(ARTIFACTS / "every-tab-explain.png"), full_page=True)
