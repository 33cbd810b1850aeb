"""A visitor's data and what a visitor sees: uploads really deleted, answers independent of other visitors,
truthful warnings about the stores, checked start-up, and ONNX exports checked when read."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from fixtures import REPO_ROOT, encode, free_port, make_config, make_gallery, picture
from senet_demo.services import Services
from senet_demo.ui import allowed_paths, build_demo
from senet_demo.ui.classify_tab import classify_image
from senet_demo.ui.common import model_status_markdown
from senet_demo.ui.explain_tab import explain_image, forget_compared
from senet_demo.ui.retrieve_tab import add_uploads, clear_uploads, forget_session, retrieve_image
from senet_demo.uploads import gradio_upload_root



def _services(root: Path, specs: list[str], gallery: Path | None = None) -> Services:
    config = make_config(root, specs)
    if gallery is not None:
        config.gallery_dir = gallery
    return Services.create(config)


# ---------------------------------------------------------------- "Remove my images" removes them


@pytest.fixture(scope="module")
def served(tmp_path_factory, resnet_name):
    """The app launched on a local port, with its services and its URL."""
    root = tmp_path_factory.mktemp("visitor")
    services = _services(root, [resnet_name], make_gallery(root / "gallery", {"a": 2, "b": 2}))
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=allowed_paths(services))
    try:
        yield services, f"http://127.0.0.1:{port}"
    finally:
        demo.close()


def _upload(url: str, files: list[tuple[str, bytes]]) -> list[str]:
    """Send files as a browser does (Gradio's upload route); returns the paths Gradio gives the handler."""
    import httpx

    answer = httpx.post(f"{url}/gradio_api/upload", files=[("files", (name, data)) for name, data in files])
    answer.raise_for_status()
    return answer.json()


def _status(url: str, path: str) -> int:
    """200, or the refusal of a URL whose file is gone: Gradio answers 403 (no file it may serve) or 404."""
    import httpx

    code = httpx.get(f"{url}/gradio_api/file={path}").status_code
    return 404 if code == 403 else code


def _sent(seed: int) -> list[tuple[str, bytes]]:
    return [(f"mine_{seed}_{i}.jpg", encode(picture(seed * 10 + i), "JPEG", quality=90)) for i in range(2)]


def test_remove_my_images_deletes_every_copy_and_every_url_answers_404(served):
    services, url = served
    paths = _upload(url, _sent(1))
    assert all(Path(p).is_relative_to(gradio_upload_root()) for p in paths)
    assert [_status(url, p) for p in paths] == [200, 200]  # served by URL until the visitor removes them
    session, note = add_uploads(services, paths, "mine", None)
    stored = sorted(Path(session["dir"]).rglob("*.jpg"))
    assert "Added 2 image(s)" in note and len(stored) == 2

    session, note = clear_uploads(session)

    assert session is None and "removed" in note
    assert [_status(url, p) for p in paths] == [404, 404]
    assert not any(Path(p).exists() for p in paths) and not any(p.exists() for p in stored)


def test_the_session_states_forget_the_uploads_when_the_session_ends(served):
    """Gradio calls a state's delete callback when the visitor leaves or the state expires: the Retrieve
    tab's session and the Explain tab's compare box each forget what the visitor sent."""
    services, url = served
    demo = build_demo(services)
    callbacks = {block.delete_callback for block in demo.blocks.values() if isinstance(block, gr.State)}
    assert {forget_session, forget_compared} <= callbacks
    paths = _upload(url, _sent(2))
    session, _ = add_uploads(services, paths, "mine", None)
    compared = _upload(url, _sent(3))

    forget_session(session)
    forget_compared(compared)

    assert [_status(url, p) for p in paths + compared] == [404] * 4
    assert not Path(session["dir"]).exists()


def test_a_refused_upload_keeps_no_copy(served):
    services, url = served
    paths = _upload(url, [("notes.zip", b"PK\x03\x04 not really a zip")])
    with pytest.raises(gr.Error, match="damaged"):
        add_uploads(services, paths, "mine", None)
    assert _status(url, paths[0]) == 404 and not Path(paths[0]).exists()


# ---------------------------------------------------------------- nothing visible depends on other visitors


def _answers(services: Services, image: Path) -> list:
    """Every output of /classify, /explain and /retrieve for ``image``, as they are sent to the page."""
    names = services.registry.names
    se_model = next(n for n in services.registry.all_names if services.registry.se_blocks(n))
    classified = classify_image(services, str(image), "none", *[1.0] * len(names))
    # The forward's own time is shown, which differs between two runs of the same forward on any machine.
    classified[1] = re.sub(r"\| \d+ ms \|", "| N ms |", classified[1])
    views = explain_image(services, str(image), se_model, "auto", [], [], False, 4)
    texts = [view for view in views if isinstance(view, str)]
    figures = [gr.Plot().postprocess(view) for view in views if hasattr(view, "to_json")]
    pictures = [(np.asarray(picture).tolist(), caption) for view in views if isinstance(view, list)
                for picture, caption in view]
    assert len(texts) + len(figures) + 1 == len(views) and pictures
    found, note = retrieve_image(services, str(image), "ensemble", 4, None)
    return [classified, texts, figures, pictures, found, note]


def test_a_visitors_answers_are_the_same_whether_or_not_another_sent_the_picture_first(tmp_path, resnet_name,
                                                                                       senet_name):
    gallery = make_gallery(tmp_path / "gallery", {"red": 2, "green": 2})
    picture(77, (120, 96)).save(tmp_path / "a.png")
    picture(77, (120, 96)).save(tmp_path / "b.png")  # the same picture, sent by another visitor

    shared = _services(tmp_path / "shared", [resnet_name, senet_name], gallery)
    _answers(shared, tmp_path / "a.png")  # visitor A first
    passes = shared.engine.forward_passes
    after_a = _answers(shared, tmp_path / "b.png")
    assert shared.engine.forward_passes == passes  # B's answers came from A's forward passes

    alone = _services(tmp_path / "alone", [resnet_name, senet_name], gallery)
    assert _answers(alone, tmp_path / "b.png") == after_a
    assert "cached" not in after_a[0][1]


# ---------------------------------------------------------------- the Models panel tells the truth


def test_the_models_panel_warns_when_the_feature_store_cannot_be_written(tmp_path, resnet_name):
    blocker = tmp_path / "features"
    blocker.write_text("a file where the feature folder should be")
    config = make_config(tmp_path, [resnet_name], feature_cache_dir=blocker)
    services = Services.create(config)
    assert services.features.warning and str(blocker) in services.features.warning

    assert services.features.warning in model_status_markdown(services)


def test_the_models_panel_names_a_problem_with_the_operators_gallery(tmp_path, resnet_name):
    (tmp_path / "empty-gallery" / "cats").mkdir(parents=True)
    services = _services(tmp_path, [resnet_name], tmp_path / "empty-gallery")
    assert "holds no images" in model_status_markdown(services)

    healthy = _services(tmp_path / "ok", [resnet_name], make_gallery(tmp_path / "gallery", {"a": 1, "b": 1}))
    assert "Warning" not in model_status_markdown(healthy)


# ---------------------------------------------------------------- app.py checks before building anything


@pytest.mark.parametrize("env, args, message", [
    ({"SENET_ENGINE": "bogus"}, [], "SENET_ENGINE='bogus' is not an engine"),
    ({"SENET_INFERENCE_WORKERS": "many"}, [], "SENET_INFERENCE_WORKERS='many' is not a whole number"),
    ({}, ["--gallery", "/nonexistent"], "Gallery folder /nonexistent does not exist"),
])
def test_app_refuses_to_start_with_one_line(env, args, message):
    run = subprocess.run([sys.executable, "app.py", "--offline", *args], cwd=REPO_ROOT, capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=240)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("app.py: error: ") and message in lines[0]
    assert "Traceback" not in run.stderr + run.stdout


# ---------------------------------------------------------------- ONNX exports checked when read


@pytest.fixture
def onnx_services(tmp_path, resnet_name):
    """Starts a fresh app over the same disk (new registry and engine), ONNX Runtime where it validates."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return lambda: Services.create(make_config(tmp_path, [resnet_name], engine="auto"))


def _export_files(tmp_path: Path) -> tuple[Path, Path]:
    (graph,) = sorted((tmp_path / "weights" / "onnx").glob("*.onnx"))
    return graph, graph.with_suffix(".json")


def _temporaries(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "weights" / "onnx").glob(".*.tmp*"))


def _truncated(graph: Path, record: Path) -> None:
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 3])


def _zero_bytes(graph: Path, record: Path) -> None:
    graph.write_bytes(b"")


def _garbage_record(graph: Path, record: Path) -> None:
    record.write_text("{ not json")


def _another_exports_record(graph: Path, record: Path) -> None:
    values = json.loads(record.read_text())
    record.write_text(json.dumps({**values, "file": "other.onnx"}))


@pytest.mark.parametrize("damage", [_truncated, _zero_bytes, _garbage_record, _another_exports_record])
def test_a_damaged_export_is_logged_and_the_engine_answers_correctly(tmp_path, resnet_name, engine, onnx_services,
                                                                     damage, caplog):
    first = onnx_services()
    first.engine.run(resnet_name, picture(5))
    assert first.engine.backend_name(resnet_name) == "onnxruntime"
    graph, record = _export_files(tmp_path)
    damage(graph, record)
    damaged = record if damage in (_garbage_record, _another_exports_record) else graph

    with caplog.at_level(logging.WARNING, logger="senet_demo"):
        again = onnx_services()
        outputs = again.engine.run(resnet_name, picture(5))

    assert str(damaged) in caplog.text
    expected = engine.run(resnet_name, picture(5))  # eager PyTorch
    np.testing.assert_allclose(outputs.probs, expected.probs, atol=1e-4, rtol=0)
    assert again.engine.backend_name(resnet_name) == "onnxruntime"  # exported again and validated
    graph, record = _export_files(tmp_path)
    assert json.loads(record.read_text())["valid"] is True
    assert _temporaries(tmp_path) == []


def test_an_unwritable_onnx_folder_keeps_eager_with_one_warning(tmp_path, resnet_name, engine, caplog):
    pytest.importorskip("onnxruntime")
    from senet_demo.engine import Engine

    blocker = tmp_path / "onnx"
    blocker.write_text("a file where the ONNX folder should be")
    services = Services.create(make_config(tmp_path, [resnet_name], engine="auto"))
    unwritable = Engine(services.registry, backend="auto", onnx_dir=blocker / "exports")

    with caplog.at_level(logging.INFO, logger="senet_demo"):
        outputs = unwritable.run(resnet_name, picture(6))

    np.testing.assert_array_equal(outputs.probs, engine.run(resnet_name, picture(6)).probs)  # eager itself
    assert unwritable.backend_name(resnet_name).startswith("torch; ONNX Runtime not used")
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(blocker) in warnings[0].getMessage()
