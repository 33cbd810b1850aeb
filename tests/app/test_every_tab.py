"""One image through all three tabs in one request: the same answers as each tab's own event, one pass."""
from __future__ import annotations

import gradio as gr
import pytest

from fixtures import make_config, picture
from fixtures import make_gallery
from senet_demo.services import Services
from senet_demo.ui.classify_tab import classify_image
from senet_demo.ui.every_tab import every_tab
from senet_demo.ui.explain_tab import explain_image
from senet_demo.ui.retrieve_tab import retrieve_image


def _defaults(services) -> dict:
    """Each tab's settings as a fresh page has them (after its image)."""
    se_model = next(n for n in services.registry.all_names if services.registry.se_blocks(n))
    return {"classify": ["none", *[1.0] * len(services.registry.names)],
            "retrieve": ["ensemble", 5, None],
            "explain": [se_model, "auto", [], [], True, 2]}


def _call(services, name, image):
    settings = _defaults(services)
    if name == "every_tab":
        return every_tab(services, str(image), *settings["classify"], *settings["retrieve"], *settings["explain"])
    handler = {"classify": classify_image, "retrieve": retrieve_image, "explain": explain_image}[name]
    return handler(services, str(image), *settings[name])


@pytest.fixture
def every_tab_services(tmp_path, resnet_name, senet_name):
    config = make_config(tmp_path, [resnet_name, senet_name])
    config.gallery_dir = make_gallery(tmp_path / "gallery", {"red": 3, "green": 3})
    return Services.create(config)


def test_one_request_fills_every_tab_as_the_tabs_would(tmp_path, every_tab_services):
    services = every_tab_services
    engine = services.engine
    warm, image = tmp_path / "warm.png", tmp_path / "query.png"
    picture(6, (146, 110)).save(warm)
    picture(7, (146, 110)).save(image)
    _call(services, "retrieve", warm)  # indexes the gallery (its own forward passes) before counting

    before = engine.forward_passes
    together = _call(services, "every_tab", image)
    assert engine.forward_passes - before == len(services.registry.names)  # one pass per model

    classify, retrieve, explain = (_call(services, name, image) for name in ("classify", "retrieve", "explain"))
    assert engine.forward_passes - before == len(services.registry.names)  # the tabs find it cached
    n_classify, n_retrieve = len(classify), len(retrieve)
    assert together[0] == classify[0]  # the ensemble's top-5
    assert together[1:n_classify] == list(classify[1:])  # the summary and each member's top-5
    assert together[n_classify + 1:n_classify + 1 + n_retrieve] == list(retrieve)  # the same hits and note
    assert together[n_classify] == together[n_classify + 1 + n_retrieve] == str(image)  # both tabs show the image
    explained = together[n_classify + 2 + n_retrieve:]
    assert explained[0] == explain[0]  # the step-by-step text with the block's numbers
    plot = gr.Plot()
    for index in (1, 5):  # the squeeze/excitation plot and the excitation map, as they are sent
        assert plot.postprocess(explained[index]) == plot.postprocess(explain[index])
    assert explained[3] == explain[3]  # the before/after pictures and their captions
    assert len(explained[3]) == 4 and all(caption.startswith("ch ") for _, caption in explained[3])


def test_one_request_hashes_the_picture_once_per_tab(tmp_path, every_tab_services, monkeypatch):
    """The picture's content hash (the cache key) is computed once by each of the three tabs, not once per
    model and per lookup."""
    import senet_demo.classify as classify_module
    import senet_demo.engine as engine_module
    import senet_demo.search as search_module
    import senet_demo.ui.explain_tab as explain_module
    from senet_demo.images import content_hash

    warm, image = tmp_path / "warm.png", tmp_path / "query.png"
    picture(6, (146, 110)).save(warm)
    picture(8, (146, 110)).save(image)
    _call(every_tab_services, "retrieve", warm)  # indexes the gallery first
    hashed = []

    def counting(picture):
        hashed.append(picture.size)
        return content_hash(picture)

    for module in (classify_module, engine_module, search_module, explain_module):
        monkeypatch.setattr(module, "content_hash", counting)
    _call(every_tab_services, "every_tab", image)
    assert hashed == [(146, 110)] * 3


def test_a_tab_that_cannot_answer_says_why_and_the_others_still_do(tmp_path, resnet_name, senet_name):
    config = make_config(tmp_path, [resnet_name, senet_name])
    config.gallery_dir = tmp_path / "no-gallery"  # nothing to retrieve from
    services = Services.create(config)
    image = tmp_path / "query.png"
    picture(8, (146, 110)).save(image)
    together = _call(services, "every_tab", image)
    n_classify = 2 + len(services.registry.names)  # the ensemble, the summary, one label per member
    assert together[0]  # the ensemble answered
    gallery, note = together[n_classify + 1:n_classify + 3]
    assert gallery is None and "gallery is empty" in note
    assert "SE_" in together[n_classify + 4]  # Explain answered too


def test_a_bad_image_is_refused_for_every_tab_with_its_message(tmp_path, every_tab_services):
    bogus = tmp_path / "holiday.jpg"
    bogus.write_bytes(b"not an image at all\n" * 10)
    with pytest.raises(gr.Error, match="not an image"):
        _call(every_tab_services, "every_tab", bogus)


def test_the_every_tab_endpoint_takes_the_tabs_inputs_in_order(every_tab_services):
    """The button sends Classify's inputs, then Retrieve's and Explain's settings, then the language switch:
    the order every_tab reads."""
    from senet_demo.ui import build_demo

    demo = build_demo(every_tab_services)
    (event,) = [fn for fn in demo.fns.values() if fn.api_name == "every_tab"]
    kinds = [type(component).__name__ for component in event.inputs]
    members = len(every_tab_services.registry.names)
    assert kinds == ["Image", "Radio", *["Slider"] * members, "Radio", "Slider", "State",
                     "Dropdown", "Dropdown", "Dropdown", "State", "Checkbox", "Slider", "Radio"]
    assert event.inputs[-1].elem_id == "language" and event.inputs[-1].value == "en"
    assert [c.value for c in event.inputs[1:-1]] == [*_defaults(every_tab_services)["classify"],
                                                   *_defaults(every_tab_services)["retrieve"],
                                                   *_defaults(every_tab_services)["explain"]]
    demo.close()
