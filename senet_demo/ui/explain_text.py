"""The Explain tab's words: one plain sentence per SE step with this image's numbers, and a one-sentence
summary beside every plot (which is also its text for screen readers), in English or Korean (``lang``).

Pure functions of arrays and ``SEBlock``s, so each sentence can be checked against the numbers it states; the
sentences themselves are catalogue templates (``senet_demo.i18n``, keys ``explain.*``).
"""
from __future__ import annotations

import numpy as np

from ..i18n import text
from ..se_blocks import SEBlock
from ..se_cost import ModelCost

WHAT_SE_DOES = text("explain.what_se_does")  # English, as the API and the tests read it


def _share(part: float) -> str:
    return f"{part:.2%}" if part < 0.01 else f"{part:.1%}"


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f} M"


def steps_text(block: SEBlock, blocks: list[SEBlock], cost: ModelCost, activation: str, gate: str,
               z: np.ndarray, s: np.ndarray, model_label: str, lang: str = "en") -> str:
    """The block's real numbers, and what each of squeeze, excitation and scale does, for this image."""
    own = cost.blocks[block.name]
    h, w = own.input_hw
    c, cr = block.channels, block.reduced
    passed, shut = int((s > 0.9).sum()), int((s < 0.1).sum())
    return "\n\n".join([
        text("explain.steps.title", lang, block=block.name, what=text("explain.what_se_does", lang)),
        text("explain.steps.sizes", lang, block=block.name, path=block.path, model=model_label, c=c, h=h, w=w,
             r=f"{block.reduction:g}", cr=cr, params=f"{block.params:,}", share=_share(own.params_share),
             model_params=_millions(cost.model_params), count=len(blocks),
             se_share=_share(cost.se_params / cost.model_params), flops_share=_share(own.flops_share),
             model_flops=f"{cost.model_flops / 1e9:.1f}", se_flops_share=_share(cost.se_flops / cost.model_flops)),
        text("explain.steps.squeeze", lang, h=h, w=w, c=c, low=float(z.min()), high=float(z.max())),
        text("explain.steps.excitation", lang, c=c, cr=cr, activation=activation, gate=gate, low=float(s.min()),
             high=float(s.max()), passed=passed, shut=shut),
        text("explain.steps.scale", lang),
    ])


def scale_text(shown: list[tuple[str, int]], s: np.ndarray, hw: tuple[int, int], lang: str = "en") -> str:
    """What the before/after pictures show, naming their channels and gates."""
    most = ", ".join(f"{c} (s = {s[c]:.2f})" for kind, c in shown if kind == "most")
    least = ", ".join(f"{c} (s = {s[c]:.2f})" for kind, c in shown if kind == "least")
    return text("explain.scale", lang, h=hw[0], w=hw[1], most=most, least=least)


def map_text(excitations: dict[str, np.ndarray], blocks: list[SEBlock], lang: str = "en") -> str:
    """One sentence on the map and the per-block summary."""
    means = {b.name: float(np.mean(excitations[b.name])) for b in blocks}
    decided = {b.name: float(np.mean((excitations[b.name] < 0.1) | (excitations[b.name] > 0.9))) for b in blocks}
    low, high = min(means, key=means.get), max(means, key=means.get)
    firmest = max(decided, key=decided.get)
    return text("explain.map", lang, count=len(blocks), low=means[low], low_block=low, high=means[high],
                high_block=high, firmest=firmest, share=decided[firmest])


def compare_text(names: list[str], block: SEBlock, spread: np.ndarray, blocks: list[SEBlock], lang: str = "en") -> str:
    """One sentence on the comparison: which blocks tell the images apart."""
    if len(names) < 2:
        return text("explain.compare.alone", lang)
    most, least = blocks[int(np.argmax(spread))].name, blocks[int(np.argmin(spread))].name
    return text("explain.compare", lang, count=len(names), block=block.name, most=most,
                most_rms=float(spread.max()), least=least, least_rms=float(spread.min()))


def figure6_text(means: dict[str, dict[str, np.ndarray]], blocks: list[SEBlock], lang: str = "en") -> str:
    """One sentence on Figure 6: how far the categories' lines are apart in the first and the last block."""
    categories = [c for c in means if c != "all"]

    def apart(block: SEBlock) -> float:  # mean over channels of the spread (std) across categories
        return float(np.mean(np.std([means[c][block.name] for c in categories], axis=0)))

    first, last = blocks[0], blocks[-1]
    return text("explain.figure6", lang, count=len(categories), first_apart=apart(first), first=first.name,
                last_apart=apart(last), last=last.name)
