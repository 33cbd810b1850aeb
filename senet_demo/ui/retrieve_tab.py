"""Retrieve tab: nearest gallery images to a query, and measured retrieval quality.

The answer says plainly when the gallery holds nothing like the query: below the feature's match threshold
(``search.GallerySearch.match_threshold``, from the gallery's own leave-one-out scores) the nearest images
are still shown, under a note that they are unlikely to show the same thing, and the labels the gallery
covers are listed. Gallery labels are the folder names (as class names, they stay as they are).
"""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from ..config import QUERIES_DIR
from ..i18n import Message, Page, render, text
from ..images import size_text
from ..retrieval import ENSEMBLE, LOGSOFTMAX, MATCH_PERCENTILE
from ..search import feature_choices
from ..services import Services
from ..uploads import UploadError, forget, ingest, new_session_dir
from .common import TabEvent, clickable_examples, decode, example_caption, friendly_names, image_input, user_errors
from .queue import inference

VIEW_KEYS = {"rotate": "retrieve.view.rotate", "brightness": "retrieve.view.brightness", "scale": "retrieve.view.scale",
             "occlude": "retrieve.view.occlude"}


def query_examples(limit: int = 8) -> list[str]:
    """Generated query views (rotation, brightness, scale, occlusion) of gallery images."""
    if not QUERIES_DIR.is_dir():
        return []
    views = sorted(QUERIES_DIR.glob("*.jpg"))
    return [str(p) for p in views[:: max(1, len(views) // limit)]][:limit]


def query_caption(path: str) -> str:
    """A query view's caption in words: "blackbird, rotated" for bird__blackbird__rotate.jpg (a ``Message``
    when the view is one the app names, so the caption follows the visitor's language)."""
    parts = Path(path).stem.split("__")
    if len(parts) != 3:
        return Path(path).stem.replace("_", " ")
    _, item, view = parts
    if view not in VIEW_KEYS:
        return f"{example_caption(item + '.jpg')}, {view}"
    return Message("retrieve.query_caption", item=example_caption(item + ".jpg"), view=Message(VIEW_KEYS[view]))


def shown_features(services: Services) -> list[str]:
    """The feature choices a visitor sees: with one model its embedding is the ensemble's, so it is offered
    once (as ``ensemble``, the API's default)."""
    choices = feature_choices(services)
    if len(services.registry.names) == 1:
        return [c for c in choices if c in (ENSEMBLE, LOGSOFTMAX)]
    return choices


def feature_message(services: Services, feature: str) -> Message:
    """A feature choice in words, in either language."""
    words = friendly_names(services)
    names = services.registry.names
    if feature == ENSEMBLE:
        return (Message("retrieve.feature.model", model=words[names[0]]) if len(names) == 1 else
                Message("retrieve.feature.ensemble"))
    if feature == LOGSOFTMAX:
        return Message("retrieve.feature.logsoftmax")
    return Message("retrieve.feature.model", model=words.get(feature, feature))


def feature_label(services: Services, feature: str, lang: str = "en") -> str:
    """A feature choice in words, in ``lang``."""
    return feature_message(services, feature).render(lang)


def gallery_labels(services: Services) -> list[str]:
    return sorted({item.label for item in services.gallery()})


def result_note(services: Services, hits, feature: str, total: int, threshold: float | None, lang: str = "en") -> str:
    """What the results mean: the most frequent label, or, when even the best match is below the gallery's
    match threshold, that the gallery holds nothing close (and which labels it covers)."""
    labels = [hit.item.label for hit in hits]
    shown = text("retrieve.shown", lang, count=len(hits), total=total, feature=feature_label(services, feature, lang))
    covered = ", ".join(gallery_labels(services))
    if hits and threshold is not None and hits[0].score < threshold:
        return text("retrieve.nothing_close", lang, score=hits[0].score, threshold=threshold,
                    share=100 - MATCH_PERCENTILE, labels=covered, shown=shown)
    top = max(labels, key=labels.count) if labels else "—"  # a tie goes to the best-ranked label
    return text("retrieve.most_frequent", lang, shown=shown, label=top)


def session_items(services: Services, session) -> list:
    """The operator's gallery plus this visitor's own uploads."""
    return services.gallery() + (session["items"] if session else [])


@user_errors
def retrieve_image(services: Services, image, feature, k, session, lang="en", progress=gr.Progress(track_tqdm=True)):
    """/retrieve: the ``k`` nearest gallery images (and the visitor's uploads) by ``feature``, and a note
    (in ``lang``, "en" or "ko")."""
    picture = decode(image, services)
    uploaded = session["items"] if session else []
    items = services.gallery() + uploaded
    indexed = len(services.built_index) if services.built_index is not None else 0  # rows of a built index
    hits = services.search.search(picture, services.gallery(), feature, k,
                                  progress=lambda f, d: progress(f, desc=render(d, lang)), extra_items=uploaded)
    gallery = [(str(hit.item.path), f"{hit.item.label} · {hit.score:.3f}") for hit in hits]
    # the operator's gallery (or built index) sets the threshold; a visitor's own uploads when there is neither
    reference = services.gallery() or ([] if services.built_index is not None else uploaded)
    threshold = services.search.match_threshold(reference, feature)
    return gallery, result_note(services, hits, feature, len(items) + indexed, threshold, lang)


@user_errors
def retrieval_quality(services: Services, session, lang="en", progress=gr.Progress(track_tqdm=True)):
    """/retrieval_quality: leave-one-out P@1, P@5 and mAP for every feature choice, and a note (in ``lang``;
    the table's column names too, which come with its value)."""
    items = session_items(services, session)
    built = services.built_index  # a built index brings its own labelled sample
    if built is None and len({i.label for i in items}) < 2:
        raise gr.Error(text("retrieve.quality.two_labels", lang))
    rows = []
    for feature in shown_features(services):
        quality = services.search.evaluate(items, feature, progress=lambda f, d: progress(f, desc=render(d, lang)))
        rows.append([feature_label(services, feature, lang), round(quality.precision_at_1, 3),
                     round(quality.precision_at_5, 3), round(quality.mean_average_precision, 3)])
    best = max(rows, key=lambda r: r[3])
    note = text("retrieve.quality.note", lang, images=len(items), labels=len({i.label for i in items}),
                queries=quality.queries, best=best[0], map=best[3])
    if built is not None:  # measured on its sample; its search may be approximate (recall@10 against exact)
        note = built.quality_note(quality, uploads=len(items))
    if lang == "en":  # the API's answer as it always was: the rows, under the table's own column names
        return rows, note
    # the column names come with the value (an update of the headers alone does not reach the page)
    return gr.Dataframe(value=rows, headers=[text("retrieve.quality.feature", lang), "P@1", "P@5", "mAP"]), note


@user_errors
def add_uploads(services: Services, files, label, session, lang="en"):
    """Check the visitor's files (images or a zip) into their session folder; returns (session, note).

    The session remembers the paths Gradio passed (``uploaded``): Gradio keeps its own copy of every file
    and serves it by URL, so forgetting the visitor's images deletes those copies too."""
    if not files:
        return session, text("retrieve.upload.none", lang)
    created = session is None
    session = session or {"dir": str(new_session_dir()), "items": [], "uploaded": []}
    try:
        items, messages = ingest(files, Path(session["dir"]), label, services.config.limits)
    except Exception as err:
        # Nothing of a refused upload is kept, Gradio's copies included.
        forget(session["dir"] if created else None, files)
        if isinstance(err, UploadError):
            raise gr.Error(render(err, lang)) from err
        raise
    limit = services.config.limits.max_upload_files
    if len(session["items"]) + len(items) > limit:
        for item in items:
            item.path.unlink(missing_ok=True)
        forget(session["dir"] if created else None, files)
        raise gr.Error(text("retrieve.upload.session_full", lang, limit=limit))
    uploaded = session.get("uploaded", []) + [str(f) for f in files]
    session = {"dir": session["dir"], "items": session["items"] + items, "uploaded": uploaded}
    return session, "\n".join(f"- {render(m, lang)}" for m in messages)


def forget_session(session) -> None:
    """Delete the visitor's uploads: their session folder and Gradio's copies of the files they sent.
    Also Gradio's delete callback for the session state: the visitor left, or the state expired."""
    if session:
        forget(session["dir"], session.get("uploaded"))


def clear_uploads(session, lang="en"):
    """"Remove my images": delete the visitor's uploads; returns (no session, note)."""
    forget_session(session)
    return None, text("retrieve.upload.removed", lang)


def build(services: Services, page: Page | None = None, switch: gr.Radio | None = None) -> TabEvent:
    """The tab's layout and events; returns its main event (for the button that runs every tab). ``page``
    tracks the tab's texts for the language switch; ``switch`` is the handlers' last input."""
    page = page if page is not None else Page()
    choices = shown_features(services)
    labels = gallery_labels(services)
    language = [switch] if switch is not None else []

    # deleted when the visitor leaves (Gradio ends the session) or, with the tab left open, after the TTL
    session = gr.State(None, time_to_live=services.config.limits.upload_session_ttl_s, delete_callback=forget_session)
    if labels:
        page(gr.Markdown, value=Message("retrieve.intro", photos=len(services.gallery()), count=len(labels),
                                        labels=", ".join(labels)))
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(label=Message("retrieve.query"), height=280, elem_id="retrieve-image", page=page)
            button = page(gr.Button, value=Message("retrieve.run"), variant="primary")
            feature = page(gr.Radio, choices=[(feature_message(services, c), c) for c in choices],
                           value=choices[0], label=Message("retrieve.feature"), info=Message("retrieve.feature.info"))
            k = page(gr.Slider, minimum=1, maximum=20, value=5, step=1, label=Message("retrieve.k"))
        with gr.Column(scale=2):
            examples_slot = gr.Column()  # first on the right: what a newcomer clicks, above the answer it gives
            note = gr.Markdown(elem_id="retrieve-note")
            results = page(gr.Gallery, label=Message("retrieve.results"), columns=4,
                           height="auto", elem_id="retrieve-results", elem_classes=["every-row"])
    with page(gr.Accordion, label=Message("retrieve.quality"), open=False):
        metrics_button = page(gr.Button, value=Message("retrieve.quality.run"))
        metrics = page(gr.Dataframe, headers=[Message("retrieve.quality.feature"), "P@1", "P@5", "mAP"],
                       datatype=["str", "number", "number", "number"], interactive=False)
        metrics_note = gr.Markdown()
    with page(gr.Accordion, label=Message("retrieve.upload"), open=False):
        limits = services.config.limits
        page(gr.Markdown, value=Message("retrieve.upload.intro", files=limits.max_upload_files,
                                        each=size_text(limits.max_image_bytes),
                                        total=size_text(limits.max_upload_total_bytes)))
        upload_label = page(gr.Textbox, value="uploaded", label=Message("retrieve.upload.label"))
        upload = page(gr.File, file_count="multiple", file_types=["image", ".zip"],
                      label=Message("retrieve.upload.files"))
        with gr.Row():
            add_button = page(gr.Button, value=Message("retrieve.upload.add"))
            clear_button = page(gr.Button, value=Message("retrieve.upload.clear"))
        upload_note = gr.Markdown()

    retrieve = functools.partial(retrieve_image, services)
    examples = query_examples()
    inputs = [image, feature, k, session]  # the API's inputs; the language comes last, optional
    with examples_slot:
        clickable_examples(services, image, retrieve, [results, note], inputs=[feature, k, session, *language],
                           examples=examples, captions=[query_caption(p) for p in examples],
                           label=Message("retrieve.examples"), page=page)
    button.click(retrieve, inputs + language, [results, note], api_name="retrieve", **inference(services))
    image.upload(retrieve, inputs + language, [results, note], api_name="retrieve_on_upload",
                 api_visibility="private", **inference(services))
    metrics_button.click(functools.partial(retrieval_quality, services), [session, *language], [metrics, metrics_note],
                         api_name="retrieval_quality", **inference(services))
    add_button.click(functools.partial(add_uploads, services), [upload, upload_label, session, *language],
                     [session, upload_note], api_name="on_upload", api_visibility="private",
                     concurrency_id="uploads", concurrency_limit=services.config.queue.upload_concurrency)
    clear_button.click(clear_uploads, [session, *language], [session, upload_note], api_name="on_clear",
                       api_visibility="private")
    return TabEvent(inputs, [results, note])
