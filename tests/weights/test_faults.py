"""Broken weights, one fault at a time, in a running app beside a healthy model.

Each case serves the app (``Services.create`` + ``build_demo`` + ``launch``) with a faulty SE model and
the tiny healthy ResNet-D, then checks: the app starts; the Models status and the Classify answer (or,
for an Explain-only model, the Explain answer) name the faulty model, the exact problem and the fix; the
healthy model's probabilities are those of a direct timm run; and no file in the faulty checkpoint,
``weights/`` or the Hugging Face cache was changed or deleted.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import pytest
import torch
from PIL import Image

from fixtures import HF_HUB_CACHE, free_port, make_config, remove_hf_cache, write_hf_cache
from senet_demo.services import Services
from senet_demo.ui import allowed_paths, build_demo

pytest.importorskip("gradio_client")

HUB_ARCH = "seresnext101_64x4d.gluon_in1k"  # an SE model of the default ensemble
HUB_REPO = "timm/seresnext101_64x4d.gluon_in1k"
REFETCH = f"python -m senet_demo download {HUB_ARCH}"


@dataclass
class Fault:
    spec: str  # the faulty model's SPEC
    expected: list[str]  # phrases of the message: the problem, the file, the fix
    watched: list[Path] = field(default_factory=list)  # files and folders that must stay byte-for-byte
    cleanup: list = field(default_factory=list)


def _copy(tiny, folder: Path) -> Path:
    return tiny.copy_to(folder)


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 3 // 5])


def offline_nothing_cached(root, tiny):
    return Fault(HUB_ARCH, ["not available offline", REFETCH, "without --offline"])


def truncated_own_folder(root, tiny):
    folder = _copy(tiny, root / "truncated")
    _truncate(folder / "model.safetensors")
    return Fault(f"{tiny.arch}={folder}", [
        f"{folder / 'model.safetensors'} is not a readable safetensors file", "truncated or corrupted",
        "Fix: export or copy the checkpoint again"], [folder])


def truncated_in_weights_dir(root, tiny):
    folder = _copy(tiny, root / "weights" / HUB_REPO.replace("/", "--"))
    _truncate(folder / "model.safetensors")
    return Fault(HUB_ARCH, [
        f"{folder / 'model.safetensors'} is not a readable safetensors file", "truncated or corrupted",
        f"Fix: run `{REFETCH}` to fetch the repo again (it replaces the damaged model.safetensors in {folder})"],
        [folder])


def truncated_in_hf_cache(root, tiny):
    snapshot = write_hf_cache(HUB_REPO, tiny)
    _truncate(snapshot / "model.safetensors")
    return Fault(HUB_ARCH, [
        f"{snapshot / 'model.safetensors'} is not a readable safetensors file",
        f"Fix: run `{REFETCH}`; it writes a fresh copy to weights/, which is used before the Hugging Face cache"],
        [snapshot], cleanup=[lambda: remove_hf_cache(HUB_REPO)])


def corrupted_header(root, tiny):
    folder = _copy(tiny, root / "corrupted")
    data = bytearray((folder / "model.safetensors").read_bytes())
    assert data[8:9] == b"{"  # after the 8-byte header length comes the JSON header
    data[8:9] = b"#"
    (folder / "model.safetensors").write_bytes(bytes(data))
    return Fault(f"{tiny.arch}={folder}", [
        f"{folder / 'model.safetensors'} is not a readable safetensors file", "Error while deserializing header",
        "Fix: export or copy the checkpoint again"], [folder])


def other_width_in_config(root, tiny):
    """config.json says a narrower stem than the checkpoint was trained with."""
    folder = _copy(tiny, root / "narrow")
    config = json.loads((folder / "config.json").read_text())
    config.setdefault("model_args", {})["stem_width"] = 16
    (folder / "config.json").write_text(json.dumps(config))
    return Fault(f"{tiny.arch}={folder}", [
        f"the checkpoint {folder / 'model.safetensors'} does not fit the architecture {tiny.arch}",
        f"the first 'conv1.0.weight': [32, 3, 3, 3] in the checkpoint, [16, 3, 3, 3] in {tiny.arch}",
        f"Fix: check that 'architecture' and 'model_args' in {folder / 'config.json'} match the checkpoint"],
        [folder])


def other_arch_for_a_single_file(root, tiny):
    """SE-ResNeXt-26d weights (deep stem: conv1.0, conv1.1, ...) given as SE-ResNeXt-50 (one conv1)."""
    folder = root / "single"
    folder.mkdir()
    file = Path(shutil.copyfile(tiny.weights_file, folder / "seresnext.safetensors"))
    return Fault(f"seresnext50_32x4d={file}", [
        f"the checkpoint {file} does not fit the architecture seresnext50_32x4d",
        "tensor(s) of seresnext50_32x4d are missing from the checkpoint, the first 'conv1.weight'",
        "Fix: check that the ARCH before '=' in the SPEC matches the checkpoint"], [folder])


def labels_of_another_length(root, tiny):
    folder = _copy(tiny, root / "labelled")
    (folder / "labels.txt").write_text("\n".join(tiny.labels[:5]) + "\n", encoding="utf-8")
    return Fault(f"{tiny.arch}={folder}", [
        f"{folder / 'labels.txt'} has 5 lines but the checkpoint has 6 classes",
        "Fix: labels.txt must have 6 lines"], [folder])


def unknown_hub_architecture(root, tiny):
    return Fault("senet_giant.in1k", ["timm has no architecture called 'senet_giant'", "Fix: check the ARCH"])


def unknown_architecture_with_a_file(root, tiny):
    folder = _copy(tiny, root / "misnamed")
    spec = f"seresnext26x_32x4d={folder / 'model.safetensors'}"
    return Fault(spec, ["timm has no architecture called 'seresnext26x_32x4d' (did you mean", "seresnext26d_32x4d",
                        "Fix: check the ARCH in the SPEC"], [folder])


FAULTS = [offline_nothing_cached, truncated_own_folder, truncated_in_weights_dir, truncated_in_hf_cache,
          corrupted_header, other_width_in_config, other_arch_for_a_single_file, labels_of_another_length,
          unknown_hub_architecture, unknown_architecture_with_a_file]


def _digests(paths) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders)."""
    files = []
    for path in map(Path, paths):
        files += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}



