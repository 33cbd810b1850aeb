"""From a SPEC to weights on disk, and on to a loaded model, for every SPEC form; safe formats only."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from fixtures import HF_HOME, HF_HUB_CACHE, LABELS, make_config, remove_hf_cache, write_hf_cache
from safetensors.torch import load_file, save_file

from senet_demo.config import ModelSpec, SpecError
from senet_demo.models import ModelRegistry
from senet_demo.weights import (
    ResolvedWeights,
    WeightsNotFound,
    hub_repo_for,
    local_folder,
    resolve,
)

RESNET_HUB_REPO = "timm/resnet152d.gluon_in1k"
SENET_HUB_REPO = "timm/seresnext101_64x4d.gluon_in1k"


def load(spec_text: str, root: Path, **config):
    """Load one SPEC the way the app does: AppConfig -> ModelRegistry.get."""
    registry = ModelRegistry(make_config(root, [spec_text], **config))
    return registry.get(registry.names[0])


def assert_weights_from(loaded, weights_file: Path) -> None:
    """Every tensor of the loaded model is the one stored in ``weights_file`` (not a random init)."""
    stored = load_file(str(weights_file))
    state = loaded.model.state_dict()
    assert set(state) == set(stored)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor), name


@pytest.fixture
def hub_cache_repo():
    """Repos written into the session's HF cache by a test; removed afterwards."""
    written = []

    def write(repo_id, model):
        written.append(repo_id)
        return write_hf_cache(repo_id, model)

    yield write
    for repo_id in written:
        remove_hf_cache(repo_id)


def test_hugging_face_hub_is_offline_and_isolated():
    import huggingface_hub.constants as hf

    assert hf.HF_HUB_OFFLINE is True
    assert Path(hf.HF_HUB_CACHE).resolve() == HF_HUB_CACHE.resolve()
    assert Path(hf.HF_HOME).resolve() == HF_HOME.resolve()


# ---------------------------------------------------------------- which repo a SPEC means


def test_hub_repo_for_each_spec_form():
    assert hub_repo_for(ModelSpec.parse("resnet152d.gluon_in1k")) == RESNET_HUB_REPO
    assert hub_repo_for(ModelSpec.parse("seresnext101_64x4d.gluon_in1k")) == SENET_HUB_REPO
    assert hub_repo_for(ModelSpec.parse("resnet50d=hf-hub:org/name")) == "org/name"
    assert hub_repo_for(ModelSpec.parse("resnet50d=/some/folder")) is None
    assert hub_repo_for(ModelSpec.parse("resnet50d=/some/file.safetensors")) is None


@pytest.mark.parametrize("arch", ["not_a_timm_model", "resnet50d.no_such_tag"])
def test_arch_without_hub_weights_is_a_spec_error(arch):
    with pytest.raises(SpecError, match=arch.split(".")[0]):
        hub_repo_for(ModelSpec.parse(arch))


def test_local_folder_naming(tmp_path):
    assert local_folder(RESNET_HUB_REPO, tmp_path) == tmp_path / "timm--resnet152d.gluon_in1k"


# ---------------------------------------------------------------- (a) ARCH from the repo's weights/ folder


def test_arch_from_weights_folder_loads_through_timm_local_dir(tmp_path, tiny_resnet):
    folder = tiny_resnet.copy_to(tmp_path / "weights" / "timm--resnet152d.gluon_in1k")

    resolved = resolve(ModelSpec.parse("resnet152d.gluon_in1k"), tmp_path / "weights", offline=True)
    assert resolved == ResolvedWeights(folder, "weights/", RESNET_HUB_REPO)

    loaded = load("resnet152d.gluon_in1k", tmp_path)
    assert loaded.weights.origin == "weights/"
    # timm built the model from the folder's config.json (local-dir:), not from the name's defaults.
    assert loaded.model.pretrained_cfg["source"] == "local-dir"
    assert Path(loaded.model.pretrained_cfg["file"]) == folder
    assert len(loaded.model.layer1) == 1 and not hasattr(loaded.model, "layer5")
    assert_weights_from(loaded, tiny_resnet.weights_file)
    assert loaded.labels == LABELS


