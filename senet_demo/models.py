"""Load timm models with their own preprocessing and labels; once per process.

``ModelRegistry.get(name)`` loads a model lazily the first time it is asked
for, under a per-model lock, so concurrent first requests load it once. Each
``LoadedModel`` carries the transform built from *its own* pretrained config
(input size, crop_pct, interpolation, mean/std), never one shared by accident.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .config import AppConfig, ModelSpec
from .weights import CONFIG_FILE, LABELS_FILE, ResolvedWeights, resolve

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """Weights were found but could not be turned into a model."""


@dataclass
class LoadedModel:
    """A ready-to-run model with everything needed to feed and read it."""

    spec: ModelSpec
    model: torch.nn.Module  # eval mode, no grads
    transform: Callable  # PIL RGB image -> (3, H, W) tensor, from the model's own config
    data_config: dict  # timm's resolved data config (input_size, crop_pct, mean, std, ...)
    labels: list[str]  # one display name per output class
    weights: ResolvedWeights

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def key(self) -> str:
        """Identity of (model, weights) for caches that outlive the process."""
        return f"{self.name}@{self.weights.identity}"


def load_model(spec: ModelSpec, weights: ResolvedWeights) -> LoadedModel:
    """Build the timm model for ``spec`` and load ``weights`` into it (safetensors only)."""
    import timm
    from timm.data import create_transform, resolve_model_data_config

    try:
        if weights.is_folder:
            model = timm.create_model(f"local-dir:{weights.path}", pretrained=True)
        elif weights.path.suffix == ".safetensors":
            model = _model_from_single_file(spec, weights.path)
        else:  # a timm release file (weights.resolve only returns those): timm reads it with weights_only=True
            model = timm.create_model(spec.arch, pretrained=True, pretrained_cfg_overlay={"file": str(weights.path)})
    except Exception as err:
        raise ModelLoadError(f"Model {spec.name!r}: the weights at {weights.path} do not load: {err}") from err
    model.eval().requires_grad_(False)
    data_config = resolve_model_data_config(model)
    transform = create_transform(**data_config, is_training=False)
    labels = _labels_for(model, weights.path)
    return LoadedModel(spec, model, transform, data_config, labels, weights)


def _model_from_single_file(spec: ModelSpec, file: Path) -> torch.nn.Module:
    import timm
    from safetensors.torch import load_file

    state_dict = load_file(str(file), device="cpu")
    config = _read_json(file.parent / CONFIG_FILE)
    pretrained_cfg = dict(config.get("pretrained_cfg", {}))
    num_classes = config.get("num_classes") or pretrained_cfg.get("num_classes")
    labels = _read_labels(file.parent / LABELS_FILE)
    if num_classes is None and labels:
        num_classes = len(labels)
    if num_classes is None:
        default_cfg = timm.models.get_pretrained_cfg(spec.arch)
        classifier = (default_cfg.classifier if default_cfg else None) or "fc"
        head = state_dict.get(f"{classifier}.weight")
        num_classes = int(head.shape[0]) if head is not None else 1000
    pretrained_cfg["num_classes"] = num_classes
    for key in ("label_names", "label_descriptions"):
        if key in config:
            pretrained_cfg[key] = config[key]
    # timm's exporter records num_classes inside model_args too; one value, the resolved one.
    model_args = {**config.get("model_args", {}), "num_classes": num_classes}
    model = timm.create_model(spec.arch, pretrained=False, pretrained_cfg_overlay=pretrained_cfg, **model_args)
    model.load_state_dict(state_dict, strict=True)
    return model


def _labels_for(model: torch.nn.Module, weights_path: Path) -> list[str]:
    """Display names: labels.txt beside the weights, the config's names, or timm's ImageNet metadata."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    num_classes = model.num_classes
    folder = weights_path if weights_path.is_dir() else weights_path.parent
    cfg = model.pretrained_cfg
    names = list(cfg.get("label_names") or [])
    descriptions = cfg.get("label_descriptions") or []
    if isinstance(descriptions, dict):  # timm stores label name -> description
        descriptions = [descriptions.get(name, name) for name in names]
    own_names = names if names and not all(_WORDNET_ID.fullmatch(str(n)) for n in names) else []
    candidates = [
        _read_labels(folder / LABELS_FILE),
        list(descriptions),
        own_names,  # a fine-tuned model's own classes win over a guess from the class count
    ]
    subset = infer_imagenet_subset(model)
    if subset:
        candidates.append(list(ImageNetInfo(subset).label_descriptions()))
    candidates.append(names)
    for labels in candidates:
        if labels and len(labels) == num_classes:
            return [str(label) for label in labels]
    return [f"class {i}" for i in range(num_classes)]


_WORDNET_ID = re.compile(r"n\d{8}")  # ImageNet label names are WordNet ids; descriptions come from timm


def _read_labels(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def architecture_se_blocks(spec: ModelSpec) -> list:
    """SE blocks of the bare architecture, built on the meta device (no memory, no weights)."""
    import timm

    from .se_blocks import find_se_blocks

    arch, model_args = spec.arch, {}
    if spec.source and not spec.source.startswith("hf-hub:"):
        # the same rule as load_model: a folder's config.json names the architecture; a single file is ARCH
        path = Path(spec.source)
        config = _read_json((path if path.is_dir() else path.parent) / CONFIG_FILE)
        model_args = config.get("model_args", {})
        if path.is_dir():
            arch = config.get("architecture", arch)
    try:
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False, **model_args)
    except Exception:  # an architecture timm cannot build will fail later with a clear message
        return []
    return find_se_blocks(model)


class ModelRegistry:
    """The app's models: loaded lazily, once per process, thread-safely."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.specs: dict[str, ModelSpec] = {spec.name: spec for spec in [*config.models, *config.explain_models]}
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in self.specs}
        self._structure: dict[str, list] = {}

    @property
    def names(self) -> list[str]:
        """The ensemble members, in order."""
        return [spec.name for spec in self.config.models]

    @property
    def all_names(self) -> list[str]:
        """Ensemble members and the extra Explain-tab models."""
        return list(self.specs)

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def se_blocks(self, name: str) -> list:
        """A model's SE blocks from its structure alone: no weights are loaded or downloaded."""
        if name not in self._structure:
            self._structure[name] = architecture_se_blocks(self.specs[name])
        return self._structure[name]

    def get(self, name: str) -> LoadedModel:
        """The loaded model; raises ``WeightsNotFound`` / ``ModelLoadError`` with a user-facing message."""
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        if name not in self.specs:
            raise KeyError(f"Unknown model {name!r}; known: {', '.join(self.specs)}")
        with self._locks[name]:
            if name not in self._loaded:
                spec = self.specs[name]
                weights = resolve(spec, self.config.weights_dir, offline=self.config.offline)
                log.info("Loading %s from %s (%s)", name, weights.path, weights.origin)
                self._loaded[name] = load_model(spec, weights)
        return self._loaded[name]
