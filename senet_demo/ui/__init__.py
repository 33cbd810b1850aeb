"""The Gradio app: a landing that says what SE does, a notice when a model cannot be used, and three tabs over
one set of shared services.

``build_demo(services)`` lays out the Blocks; each tab lives in its own module, its handlers top-level
functions of the services (bound with ``functools.partial``) and its ``build`` only laying out and wiring.
Building loads no weights and downloads nothing: models load on first use, or from ``Services.preload``.
``launch_options(services)`` is what every ``launch()`` of the app passes (theme, CSS, file rules, and the
English/Korean catalogue). Every text goes through ``senet_demo.i18n``: static texts are tracked by one ``Page``
and follow the switch beside the title; handlers take the switch as their last input, ``lang``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from ..built_index import is_index_folder
from ..config import QUERIES_DIR, REPO_ROOT
from ..i18n import I18N, Message, Page, language_switch, text, visitor_language
from ..plots import PLOT_CSS
from ..services import Services
from . import classify_tab, every_tab, explain_tab, retrieve_tab
from .common import model_notice, model_status_markdown, models_in_words
from .queue import configure_queue
from .theme import CSS, HEAD, THEME

TITLE = "SENet Explorer"
DIAGRAM = REPO_ROOT / "docs" / "images" / "se-block.svg"
NOTICE_WAIT_S = 4.0  # how long the page's first request waits for the model check before showing "checking"


def allowed_paths(services: Services) -> list[str]:
    """Folders whose files the app may serve: the gallery and the example query views (uploads live in the
    temp folder, which Gradio serves by itself). A gallery from the Hugging Face cache is a folder of links
    into the repo's ``blobs/``, so that folder is allowed too. A built index is not served: its hits are shown
    from small copies in the temp folder, and its manifest and records are the operator's, not a visitor's."""
    gallery = Path(services.config.gallery_dir)
    if is_index_folder(gallery):
        return [str(QUERIES_DIR)]
    paths = [str(gallery), str(QUERIES_DIR)]
    if gallery.parent.name == "snapshots":
        paths.append(str(gallery.parent.parent / "blobs"))
    return paths


def launch_options(services: Services) -> dict:
    """Keyword arguments for ``demo.launch``: the theme, CSS and head (Gradio 6 takes them at launch), the
    upload size limit, the folders the app serves files from, and the catalogue the browser translates with."""
    return {"theme": THEME, "css": CSS + PLOT_CSS, "head": HEAD, "max_file_size": services.config.limits.max_upload_total_bytes,
            "allowed_paths": allowed_paths(services), "i18n": I18N}


def diagram_html() -> str:
    """The SE block's diagram (docs/images/se-block.svg, the README's too), inline so it follows the theme."""
    try:
        return DIAGRAM.read_text(encoding="utf-8")
    except OSError:  # a trimmed copy of the app without docs/: the sentence above still says it
        return ""


def page_status(services: Services, lang: str = "en"):
    """The notice (shown only when a model cannot be used) and whether to ask again: on the page's load, and
    every few seconds while the background check of the Hub has not answered yet."""
    states = services.model_states(wait=NOTICE_WAIT_S)
    if states is None:
        return gr.Markdown(text("notice.checking", lang), visible=True), gr.Timer(active=True)
    notice = model_notice(services, states, lang)
    return gr.Markdown(notice, visible=bool(notice)), gr.Timer(active=False)


def models_panel(services: Services, request: gr.Request) -> str:
    """The Models panel, read when it opens, in the browser's language (an event without inputs, so a
    client may ask for it with none)."""
    return model_status_markdown(services, visitor_language(request))


def build_demo(services: Services) -> gr.Blocks:
    """The app's Blocks over ``services``, its queue configured."""
    # delete_cache: Gradio's copies of uploads and outputs older than a day are removed every hour
    page = Page()
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        with gr.Row(elem_id="title-row"):
            gr.Markdown(f"# {TITLE}", elem_id="title")
            switch = language_switch()
        with gr.Row(elem_id="landing"):
            with gr.Column(scale=1, min_width=320):
                one_model = len(services.registry.names) == 1
                page(gr.Markdown, value=Message("landing.se"))
                page(gr.Markdown, value=Message("landing.one_model" if one_model else "landing.ensemble",
                                                models=models_in_words(services)))
                page(gr.Markdown, value=Message("landing.start"))
            with gr.Column(scale=1, min_width=320):
                gr.HTML(diagram_html(), elem_id="se-diagram")
        notice = gr.Markdown(visible=False, elem_id="model-notice")
        with page(gr.Accordion, label=Message("models.title"), open=False) as models_box:
            models_text = page(gr.Markdown, value=Message("models.checking"))
        # read on opening, not while the app starts: models load (and pick their engine) after the page is built
        models_box.expand(functools.partial(models_panel, services), None, models_text,
                          api_name="model_status", api_visibility="private", show_progress="hidden")
        with page(gr.Tab, label=Message("tab.classify"), id="classify"):
            classify, every_tab_button = classify_tab.build(services, page, switch)
        with page(gr.Tab, label=Message("tab.retrieve"), id="retrieve"):
            retrieve = retrieve_tab.build(services, page, switch)
        with page(gr.Tab, label=Message("tab.explain"), id="explain"):
            explain = explain_tab.build(services, page, switch)
        every_tab.wire(every_tab_button, classify, retrieve, explain, services, switch)

        recheck = gr.Timer(2.0, active=False)
        status = functools.partial(page_status, services)
        switch.change(status, switch, [notice, recheck], api_visibility="private", show_progress="hidden")
        recheck.tick(status, switch, [notice, recheck], api_visibility="private", show_progress="hidden")

        def opened(request: gr.Request):  # in the language of the browser, as the switch will be
            return page_status(services, visitor_language(request))

        demo.load(opened, None, [notice, recheck], api_name="page_status", api_visibility="private",
                  show_progress="hidden")
        page.wire(demo, switch)
    return configure_queue(demo, services)
