"""Configuration as data: model SPECs, the default ensemble, limits and paths.

This is the one place where defaults live. Everything else receives an
``AppConfig`` (or a ``ModelSpec``) instead of reading globals.

A model SPEC is ``ARCH`` or ``ARCH=SOURCE``:

* ``ARCH`` — a timm pretrained name such as ``resnet152d.gluon_in1k``; weights
  come from the Hugging Face Hub repo that timm lists for it.
* ``ARCH=hf-hub:org/name`` — any Hub repo in timm's layout.
* ``ARCH=/path/to/folder`` — a folder with ``config.json`` + ``model.safetensors``
  (what ``huggingface_hub.snapshot_download(local_dir=...)`` writes).
* ``ARCH=/path/to/file.safetensors`` — a single weights file; labels from a
  ``config.json`` or ``labels.txt`` beside it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .i18n import Message

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = Path(os.environ.get("SENET_WEIGHTS_DIR", REPO_ROOT / "weights"))
GALLERY_DIR = REPO_ROOT / "gallery"
QUERIES_DIR = REPO_ROOT / "queries"

# The default ensemble: gluon ResNet-152 v1d and gluon SE-ResNeXt-101 64x4d.
DEFAULT_MODELS: tuple[str, ...] = (
    "resnet152d.gluon_in1k",
    "seresnext101_64x4d.gluon_in1k",
)

TTA_CHOICES: tuple[str, ...] = ("none", "flip", "tencrop")
ENGINE_CHOICES: tuple[str, ...] = ("auto", "torch", "onnx")  # the forward backend: see engine.py


class SpecError(ValueError):
    """A model SPEC string that cannot be understood."""


@dataclass(frozen=True)
class ModelSpec:
    """One model to load: a timm architecture and where its weights come from."""

    arch: str  # timm model name, with or without a pretrained tag
    source: str | None = None  # None | "hf-hub:org/name" | local folder | .safetensors file

    @property
    def name(self) -> str:
        """Display name, also the key of the model everywhere in the app."""
        if self.source is None:
            return self.arch
        return f"{self.arch}={self.source}"

    @property
    def label(self) -> str:
        """Short name for the UI: the architecture, and the folder or repo the weights come from."""
        if self.source is None:
            return self.arch
        where = self.source[len("hf-hub:"):] if self.source.startswith("hf-hub:") else Path(self.source).name
        return self.arch if where == self.arch else f"{self.arch} ({where})"

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """Parse ``ARCH`` or ``ARCH=SOURCE``; raise ``SpecError`` with the reason."""
        text = text.strip()
        if not text:
            raise SpecError("Empty model SPEC.")
        arch, sep, source = (part.strip() for part in text.partition("="))
        if not arch or any(c in arch for c in "/\\ :"):
            raise SpecError(f"Bad architecture in SPEC {text!r}: expected a timm model name such as resnet50d.")
        if sep and not source:
            raise SpecError(f"SPEC {text!r} has '=' but no SOURCE after it.")
        org, _, repo = source.removeprefix("hf-hub:").partition("/")
        if source.startswith("hf-hub:") and not (org and repo and "/" not in repo):
            raise SpecError(f"Bad Hub repo in SPEC {text!r}: expected hf-hub:org/name.")
        return cls(arch=arch, source=source or None)


@dataclass(frozen=True)
class Limits:
    """Bounds on what a visitor can send; every upload path checks these."""

    max_image_bytes: int = 20 * 1024 * 1024  # one uploaded image file
    max_image_pixels: int = 40_000_000  # decoded width * height (decompression bombs)
    min_image_side: int = 8  # smaller images carry nothing to classify
    # longer side / shorter side. A model resizes the shorter side to its input size and keeps the ratio, so
    # this bounds the pixels every forward's resize makes (ratio x side^2), whatever the picture's size.
    max_aspect_ratio: float = 10.0
    max_upload_files: int = 200  # images per gallery upload (files or zip members)
    max_upload_total_bytes: int = 200 * 1024 * 1024  # uncompressed total of one upload
    # pixels decoded for one upload, summed from the files' headers before any is decoded (a JPEG counts at
    # the reduced size it is decoded at): bounds the decoding work one upload costs the shared server
    max_upload_pixels: int = 300_000_000
    max_session_bytes: int = 100 * 1024 * 1024  # all of one visitor's uploaded files kept at once
    result_cache_entries: int = 256  # forward-pass results kept in the LRU
    upload_session_ttl_s: int = 2 * 3600  # a visitor's uploads are deleted this long after their last change


MAX_RESULTS = 1000  # the most results (top-k) one request may ask for


class InputError(ValueError):
    """A number in a request that is not finite or out of its range; the message is for the visitor (an
    ``i18n.Message``: English as a string, Korean through ``i18n.render``)."""


def member_weight(name: str, value) -> float:
    """An ensemble member's weight, a finite number from 0 to 1 (a NaN would make every average NaN)."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = float("nan")
    if isinstance(value, bool) or not 0.0 <= weight <= 1.0:  # False for NaN too
        raise InputError(Message("input.weight", name=name, value=repr(value)))
    return weight


