"""One image through all three tabs in one request: the same answers as each tab's own event, one pass."""
from __future__ import annotations

import gradio as gr
import pytest

from helpers import file_data, make_config, random_image
from retrieval_helpers import make_gallery
from senet_demo.services import Services
from senet_demo.ui import build_demo


def _events(services) -> dict:
    demo = build_demo(services)
    return {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}, demo


def _defaults(event) -> list:
    return [None if isinstance(c, gr.Image) else c.value for c in event.inputs]


def _call(event, image_path, values=None):
    args = values if values is not None else _defaults(event)
    return event.fn(file_data(image_path), *args[1:])


@pytest.fixture
def every_tab_services(tmp_path, resnet_name, senet_name):
    config = make_config(tmp_path, [resnet_name, senet_name])
    config.gallery_dir = make_gallery(tmp_path / "gallery", {"red": 3, "green": 3})
    return Services.create(config)


def test_one_request_fills_every_tab_as_the_tabs_would(tmp_path, every_tab_services):
    events, _ = _events(every_tab_services)
    engine = every_tab_services.engine
    warm, image = tmp_path / "warm.png", tmp_path / "query.png"
    random_image(seed=6).save(warm)
    random_image(seed=7).save(image)
    _call(events["retrieve"], warm)  # indexes the gallery (its own forward passes) before counting

    before = engine.forward_passes
    together = _call(events["every_tab"], image)
    assert engine.forward_passes - before == len(every_tab_services.registry.names)  # one pass per model

    classify, retrieve, explain = (_call(events[name], image) for name in ("classify", "retrieve", "explain"))
    assert engine.forward_passes - before == len(every_tab_services.registry.names)  # the tabs find it cached
    n_classify, n_retrieve = len(classify), len(retrieve)
    assert together[:n_classify][0] == classify[0]  # the ensemble's top-5
    assert together[n_classify + 1:n_classify + 1 + n_retrieve] == list(retrieve)  # the same hits and note
    # both tabs show the image (answers are as Gradio sends them: files as {"path": ...})
    assert together[n_classify]["path"] == together[n_classify + 1 + n_retrieve]["path"] == str(image)
    explained = together[n_classify + 2 + n_retrieve:]
    assert explained[0] == explain[0]  # the block's formula and the text
    assert explained[1] == explain[1] and explained[1]["type"] == "plotly"  # the excitation map
    assert explained[4] == explain[4]  # the tiles: captions and pictures (inline JPEG, the same bytes)
    assert len(explained[4]) == 8 and all(tile["caption"].startswith("ch ") for tile in explained[4])


def test_one_request_hashes_the_picture_once_per_tab(tmp_path, every_tab_services, monkeypatch):
    """The picture's content hash (the cache key; 4 ms for a phone photo at working size) is computed once
    by each of the three tabs, not once per model and per lookup."""
    import senet_demo.classify as classify_module
    import senet_demo.engine as engine_module
    import senet_demo.search as search_module
    import senet_demo.ui.explain_tab as explain_module
    from senet_demo.images import content_hash

    events, _ = _events(every_tab_services)
    warm, image = tmp_path / "warm.png", tmp_path / "query.png"
    random_image(seed=6).save(warm)
    random_image(seed=8).save(image)
    _call(events["retrieve"], warm)  # indexes the gallery first
    hashed = []

    def counting(picture):
        hashed.append(picture.size)
        return content_hash(picture)

    for module in (classify_module, engine_module, search_module, explain_module):
        monkeypatch.setattr(module, "content_hash", counting)
    _call(events["every_tab"], image)
    assert hashed == [(146, 110)] * 3


def test_a_tab_that_cannot_answer_says_why_and_the_others_still_do(tmp_path, resnet_name, senet_name):
    config = make_config(tmp_path, [resnet_name, senet_name])
    config.gallery_dir = tmp_path / "no-gallery"  # nothing to retrieve from
    events, _ = _events(Services.create(config))
    image = tmp_path / "query.png"
    random_image(seed=8).save(image)
    together = _call(events["every_tab"], image)
    n_classify = len(events["classify"].outputs)
    assert together[0]  # the ensemble answered
    gallery, note = together[n_classify + 1:n_classify + 3]
    assert gallery == [] and "gallery is empty" in note
    assert "SE_" in together[n_classify + 4]  # Explain answered too


def test_a_bad_image_is_refused_for_every_tab_with_its_message(tmp_path, every_tab_services):
    events, _ = _events(every_tab_services)
    bogus = tmp_path / "holiday.jpg"
    bogus.write_bytes(b"not an image at all\n" * 10)
    with pytest.raises(gr.Error, match="not an image"):
        _call(events["every_tab"], bogus)
