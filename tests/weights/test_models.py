"""Loaded models: each with its own preprocessing and labels; loaded once per process."""
from __future__ import annotations

import gc
import json
import math
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

import senet_demo.models as models_module
from fixtures import LABELS, RESNET_DATA, SENET_DATA, export_tiny, folder_spec, make_config
from senet_demo.models import ModelLoadError, ModelRegistry

MODES = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def reference_transform(data: dict) -> T.Compose:
    """The standard eval pipeline written out by hand from a data config."""
    size = data["input_size"][1:]
    return T.Compose([
        T.Resize(math.floor(size[0] / data["crop_pct"]), interpolation=MODES[data["interpolation"]]),
        T.CenterCrop(size),
        T.ToTensor(),
        T.Normalize(data["mean"], data["std"]),
    ])


@pytest.mark.parametrize("which, data", [("resnet", RESNET_DATA), ("senet", SENET_DATA)])
def test_each_model_has_its_own_data_config(tiny_registry, resnet_name, senet_name, which, data):
    loaded = tiny_registry.get(resnet_name if which == "resnet" else senet_name)
    config = loaded.data_config
    assert tuple(config["input_size"]) == data["input_size"]
    assert config["crop_pct"] == pytest.approx(data["crop_pct"])
    assert config["interpolation"] == data["interpolation"]
    assert tuple(config["mean"]) == pytest.approx(data["mean"])
    assert tuple(config["std"]) == pytest.approx(data["std"])


@pytest.mark.parametrize("which, data", [("resnet", RESNET_DATA), ("senet", SENET_DATA)])
def test_each_model_transforms_with_its_own_preprocessing(tiny_registry, resnet_name, senet_name, photo, which, data):
    loaded = tiny_registry.get(resnet_name if which == "resnet" else senet_name)
    tensor = loaded.transform(photo)
    assert tuple(tensor.shape) == data["input_size"]
    assert torch.allclose(tensor, reference_transform(data)(photo), atol=1e-6)


def test_normalisation_is_per_model(tiny_registry, resnet_name, senet_name):
    grey = Image.new("RGB", (120, 100), (128, 128, 128))
    for name, data in ((resnet_name, RESNET_DATA), (senet_name, SENET_DATA)):
        tensor = tiny_registry.get(name).transform(grey)
        expected = [(128 / 255 - m) / s for m, s in zip(data["mean"], data["std"])]
        assert tensor.mean(dim=(1, 2)).tolist() == pytest.approx(expected, abs=1e-5)


def test_loaded_models_are_ready_for_inference(tiny_registry, resnet_name, senet_name):
    for name in (resnet_name, senet_name):
        loaded = tiny_registry.get(name)
        assert not loaded.model.training
        assert not any(p.requires_grad for p in loaded.model.parameters())
        assert loaded.num_classes == len(LABELS) == loaded.model.num_classes
        assert loaded.key.startswith(f"{name}@") and loaded.key.endswith(loaded.weights.identity)


# ---------------------------------------------------------------- the registry


def test_a_model_that_resizes_above_the_working_size_is_named_in_the_log(tmp_path, tiny_resnet, caplog):
    from senet_demo.images import WORKING_SIDE

    large = export_tiny("resnet50d", tmp_path / "large", 0, dict(RESNET_DATA, crop_pct=0.08))  # resizes to 800 px
    registry = ModelRegistry(make_config(tmp_path, [folder_spec(large), folder_spec(tiny_resnet)]))
    with caplog.at_level("WARNING", logger="senet_demo.models"):
        registry.get(folder_spec(tiny_resnet))  # resizes to 73 px
        assert not caplog.records
        loaded = registry.get(folder_spec(large))
    assert models_module.resize_side(loaded.transform) == 800
    (record,) = caplog.records
    assert folder_spec(large) in record.getMessage() and "800 px" in record.getMessage()
    assert f"{WORKING_SIDE} px" in record.getMessage()


