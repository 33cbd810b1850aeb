"""How every model-running event is registered: in the shared inference pool, its outputs postprocessed in
the handler's own thread.

Gradio postprocesses each output of an event in a worker thread of its own, one hop there and back per
output, and then checks and copies every file of the answer twice (once before storing the value in the
session, once before sending it). On 2 cores each hop costs up to a millisecond, and the checks resolve
every path against every allowed folder: about 20 ms of the Classify-Retrieve-Explain answer's 13 outputs.
Registered by ``listen`` (``postprocess=False``, the handler wrapped by ``postprocessed``), an event runs
each output component's own ``postprocess`` right after its handler, in the same thread, and Gradio checks
and copies the files once. What reaches the browser is the same, except that the images the app makes
(Explain's tiles) come inline (``gallery_data``). Inputs keep Gradio's preprocessing: it reads the
visitor's session's copy of a component whose choices an event changed (Explain's block list).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Callable

import gradio as gr
from gradio import utils
from gradio.blocks import Block
from gradio.components.gallery import GalleryData, GalleryImage
from gradio.data_classes import GradioModel, GradioRootModel, ImageData
from gradio.image_utils import encode_image_to_base64
from gradio_client.utils import get_mimetype, is_http_url_like
from PIL import Image

from ..gallery import IMAGE_SUFFIXES
from ..services import Services
from .queue import inference

log = logging.getLogger(__name__)


def listen(trigger: Callable, handler: Callable, inputs, outputs, services: Services, **listener):
    """``trigger(handler, inputs, outputs, ...)`` (e.g. ``button.click``) as a model-running event."""
    return trigger(postprocessed(handler, outputs), inputs, outputs, postprocess=False, **inference(services),
                   **listener)


def postprocessed(handler: Callable, outputs) -> Callable:
    """``handler`` returning its outputs as Gradio sends them (for a listener with ``postprocess=False``).

    The handler returns one value per output (a list or tuple), or the value itself for a single output, as
    the handlers here do; Gradio's other forms (a dict by component, one ``gr.skip()`` for every output) are
    refused. Each value is postprocessed by the app's component, or, for an update with properties, by a
    copy with them, as Gradio does; no event here changes a model event's output component for one visitor.
    """
    components = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    @functools.wraps(handler)  # keeps the signature Gradio reads (its gr.Progress argument)
    def wrapper(*args, **kwargs):
        values = handler(*args, **kwargs)
        if len(components) == 1:
            values = [values]
        elif not isinstance(values, (list, tuple)) or len(values) != len(components):
            raise ValueError(f"{handler.__name__} must return {len(components)} values, one per output")
        try:
            answer = [serialised(component, value) for component, value in zip(components, values)]
        except gr.Error:
            raise
        except Exception as err:  # as Gradio's own postprocessing would, the server keeps serving
            log.exception("Serialising the answer of %s failed", handler.__name__)
            raise gr.Error(f"Something went wrong preparing the answer ({type(err).__name__}). "
                           "The server is still running; try again.") from err
        return answer[0] if len(components) == 1 else answer

    return wrapper


def serialised(component: gr.components.Component, value):
    """What Gradio's own postprocessing makes of ``value`` for ``component``, before its file checks."""
    if isinstance(value, Block):  # a component returned as an update, as Gradio reads it
        value = {**value.constructor_args, "__type__": "update"}
    if utils.is_prop_update(value):
        if "value" not in value:
            return value
        properties = {k: v for k, v in value.items() if k not in ("value", "__type__")}
        if properties:  # the value is shown by a component with these properties
            component = type(component)(**{**component.constructor_args, **properties, "render": False})
        return {**value, "value": serialised(component, value["value"])}
    result = gallery_data(component, value) if isinstance(component, gr.Gallery) else None
    if result is None:
        result = component.postprocess(value)
    return result.model_dump() if isinstance(result, (GradioModel, GradioRootModel)) else result


def gallery_data(gallery: gr.Gallery, value) -> GalleryData | None:
    """The galleries here, a list of (local image file or PIL image, caption), made one item after the other:
    Gradio's own postprocessing starts a pool of threads for each answer, which cost more than the items on
    2 cores. A file is sent as Gradio sends it. An image the app made for a JPEG gallery (Explain's tiles)
    is sent inline, as a JPEG data URL (which Gradio's ImageData allows): Gradio would write it to a file of
    its own, check its path twice and have the browser fetch it, about 1.5 ms per tile here. None for any
    other value (Gradio's own postprocessing then makes it)."""
    if not isinstance(value, list):
        return None
    items = []
    for item in value:
        media, caption = item if isinstance(item, (tuple, list)) else (item, None)
        if isinstance(media, Image.Image) and gallery.format.lower() in ("jpeg", "jpg"):
            picture = media if media.mode == "RGB" else media.convert("RGB")
            image = ImageData(url=encode_image_to_base64(picture), mime_type="image/jpeg")
        elif isinstance(media, str) and _local_image(media):
            image = ImageData(path=media, orig_name=Path(media).name, mime_type=get_mimetype(media))
        else:
            return None
        items.append(GalleryImage(image=image, caption=caption))
    return GalleryData(root=items)


def _local_image(path: str) -> bool:
    return not is_http_url_like(path) and Path(path).suffix.lower() in IMAGE_SUFFIXES  # not .svg, not a video
