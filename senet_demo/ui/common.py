"""Helpers shared by the tabs: error conversion, clickable examples, model names and status text, each in the
visitor's language (``lang``: "en" or "ko", the language switch's value)."""
from __future__ import annotations

import functools
import html
import inspect
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr

from ..classify import NoModelAnswered
from ..config import GALLERY_DIR, SpecError
from ..gallery import gallery_problem
from ..i18n import LANGUAGES, Message, render, text, ui
from ..images import IMAGE_SUFFIXES, ImageError, load_image
from ..models import ModelLoadError, training_data
from ..services import BROKEN, HUB_OFFLINE, NOT_FOUND, OFFLINE, UNREACHABLE_HUB, ModelState, Services
from ..weights import WeightsNotFound

log = logging.getLogger(__name__)

USER_ERRORS = (ImageError, WeightsNotFound, ModelLoadError, NoModelAnswered, ValueError)


@dataclass(frozen=True)
class TabEvent:
    """A tab's main event's components, for the button that runs every tab at once: its inputs (the image
    first) and its outputs, in its handler's order."""

    inputs: list
    outputs: list


def language_of(handler, args: tuple, kwargs: dict) -> str:
    """The visitor's language in a handler's arguments: its ``lang`` parameter, or (for a handler that takes
    its inputs as ``*values``) the last input when it is the language switch's value; English for callers
    that send none (the API's default). Gradio may pass ``gr.Progress`` after the inputs: it is skipped."""
    try:
        named = inspect.signature(handler).bind_partial(*args, **kwargs).arguments.get("lang")
    except TypeError:
        named = None
    if named in LANGUAGES:
        return named
    inputs = [arg for arg in args if not isinstance(arg, gr.Progress)]
    last = inputs[-1] if inputs else None
    return last if isinstance(last, str) and last in LANGUAGES else "en"


def user_errors(handler):
    """Turn expected failures into a ``gr.Error`` the visitor can read, in their language: a short sentence,
    with the full message (the file, the fix) one click away; log the unexpected ones."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        lang = language_of(handler, args, kwargs)
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except NoModelAnswered as err:
            services = next((a for a in args if isinstance(a, Services)), None)
            raise gr.Error(no_model_answered_html(err, services, lang), print_exception=False) from err
        except (WeightsNotFound, ModelLoadError) as err:
            sentence = text("error.model_unusable", lang, reason=model_error_sentence(err, lang))
            raise gr.Error(with_details(sentence, render(err, lang), lang), print_exception=False) from err
        except USER_ERRORS as err:  # the visitor's input, or a limit: the message says it all
            raise gr.Error(render(err, lang), print_exception=False) from err
        except Exception as err:  # the server must keep serving whatever happens
            log.exception("Handler %s failed", handler.__name__)
            raise gr.Error(text("error.unexpected", lang, kind=type(err).__name__)) from err

    return wrapper


def with_details(sentence: str, details: str, lang: str = "en") -> str:
    """A short sentence, and the full text behind a "Details" toggle (HTML: toasts and Markdown render it)."""
    if not details or details == sentence:
        return html.escape(sentence, quote=False)
    return (f"{html.escape(sentence, quote=False)}<details><summary>{text('common.details', lang)}</summary>"
            f"<p>{html.escape(details, quote=False)}</p></details>")


MODEL_ERROR_KEYS = {"offline": "model_error.offline", "hub-offline": "model_error.hub_offline",
                    "unreachable": "model_error.unreachable", "unsafe": "model_error.unsafe",
                    "download": "model_error.download"}


def model_error_sentence(err: Exception, lang: str = "en") -> str:
    """What a model's failure means, in a few words without the model's ID (after "ResNet-152: ")."""
    reason = getattr(err, "reason", None)
    if isinstance(err, ModelLoadError):
        key = "model_error.does_not_load"
    elif reason in MODEL_ERROR_KEYS:
        key = MODEL_ERROR_KEYS[reason]
    elif isinstance(err, SpecError):
        key = "model_error.spec"
    else:
        key = "model_error.not_found"
    return text(key, lang)


def no_model_answered_html(err: NoModelAnswered, services: Services | None, lang: str = "en") -> str:
    """No model could classify: which ones, why in short (models that failed alike share one line), and each
    full message one click away."""
    if not err.failures:
        return html.escape(render(err, lang), quote=False)
    names = friendly_names(services) if services is not None else {}
    by_reason: dict[str, list[str]] = {}
    for name, failure in err.failures.items():
        by_reason.setdefault(model_error_sentence(failure, lang), []).append(names.get(name, name))
    lines = [f"{', '.join(models)}: {sentence}" for sentence, models in by_reason.items()]
    details = "\n\n".join(render(failure, lang) for failure in err.failures.values())
    return with_details(text("error.no_model_answered", lang, lines=" ".join(lines)), details, lang)


def image_input(**kwargs) -> gr.Image:
    """An image input whose uploads reach ``images.load_image`` as files, unconverted.

    Gradio's own preprocessing opens the file with PIL and answers a non-image with a bare error;
    here an undecodable upload is passed on as its path, so the app's decoder can tell the visitor
    what is wrong. (Wrapping the instance's method avoids a component subclass, which would make
    Gradio write a type-stub file beside this module.)
    """
    # The placeholder repeats the drop area's accessible name, so what is read out matches what is seen.
    # Its texts are gr.I18n keys, in the browser's language, and not tracked by the language switch: an update
    # of the component's props would give the visitor's session a fresh copy of it without the preprocessing
    # below, and an undecodable upload would then get Gradio's bare error instead of the app's message.
    kwargs.pop("page", None)
    texts = {"placeholder": kwargs.pop("placeholder", Message("image_input.placeholder")),
             "label": kwargs.pop("label", None)}
    kwargs.setdefault("alt_text", text("image_input.alt"))  # not translated by the browser: English
    component = gr.Image(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                         **{prop: ui(value.key) if isinstance(value, Message) and not value.params else value
                            for prop, value in texts.items() if value is not None}, **kwargs)
    gradio_preprocess = component.preprocess

    def preprocess(payload):
        try:
            return gradio_preprocess(payload)
        except Exception:
            return str(payload.path) if payload is not None and payload.path else None

    component.preprocess = preprocess
    return component


def decode(image, services: Services):
    """A visitor's image (PIL from gr.Image, or a file path) -> RGB PIL, or a readable error."""
    return load_image(image, services.config.limits)


