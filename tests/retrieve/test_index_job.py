"""The gallery index job on a local Ray (2 workers), and the app and the CLI searching what it built.

The gallery is the committed sample gallery plus generated pictures (a few hundred images), embedded by the
two tiny models of conftest.py. Ray runs in this process for the whole module (``index_job.start_ray``); the
killed job is a separate driver joining it, killed mid-run. Skipped, with the reason, where Ray is not
installed; CI installs requirements-ray.txt, so they run there.
"""
from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")
pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install -r requirements-ray.txt)")

from fixtures import (  # noqa: E402
    REPO_ROOT,
    SENET_DATA,
    export_tiny,
    folder_spec,
    gallery_pairs,
    make_config,
    make_gallery,
    no_progress,
    retrieve_handlers,
    subprocess_env,
)

SHARD_SIZE = 8  # small shards: many of them, so a job can be stopped between two
GENERATED = {"gen_red": 45, "gen_green": 45, "gen_blue": 40, "gen_yellow": 30}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from senet_demo.index_job import start_ray

    started = start_ray(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """The committed sample gallery and a few hundred generated pictures, one sub-folder per label."""
    root = tmp_path_factory.mktemp("index-gallery") / "gallery"
    shutil.copytree(REPO_ROOT / "gallery", root, ignore=shutil.ignore_patterns("*.csv", "*.md"))
    return make_gallery(root, GENERATED, seed=3)


@pytest.fixture(scope="module")
def specs(tiny_resnet, tiny_senet) -> list[str]:
    return [folder_spec(tiny_resnet), folder_spec(tiny_senet)]


def settings_for(gallery: Path, out: Path, specs: list[str], **kwargs):
    from senet_demo.index_job import JobSettings

    return JobSettings(source=str(gallery), out=str(out), specs=specs, offline=True, engine="torch",
                       shard_size=SHARD_SIZE, workers=2, **kwargs)


@pytest.fixture(scope="module")
def built(ray_session, gallery, specs, tmp_path_factory) -> Path:
    """The index of the gallery, built once on Ray: its folder."""
    from senet_demo.index_job import run

    out = tmp_path_factory.mktemp("index") / "gallery-index"
    run(settings_for(gallery, out, specs), say=lambda line: None)
    return out


@pytest.fixture(scope="module")
def app_services(specs, tmp_path_factory, built):
    """The app's services, the built index as their gallery (as --gallery index:DIR gives them)."""
    from senet_demo.gallery import resolve_source
    from senet_demo.services import Services

    root = tmp_path_factory.mktemp("index-app")
    return Services.create(make_config(root, specs, gallery_dir=resolve_source(f"index:{built}", offline=True)))


@pytest.fixture(scope="module")
def folder_services(specs, tmp_path_factory, gallery):
    """The app's services over the same gallery as a folder: the in-process reference."""
    from senet_demo.services import Services

    return Services.create(make_config(tmp_path_factory.mktemp("folder-app"), specs, gallery_dir=gallery))


def shard_table(folder: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p) for p in sorted((folder / "shards").glob("*.parquet"))])


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def index_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def same_folder(a: Path, b: Path) -> None:
    """Every file of ``a`` is in ``b`` with the same bytes, and no other file is."""
    assert index_files(a) == index_files(b)
    for name in index_files(a):
        assert filecmp.cmp(a / name, b / name, shallow=False), name


# ------------------------------------------------------------------------------ the features are the app's
def test_ray_features_equal_the_in_process_features(built, folder_services):
    from senet_demo.built_index import embedding_column, fixed_list_to_numpy
    from senet_demo.gallery import scan

    table = shard_table(built)
    items = scan(folder_services.config.gallery_dir)
    assert len(items) > 250  # the sample gallery and the generated pictures
    ids = table.column("id").to_pylist()
    assert ids == [item.id for item in items]
    for position, name in enumerate(folder_services.registry.names):
        stored = folder_services.features.outputs_by_digest(name, items)  # what the app computes and stores
        expected = np.stack([stored[item.digest].embedding for item in items])
        got = fixed_list_to_numpy(table.column(embedding_column(position)))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_the_index_holds_the_apps_ensemble_feature_of_every_row(built, folder_services):
    import faiss

    from senet_demo.gallery import scan

    items = scan(folder_services.config.gallery_dir)
    _, expected = folder_services.search._prepare(items, "ensemble", None)  # the app's own feature matrix
    index = faiss.read_index(str(built / "index.faiss"))
    assert index.ntotal == len(items)
    np.testing.assert_allclose(index.reconstruct_n(0, index.ntotal), expected, rtol=0, atol=1e-5)


