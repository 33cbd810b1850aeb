"""Export a model to ONNX once, with every output the engine reads, and check it against eager PyTorch.

The graph takes a batch of preprocessed views (dynamic batch axis, so the ten TTA crops run in one
call) and returns ``logits``, the pooled pre-logits ``embedding``, one output per SE block, named
as the block (``SE_2_1`` ...), holding its excitation as (B, C), and the input maps U of the Explain
tab's default block (``U_SE_3_23``, (B, C, H, W)).

After the export, ``onnx_layout`` rewrites the graph for ONNX Runtime's blocked layout on this CPU (``B``
channels per block, 0 for none). Exports are cached as
``<dir>/<arch>-<weights identity>-<H>x<W>-f<FORMAT>-op<OPSET>-b<B>.onnx``, written atomically
(temporary file, then rename), with a JSON sidecar that records the file's sha256 and the
validation against eager PyTorch on a fixed picture's ten crops: the largest difference of
probabilities (must stay under ``PROB_TOLERANCE``), the same top-5 for every crop, and how close the
embedding and the excitations are. The sidecar also records the library versions it was made with.
"""
from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from .engine import ForwardResult
from .ensemble import tta_batch
from .models import LoadedModel
from .onnx_layout import LayoutRewrites, blocked_layout_width, fit_blocked_layout
from .se_blocks import SEBlock, capture_excitations, capture_se_inputs, map_blocks
from .storage import atomic_write, cache_dir
from .weights import file_sha256

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # bump when what the graph takes, returns or holds changes: old exports are then ignored
OPSET = 17
INPUT = "image"
LOGITS, EMBEDDING = "logits", "embedding"
PROB_TOLERANCE = 1e-4  # max |p_onnx - p_eager| over every class of every validation view
FEATURE_TOLERANCE = 1e-3  # embedding (relative to its largest value) and excitations (absolute)

MAP_PREFIX = "U_"  # output name of a block's input maps: U_SE_3_23


class _GraphOutputs(nn.Module):
    """The model under the excitation hooks, returning what ``Engine`` reads, in a fixed order."""

    def __init__(self, model: nn.Module, blocks: list[SEBlock]):
        super().__init__()
        self.model, self.blocks = model, blocks

    def forward(self, batch: torch.Tensor):
        mapped = map_blocks(self.blocks)
        with capture_excitations(self.model, self.blocks) as excitations, capture_se_inputs(self.model, mapped) as maps:
            features = self.model.forward_features(batch)
            embedding = self.model.forward_head(features, pre_logits=True)
            logits = self.model.forward_head(features)
        return (logits, embedding, *(excitations[b.name] for b in self.blocks), *(maps[b.name] for b in mapped))


@dataclass(frozen=True)
class ExportFiles:
    """Where one model's export and its validation record live."""

    graph: Path
    sidecar: Path


def output_names(blocks: list[SEBlock]) -> list[str]:
    return [LOGITS, EMBEDDING, *(b.name for b in blocks), *(MAP_PREFIX + b.name for b in map_blocks(blocks))]


def export_files(cache_dir: Path, loaded: LoadedModel) -> ExportFiles:
    """The cache key: architecture, weights content, input size, export format, opset and layout block."""
    _, height, width = loaded.data_config["input_size"]
    arch = re.sub(r"[^A-Za-z0-9_.-]", "_", loaded.spec.arch)[:80]
    stem = f"{arch}-{loaded.weights.identity}-{height}x{width}-f{FORMAT_VERSION}-op{OPSET}-b{blocked_layout_width()}"
    return ExportFiles(cache_dir / f"{stem}.onnx", cache_dir / f"{stem}.json")


