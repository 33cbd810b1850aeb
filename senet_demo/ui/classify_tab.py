"""Classify tab: ensemble top-5, each member's top-5, agreement, latency, TTA."""
from __future__ import annotations

import functools

import gradio as gr

from ..classify import ClassifyResult, classify
from ..config import TTA_CHOICES
from ..services import Services
from .common import TabEvent, decode, display_name, example_images, image_input, user_errors
from .queue import inference

TTA_LABELS = {"none": "none", "flip": "horizontal flip (2 views)", "tencrop": "ten-crop (10 views)"}


def label_value(predictions) -> dict[str, float]:
    return {p.label: p.prob for p in predictions}


def summary_markdown(result: ClassifyResult, labels: dict[str, str]) -> str:
    agreement = {True: "The members **agree** on the top-1 class.", False: "The members **disagree** on the top-1 class.",
                 None: "Only one member answered."}[result.agree]
    lines = [f"{agreement} TTA: {TTA_LABELS[result.tta]}.", "",
             "| member | weight | top-1 | prob | latency |", "|---|---|---|---|---|"]
    for m in result.members:
        if m.error:
            lines.append(f"| {labels[m.name]} | {m.weight:g} | unavailable | | |")
        else:
            top = m.top[0]
            # the forward's own time, the same whoever asked first: nothing here reveals other visitors' requests
            lines.append(f"| {labels[m.name]} | {m.weight:g} | {top.label} | {top.prob:.3f} | {m.latency_ms:.0f} ms |")
    errors = [f"- **{m.name}**: {m.error}" for m in result.members if m.error]
    if errors:
        lines += ["", "Unavailable models:", *errors]
    if result.note:
        lines += ["", result.note]
    return "\n".join(lines)


@user_errors
def classify_image(services: Services, image, tta, *weights, progress=gr.Progress(track_tqdm=True)):
    """/classify: the ensemble's top-5, the summary, and each member's top-5 (``weights`` in member order)."""
    progress(0, desc="Preparing models (the first run may download weights)…")
    names = services.registry.names
    picture = decode(image, services)
    result = classify(services.engine, picture, names, tta=tta, weights=dict(zip(names, weights)), k=5)
    members = {m.name: m for m in result.members}
    member_values = [label_value(members[n].top) if members[n].top else None for n in names]
    labels = {name: display_name(services, name) for name in names}
    return [label_value(result.ensemble), summary_markdown(result, labels), *member_values]


def build(services: Services) -> tuple[TabEvent, gr.Button]:
    """The tab's layout and events; returns its main event and the button that sends its image to every tab."""
    names = services.registry.names
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(label="Image", height=320, elem_id="classify-image")
            tta = gr.Radio(list(TTA_CHOICES), value="none", label="Test-time augmentation",
                           info="flip: + mirrored view; tencrop: 4 corners + centre, each also mirrored")
            with gr.Accordion("Member weights", open=False):
                weights = [gr.Slider(0, 1, value=1.0, step=0.05, label=display_name(services, name)) for name in names]
            with gr.Row():
                button = gr.Button("Classify", variant="primary")
                every_tab = gr.Button("Classify, retrieve and explain", elem_id="every-tab-button")
            examples = example_images(services)
            if examples:
                gr.Examples(examples, inputs=image, label="Examples (click one)")
        with gr.Column(scale=1):
            ensemble = gr.Label(num_top_classes=5, label="Ensemble (weighted mean of softmax)")
    with gr.Row():
        member_labels = [gr.Label(num_top_classes=5, label=display_name(services, name)) for name in names]
    summary = gr.Markdown()

    handler = functools.partial(classify_image, services)
    inputs = [image, tta, *weights]
    outputs = [ensemble, summary, *member_labels]
    button.click(handler, inputs, outputs, api_name="classify", **inference(services))
    image.upload(handler, inputs, outputs, api_name="classify_on_upload", api_visibility="private",
                 **inference(services))
    return TabEvent(inputs, outputs), every_tab
