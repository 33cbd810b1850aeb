"""One image through Classify, Retrieve and Explain in one request.

The Classify tab's "Classify, retrieve and explain" button runs the three tabs' own handlers on its image,
with each tab's current settings, and fills all three tabs (their image boxes too). The models run once per
image: Retrieve and Explain read the forward pass that Classify made. One request instead of three also
saves two uploads and two trips through the queue, about 10 ms each on 2 cores.
"""
from __future__ import annotations

import gradio as gr

from ..services import Services
from .common import TabEvent, decode, user_errors
from .model_events import listen


def wire(button: gr.Button, classify: TabEvent, retrieve: TabEvent, explain: TabEvent, services: Services) -> None:
    retrieve_settings, explain_settings = retrieve.inputs[1:], explain.inputs[1:]

    @user_errors
    def on_every_tab(*values, progress=gr.Progress(track_tqdm=True)):  # shows a first run's download bars
        image, classify_settings = values[0], values[1:len(classify.inputs)]
        settings = values[len(classify.inputs):]
        picture = decode(image, services)  # once for the three tabs; a bad image stops here, with its message
        answer = classify.handler(picture, *classify_settings)
        found = _or_message(retrieve, picture, settings[:len(retrieve_settings)])
        explained = _or_message(explain, picture, settings[len(retrieve_settings):])
        return [*answer, image, *found, image, *explained]

    listen(button.click, on_every_tab, [*classify.inputs, *retrieve_settings, *explain_settings],
           [*classify.outputs, retrieve.inputs[0], *retrieve.outputs, explain.inputs[0], *explain.outputs],
           services, checked_by_handler=[*classify.checked_by_handler, *retrieve.checked_by_handler,
                                         *explain.checked_by_handler], api_name="every_tab")


def _or_message(tab: TabEvent, picture, settings) -> list:
    """The tab's outputs, or, when it cannot answer (an empty gallery, a model that fails), its message in
    the tab's text box and nothing in the others: the tabs that can answer still do."""
    try:
        return list(tab.handler(picture, *settings))
    except gr.Error as err:
        text_box = next(i for i, component in enumerate(tab.outputs) if isinstance(component, gr.Markdown))
        return [err.message if i == text_box else None for i in range(len(tab.outputs))]
