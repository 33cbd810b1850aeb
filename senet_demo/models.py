"""Load timm models with their own preprocessing and labels; once per process.

``ModelRegistry.get(name)`` loads a model lazily the first time it is asked
for, under a per-model lock, so concurrent first requests load it once. Each
``LoadedModel`` carries the transform built from *its own* pretrained config
(input size, crop_pct, interpolation, mean/std), never one shared by accident.

``check(spec, weights)`` finds what is wrong with a checkpoint without loading
it (see ``checkpoint.py``); a load that fails is reported the same way.
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

from .checkpoint import (
    ModelLoadError,
    architecture_fix,
    compare_shapes,
    labels_mismatch,
    read_header,
    refetch_fix,
    release_failure,
    unknown_architecture,
)
from .config import AppConfig, ModelSpec
from .images import WORKING_SIDE
from .weights import CONFIG_FILE, LABELS_FILE, ResolvedWeights, resolve

__all__ = ["LoadedModel", "ModelLoadError", "ModelRegistry", "check", "friendly_name", "load_model",
           "training_data"]

log = logging.getLogger(__name__)


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
    """Build the timm model for ``spec`` and load ``weights`` into it (safetensors, or a timm release
    file read with ``weights_only=True``); a failure is a ``ModelLoadError`` naming the problem and the fix."""
    from timm.data import create_transform, resolve_model_data_config

    try:
        model = _create_from_checkpoint(spec, weights) or _create(spec, weights, pretrained=True)
    except ModelLoadError:
        raise
    except Exception as err:
        raise ModelLoadError(_failure_message(spec, weights, err)) from err
    model.eval().requires_grad_(False)
    data_config = resolve_model_data_config(model)
    transform = create_transform(**data_config, is_training=False)
    side = resize_side(transform)
    if side is not None and side > WORKING_SIDE:
        log.warning("%s resizes pictures to %d px on their shorter side, more than the %d px that large photos "
                    "are decoded at (images.WORKING_SIDE): a photo whose shorter side is %d px or more is "
                    "reduced to between %d and %d px first, and may reach this model enlarged again",
                    spec.name, side, WORKING_SIDE, 2 * WORKING_SIDE, WORKING_SIDE, 2 * WORKING_SIDE - 1)
    labels = _labels_for(spec, model, weights.path)
    return LoadedModel(spec, model, transform, data_config, labels, weights)


def resize_side(transform: Callable) -> int | None:
    """The shorter side a picture is resized to by ``transform``'s first resize step (torchvision's Resize or
    timm's ResizeKeepRatio; None without one)."""
    for step in getattr(transform, "transforms", []):
        size = getattr(step, "size", None) if "Resize" in type(step).__name__ else None
        if size is not None:
            return int(size) if isinstance(size, int) else int(min(size))
    return None


def check(spec: ModelSpec, weights: ResolvedWeights) -> None:
    """Check the weights against the architecture without loading a tensor: timm knows the architecture,
    the safetensors header is readable, its tensors' names and shapes are the architecture's, and a
    labels.txt has one line per class. Raises ``ModelLoadError`` with the first problem."""
    problem = architecture_problem(spec)
    if problem:
        raise ModelLoadError(problem)
    if not _is_safetensors(weights):
        return  # a timm release file: only torch.load(weights_only=True) can read it, which reads it all
    found = read_header(spec.name, weights.weights_file, _refetch_fix(spec, weights))
    folder_config = weights.path / CONFIG_FILE if weights.is_folder else None
    try:
        with torch.device("meta"):  # shapes only: no memory, no weights
            model = _create(spec, weights, pretrained=False, header=found)
    except ModelLoadError:
        raise
    except Exception as err:  # e.g. model_args timm does not take
        raise ModelLoadError(f"Model {spec.name!r}: timm cannot build its architecture ({type(err).__name__}: "
                             f"{err}). {architecture_fix(folder_config)}") from err
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    arch = model.pretrained_cfg.get("architecture") or spec.arch
    compare_shapes(spec.name, weights.weights_file, arch, expected, found, architecture_fix(folder_config))
    _labels_file_problem(spec, model.num_classes, weights.path)


