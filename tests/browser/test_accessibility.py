"""Accessibility in a real browser: axe-core's rules on every tab, light and dark, before and after a result; a
keyboard focus that can be seen; alt text on the example and result images.

axe-core is the npm package, injected into the page with Playwright (``npm install --no-save --prefix .venv
axe-core@4`` puts it where this test looks; $SENET_AXE may name another axe.min.js). Without it the tests skip
with that hint, except in CI (SENET_REQUIRE_BROWSER=1), where a missing axe-core fails, as a missing browser does.
Only violations axe rates serious or critical fail a test; every violation found is written to
test-artifacts/axe-<tab>.json.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from fixtures import REPO_ROOT
from test_browser import (ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, HOW_TO_ENABLE, PAGE_ERRORS, _skimage,  # noqa: F401
                          app_url, browser, no_script_errors, playwright_sync)


def find_axe() -> Path | None:
    named = os.environ.get("SENET_AXE")
    candidates = [Path(named)] if named else [REPO_ROOT / ".venv" / "node_modules" / "axe-core" / "axe.min.js",
                                              REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"]
    return next((c for c in candidates if c.is_file()), None)


AXE = find_axe()
HOW_TO_GET_AXE = "npm install --no-save --prefix .venv axe-core@4, or set SENET_AXE=/path/to/axe.min.js"
if os.environ.get("SENET_REQUIRE_BROWSER") == "1":
    assert AXE, f"axe-core not found: {HOW_TO_GET_AXE}"
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason=f"Chromium not found: {HOW_TO_ENABLE}"),
              pytest.mark.skipif(AXE is None, reason=f"axe-core not found: {HOW_TO_GET_AXE}")]

BLOCKING = ("serious", "critical")


def open_tab(browser, url: str, tab: str, dark: bool = False):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.on("pageerror", lambda error: PAGE_ERRORS.append(str(error)))
    page.goto(url + ("?__theme=dark" if dark else ""))
    page.locator("#classify-image").wait_for(timeout=60_000)
    page.get_by_role("tab", name=tab, exact=True).click()
    page.wait_for_timeout(1000)
    return page


def violations(page, name: str) -> list[dict]:
    """axe-core's violations on the page as it is now (hidden tabs are not checked: axe skips hidden content)."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => {
            const panel = document.querySelector(n.target[0])?.closest('[role=tabpanel]');
            return {target: n.target.join(' '), summary: n.failureSummary,
                    explain: Boolean(panel && panel.querySelector('#explain-image'))};
        })}))""")
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(found, indent=1))
    return found


def blocking(found: list[dict]) -> list[str]:
    return [f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['target']})"
            for v in found if v["impact"] in BLOCKING]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("tab", ["Classify", "Retrieve"])
def test_no_serious_violations_before_and_after_a_result(browser, app_url, tab, dark):
    page = open_tab(browser, app_url, tab, dark)
    mode = "dark" if dark else "light"
    assert blocking(violations(page, f"{tab.lower()}-{mode}")) == []
    panel = page.locator("[role=tabpanel]").filter(visible=True)
    panel.locator(".clickable-examples button").first.click()
    if tab == "Classify":
        page.locator("#classify-top5").get_by_text("%").first.wait_for(timeout=120_000)
    else:
        page.locator("#retrieve-note").get_by_text("gallery images by cosine similarity").wait_for(timeout=180_000)
    page.wait_for_timeout(1000)
    assert blocking(violations(page, f"{tab.lower()}-{mode}-result")) == []
    page.close()


def _explain_found(browser, url: str, dark: bool, result: bool) -> list[dict]:
    """axe's violations on the Explain tab, before any image or with the views of an example's answer."""
    page = open_tab(browser, url, "Explain", dark)
    if result:
        panel = page.locator("[role=tabpanel]").filter(has=page.locator("#explain-image"))
        panel.get_by_role("button", name=re.compile(r"^(blackbird|bird)\b")).first.click()  # caption or label
        page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
    found = violations(page, f"explain-{'dark' if dark else 'light'}{'-result' if result else ''}")
    page.close()
    return found


def _where(found: list[dict], explain: bool) -> list[dict]:
    kept = [dict(v, nodes=[n for n in v["nodes"] if n["explain"] == explain]) for v in found]
    return [v for v in kept if v["nodes"]]


@pytest.mark.parametrize("result", [False, True], ids=["empty", "result"])
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_no_serious_violations_around_and_inside_the_explain_tab(browser, app_url, dark, result):
    """The page around the Explain tab's views (landing, notice, tabs, theme), and the views themselves."""
    found = _explain_found(browser, app_url, dark, result)
    assert blocking(_where(found, explain=False)) == [], "around the Explain tab's views"
    assert blocking(_where(found, explain=True)) == [], "inside the Explain tab's views"


def test_the_keyboard_focus_is_visible(browser, app_url):
    page = open_tab(browser, app_url, "Classify")
    radio = page.get_by_role("radio", name="flip")
    radio.focus()
    page.keyboard.press("ArrowRight")  # a keyboard move, so the browser shows focus-visible
    page.keyboard.press("ArrowLeft")
    outline = page.evaluate("""() => { const e = document.activeElement; const s = getComputedStyle(e);
        const label = e.closest('label'); const l = label ? getComputedStyle(label) : s;
        return [e.type, s.outlineStyle, parseFloat(s.outlineWidth), l.outlineStyle, parseFloat(l.outlineWidth)]; }""")
    kind, style, width, label_style, label_width = outline
    assert kind == "radio"
    assert (style != "none" and width >= 2) or (label_style != "none" and label_width >= 2), outline
    page.keyboard.press("Tab")
    focused = page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                            " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }")
    assert focused[0] != "none" and focused[1] >= 2, focused
    page.close()


def test_example_and_result_images_have_alt_text(browser, app_url):
    page = open_tab(browser, app_url, "Retrieve")
    panel = page.locator("[role=tabpanel]").filter(visible=True)
    panel.locator(".clickable-examples button").first.click()
    page.locator("#retrieve-note").get_by_text("gallery images by cosine similarity").wait_for(timeout=180_000)
    page.wait_for_function("document.querySelectorAll('#retrieve-results img').length >= 5", timeout=30_000)
    alts = panel.locator(".clickable-examples img, #retrieve-results img, #retrieve-image img").evaluate_all(
        "images => images.map(i => i.alt)")
    assert len(alts) >= 5 + 8 + 1 and all(alt.strip() for alt in alts), alts
    page.close()