def versions() -> dict[str, str]:
    """Library versions an export depends on; a failed validation is retried when they change."""
    import onnx
    import onnxruntime
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def export_graph(loaded: LoadedModel, blocks: list[SEBlock], path: Path) -> tuple[str, LayoutRewrites]:
    """Write the ONNX graph of ``loaded`` to ``path`` atomically; returns the file's sha256 and the layout rewrites."""
    import onnx

    wrapper = _GraphOutputs(loaded.model, blocks).eval()  # eval: the exporter restores the wrapper's mode
    _, height, width = loaded.data_config["input_size"]
    example = torch.zeros(2, 3, height, width)  # batch 2: the batch axis is never specialised to 1
    names = output_names(blocks)
    with atomic_write(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(
                wrapper, (example,), tmp, dynamo=False, opset_version=OPSET,
                input_names=[INPUT], output_names=names,
                dynamic_axes={name: {0: "batch"} for name in [INPUT, *names]},
            )
        graph = onnx.load(tmp)
        rewrites = fit_blocked_layout(graph, blocked_layout_width())
        onnx.save(graph, tmp)
        del graph
        digest = file_sha256(tmp)
    return digest, rewrites


def validation_batch(loaded: LoadedModel) -> torch.Tensor:
    """A fixed structured picture (gradients, stripes, a disc) as the model's ten crops."""
    height, width = 320, 400
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - 260) ** 2 + (y - 150) ** 2 < 70**2) * 180.0
    pixels = np.stack([x * 255 / width, (np.sin(x / 9) + 1) * 60 + disc, (x + y) % 48 * 5], axis=-1)
    rng = np.random.default_rng(0)
    pixels += rng.integers(0, 40, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return tta_batch(loaded.transform, image, "tencrop")


def compare(eager: ForwardResult, onnx: ForwardResult) -> dict:
    """How far the ONNX outputs are from eager PyTorch, and whether that is within the tolerances."""
    (logits_e, embedding_e, excitations_e, maps_e), (logits_o, embedding_o, excitations_o, maps_o) = eager, onnx
    probs_e, probs_o = logits_e.float().softmax(-1), logits_o.float().softmax(-1)
    k = min(5, probs_e.shape[-1])
    top5_match = bool(torch.equal(probs_e.topk(k, -1).indices, probs_o.topk(k, -1).indices))
    prob_diff = float((probs_e - probs_o).abs().max())
    scale = max(1.0, float(embedding_e.abs().max()))
    embedding_diff = float((embedding_e.float() - embedding_o.float()).abs().max()) / scale
    same_blocks = list(excitations_e) == list(excitations_o)
    excitation_diff = max(
        (float((excitations_e[n] - excitations_o[n]).abs().max()) for n in excitations_e if n in excitations_o),
        default=0.0,
    )
    maps_diff = max(
        (float((maps_e[n] - maps_o[n]).abs().max()) / max(1.0, float(maps_e[n].abs().max())) for n in maps_e if n in maps_o),
        default=0.0,
    )
    same_blocks = same_blocks and list(maps_e) == list(maps_o)
    problems = []
    if prob_diff >= PROB_TOLERANCE:
        problems.append(f"probabilities differ by up to {prob_diff:.2e} (limit {PROB_TOLERANCE:g})")
    if not top5_match:
        problems.append("the top-5 classes differ")
    if embedding_diff >= FEATURE_TOLERANCE:
        problems.append(f"embeddings differ by up to {embedding_diff:.2e} of their scale")
    if not same_blocks:
        problems.append("the SE blocks differ")
    if excitation_diff >= FEATURE_TOLERANCE:
        problems.append(f"excitations differ by up to {excitation_diff:.2e}")
    if maps_diff >= FEATURE_TOLERANCE:
        problems.append(f"feature maps differ by up to {maps_diff:.2e} of their scale")
    return {
        "valid": not problems,
        "reason": "; ".join(problems),
        "views": int(probs_e.shape[0]),
        "max_abs_prob_diff": prob_diff,
        "top5_match": top5_match,
        "embedding_max_rel_diff": embedding_diff,
        "excitation_max_abs_diff": excitation_diff,
        "maps_max_rel_diff": maps_diff,
    }


def validate(loaded: LoadedModel, eager: Callable[[torch.Tensor], ForwardResult],
             onnx: Callable[[torch.Tensor], ForwardResult]) -> dict:
    batch = validation_batch(loaded)
    return compare(eager(batch), onnx(batch))


def write_sidecar(path: Path, record: dict) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")


def read_sidecar(path: Path) -> dict | None:
    """The validation record, or None when there is none or it cannot be read."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def default_cache_dir(weights_dir: Path) -> Path:
    """``<weights dir>/onnx`` when it can be written, else beside the Hugging Face cache."""
    preferred = Path(weights_dir) / "onnx"
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return cache_dir("onnx")
