"""Statistics of SE excitations for the Explain tab: pure functions on arrays.

Inputs are ``Outputs.excitations`` dicts (SE_s_b -> (C,) vector) and the
model's ``SEBlock`` list; outputs are arrays ready to plot. Figure 6 of the
SENet paper (activations of the last SE block of each stage and of all
stage-5 blocks, per ImageNet class) is rebuilt by ``category_means``.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from .se_blocks import SEBlock

PAPER_SAMPLED_CHANNELS = 50  # the paper plots 50 evenly sampled channels per block


def sampled_channels(channels: int, count: int = PAPER_SAMPLED_CHANNELS) -> np.ndarray:
    """``count`` channel indices evenly spread over ``channels`` (all of them if fewer)."""
    if channels <= count:
        return np.arange(channels)
    return np.unique(np.linspace(0, channels - 1, count).round().astype(int))


def depth_profile(per_image: list[dict[str, np.ndarray]], blocks: list[SEBlock]) -> dict[str, np.ndarray]:
    """Per block: mean and std over channels for each image, and how much the images differ.

    ``spread`` is the mean pairwise RMS distance between the images' excitation
    vectors (0 for a single image): near 0 where a block treats every image alike
    (class-agnostic), larger where the excitation depends on the image.
    """
    means = np.array([[img[b.name].mean() for b in blocks] for img in per_image])  # (I, B)
    stds = np.array([[img[b.name].std() for b in blocks] for img in per_image])  # (I, B)
    spread = np.zeros(len(blocks))
    pairs = list(combinations(range(len(per_image)), 2))
    for col, block in enumerate(blocks):
        if pairs:
            spread[col] = np.mean([_rms(per_image[i][block.name] - per_image[j][block.name]) for i, j in pairs])
    return {"mean": means, "std": stds, "spread": spread}


def _rms(delta: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(delta))))


def figure6_blocks(blocks: list[SEBlock]) -> list[SEBlock]:
    """The last block of every stage plus every block of the last stage, by depth.

    For SE-ResNet-50 this is SE_2_3, SE_3_4, SE_4_6, SE_5_1, SE_5_2, SE_5_3.
    """
    if not blocks:
        return []
    last_stage = max(b.stage for b in blocks)
    last_of_stage = {b.stage: b for b in blocks}  # later blocks overwrite earlier ones
    chosen = {b.name for b in last_of_stage.values()} | {b.name for b in blocks if b.stage == last_stage}
    return [b for b in blocks if b.name in chosen]


def category_means(
    per_image: list[dict[str, np.ndarray]], labels: list[str], block_names: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    """Mean excitation per category and block, plus ``"all"``: the mean of the category means."""
    categories = sorted(set(labels))
    means: dict[str, dict[str, np.ndarray]] = {}
    for category in categories:
        members = [img for img, label in zip(per_image, labels) if label == category]
        means[category] = {name: np.mean([img[name] for img in members], axis=0) for name in block_names}
    means["all"] = {name: np.mean([means[c][name] for c in categories], axis=0) for name in block_names}
    return means


def extreme_channels(vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` most and ``k`` least excited channels (most/least first)."""
    order = np.argsort(-vector, kind="stable")
    k = max(1, min(k, len(vector) // 2 or 1))
    return order[:k], order[::-1][:k]


def formula_text(block: SEBlock) -> str:
    """The SE equations with the chosen block's actual sizes."""
    c, cr = block.channels, block.reduced
    return (
        f"**{block.name}** (`{block.path}`): C = {c}, r = {block.reduction:g}, "
        f"C → C/r → C = {c} → {cr} → {c}, {block.params:,} parameters.\n\n"
        f"- Squeeze: $z_c = \\frac{{1}}{{H W}}\\sum_{{i,j}} u_c(i,j)$ gives a {c}-vector z.\n"
        f"- Excitation: $s = \\sigma(W_2\\,\\delta(W_1 z))$ with $W_1 \\in \\mathbb{{R}}^{{{cr}\\times{c}}}$, "
        f"$W_2 \\in \\mathbb{{R}}^{{{c}\\times{cr}}}$, δ = ReLU (or the block's activation), σ = sigmoid.\n"
        f"- Scale: $\\tilde{{x}}_c = s_c \\cdot u_c$ — each of the {c} channels is multiplied by its weight in (0, 1)."
    )