def _is_safetensors(weights: ResolvedWeights) -> bool:
    return weights.is_folder or weights.path.suffix == ".safetensors"


def _refetch_fix(spec: ModelSpec, weights: ResolvedWeights) -> str:
    return refetch_fix(spec, weights.weights_file, weights.origin, hub=weights.repo_id is not None)


def _create(spec: ModelSpec, weights: ResolvedWeights, pretrained: bool, header: dict | None = None) -> torch.nn.Module:
    """The one rule for which model a SPEC builds: a folder's config.json; a single file's ARCH (with a
    config.json or labels.txt beside it); a release file's ARCH."""
    import timm

    if weights.is_folder:
        # A folder the user named must hold the SPEC's architecture (also a readable message if config.json is
        # broken); a Hub repo's folder is the one timm lists for the name.
        mismatch = _architecture_mismatch(spec, weights.path) if weights.origin == "local" else None
        _folder_config(spec, weights.path)
        if mismatch:
            raise ModelLoadError(mismatch)
        return timm.create_model(f"local-dir:{weights.path}", pretrained=pretrained)
    if weights.path.suffix != ".safetensors":  # a timm release file: timm reads it with weights_only=True
        return timm.create_model(spec.arch, pretrained=pretrained, pretrained_cfg_overlay={"file": str(weights.path)})
    file = weights.path
    if header is None:
        header = read_header(spec.name, file, _refetch_fix(spec, weights))
    pretrained_cfg, model_args = _single_file_recipe(spec, file, header)
    model = timm.create_model(spec.arch, pretrained=False, pretrained_cfg_overlay=pretrained_cfg, **model_args)
    if pretrained:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(file), device="cpu"), strict=True)
    return model


def _create_from_checkpoint(spec: ModelSpec, weights: ResolvedWeights) -> torch.nn.Module | None:
    """The model with the checkpoint's tensors as its own, without the random initialisation that
    loading would overwrite (most of a large model's load time: about 2 s of the default ensemble's
    4 s on 2 cores). Taken only for a timm-format safetensors checkpoint whose names and shapes are
    exactly the architecture's, for an architecture whose every tensor is in its state_dict (no tied
    weights, no non-persistent buffers) and whose pretrained config asks for no label offset. Anything
    else returns None, and the caller takes timm's usual path (which also applies a model's checkpoint
    filter, for checkpoints in another layout: their names differ, so they never get here)."""
    if not _is_safetensors(weights):
        return None
    from safetensors.torch import load_file

    try:
        with torch.device("meta"):  # the structure only: no memory, no initialisation
            model = _create(spec, weights, pretrained=False)
    except Exception:  # the usual path reports it
        return None
    if (model.pretrained_cfg or {}).get("label_offset"):
        return None
    expected = model.state_dict()
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    if sorted(name for name, _ in named) != sorted(expected) or len({id(t) for _, t in named}) != len(named):
        return None  # non-persistent buffers or tied weights: state the checkpoint does not hold one by one
    state = load_file(str(weights.weights_file), device="cpu")
    for key, value in expected.items():  # BatchNorm's step counter: PyTorch's loader fills it in too
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=value.dtype)
    if set(state) != set(expected) or any(state[k].shape != v.shape for k, v in expected.items()):
        return None
    # copies: the loaded tensors map the file, which must not change under a running model (nor vanish: SIGBUS)
    model.load_state_dict({k: state[k].to(v.dtype, copy=True) for k, v in expected.items()}, strict=True, assign=True)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]) or any(
            isinstance(value, torch.Tensor) and value.is_meta for module in model.modules() for value in vars(module).values()):
        return None  # state kept outside parameters and buffers (computed in __init__): build it the usual way
    return model


