"""The Gradio app: a landing that says what SE does, a notice when a model cannot be used, and three tabs over
one set of shared services.

``build_demo(services)`` lays out the Blocks; each tab lives in its own module, its handlers top-level
functions of the services (bound with ``functools.partial``) and its ``build`` only laying out and wiring.
Building loads no weights and downloads nothing: models load on first use, or from ``Services.preload``.
``launch_options(services)`` is what every ``launch()`` of the app passes (theme, CSS, file rules).
"""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from ..config import QUERIES_DIR, REPO_ROOT
from ..plots import PLOT_CSS
from ..services import Services
from . import classify_tab, every_tab, explain_tab, retrieve_tab
from .common import model_notice, model_status_markdown, models_in_words
from .queue import configure_queue
from .theme import CSS, HEAD, THEME

TITLE = "SENet Explorer"
DIAGRAM = REPO_ROOT / "docs" / "images" / "se-block.svg"
SE_IN_WORDS = (
    "A **Squeeze-and-Excitation (SE) block** gives each channel of a network a weight from the context of the "
    "whole image: it squeezes every channel to one number, a tiny network turns those numbers into one weight "
    "between 0 and 1 per channel, and each channel is scaled by its weight (Hu et al., CVPR 2018)."
)
ENSEMBLE_IN_WORDS = ("Here **{models}** classify your image, find similar pictures in a small gallery, and "
                     "show what the SE blocks do with it.")
ONE_MODEL_IN_WORDS = ("Here **{models}** classifies your image, finds similar pictures in a small gallery, and "
                      "shows what SE blocks do with it.")
START = "**Start:** click one of the example photos, or drop your own image into the image box."
NOTICE_WAIT_S = 4.0  # how long the page's first request waits for the model check before showing "checking"
CHECKING_NOTICE = "Checking whether the models that are not on this machine can be downloaded…"


def allowed_paths(services: Services) -> list[str]:
    """Folders whose files the app may serve: the gallery and the example query views (uploads live in the
    temp folder, which Gradio serves by itself). A gallery from the Hugging Face cache is a folder of links
    into the repo's ``blobs/``, so that folder is allowed too."""
    gallery = Path(services.config.gallery_dir)
    paths = [str(gallery), str(QUERIES_DIR)]
    if gallery.parent.name == "snapshots":
        paths.append(str(gallery.parent.parent / "blobs"))
    return paths


def launch_options(services: Services) -> dict:
    """Keyword arguments for ``demo.launch``: the theme, CSS and head (Gradio 6 takes them at launch), the
    upload size limit and the folders the app serves files from."""
    return {"theme": THEME, "css": CSS + PLOT_CSS, "head": HEAD, "max_file_size": services.config.limits.max_upload_total_bytes,
            "allowed_paths": allowed_paths(services)}


def diagram_html() -> str:
    """The SE block's diagram (docs/images/se-block.svg, the README's too), inline so it follows the theme."""
    try:
        return DIAGRAM.read_text(encoding="utf-8")
    except OSError:  # a trimmed copy of the app without docs/: the sentence above still says it
        return ""


def page_status(services: Services):
    """The notice (shown only when a model cannot be used) and whether to ask again: on the page's load, and
    every few seconds while the background check of the Hub has not answered yet."""
    states = services.model_states(wait=NOTICE_WAIT_S)
    if states is None:
        return gr.Markdown(CHECKING_NOTICE, visible=True), gr.Timer(active=True)
    text = model_notice(services, states)
    return gr.Markdown(text, visible=bool(text)), gr.Timer(active=False)


def build_demo(services: Services) -> gr.Blocks:
    """The app's Blocks over ``services``, its queue configured."""
    # delete_cache: Gradio's copies of uploads and outputs older than a day are removed every hour
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"# {TITLE}")
        with gr.Row(elem_id="landing"):
            with gr.Column(scale=1, min_width=320):
                one_model = len(services.registry.names) == 1
                gr.Markdown(SE_IN_WORDS)
                gr.Markdown((ONE_MODEL_IN_WORDS if one_model else ENSEMBLE_IN_WORDS).format(
                    models=models_in_words(services)))
                gr.Markdown(START)
            with gr.Column(scale=1, min_width=320):
                gr.HTML(diagram_html(), elem_id="se-diagram")
        notice = gr.Markdown(visible=False, elem_id="model-notice")
        with gr.Accordion("Models: IDs, weights and engines", open=False) as models_box:
            models_text = gr.Markdown("Checking the models…")
        # read on opening, not while the app starts: models load (and pick their engine) after the page is built
        models_box.expand(functools.partial(model_status_markdown, services), None, models_text,
                          api_name="model_status", api_visibility="private", show_progress="hidden")
        with gr.Tab("Classify", id="classify"):
            classify, every_tab_button = classify_tab.build(services)
        with gr.Tab("Retrieve", id="retrieve"):
            retrieve = retrieve_tab.build(services)
        with gr.Tab("Explain", id="explain"):
            explain = explain_tab.build(services)
        every_tab.wire(every_tab_button, classify, retrieve, explain, services)

        recheck = gr.Timer(2.0, active=False)
        status = functools.partial(page_status, services)
        demo.load(status, None, [notice, recheck], api_name="page_status", api_visibility="private",
                  show_progress="hidden")
        recheck.tick(status, None, [notice, recheck], api_visibility="private", show_progress="hidden")
    return configure_queue(demo, services)
