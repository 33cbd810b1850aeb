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
    name = services.registry.names[0]
    results, _ = client.predict(handle_file(str(gallery / "owl" / "owl_0.jpg")), name, 2, api_name="/retrieve")
    assert len(results) == 2 and results[0]["caption"] == "owl · 1.000"


def test_retrieval_quality_has_one_row_per_feature_choice(app):
    from senet_demo.search import GallerySearch, feature_choices

    services, _, client = app
    table, note = client.predict(api_name="/retrieval_quality")
    rows = table["data"]
    choices = feature_choices(services)
    assert choices == ["ensemble", services.registry.names[0], "logsoftmax"]
    assert [row[0] for row in rows] == ["ensemble", services.registry.specs[choices[1]].label, "logsoftmax"]
    independent = GallerySearch(services)  # its own index cache; the stored features are the same
    for row, feature in zip(rows, choices):
        quality = independent.evaluate(services.gallery(), feature)
        expected = [quality.precision_at_1, quality.precision_at_5, quality.mean_average_precision]
        assert [float(v) for v in row[1:]] == pytest.approx(expected, abs=5e-4)
    assert table["headers"] == ["feature", "P@1", "P@5", "mAP"]
    assert f"over {sum(GALLERY.values())} images in {len(GALLERY)} labels" in note
