"""Helpers for the retrieval tests: tiny random models, small labelled galleries, counting engines.

conftest.py has already pointed HF_HOME at a temporary folder and set
HF_HUB_OFFLINE=1 before this module is imported by a test.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_INPUT = (3, 64, 64)


def export_tiny_resnet(folder: Path, seed: int) -> Path:
    """A random ResNet-D (one block per stage, 10 classes) written as the Hub stores it."""
    import timm
    import torch
    from timm.models import save_for_hf

    torch.manual_seed(seed)
    model = timm.create_model("resnet50d", pretrained=False, layers=[1, 1, 1, 1], num_classes=10).eval()
    with torch.no_grad():  # timm's small head init gives near-uniform log-probabilities; spread them out
        model.fc.weight.normal_(0.0, 0.5)
    save_for_hf(model, str(folder), safe_serialization=True, data_config={"input_size": TINY_INPUT})
    return Path(folder)


def spec_for(folder: Path) -> str:
    return f"resnet50d={folder}"


def services_for(spec: str, root: Path, gallery_dir: Path | None = None, cache_dir: Path | None = None, **kwargs):
    """A fresh ``Services`` (new registry, new engine) whose every path lies under ``root``."""
    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    config = AppConfig.from_specs(
        [spec], offline=True, weights_dir=root / "weights",
        gallery_dir=gallery_dir if gallery_dir is not None else root / "no-gallery",
        feature_cache_dir=cache_dir if cache_dir is not None else root / "features", **kwargs)
    return Services.create(config)


def picture(seed: int, size: tuple[int, int] = (96, 80), tint: tuple[int, int, int] | None = None) -> Image.Image:
    """A deterministic structured picture; ``tint`` shifts its colours (one tint per label)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    freq = 1 + seed % 7
    base = np.stack([np.sin(x * freq / 9.0), np.cos(y * freq / 7.0), np.sin((x + y) / (3.0 + freq))], axis=-1)
    array = 110 + 70 * base + rng.normal(0, 25, size=(height, width, 3))
    if tint is not None:
        array = 0.5 * array + 0.5 * np.asarray(tint)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def image_bytes(image: Image.Image, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buffer.getvalue()


TINTS = [(230, 40, 40), (40, 200, 60), (50, 70, 230), (220, 220, 40)]


def make_gallery(root: Path, per_label: dict[str, int], seed: int = 0) -> Path:
    """``root/<label>/<label>_<i>.jpg``, each label with its own colour tint; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    n = seed * 1000
    for li, (label, count) in enumerate(per_label.items()):
        (root / label).mkdir(exist_ok=True)
        for i in range(count):
            n += 1
            picture(n, tint=TINTS[li % len(TINTS)]).save(root / label / f"{label}_{i}.jpg", quality=92)
    return root


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A zip whose entries have exactly these names (``zipfile`` keeps '..' and absolute names)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


class BatchCounter:
    """Wraps ``engine.run_batch`` on one engine and records the images it was given."""

    def __init__(self, engine):
        from senet_demo.images import content_hash

        self._hash = content_hash
        self._run_batch = engine.run_batch
        self.images: list[str] = []  # content hashes, in call order
        engine.run_batch = self

    def __call__(self, name, images):
        self.images.extend(self._hash(image) for image in images)
        return self._run_batch(name, images)



def subprocess_env(hf_home: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(REPO_ROOT))
    env.pop("SENET_WEIGHTS_DIR", None)
    return env


def retrieve_handlers(services) -> dict:
    """The Retrieve tab's handlers by their event names (on_retrieve, on_metrics, on_upload, on_clear), bound
    to ``services`` as the app binds them: they take an image as Gradio's preprocessing gives it (a path) and
    answer as the tab's handlers do (a gallery as (path, caption) pairs)."""
    import functools

    from senet_demo.ui import retrieve_tab

    return {"on_retrieve": functools.partial(retrieve_tab.retrieve_image, services),
            "on_metrics": functools.partial(retrieve_tab.retrieval_quality, services),
            "on_upload": functools.partial(retrieve_tab.add_uploads, services),
            "on_clear": retrieve_tab.clear_uploads}


def no_progress(*args, **kwargs) -> None:
    """Stands in for gr.Progress when a handler is called outside a Gradio event."""


def gallery_pairs(answer: list) -> list[tuple[str, str]]:
    """(file path, caption) of each item of a Gallery's value as the Retrieve handler returns it."""
    return [(str(path), caption) for path, caption in answer]
