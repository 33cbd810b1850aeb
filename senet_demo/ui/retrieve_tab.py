"""Retrieve tab: nearest gallery images to a query, and measured retrieval quality."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..config import QUERIES_DIR
from ..images import size_text
from ..search import GallerySearch, feature_choices
from ..services import Services
from ..uploads import UploadError, ingest, new_session_dir, remove_session_dir
from .common import TabEvent, decode, display_name, image_input, user_errors
from .model_events import listen

FEATURE_HELP = ("ensemble: each member's pooled feature, L2-normalised and concatenated; a member name: that "
                "model alone; logsoftmax: the class log-probabilities, as the original SE-ResNet-152 script did")


def query_examples(limit: int = 8) -> list[str]:
    """Generated query views (rotation, brightness, scale, occlusion) of gallery images."""
    if not QUERIES_DIR.is_dir():
        return []
    views = sorted(QUERIES_DIR.glob("*.jpg"))
    return [str(p) for p in views[:: max(1, len(views) // limit)]][:limit]


def build(services: Services) -> TabEvent:
    searcher = GallerySearch(services)
    choices = feature_choices(services)

    def feature_label(feature: str) -> str:
        return display_name(services, feature) if feature in services.registry.specs else feature

    def session_items(session) -> list:
        return services.gallery() + (session["items"] if session else [])

    @user_errors
    def on_retrieve(image, feature, k, session, progress=gr.Progress(track_tqdm=True)):
        picture = decode(image, services)
        uploaded = session["items"] if session else []
        items = services.gallery() + uploaded
        hits = searcher.search(picture, services.gallery(), feature, int(k),
                               progress=lambda f, d: progress(f, desc=d), extra_items=uploaded)
        gallery = [(str(hit.item.path), f"{hit.item.label} · {hit.score:.3f}") for hit in hits]
        labels = [hit.item.label for hit in hits]
        top = max(labels, key=labels.count) if labels else "—"  # a tie goes to the best-ranked label
        note = (f"Top-{len(hits)} of {len(items)} gallery images by cosine similarity of the **{feature}** "
                f"feature. Most frequent label among them: **{top}**.")
        return gallery, note

    @user_errors
    def on_metrics(session, progress=gr.Progress(track_tqdm=True)):
        items = session_items(session)
        if len({i.label for i in items}) < 2:
            raise gr.Error("Retrieval quality needs a labelled gallery with at least two labels.")
        rows = []
        for feature in choices:
            quality = searcher.evaluate(items, feature, progress=lambda f, d: progress(f, desc=d))
            rows.append([feature_label(feature), round(quality.precision_at_1, 3), round(quality.precision_at_5, 3),
                         round(quality.mean_average_precision, 3)])
        best = max(rows, key=lambda r: r[3])
        note = (f"Leave-one-out over {len(items)} images in {len({i.label for i in items})} labels: "
                f"{quality.queries} images whose label has another image each query all the others; a hit shares "
                f"its label. Best mAP: **{best[0]}** ({best[3]:.3f}).")
        return rows, note

    @user_errors
    def on_upload(files, label, session):
        if not files:
            return session, "No files given."
        created = session is None
        session = session or {"dir": str(new_session_dir()), "items": []}
        try:
            items, messages = ingest(files, Path(session["dir"]), label, services.config.limits)
        except Exception as err:
            if created:  # the state stays None, so nothing would ever delete this folder
                remove_session_dir(session["dir"])
            if isinstance(err, UploadError):
                raise gr.Error(str(err)) from err
            raise
        limit = services.config.limits.max_upload_files
        if len(session["items"]) + len(items) > limit:
            for item in items:
                item.path.unlink(missing_ok=True)
            raise gr.Error(f"Your session holds at most {limit} images; remove yours first to add others.")
        session = {"dir": session["dir"], "items": session["items"] + items}
        return session, "\n".join(f"- {m}" for m in messages)

    def on_clear(session):
        remove_session_dir(session["dir"] if session else None)
        return None, "Your uploaded images were removed."

    # deleted when the visitor leaves (Gradio ends the session) or, with the tab left open, after the TTL
    session = gr.State(None, time_to_live=services.config.limits.upload_session_ttl_s,
                       delete_callback=lambda s: remove_session_dir(s["dir"] if s else None))
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(label="Query image", height=280, elem_id="retrieve-image")
            feature = gr.Radio([(feature_label(c), c) for c in choices],
                               value=choices[0], label="Feature", info=FEATURE_HELP)
            k = gr.Slider(1, 20, value=5, step=1, label="How many results (k)")
            button = gr.Button("Retrieve", variant="primary")
            examples = query_examples()
            if examples:
                gr.Examples(examples, inputs=image, label="Query views: rotated, brightened, zoomed, occluded")
        with gr.Column(scale=2):
            results = gr.Gallery(label="Nearest gallery images (label · cosine similarity)", columns=4,
                                 height="auto")
            note = gr.Markdown()
    with gr.Accordion("Retrieval quality (leave-one-out P@1, P@5, mAP)", open=False):
        metrics_button = gr.Button("Measure on the gallery")
        metrics = gr.Dataframe(headers=["feature", "P@1", "P@5", "mAP"], datatype=["str", "number", "number", "number"],
                               interactive=False)
        metrics_note = gr.Markdown()
    with gr.Accordion("Add your own images (this session only)", open=False):
        limits = services.config.limits
        gr.Markdown("Upload images or a zip (folders inside it become labels). Only you see them; they are "
                    f"deleted when you leave. Limits: {limits.max_upload_files} images, "
                    f"{size_text(limits.max_image_bytes)} each, {size_text(limits.max_upload_total_bytes)} in all.")
        upload_label = gr.Textbox(value="uploaded", label="Label for loose images")
        upload = gr.File(file_count="multiple", file_types=["image", ".zip"], label="Images or a zip")
        with gr.Row():
            add_button = gr.Button("Add to my gallery")
            clear_button = gr.Button("Remove my images")
        upload_note = gr.Markdown()

    listen(button.click, on_retrieve, [image, feature, k, session], [results, note], services, api_name="retrieve")
    listen(metrics_button.click, on_metrics, [session], [metrics, metrics_note], services,
           api_name="retrieval_quality")
    add_button.click(on_upload, [upload, upload_label, session], [session, upload_note], api_visibility="private",
                     concurrency_id="uploads", concurrency_limit=services.config.queue.upload_concurrency)
    clear_button.click(on_clear, [session], [session, upload_note], api_visibility="private")
    return TabEvent(on_retrieve, [image, feature, k, session], [results, note])
