"""Test-time augmentation views and the ensemble's probability averaging.

TTA views are built from each model's own timm eval transform
(Resize -> CenterCrop -> ToTensor -> Normalize): "flip" adds the mirrored
crop; "tencrop" replaces the centre crop by the four corner crops plus the
centre crop, and their mirrors (ten views), as in the ten-crop evaluation of
the ResNet/SENet papers. The ensemble is the weighted mean of the members'
softmax probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

from .config import TTA_CHOICES


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    prob: float

    def as_dict(self) -> dict:
        return {"label": self.label, "index": self.index, "prob": self.prob}


def tta_batch(transform: Callable, image: Image.Image, tta: str = "none") -> torch.Tensor:
    """The views of ``image`` for one model, stacked: (V, 3, H, W); V = 1, 2 or 10."""
    if tta not in TTA_CHOICES:
        raise ValueError(f"Unknown TTA {tta!r}; choose one of {', '.join(TTA_CHOICES)}.")
    if tta == "none":
        return transform(image).unsqueeze(0)
    if tta == "flip":
        view = transform(image)
        return torch.stack([view, view.flip(-1)])
    before_crop, crop_size, after_crop = _split_at_center_crop(transform)
    resized = before_crop(image)
    crops = F.ten_crop(resized, crop_size)  # 5 crops, then the same 5 of the mirrored image
    return torch.stack([after_crop(crop) for crop in crops])


def model_view(transform: Callable, image: Image.Image) -> Image.Image:
    """The picture the model sees (its own resize and centre crop), before conversion to a tensor."""
    before_crop, crop_size, _ = _split_at_center_crop(transform)
    return T.CenterCrop(crop_size)(before_crop(image))


def _split_at_center_crop(transform: Callable) -> tuple[Callable, list[int], Callable]:
    steps = list(getattr(transform, "transforms", []))
    for i, step in enumerate(steps):
        if isinstance(step, T.CenterCrop):
            return T.Compose(steps[:i]), list(step.size), T.Compose(steps[i + 1:])
    raise ValueError("Ten-crop and the model's view need a transform with a CenterCrop step.")


def combine(member_probs: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Weighted mean of the members' probability vectors; weights are normalised to sum to 1."""
    if not member_probs:
        raise ValueError("No member probabilities to combine.")
    names = list(member_probs)
    sizes = {member_probs[n].shape for n in names}
    if len(sizes) != 1:
        raise ValueError(f"Members predict different numbers of classes: {sorted(s[0] for s in sizes)}.")
    w = np.array([float((weights or {}).get(n, 1.0)) for n in names], dtype=np.float64)
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("Ensemble weights must be non-negative and not all zero.")
    stacked = np.stack([np.asarray(member_probs[n], dtype=np.float64) for n in names])  # (M, K)
    return (w / w.sum()) @ stacked


def top_k(probs: np.ndarray, labels: list[str], k: int = 5) -> list[Prediction]:
    """The ``k`` most probable classes, best first."""
    k = max(1, min(int(k), len(probs)))
    order = np.argsort(-probs, kind="stable")[:k]
    return [Prediction(labels[i], int(i), float(probs[i])) for i in order]