def test_registry_loads_each_model_once(tmp_path, tiny_resnet, monkeypatch):
    calls = []
    real_load = models_module.load_model

    def slow_load(spec, weights):
        calls.append(spec.name)
        time.sleep(0.2)  # widen the window in which concurrent first requests overlap
        return real_load(spec, weights)

    monkeypatch.setattr(models_module, "load_model", slow_load)
    spec = f"resnet50d={tiny_resnet.folder}"
    registry = ModelRegistry(make_config(tmp_path, [spec]))
    assert not registry.is_loaded(spec)

    barrier, results = threading.Barrier(4), []

    def first_request():
        barrier.wait()
        results.append(registry.get(spec))

    threads = [threading.Thread(target=first_request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [spec]
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert registry.is_loaded(spec) and registry.get(spec) is results[0]
    assert calls == [spec]


def test_registry_unknown_name(tiny_registry):
    with pytest.raises(KeyError, match="Unknown model"):
        tiny_registry.get("no_such_model")


def test_registry_keeps_spec_order(tmp_path):
    specs = ["seresnext101_64x4d.gluon_in1k", "resnet50d=/a", "resnet152d.gluon_in1k"]
    assert ModelRegistry(make_config(tmp_path, specs)).names == specs


# ---------------------------------------------------------------- labels


def _folder_with(tmp_path, tiny, config_edit=None, labels_txt=None):
    folder = tiny.copy_to(tmp_path / "model")
    if config_edit:
        config = json.loads((folder / "config.json").read_text())
        config_edit(config)
        (folder / "config.json").write_text(json.dumps(config))
    if labels_txt is not None:
        (folder / "labels.txt").write_text("\n".join(labels_txt), encoding="utf-8")
    return folder


def _labels(tmp_path, folder):
    spec = f"resnet50d={folder}"
    return ModelRegistry(make_config(tmp_path, [spec])).get(spec).labels


def test_labels_txt_wins_over_config_names(tmp_path, tiny_resnet):
    txt = [f"landmark {i}" for i in range(6)]
    assert _labels(tmp_path, _folder_with(tmp_path, tiny_resnet, labels_txt=txt)) == txt


def test_labels_txt_of_the_wrong_length_is_refused_with_the_counts(tmp_path, tiny_resnet):
    folder = _folder_with(tmp_path, tiny_resnet, labels_txt=["only", "five", "names", "for", "six"])
    with pytest.raises(ModelLoadError) as caught:
        _labels(tmp_path, folder)
    message = str(caught.value)
    assert f"resnet50d={folder}" in message
    assert f"{folder / 'labels.txt'} has 5 lines but the checkpoint has 6 classes" in message
    assert "labels.txt must have 6 lines" in message


def test_labels_txt_beside_a_single_file_without_config_must_match_its_head(tmp_path):
    """The class count comes from the checkpoint's head, so a short labels.txt is named, not a size mismatch."""
    import timm
    from safetensors.torch import save_file

    weights_file = tmp_path / "four.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=4).state_dict(), str(weights_file))
    (tmp_path / "labels.txt").write_text("a\nb\nc\n", encoding="utf-8")
    spec = f"test_resnet={weights_file}"
    with pytest.raises(ModelLoadError, match="has 3 lines but the checkpoint has 4 classes"):
        ModelRegistry(make_config(tmp_path, [spec])).get(spec)


def test_label_descriptions_are_shown_for_label_names(tmp_path, tiny_resnet):
    """timm stores label_descriptions as {label name: description}; the descriptions are displayed."""
    synsets = [f"q{i:04d}" for i in range(6)]
    descriptions = {s: f"{label} (landmark)" for s, label in zip(reversed(synsets), reversed(LABELS))}

    def edit(config):
        config["label_names"] = synsets
        config["label_descriptions"] = descriptions

    labels = _labels(tmp_path, _folder_with(tmp_path, tiny_resnet, edit))
    assert labels == [f"{label} (landmark)" for label in LABELS]


def test_no_label_information_gives_numbered_classes(tmp_path, tiny_resnet):
    def edit(config):
        config.pop("label_names", None)
        config["pretrained_cfg"].pop("label_names", None)

    assert _labels(tmp_path, _folder_with(tmp_path, tiny_resnet, edit)) == [f"class {i}" for i in range(6)]


def test_model_from_config_with_other_preprocessing(tmp_path, tiny_resnet):
    """The transform follows the weights' config.json, so editing it changes the preprocessing."""
    def edit(config):
        config["pretrained_cfg"].update(input_size=[3, 48, 40], crop_pct=0.5, mean=[0, 0, 0], std=[1, 1, 1])

    folder = _folder_with(tmp_path, tiny_resnet, edit)
    spec = f"resnet50d={folder}"
    loaded = ModelRegistry(make_config(tmp_path, [spec])).get(spec)
    tensor = loaded.transform(Image.fromarray(np.full((200, 300, 3), 51, np.uint8)))
    assert tuple(tensor.shape) == (3, 48, 40)
    assert torch.allclose(tensor, torch.full_like(tensor, 0.2), atol=1e-6)
    shutil.rmtree(folder)


def test_a_fine_tuned_thousand_class_model_keeps_its_own_label_names(tmp_path):
    """1000 classes alone must not turn a checkpoint's own names into ImageNet's."""
    import timm
    from timm.models import save_for_hf

    from senet_demo.config import AppConfig
    from senet_demo.models import ModelRegistry

    names = [f"product {i}" for i in range(1000)]
    model = timm.create_model("resnet50d", pretrained=False, layers=[1, 1, 1, 1], num_classes=1000)
    save_for_hf(model, str(tmp_path / "m"), safe_serialization=True, model_config={"label_names": names})
    spec = f"resnet50d={tmp_path / 'm'}"
    registry = ModelRegistry(AppConfig.from_specs([spec], offline=True, weights_dir=tmp_path / "w"))
    assert registry.get(spec).labels == names


def test_wordnet_ids_are_shown_as_imagenet_descriptions(tmp_path):
    import timm
    from timm.data import ImageNetInfo
    from timm.models import save_for_hf

    from senet_demo.config import AppConfig
    from senet_demo.models import ModelRegistry

    info = ImageNetInfo()
    model = timm.create_model("resnet50d", pretrained=False, layers=[1, 1, 1, 1], num_classes=1000)
    save_for_hf(model, str(tmp_path / "m"), safe_serialization=True,
                model_config={"label_names": list(info.label_names())})
    spec = f"resnet50d={tmp_path / 'm'}"
    labels = ModelRegistry(AppConfig.from_specs([spec], offline=True, weights_dir=tmp_path / "w")).get(spec).labels
    assert labels[967] == info.index_to_description(967) and "espresso" in labels[967]


def _timm_path(folder) -> torch.nn.Module:
    """The model as timm itself loads it: built with random initialisation, then the checkpoint read in."""
    import timm

    return timm.create_model(f"local-dir:{folder}", pretrained=True).eval()


@pytest.fixture
def initialised(monkeypatch) -> list:
    """Shapes of the real (not meta-device) tensors that torch's random initialisers fill from now on."""
    calls = []
    for name in ("kaiming_uniform_", "kaiming_normal_", "normal_", "uniform_", "trunc_normal_"):
        real = getattr(torch.nn.init, name)

        def recording(tensor, *args, _real=real, **kwargs):
            if not tensor.is_meta:
                calls.append(tuple(tensor.shape))
            return _real(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, recording)
    return calls


@pytest.mark.parametrize("which", ["resnet", "senet"])
def test_loading_takes_the_checkpoint_without_random_initialisation(tmp_path, tiny_resnet, tiny_senet, initialised, which):
    from safetensors.torch import load_file

    tiny = {"resnet": tiny_resnet, "senet": tiny_senet}[which]
    loaded = ModelRegistry(make_config(tmp_path, [f"{tiny.arch}={tiny.folder}"])).get(f"{tiny.arch}={tiny.folder}")
    assert initialised == []  # no random values computed only to be overwritten
    gc.collect()
    maps = Path("/proc/self/maps")
    if maps.exists():  # the tensors are copies: a file replaced or truncated later cannot change a running model
        assert str(tiny.weights_file.resolve()) not in maps.read_text()
    checkpoint = load_file(str(tiny.weights_file))
    state = loaded.model.state_dict()
    assert set(state) == set(checkpoint)
    assert all(torch.equal(state[k], checkpoint[k]) for k in checkpoint)
    assert not any(t.is_meta for t in [*loaded.model.parameters(), *loaded.model.buffers()])
    x = torch.randn(2, 3, *tiny.input_hw)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), _timm_path(tiny.folder)(x))


