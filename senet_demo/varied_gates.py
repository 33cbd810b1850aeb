"""A random-weight SE model whose gates spread over (0, 1), to design and check the Explain tab offline.

Trained SE weights cannot be downloaded everywhere, and random weights as timm creates them show nothing:
timm zero-initialises the last BN of each residual branch, so an SE block receives only zeros, and every
gate sits at one value for every image. ``randomize`` gives the BN layers non-trivial statistics and the
SE layers large random weights and biases, so the gates spread over (0, 1), as a trained model's do (some
near 0, some saturated near 1). Random features alone make every image's squeeze z nearly the same, so
``follow_images`` then sets each SE block's reducing layer from a few pictures' z, block by block: it
standardises z across the pictures, and the gates come to depend on the image too. Both are seeded: the
same model every time.

``python scripts/varied_gate_model.py --out DIR`` writes one in the Hub's layout, for
``python app.py --offline --model seresnext101_64x4d=DIR``. Its predictions mean nothing; its gates are
for looking at the views.
"""
from __future__ import annotations

import torch
from torch import nn

from .se_blocks import SEBlock, find_se_blocks, se_parts


def randomize(model: nn.Module, seed: int, side: int = 64) -> None:
    """Non-trivial BN statistics, strong random SE layers and a calibrated head, in place.

    ``model`` must be in eval mode: the head is calibrated on one forward pass of ``side``-pixel noise, so
    that its logits have a standard deviation near 2 (confident, but not saturated, probabilities).
    """
    g = torch.Generator().manual_seed(seed + 1000)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    def normal(t, std):
        t.copy_(torch.randn(t.shape, generator=g) * std)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                uniform(module.weight, 0.5, 1.5)
                normal(module.bias, 0.2)
                normal(module.running_mean, 0.2)
                uniform(module.running_var, 0.5, 2.0)
        for module in model.modules():
            parts = se_parts(module)
            if parts is None:
                continue
            for layer in parts[:2]:  # the reducing and the expanding layer
                fan_in = layer.weight[0].numel()
                normal(layer.weight, 1.5 / fan_in ** 0.5)
                normal(layer.bias, 1.5)
        head = model.get_classifier()
        normal(head.weight, 1.0)
        head.bias.zero_()
        logits = model(torch.randn(4, 3, side, side, generator=g))
        head.weight.mul_(2.0 / float(logits.std()))


def follow_images(model: nn.Module, pictures: torch.Tensor, seed: int, gains: tuple[float, float] = (0.3, 3.0)) -> None:
    """Set every SE block's reducing layer from the squeeze z of ``pictures`` (N, 3, H, W), so that its
    bottleneck standardises z across them: W1 = gain W / std(z), b1 = -W1 mean(z), W random. The gates then
    move with the image, not only with the channel. The gain grows with depth, from ``gains[0]`` to
    ``gains[1]``, as the paper's trained models behave: early blocks alike for every image, later ones
    image-specific.

    One forward pass: each block's layer is set by a pre-hook just before it runs, so the blocks after it
    see its new gates."""
    g = torch.Generator().manual_seed(seed + 2000)
    blocks = find_se_blocks(model)

    def standardise(block: SEBlock, gain: float):
        def hook(module, inputs):
            z = inputs[0].detach().double().flatten(1)  # (N, C)
            mean, std = z.mean(0), z.std(0)
            std = std.clamp_min(float(std.median()) + 1e-6)  # a channel that barely varies is not blown up
            weight = torch.randn(block.reduced, block.channels, generator=g, dtype=torch.float64)
            weight = weight * gain / block.channels ** 0.5 / std
            module.weight.copy_(weight.reshape(module.weight.shape).to(module.weight.dtype))
            module.bias.copy_((-(weight @ mean)).to(module.bias.dtype))
        return hook

    steps = max(1, len(blocks) - 1)
    handles = [se_parts(model.get_submodule(b.path))[0].register_forward_pre_hook(
        standardise(b, gains[0] + (gains[1] - gains[0]) * i / steps)) for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(pictures)
    finally:
        for handle in handles:
            handle.remove()
