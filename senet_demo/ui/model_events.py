"""How every model-running event is registered: in the shared inference pool, its inputs preprocessed and its
outputs postprocessed in the handler's own thread.

Gradio preprocesses each input of an event in a worker thread of its own and postprocesses each output in
another, one hop there and back per value, and then checks and copies every file of the answer twice (once
before storing the value in the session, once before sending it). On 2 cores each hop costs up to a
millisecond (the Classify tab's four inputs took 4 ms), and the checks resolve every path against every
allowed folder: about 20 ms of the Classify-Retrieve-Explain answer's 13 outputs. Registered by ``listen``
(``preprocess=False`` and ``postprocess=False``, the handler wrapped by ``preprocessed`` and
``postprocessed``), an event runs each input component's own ``preprocess`` just before its handler and each
output component's own ``postprocess`` right after it, in the same thread, and Gradio checks and copies the
files once. Gradio still checks that a file sent as an input lies in its upload folder (the one all sessions
share, under unguessable names), and still validates each value against its component's data model,
before the handler's thread starts.

What reaches the handler and the browser is the same, with two exceptions. The images the app makes
(Explain's tiles) come inline (``gallery_data``). And a component whose choices an event changes for one
visitor (Explain's block lists) is named in ``listen``'s ``checked_by_handler``: Gradio keeps that visitor's
copy of it, which its own preprocessing would check the value against, so the value reaches the handler as
sent, and the handler checks it against the visitor's model itself.
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

from ..images import IMAGE_SUFFIXES
from ..services import Services
from .queue import inference

log = logging.getLogger(__name__)


def listen(trigger: Callable, handler: Callable, inputs, outputs, services: Services, checked_by_handler=(),
           **listener):
    """``trigger(handler, inputs, outputs, ...)`` (e.g. ``button.click``) as a model-running event; the values of
    the components in ``checked_by_handler`` reach the handler unpreprocessed (see the module's docstring)."""
    handler = postprocessed(preprocessed(handler, inputs, checked_by_handler), outputs)
    return trigger(handler, inputs, outputs, preprocess=False, postprocess=False, **inference(services), **listener)


def preprocessed(handler: Callable, inputs, checked_by_handler=()) -> Callable:
    """``handler`` receiving its inputs as Gradio's own preprocessing gives them (for a listener with
    ``preprocess=False``): each value by its component's ``preprocess``, except a stateful component's (Gradio
    passes its value as it is) and those of ``checked_by_handler``. Further arguments Gradio adds after the
    inputs (a ``gr.Progress``) pass through."""
    components = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    as_sent = {component._id for component in checked_by_handler}

    @functools.wraps(handler)  # keeps the signature Gradio reads
    def wrapper(*args, **kwargs):
        values = [value if component.stateful or component._id in as_sent else preprocessed_value(component, value)
                  for component, value in zip(components, args)]
        return handler(*values, *args[len(components):], **kwargs)

    return wrapper


def preprocessed_value(component: gr.components.Component, payload):
    """What Gradio's own preprocessing makes of ``payload`` (an input's value as Gradio passes it to an event
    without preprocessing) for ``component``; a value it cannot read is a ``gr.Error`` naming the input."""
    try:
        data_model = getattr(component, "data_model", None)
        if data_model is not None and payload is not None:
            payload = data_model.model_validate(payload, context={"validate_meta": True})
        return component.preprocess(payload)
    except gr.Error:
        raise
    except Exception as err:
        name = component.label or type(component).__name__
        raise gr.Error(f"The value sent for \"{name}\" could not be read ({type(err).__name__}).") from err


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
