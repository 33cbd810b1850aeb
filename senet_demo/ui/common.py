"""Helpers shared by the tabs: error conversion, example images, status text."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import gradio as gr

from ..images import ImageError, load_image
from ..models import ModelLoadError
from ..services import Services
from ..weights import WeightsNotFound

log = logging.getLogger(__name__)

USER_ERRORS = (ImageError, WeightsNotFound, ModelLoadError, ValueError)


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


class ImageInput(gr.Image):
    """``gr.Image`` that hands undecodable uploads to the app's own decoder, which explains the problem.

    Gradio's own preprocessing opens the file with PIL first and answers a non-image with a bare
    error; passing the path through lets ``images.load_image`` give the visitor a clear message.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("type", "filepath")
        kwargs.setdefault("image_mode", None)  # never convert: decoding happens in images.load_image
        kwargs.setdefault("sources", ["upload", "webcam", "clipboard"])
        super().__init__(**kwargs)

    def get_block_name(self) -> str:
        return "image"  # same front-end component as gr.Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception:
            return str(payload.path) if payload is not None and payload.path else None


def decode(image, services: Services):
    """A visitor's image (PIL from gr.Image, or a file path) -> RGB PIL, or a readable error."""
    return load_image(image, services.config.limits)


def example_images(services: Services, per_label: int = 1, limit: int = 8) -> list[str]:
    """A few gallery photos to click, one per category."""
    root = Path(services.config.gallery_dir)
    if not root.is_dir():
        return []
    examples = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in label_dir.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        examples.extend(str(f) for f in files[:per_label])
    return examples[:limit]


def model_status_markdown(services: Services) -> str:
    lines = ["| model | weights |", "|---|---|"]
    for name, status in services.model_status().items():
        lines.append(f"| `{name}` | {status} |")
    return "\n".join(lines)