def _single_file_recipe(spec: ModelSpec, file: Path, header: dict) -> tuple[dict, dict]:
    """pretrained_cfg and model args for a single .safetensors file; the class count from config.json,
    else from the checkpoint's own head."""
    import timm

    config = _read_json(file.parent / CONFIG_FILE, spec)
    pretrained_cfg = dict(config.get("pretrained_cfg", {}))
    num_classes = config.get("num_classes") or pretrained_cfg.get("num_classes")
    if num_classes is None:
        default_cfg = timm.models.get_pretrained_cfg(spec.arch)
        classifier = (default_cfg.classifier if default_cfg else None) or "fc"
        head = header.get(f"{classifier}.weight")
        num_classes = int(head[0]) if head is not None else 1000
    pretrained_cfg["num_classes"] = num_classes
    for key in ("label_names", "label_descriptions"):
        if key in config:
            pretrained_cfg[key] = config[key]
    # timm's exporter records num_classes inside model_args too; one value, the resolved one.
    return pretrained_cfg, {**config.get("model_args", {}), "num_classes": num_classes}


def _failure_message(spec: ModelSpec, weights: ResolvedWeights, err: Exception) -> str:
    """The most specific message for a load that failed: what ``check`` finds, or the error itself."""
    try:
        check(spec, weights)
    except ModelLoadError as found:
        return str(found)
    except Exception:  # the check itself failed: fall back to the original error
        pass
    fix = _refetch_fix(spec, weights)
    if not _is_safetensors(weights):
        return release_failure(spec.name, weights.path, err, fix)
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"Model {spec.name!r}: the weights at {weights.path} do not load ({text}). {fix}"


def _labels_file_problem(spec: ModelSpec, num_classes: int, weights_path: Path) -> None:
    """A labels.txt beside the weights must name every class; one of another length is an error."""
    folder = weights_path if weights_path.is_dir() else weights_path.parent
    lines = _read_labels(folder / LABELS_FILE)
    if lines and len(lines) != num_classes:
        raise ModelLoadError(labels_mismatch(spec.name, folder / LABELS_FILE, len(lines), num_classes))