def test_weights_folder_is_preferred_over_hf_cache(tmp_path, tiny_resnet, tiny_senet, hub_cache_repo):
    hub_cache_repo(RESNET_HUB_REPO, tiny_senet)
    tiny_resnet.copy_to(tmp_path / "weights" / "timm--resnet152d.gluon_in1k")
    loaded = load("resnet152d.gluon_in1k", tmp_path)
    assert loaded.weights.origin == "weights/"
    assert_weights_from(loaded, tiny_resnet.weights_file)


def test_incomplete_weights_folder_is_skipped(tmp_path, tiny_senet, hub_cache_repo):
    folder = tmp_path / "weights" / "timm--resnet152d.gluon_in1k"
    folder.mkdir(parents=True)
    shutil.copyfile(tiny_senet.folder / "config.json", folder / "config.json")  # no weights file
    snapshot = hub_cache_repo(RESNET_HUB_REPO, tiny_senet)
    resolved = resolve(ModelSpec.parse("resnet152d.gluon_in1k"), tmp_path / "weights", offline=True)
    assert (resolved.origin, resolved.path) == ("hf-cache", snapshot)


# ---------------------------------------------------------------- (b), (c) the Hugging Face cache


def test_arch_from_hf_cache(tmp_path, tiny_senet, hub_cache_repo):
    snapshot = hub_cache_repo(SENET_HUB_REPO, tiny_senet)
    loaded = load("seresnext101_64x4d.gluon_in1k", tmp_path)
    assert loaded.weights == ResolvedWeights(snapshot, "hf-cache", SENET_HUB_REPO)
    assert loaded.model.pretrained_cfg["source"] == "local-dir"
    assert_weights_from(loaded, tiny_senet.weights_file)
    assert loaded.labels == LABELS


def test_hf_hub_source_from_hf_cache(tmp_path, tiny_resnet, hub_cache_repo):
    snapshot = hub_cache_repo("someone/landmarks-resnet", tiny_resnet)
    loaded = load("resnet50d=hf-hub:someone/landmarks-resnet", tmp_path)
    assert loaded.weights == ResolvedWeights(snapshot, "hf-cache", "someone/landmarks-resnet")
    assert loaded.name == "resnet50d=hf-hub:someone/landmarks-resnet"
    assert_weights_from(loaded, tiny_resnet.weights_file)
    assert loaded.labels == LABELS


# ---------------------------------------------------------------- (d), (e) local SOURCEs


def test_local_folder_source(tmp_path, tiny_resnet):
    loaded = load(f"resnet50d={tiny_resnet.folder}", tmp_path)
    assert loaded.weights == ResolvedWeights(tiny_resnet.folder.resolve(), "local", None)
    assert_weights_from(loaded, tiny_resnet.weights_file)
    assert loaded.labels == LABELS


def test_safetensors_file_with_config_json_beside_it(tmp_path, tiny_senet):
    loaded = load(f"seresnext26d_32x4d={tiny_senet.weights_file}", tmp_path)
    assert loaded.weights == ResolvedWeights(tiny_senet.weights_file.resolve(), "local", None)
    assert_weights_from(loaded, tiny_senet.weights_file)
    assert loaded.labels == LABELS  # the config's label_names, 6 classes
    assert tuple(loaded.data_config["input_size"]) == tiny_senet.data_config["input_size"]
    assert loaded.data_config["interpolation"] == tiny_senet.data_config["interpolation"]


def test_safetensors_file_with_labels_txt_beside_it(tmp_path):
    """A fine-tuned standard architecture: weights file + labels.txt, no config.json."""
    import timm

    torch.manual_seed(3)
    names = ["Notre-Dame", "Louvre", "Sacré-Cœur", "Arc de Triomphe", "Panthéon", "Sainte-Chapelle"]
    model = timm.create_model("test_resnet", num_classes=len(names)).eval()
    weights_file = tmp_path / "landmarks" / "paris.safetensors"
    weights_file.parent.mkdir()
    save_file(model.state_dict(), str(weights_file))
    (weights_file.parent / "labels.txt").write_text("\n".join(names) + "\n\n", encoding="utf-8")

    loaded = load(f"test_resnet={weights_file}", tmp_path)
    assert loaded.num_classes == 6
    assert loaded.labels == names
    assert_weights_from(loaded, weights_file)
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(loaded.model(x), model(x), atol=1e-6)


