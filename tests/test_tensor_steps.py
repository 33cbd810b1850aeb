"""ToTensor and Normalize in numpy: the same values as torchvision's, bit for bit."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

from helpers import random_image
from senet_demo.tensor_steps import PilToNormalizedTensor, with_numpy_tensor_steps

CONFIG = dict(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.875, mean=(0.485, 0.456, 0.406),
              std=(0.229, 0.224, 0.225))


def test_the_same_tensor_as_timms_transform_bit_for_bit():
    timms = create_transform(**CONFIG, is_training=False)
    ours = with_numpy_tensor_steps(timms)
    assert isinstance(ours.transforms[-1], PilToNormalizedTensor)
    assert [type(s) for s in ours.transforms[:-1]] == [type(s) for s in timms.transforms[:-2]]
    for seed, size in enumerate([(146, 110), (300, 512), (224, 224)]):
        picture = random_image(*size, seed=seed)
        expected, got = timms(picture), ours(picture)
        assert got.dtype == torch.float32 and got.is_contiguous()
        assert torch.equal(got, expected)


def test_other_pictures_and_tensors_take_the_original_steps():
    steps = with_numpy_tensor_steps(create_transform(**CONFIG, is_training=False)).transforms[-1]
    grey = Image.fromarray(np.arange(64 * 48, dtype=np.uint8).reshape(48, 64) % 251, "L")
    expected = T.Normalize(CONFIG["mean"][:1], CONFIG["std"][:1])(T.ToTensor()(grey))
    single = PilToNormalizedTensor(T.ToTensor(), T.Normalize(CONFIG["mean"][:1], CONFIG["std"][:1]))
    assert torch.equal(single(grey), expected)  # one channel: torchvision's own steps
    as_tensor = torch.rand(3, 8, 8)
    assert torch.equal(steps(as_tensor), T.Normalize(CONFIG["mean"], CONFIG["std"])(as_tensor))


def test_a_transform_without_those_closing_steps_is_left_as_it_is():
    plain = T.Compose([T.CenterCrop(8), T.ToTensor()])
    assert with_numpy_tensor_steps(plain) is plain
