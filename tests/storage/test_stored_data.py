"""Fail safe: the app's own stored files are checked when read, and a store that cannot be written
costs nothing but a log line.

Each kind of stored file (gallery features ``.npz``, the remembered weights hashes, faiss index files)
is damaged the ways a crash, a full disk or a stray edit damage it; the app must answer exactly as with
a healthy store, recompute what was damaged, log the damaged file's path and leave no temporary file.
"""
from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fixtures import BatchCounter, embeddings, export_tiny_resnet, make_gallery, services_for, spec_for

from senet_demo import storage
from senet_demo.gallery import scan

PER_LABEL = {"cat": 2, "dog": 2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return export_tiny_resnet(tmp_path_factory.mktemp("models") / "seed0", 0)


@pytest.fixture
def gallery(tmp_path):
    return make_gallery(tmp_path / "gallery", PER_LABEL)


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name or p.name == ".write-probe"]


def _npz(path: Path, **arrays) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _damage(kind: str, entry: Path) -> None:
    with np.load(entry) as data:
        arrays = {name: data[name] for name in data.files}
    if kind == "zero bytes":
        entry.write_bytes(b"")
    elif kind == "truncated":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif kind == "wrong shape":
        _npz(entry, **{**arrays, "embedding": arrays["embedding"][:-1]})
    elif kind == "NaN":
        embedding = arrays["embedding"].copy()
        embedding[0] = np.nan
        _npz(entry, **{**arrays, "embedding": embedding})
    elif kind == "wrong dtype":
        _npz(entry, **{**arrays, "probs": arrays["probs"].astype(np.int64)})
    elif kind == "another model":
        _npz(entry, **{**arrays, "model_key": np.array("resnet50d@0123456789abcdef")})
    elif kind == "a directory":
        entry.unlink()
        entry.mkdir()
    else:
        raise AssertionError(kind)


FAULTS = ["zero bytes", "truncated", "wrong shape", "NaN", "wrong dtype", "another model", "a directory"]


@pytest.mark.parametrize("kind", FAULTS)
def test_a_damaged_feature_entry_is_logged_and_recomputed(kind, tmp_path, tiny, gallery, caplog):
    cache = tmp_path / "features"
    items = scan(gallery)
    before = embeddings(services_for(spec_for(tiny), tmp_path, gallery, cache), items)
    entry = next(cache.rglob(f"{items[1].digest}.npz"))
    _damage(kind, entry)

    restarted = services_for(spec_for(tiny), tmp_path, gallery, cache)
    counter = BatchCounter(restarted.engine)
    with caplog.at_level(logging.WARNING):
        after = embeddings(restarted, items)
    assert len(counter.images) == 1  # only the damaged entry was computed again
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert str(entry) in caplog.text
    assert not temporaries(cache)
    if kind != "a directory":  # stored afresh, and read back without another forward pass
        again = services_for(spec_for(tiny), tmp_path, gallery, cache)
        counter = BatchCounter(again.engine)
        np.testing.assert_allclose(embeddings(again, items), before, rtol=1e-5, atol=1e-6)
        assert counter.images == []


def test_search_answers_the_same_with_a_damaged_entry(tmp_path, tiny, gallery):
    """The tab a damaged entry used to break for everyone: the ranking is that of a healthy store."""
    from senet_demo.images import load_image
    from senet_demo.search import GallerySearch

    cache = tmp_path / "features"
    items = scan(gallery)
    healthy = GallerySearch(services_for(spec_for(tiny), tmp_path, gallery, cache))
    query = load_image(items[0].path)
    expected = [(hit.item.id, round(hit.score, 5)) for hit in healthy.search(query, items, k=4)]
    for entry in cache.rglob("*.npz"):
        entry.write_bytes(b"")
    damaged = GallerySearch(services_for(spec_for(tiny), tmp_path, gallery, cache))
    assert [(hit.item.id, round(hit.score, 5)) for hit in damaged.search(query, items, k=4)] == expected
    assert damaged.evaluate(items, "ensemble").as_dict() == healthy.evaluate(items, "ensemble").as_dict()