def test_ids_labels_and_digests_match_the_gallery(built, folder_services):
    import pyarrow.parquet as pq

    from senet_demo.gallery import scan

    items = scan(folder_services.config.gallery_dir)
    rows = pq.read_table(built / "rows.parquet")
    assert rows.column("id").to_pylist() == [item.id for item in items]
    assert rows.column("label").to_pylist() == [item.label for item in items]
    assert rows.column("digest").to_pylist() == [item.digest for item in items]
    assert rows.column("source").to_pylist() == [str(item.path.resolve()) for item in items]


def test_the_manifest_records_models_preprocessing_feature_counts_and_checksums(built, folder_services, gallery):
    manifest = manifest_of(built)
    registry = folder_services.registry
    assert [m["spec"] for m in manifest["models"]] == registry.names
    for record, name in zip(manifest["models"], registry.names):
        loaded = registry.get(name)
        assert record["identity"] == loaded.weights.identity
        assert record["data_config"] == json.loads(json.dumps(loaded.data_config))
        assert record["embedding_size"] == 2048
    assert manifest["feature"] == "ensemble"
    count = sum(1 for label in gallery.iterdir() if label.is_dir() for f in label.iterdir() if f.is_file())
    assert manifest["rows"] == count and manifest["skipped"] == 0
    assert len(manifest["shards"]) == -(-count // SHARD_SIZE)
    assert sum(s["rows"] for s in manifest["shards"]) == count
    for shard in manifest["shards"]:
        assert sha256(built / shard["file"]) == shard["sha256"]
    for name, digest in manifest["files"].items():
        assert sha256(built / name) == digest
    assert manifest["index"]["kind"] == "flat"  # a few hundred images: exact search


# ------------------------------------------------------------------------------ restart
def test_a_job_killed_midway_and_run_again_gives_identical_shards(ray_session, built, gallery, specs, tmp_path):
    from senet_demo.index_job import run

    out = tmp_path / "killed"
    args = [sys.executable, "-m", "senet_demo", "index", "--gallery", str(gallery), "--out", str(out), "--offline",
            "--engine", "torch", "--shard-size", str(SHARD_SIZE), "--workers", "2", "--ray", ray_session]
    for spec in specs:
        args += ["--model", spec]
    job = subprocess.Popen(args, cwd=REPO_ROOT, env=subprocess_env(Path(os.environ["HF_HOME"])),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not list((out / "shards").glob("*.json")):  # the first finished shard
            assert job.poll() is None, job.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard was written in time"
            time.sleep(0.02)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the job's driver, as a kill -9 or a lost machine would
        job.wait()
    time.sleep(2)  # its actors end with it; a shard they were writing is whole or absent
    finished = len(list((out / "shards").glob("*.json")))
    total = len(manifest_of(built)["shards"])
    assert 1 <= finished < total
    assert not (out / "manifest.json").exists()

    lines = []
    run(settings_for(gallery, out, specs), say=lines.append)
    summary = next(line for line in lines if "already built" in line)  # "N shards: K already built, P to embed"
    kept = int(summary.split(": ")[1].split(" ")[0])
    assert kept >= finished  # every shard finished before the kill was kept, none embedded again
    assert not any("fails its checksum" in line for line in lines)
    same_folder(built, out)


def test_a_run_of_a_finished_index_changes_nothing(built, gallery, specs):
    from senet_demo.index_job import run

    before = {name: (built / name).stat().st_mtime_ns for name in index_files(built)}
    lines = []
    run(settings_for(gallery, built, specs), say=lines.append)
    assert any("up to date" in line for line in lines), lines
    assert {name: (built / name).stat().st_mtime_ns for name in index_files(built)} == before


def test_a_corrupted_shard_is_detected_and_rebuilt(ray_session, built, gallery, specs, tmp_path, monkeypatch):
    from senet_demo.index_job import run

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    shard = copy / "shards" / "shard-00003.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle: still a file of the same size
    shard.write_bytes(bytes(data))

    lines = []
    monkeypatch.chdir(tmp_path)  # --out given relative to the driver's folder: the workers write there too
    run(settings_for(gallery, Path("copy"), specs), say=lines.append)
    assert any("shard 3 fails its checksum" in line for line in lines), lines
    assert sum("fails its checksum" in line for line in lines) == 1
    same_folder(built, copy)


def test_a_damaged_index_file_is_never_used_and_a_run_rebuilds_it(built, gallery, specs, tmp_path):
    from senet_demo.built_index import BuiltIndex, IndexProblem
    from senet_demo.index_job import run

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "index.faiss").write_bytes((copy / "index.faiss").read_bytes()[:-64])
    index = BuiltIndex.open(copy)
    with pytest.raises(IndexProblem, match="index.faiss fails its checksum.*run the index job again"):
        index.search(np.ones(4096, np.float32), 5)
    run(settings_for(gallery, copy, specs), say=lambda line: None)  # no shard to embed: Ray is not needed
    same_folder(built, copy)


# ------------------------------------------------------------------------------ the app searches the index
def test_the_retrieve_tab_searches_the_index_as_it_searches_the_folder(app_services, folder_services, gallery):
    from senet_demo.images import load_image

    handlers = retrieve_handlers(app_services)
    query = gallery / "gen_blue" / "gen_blue_4.jpg"
    answer, note = handlers["on_retrieve"](str(query), "ensemble", 6, None, progress=no_progress)
    pairs = gallery_pairs(answer)
    expected = folder_services.search.search(load_image(query), folder_services.gallery(), "ensemble", 6)
    assert [Path(path).name for path, _ in pairs] == [hit.item.path.name for hit in expected]
    assert [caption.split(" · ")[0] for _, caption in pairs] == [hit.item.label for hit in expected]
    scores = [float(caption.split(" · ")[1]) for _, caption in pairs]
    np.testing.assert_allclose(scores, [round(hit.score, 3) for hit in expected], atol=1.5e-3)
    assert pairs[0][0].endswith("gen_blue_4.jpg") and scores[0] == pytest.approx(1.0, abs=1e-3)
    for path, _ in pairs:  # pictures of the rows, where the app may serve them
        assert Path(path).is_file() and Path(path).is_relative_to(tempfile.gettempdir())
    assert f"of {len(folder_services.gallery())} gallery images" in note


def test_the_quality_panel_measures_the_index_sample_and_reports_recall(app_services, folder_services):
    handlers = retrieve_handlers(app_services)
    rows, note = handlers["on_metrics"](None, progress=no_progress)
    assert len(rows) == 1  # the one feature the index was built with
    quality = folder_services.search.evaluate(folder_services.gallery(), "ensemble")  # the folder, in process
    assert rows[0][1:] == [round(quality.precision_at_1, 3), round(quality.precision_at_5, 3),
                           round(quality.mean_average_precision, 3)]
    assert "sample of the built index" in note and "recall@10" in note and "exact" in note


def test_the_app_serves_pictures_of_index_hits_over_http(app_services, gallery, tmp_path):
    import httpx
    from gradio_client import Client, handle_file

    import senet_demo.ui
    from fixtures import free_port

    demo = senet_demo.ui.build_demo(app_services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=senet_demo.ui.allowed_paths(app_services))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "downloads"))
        results, note = client.predict(handle_file(str(gallery / "gen_red" / "gen_red_2.jpg")), api_name="/retrieve")
        index_folder = Path(app_services.config.gallery_dir)
        # the index's own files are the operator's: Gradio's file route must refuse them
        fetched = {name: httpx.get(f"http://127.0.0.1:{port}/gradio_api/file={index_folder / name}").status_code
                   for name in ("manifest.json", "rows.parquet")}
    finally:
        demo.close()
    assert len(results) == 5
    assert results[0]["caption"].startswith("gen_red · 1.000")
    assert all(Path(r["image"]).stat().st_size > 0 for r in results)
    assert (index_folder / "manifest.json").is_file() and (index_folder / "rows.parquet").is_file()
    assert all(code == 403 for code in fetched.values()), fetched