def example_images(services: Services, per_label: int = 1, limit: int = 8) -> list[str]:
    """A few gallery photos to click, one per category."""
    root = Path(services.config.gallery_dir)
    if not root.is_dir():
        return []
    examples = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files = sorted(f for f in label_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        examples.extend(str(f) for f in files[:per_label])
    return examples[:limit]


def example_caption(path: str | Path) -> str:
    """A photo's caption in words, from its file name: "blackbird", "grave" (gallery/gravestone/grave_a.jpg)."""
    path = Path(path)
    words = re.sub(r"(_[a-z]|\d+)$", "", path.stem).replace("_", " ").strip()
    return words or path.parent.name.replace("_", " ")


def clickable_examples(services: Services, image: gr.Image, fn: Callable, outputs: list, inputs: list | None = None,
                       examples: list[str] | None = None, captions: list | None = None,
                       label: Message | None = None, page=None) -> gr.Gallery | None:
    """Captioned thumbnails that run ``fn`` when one is clicked: the picture goes into ``image``, then
    ``fn(image, *inputs)`` fills ``outputs`` in the shared inference pool, as the tab's own button does.
    ``examples`` default to one gallery photo per label, ``captions`` to their names in words (each also its
    thumbnail's alt text). With a ``page``, the label and captions (``Message``s) follow the language switch.
    None when there is nothing to show."""
    from .queue import inference

    examples = list(example_images(services) if examples is None else examples)
    if not examples:
        return None
    captions = list(captions or [example_caption(path) for path in examples])
    label = label if label is not None else Message("examples.label")
    build = page or (lambda factory, **options: factory(**{prop: str(value) if isinstance(value, Message) else value
                                                           for prop, value in options.items()}))
    value = list(zip(examples, captions)) if page else [(path, str(caption)) for path, caption in zip(examples, captions)]
    picker = build(gr.Gallery, value=value, label=label, columns=4, height="auto", allow_preview=False,
                        object_fit="contain", interactive=False, buttons=[],
                        elem_classes=["clickable-examples", "every-row"])  # theme.CSS: every row shown

    def chosen(event: gr.SelectData):
        return examples[event.index]

    name = getattr(fn, "func", fn).__name__  # "classify_image": its events are classify_image_pick and _example
    picker.select(chosen, None, image, queue=False, show_progress="hidden", api_name=f"{name}_pick",
                  api_visibility="private").then(
        fn, [image, *(inputs or [])], outputs, api_name=f"{name}_example", api_visibility="private",
        **inference(services))
    return picker


def display_name(services: Services, name: str) -> str:
    return services.registry.specs[name].label


def friendly_names(services: Services) -> dict[str, str]:
    """Each model's name in words ("SE-ResNeXt-101"); the IDs stay in the Models panel."""
    return services.registry.friendly_names()


def models_in_words(services: Services) -> str:
    """The ensemble in words, for the page's first lines: "ResNet-152 + SE-ResNeXt-101, trained on ImageNet"."""
    names = friendly_names(services)
    members = " + ".join(names[name] for name in services.registry.names)
    data = {training_data(services.registry.specs[name]) for name in services.registry.names}
    if len(data) == 1 and None not in data:
        return Message("landing.models_trained", models=members, data=data.pop())
    return members


def model_status_markdown(services: Services, lang: str = "en") -> str:
    """The Models panel: what keeps the app from storing or finding its data, then each model's weights."""
    warnings = [problem for problem in (services.features.warning, operator_gallery_problem(services)) if problem]
    lines = [text("models.warning", lang, problem=render(problem, lang)) for problem in warnings]
    lines += [""] if warnings else []
    names = friendly_names(services)
    lines += [text("models.header", lang), "|---|---|---|---|"]
    ensemble = services.registry.names
    roles = text("models.role.all", lang), text("models.role.explain", lang)
    for name, status in services.model_status().items():
        role = roles[0] if name in ensemble else roles[1]
        # the full SPEC: its source shows
        lines.append(f"| {names[name]} | `{name}` | {role} | {_cell(render(status, lang))} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


NOTICE_GROUPS = {  # state -> catalogue keys of (what, fix), one sentence each; {models} and {command} filled in
    OFFLINE: ("notice.offline", "notice.offline.fix"),
    HUB_OFFLINE: ("notice.hub_offline", "notice.hub_offline.fix"),
    UNREACHABLE_HUB: ("notice.unreachable", "notice.unreachable.fix"),
    NOT_FOUND: ("notice.not_found", "notice.not_found.fix"),
    BROKEN: ("notice.broken", "notice.broken.fix"),
}


def model_notice(services: Services, states: dict[str, ModelState], lang: str = "en") -> str:
    """The page's notice when a model cannot be used: which ones, why, the fix for the way the app was
    started, what still works, and every model's full message one click away; "" when all can be used."""
    names = friendly_names(services)
    bad = {name: state for name, state in states.items() if not state.usable}
    if not bad:
        return ""
    lines = []
    for kind, (what, fix) in NOTICE_GROUPS.items():
        group = [name for name, state in bad.items() if state.kind == kind]
        if group:
            command = "python -m senet_demo download " + " ".join(group)
            lines += [text(what, lang, models=", ".join(names[n] for n in group)) + " "
                      + text(fix, lang, command=command)]
    ensemble = services.registry.names
    if all(name in bad for name in ensemble):
        lines.append(text("notice.none_answer", lang))
    elif any(name in bad for name in ensemble):
        lines.append(text("notice.others_answer", lang))
    else:
        lines.append(text("notice.explain_only", lang))
    details = "".join(f"<li><b>{html.escape(names[name])}</b> (<code>{html.escape(name, quote=False)}</code>): "
                      f"{html.escape(render(state.detail, lang), quote=False)}</li>" for name, state in bad.items())
    return ("⚠️ " + "\n\n".join(lines) + f"\n\n<details><summary>{text('common.details', lang)}</summary>"
            f"<ul>{details}</ul></details>")


def operator_gallery_problem(services: Services) -> str | None:
    """What is wrong with a gallery the operator named (``--gallery``), or None; the sample gallery, or
    none at all, is the app's default and not a problem to report."""
    gallery = Path(services.config.gallery_dir)
    if gallery.resolve() == GALLERY_DIR.resolve():
        return None
    return _gallery_problem(str(gallery))


@functools.lru_cache(maxsize=8)
def _gallery_problem(gallery: str) -> str | None:
    # Once per folder: ``gallery_problem`` hashes every file, and the app scans its gallery once too
    # (``Services.gallery``), so a later answer could not differ from what the app serves.
    return gallery_problem(gallery)
