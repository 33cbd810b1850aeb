"""Model events: outputs postprocessed in the handler's thread, exactly as Gradio's own postprocessing makes them."""
from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest

from helpers import make_config, random_image
from retrieval_helpers import make_gallery
from senet_demo.services import Services
from senet_demo.ui import build_demo
from senet_demo.ui.model_events import gallery_data, listen, postprocessed, serialised
from senet_demo.ui.queue import INFERENCE_POOL


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i, suffix in enumerate([".png", ".jpg", ".webp"]):
        path = tmp_path / f"photo{i}{suffix}"
        random_image(seed=i).save(path)
        paths.append(str(path))
    return paths


def _gradio(component, value):
    result = component.postprocess(value)
    return result.model_dump() if hasattr(result, "model_dump") else result


def test_galleries_are_serialised_as_gradio_serialises_them(photos):
    tiles = [random_image(64, 64, seed=10 + i) for i in range(3)]
    for gallery in (gr.Gallery(format="jpeg"), gr.Gallery()):
        for value in ([(p, f"label · 0.{i}") for i, p in enumerate(photos)],  # Retrieve's results
                      [(tile, f"ch {i}") for i, tile in enumerate(tiles)],  # Explain's tiles
                      photos, [(photos[0], None)], [], None):
            assert serialised(gallery, value) == _gradio(gallery, value)
    answer = serialised(gr.Gallery(format="jpeg"), [(tiles[0], "ch 0")])
    assert answer[0]["image"]["path"].endswith(".jpeg") and answer[0]["caption"] == "ch 0"


def test_what_the_fast_gallery_path_does_not_know_is_left_to_gradio(photos):
    gallery = gr.Gallery()
    for value in ([("https://example.org/cat.jpg", "web")], [("clip.mp4", "video")], "not a list"):
        assert gallery_data(gallery, value) is None
    web = [("https://example.org/cat.jpg", "web")]
    assert serialised(gallery, web) == _gradio(gallery, web)


def test_other_outputs_are_serialised_as_gradio_serialises_them(photos):
    figure = go.Figure(go.Heatmap(z=np.linspace(0, 1, 24).reshape(3, 8), colorscale="Viridis"))
    cases = [
        (gr.Label(num_top_classes=5), {"tabby": 0.7, "tiger cat": 0.2}),
        (gr.Label(num_top_classes=5), None),
        (gr.Markdown(), "| member | top-1 |\n|---|---|"),
        (gr.Image(type="filepath"), photos[0]),
        (gr.Dataframe(headers=["feature", "mAP"]), [["ensemble", 0.5]]),
        (gr.Plot(), figure),
        (gr.Plot(), None),
    ]
    for component, value in cases:
        assert serialised(component, value) == _gradio(component, value), type(component).__name__
    update = serialised(gr.Label(), gr.update(value={"cat": 1.0}, visible=True))
    assert update["__type__"] == "update" and update["visible"] is True
    assert update["value"] == _gradio(gr.Label(), {"cat": 1.0})


def test_a_handler_with_the_wrong_number_of_answers_is_an_error():
    outputs = [gr.Markdown(), gr.Markdown()]
    with pytest.raises(ValueError, match="returned 1 values for 2 outputs"):
        postprocessed(lambda: ["only one"], outputs)()
    assert postprocessed(lambda: "one", gr.Markdown())() == "one"  # a single output is not a list


def test_the_wrapper_keeps_the_handlers_progress_argument():
    import inspect

    def handler(image, progress=gr.Progress()):
        return "done"

    assert "progress" in inspect.signature(postprocessed(handler, gr.Markdown())).parameters


@pytest.fixture
def app(tmp_path, resnet_name, senet_name):
    config = make_config(tmp_path, [resnet_name, senet_name])
    config.gallery_dir = make_gallery(tmp_path / "gallery", {"red": 2, "green": 2})
    services = Services.create(config)
    return services, build_demo(services)


def test_every_model_event_is_postprocessed_in_its_handlers_thread(app):
    _, demo = app
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == INFERENCE_POOL]
    names = {fn.api_name for fn in model_events}
    assert {"classify", "retrieve", "explain", "every_tab", "figure6", "ablate", "retrieval_quality"} <= names
    assert all(fn.postprocess is False for fn in model_events)


def test_a_listener_registered_by_listen_answers_as_gradio_would(app, tmp_path):
    services, _ = app
    image = tmp_path / "query.png"
    random_image(seed=3).save(image)
    with gr.Blocks() as demo:
        box, gallery, text = gr.Image(type="filepath"), gr.Gallery(), gr.Markdown()
        button = gr.Button()
        listen(button.click, lambda path: ([(path, "me")], "**found**"), box, [gallery, text], services)
    (fn,) = [f for f in demo.fns.values()]
    assert fn.postprocess is False and fn.concurrency_id == INFERENCE_POOL
    answer = fn.fn(str(image))
    assert answer == [_gradio(gallery, [(str(image), "me")]), "**found**"]
