"""The one forward pass every backend computes, and the small interface the engine runs it through.

``forward_outputs`` runs a timm model once on a batch of views and returns what the app reads of it
(a ``ForwardResult``): the logits, the pooled pre-logits embedding, and every SE block's steps: its
squeeze z, its bottleneck after the activation, its excitation s, and the input maps U of its most and
least excited channels, which is everything the Explain tab shows of any block. Eager PyTorch runs it
directly (``EagerBackend``); the ONNX export traces the very same function (``onnx_backend``), so the
two cannot drift apart.

A backend is anything with a ``name`` and ``forward(batch) -> ForwardResult`` (``Backend``).
This module imports nothing of the engine or of ONNX Runtime: both import it.
"""
from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import nn

from .se_blocks import SEBlock, capture_excitations, capture_extreme_maps, capture_steps


class ForwardResult(NamedTuple):
    """What one pass over V views returns; the dicts are keyed by block name (SE_s_b)."""

    logits: torch.Tensor  # (V, K)
    embedding: torch.Tensor  # (V, D)
    excitations: dict[str, torch.Tensor]  # s, (V, C)
    squeezes: dict[str, torch.Tensor]  # z, (V, C)
    bottlenecks: dict[str, torch.Tensor]  # the C/r values after the activation, (V, C/r)
    maps: dict[str, torch.Tensor]  # input maps U of the most and least excited channels, (V, 2k, H, W)
    map_channels: dict[str, torch.Tensor]  # those channels, most excited first, then least, (2k,)


class Backend(Protocol):
    """Runs a batch of views through one model."""

    name: str

    def forward(self, batch: torch.Tensor) -> ForwardResult: ...


def forward_outputs(model: nn.Module, blocks: list[SEBlock], batch: torch.Tensor) -> ForwardResult:
    """One pass of ``model`` over ``batch`` (V, 3, H, W), with every SE block's steps captured.

    The features are computed once and the head applied twice (pre-logits and logits), which is what
    ``model(batch)`` costs plus a pooling.
    """
    with (capture_excitations(model, blocks) as excitations, capture_steps(model, blocks) as (squeezes, hidden),
          capture_extreme_maps(model, blocks, excitations) as (maps, channels)):
        features = model.forward_features(batch)
        embedding = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
    return ForwardResult(logits, embedding, dict(excitations), dict(squeezes), dict(hidden), dict(maps),
                         dict(channels))


class EagerBackend:
    """The model's own PyTorch forward (``forward_outputs`` under inference mode)."""

    name = "torch"

    def __init__(self, model: nn.Module, blocks: list[SEBlock], reason: str | None = None):
        self.model, self.blocks = model, blocks
        self.reason = reason  # why ONNX Runtime is not used, when it was asked for

    def forward(self, batch: torch.Tensor) -> ForwardResult:
        with torch.inference_mode():
            result = forward_outputs(self.model, self.blocks, batch)
        return result._replace(logits=result.logits.float(), embedding=result.embedding.float())
