"""Retrieve tab: nearest gallery images to a query, and measured retrieval quality.

The answer says plainly when the gallery holds nothing like the query: below the feature's match threshold
(``search.GallerySearch.match_threshold``, from the gallery's own leave-one-out scores) the nearest images
are still shown, under a note that they are unlikely to show the same thing, and the labels the gallery
covers are listed.
"""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from ..config import QUERIES_DIR
from ..images import size_text
from ..retrieval import ENSEMBLE, LOGSOFTMAX, MATCH_PERCENTILE
from ..search import feature_choices
from ..services import Services
from ..uploads import UploadError, forget, ingest, new_session_dir
from .common import TabEvent, clickable_examples, decode, example_caption, friendly_names, image_input, user_errors
from .queue import inference

FEATURE_HELP = ("Embedding: the model's pooled features before its classifier (the ensemble joins every "
                "model's). Log-softmax: the 1000 class log-probabilities, centred, so a score says how alike "
                "the two images' class predictions are.")
VIEW_WORDS = {"rotate": "rotated", "brightness": "brighter", "scale": "zoomed in", "occlude": "partly covered"}


def query_examples(limit: int = 8) -> list[str]:
    """Generated query views (rotation, brightness, scale, occlusion) of gallery images."""
    if not QUERIES_DIR.is_dir():
        return []
    views = sorted(QUERIES_DIR.glob("*.jpg"))
    return [str(p) for p in views[:: max(1, len(views) // limit)]][:limit]


def query_caption(path: str) -> str:
    """A query view's caption in words: "blackbird, rotated" for bird__blackbird__rotate.jpg."""
    parts = Path(path).stem.split("__")
    if len(parts) != 3:
        return Path(path).stem.replace("_", " ")
    _, item, view = parts
    return f"{example_caption(item + '.jpg')}, {VIEW_WORDS.get(view, view)}"


def shown_features(services: Services) -> list[str]:
    """The feature choices a visitor sees: with one model its embedding is the ensemble's, so it is offered
    once (as ``ensemble``, the API's default)."""
    choices = feature_choices(services)
    if len(services.registry.names) == 1:
        return [c for c in choices if c in (ENSEMBLE, LOGSOFTMAX)]
    return choices


def feature_label(services: Services, feature: str) -> str:
    """A feature choice in words."""
    words = friendly_names(services)
    names = services.registry.names
    if feature == ENSEMBLE:
        return f"{words[names[0]]} embedding" if len(names) == 1 else "ensemble embedding (all models)"
    if feature == LOGSOFTMAX:
        return "class log-probabilities (log-softmax)"
    return f"{words.get(feature, feature)} embedding"


def gallery_labels(services: Services) -> list[str]:
    return sorted({item.label for item in services.gallery()})


def result_note(services: Services, hits, feature: str, total: int, threshold: float | None) -> str:
    """What the results mean: the most frequent label, or, when even the best match is below the gallery's
    match threshold, that the gallery holds nothing close (and which labels it covers)."""
    labels = [hit.item.label for hit in hits]
    shown = f"Top-{len(hits)} of {total} gallery images by cosine similarity of the **{feature_label(services, feature)}**."
    covered = ", ".join(gallery_labels(services))
    if hits and threshold is not None and hits[0].score < threshold:
        return (f"**The gallery has nothing close to this image.** Its best match scores {hits[0].score:.3f}, below "
                f"{threshold:.3f}: {100 - MATCH_PERCENTILE:g}% of the gallery's own photos find one of their label "
                f"scoring above that. The nearest images are below, but they are unlikely to show the same thing. "
                f"The gallery covers these labels: {covered}.\n\n{shown}")
    top = max(labels, key=labels.count) if labels else "—"  # a tie goes to the best-ranked label
    return f"{shown} Most frequent label among them: **{top}**."


def session_items(services: Services, session) -> list:
    """The operator's gallery plus this visitor's own uploads."""
    return services.gallery() + (session["items"] if session else [])


@user_errors
def retrieve_image(services: Services, image, feature, k, session, progress=gr.Progress(track_tqdm=True)):
    """/retrieve: the ``k`` nearest gallery images (and the visitor's uploads) by ``feature``, and a note."""
    picture = decode(image, services)
    uploaded = session["items"] if session else []
    items = services.gallery() + uploaded
    indexed = len(services.built_index) if services.built_index is not None else 0  # rows of a built index
    hits = services.search.search(picture, services.gallery(), feature, k,
                           progress=lambda f, d: progress(f, desc=d), extra_items=uploaded)
    gallery = [(str(hit.item.path), f"{hit.item.label} · {hit.score:.3f}") for hit in hits]
    # the operator's gallery (or built index) sets the threshold; a visitor's own uploads when there is neither
    reference = services.gallery() or ([] if services.built_index is not None else uploaded)
    threshold = services.search.match_threshold(reference, feature)
    return gallery, result_note(services, hits, feature, len(items) + indexed, threshold)


@user_errors
def retrieval_quality(services: Services, session, progress=gr.Progress(track_tqdm=True)):
    """/retrieval_quality: leave-one-out P@1, P@5 and mAP for every feature choice, and a note."""
    items = session_items(services, session)
    built = services.built_index  # a built index brings its own labelled sample
    if built is None and len({i.label for i in items}) < 2:
        raise gr.Error("Retrieval quality needs a labelled gallery with at least two labels.")
    rows = []
    for feature in shown_features(services):
        quality = services.search.evaluate(items, feature, progress=lambda f, d: progress(f, desc=d))
        rows.append([feature_label(services, feature), round(quality.precision_at_1, 3),
                     round(quality.precision_at_5, 3), round(quality.mean_average_precision, 3)])
    best = max(rows, key=lambda r: r[3])
    note = (f"Leave-one-out over {len(items)} images in {len({i.label for i in items})} labels: "
            f"{quality.queries} images whose label has another image each query all the others; a hit shares "
            f"its label. Best mAP: **{best[0]}** ({best[3]:.3f}).")
    if built is not None:  # measured on its sample; its search may be approximate (recall@10 against exact)
        note = built.quality_note(quality, uploads=len(items))
    return rows, note


@user_errors
def add_uploads(services: Services, files, label, session):
    """Check the visitor's files (images or a zip) into their session folder; returns (session, note).

    The session remembers the paths Gradio passed (``uploaded``): Gradio keeps its own copy of every file
    and serves it by URL, so forgetting the visitor's images deletes those copies too."""
    if not files:
        return session, "No files given."
    created = session is None
    session = session or {"dir": str(new_session_dir()), "items": [], "uploaded": []}
    try:
        items, messages = ingest(files, Path(session["dir"]), label, services.config.limits)
    except Exception as err:
        # Nothing of a refused upload is kept, Gradio's copies included.
        forget(session["dir"] if created else None, files)
        if isinstance(err, UploadError):
            raise gr.Error(str(err)) from err
        raise
    limit = services.config.limits.max_upload_files
    if len(session["items"]) + len(items) > limit:
        for item in items:
            item.path.unlink(missing_ok=True)
        forget(session["dir"] if created else None, files)
        raise gr.Error(f"Your session holds at most {limit} images; remove yours first to add others.")
    uploaded = session.get("uploaded", []) + [str(f) for f in files]
    session = {"dir": session["dir"], "items": session["items"] + items, "uploaded": uploaded}
    return session, "\n".join(f"- {m}" for m in messages)


def forget_session(session) -> None:
    """Delete the visitor's uploads: their session folder and Gradio's copies of the files they sent.
    Also Gradio's delete callback for the session state: the visitor left, or the state expired."""
    if session:
        forget(session["dir"], session.get("uploaded"))


def clear_uploads(session):
    """"Remove my images": delete the visitor's uploads; returns (no session, note)."""
    forget_session(session)
    return None, "Your uploaded images were removed."


def build(services: Services) -> TabEvent:
    """The tab's layout and events; returns its main event (for the button that runs every tab)."""
    choices = shown_features(services)
    labels = gallery_labels(services)

    # deleted when the visitor leaves (Gradio ends the session) or, with the tab left open, after the TTL
    session = gr.State(None, time_to_live=services.config.limits.upload_session_ttl_s, delete_callback=forget_session)
    if labels:
        gr.Markdown(f"Finds the photos most like yours in a small labelled gallery: {len(services.gallery())} "
                    f"photos of {len(labels)} labels ({', '.join(labels)}). A photo of anything else has no "
                    f"match here, and the answer says so.")
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(label="Query image", height=280, elem_id="retrieve-image")
            button = gr.Button("Retrieve", variant="primary")
            feature = gr.Radio([(feature_label(services, c), c) for c in choices],
                               value=choices[0], label="Feature", info=FEATURE_HELP)
            k = gr.Slider(1, 20, value=5, step=1, label="How many results (k)")
        with gr.Column(scale=2):
            examples_slot = gr.Column()  # first on the right: what a newcomer clicks, above the answer it gives
            note = gr.Markdown(elem_id="retrieve-note")
            results = gr.Gallery(label="Nearest gallery images (label · cosine similarity)", columns=4,
                                 height="auto", elem_id="retrieve-results", elem_classes=["every-row"])
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

    retrieve = functools.partial(retrieve_image, services)
    examples = query_examples()
    with examples_slot:
        clickable_examples(services, image, retrieve, [results, note], inputs=[feature, k, session],
                           examples=examples, captions=[query_caption(p) for p in examples],
                           label="Examples: gallery photos rotated, brighter, zoomed or covered; click one")
    button.click(retrieve, [image, feature, k, session], [results, note], api_name="retrieve", **inference(services))
    image.upload(retrieve, [image, feature, k, session], [results, note], api_name="retrieve_on_upload",
                 api_visibility="private", **inference(services))
    metrics_button.click(functools.partial(retrieval_quality, services), [session], [metrics, metrics_note],
                         api_name="retrieval_quality", **inference(services))
    add_button.click(functools.partial(add_uploads, services), [upload, upload_label, session], [session, upload_note],
                     api_name="on_upload", api_visibility="private", concurrency_id="uploads",
                     concurrency_limit=services.config.queue.upload_concurrency)
    clear_button.click(clear_uploads, [session], [session, upload_note], api_name="on_clear", api_visibility="private")
    return TabEvent([image, feature, k, session], [results, note])
