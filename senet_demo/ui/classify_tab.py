"""Classify tab: the ensemble's top-5, each member's top-5, agreement, latency, TTA.

With one model the tab shows that model's top-5 once: no ensemble box beside an identical member box, no
weight slider (both stay in the API, hidden, so ``/classify`` takes and returns the same values).
ImageNet class names stay as the checkpoint names them (English), in both languages.
"""
from __future__ import annotations

import functools

import gradio as gr

from ..classify import ClassifyResult, classify
from ..config import TTA_CHOICES
from ..i18n import Message, Page, render, text
from ..services import Services
from .common import (
    TabEvent,
    clickable_examples,
    decode,
    friendly_names,
    image_input,
    model_error_sentence,
    user_errors,
    with_details,
)
from .queue import inference

TTA_KEYS = {"none": "classify.tta.none", "flip": "classify.tta.flip", "tencrop": "classify.tta.tencrop"}


def label_value(predictions) -> dict[str, float]:
    return {p.label: p.prob for p in predictions}


def summary_markdown(result: ClassifyResult, labels: dict[str, str], lang: str = "en") -> str:
    """The answer's table: each model's top-1, probability and latency, and what agreed or failed."""
    one_model = len(result.members) == 1
    agreement = {True: "classify.agree", False: "classify.disagree", None: "classify.only_one"}[result.agree]
    tta = text("classify.tta_used", lang, tta=text(TTA_KEYS[result.tta], lang))
    lines = [tta if one_model else f"{text(agreement, lang)} {tta}", ""]
    if one_model:
        lines += [text("classify.header.one", lang), "|---|---|---|---|"]
    else:
        lines += [text("classify.header.many", lang), "|---|---|---|---|---|"]
    unavailable = text("classify.unavailable", lang)
    for m in result.members:
        weight = "" if one_model else f" {m.weight:g} |"
        if m.error:
            lines.append(f"| {labels[m.name]} |{weight} {unavailable} | | |")
        else:
            top = m.top[0]
            # the forward's own time, the same whoever asked first: nothing here reveals other visitors' requests
            lines.append(f"| {labels[m.name]} |{weight} {top.label} | {top.prob:.3f} | {m.latency_ms:.0f} ms |")
    failed = [m for m in result.members if m.error]
    for m in failed:
        sentence = model_error_sentence(m.failure, lang) if m.failure is not None else m.error
        details = render(m.failure, lang) if m.failure is not None else m.error
        lines += ["", f"**{labels[m.name]}:** " + with_details(sentence, details, lang)]  # "ResNet-152: not on this…"
    if result.note:
        lines += ["", render(result.note, lang)]
    return "\n".join(lines)


def split_language(values: tuple, count: int) -> tuple[tuple, str]:
    """The first ``count`` values, and the visitor's language after them (English when none is sent)."""
    return values[:count], (values[count] if len(values) > count else "en")


@user_errors
def classify_image(services: Services, image, tta, *weights, progress=gr.Progress(track_tqdm=True)):
    """/classify: the ensemble's top-5, the summary, and each member's top-5 (``weights`` in member order,
    then optionally the language of the summary, "en" or "ko")."""
    names = services.registry.names
    weights, lang = split_language(weights, len(names))
    progress(0, desc=text("classify.progress", lang))
    picture = decode(image, services)
    result = classify(services.engine, picture, names, tta=tta, weights=dict(zip(names, weights)), k=5)
    members = {m.name: m for m in result.members}
    member_values = [label_value(members[n].top) if members[n].top else None for n in names]
    return [label_value(result.ensemble), summary_markdown(result, friendly_names(services), lang), *member_values]


def build(services: Services, page: Page | None = None, switch: gr.Radio | None = None) -> tuple[TabEvent, gr.Button]:
    """The tab's layout and events; returns its main event and the button that sends its image to every tab.
    ``page`` tracks the tab's texts for the language switch; ``switch`` is the handlers' last input."""
    page = page if page is not None else Page()
    names = services.registry.names
    words = friendly_names(services)
    one_model = len(names) == 1
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(label=Message("common.image"), height=300, elem_id="classify-image", page=page)
            with gr.Row():
                button = page(gr.Button, value=Message("classify.run"), variant="primary")
                every_tab = page(gr.Button, value=Message("classify.every_tab"), elem_id="every-tab-button")
            tta = page(gr.Radio, choices=[(Message(TTA_KEYS[choice]), choice) for choice in TTA_CHOICES], value="none",
                       label=Message("classify.tta.label"), info=Message("classify.tta.info"))
            with page(gr.Accordion, label=Message("classify.weights"), open=False, visible=not one_model):
                weights = [gr.Slider(0, 1, value=1.0, step=0.05, label=words[name]) for name in names]
        with gr.Column(scale=1):
            examples_slot = gr.Column()  # first on the right: what a newcomer clicks, above the answer it gives
            top_label = (Message("classify.top5.one", model=words[names[0]]) if one_model else
                         Message("classify.top5.ensemble", models=" + ".join(words[n] for n in names)))
            ensemble = page(gr.Label, num_top_classes=5, label=top_label, elem_id="classify-top5")
            summary = gr.Markdown()
    with gr.Row(visible=not one_model):
        member_labels = [page(gr.Label, num_top_classes=5, label=Message("classify.alone", model=words[name]))
                         for name in names]

    handler = functools.partial(classify_image, services)
    language = [switch] if switch is not None else []
    inputs = [image, tta, *weights]  # the API's inputs; the language comes last, optional
    outputs = [ensemble, summary, *member_labels]
    with examples_slot:
        clickable_examples(services, image, handler, outputs, inputs=[tta, *weights, *language], page=page)
    button.click(handler, inputs + language, outputs, api_name="classify", **inference(services))
    image.upload(handler, inputs + language, outputs, api_name="classify_on_upload", api_visibility="private",
                 **inference(services))
    return TabEvent(inputs, outputs), every_tab
