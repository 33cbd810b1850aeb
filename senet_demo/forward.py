"""The one forward pass every backend computes, and the small interface the engine runs it through.

``forward_outputs`` runs a timm model once on a batch of views and returns what the app reads of it
(a ``ForwardResult``): the logits, the pooled pre-logits embedding, every SE block's excitation s and
the input maps U of the Explain tab's default block (``se_blocks.map_blocks``). Eager PyTorch runs it
directly (``EagerBackend``); the ONNX export traces the very same function (``onnx_backend``), so the
two cannot drift apart.

A backend is anything with a ``name`` and ``forward(batch) -> ForwardResult`` (``Backend``).
This module imports nothing of the engine or of ONNX Runtime: both import it.
"""
from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from .se_blocks import SEBlock, capture_excitations, capture_se_inputs, map_blocks

# (logits (V, K), embedding (V, D), {SE_s_b: excitation (V, C)}, {SE_s_b: input maps U (V, C, H, W)} of map_blocks)
ForwardResult = tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]


class Backend(Protocol):
    """Runs a batch of views through one model."""

    name: str

    def forward(self, batch: torch.Tensor) -> ForwardResult: ...


def forward_outputs(model: nn.Module, blocks: list[SEBlock], batch: torch.Tensor) -> ForwardResult:
    """One pass of ``model`` over ``batch`` (V, 3, H, W), with the SE gates and default block's maps captured.

    The features are computed once and the head applied twice (pre-logits and logits), which is what
    ``model(batch)`` costs plus a pooling.
    """
    with capture_excitations(model, blocks) as excitations, capture_se_inputs(model, map_blocks(blocks)) as maps:
        features = model.forward_features(batch)
        embedding = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
    return logits, embedding, dict(excitations), dict(maps)


class EagerBackend:
    """The model's own PyTorch forward (``forward_outputs`` under inference mode)."""

    name = "torch"

    def __init__(self, model: nn.Module, blocks: list[SEBlock], reason: str | None = None):
        self.model, self.blocks = model, blocks
        self.reason = reason  # why ONNX Runtime is not used, when it was asked for

    def forward(self, batch: torch.Tensor) -> ForwardResult:
        with torch.inference_mode():
            logits, embedding, excitations, maps = forward_outputs(self.model, self.blocks, batch)
        return logits.float(), embedding.float(), excitations, maps
