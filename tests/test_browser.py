"""The app in a real browser: headless Chromium driven by Playwright, one visitor's path through all tabs.

Uses the ImageNet-trained EfficientNet-Lite0 for Classify and Retrieve (real answers) and a tiny
SE-ResNeXt for Explain. Screenshots land in test-artifacts/ for a person to look at.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from helpers import REPO_ROOT, folder_spec

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
ARTIFACTS = REPO_ROOT / "test-artifacts"

# CI sets SENET_REQUIRE_BROWSER=1: there a missing browser is a failure, not a skip.
if os.environ.get("SENET_REQUIRE_BROWSER") == "1":
    from playwright import sync_api as playwright_sync
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
else:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, tiny_senet):
    from senet_demo.config import AppConfig
    from senet_demo.convert import export_lite0
    from senet_demo.services import Services
    from senet_demo.ui import allowed_paths, build_demo

    lite0 = export_lite0(tmp_path_factory.mktemp("lite0") / "tf_efficientnet_lite0")
    config = AppConfig.from_specs([f"tf_efficientnet_lite0={lite0}"], [folder_spec(tiny_senet)], offline=True,
                                  feature_cache_dir=tmp_path_factory.mktemp("features"))
    services = Services.create(config)
    demo = build_demo(services)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=allowed_paths(services))
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def page(app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.locator("#classify-image").wait_for(timeout=60_000)
        yield page
        browser.close()


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


def test_explain_tab_shows_block_and_plot(page):
    page.get_by_role("tab", name="Explain").click()
    page.locator("#explain-image").wait_for(timeout=30_000)
    page.locator("#explain-image input[type=file]").set_input_files(_skimage("chelsea.png"))
    page.get_by_role("button", name="Explain", exact=True).click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "explain.png"), full_page=True)
    text = page.locator("body").inner_text()
    assert "SE_4_1" in text and "C = 1024" in text  # the tiny SE-ResNeXt's default block, stage 4
