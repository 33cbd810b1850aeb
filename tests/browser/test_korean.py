"""The app in Korean and in English, in a real browser: Chromium with its locale set to ko-KR or en-US
(Playwright's ``locale=``, which sets both ``navigator.language`` and the Accept-Language header).

A Korean browser sees every tab's labels and buttons, a refused file's message and the Explain texts in
Korean; an English one sees no Hangul but the switch's own "한국어"; the switch changes the page's text in
place, without a reload. Screenshots of each tab in Korean go to test-artifacts/, on a laptop (1440x900) and
a phone (390x844). The server is built as test_browser.py builds it and launched with ``launch_options``, as
the app launches it (the catalogue included: ``i18n=I18N``).
"""
from __future__ import annotations

import re

import pytest

from fixtures import MINIMAL_PDF
from test_browser import (ARTIFACTS, PAGE_ERRORS, _close_toasts, _error_toast, _skimage,
                          app_url, browser, no_script_errors, playwright_sync)  # noqa: F401 (fixtures)

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Words that stay as they are in Korean text: model and file names, the SE paper's names, measures.
KEPT = re.compile(r"^[\s\d.,:;·×=()\[\]/%+-]*$|SE_\d|resnet|seresnext|efficientnet|lite0|tf_|\.(png|jpe?g|zip)\b|"
                  r"^(TTA|P@\d|mAP|ImageNet|English|Squeeze|Excitation|Scale|SE|C|r|k|s)$", re.IGNORECASE)


def _open(browser, app_url, locale: str, viewport: dict | None = None):
    context = browser.new_context(locale=locale, viewport=viewport or {"width": 1400, "height": 1100})
    page = context.new_page()
    page.on("pageerror", lambda error: PAGE_ERRORS.append(str(error)))
    page.goto(app_url)
    page.locator("#classify-image").wait_for(timeout=60_000)
    page.locator("#language").wait_for(timeout=30_000)
    return context, page


@pytest.fixture
def korean(browser, app_url):
    context, page = _open(browser, app_url, "ko-KR")
    page.wait_for_function("document.querySelector('#language input[value=ko]')?.checked", timeout=30_000)
    # the texts the browser cannot translate (choice names) arrive with the switch's change
    page.wait_for_function("/[\\uac00-\\ud7a3]/.test(document.querySelector('#classify-top5').innerText)",
                           timeout=30_000)
    yield page
    context.close()


@pytest.fixture
def english(browser, app_url):
    context, page = _open(browser, app_url, "en-US")
    yield page
    context.close()


def _main_tabs(page):
    """The page's top-level tabs (Classify, Retrieve, Explain), whatever their names' language."""
    return page.locator("[role=tablist]").first.get_by_role("tab")


def _visible_texts(page) -> list[str]:
    """What a person reads as the page's labels: tab names, labels, block titles and buttons on screen. The
    example photos' captions are left out: they are the gallery's labels, class names, which stay English
    (docs/glossary.md), as the examples' own label says in Korean."""
    texts = page.evaluate("""() => [...document.querySelectorAll(
            '[role=tab], label, [data-testid=block-info], button')]
        .filter(e => e.offsetParent !== null || e.getClientRects().length)
        .filter(e => !e.closest('.clickable-examples, #explain-examples'))
        .map(e => e.innerText)""")
    return [t.strip() for t in texts if t.strip()]


def _untranslated(texts: list[str]) -> list[str]:
    return [t for t in texts if re.search(r"[A-Za-z]{2}", t) and not HANGUL.search(t)
            and not all(KEPT.search(word) for word in re.split(r"\s+", t) if word)]


def test_every_tab_is_korean_for_a_korean_browser(korean):
    tabs = _main_tabs(korean)
    assert tabs.count() == 3
    for i in range(tabs.count()):
        tabs.nth(i).click()
        korean.wait_for_timeout(500)
        texts = _visible_texts(korean)
        assert sum(bool(HANGUL.search(t)) for t in texts) >= 3, texts
        assert not _untranslated(texts), _untranslated(texts)
        korean.screenshot(path=str(ARTIFACTS / f"ko-tab-{i + 1}.png"), full_page=True)


def test_a_pdf_named_jpg_gets_a_korean_message(korean, tmp_path):
    bogus = tmp_path / "invoice.jpg"
    bogus.write_bytes(MINIMAL_PDF)
    korean.locator("#classify-image input[type=file]").set_input_files(str(bogus))
    toast = _error_toast(korean, "invoice.jpg 파일은 이 앱이 읽을 수 있는 이미지가 아닙니다")
    assert "PDF 문서" in toast.inner_text() and "사진을 올려 주세요" in toast.inner_text()
    korean.screenshot(path=str(ARTIFACTS / "ko-classify-bad-input.png"))
    _close_toasts(korean)


def test_the_explain_texts_are_korean(korean):
    _main_tabs(korean).nth(2).click()
    korean.locator("#explain-image input[type=file]").set_input_files(_skimage("chelsea.png"))
    korean.locator("[role=tabpanel]:visible button.primary").first.click()
    korean.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    prose = " ".join(korean.locator("[role=tabpanel]:visible .prose").all_inner_texts())
    assert len(HANGUL.findall(prose)) > 50, prose[:500]
    assert "Squeeze" in prose and "Excitation" in prose  # the seminar notes keep these terms in English
    korean.screenshot(path=str(ARTIFACTS / "ko-explain.png"), full_page=True)


