"""A newcomer's first seconds, in a real browser: the landing, examples that run when clicked, the notice when a
model cannot be used (before anyone clicks), one-model mode, and Retrieve's "nothing close".

The app with one real model (the ImageNet-trained EfficientNet-Lite0, served as test_browser.py serves it) and,
for the notice, the default ensemble with no weights on disk: once started with --offline, once as plain
``python app.py`` on a machine whose Hub does not answer (a probe of a closed local port). Screenshots at
1440x900, 1280x720 and 390x844, light and dark, go to test-artifacts/.
"""
from __future__ import annotations

import functools
import re

import pytest

from fixtures import REPO_ROOT, free_port
from test_browser import (ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, HOW_TO_ENABLE, PAGE_ERRORS, _skimage,  # noqa: F401
                          app_url, browser, no_script_errors, playwright_sync)

if CHROMIUM is None:
    pytestmark = pytest.mark.skipif(True, reason=f"Chromium not found: {HOW_TO_ENABLE}")

VIEWPORTS = [(1440, 900), (1280, 720), (390, 844)]
QUERY_VIEW = sorted((REPO_ROOT / "queries").glob("fruit__*__brightness.jpg"))[0]  # a gallery photo, brightened


def open_page(browser, url: str, width: int = 1440, height: int = 900, dark: bool = False):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("pageerror", lambda error: PAGE_ERRORS.append(str(error)))
    page.goto(url + ("?__theme=dark" if dark else ""))
    page.locator("#classify-image").wait_for(timeout=60_000)
    return page


def shoot(browser, url: str, name: str, prepare=None) -> None:
    """Screenshots of the page at every viewport, light and dark, after ``prepare(page)``."""
    for dark in (False, True):
        for width, height in VIEWPORTS:
            page = open_page(browser, url, width, height, dark)
            if prepare:
                prepare(page)
            # thumbnails load lazily: scroll through the page so that the picture shows every one
            page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            page.wait_for_timeout(1000)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}{'-dark' if dark else ''}.png"),
                            full_page=True)
            page.close()


def example(page, panel: str, caption: str):
    """The clickable example captioned ``caption`` in the tab panel whose image box is #``panel``-image."""
    tab = page.locator("[role=tabpanel]").filter(has=page.locator(f"#{panel}-image"))
    return tab.locator(".clickable-examples").get_by_role("button", name=caption)


# ------------------------------------------------------------------------------------------ the landing


def test_the_landing_says_what_se_does_and_what_to_click(browser, app_url):
    page = open_page(browser, app_url)
    text = page.locator("body").inner_text()
    assert "Squeeze-and-Excitation (SE) block" in text and "weight between 0 and 1 per channel" in text
    assert "EfficientNet-Lite0 classifies your image" in text  # the model in words; its ID is in the Models panel
    assert "tf_efficientnet_lite0=" not in text
    assert "click one of the example photos" in text
    diagram = page.locator("#se-diagram svg")
    assert diagram.get_attribute("role") == "img"
    assert "squeeze, excitation, scale" in diagram.locator("title").text_content()
    assert diagram.bounding_box()["width"] > 300
    # the examples have captions in words, which are also their alt text
    alts = page.locator(".clickable-examples img").evaluate_all("images => images.map(i => i.alt)")
    assert alts and all(alts) and "bison" in alts
    page.close()
    shoot(browser, app_url, "landing")


@pytest.mark.parametrize("tab", ["Classify", "Retrieve", "Explain"])
def test_clicking_an_example_produces_a_result(browser, app_url, tab):
    page = open_page(browser, app_url)
    if tab == "Classify":
        example(page, "classify", "bison").click()
        page.locator("#classify-top5").get_by_text("bison").first.wait_for(timeout=120_000)
        assert "latency" in page.locator("body").inner_text()
    elif tab == "Retrieve":
        page.get_by_role("tab", name="Retrieve").click()
        example(page, "retrieve", "blackbird, brighter").click()
        note = page.locator("#retrieve-note")
        note.get_by_text("Most frequent label among them").wait_for(timeout=180_000)
        assert "Most frequent label among them: bird" in note.inner_text()
        captions = page.locator("#retrieve-results img").evaluate_all("images => images.map(i => i.alt)")
        assert len(captions) == 5 and captions[0].startswith("bird · ")
    else:
        page.get_by_role("tab", name="Explain").click()
        panel = page.locator("[role=tabpanel]").filter(has=page.locator("#explain-image"))
        first = panel.get_by_role("button", name=re.compile(r"^(blackbird|bird)\b")).first  # caption or label
        first.wait_for(timeout=30_000)
        first.click()
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / f"example-{tab.lower()}.png"), full_page=True)
    page.close()


def test_one_model_mode_shows_one_answer_without_an_ensemble(browser, app_url):
    page = open_page(browser, app_url)
    example(page, "classify", "bison").click()
    top = page.locator("#classify-top5")
    top.get_by_text("bison").first.wait_for(timeout=120_000)
    assert "EfficientNet-Lite0: top-5 classes" in top.inner_text()
    text = page.locator("body").inner_text()
    assert "Ensemble" not in text and "weights in the ensemble" not in text  # no second box, no slider
    assert "agree" not in text and "Only one" not in text
    assert page.locator("input[type=range]").filter(visible=True).count() == 0
    assert len(page.locator("[data-testid=label]").filter(visible=True).all()) == 1
    page.close()

    def classified(page):
        example(page, "classify", "bison").click()
        page.locator("#classify-top5").get_by_text("bison").first.wait_for(timeout=120_000)

    shoot(browser, app_url, "one-model", classified)


