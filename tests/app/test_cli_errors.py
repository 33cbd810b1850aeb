"""The command line's failures: one line on stderr that says what is wrong and what to do, exit status 2
for a usage error, found before any expensive work, and never a traceback. Each runs in a subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import REPO_ROOT, export_tiny_resnet, make_gallery, picture, spec_for, subprocess_env



def cli(args: list[str], hf_home: Path, **env) -> subprocess.CompletedProcess:
    environment = {**subprocess_env(hf_home), "SENET_ENGINE": "torch", **env}
    return subprocess.run([sys.executable, "-m", "senet_demo", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=environment, timeout=300)


def one_line_error(done: subprocess.CompletedProcess, status: int = 2) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.returncode == status, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = spec_for(export_tiny_resnet(root / "model", 0))
    gallery = make_gallery(root / "gallery", {"cat": 2, "dog": 2})
    query = root / "query.png"
    picture(7).save(query)
    broken = root / "broken"
    for label in ("cat", "dog"):
        (broken / label).mkdir(parents=True)
        (broken / label / "a.jpg").write_text("not a photo")
    notes = root / "notes.jpg"
    notes.write_text("shopping list")
    return {"root": root, "model": model, "gallery": gallery, "query": query, "broken": broken, "notes": notes,
            "hf": root / "hf"}


def test_explain_a_missing_file(setup):
    line = one_line_error(cli(["explain", "--model", setup["model"], str(setup["root"] / "gone.jpg")], setup["hf"]))
    assert line.endswith("gone.jpg does not exist or is not a file; give the path of a photo.")


def test_explain_a_file_that_is_not_an_image(setup):
    line = one_line_error(cli(["explain", "--model", setup["model"], str(setup["notes"])], setup["hf"]))
    assert "notes.jpg is not an image this app reads (it looks like a text file)" in line


def test_retrieve_without_gallery_flag(setup):
    line = one_line_error(cli(["retrieve", "--queries", str(setup["query"]), "--out", "x.json"], setup["hf"]))
    assert "the following arguments are required: --gallery" in line


def test_retrieve_from_a_gallery_that_does_not_exist(setup):
    out = setup["root"] / "out.json"
    line = one_line_error(cli(["retrieve", "--model", setup["model"], "--gallery", "/nonexistent",
                               "--queries", str(setup["query"]), "--out", str(out)], setup["hf"]))
    assert line.endswith("Gallery folder /nonexistent does not exist. Fix: give a folder with one sub-folder per "
                         "label, e.g. --gallery gallery.")
    assert not out.exists()


@pytest.mark.parametrize("where", ["/proc/results.json", "MISSING_FOLDER", "A_FOLDER"])
def test_retrieve_to_an_out_that_cannot_be_written_is_refused_before_ranking(setup, where):
    out = {"MISSING_FOLDER": setup["root"] / "nowhere" / "out.json", "A_FOLDER": setup["root"]}.get(where, Path(where))
    done = cli(["retrieve", "--model", setup["model"], "--gallery", str(setup["gallery"]),
                "--queries", str(setup["query"]), "--out", str(out)], setup["hf"])
    line = one_line_error(done)
    assert f"--out {out}" in line
    assert "Embedding" not in done.stdout + done.stderr  # refused before the gallery was embedded


@pytest.mark.parametrize("command", ["retrieve", "evaluate-gallery"])
def test_a_gallery_where_nothing_decodes_is_refused_before_embedding(setup, command):
    out = setup["root"] / "never.json"
    extra = ["--queries", str(setup["query"]), "--out", str(out)] if command == "retrieve" else []
    line = one_line_error(cli([command, "--model", setup["model"], "--gallery", str(setup["broken"]), *extra],
                              setup["hf"]))
    assert line.endswith(f"Gallery folder {setup['broken']}: none of its 2 image files is a photo this app reads. "
                         f"Fix: give a gallery of JPEG, PNG, WebP, GIF, BMP or TIFF photos, one sub-folder per label.")
    assert not out.exists()


def test_a_dataset_gallery_offline(setup):
    line = one_line_error(cli(["evaluate-gallery", "--offline", "--model", setup["model"], "--gallery",
                               "hf-dataset:someone/landmarks"], setup["hf"]))
    assert "Gallery dataset 'someone/landmarks' is not available offline" in line


@pytest.mark.parametrize("env, expected", [
    ({"SENET_ENGINE": "gpu"}, "SENET_ENGINE='gpu' is not an engine; set it to one of auto, torch, onnx"),
    ({"SENET_INFERENCE_WORKERS": "two"}, "SENET_INFERENCE_WORKERS='two' is not a whole number"),
    ({"SENET_INFERENCE_WORKERS": "0"}, "SENET_INFERENCE_WORKERS='0' must be 1 or more"),
    ({"SENET_INFERENCE_WORKERS": "-3"}, "SENET_INFERENCE_WORKERS='-3' must be 1 or more"),
])
def test_bad_environment_values(setup, env, expected):
    line = one_line_error(cli(["classify", "--model", setup["model"], str(setup["query"])], setup["hf"], **env))
    assert expected in line


def test_the_engine_flag_wins_over_a_bad_engine_variable(setup):
    done = cli(["classify", "--engine", "torch", "--model", setup["model"], str(setup["query"])], setup["hf"],
               SENET_ENGINE="gpu")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("top", ["0", "-1", "many"])
def test_top_must_be_a_positive_whole_number(setup, top):
    line = one_line_error(cli(["classify", "--model", setup["model"], "--top", top, str(setup["query"])], setup["hf"]))
    assert "argument --top" in line


def test_top_above_the_limit_is_one_line_with_status_2(setup):
    line = one_line_error(cli(["classify", "--model", setup["model"], "--top", "5000", str(setup["query"])], setup["hf"]))
    assert "must be a whole number from 1 to 1000, not 5000" in line


def test_export_lite0_to_a_folder_that_cannot_be_written(setup):
    line = one_line_error(cli(["export-lite0", "--out", "/proc/lite0"], setup["hf"]))
    assert line.startswith("python -m senet_demo: error: --out /proc/lite0: /proc/lite0 cannot be written")
