"""The Retrieve tab over HTTP: the real app launched locally with a tiny model, called with gradio_client."""
from __future__ import annotations

import shutil

import pytest
from fixtures import free_port
from fixtures import export_tiny_resnet, make_gallery, services_for, spec_for

GALLERY = {"cat": 3, "dog": 3, "owl": 2}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from gradio_client import Client

    import senet_demo.ui

    root = tmp_path_factory.mktemp("ui")
    gallery = make_gallery(root / "gallery", GALLERY)
    services = services_for(spec_for(export_tiny_resnet(root / "model", 0)), root, gallery)
    demo = senet_demo.ui.build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=senet_demo.ui.allowed_paths(services))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(root / "downloads"))
        yield services, gallery, client
    finally:
        demo.close()


def test_retrieve_with_just_an_image_finds_the_identical_gallery_photo(app, tmp_path):
    from gradio_client import handle_file

    _, gallery, client = app
    query = tmp_path / "query.jpg"  # the same bytes as a gallery photo, under another name
    shutil.copyfile(gallery / "dog" / "dog_1.jpg", query)
    results, note = client.predict(handle_file(str(query)), api_name="/retrieve")

    assert len(results) == 5  # the default k
    captions = [entry["caption"] for entry in results]
    assert captions[0] == "dog · 1.000"
    scores = [float(caption.split(" · ")[1]) for caption in captions]
    assert scores == sorted(scores, reverse=True) and scores[1] < 1.0
    assert {caption.split(" · ")[0] for caption in captions} <= set(GALLERY)
    first = results[0]["image"]
    path = first["path"] if isinstance(first, dict) else first
    with open(path, "rb") as served, open(gallery / "dog" / "dog_1.jpg", "rb") as original:
        assert served.read() == original.read()  # the served picture is the matching gallery photo
    assert f"of {sum(GALLERY.values())} gallery images" in note


def test_retrieve_with_a_chosen_feature_and_k(app, tmp_path):
    from gradio_client import handle_file

    services, gallery, client = app
    results, _ = client.predict(handle_file(str(gallery / "owl" / "owl_0.jpg")), "logsoftmax", 2,
                                api_name="/retrieve")
    assert len(results) == 2 and results[0]["caption"] == "owl · 1.000"


def test_retrieval_quality_has_one_row_per_feature_choice(app):
    from senet_demo.search import GallerySearch, feature_choices

    services, _, client = app
    table, note = client.predict(api_name="/retrieval_quality")
    rows = table["data"]
    assert feature_choices(services) == ["ensemble", services.registry.names[0], "logsoftmax"]
    # one model: its embedding is the ensemble's, so it is offered (and measured) once
    choices = ["ensemble", "logsoftmax"]
    assert [row[0] for row in rows] == ["ResNet-50 embedding", "class log-probabilities (log-softmax)"]
    independent = GallerySearch(services)  # its own index cache; the stored features are the same
    for row, feature in zip(rows, choices):
        quality = independent.evaluate(services.gallery(), feature)
        expected = [quality.precision_at_1, quality.precision_at_5, quality.mean_average_precision]
        assert [float(v) for v in row[1:]] == pytest.approx(expected, abs=5e-4)
    assert table["headers"] == ["feature", "P@1", "P@5", "mAP"]
    assert f"over {sum(GALLERY.values())} images in {len(GALLERY)} labels" in note


def test_a_query_unlike_the_gallery_is_told_so_with_the_labels_it_covers(app, monkeypatch):
    """Below the gallery's match threshold the note says there is nothing close and lists the labels; a gallery
    photo itself (score 1) gets the usual answer."""
    from fixtures import no_progress, retrieve_handlers

    services, gallery, _ = app
    retrieve = retrieve_handlers(services)["on_retrieve"]
    owl = str(gallery / "owl" / "owl_0.jpg")
    _, note = retrieve(owl, "ensemble", 3, None, progress=no_progress)
    assert "nothing close" not in note and "Most frequent label among them: **owl**" in note

    threshold = services.search.match_threshold(services.gallery(), "ensemble")
    monkeypatch.setattr(services.search, "match_threshold", lambda items, feature, progress=None: 1.5)
    answer, note = retrieve(owl, "ensemble", 3, None, progress=no_progress)
    assert "The gallery has nothing close to this image" in note
    assert "below 1.500" in note and "The gallery covers these labels: cat, dog, owl." in note
    assert "Most frequent label" not in note
    assert len(answer) == 3  # the nearest images are still shown
    assert threshold is not None and threshold < 1.0


def test_the_threshold_is_the_gallerys_own_leave_one_out_percentile(app):
    import numpy as np

    from senet_demo.retrieval import feature_matrix, match_threshold

    services, _, _ = app
    items = services.gallery()
    name = services.registry.names[0]
    for feature in ("ensemble", "logsoftmax"):
        matrix = feature_matrix({name: services.features.outputs(name, items)}, feature)
        expected = match_threshold(matrix, [item.label for item in items])
        assert services.search.match_threshold(items, feature) == pytest.approx(expected, abs=1e-6)
        assert np.isfinite(expected)