def result_count(value, what: str | None = None, maximum: int = MAX_RESULTS) -> int:
    """How many results to return: a whole number from 1 to ``maximum`` (5.0 from a slider is 5). ``what``
    names the number in the message (a ``Message``, to be shown in Korean too); "The number of results" by
    default."""
    try:
        count = float(value)
    except (TypeError, ValueError):
        count = float("nan")
    if isinstance(value, bool) or not (1 <= count <= maximum and count == int(count)):
        raise InputError(Message("input.count", what=what or Message("input.count.results"), maximum=maximum,
                                 value=repr(value)))
    return int(count)


def _int_from_env(name: str) -> int:
    text = os.environ.get(name, "").strip()
    try:
        value = int(text) if text else 0
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a whole number; set it to 1 or more, or unset it.") from None
    if text and value < 1:
        raise ValueError(f"{name}={text!r} must be 1 or more; set it to 1 or more, or unset it.")
    return value


def environment_problems() -> list[str]:
    """What is wrong with the SENET_* environment variables, one line each; checked at start, before any work."""
    problems = []
    engine = os.environ.get("SENET_ENGINE")
    if engine is not None and engine not in ENGINE_CHOICES:
        problems.append(f"SENET_ENGINE={engine!r} is not an engine; set it to one of {', '.join(ENGINE_CHOICES)}, "
                        f"or unset it.")
    try:
        _int_from_env("SENET_INFERENCE_WORKERS")
    except ValueError as err:
        problems.append(str(err))
    return problems


def _cpu_count() -> int:
    """CPUs this process may run on (a container's or taskset's share, not the whole host)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class QueueSettings:
    """How the Gradio queue shares the CPU between visitors (a seminar room: dozens at once)."""

    # Forwards running at once across the whole app (every tab's model-running events share one pool).
    # One at a time, using every core: a conv net's forward parallelises inside each operator, so a lone
    # visitor gets the fastest answer; a room clicking at once waits in line with its queue position shown
    # (docs/operations.md). More parallel forwards than cores would only add contention.
    # SENET_INFERENCE_WORKERS overrides; each forward then gets cores / workers threads.
    inference_workers: int = field(default_factory=lambda: _int_from_env("SENET_INFERENCE_WORKERS") or 1)
    # Each cheap event (model switch, session uploads, clearing) runs this many at once, in its own group,
    # so it never waits behind a forward.
    ui_concurrency: int = 8
    # Gallery uploads checked at once: each may hold up to Limits.max_upload_total_bytes while it is read.
    upload_concurrency: int = 1
    # Events waiting in the queue; beyond that a visitor is told at once that the queue is full, instead of
    # waiting behind an unbounded backlog (and the server holding every waiting upload in memory).
    max_size: int = 64

    def __post_init__(self):
        if self.inference_workers < 1 or self.ui_concurrency < 1 or self.max_size < 1:
            raise ValueError(f"Queue settings must be positive: {self}")

    @property
    def threads_per_forward(self) -> int:
        """Intra-op threads per forward, so that the concurrent forwards together use each CPU once."""
        return max(1, _cpu_count() // self.inference_workers)


@dataclass
class AppConfig:
    """Everything the app and the CLI need to run."""

    models: list[ModelSpec] = field(default_factory=lambda: [ModelSpec.parse(m) for m in DEFAULT_MODELS])
    explain_models: list[ModelSpec] = field(default_factory=list)  # extra SE models for the Explain tab only
    offline: bool = False  # never touch the network; only weights/ and the HF cache
    weights_dir: Path = WEIGHTS_DIR
    gallery_dir: Path = GALLERY_DIR
    feature_cache_dir: Path | None = None  # stored gallery features; None: beside the Hugging Face cache
    limits: Limits = field(default_factory=Limits)
    # "auto" (ONNX Runtime where installed and validated, else eager) | "torch" | "onnx"; env SENET_ENGINE
    engine: str = field(default_factory=lambda: os.environ.get("SENET_ENGINE", "auto"))
    queue: QueueSettings = field(default_factory=QueueSettings)

    def __post_init__(self):
        if self.engine not in ENGINE_CHOICES:
            raise ValueError(f"Unknown engine {self.engine!r} (from --engine or SENET_ENGINE); "
                             f"choose one of {', '.join(ENGINE_CHOICES)}.")

    @classmethod
    def from_specs(cls, specs: list[str] | None, explain_specs: list[str] | None = None, **kwargs) -> "AppConfig":
        if specs:
            kwargs["models"] = [ModelSpec.parse(s) for s in specs]
        if explain_specs:
            kwargs["explain_models"] = [ModelSpec.parse(s) for s in explain_specs]
        return cls(**kwargs)