# ------------------------------------------------------------------------------------------ Retrieve


def test_a_photo_unlike_the_gallery_gets_nothing_close_and_a_gallery_view_does_not(browser, app_url):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Retrieve").click()
    note = page.locator("#retrieve-note")
    page.locator("#retrieve-image input[type=file]").set_input_files(_skimage("coffee.png"))  # runs at once
    note.get_by_text("nothing close").wait_for(timeout=180_000)
    text = note.inner_text()
    assert "The gallery has nothing close to this image" in text
    assert "The gallery covers these labels: bird, bovine, fish, flower, fruit, gravestone" in text
    assert "Most frequent label" not in text
    page.screenshot(path=str(ARTIFACTS / "retrieve-nothing-close.png"), full_page=True)

    page.locator("#retrieve-image").get_by_role("button", name="Remove Image").click()
    page.locator("#retrieve-image input[type=file]").set_input_files(str(QUERY_VIEW))
    note.get_by_text("Most frequent label among them: fruit").wait_for(timeout=120_000)
    assert "nothing close" not in note.inner_text()
    page.close()

    def coffee(page):
        page.get_by_role("tab", name="Retrieve").click()
        page.locator("#retrieve-image input[type=file]").set_input_files(_skimage("coffee.png"))
        page.locator("#retrieve-note").get_by_text("nothing close").wait_for(timeout=120_000)

    shoot(browser, app_url, "nothing-close", coffee)


def test_twenty_results_show_every_row(browser, app_url):
    page = open_page(browser, app_url, 1280, 720)
    page.get_by_role("tab", name="Retrieve").click()
    k = page.get_by_label("number input for How many results (k)")
    k.fill("20")
    k.press("Enter")
    page.locator("#retrieve-image input[type=file]").set_input_files(str(QUERY_VIEW))
    page.locator("#retrieve-note").get_by_text("Top-20 of").wait_for(timeout=180_000)
    page.wait_for_function("document.querySelectorAll('#retrieve-results img').length === 20", timeout=30_000)
    results = page.locator("#retrieve-results")
    box = results.bounding_box()
    images = results.locator("img").all()
    for image in images:  # inside the gallery's own box: nothing is hidden behind a scroll bar
        inner = image.bounding_box()
        assert inner["y"] >= box["y"] - 1 and inner["y"] + inner["height"] <= box["y"] + box["height"] + 1
    scrolled = results.evaluate("el => [...el.querySelectorAll('*')].some(e => e.scrollHeight > e.clientHeight + 2"
                                " && getComputedStyle(e).overflowY !== 'visible')")
    assert not scrolled
    page.screenshot(path=str(ARTIFACTS / "retrieve-k20.png"), full_page=True)
    page.close()


# ------------------------------------------------------------------------------------------ the notice


@pytest.fixture(scope="module", params=["offline", "unreachable"])
def no_weights_url(request, tmp_path_factory):
    """The default ensemble with no weights anywhere: started with --offline, or as plain ``python app.py`` on a
    machine whose Hub does not answer (HF_HUB_OFFLINE unset for the app, the probe pointed at a closed port)."""
    from senet_demo import services as services_module
    from senet_demo.config import AppConfig
    from senet_demo.services import Services
    from senet_demo.ui import build_demo, launch_options
    from senet_demo.weights import probe_download

    root = tmp_path_factory.mktemp("no-weights")
    offline = request.param == "offline"
    config = AppConfig(offline=offline, weights_dir=root / "weights", feature_cache_dir=root / "features")
    services = Services.create(config)
    patch = pytest.MonkeyPatch()
    if not offline:
        patch.setattr(services_module, "hub_offline", lambda: False)
        services.probe = functools.partial(probe_download, endpoint=f"http://127.0.0.1:{free_port()}")
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(services))
    yield request.param, f"http://127.0.0.1:{port}/"
    demo.close()
    patch.undo()


def test_a_model_that_cannot_be_used_is_said_before_any_click(browser, no_weights_url):
    mode, url = no_weights_url
    page = open_page(browser, url)
    notice = page.locator("#model-notice")
    notice.get_by_text("Not on this machine:").first.wait_for(timeout=30_000)  # no click: the page's own load
    text = notice.inner_text()
    assert "ResNet-152, SE-ResNeXt-101" in text
    assert "python -m senet_demo download resnet152d.gluon_in1k seresnext101_64x4d.gluon_in1k" in text
    assert "Classify, Retrieve and Explain cannot answer" in text
    if mode == "offline":
        assert "started with --offline" in text
    else:
        assert "Hugging Face Hub cannot be reached" in text and "--offline" not in text
    # the details, one click away, name each model's ID and its fix
    notice.get_by_text("Details").click()
    assert "Model 'resnet152d.gluon_in1k'" in notice.inner_text()
    page.screenshot(path=str(ARTIFACTS / f"notice-{mode}.png"), full_page=True)

    if mode == "offline":  # nothing is tried on the network: a click answers at once, in short
        example(page, "classify", "bison").click()
        toast = page.locator(".toast-body").first
        toast.wait_for(timeout=60_000)
        said = toast.inner_text()
        assert "No model could answer" in said and "ResNet-152, SE-ResNeXt-101: not on this machine" in said
        assert not re.search(r"Traceback|Error:|LocalEntryNotFound|ConnectError", said)
        assert toast.locator("details").count() == 1  # the full messages one click away
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "notice-offline-toast.png"))
    page.close()
    shoot(browser, url, f"notice-{mode}",
          lambda page: page.locator("#model-notice").get_by_text("Not on this machine:").first.wait_for(timeout=30_000))