def test_an_english_browser_sees_no_hangul(english, tmp_path):
    tabs = _main_tabs(english)
    for i in range(tabs.count()):
        tabs.nth(i).click()
        english.wait_for_timeout(500)
        text = english.locator("body").inner_text().replace("한국어", "")  # the switch names Korean in Korean
        assert not HANGUL.search(text), HANGUL.findall(text)[:20]
    tabs.nth(0).click()
    bogus = tmp_path / "invoice.jpg"
    bogus.write_bytes(MINIMAL_PDF)
    english.locator("#classify-image input[type=file]").set_input_files(str(bogus))
    toast = _error_toast(english, "invoice.jpg is not an image this app reads")
    assert not HANGUL.search(toast.inner_text())
    _close_toasts(english)


def test_the_switch_changes_the_text_in_place(english):
    english.evaluate("window.__same_page = true")  # gone if the page reloads
    first_tab = _main_tabs(english).nth(0)
    assert not HANGUL.search(first_tab.inner_text())
    english.locator("#language").get_by_text("한국어", exact=True).click()
    english.wait_for_function("/[\\uac00-\\ud7a3]/.test(document.querySelector('[role=tab]').innerText)",
                              timeout=30_000)
    assert english.evaluate("window.__same_page") is True
    assert sum(bool(HANGUL.search(t)) for t in _visible_texts(english)) >= 3
    english.screenshot(path=str(ARTIFACTS / "ko-switched.png"), full_page=True)
    english.locator("#language").get_by_text("English", exact=True).click()
    english.wait_for_function("!/[\\uac00-\\ud7a3]/.test(document.querySelector('[role=tab]').innerText)",
                              timeout=30_000)
    assert english.evaluate("window.__same_page") is True


@pytest.mark.parametrize("size", [(1440, 900), (390, 844)], ids=["laptop", "phone"])
def test_screenshots_of_every_tab_in_korean(browser, app_url, size):
    """What a Korean visitor sees on each tab, on a laptop and on a phone: the switch beside the title, and no
    Korean label wider than the screen (a label cut off at the right edge would be unreadable)."""
    width, height = size
    context, page = _open(browser, app_url, "ko-KR", {"width": width, "height": height})
    try:
        page.wait_for_function("document.querySelector('#language input[value=ko]')?.checked", timeout=30_000)
        switch = page.locator("#language").bounding_box()
        title = page.locator("#title").bounding_box()
        assert switch["y"] < title["y"] + title["height"], (switch, title)  # on the title's line, at the top
        assert switch["x"] + switch["width"] <= width
        tabs = _main_tabs(page)
        for i in range(tabs.count()):
            tabs.nth(i).click()
            page.wait_for_timeout(500)
            wider = page.evaluate("""(width) => [...document.querySelectorAll(
                    '[role=tab], label, [data-testid=block-info], button, .prose')]
                .filter(e => e.offsetParent !== null && /[\uac00-\ud7a3]/.test(e.innerText))
                .filter(e => { const r = e.getBoundingClientRect(); return r.right > width + 1 || r.left < -1; })
                .map(e => e.innerText.slice(0, 40))""", width)
            assert not wider, wider
            page.screenshot(path=str(ARTIFACTS / f"ko-{width}x{height}-tab-{i + 1}.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture(scope="module")
def lite0_only_url(tmp_path_factory):
    """The README's offline run: EfficientNet-Lite0 alone, so the Explain tab has no SE model to show."""
    from senet_demo.config import AppConfig
    from senet_demo.convert import export_lite0
    from senet_demo.services import Services
    from test_browser import served

    lite0 = export_lite0(tmp_path_factory.mktemp("lite0-only") / "tf_efficientnet_lite0")
    config = AppConfig.from_specs([f"tf_efficientnet_lite0={lite0}"], offline=True,
                                  feature_cache_dir=tmp_path_factory.mktemp("lite0-features"))
    with served(Services.create(config)) as url:
        yield url


def test_the_explain_tab_without_an_se_model_says_why_in_the_visitors_language(browser, lite0_only_url):
    """The note that replaces the views is written by the server; it follows the browser and the switch."""
    context, page = _open(browser, lite0_only_url, "ko-KR", {"width": 390, "height": 844})
    _main_tabs(page).nth(2).click()
    note = page.locator("#explain-steps-text")
    page.wait_for_function("document.querySelector('#explain-steps-text')?.textContent.includes('블록이 없습니다')",
                           timeout=30_000)
    assert "has no Squeeze-and-Excitation" not in note.text_content()
    page.locator("#language").get_by_text("English", exact=True).click()
    page.wait_for_function("document.querySelector('#explain-steps-text')?.textContent"
                           ".includes('has no Squeeze-and-Excitation blocks')", timeout=30_000)
    assert "tf_efficientnet_lite0" in note.text_content() and "블록" not in note.text_content()
    context.close()
