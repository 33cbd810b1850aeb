"""The parts of the gallery index that need no Ray: the choice of faiss index, recall@10, the quality sample,
and the command line's answers when Ray is missing or ``index:DIR`` holds no index (the Ray job itself:
test_index_job.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import REPO_ROOT, make_gallery, subprocess_env

from senet_demo.built_index import (
    EXACT_BELOW,
    HNSW_MAX_BYTES,
    choose_index,
    quality_sample_rows,
    recall_at_k,
    top_k_merge,
)


def test_small_galleries_get_exact_search_and_large_ones_an_approximate_index():
    assert choose_index(EXACT_BELOW - 1, 4096)["kind"] == "flat"
    assert choose_index(EXACT_BELOW, 2048)["kind"] == "hnsw"  # 100k x 2048 floats: 0.8 GB, within HNSW's budget
    rows = HNSW_MAX_BYTES // (4 * 4096) + 1  # one row over the budget of keeping every vector
    spec = choose_index(rows, 4096)
    assert spec["kind"] == "ivfpq"
    assert 4096 % spec["m"] == 0 and spec["nbits"] == 8
    assert spec["nlist"] == 512 and spec["nprobe"] == 32  # about sqrt(rows) lists; a sixteenth probed
    assert spec["train_rows"] == 64 * spec["nlist"]
    assert spec["refine"] == "fp16" and spec["k_factor"] >= 10  # candidates re-ranked by the kept vectors


def test_an_asked_for_kind_wins_and_an_unknown_one_is_refused():
    assert choose_index(500, 64, "hnsw")["kind"] == "hnsw"
    ivf = choose_index(2000, 100, "ivfpq")
    assert ivf["kind"] == "ivfpq" and 100 % ivf["m"] == 0 and 2000 >= 39 * ivf["nlist"]
    with pytest.raises(ValueError, match="Unknown index kind 'lsh'"):
        choose_index(10, 8, "lsh")


def test_recall_counts_the_exact_neighbours_found_leaving_the_query_itself_out():
    queries = np.array([0, 1])
    exact = np.array([[0, 5, 6, 7], [1, 8, 9, 4]])
    approximate = np.array([[0, 5, 7, 3], [8, 1, 2, 3]])
    # query 0 finds 5 and 7 of {5, 6, 7}; query 1 finds 8 of {8, 9, 4}
    assert recall_at_k(approximate, exact, queries, k=3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert recall_at_k(exact, exact, queries, k=3) == 1.0


def test_top_k_merge_keeps_the_best_of_both_lists_in_order():
    scores, ids = top_k_merge(np.array([[0.9, 0.5]]), np.array([[3, 4]]), np.array([[0.7, 0.95]]), np.array([[8, 9]]), 3)
    assert ids.tolist() == [[9, 3, 8]] and scores.tolist() == [[0.95, 0.9, 0.7]]


def test_the_quality_sample_takes_whole_labels_evenly_over_the_names():
    labels = np.array([f"place{i // 4:03d}" for i in range(4000)])  # 1000 labels of 4 images
    rows = quality_sample_rows(labels, rows=400, per_label=50)
    chosen = labels[rows]
    names, counts = np.unique(chosen, return_counts=True)
    assert set(counts) == {4}  # every chosen label whole: leave-one-out has its matches
    assert len(rows) == 400 and len(names) == 100
    assert names[0] == "place000" and names[-1] == "place999"  # spread over all the labels
    assert np.array_equal(rows, np.sort(rows))
    assert np.array_equal(quality_sample_rows(labels, rows=400, per_label=50), rows)  # the same every time


def test_a_large_label_is_sampled_evenly_not_whole():
    labels = np.array(["big"] * 1000 + ["small"] * 3)
    rows = quality_sample_rows(labels, rows=100, per_label=50)
    big = rows[labels[rows] == "big"]
    assert len(big) == 50 and big[0] == 0 and big[-1] == 999
    assert list(quality_sample_rows(labels[:20], rows=100)) == list(range(20))  # a small gallery: all of it


def cli(args: list[str], hf_home: Path, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"import sys; {prelude}from senet_demo.__main__ import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**subprocess_env(hf_home), "SENET_ENGINE": "torch"}, timeout=300)


@pytest.mark.parametrize("missing", ["ray", "pyarrow"])
def test_index_without_its_packages_is_one_line_naming_the_extra(tmp_path, missing):
    gallery = make_gallery(tmp_path / "gallery", {"cat": 2, "dog": 2})
    # As if the package were not installed: importing it fails.
    done = cli(["index", "--gallery", str(gallery), "--out", str(tmp_path / "index")], tmp_path / "hf",
               prelude=f"sys.modules[{missing!r}] = None; ")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "not installed" in lines[0] and lines[0].endswith("pip install -r requirements-ray.txt")
    assert not (tmp_path / "index").exists()  # refused before anything is written


def test_retrieve_from_an_index_folder_without_an_index_is_a_usage_error(tmp_path):
    empty = tmp_path / "no-index"
    empty.mkdir()
    query = make_gallery(tmp_path / "q", {"cat": 1}) / "cat" / "cat_0.jpg"
    done = cli(["retrieve", "--gallery", f"index:{empty}", "--queries", str(query), "--out", str(tmp_path / "r.json")],
               tmp_path / "hf")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "holds no built gallery index (manifest.json is missing)" in done.stderr
    assert "python -m senet_demo index --gallery SOURCE --out" in done.stderr