def test_safetensors_file_without_labels_infers_classes_from_the_head(tmp_path):
    import timm

    model = timm.create_model("test_resnet", num_classes=3)
    weights_file = tmp_path / "three.safetensors"
    save_file(model.state_dict(), str(weights_file))
    loaded = load(f"test_resnet={weights_file}", tmp_path)
    assert loaded.labels == ["class 0", "class 1", "class 2"]


def test_missing_local_source(tmp_path):
    with pytest.raises(WeightsNotFound, match="does not exist"):
        resolve(ModelSpec.parse(f"resnet50d={tmp_path / 'nowhere'}"), tmp_path)


# ---------------------------------------------------------------- missing weights


@pytest.mark.parametrize("text", ["resnet152d.gluon_in1k", "resnet50d=hf-hub:nobody/nothing"])
def test_offline_without_a_copy_names_the_model_and_the_fix(tmp_path, text):
    with pytest.raises(WeightsNotFound) as caught:
        resolve(ModelSpec.parse(text), tmp_path / "weights", offline=True)
    message = str(caught.value)
    assert repr(text) in message
    assert f"python -m senet_demo download {text}" in message
    assert "--offline" in message


def test_registry_reports_missing_weights(tmp_path):
    registry = ModelRegistry(make_config(tmp_path, ["seresnext101_64x4d.gluon_in1k"]))
    with pytest.raises(WeightsNotFound, match="python -m senet_demo download"):
        registry.get("seresnext101_64x4d.gluon_in1k")
    assert not registry.is_loaded("seresnext101_64x4d.gluon_in1k")


def test_failed_download_is_weights_not_found(tmp_path):
    # Not --offline, but HF_HUB_OFFLINE=1 makes every Hub call fail without touching the network.
    with pytest.raises(WeightsNotFound, match="Could not download 'resnet50d=hf-hub:nobody/nothing'"):
        resolve(ModelSpec.parse("resnet50d=hf-hub:nobody/nothing"), tmp_path, offline=False)


# Pickled checkpoints (refused wherever they come from, never executed): tests/security/test_security.py


# ---------------------------------------------------------------- identity (keys of caches that outlive the process)


def test_weights_identity_follows_the_file_content(tmp_path, tiny_resnet, tiny_senet):
    copy = tiny_resnet.copy_to(tmp_path / "copy")
    same = ResolvedWeights(copy, "local", None).identity
    assert same == ResolvedWeights(tiny_resnet.folder, "local", None).identity
    assert same == ResolvedWeights(tiny_resnet.weights_file, "local", None).identity
    assert same != ResolvedWeights(tiny_senet.folder, "local", None).identity
    with open(copy / "model.safetensors", "r+b") as f:  # change the last byte
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    assert ResolvedWeights(copy, "local", None).identity != same


