"""Classify tab: the ensemble's top-5, each member's top-5, agreement, latency, TTA.

With one model the tab shows that model's top-5 once: no ensemble box beside an identical member box, no
weight slider (both stay in the API, hidden, so ``/classify`` takes and returns the same values).
"""
from __future__ import annotations

import functools

import gradio as gr

from ..classify import ClassifyResult, classify
from ..config import TTA_CHOICES
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

TTA_LABELS = {"none": "none", "flip": "horizontal flip (2 views)", "tencrop": "ten-crop (10 views)"}


def label_value(predictions) -> dict[str, float]:
    return {p.label: p.prob for p in predictions}


def summary_markdown(result: ClassifyResult, labels: dict[str, str]) -> str:
    """The answer's table: each model's top-1, probability and latency, and what agreed or failed."""
    one_model = len(result.members) == 1
    agreement = {True: "The models **agree** on the top-1 class.", False: "The models **disagree** on the top-1 class.",
                 None: "Only one model could answer; the others are listed below."}[result.agree]
    lines = [f"TTA: {TTA_LABELS[result.tta]}." if one_model else
             f"{agreement} TTA: {TTA_LABELS[result.tta]}.", ""]
    if one_model:
        lines += ["| model | top-1 | prob | latency |", "|---|---|---|---|"]
    else:
        lines += ["| model | weight | top-1 | prob | latency |", "|---|---|---|---|---|"]
    for m in result.members:
        weight = "" if one_model else f" {m.weight:g} |"
        if m.error:
            lines.append(f"| {labels[m.name]} |{weight} unavailable | | |")
        else:
            top = m.top[0]
            # the forward's own time, the same whoever asked first: nothing here reveals other visitors' requests
            lines.append(f"| {labels[m.name]} |{weight} {top.label} | {top.prob:.3f} | {m.latency_ms:.0f} ms |")
    failed = [m for m in result.members if m.error]
    for m in failed:
        sentence = model_error_sentence(m.failure) if m.failure is not None else m.error
        lines += ["", f"**{labels[m.name]}:** " + with_details(sentence, m.error)]  # "ResNet-152: not on this…"
    if result.note:
        lines += ["", result.note]
    return "\n".join(lines)


@user_errors
def classify_image(services: Services, image, tta, *weights, progress=gr.Progress(track_tqdm=True)):
    """/classify: the ensemble's top-5, the summary, and each member's top-5 (``weights`` in member order)."""
    progress(0, desc="Preparing the models (the first run may download weights)…")
    names = services.registry.names
    picture = decode(image, services)
    result = classify(services.engine, picture, names, tta=tta, weights=dict(zip(names, weights)), k=5)
    members = {m.name: m for m in result.members}
    member_values = [label_value(members[n].top) if members[n].top else None for n in names]
    return [label_value(result.ensemble), summary_markdown(result, friendly_names(services)), *member_values]


def build(services: Services) -> tuple[TabEvent, gr.Button]:
    """The tab's layout and events; returns its main event and the button that sends its image to every tab."""
    names = services.registry.names
    words = friendly_names(services)
    one_model = len(names) == 1
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(label="Image", height=300, elem_id="classify-image")
            with gr.Row():
                button = gr.Button("Classify", variant="primary")
                every_tab = gr.Button("Classify, retrieve and explain", elem_id="every-tab-button")
            tta = gr.Radio(list(TTA_CHOICES), value="none", label="Test-time augmentation",
                           info="flip: the image and its mirror image; tencrop: 4 corners and the centre, each also "
                                "mirrored. The model's answers for the views are averaged.")
            with gr.Accordion("Model weights in the ensemble", open=False, visible=not one_model):
                weights = [gr.Slider(0, 1, value=1.0, step=0.05, label=words[name]) for name in names]
        with gr.Column(scale=1):
            examples_slot = gr.Column()  # first on the right: what a newcomer clicks, above the answer it gives
            top_label = (f"{words[names[0]]}: top-5 classes" if one_model else
                         f"Ensemble: {' + '.join(words[n] for n in names)} (mean of their softmax)")
            ensemble = gr.Label(num_top_classes=5, label=top_label, elem_id="classify-top5")
            summary = gr.Markdown()
    with gr.Row(visible=not one_model):
        member_labels = [gr.Label(num_top_classes=5, label=f"{words[name]} alone") for name in names]

    handler = functools.partial(classify_image, services)
    inputs = [image, tta, *weights]
    outputs = [ensemble, summary, *member_labels]
    with examples_slot:
        clickable_examples(services, image, handler, outputs, inputs=[tta, *weights])
    button.click(handler, inputs, outputs, api_name="classify", **inference(services))
    image.upload(handler, inputs, outputs, api_name="classify_on_upload", api_visibility="private",
                 **inference(services))
    return TabEvent(inputs, outputs), every_tab
