"""The Explain tab's words: one plain sentence per SE step with this image's numbers, and a one-sentence
summary beside every plot (which is also its text for screen readers).

Pure functions of arrays and ``SEBlock``s, so each sentence can be checked against the numbers it states.
"""
from __future__ import annotations

import numpy as np

from ..se_blocks import SEBlock
from ..se_cost import ModelCost

WHAT_SE_DOES = ("An SE block looks at the whole image, decides how much each channel matters, and multiplies "
                "each channel by that weight: global context → channel weights → recalibration.")


def _share(part: float) -> str:
    return f"{part:.2%}" if part < 0.01 else f"{part:.1%}"


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f} M"


def steps_text(block: SEBlock, blocks: list[SEBlock], cost: ModelCost, activation: str, gate: str,
               z: np.ndarray, s: np.ndarray, model_label: str) -> str:
    """The block's real numbers, and what each of squeeze, excitation and scale does, for this image."""
    own = cost.blocks[block.name]
    h, w = own.input_hw
    c, cr = block.channels, block.reduced
    passed, shut = int((s > 0.9).sum()), int((s < 0.1).sum())
    return "\n\n".join([
        f"### {block.name}: an SE block at work on your image\n{WHAT_SE_DOES}",
        f"**{block.name}** (`{block.path}`) of {model_label} receives U: **{c} channels of {h}×{w}**. "
        f"With r = {block.reduction:g} its bottleneck has C/r = {cr} values. Its {block.params:,} parameters are "
        f"{_share(own.params_share)} of the model's {_millions(cost.model_params)} "
        f"(all {len(blocks)} SE blocks: {_share(cost.se_params / cost.model_params)}); its FLOPs are "
        f"{_share(own.flops_share)} of the model's {cost.model_flops / 1e9:.1f} G "
        f"(all SE blocks: {_share(cost.se_flops / cost.model_flops)}).",
        f"① **Squeeze** (global context): each channel's {h}×{w} map is averaged to one number z_c. "
        f"z holds {c} values (here {float(z.min()):.2f} to {float(z.max()):.2f}): a summary of the whole image, "
        f"which the block's convolutions, each seeing a small window, do not have.",
        f"② **Excitation** (channel weights): a small network turns z into one weight per channel: "
        f"FC {c}→{cr}, {activation}, FC {cr}→{c}, {gate}. The squeeze to {cr} values makes the channels "
        f"decide together. Here s runs from {float(s.min()):.2f} to {float(s.max()):.2f}: "
        f"{passed} channels above 0.9, {shut} below 0.1.",
        f"③ **Scale** (recalibration): each channel is multiplied by its weight, ũ_c = s_c · u_c. "
        f"A channel with s near 1 passes unchanged; one near 0 fades out. The pictures below show it.",
    ])


def scale_text(shown: list[tuple[str, int]], s: np.ndarray, hw: tuple[int, int]) -> str:
    """What the before/after pictures show, naming their channels and gates."""
    most = ", ".join(f"{c} (s = {s[c]:.2f})" for kind, c in shown if kind == "most")
    least = ", ".join(f"{c} (s = {s[c]:.2f})" for kind, c in shown if kind == "least")
    return (f"④ Each picture: **left**, a channel's {hw[0]}×{hw[1]} map as the block receives it; **right**, the "
            f"same map after × s, on the same colours (brightness is the size of a value; black is 0). Most excited "
            f"channels: {most}: they stay. Least excited: {least}: they fade.")


def map_text(excitations: dict[str, np.ndarray], blocks: list[SEBlock]) -> str:
    """One sentence on the map and the per-block summary."""
    means = {b.name: float(np.mean(excitations[b.name])) for b in blocks}
    decided = {b.name: float(np.mean((excitations[b.name] < 0.1) | (excitations[b.name] > 0.9))) for b in blocks}
    low, high = min(means, key=means.get), max(means, key=means.get)
    firmest = max(decided, key=decided.get)
    return (f"Each row is one of the {len(blocks)} SE blocks, its channels sorted from the most to the least "
            f"excited. Mean s runs from {means[low]:.2f} ({low}) to {means[high]:.2f} ({high}); {firmest} is the "
            f"most decided, with {decided[firmest]:.0%} of its channels below 0.1 or above 0.9.")


def compare_text(names: list[str], block: SEBlock, spread: np.ndarray, blocks: list[SEBlock]) -> str:
    """One sentence on the comparison: which blocks tell the images apart."""
    if len(names) < 2:
        return ("Only your image is shown. Add up to 3 gallery images or uploads under *Compare with* to see "
                "where their excitations differ.")
    most, least = blocks[int(np.argmax(spread))].name, blocks[int(np.argmin(spread))].name
    return (f"{len(names)} images, one panel each for {block.name} (your image in grey beneath the others). "
            f"Their excitations differ most in {most} (RMS {float(spread.max()):.2f}) and least in {least} "
            f"({float(spread.min()):.2f}); in the paper's trained models, early blocks treat all images alike "
            f"and later blocks depend on the image.")


def figure6_text(means: dict[str, dict[str, np.ndarray]], blocks: list[SEBlock]) -> str:
    """One sentence on Figure 6: how far the categories' lines are apart in the first and the last block."""
    categories = [c for c in means if c != "all"]

    def apart(block: SEBlock) -> float:  # mean over channels of the spread (std) across categories
        return float(np.mean(np.std([means[c][block.name] for c in categories], axis=0)))

    first, last = blocks[0], blocks[-1]
    return (f"{len(categories)} gallery categories, one line each, the mean of all in grey. The categories' lines "
            f"are {apart(first):.3f} apart on average in {first.name} and {apart(last):.3f} in {last.name} "
            f"(the paper finds early blocks alike across classes and later ones class-specific).")
