"""Shared test setup: an isolated, offline Hugging Face home and two tiny timm models on disk.

The environment is set at import time, before anything imports
``huggingface_hub`` (which reads ``HF_HOME`` and ``HF_HUB_OFFLINE`` once, on
import): the tests never touch the network and never read or write the
user's own cache. Every temporary file of the run, pytest's own included, is
made under that home and removed with it when the run ends (gradio_client
leaves an empty folder in the temporary directory for each file it downloads).
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="senet-tests-hf-")
atexit.register(shutil.rmtree, _HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
for _var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE", "HF_TOKEN",
             "SENET_WEIGHTS_DIR"):
    os.environ.pop(_var, None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["SENET_ENGINE"] = "torch"  # eager unless a test asks for ONNX Runtime (tests/engine/test_onnx_engine.py)
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["GRADIO_TEMP_DIR"] = os.path.join(_HF_HOME, "gradio")
os.environ["TMPDIR"] = tempfile.tempdir = os.path.join(_HF_HOME, "tmp")  # this process's and its children's
os.makedirs(tempfile.tempdir)

assert "huggingface_hub" not in sys.modules, "huggingface_hub was imported before the test environment was set"

import pytest  # noqa: E402

from fixtures import RESNET_DATA, SENET_DATA, export_tiny, folder_spec, make_config, picture  # noqa: E402


@pytest.fixture(scope="session")
def tiny_resnet(tmp_path_factory):
    """ResNet-D (the family of the product's ResNet-152 v1d), one block per stage, no SE."""
    return export_tiny("resnet50d", tmp_path_factory.mktemp("tiny") / "resnet50d", 0, RESNET_DATA)


@pytest.fixture(scope="session")
def tiny_senet(tmp_path_factory):
    """SE-ResNeXt-D (the family of the product's SE-ResNeXt-101), one block per stage."""
    return export_tiny("seresnext26d_32x4d", tmp_path_factory.mktemp("tiny") / "seresnext26d", 1, SENET_DATA)


@pytest.fixture(scope="session")
def tiny_services(tmp_path_factory, tiny_resnet, tiny_senet):
    """Services over the two tiny models; each is loaded once for the whole session."""
    from senet_demo.services import Services

    root = tmp_path_factory.mktemp("services")
    return Services.create(make_config(root, [folder_spec(tiny_resnet), folder_spec(tiny_senet)]))


@pytest.fixture(scope="session")
def tiny_registry(tiny_services):
    return tiny_services.registry


@pytest.fixture(scope="session")
def resnet_name(tiny_resnet) -> str:
    return folder_spec(tiny_resnet)


@pytest.fixture(scope="session")
def senet_name(tiny_senet) -> str:
    return folder_spec(tiny_senet)


@pytest.fixture
def engine(tiny_registry):
    """A fresh engine (empty cache, zero counters) over the already loaded tiny models."""
    from senet_demo.engine import Engine

    return Engine(tiny_registry)


@pytest.fixture(scope="session")
def photo():
    return picture(0, (146, 110))


@pytest.fixture(scope="session")
def photo_png(tmp_path_factory, photo):
    path = tmp_path_factory.mktemp("images") / "photo.png"
    photo.save(path)
    return path
