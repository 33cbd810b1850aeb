"""Model events: inputs preprocessed and outputs postprocessed in the handler's thread, exactly as Gradio's own
pre- and postprocessing make them."""
from __future__ import annotations

import asyncio
import base64
import copy
import io

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from gradio.state_holder import SessionState

from helpers import file_data, make_config, random_image
from retrieval_helpers import make_gallery
from senet_demo.services import Services
from senet_demo.ui import build_demo
from senet_demo.ui.common import image_input
from senet_demo.ui.model_events import gallery_data, listen, postprocessed, preprocessed, serialised
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


def test_gallery_files_are_serialised_as_gradio_serialises_them(photos):
    for gallery in (gr.Gallery(format="jpeg"), gr.Gallery()):
        for value in ([(p, f"label · 0.{i}") for i, p in enumerate(photos)],  # Retrieve's results
                      photos, [(photos[0], None)], [], None):
            assert serialised(gallery, value) == _gradio(gallery, value)


def test_images_the_app_makes_are_sent_inline_without_a_file(tmp_path, monkeypatch):
    cache = tmp_path / "gradio-cache"
    gallery = gr.Gallery(format="jpeg")
    monkeypatch.setattr(gallery, "GRADIO_CACHE", str(cache))
    ramp = np.linspace(0, 255, 64)[None, :, None] * np.ones((48, 1, 3))
    tiles = [Image.fromarray(np.uint8(ramp if i % 2 else 255 - ramp) // (i + 1)) for i in range(3)]  # smooth, distinct
    value = [(tile, f"ch {i}") for i, tile in enumerate(tiles)]
    answer = serialised(gallery, value)
    assert [item["caption"] for item in answer] == ["ch 0", "ch 1", "ch 2"]
    for item, tile in zip(answer, tiles):
        image = item["image"]
        assert image["path"] is None and image["mime_type"] == "image/jpeg"
        header, encoded = image["url"].split(",", 1)
        assert header == "data:image/jpeg;base64"
        sent = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert sent.format == "JPEG" and sent.size == tile.size
        pixels = np.asarray(sent, dtype=np.int16)
        assert np.abs(pixels - np.asarray(tile, dtype=np.int16)).mean() < 3  # the same picture, up to JPEG's loss
        assert all(np.abs(pixels - np.asarray(other, dtype=np.int16)).mean() > 20 for other in tiles if other is not tile)
    assert not cache.exists()  # nothing written for Gradio to check, serve and later delete
    gallery.postprocess(value)
    assert len(list(cache.rglob("*.jpeg"))) == 3  # where Gradio's own postprocessing writes them


def test_what_the_fast_gallery_path_does_not_know_is_left_to_gradio(photos):
    gallery = gr.Gallery()
    for value in ([("https://example.org/cat.jpg", "web")], [("clip.mp4", "video")], "not a list",
                  [(random_image(8, 8), "not for a JPEG gallery")]):  # gr.Gallery() writes WebP: inlining would change it
        assert gallery_data(gallery, value) is None
    web = [("https://example.org/cat.jpg", "web")]
    assert serialised(gallery, web) == _gradio(gallery, web)


def test_an_answer_reaches_the_browser_as_gradios_own_postprocessing_sends_it(photos, tmp_path, resnet_name):
    """The same answer through Gradio's postprocess_data: once as Gradio postprocesses it, once serialised
    in the handler's thread (postprocess=False), which is what the browser receives."""
    services = Services.create(make_config(tmp_path, [resnet_name]))
    figure = go.Figure(go.Heatmap(z=np.linspace(0, 1, 24).reshape(3, 8), colorscale="Viridis"))

    def answer():  # a new one for each call: Gradio's postprocessing takes an update's value out of it
        return [{"tabby": 0.7, "tiger cat": 0.2, "lynx": 0.1}, "| member | top-1 |\n|---|---|", photos[0],
                [(p, f"label · 0.{i}") for i, p in enumerate(photos)], figure, [["ensemble", 0.5]],
                gr.update(value={"cat": 0.6, "dog": 0.3, "fox": 0.1}, num_top_classes=2), None]

    with gr.Blocks() as demo:
        outputs = [gr.Label(num_top_classes=5), gr.Markdown(), gr.Image(type="filepath"), gr.Gallery(), gr.Plot(),
                   gr.Dataframe(headers=["feature", "mAP"]), gr.Label(num_top_classes=5), gr.Plot()]
        gr.Button().click(answer, None, outputs)
        listen(gr.Button().click, answer, None, outputs, services)
    gradios, ours = demo.fns.values()
    assert gradios.postprocess is True and ours.postprocess is False
    sent_by_gradio = asyncio.run(demo.postprocess_data(gradios, gradios.fn(), None))
    sent_by_us = asyncio.run(demo.postprocess_data(ours, ours.fn(), None))
    assert sent_by_us == sent_by_gradio
    assert len(sent_by_us[6]["value"]["confidences"]) == 2  # the update's own num_top_classes


def test_a_single_output_is_one_value_even_in_a_list(photos):
    assert postprocessed(lambda: "one", gr.Markdown())() == "one"
    assert postprocessed(lambda: [(photos[0], "me")], [gr.Gallery()])() == _gradio(gr.Gallery(), [(photos[0], "me")])


def test_a_handler_with_the_wrong_number_of_answers_is_an_error():
    outputs = [gr.Markdown(), gr.Markdown()]
    with pytest.raises(ValueError, match="must return 2 values"):
        postprocessed(lambda: ["only one"], outputs)()
    with pytest.raises(ValueError, match="must return 2 values"):
        postprocessed(lambda: gr.skip(), outputs)()  # Gradio's one skip for every output is not used here


def test_an_answer_that_cannot_be_serialised_is_a_readable_error(caplog):
    def broken():
        return object()  # no Label can show this

    with pytest.raises(gr.Error, match="Something went wrong preparing the answer .* still running"):
        postprocessed(broken, gr.Label())()
    assert "Serialising the answer of broken failed" in caplog.text
    strict = gr.Markdown()

    def refuse(value):
        raise gr.Error("This text cannot be shown.")

    strict.postprocess = refuse
    with pytest.raises(gr.Error) as refused:
        postprocessed(lambda: "text", strict)()
    assert refused.value.message == "This text cannot be shown."  # a component's own message stays its own


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


def test_every_model_event_is_pre_and_postprocessed_in_its_handlers_thread(app):
    _, demo = app
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == INFERENCE_POOL]
    names = {fn.api_name for fn in model_events}
    assert {"classify", "retrieve", "explain", "every_tab", "figure6", "ablate", "retrieval_quality"} <= names
    assert all(fn.preprocess is False and fn.postprocess is False for fn in model_events)
    wrapper_code = postprocessed(lambda: None, []).__code__
    assert all(fn.fn.__code__ is wrapper_code for fn in model_events)  # they serialise their own answers
    reads_its_inputs = preprocessed(lambda: None, []).__code__
    assert all(fn.fn.__wrapped__.__code__ is reads_its_inputs for fn in model_events)


def test_inputs_reach_the_handler_as_gradios_own_preprocessing_gives_them(app, photos):
    """The same values through Gradio's preprocess_data: once preprocessed by Gradio, once passed on as sent
    (preprocess=False) and preprocessed in the handler's thread."""
    services, _ = app
    received = []

    def record(*values):
        received.append(values)
        return "ok"

    with gr.Blocks() as demo:
        inputs = [image_input(label="Image"), gr.Image(type="pil"), gr.Radio(["none", "flip"], value="none"),
                  gr.Slider(0, 1, step=0.05), gr.Dropdown(["a", "b", "c"], multiselect=True), gr.Checkbox(),
                  gr.State(["kept"])]
        gr.Button().click(record, inputs, gr.Markdown())
        listen(gr.Button().click, record, inputs, gr.Markdown(), services)
    gradios, ours = demo.fns.values()
    assert gradios.preprocess is True and ours.preprocess is False
    sent = [file_data(photos[0]), file_data(photos[1]), "flip", 0.35, ["a", "c"], True, None]
    for fn in (gradios, ours):
        values = asyncio.run(demo.preprocess_data(fn, copy.deepcopy(sent), SessionState(demo), explicit_call=True))
        fn.fn(*values)
    by_gradio, by_us = received
    assert by_us == by_gradio
    assert isinstance(by_us[0], str) and isinstance(by_us[1], Image.Image) and by_us[2:] == (
        "flip", 0.35, ["a", "c"], True, ["kept"])


def test_a_value_the_component_refuses_is_its_own_error():
    radio, slider, image = gr.Radio(["none", "flip"]), gr.Slider(0, 1), gr.Image(type="filepath")
    handler = preprocessed(lambda *values: values, [radio, slider, image])
    with pytest.raises(gr.Error, match="'rotate'.* is not in the list of choices"):
        handler("rotate", 0.5, None)
    with pytest.raises(gr.Error) as out_of_bounds:
        handler("none", 7.0, None)
    assert "7" in out_of_bounds.value.message
    with pytest.raises(gr.Error, match='The value sent for "Image" could not be read'):
        preprocessed(lambda *values: values, [gr.Image(label="Image")])({"path": ["not", "a", "path"]})


def test_a_component_checked_by_the_handler_passes_as_sent_and_later_arguments_pass_through():
    blocks = gr.Dropdown(["SE_1_0", "SE_1_1"], label="block")
    with pytest.raises(gr.Error, match="not in the list of choices"):
        preprocessed(lambda block: block, [blocks])("SE_4_2")  # another model's block: the choices are the first model's
    handler = preprocessed(lambda block, progress: (block, progress), [blocks], checked_by_handler=[blocks])
    assert handler("SE_4_2", "the progress argument") == ("SE_4_2", "the progress argument")


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
    answer = fn.fn(file_data(image))
    assert answer == [_gradio(gallery, [(str(image), "me")]), "**found**"]
