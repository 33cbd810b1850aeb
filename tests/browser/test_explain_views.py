"""The Explain tab in Chromium at a laptop's, a projector's and a phone's size: every view one tap away,
showing its plot, with no caption or title cut off; plots that follow the dark theme; a refused image that
leaves no stale views. Judged with an SE model whose gates spread over (0, 1) and follow the image
(``fixtures.image_following_senet``); screenshots of every view go to test-artifacts/.
"""
from __future__ import annotations

import pytest

from fixtures import MINIMAL_PDF, image_following_senet
from test_browser import ARTIFACTS, _skimage, browser, served  # noqa: F401 (browser: a fixture)

VIEWPORTS = [(1440, 900), (1280, 720), (390, 844)]  # a laptop, a 1080p projector at 150%, a phone
VIEWS = {"Step by step": "explain-steps", "Map": "explain-map", "Compare": "explain-compare",
         "Figure 6": "explain-figure6", "SE off": "explain-ablation"}
PLOTS = {"Step by step": ["explain-steps-plot"], "Map": ["explain-map-plot", "explain-summary-plot"],
         "Compare": ["explain-channel-plot", "explain-depth-plot"], "Figure 6": ["explain-fig6-plot"], "SE off": []}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    spec = image_following_senet(tmp_path_factory.mktemp("varied") / "seresnext26d")
    config = AppConfig.from_specs([spec], offline=True, feature_cache_dir=tmp_path_factory.mktemp("features"))
    with served(Services.create(config)) as url:  # the sample gallery: ten categories of real photographs
        yield url


def _explained(browser, app_url, width, height, theme=""):
    """A page of the given size on the Explain tab, the cat photo and three others explained."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(app_url + theme)
    page.get_by_role("tab", name="Explain").click()
    page.get_by_text("Compare with (up to 3 more images)").click()
    page.locator("#explain-compare-files input[type=file]").set_input_files(
        [_skimage(name) for name in ("coffee.png", "astronaut.png", "rocket.jpg")])
    page.locator("#explain-compare-files").get_by_text("rocket").first.wait_for(timeout=30_000)
    page.locator("#explain-image input[type=file]").set_input_files(_skimage("chelsea.png"))
    page.locator("#explain-steps-plot .js-plotly-plot").wait_for(timeout=120_000)  # the upload explains at once
    page.get_by_role("button", name="Explain", exact=True).click()  # again, with the three to compare
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('#explain-steps .pending, #explain-steps .generating')",
                           timeout=120_000)
    return page, errors


def _cut_off(page, view_id: str) -> list[str]:
    """Texts of the view that do not fit: captions wider than their box, plot titles, axis titles, legend
    entries and annotations reaching outside their figure, text boxes that scroll sideways."""
    return page.evaluate("""(viewId) => {
        const view = document.getElementById(viewId), cut = [];
        for (const el of view.querySelectorAll('.caption-label, .prose, label span'))
            if (el.offsetParent && el.scrollWidth > el.clientWidth + 1) cut.push(el.textContent.trim());
        for (const plot of view.querySelectorAll('.js-plotly-plot')) {
            const box = plot.getBoundingClientRect();
            for (const t of plot.querySelectorAll('.gtitle, .xtitle, .ytitle, .annotation-text, .legendtext')) {
                const r = t.getBoundingClientRect();
                if (r.width && (r.left < box.left - 1 || r.right > box.right + 1)) cut.push(t.textContent);
            }
        }
        return cut;
    }""", view_id)


@pytest.mark.parametrize("width,height", VIEWPORTS, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
def test_every_view_is_one_tap_away_shows_its_plot_and_cuts_no_caption(browser, app_url, width, height):
    page, errors = _explained(browser, app_url, width, height)
    chooser = page.locator("#explain-view")
    for name, view_id in VIEWS.items():
        option = chooser.get_by_text(name, exact=True)
        box = option.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, f"{name} is not on screen"
        option.click()
        view = page.locator(f"#{view_id}")
        view.wait_for(state="visible", timeout=10_000)
        if name == "Figure 6":
            assert view.get_by_role("checkbox").is_checked()  # the paper's 50 sampled channels by default
            view.get_by_role("button", name="Build Figure 6").click()
        if name == "SE off":
            view.get_by_role("button", name="Run with SE switched off").click()
            view.get_by_text("goes from").wait_for(timeout=120_000)
        for plot_id in PLOTS[name]:
            page.locator(f"#{plot_id} .js-plotly-plot .main-svg").first.wait_for(timeout=180_000)
        page.wait_for_timeout(500)  # plotly lays out its text after drawing
        if name == "Compare":
            view.get_by_text("4 images, one panel each").wait_for(timeout=30_000)
        if name == "Step by step":
            assert page.locator("#explain-scale img").count() == 4  # two most and two least excited channels
        if name == "Figure 6":
            # plotly's graph div holds its traces: every panel starts on 50 evenly sampled channels
            lengths = page.evaluate("""() => {
                const bytes = {i1: 1, u1: 1, i2: 2, u2: 2, i4: 4, u4: 4, f4: 4, f8: 8};  // typed arrays as sent
                return document.querySelector('#explain-fig6-plot .js-plotly-plot').data.map(trace =>
                    trace.x.bdata ? atob(trace.x.bdata).length / bytes[trace.x.dtype] : trace.x.length);
            }""")
            assert lengths and set(lengths) == {50}
        assert _cut_off(page, view_id) == [], name
        page.screenshot(path=str(ARTIFACTS / f"explain-{view_id[8:]}-{width}x{height}.png"), full_page=True)
    assert errors == []
    page.close()


def test_plots_follow_the_dark_theme(browser, app_url):
    page, _ = _explained(browser, app_url, 1280, 720, theme="?__theme=dark")
    fill = page.evaluate("getComputedStyle(document.querySelector('#explain-steps-plot .xtitle')).fill")
    background = page.evaluate("getComputedStyle(document.querySelector('#explain-steps-plot .main-svg'))"
                               ".backgroundColor")
    assert fill == "rgb(229, 231, 235)"  # light text on the dark page
    assert background in ("rgba(0, 0, 0, 0)", "transparent")  # no white slab
    page.screenshot(path=str(ARTIFACTS / "explain-steps-1280x720-dark.png"), full_page=True)
    page.close()


def test_a_refused_image_clears_the_previous_views(browser, app_url, tmp_path):
    page, _ = _explained(browser, app_url, 1280, 720)
    bogus = tmp_path / "scan.jpg"
    bogus.write_bytes(MINIMAL_PDF)
    page.locator("#explain-image").get_by_role("button", name="Remove Image").click()
    page.locator("#explain-image input[type=file]").set_input_files(str(bogus))
    page.locator("#explain-steps-text").get_by_text("could not be used").wait_for(timeout=60_000)
    assert page.locator("#explain-steps-plot .js-plotly-plot").count() == 0  # nothing of the cat is left
    assert page.locator("#explain-scale img").count() == 0
    page.screenshot(path=str(ARTIFACTS / "explain-refused-1280x720.png"))
    page.close()
