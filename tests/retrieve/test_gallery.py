"""Gallery scanning, the persistent feature store (restart, increments, weights identity) and GallerySearch."""
from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image
from fixtures import BatchCounter, embeddings, export_tiny_resnet, make_gallery, picture, services_for, spec_for

from senet_demo.gallery import GalleryItem, scan
from senet_demo.images import content_hash, load_image
from senet_demo.search import GallerySearch

PER_LABEL = {"cat": 3, "dog": 3, "owl": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two random tiny models with identical architecture; the second is the first retrained, as it were."""
    root = tmp_path_factory.mktemp("models")
    return export_tiny_resnet(root / "seed0", 0), export_tiny_resnet(root / "seed1", 1)


@pytest.fixture
def gallery(tmp_path):
    return make_gallery(tmp_path / "gallery", PER_LABEL)


# --- scan ----------------------------------------------------------------------------------------------------


def test_scan_lists_images_by_label_with_their_sha256(tmp_path):
    root = make_gallery(tmp_path / "g", {"b_label": 2, "a_label": 1})
    (root / "a_label" / "notes.txt").write_text("not an image")
    (root / "a_label" / "UPPER.PNG").write_bytes((root / "a_label" / "a_label_0.jpg").read_bytes())
    (root / ".hidden").mkdir()
    picture(99).save(root / ".hidden" / "x.jpg")
    (root / "_private").mkdir()
    picture(98).save(root / "_private" / "y.jpg")
    (root / "stray.jpg").write_bytes(b"a file at the top level has no label")

    items = scan(root)
    assert [item.id for item in items] == ["a_label/UPPER.PNG", "a_label/a_label_0.jpg",
                                           "b_label/b_label_0.jpg", "b_label/b_label_1.jpg"]
    assert [item.label for item in items] == ["a_label", "a_label", "b_label", "b_label"]
    for item in items:
        assert item.digest == hashlib.sha256(item.path.read_bytes()).hexdigest()
    assert items[0].digest == items[1].digest  # same bytes, same key in the store


def test_scan_of_a_missing_folder_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan(tmp_path / "nowhere")


# --- FeatureStore ------------------------------------------------------------------------------------------------


def test_stored_features_are_those_of_each_image(tmp_path, tiny, gallery):
    """Row i of the store is item i's own embedding, as a direct forward pass computes it."""
    services = services_for(spec_for(tiny[0]), tmp_path, gallery)
    items = scan(gallery)
    stored = embeddings(services, items)
    name = services.registry.names[0]
    direct = np.stack([services.engine.run(name, load_image(item.path)).embedding for item in items])
    np.testing.assert_allclose(stored, direct, rtol=1e-4, atol=1e-5)
    assert not np.allclose(stored[0], stored[1])  # different pictures, different features


def test_restart_reuses_the_stored_features(tmp_path, tiny, gallery):
    cache = tmp_path / "features"
    items = scan(gallery)

    first = services_for(spec_for(tiny[0]), tmp_path, gallery, cache)
    before = embeddings(first, items)
    assert first.engine.forward_passes > 0
    stored = sorted(p.stem for p in cache.rglob("*.npz"))
    assert stored == sorted(item.digest for item in items)

    second = services_for(spec_for(tiny[0]), tmp_path, gallery, cache)  # a new process, as it were
    assert second.engine is not first.engine
    counter = BatchCounter(second.engine)
    after = embeddings(second, items)
    assert second.engine.forward_passes == 0 and counter.images == []
    assert np.array_equal(before, after)
    name = second.registry.names[0]
    probs = [o.probs for o in second.features.outputs(name, items)]
    assert np.array_equal(np.stack(probs), np.stack([o.probs for o in first.features.outputs(name, items)]))


def test_stored_features_are_kept_per_working_size(tmp_path, tiny, gallery, monkeypatch):
    """Features stored for pictures decoded at another working size are not served: they are recomputed."""
    import senet_demo.gallery as gallery_module

    cache = tmp_path / "features"
    items = scan(gallery)
    embeddings(services_for(spec_for(tiny[0]), tmp_path, gallery, cache), items)
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    assert folder.name.endswith(f"@{gallery_module.WORKING_SIDE}px")

    monkeypatch.setattr(gallery_module, "WORKING_SIDE", gallery_module.WORKING_SIDE * 2)
    other = services_for(spec_for(tiny[0]), tmp_path, gallery, cache)
    counter = BatchCounter(other.engine)
    embeddings(other, items)
    assert len(counter.images) == len(items)
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 2


def test_adding_one_image_embeds_only_that_image(tmp_path, tiny, gallery):
    cache = tmp_path / "features"
    running = services_for(spec_for(tiny[0]), tmp_path, gallery, cache)
    embeddings(running, scan(gallery))

    picture(1234).save(gallery / "owl" / "owl_new.png")  # added while the app is down
    items = scan(gallery)
    assert len(items) == sum(PER_LABEL.values()) + 1
    restarted = services_for(spec_for(tiny[0]), tmp_path, gallery, cache)
    counter = BatchCounter(restarted.engine)
    embeddings(restarted, items)
    assert counter.images == [content_hash(load_image(gallery / "owl" / "owl_new.png"))]

    picture(4321).save(gallery / "cat" / "cat_new.png")  # added while the first app is still running
    counter = BatchCounter(running.engine)
    embeddings(running, scan(gallery))
    assert counter.images == [content_hash(load_image(gallery / "cat" / "cat_new.png"))]


def test_a_corrupt_store_entry_is_recomputed(tmp_path, tiny, gallery):
    cache = tmp_path / "features"
    items = scan(gallery)
    before = embeddings(services_for(spec_for(tiny[0]), tmp_path, gallery, cache), items)
    entry = next(cache.rglob(f"{items[2].digest}.npz"))
    entry.write_bytes(b"garbage, e.g. a crash or a full disk while writing")

    restarted = services_for(spec_for(tiny[0]), tmp_path, gallery, cache)
    counter = BatchCounter(restarted.engine)
    after = embeddings(restarted, items)
    assert len(counter.images) == 1
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("long_path", [False, True], ids=["short-path", "long-path"])
def test_store_is_keyed_by_weights_identity(tmp_path, tiny, gallery, long_path):
    """New weights at the same path (a retrained model) must not be served the old features. Cache folder
    names are shortened for long model paths; the weights identity must survive that too."""
    model_dir = tmp_path / ("m" * 80) / ("n" * 80) / "model" if long_path else tmp_path / "model"
    shutil.copytree(tiny[0], model_dir)
    if long_path:
        assert len(spec_for(model_dir)) > 200
    cache = tmp_path / "features"
    items = scan(gallery)
    old = embeddings(services_for(spec_for(model_dir), tmp_path, gallery, cache), items)

    shutil.copyfile(tiny[1] / "model.safetensors", model_dir / "model.safetensors")
    retrained = services_for(spec_for(model_dir), tmp_path, gallery, cache)
    counter = BatchCounter(retrained.engine)
    new = embeddings(retrained, items)
    assert len(counter.images) == len(items)
    assert not np.allclose(new, old, atol=1e-3)
    reference = embeddings(services_for(spec_for(tiny[1]), tmp_path, gallery, tmp_path / "other-cache"), items)
    np.testing.assert_allclose(new, reference, rtol=1e-5, atol=1e-6)


# --- GallerySearch over a real (tiny) model -------------------------------------------------------------------


def test_search_finds_the_identical_gallery_image(tmp_path, tiny, gallery):
    services = services_for(spec_for(tiny[0]), tmp_path, gallery)
    items = scan(gallery)
    searcher = GallerySearch(services)
    name = services.registry.names[0]
    for feature in ("ensemble", name, "logsoftmax"):
        for target in items:
            hits = searcher.search(load_image(target.path), items, feature, k=3)
            assert len(hits) == 3
            assert hits[0].item == target and hits[0].score == pytest.approx(1.0, abs=1e-4)
            assert hits[0].score >= hits[1].score >= hits[2].score


def test_an_undecodable_gallery_file_does_not_shift_the_results(tmp_path, tiny, gallery):
    """A broken .jpg sorts first; every other image must still map to its own item."""
    (gallery / "cat" / "a_broken.jpg").write_bytes(b"this is not a JPEG")
    services = services_for(spec_for(tiny[0]), tmp_path, gallery)
    items = scan(gallery)
    assert items[0].path.name == "a_broken.jpg"
    searcher = GallerySearch(services)
    for target in items[1:]:
        hits = searcher.search(load_image(target.path), items, "ensemble", k=2)
        assert hits[0].item == target and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert all(hit.item.path.name != "a_broken.jpg" for hit in searcher.search(picture(5), items, k=len(items)))
    assert searcher.evaluate(items, "ensemble").queries == len(items) - 1


def test_hits_name_the_callers_items_not_a_cached_copy(tmp_path, tiny, gallery):
    """Two sessions holding the same bytes under different paths each get their own paths back."""
    services = services_for(spec_for(tiny[0]), tmp_path, gallery)
    items = scan(gallery)
    searcher = GallerySearch(services)
    query = load_image(items[0].path)
    assert searcher.search(query, items, k=1)[0].item.path == items[0].path
    elsewhere = [GalleryItem(tmp_path / "other-session" / i.path.name, "theirs", i.digest) for i in items]
    hit = searcher.search(query, elsewhere, k=1)[0]
    assert hit.item is elsewhere[0]


def test_unknown_feature_is_a_readable_value_error(tmp_path, tiny, gallery):
    services = services_for(spec_for(tiny[0]), tmp_path, gallery)
    with pytest.raises(ValueError, match="Unknown feature"):
        GallerySearch(services).search(picture(1), scan(gallery), "no-such-model", k=1)


def test_an_empty_gallery_is_a_readable_value_error(tmp_path, tiny):
    services = services_for(spec_for(tiny[0]), tmp_path)
    with pytest.raises(ValueError, match="empty"):
        GallerySearch(services).search(picture(1), [], k=1)


def test_evaluate_separates_clearly_different_labels(tmp_path, tiny):
    """Two labels of near-identical pictures (tiny jitter) far from each other: a perfect P@1."""
    root = tmp_path / "g"
    for label, seed in (("stripes", 1), ("noise", 2)):
        (root / label).mkdir(parents=True)
        base = np.asarray(picture(seed, tint=(255, 0, 0) if label == "stripes" else (0, 0, 255)), dtype=np.int16)
        for i in range(3):
            jitter = np.random.default_rng(10 * seed + i).integers(-3, 4, size=base.shape)
            Image.fromarray(np.clip(base + jitter, 0, 255).astype(np.uint8)).save(root / label / f"{i}.png")
    services = services_for(spec_for(tiny[0]), tmp_path, root)
    quality = GallerySearch(services).evaluate(scan(root), "ensemble")
    assert quality.queries == 6
    assert quality.precision_at_1 == 1.0 and quality.mean_average_precision == 1.0


def test_two_writers_of_one_entry_do_not_collide(tmp_path, tiny, gallery, monkeypatch):
    """Two requests embedding the same new image store it at once: interleave them deterministically.

    The second writer runs to completion between the first writer's save and its rename.
    """
    import senet_demo.gallery as gallery_module

    services = services_for(spec_for(tiny[0]), tmp_path, gallery)
    name = services.registry.names[0]
    items = scan(gallery)[:1]
    out = services.engine.run_batch(name, [load_image(items[0].path)])[0]
    real_savez = gallery_module.np.savez
    nested = []

    def savez_then_other_writer(file, **arrays):
        real_savez(file, **arrays)
        if not nested:
            nested.append(file)
            gallery_module._write(target, out, key)  # the other request, finishing first

    key = services.registry.get(name).key
    target = tmp_path / "store" / f"{items[0].digest}.npz"
    monkeypatch.setattr(gallery_module.np, "savez", savez_then_other_writer)
    gallery_module._write(target, out, key)
    monkeypatch.undo()
    assert nested
    shapes = {"probs": out.probs.shape, "log_probs": out.log_probs.shape, "embedding": out.embedding.shape}
    restored = gallery_module._read(target, name, key, shapes)
    np.testing.assert_array_equal(restored.embedding, out.embedding)
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary file left behind


def test_extra_items_are_merged_without_rebuilding_the_gallery_index(tmp_path, tiny, gallery):
    """A visitor's uploads are searched beside the operator gallery; the gallery's index is built once."""
    services = services_for(spec_for(tiny[0]), tmp_path, gallery)
    items = scan(gallery)
    uploads = scan(make_gallery(tmp_path / "uploads", {"mine": 2}, seed=99))
    searcher = GallerySearch(services)
    searcher.search(load_image(items[0].path), items, k=3)
    gallery_index = searcher.index(items, "ensemble")

    hits = searcher.search(load_image(uploads[1].path), items, k=4, extra_items=uploads)
    assert hits[0].item == uploads[1] and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.item for h in hits} <= set(items) | set(uploads)
    assert searcher.index(items, "ensemble") is gallery_index  # the same object: not rebuilt

    only_gallery = searcher.search(load_image(uploads[1].path), items, k=4)
    assert not {h.item for h in only_gallery} & set(uploads)


def test_a_large_index_is_saved_and_reloaded_instead_of_rebuilt(tmp_path, monkeypatch):
    import faiss

    from senet_demo.retrieval import CosineIndex

    vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    path = tmp_path / "indexes" / "g.faiss"
    first = CosineIndex(vectors, use_faiss=True, path=path)
    assert len(list(path.parent.glob("g-*.faiss"))) == 1  # named after the vectors it indexes

    def no_build(*args, **kwargs):
        raise AssertionError("the saved index should have been loaded")

    monkeypatch.setattr(faiss, "IndexHNSWFlat", no_build)
    second = CosineIndex(vectors, use_faiss=True, path=path)
    query = vectors[:5]
    assert np.array_equal(first.search(query, 3)[1], second.search(query, 3)[1])
    assert list(second.search(query, 1)[1][:, 0]) == [0, 1, 2, 3, 4]