@pytest.mark.parametrize("lang, words", [("en", "built index"), ("ko", "인덱스")])
def test_figure6_over_a_built_index_says_it_needs_the_gallery_images(app_services, specs, lang, words):
    """An index keeps embeddings, not the images whose gates Figure 6 averages: the message says so, and how."""
    import gradio as gr

    from senet_demo.ui.explain_tab import figure6

    with pytest.raises(gr.Error) as refused:
        figure6(app_services, specs[1], True, lang, progress=no_progress)
    assert words in str(refused.value) and "--gallery DIR" in str(refused.value)


@pytest.mark.parametrize("surface", ["tab", "cli"])
def test_other_models_are_refused_in_the_tab_and_the_cli(built, specs, gallery, tmp_path, surface, capsys):
    import gradio as gr

    from senet_demo.__main__ import main
    from senet_demo.gallery import resolve_source
    from senet_demo.services import Services

    other = export_tiny("seresnext26d_32x4d", tmp_path / "other", 7, SENET_DATA)
    index_identity = manifest_of(built)["models"][1]["identity"]
    query = gallery / "gen_red" / "gen_red_0.jpg"
    if surface == "tab":
        services = Services.create(make_config(tmp_path, [specs[0], folder_spec(other)],
                                               gallery_dir=resolve_source(f"index:{built}", offline=True)))
        app_identity = services.registry.get(folder_spec(other)).weights.identity
        with pytest.raises(gr.Error) as refused:
            retrieve_handlers(services)["on_retrieve"](str(query), "ensemble", 5, None, progress=no_progress)
        message = str(refused.value)
    else:
        with pytest.raises(SystemExit) as exited:
            main(["retrieve", "--gallery", f"index:{built}", "--model", specs[0], "--model", folder_spec(other),
                  "--offline", "--engine", "torch", "--queries", str(query), "--out", str(tmp_path / "r.json")])
        assert exited.value.code == 2
        message = capsys.readouterr().err
        assert len(message.strip().splitlines()) == 1
        assert not (tmp_path / "r.json").exists()
        from senet_demo.weights import file_sha256

        app_identity = file_sha256(other.weights_file)[:16]
    assert index_identity in message and app_identity in message  # both ensembles, by their weights
    assert "was built with" in message and "this app runs" in message


