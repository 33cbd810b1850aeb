"""How the page looks: a theme whose every text reaches 4.5:1 contrast, a visible keyboard focus, and one fix
to the ARIA of Gradio's empty placeholders.

Gradio 6 takes the theme, CSS and head from ``launch()``, so ``ui.launch_options`` hands them to every launch
(app.py and the browser tests). Gradio's default theme draws help text and secondary text in neutral-400
(1.9:1 on white) and white on orange-500 buttons (2.8:1); here those are darker in light mode and lighter in
dark mode. The browser tests check the page with axe-core.
"""
from __future__ import annotations

import gradio as gr

THEME = gr.themes.Default(primary_hue="indigo").set(
    # text: neutral-600 on white is 7.7:1; neutral-300 on the dark background is 12:1
    body_text_color_subdued="*neutral_600",
    body_text_color_subdued_dark="*neutral_300",
    block_info_text_color="*neutral_600",
    block_info_text_color_dark="*neutral_300",
    block_info_text_size="*text_md",
    input_placeholder_color="*neutral_500",
    input_placeholder_color_dark="*neutral_400",
    # accents (the selected tab, links, radio marks): indigo-700 on white, indigo-300 on the dark background
    color_accent="*primary_700",
    link_text_color="*primary_700",
    link_text_color_dark="*primary_300",
    link_text_color_hover="*primary_800",
    link_text_color_visited="*primary_800",
    link_text_color_visited_dark="*primary_300",
    # white on indigo-600 is 6.3:1
    button_primary_background_fill="*primary_600",
    button_primary_background_fill_dark="*primary_600",
    button_primary_background_fill_hover="*primary_700",
    button_primary_background_fill_hover_dark="*primary_700",
    button_primary_text_color="white",
    button_primary_text_color_dark="white",
    checkbox_label_text_color_selected="*neutral_900",
    checkbox_label_text_color_selected_dark="*neutral_50",
)

CSS = """
/* The accent (the selected tab's text, links) is dark on the light page and light on the dark one: no single
   colour reaches 4.5:1 on both, and the theme has no dark variant of it. */
.dark { --color-accent: var(--primary-300) !important; }

/* A keyboard focus everyone can see: radio buttons, checkboxes, buttons, tabs, links, thumbnails. */
input:focus-visible, button:focus-visible, a:focus-visible, select:focus-visible, textarea:focus-visible,
[role="tab"]:focus-visible, [tabindex]:focus-visible {
  outline: 3px solid var(--color-accent) !important;
  outline-offset: 2px !important;
}
label:has(input:focus-visible) { outline: 3px solid var(--color-accent); outline-offset: 2px; }

/* The title with the English / 한국어 switch at its right, on one line down to a phone's width. */
#title-row { align-items: center; flex-wrap: nowrap; gap: 0.5rem; }
#title-row > #title { flex: 1 1 auto; min-width: 0; }
#title-row > #language { flex: 0 0 auto; width: auto; min-width: 0; }
#language .wrap { flex-wrap: nowrap; }

/* Korean breaks lines between words (as Korean typesetting does), not inside them. */
.prose, label, button, [data-testid="block-info"] { word-break: keep-all; overflow-wrap: break-word; }

/* The landing: the sentence about SE beside its diagram; below it on a phone. */
#landing { align-items: center; gap: 1.5rem; }
#landing > * { min-width: min(100%, 320px); }
#se-diagram svg { width: 100%; height: auto; max-width: 760px; display: block; }

/* Galleries that show every row: Gradio's gallery otherwise scrolls inside a box of at most 55% of the
   window, which cut the results at k = 20 and the examples on a phone. */
.every-row .grid-wrap { max-height: none !important; min-height: 0 !important; overflow-y: visible !important; }
/* ... and every column: its 100 px minimum per thumbnail pushed the fourth column off a phone's screen. */
.every-row .grid-container { grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important; }
@media (max-width: 520px) {
  .every-row .grid-container { grid-template-columns: repeat(3, minmax(0, 1fr)) !important; }
  #retrieve-results .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
}

/* The notice that a model cannot be used: it stays until the reason is gone. */
#model-notice { border: 2px solid #b45309; border-radius: var(--radius-lg); padding: 0.5rem 1rem;
  background: #fffbeb; color: #1f2937; }
.dark #model-notice { background: #2a1d06; color: #f9fafb; border-color: #f59e0b; }
#model-notice code { white-space: normal; }
"""

# Two repairs of Gradio's markup, for screen readers (axe-core reports both as serious):
# - an empty output (a Label, Plot or Gallery before its first result) is <div aria-label="Empty value"> with
#   no role, and ARIA allows no aria-label on a plain div: those placeholders (an icon only) get role="img";
# - a gallery thumbnail is a button named "Thumbnail 2 of 8" whose visible caption ("bison") is not in its
#   name, so a voice user saying what they see cannot press it: the caption goes first in the name.
HEAD = """
<script>
(() => {
  const fix = () => {
    document.querySelectorAll('div[aria-label="Empty value"]:not([role])')
      .forEach((el) => el.setAttribute("role", "img"));
    document.querySelectorAll('button[aria-label*="humbnail"]').forEach((button) => {
      const caption = button.textContent.trim();
      const name = button.getAttribute("aria-label");
      const place = (name.match(/thumbnail \\d+ of \\d+/i) || [name])[0];
      const wanted = caption ? `${caption} (${place.toLowerCase()})` : place;
      if (name !== wanted) button.setAttribute("aria-label", wanted);
    });
  };
  new MutationObserver(fix).observe(document.documentElement, {childList: true, subtree: true,
    characterData: true, attributes: true, attributeFilter: ["aria-label"]});
  document.addEventListener("DOMContentLoaded", fix);
})();
</script>
"""