def test_a_checkpoint_is_hashed_once_and_then_known_by_its_stat(tmp_path, tiny_resnet, monkeypatch):
    import hashlib

    from senet_demo import weights as weights_module

    reads = []
    real = hashlib.file_digest
    monkeypatch.setattr(weights_module.hashlib, "file_digest", lambda *a, **k: reads.append(1) or real(*a, **k))
    monkeypatch.setattr(weights_module, "RACY_NS", 300_000_000)
    copy = tiny_resnet.copy_to(tmp_path / "copy")
    content = (copy / "model.safetensors").read_bytes()
    first = ResolvedWeights(copy, "local", None).identity
    assert first == hashlib.sha256(content).hexdigest()[:16]
    assert ResolvedWeights(copy, "local", None).identity == first
    assert len(reads) == 2  # just written: hashed every time (a rewrite in the same clock tick keeps the stat)
    time.sleep(0.4)  # older than RACY_NS now
    assert ResolvedWeights(copy, "local", None).identity == first
    assert ResolvedWeights(copy, "local", None).identity == first
    assert len(reads) == 3  # remembered: a restart does not read the checkpoint again
    with open(copy / "model.safetensors", "r+b") as f:  # the same size, in place
        f.seek(len(content) // 2)
        f.write(bytes([content[len(content) // 2] ^ 0xFF]))
    assert ResolvedWeights(copy, "local", None).identity != first
    assert len(reads) == 4


def test_an_unreadable_record_of_hashes_is_hashed_afresh(tmp_path, tiny_resnet, monkeypatch):
    import hashlib

    from senet_demo import weights as weights_module

    store = tmp_path / "weights-sha256.json"
    monkeypatch.setattr(weights_module, "_identity_store", lambda: store)
    monkeypatch.setattr(weights_module, "RACY_NS", 0)
    file = tiny_resnet.weights_file
    truth = hashlib.sha256(file.read_bytes()).hexdigest()
    for content in ("not json", "[1, 2]", json.dumps({str(file.resolve()): "x"}),
                    json.dumps({str(file.resolve()): {"signature": None, "sha256": "../../etc"}})):
        store.write_text(content)
        assert weights_module.remembered_sha256(file) == truth
    stat = file.stat()
    signature = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]
    store.write_text(json.dumps({str(file.resolve()): {"signature": signature, "sha256": "../../etc"}}))
    assert weights_module.remembered_sha256(file) == truth  # a matching stat with a value that is no sha256
    assert json.loads(store.read_text())[str(file.resolve())]["sha256"] == truth


def test_weights_identity_follows_the_whole_content(tmp_path, tiny_resnet):
    """A retrain that changes only middle bytes must not reuse features stored for the old weights."""
    from senet_demo.weights import ResolvedWeights

    folder = tiny_resnet.copy_to(tmp_path / "a")
    before = ResolvedWeights(folder, "local", None).identity
    data = bytearray((folder / "model.safetensors").read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert ResolvedWeights(folder, "local", None).identity != before


def test_weights_identity_in_the_hub_cache_is_the_blob_hash(tmp_path, tiny_resnet):
    import hashlib

    from senet_demo.weights import ResolvedWeights

    content = tiny_resnet.weights_file.read_bytes()
    sha = hashlib.sha256(content).hexdigest()
    blob = tmp_path / "blobs" / sha
    blob.parent.mkdir()
    blob.write_bytes(content)
    snapshot = tmp_path / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blob)
    assert ResolvedWeights(snapshot, "hf-cache", "org/name").identity == sha[:16]


# --- timm release files (legacy SENets: no Hub repo, a .pth release) ----------------------------------------


def test_release_file_models_load_from_weights_folder_offline(tmp_path):
    """legacy_seresnet18.in1k's timm weights are a release .pth; a copy in weights/<ARCH>/ is used offline."""
    import timm
    import torch

    from senet_demo.config import AppConfig
    from senet_demo.models import ModelRegistry
    from senet_demo.se_blocks import find_se_blocks
    from senet_demo.weights import release_file, release_url_for

    spec = ModelSpec.parse("legacy_seresnet18.in1k")
    url = release_url_for(spec)
    assert url and url.endswith(".pth") and hub_repo_for(spec) is None
    torch.manual_seed(0)
    source = timm.create_model("legacy_seresnet18", pretrained=False).eval()
    target = release_file(spec, url, tmp_path / "weights")
    target.parent.mkdir(parents=True)
    torch.save(source.state_dict(), target)

    registry = ModelRegistry(AppConfig.from_specs([spec.name], offline=True, weights_dir=tmp_path / "weights"))
    loaded = registry.get(spec.name)
    assert loaded.weights.origin == "weights/" and loaded.weights.path == target
    assert len(find_se_blocks(loaded.model)) == 8
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), source(x))
    assert loaded.labels[0] == "tench, Tinca tinca"  # ImageNet names from timm's metadata


def test_release_file_missing_offline_names_the_fix(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    with pytest.raises(WeightsNotFound, match=r"legacy_seresnet18\.in1k.*python -m senet_demo download"):
        resolve(ModelSpec.parse("legacy_seresnet18.in1k"), tmp_path / "weights", offline=True)