@contextmanager
def _served(config):
    """The app for ``config`` on a free local port, as app.py launches it: (demo, client)."""
    from gradio_client import Client

    services = Services.create(config)
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=allowed_paths(services))
    try:
        yield demo, Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    finally:
        demo.close()


def _status_row(demo: gr.Blocks, name: str) -> str:
    """The faulty model's row of the Models status table, as the page shows it when the panel is opened."""
    (refresh,) = [fn for fn in demo.fns.values() if fn.targets and fn.targets[0][1] == "expand"]
    table = refresh.fn(None)  # no request: English
    assert "| model | ID (SPEC) | role | weights |" in table
    rows = [line for line in table.splitlines() if f"| `{name}` |" in line]
    assert len(rows) == 1, table
    return rows[0]


def _direct_top5(tiny, image_file: Path) -> dict[str, float]:
    """The healthy model run by timm alone, with its own preprocessing."""
    import timm
    from timm.data import create_transform, resolve_model_data_config

    model = timm.create_model(f"local-dir:{tiny.folder}", pretrained=True).eval()
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    with torch.no_grad():
        probs = model(transform(Image.open(image_file).convert("RGB")).unsqueeze(0)).softmax(-1)[0]
    values, indices = probs.topk(5)
    return {tiny.labels[i]: float(v) for v, i in zip(values, indices)}


def _confidences(label_output: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label_output["confidences"]}


def _assert_names_the_fault(text: str, fault: Fault) -> None:
    assert fault.spec in text, text
    for phrase in fault.expected:
        assert phrase in text, f"{phrase!r} not in {text!r}"


@pytest.fixture
def fault(request, tmp_path, tiny_senet):
    made = request.param(tmp_path, tiny_senet)
    yield made
    for undo in made.cleanup:
        undo()


def _watched(fault: Fault, root: Path) -> list[Path]:
    return [*fault.watched, root / "weights", HF_HUB_CACHE]


@pytest.mark.parametrize("fault", FAULTS, indirect=True, ids=[f.__name__ for f in FAULTS])
def test_a_broken_ensemble_member_is_named_with_its_fix_and_the_other_answers(fault, tmp_path, tiny_resnet,
                                                                               photo_png):
    from gradio_client import handle_file

    healthy = f"{tiny_resnet.arch}={tiny_resnet.folder}"
    before = _digests(_watched(fault, tmp_path))
    with _served(make_config(tmp_path, [fault.spec, healthy])) as (demo, client):
        _assert_names_the_fault(_status_row(demo, fault.spec), fault)
        ensemble, summary, broken, answer = client.predict(handle_file(str(photo_png)), api_name="/classify")

    assert not (broken or {}).get("confidences")  # no answer from the broken model
    _assert_names_the_fault(summary, fault)
    # in short on the page, the full message (the file, the fix) one click away
    assert f"<details><summary>Details</summary><p>Model '{fault.spec}'" in summary
    expected = _direct_top5(tiny_resnet, photo_png)
    for output in (answer, ensemble):  # the healthy model alone makes the ensemble
        got = _confidences(output)
        assert list(got) == list(expected)
        assert list(got.values()) == pytest.approx(list(expected.values()), abs=1e-5)
    assert _digests(_watched(fault, tmp_path)) == before


@pytest.mark.parametrize("fault", FAULTS, indirect=True, ids=[f.__name__ for f in FAULTS])
def test_a_broken_explain_model_is_named_in_the_explain_tab_and_classify_is_unaffected(fault, tmp_path,
                                                                                        tiny_resnet, photo_png):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    healthy = f"{tiny_resnet.arch}={tiny_resnet.folder}"
    before = _digests(_watched(fault, tmp_path))
    config = make_config(tmp_path, [healthy], explain_specs=[fault.spec])
    with _served(config) as (demo, client):
        _assert_names_the_fault(_status_row(demo, fault.spec), fault)
        try:
            # block_name is given: with no SE model that timm can build, the block list is empty and has no default
            text, *views = client.predict(image=handle_file(str(photo_png)), model=fault.spec, block_name=None,
                                          api_name="/explain")
        except AppError as err:  # a model whose weights fail: the error toast names it
            text, views = str(err), []
        ensemble, summary, answer = client.predict(handle_file(str(photo_png)), api_name="/classify")

    _assert_names_the_fault(text, fault)
    assert not any(views)
    assert "Unavailable" not in summary
    expected = _direct_top5(tiny_resnet, photo_png)
    assert _confidences(answer) == pytest.approx(expected, abs=1e-5)
    assert _confidences(ensemble) == pytest.approx(expected, abs=1e-5)
    assert _digests(_watched(fault, tmp_path)) == before
