"""The last two steps of a timm eval transform, ToTensor and Normalize, in numpy.

timm's transform ends a photo's preprocessing with torchvision's ``ToTensor`` (uint8 HWC to float CHW
in [0, 1]) and ``Normalize`` (minus the mean, over the std): several small torch operations over one
view, each split over the intra-op threads the forwards use, which costs more in thread hand-offs than
in arithmetic. ``PilToNormalizedTensor`` does the same arithmetic in the same order with numpy, in one
thread, and gives the same values bit for bit (the same float32 operations). Anything but an 8-bit
RGB picture goes through the original steps.

Slated for removal: the saving is small beside a forward, and timm's own transform is the one to
keep (see docs/performance.md); ``models.py`` is its only user.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T


class PilToNormalizedTensor:
    """``ToTensor`` then ``Normalize(mean, std)`` for an RGB PIL picture, computed with numpy."""

    def __init__(self, to_tensor: Callable, normalize: T.Normalize):
        self.original = T.Compose([to_tensor, normalize])
        self.mean = np.asarray(normalize.mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(normalize.std, dtype=np.float32).reshape(-1, 1, 1)

    def __call__(self, picture) -> torch.Tensor:
        if not isinstance(picture, Image.Image) or picture.mode != "RGB" or len(self.mean) != 3:
            return self.original(picture)
        chw = np.asarray(picture).transpose(2, 0, 1)
        values = np.empty(chw.shape, dtype=np.float32)  # C-contiguous, as ToTensor's
        np.divide(chw, np.float32(255), out=values)
        values -= self.mean
        values /= self.std
        return torch.from_numpy(values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def with_numpy_tensor_steps(transform: Callable) -> Callable:
    """``transform`` with its closing ToTensor and Normalize replaced by ``PilToNormalizedTensor``; unchanged
    when it does not end with those two."""
    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], T.ToTensor) or not isinstance(steps[-1], T.Normalize):
        return transform
    return T.Compose(steps[:-2] + [PilToNormalizedTensor(steps[-2], steps[-1])])
