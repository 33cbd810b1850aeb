"""The Gradio app: three tabs over one set of shared services.

``build_demo(services)`` lays out the Blocks; each tab lives in its own module, its handlers top-level
functions of the services (bound with ``functools.partial``) and its ``build`` only laying out and wiring.
Building loads no weights and downloads nothing: models load on first use, or from ``Services.preload``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from ..services import Services
from . import classify_tab, every_tab, explain_tab, retrieve_tab
from .common import model_status_markdown
from .queue import configure_queue

TITLE = "SENet Explorer"
INTRO = (
    "Squeeze-and-Excitation networks (Hu et al., CVPR 2018), live: classify with {members}, "
    "retrieve similar images by their embeddings, and look inside the SE blocks."
)


def allowed_paths(services: Services) -> list[str]:
    """Folders whose files the app may serve: the gallery only (uploads live in the temp folder,
    which Gradio serves by itself). A gallery from the Hugging Face cache is a folder of links into
    the repo's ``blobs/``, so that folder is allowed too."""
    gallery = Path(services.config.gallery_dir)
    paths = [str(gallery)]
    if gallery.parent.name == "snapshots":
        paths.append(str(gallery.parent.parent / "blobs"))
    return paths


def build_demo(services: Services) -> gr.Blocks:
    """The app's Blocks over ``services``, its queue configured."""
    # delete_cache: Gradio's copies of uploads and outputs older than a day are removed every hour
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        labels = [f"`{services.registry.specs[n].label}`" for n in services.registry.names]
        members = f"an ensemble of {' and '.join(labels)}" if len(labels) > 1 else labels[0]
        gr.Markdown(f"# {TITLE}\n{INTRO.format(members=members)}")
        with gr.Accordion("Models", open=False) as models_box:
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
    return configure_queue(demo, services)