def _labels_for(spec: ModelSpec, model: torch.nn.Module, weights_path: Path) -> list[str]:
    """Display names: labels.txt beside the weights, the config's names, or timm's ImageNet metadata."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    num_classes = model.num_classes
    _labels_file_problem(spec, num_classes, weights_path)
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
            return unique_labels([str(label) for label in labels])
    return [f"class {i}" for i in range(num_classes)]


def unique_labels(labels: list[str]) -> list[str]:
    """Each repeated name gets its class index ("crane (134)", "crane (517)"): a label is a key wherever the
    classes are shown (Gradio's Label merges equal keys), so two classes must never share one."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [f"{label} ({i})" if counts[label] > 1 else label for i, label in enumerate(labels)]


_WORDNET_ID = re.compile(r"n\d{8}")  # ImageNet label names are WordNet ids; descriptions come from timm


def _read_labels(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read_json(path: Path, spec: ModelSpec | None = None) -> dict:
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        config = err
    if not isinstance(config, dict):
        name = spec.name if spec else path.parent.name
        raise ModelLoadError(f"Model {name!r}: {path} is not a readable JSON object ({config}). Fix: restore it "
                             f"(`python -m senet_demo download {name}` for a Hub model, timm.models.save_for_hf for "
                             f"your own).")
    return config


def _folder_config(spec: ModelSpec, folder: Path) -> dict:
    return _read_json(folder / CONFIG_FILE, spec)


def _architecture_mismatch(spec: ModelSpec, folder: Path) -> str | None:
    """Why a folder's config.json and the SPEC's ARCH disagree (the model built would not be the one named), or None.

    A pretrained tag on either side (``resnet50d.gluon_in1k``) does not change the architecture."""
    arch = _folder_config(spec, folder).get("architecture")
    if not arch or str(arch).split(".")[0] == spec.arch.split(".")[0]:
        return None
    return (f"Model {spec.name!r}: the SPEC names the architecture {spec.arch!r}, but {folder / CONFIG_FILE} says "
            f"{arch!r}. Fix: use --model {str(arch).split('.')[0]}={spec.source}, or point the SPEC at the folder "
            f"of {spec.arch} weights.")


def architecture_problem(spec: ModelSpec) -> str | None:
    """Why timm cannot build the SPEC's architecture (an unknown name, a broken config.json, a config.json
    that names another architecture than the SPEC), or None."""
    arch, where = spec.arch, "the SPEC"
    if spec.source and not spec.source.startswith("hf-hub:"):
        path = Path(spec.source)
        if path.is_dir():
            try:
                mismatch = _architecture_mismatch(spec, path)
                arch = _folder_config(spec, path).get("architecture", arch)
            except ModelLoadError as err:
                return str(err)
            if mismatch:
                return mismatch
            where = f"'architecture' of {path / CONFIG_FILE}"
    return unknown_architecture(spec.name, arch, where)


def architecture_se_blocks(spec: ModelSpec) -> list:
    """SE blocks of the bare architecture, built on the meta device (no memory, no weights)."""
    import timm

    from .se_blocks import find_se_blocks

    arch, model_args = spec.arch, {}
    try:
        if spec.source and not spec.source.startswith("hf-hub:"):
            # the same rule as load_model: a folder's config.json names the architecture; a single file is ARCH
            path = Path(spec.source)
            config = _read_json((path if path.is_dir() else path.parent) / CONFIG_FILE)
            model_args = config.get("model_args", {})
            if path.is_dir():
                arch = config.get("architecture", arch)
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False, **model_args)
    except Exception:  # an architecture timm cannot build: architecture_problem() says why
        return []
    return find_se_blocks(model)


# Names a visitor reads, for the architectures the app is started with most; the timm IDs stay in the Models
# panel. Any other architecture is shown by its timm name.
FRIENDLY_NAMES = {
    "resnet152d": "ResNet-152",
    "seresnext101_64x4d": "SE-ResNeXt-101",
    "seresnext101_32x4d": "SE-ResNeXt-101 (32x4d)",
    "seresnext50_32x4d": "SE-ResNeXt-50",
    "seresnet50": "SE-ResNet-50",
    "seresnet152d": "SE-ResNet-152-D",
    "legacy_seresnet152": "SE-ResNet-152",
    "legacy_seresnet50": "SE-ResNet-50",
    "legacy_senet154": "SENet-154",
    "resnet50d": "ResNet-50",
    "resnet50": "ResNet-50",
    "tf_efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_b0": "EfficientNet-B0",
}
TRAINING_DATA = {"in1k": "ImageNet", "in22k": "ImageNet-22k", "in21k": "ImageNet-21k", "in22k_ft_in1k": "ImageNet"}


def friendly_name(spec: ModelSpec) -> str:
    """The model's name in words ("SE-ResNeXt-101"), or its timm architecture when it has none."""
    arch, _, _ = spec.arch.partition(".")
    return FRIENDLY_NAMES.get(arch, arch)


def training_data(spec: ModelSpec) -> str | None:
    """What the weights were trained on, from the pretrained tag ("gluon_in1k": ImageNet), or None (a folder's
    or a file's own weights, whose classes come with them)."""
    _, _, tag = spec.arch.partition(".")
    if spec.source is not None or not tag:
        return None
    return next((name for suffix, name in sorted(TRAINING_DATA.items(), key=lambda kv: -len(kv[0]))
                 if tag == suffix or tag.endswith("_" + suffix)), None)


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

    def friendly_names(self) -> dict[str, str]:
        """Each model's name in words, unique: two models of one architecture keep their SPEC's label."""
        words = {name: friendly_name(spec) for name, spec in self.specs.items()}
        shared = {w for w in words.values() if list(words.values()).count(w) > 1}
        return {name: self.specs[name].label if w in shared else w for name, w in words.items()}

    def architecture_problem(self, name: str) -> str | None:
        """Why timm cannot build this model's architecture, or None; from the SPEC alone."""
        return architecture_problem(self.specs[name])

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
