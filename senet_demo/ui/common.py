"""Helpers shared by the tabs: error conversion, example images, status text."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..classify import NoModelAnswered
from ..config import GALLERY_DIR
from ..gallery import gallery_problem
from ..images import IMAGE_SUFFIXES, ImageError, load_image
from ..models import ModelLoadError
from ..services import Services
from ..weights import WeightsNotFound

log = logging.getLogger(__name__)

USER_ERRORS = (ImageError, WeightsNotFound, ModelLoadError, NoModelAnswered, ValueError)


@dataclass(frozen=True)
class TabEvent:
    """A tab's main event's components, for the button that runs every tab at once: its inputs (the image
    first) and its outputs, in its handler's order."""

    inputs: list
    outputs: list


def user_errors(handler):
    """Turn expected failures into a ``gr.Error`` the visitor can read; log the unexpected ones."""

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as err:
            raise gr.Error(str(err)) from err
        except Exception as err:  # the server must keep serving whatever happens
            log.exception("Handler %s failed", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(err).__name__}). The server is still running; try again.") from err

    return wrapper


def image_input(**kwargs) -> gr.Image:
    """An image input whose uploads reach ``images.load_image`` as files, unconverted.

    Gradio's own preprocessing opens the file with PIL and answers a non-image with a bare error;
    here an undecodable upload is passed on as its path, so the app's decoder can tell the visitor
    what is wrong. (Wrapping the instance's method avoids a component subclass, which would make
    Gradio write a type-stub file beside this module.)
    """
    component = gr.Image(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"], **kwargs)
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


def display_name(services: Services, name: str) -> str:
    return services.registry.specs[name].label


def model_status_markdown(services: Services) -> str:
    """The Models panel: what keeps the app from storing or finding its data, then each model's weights."""
    warnings = [problem for problem in (services.features.warning, operator_gallery_problem(services)) if problem]
    lines = [f"**Warning:** {problem}" for problem in warnings] + ([""] if warnings else [])
    lines += ["| model | weights |", "|---|---|"]
    for name, status in services.model_status().items():
        lines.append(f"| `{name}` | {status} |")  # the full SPEC here, so the source is visible
    return "\n".join(lines)


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