def test_the_cli_ranks_a_built_index_as_it_ranks_the_folder(built, specs, gallery, tmp_path, folder_services):
    from senet_demo.__main__ import main
    from senet_demo.images import load_image

    queries = [gallery / "gen_green" / "gen_green_3.jpg", gallery / "bird" / sorted(os.listdir(gallery / "bird"))[0]]
    common = ["--offline", "--engine", "torch", "--top", "7", "--queries", *map(str, queries)]
    for spec in specs:
        common += ["--model", spec]
    assert main(["retrieve", "--gallery", f"index:{built}", "--out", str(tmp_path / "index.json"), *common]) == 0
    from_index = json.loads((tmp_path / "index.json").read_text())
    for query in queries:  # what retrieve --gallery DIR writes: the hits' paths in the folder
        hits = folder_services.search.search(load_image(query), folder_services.gallery(), "ensemble", 7)
        assert from_index[query.stem] == [str(hit.item.path.relative_to(gallery)) for hit in hits]
    assert from_index[queries[0].stem][0] == "gen_green/gen_green_3.jpg"


def test_evaluate_gallery_on_an_index_reports_the_sample_and_recall(built, specs, capsys):
    from senet_demo.__main__ import main

    args = ["evaluate-gallery", "--gallery", f"index:{built}", "--offline", "--engine", "torch"]
    for spec in specs:
        args += ["--model", spec]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == ["ensemble"]
    figures = report["ensemble"]
    assert figures["index"] == "flat" and figures["recall@10"] == 1.0
    assert figures["index_rows"] == figures["sample_rows"] == manifest_of(built)["rows"]
    assert 0.0 <= figures["mAP"] <= 1.0 and figures["queries"] > 250


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_an_approximate_index_records_its_parameters_and_recall(built, gallery, specs, tmp_path, kind, app_services):
    from senet_demo.built_index import BuiltIndex
    from senet_demo.index_job import run

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    run(settings_for(gallery, copy, specs, index_kind=kind), say=lambda line: None)  # shards reused: no Ray
    manifest = manifest_of(copy)
    for shard, original in zip(manifest["shards"], manifest_of(built)["shards"]):
        assert shard == original
    spec = manifest["index"]
    assert spec["kind"] == kind
    assert spec["recall_queries"] == 200 and 0.0 < spec["recall_at_10"] <= 1.0
    assert {"hnsw": {"M", "efConstruction", "efSearch"}, "ivfpq": {"nlist", "m", "nbits", "nprobe"}}[kind] <= set(spec)
    index = BuiltIndex.open(copy)
    assert f"recall@10 against exact search **{spec['recall_at_10']:.3f}** on 200" in index.recall_text()
    # sample rows (their feature vectors are in sample.parquet) find themselves among their nearest
    import pyarrow.parquet as pq

    rows = pq.read_table(copy / "sample.parquet").column("row").to_pylist()
    vectors, _ = index.quality_sample()
    found = [row in [hit for hit, _ in index.search(vector, 3)] for row, vector in list(zip(rows, vectors))[::10]]
    assert np.mean(found) >= 0.9


