"""One image through Classify, Retrieve and Explain in one request.

The Classify tab's "Classify, retrieve and explain" button runs the three tabs' own handlers on its image,
with each tab's current settings, and fills all three tabs (their image boxes too). The models run once per
image: Retrieve and Explain read the forward pass that Classify made. One request instead of three also
saves two uploads and two trips through the queue. The language switch comes last, as in every tab.
"""
from __future__ import annotations

import functools

import gradio as gr

from ..services import Services
from .classify_tab import classify_image
from .common import TabEvent, decode, user_errors
from .explain_tab import EXPLAIN_OUTPUTS, EXPLAIN_SETTINGS, explain_image
from .queue import inference
from .retrieve_tab import retrieve_image


@user_errors
def every_tab(services: Services, image, tta, *settings, progress=gr.Progress(track_tqdm=True)):
    """/every_tab: Classify's inputs (image, TTA, one weight per member), then Retrieve's settings (feature, k,
    session) and Explain's (model, block, gallery picks, compared uploads, sample50, k), then optionally the
    language of the texts ("en" or "ko") -> Classify's outputs, the image and Retrieve's outputs, the image and
    Explain's outputs."""
    members = len(services.registry.names)
    settings, lang = settings[:members + 3 + EXPLAIN_SETTINGS], settings[members + 3 + EXPLAIN_SETTINGS:]
    lang = lang[0] if lang else "en"
    weights, retrieve_settings, explain_settings = (settings[:members], settings[members:members + 3],
                                                    settings[members + 3:])
    picture = decode(image, services)  # once for the three tabs; a bad image stops here, with its message
    answer = classify_image(services, picture, tta, *weights, lang)
    found = _or_message(retrieve_image, services, picture, [*retrieve_settings, lang], outputs=2, text_box=1)
    explained = _or_message(explain_image, services, picture, [*explain_settings, lang], outputs=EXPLAIN_OUTPUTS,
                            text_box=0)
    return [*answer, image, *found, image, *explained]


def _or_message(handler, services: Services, picture, settings, outputs: int, text_box: int) -> list:
    """The tab's outputs, or, when it cannot answer (an empty gallery, a model that fails), its message in
    the tab's text box and nothing in the others: the tabs that can answer still do."""
    try:
        return list(handler(services, picture, *settings))
    except gr.Error as err:
        return [err.message if i == text_box else None for i in range(outputs)]


def wire(button: gr.Button, classify: TabEvent, retrieve: TabEvent, explain: TabEvent, services: Services,
         switch: gr.Radio | None = None) -> None:
    """``button`` runs the three tabs' handlers on Classify's image, with each tab's current settings (and the
    visitor's language, the ``switch``)."""
    language = [switch] if switch is not None else []
    button.click(functools.partial(every_tab, services),
                 [*classify.inputs, *retrieve.inputs[1:], *explain.inputs[1:], *language],
                 [*classify.outputs, retrieve.inputs[0], *retrieve.outputs, explain.inputs[0], *explain.outputs],
                 api_name="every_tab", **inference(services))