@pytest.mark.parametrize("variant", ["half precision", "no BatchNorm step counters"])
def test_checkpoints_saved_otherwise_load_as_timm_loads_them(tmp_path, tiny_senet, initialised, variant):
    from safetensors.torch import load_file, save_file

    folder = tiny_senet.copy_to(tmp_path / "weights")
    state = load_file(str(folder / "model.safetensors"))
    if variant == "half precision":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    else:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(folder / "model.safetensors"))
    spec = f"{tiny_senet.arch}={folder}"
    model = ModelRegistry(make_config(tmp_path / "app", [spec])).get(spec).model
    assert initialised == []
    reference = _timm_path(folder)
    assert all(t.dtype == torch.float32 for t in model.parameters())
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(2, 3, *tiny_senet.input_hw)
    with torch.inference_mode():
        assert torch.equal(model(x), reference(x))


def test_a_model_with_state_outside_its_checkpoint_loads_the_usual_way(tmp_path):
    """Swin's relative-position index is a buffer the checkpoint does not hold: it must be computed, so
    this model is built and initialised by timm before its weights are read."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", embed_dim=24, depths=(1, 1, 1, 1),
                              num_heads=(1, 1, 1, 1), num_classes=len(LABELS)).eval()
    assert len(model.state_dict()) < len([*model.parameters(), *model.buffers()])  # non-persistent buffers
    save_for_hf(model, str(tmp_path / "swin"), safe_serialization=True, model_config={"label_names": list(LABELS)})
    spec = f"swin_tiny_patch4_window7_224={tmp_path / 'swin'}"
    loaded = ModelRegistry(make_config(tmp_path / "app", [spec])).get(spec)
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), model(x))


# --- fail safe: a SPEC means what it says; every class has its own label --------------------------------------


def test_a_folder_whose_config_names_another_architecture_is_refused(tmp_path, tiny_resnet):
    spec_text = f"resnet9999={tiny_resnet.folder}"
    registry = ModelRegistry(make_config(tmp_path, [spec_text]))
    expected = (f"Model {spec_text!r}: the SPEC names the architecture 'resnet9999', but "
                f"{tiny_resnet.folder / 'config.json'} says 'resnet50d'. Fix: use --model "
                f"resnet50d={tiny_resnet.folder}, or point the SPEC at the folder of resnet9999 weights.")
    assert registry.architecture_problem(spec_text) == expected
    with pytest.raises(ModelLoadError) as refused:
        registry.get(spec_text)
    assert str(refused.value) == expected


def test_a_pretrained_tag_on_the_spec_is_the_same_architecture(tmp_path, tiny_resnet):
    spec_text = f"resnet50d.gluon_in1k={tiny_resnet.folder}"
    registry = ModelRegistry(make_config(tmp_path, [spec_text]))
    assert registry.architecture_problem(spec_text) is None
    assert registry.get(spec_text).labels == LABELS


def test_repeated_class_names_become_unique_labels(tmp_path):
    labels = ["crane", "heron", "crane", "kite", "kite", "kite"]
    model = export_tiny("resnet50d", tmp_path / "birds", 0, RESNET_DATA, labels=labels)
    registry = ModelRegistry(make_config(tmp_path, [folder_spec(model)]))
    assert registry.get(folder_spec(model)).labels == ["crane (0)", "heron", "crane (2)", "kite (3)", "kite (4)",
                                                       "kite (5)"]


def test_imagenet_labels_are_unique():
    from timm.data import ImageNetInfo

    labels = models_module.unique_labels(list(ImageNetInfo("imagenet-1k").label_descriptions()))
    assert len(set(labels)) == 1000
    assert labels[134] == "crane (134)" and labels[517] == "crane (517)"