# ------------------------------------------------------------------------------ other sources
def test_a_streamed_dataset_source_gives_the_rows_and_features_of_its_images(ray_session, specs, tmp_path,
                                                                              folder_services):
    datasets = pytest.importorskip("datasets", reason="datasets is not installed (pip install -r requirements-ray.txt)")
    from senet_demo.built_index import embedding_column, fixed_list_to_numpy
    from senet_demo.images import load_image
    from senet_demo.index_job import run

    pictures = make_gallery(tmp_path / "pictures", {"cat": 6, "dog": 5}, seed=11)
    files = sorted(pictures.rglob("*.jpg"))
    labels = sorted({f.parent.name for f in files})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=labels)})
    data = tmp_path / "dataset" / "data"
    data.mkdir(parents=True)
    for number, part in enumerate((files[:6], files[6:])):  # two data files: two shards
        part_set = datasets.Dataset.from_dict({"image": [str(f) for f in part],
                                               "label": [labels.index(f.parent.name) for f in part]}, features=features)
        part_set.to_parquet(str(data / f"train-{number:05d}-of-00002.parquet"))

    out = tmp_path / "index"
    from senet_demo.index_job import JobSettings

    run(JobSettings(source=f"hf-dataset:{tmp_path / 'dataset'}", out=str(out), specs=specs, offline=True,
                    engine="torch", workers=2), say=lambda line: None)
    table = shard_table(out)
    assert table.num_rows == len(files)
    assert table.column("label").to_pylist() == [f.parent.name for f in files]
    assert table.column("id").to_pylist() == [f"{0 if i < 6 else 1:05d}/{i if i < 6 else i - 6:07d}"
                                              for i in range(len(files))]
    name = folder_services.registry.names[0]
    expected = np.stack([o.embedding for o in folder_services.engine.run_batch(name, [load_image(f) for f in files[:6]])])
    np.testing.assert_allclose(fixed_list_to_numpy(table.column(embedding_column(0)))[:6], expected, atol=1e-5)


def test_an_index_in_a_hub_dataset_repo_is_found_in_the_cache_offline(built, specs, tmp_path):
    from fixtures import HF_HUB_CACHE

    from senet_demo.gallery import gallery_problem, resolve_source
    from senet_demo.services import Services

    snapshot = HF_HUB_CACHE / "datasets--landmarks--campus-index" / "snapshots" / ("ab" * 20)
    shutil.copytree(built, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("ab" * 20)
    folder = resolve_source("index:hf-dataset:landmarks/campus-index", offline=True)
    assert folder == snapshot and gallery_problem(folder) is None
    services = Services.create(make_config(tmp_path, specs, gallery_dir=folder))
    rows, _ = retrieve_handlers(services)["on_metrics"](None, progress=no_progress)
    assert rows and 0.0 <= rows[0][3] <= 1.0


def test_the_app_starts_with_an_index_gallery_and_refuses_a_folder_without_one(built, tmp_path):
    import app

    args = app.parse_args(["--gallery", f"index:{built}", "--offline"])
    assert app.start_problem(args) is None
    empty = tmp_path / "not-an-index"
    empty.mkdir()
    problem = app.start_problem(app.parse_args(["--gallery", f"index:{empty}", "--offline"]))
    assert "holds no built gallery index" in problem and "python -m senet_demo index" in problem

