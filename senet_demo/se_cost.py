"""What the SE blocks cost: their parameters and FLOPs, and their share of the whole model's.

The paper's argument for SE is that it buys accuracy for a small share of the network (for SE-ResNet-50,
about 10% more parameters and well under 1% more FLOPs). The Explain tab shows those shares for the model
it runs, computed from the model itself:

* parameters: counted on the modules;
* FLOPs: PyTorch's ``FlopCounterMode`` over one forward of a copy of the model on the ``meta`` device
  (shapes only: no data and no arithmetic, so it costs no real forward pass). It counts the
  convolutions and matrix products, where a network's FLOPs are; an SE block's squeeze (C·H·W
  additions) and scale (C·H·W multiplications) are element-wise, so they are added here from the
  block's input size, recorded during that same pass.
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .se_blocks import SEBlock


@dataclass(frozen=True)
class BlockCost:
    """One SE block's parameters and FLOPs, and the whole model's, for one input size."""

    params: int
    flops: int
    model_params: int
    model_flops: int
    input_hw: tuple[int, int]  # H x W of the maps U the block receives

    @property
    def params_share(self) -> float:
        return self.params / self.model_params if self.model_params else 0.0

    @property
    def flops_share(self) -> float:
        return self.flops / self.model_flops if self.model_flops else 0.0


@dataclass(frozen=True)
class ModelCost:
    """Every SE block's cost in one model, by block name."""

    blocks: dict[str, BlockCost]
    model_params: int
    model_flops: int

    @property
    def se_params(self) -> int:
        return sum(cost.params for cost in self.blocks.values())

    @property
    def se_flops(self) -> int:
        return sum(cost.flops for cost in self.blocks.values())


def model_cost(model: nn.Module, blocks: list[SEBlock], input_size: tuple[int, int, int]) -> ModelCost:
    """The cost of ``model``'s SE ``blocks`` for one image of ``input_size`` (C, H, W)."""
    shadow = copy.deepcopy(model).to("meta")  # the caller's model stays as it is, and no memory is touched
    sizes: dict[str, tuple[int, int]] = {}
    handles = [shadow.get_submodule(b.path).register_forward_pre_hook(
        lambda _module, inputs, name=b.name: sizes.__setitem__(name, tuple(inputs[0].shape[-2:])))
        for b in blocks]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            shadow(torch.empty(1, *input_size, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    counted = counter.get_flop_counts()  # module path (prefixed with the model's class name) -> {op: flops}
    prefix = type(model).__name__
    elementwise = {b.name: 2 * b.channels * sizes[b.name][0] * sizes[b.name][1] for b in blocks}
    model_params = sum(p.numel() for p in model.parameters())
    model_flops = counter.get_total_flops() + sum(elementwise.values())
    costs = {
        b.name: BlockCost(
            params=b.params,
            flops=sum(counted.get(f"{prefix}.{b.path}", {}).values()) + elementwise[b.name],
            model_params=model_params, model_flops=model_flops, input_hw=sizes[b.name])
        for b in blocks
    }
    return ModelCost(costs, model_params, model_flops)


_COSTS: dict[tuple[str, tuple], ModelCost] = {}
_LOCK = threading.Lock()


def cached_model_cost(model_key: str, model: nn.Module, blocks: list[SEBlock],
                      input_size: tuple[int, int, int]) -> ModelCost:
    """``model_cost`` once per model (``LoadedModel.key``: architecture and weights) and input size."""
    key = (model_key, tuple(input_size))
    with _LOCK:
        if key not in _COSTS:
            _COSTS[key] = model_cost(model, blocks, tuple(input_size))
        return _COSTS[key]
