"""Helpers for the tests: tiny timm models on disk, configs, images, HF cache layout, pickle traps."""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
HF_HOME = Path(os.environ["HF_HOME"])  # set by conftest.py before anything imports huggingface_hub
HF_HUB_CACHE = HF_HOME / "hub"

# Six classes, like a fine-tuned landmark model; both tiny models share them so they ensemble.
LABELS = ["Eiffel Tower", "Big Ben", "Colosseum", "Taj Mahal", "Golden Gate Bridge", "Sydney Opera House"]

# Deliberately different preprocessing per model: a shared transform would show up in the tests.
RESNET_DATA = dict(input_size=(3, 64, 64), crop_pct=0.875, interpolation="bilinear",
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
SENET_DATA = dict(input_size=(3, 80, 80), crop_pct=1.0, interpolation="bicubic",
                  mean=(0.5, 0.5, 0.5), std=(0.25, 0.3, 0.35))


@dataclass(frozen=True)
class TinyModel:
    """A random-weight timm model written as the Hub stores it (config.json + model.safetensors)."""

    arch: str  # the timm architecture of the weights
    layers: tuple[int, ...]
    folder: Path
    labels: list[str]
    data_config: dict  # the preprocessing it was exported with

    @property
    def weights_file(self) -> Path:
        return self.folder / "model.safetensors"

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(self.data_config["input_size"][1:])

    def copy_to(self, folder: Path) -> Path:
        """The same two files in another folder (e.g. weights/ or an HF cache snapshot)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(self.folder / name, folder / name)
        return folder


def export_tiny(arch: str, folder: Path, seed: int, data_config: dict, labels=LABELS, **model_args) -> TinyModel:
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    layers = model_args.pop("layers", [1, 1, 1, 1])
    model = timm.create_model(arch, pretrained=False, layers=layers, num_classes=len(labels), **model_args).eval()
    _decisive(model, seed)
    save_for_hf(model, str(folder), safe_serialization=True, data_config=dict(data_config),
                model_config={"label_names": list(labels)})
    return TinyModel(arch, tuple(layers), folder, list(labels), dict(data_config))


def _decisive(model: torch.nn.Module, seed: int) -> None:
    """Random init gives near-uniform softmax; a larger head makes the top classes well separated."""
    generator = torch.Generator().manual_seed(seed + 100)
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.5)


def folder_spec(model: TinyModel) -> str:
    return f"{model.arch}={model.folder}"


def make_config(root: Path, specs: list[str], **kwargs):
    """An offline AppConfig whose every path lies under ``root`` (no repo gallery, no user cache)."""
    from senet_demo.config import AppConfig

    kwargs.setdefault("offline", True)
    kwargs.setdefault("weights_dir", root / "weights")
    kwargs.setdefault("gallery_dir", root / "no-gallery")
    if "feature_cache_dir" in AppConfig.__dataclass_fields__:
        kwargs.setdefault("feature_cache_dir", root / "features")
    return AppConfig.from_specs(specs, **kwargs)


def random_image(width: int = 146, height: int = 110, seed: int = 0) -> Image.Image:
    """A deterministic noisy RGB picture with structure (so crops and mirrors differ)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 64 * 4], axis=-1)
    noise = rng.integers(0, 60, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def file_data(path) -> dict:
    """A file input's value as Gradio passes it to a model event (registered with ``preprocess=False``)."""
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def write_hf_cache(repo_id: str, model: TinyModel, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """The Hugging Face cache layout, by hand: refs/main -> snapshots/<commit>/files."""
    repo = HF_HUB_CACHE / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return model.copy_to(repo / "snapshots" / commit)


def remove_hf_cache(repo_id: str) -> None:
    shutil.rmtree(HF_HUB_CACHE / f"models--{repo_id.replace('/', '--')}", ignore_errors=True)


class _Trap:
    """Unpickling this object creates ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_trap(path: Path, marker: Path) -> Path:
    """Write a pickle at ``path`` whose loading (with full unpickling) would create ``marker``."""
    path.write_bytes(pickle.dumps({"state_dict": _Trap(marker)}))
    return path


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