def test_a_cache_folder_that_cannot_be_written_warns_once_at_start_and_answers_from_memory(tmp_path, tiny, gallery,
                                                                                         caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder's parent should be")
    cache = blocker / "features"  # mkdir fails with NotADirectoryError, even for root
    items = scan(gallery)
    expected = embeddings(services_for(spec_for(tiny), tmp_path, gallery, tmp_path / "healthy"), items)
    with caplog.at_level(logging.WARNING):
        services = services_for(spec_for(tiny), tmp_path, gallery, cache)
    assert services.features.warning and str(cache) in services.features.warning
    assert str(cache) in caplog.text
    counter = BatchCounter(services.engine)
    np.testing.assert_allclose(embeddings(services, items), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embeddings(services, items), expected, rtol=1e-5, atol=1e-6)
    assert len(counter.images) == len(items)  # computed once, then served from memory


def test_a_full_disk_keeps_features_in_memory_and_leaves_no_temporary_file(tmp_path, tiny, gallery, caplog,
                                                                           monkeypatch):
    import senet_demo.gallery as gallery_module

    cache = tmp_path / "features"
    items = scan(gallery)
    services = services_for(spec_for(tiny), tmp_path, gallery, cache)
    assert services.features.warning is None
    expected = embeddings(services_for(spec_for(tiny), tmp_path, gallery, tmp_path / "healthy"), items)

    def disk_full(file, **arrays):
        Path(file).write_bytes(b"PK\x03\x04 half an entry")  # what a write cut short leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gallery_module.np, "savez", disk_full)
    with caplog.at_level(logging.WARNING):
        first = embeddings(services, items)
        second = embeddings(services, items)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(second, expected, rtol=1e-5, atol=1e-6)
    assert "the disk is full" in caplog.text and str(cache) in caplog.text
    assert not list(cache.rglob("*.npz")) and not temporaries(cache)


def test_atomic_write_removes_its_temporary_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "entry.json"
    target.mkdir()  # a folder in the file's place: the rename fails
    assert storage.write_or_warn(target, lambda tmp: tmp.write_text("{}")) is False
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_stale_temporaries_of_a_killed_writer_are_removed_at_start(tmp_path, tiny, gallery):
    import os

    cache = tmp_path / "features"
    cache.mkdir()
    stale = cache / ".abc.npz.x1y2.tmp.npz"
    stale.write_bytes(b"half")
    os.utime(stale, (1, 1))
    fresh = cache / ".def.npz.z3.tmp.npz"  # a write in progress in another process: kept
    fresh.write_bytes(b"half")
    services_for(spec_for(tiny), tmp_path, gallery, cache)
    assert not stale.exists() and fresh.exists()


# --- the remembered weights hashes ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zero bytes", "truncated", "not an object", "bad record", "a directory"])
def test_a_damaged_hash_store_is_logged_and_the_hash_is_computed(kind, tmp_path, monkeypatch, caplog):
    import os
    import time

    from senet_demo import weights

    store = tmp_path / "weights-sha256.json"
    monkeypatch.setattr(weights, "_identity_store", lambda: store)
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"weights" * 1000)
    old = time.time() - 3600
    os.utime(file, (old, old))
    monkeypatch.setattr(weights, "RACY_NS", -10**18)  # remember even a file written just now
    expected = weights.file_sha256(file)
    assert weights.remembered_sha256(file) == expected
    text = store.read_text()
    if kind == "zero bytes":
        store.write_text("")
    elif kind == "truncated":
        store.write_text(text[: len(text) // 2])
    elif kind == "not an object":
        store.write_text("[1, 2, 3]")
    elif kind == "bad record":
        records = json.loads(text)
        records[str(file.resolve())]["sha256"] = "0" * 63 + "g"
        store.write_text(json.dumps(records))
    else:
        store.unlink()
        store.mkdir()
    with caplog.at_level(logging.WARNING):
        assert weights.remembered_sha256(file) == expected
    if kind != "bad record":  # a bad record is skipped and replaced; the store itself is sound
        assert str(store) in caplog.text
    assert not temporaries(tmp_path)
    if kind != "a directory":
        assert json.loads(store.read_text())[str(file.resolve())]["sha256"] == expected


def test_a_hash_store_on_a_full_disk_is_logged_and_the_answer_stands(tmp_path, monkeypatch, caplog):
    import os
    import time

    from senet_demo import weights

    store = tmp_path / "weights-sha256.json"
    monkeypatch.setattr(weights, "_identity_store", lambda: store)
    monkeypatch.setattr(weights, "RACY_NS", -10**18)
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"weights" * 1000)
    old = time.time() - 3600
    os.utime(file, (old, old))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", full)
    with caplog.at_level(logging.WARNING):
        assert weights.remembered_sha256(file) == weights.file_sha256(file)
    assert str(store) in caplog.text and "the disk is full" in caplog.text
    assert not store.exists() and not temporaries(tmp_path)


# --- faiss index files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zero bytes", "truncated", "other vectors", "a directory"])
def test_a_damaged_faiss_index_is_logged_and_rebuilt(kind, tmp_path, caplog):
    faiss = pytest.importorskip("faiss")

    from senet_demo.retrieval import CosineIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((200, 8)).astype(np.float32)
    path = tmp_path / "indexes" / "g.faiss"
    healthy = CosineIndex(vectors, use_faiss=True, path=path)
    (stored,) = path.parent.glob("g-*.faiss")
    if kind == "zero bytes":
        stored.write_bytes(b"")
    elif kind == "truncated":
        stored.write_bytes(stored.read_bytes()[:100])
    elif kind == "other vectors":
        other = faiss.IndexHNSWFlat(8, 32, faiss.METRIC_INNER_PRODUCT)
        other.add(rng.standard_normal((50, 8)).astype(np.float32))
        faiss.write_index(other, str(stored))
    else:
        stored.unlink()
        stored.mkdir()
    with caplog.at_level(logging.WARNING):
        rebuilt = CosineIndex(vectors, use_faiss=True, path=path)
    query = vectors[:10]
    assert np.array_equal(rebuilt.search(query, 1)[1][:, 0], np.arange(10))
    assert np.array_equal(rebuilt.search(query, 3)[1], healthy.search(query, 3)[1])
    assert str(stored) in caplog.text
    assert not temporaries(tmp_path)


def test_features_with_nan_are_refused_before_indexing():
    from senet_demo.retrieval import CosineIndex

    vectors = np.ones((4, 3), dtype=np.float32)
    vectors[2, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        CosineIndex(vectors)


# --- the checked reader, for any stored file (ONNX exports and their records use it too) ---------------------


def test_read_checked_discards_what_fails_its_check_and_logs_the_path(tmp_path, caplog):
    record = tmp_path / "export.json"
    record.write_text(json.dumps({"model_key": "other@1"}))
    with caplog.at_level(logging.WARNING):
        value = storage.read_checked(record, lambda p: json.loads(p.read_text()),
                                     lambda v: None if v.get("model_key") == "mine@2" else "another model's export",
                                     what="ONNX export record")
    assert value is None and not record.exists()
    assert str(record) in caplog.text and "another model's export" in caplog.text
    record.write_text(json.dumps({"model_key": "mine@2"}))
    assert storage.read_checked(record, lambda p: json.loads(p.read_text()),
                                lambda v: None if v.get("model_key") == "mine@2" else "other") == {"model_key": "mine@2"}


# --- numbers a search request carries --------------------------------------------------------------------------


def test_search_refuses_a_nan_weight_and_a_k_out_of_range(tmp_path, tiny, gallery):
    from senet_demo.config import InputError
    from senet_demo.images import load_image
    from senet_demo.search import GallerySearch

    services = services_for(spec_for(tiny), tmp_path, gallery)
    name = services.registry.names[0]
    with pytest.raises(InputError, match=f"^The weight of {name} must be a number from 0 to 1, not nan"):
        GallerySearch(services, weights={name: float("nan")})
    searcher = GallerySearch(services)
    items = scan(gallery)
    for k in (0, -1, 1.5):
        with pytest.raises(InputError, match="must be a whole number from 1 to 1000"):
            searcher.search(load_image(items[0].path), items, k=k)
    assert len(searcher.search(load_image(items[0].path), items, k=2.0)) == 2
