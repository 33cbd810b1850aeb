"""Squeeze-and-Excitation blocks: discovery by structure, paper naming, hooks.

Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018 / TPAMI 2019): for a
feature map U with C channels, the squeeze is z_c = mean_{i,j} u_c(i, j), the
excitation s = sigmoid(W2 relu(W1 z)) with W1: C -> C/r and W2: C/r -> C, and
the block outputs u_c * s_c.

timm implements this in several families; all of them hold a reducing and an
expanding layer and a gate module whose output *is* s:

* ``timm.layers.SEModule`` (ResNet/ResNeXt/RegNetY): ``fc1``, ``fc2``, ``gate``
* ``timm.models.senet.SEModule`` (legacy SENet): ``fc1``, ``fc2``, ``sigmoid``
* ``SqueezeExcite`` (EfficientNet, MobileNetV3): ``conv_reduce``, ``conv_expand``, ``gate``

Hooks are registered and removed per call (context managers) and act only for
the thread that registered them, so concurrent requests on the same model
never see each other's captures or ablations.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

_LAYER_PAIRS = (("fc1", "fc2"), ("conv_reduce", "conv_expand"))
_GATE_NAMES = ("gate", "sigmoid")


@dataclass(frozen=True)
class SEBlock:
    """One SE module of a model, named as the paper does: SE_<stage>_<block>."""

    name: str  # e.g. "SE_2_3"
    path: str  # module path, e.g. "layer1.2.se"
    stage: int  # 2..5 for ResNets (conv2_x..conv5_x)
    block: int  # 1-based index within the stage
    channels: int  # C
    reduced: int  # C / r
    params: int  # parameters of the SE module

    @property
    def reduction(self) -> float:
        return self.channels / self.reduced

    def describe(self) -> str:
        return f"{self.name} ({self.path}): C={self.channels} -> {self.reduced} -> {self.channels}, r={self.reduction:g}"


def se_parts(module: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module] | None:
    """(reduce, expand, gate) when ``module`` is an SE block, else None."""
    gate = next((getattr(module, g) for g in _GATE_NAMES if isinstance(getattr(module, g, None), nn.Module)), None)
    if gate is None:
        return None
    for reduce_name, expand_name in _LAYER_PAIRS:
        reduce, expand = getattr(module, reduce_name, None), getattr(module, expand_name, None)
        if (
            isinstance(reduce, (nn.Conv2d, nn.Linear))
            and isinstance(expand, (nn.Conv2d, nn.Linear))
            # C -> C/r -> C: rules out look-alikes such as gMLP's GatedMlp (fc1, gate, fc2: C -> 6C, 3C -> C)
            and _in_features(reduce) == _out_features(expand)
            and _out_features(reduce) == _in_features(expand)
        ):
            return reduce, expand, gate
    return None


def find_se_blocks(model: nn.Module) -> list[SEBlock]:
    """Every SE block of ``model`` in forward order, with paper-style names."""
    found = [(path, module, parts) for path, module in model.named_modules() if (parts := se_parts(module))]
    stage_numbers: dict[str, int] = {}
    blocks = []
    for path, module, (reduce, expand, _) in found:
        stage_path, block_key = _stage_and_block(path)
        stage = stage_numbers.setdefault(stage_path, len(stage_numbers) + 2)  # the paper's stages start at conv2_x
        stage_module = model.get_submodule(stage_path) if stage_path else model
        block = [name for name, _ in stage_module.named_children()].index(block_key) + 1
        blocks.append(
            SEBlock(
                name=f"SE_{stage}_{block}",
                path=path,
                stage=stage,
                block=block,
                channels=_out_features(expand),
                reduced=_out_features(reduce),
                params=sum(p.numel() for p in module.parameters()),
            )
        )
    return blocks


def _stage_and_block(path: str) -> tuple[str, str]:
    """(stage path, block key) of the SE module at ``path``.

    The block is the SE module's deepest ancestor held by index in a container
    (``layer1.2`` in ``layer1.2.se``, ``blocks.0.0`` in ``blocks.0.0.se``,
    ``stages.0.blocks.1`` in MaxViT's ``stages.0.blocks.1.conv.se``); where blocks
    are named rather than indexed (RegNet's ``s1.b1.se``) it is the SE module's parent.
    """
    parts = path.split(".")
    indexed = [i for i, part in enumerate(parts[:-1]) if part.isdigit()]
    block = indexed[-1] if indexed else len(parts) - 2
    return ".".join(parts[:block]), parts[block]


def _out_features(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _in_features(layer: nn.Module) -> int:
    return layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features


def gate_of(model: nn.Module, block: SEBlock) -> nn.Module:
    return se_parts(model.get_submodule(block.path))[2]


_ACTIVATION_NAMES = ("act", "act1", "relu")  # timm's SEModule, SqueezeExcite, the legacy SENet's module


def layer_names(model: nn.Module, block: SEBlock) -> tuple[str, str]:
    """The class names of the block's activation (δ) and gate (σ), e.g. ("ReLU", "Sigmoid"), for the
    Explain tab's text; "activation" where the block keeps it under another name."""
    module = model.get_submodule(block.path)
    activation = next((getattr(module, n) for n in _ACTIVATION_NAMES if isinstance(getattr(module, n, None), nn.Module)),
                      None)
    gate = se_parts(module)[2]
    return (type(activation).__name__ if activation is not None else "activation"), type(gate).__name__



# The Explain tab's tiles show at most this many most and least excited channels of a block.
MAP_CHANNELS = 8


def default_block(blocks: list[SEBlock]) -> str | None:
    """The last block of the second-to-last stage, where class-specific excitation shows well: the Explain
    tab opens on it."""
    if not blocks:
        return None
    stages = sorted({b.stage for b in blocks})
    stage = stages[-2] if len(stages) > 1 else stages[-1]
    return [b for b in blocks if b.stage == stage][-1].name


@contextmanager
def _hooks_for_this_thread(modules: list[nn.Module], hooks: list, pre: bool = False) -> Iterator[None]:
    """Register ``hooks[i]`` on ``modules[i]`` for the duration; each acts only for the registering thread."""
    owner = threading.get_ident()

    def only_here(hook):
        def wrapper(*args):
            return hook(*args) if threading.get_ident() == owner else None
        return wrapper

    handles = [
        (m.register_forward_pre_hook if pre else m.register_forward_hook)(only_here(h)) for m, h in zip(modules, hooks)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_excitations(model: nn.Module, blocks: list[SEBlock]) -> Iterator[dict[str, torch.Tensor]]:
    """Collect each block's excitation s, (B, C), for forwards run by this thread."""
    store: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, output):
            store[name] = output.detach().float().flatten(1).cpu().clone()  # (B, C)
        return hook

    with _hooks_for_this_thread([gate_of(model, b) for b in blocks], [keep(b.name) for b in blocks]):
        yield store


@contextmanager
def capture_se_inputs(model: nn.Module, blocks: list[SEBlock]) -> Iterator[dict[str, torch.Tensor]]:
    """Collect each block's input feature map U, (B, C, H, W), for forwards run by this thread."""
    store: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, inputs):
            store[name] = inputs[0].detach().float().cpu().clone()  # (B, C, H, W)
        return hook

    modules = [model.get_submodule(b.path) for b in blocks]
    with _hooks_for_this_thread(modules, [keep(b.name) for b in blocks], pre=True):
        yield store


@contextmanager
def capture_steps(model: nn.Module, blocks: list[SEBlock]) -> Iterator[tuple[dict, dict]]:
    """Collect each block's squeeze z, (B, C), and bottleneck after the activation, (B, C/r): what the
    reducing layer receives (every family pools U to z first) and what the expanding layer receives."""
    squeezes: dict[str, torch.Tensor] = {}
    bottlenecks: dict[str, torch.Tensor] = {}

    def keep(store: dict, name: str):
        def hook(_module, inputs):
            store[name] = inputs[0].detach().float().flatten(1).cpu().clone()
        return hook

    parts = [se_parts(model.get_submodule(b.path)) for b in blocks]
    modules = [reduce for reduce, _, _ in parts] + [expand for _, expand, _ in parts]
    hooks = [keep(squeezes, b.name) for b in blocks] + [keep(bottlenecks, b.name) for b in blocks]
    with _hooks_for_this_thread(modules, hooks, pre=True):
        yield squeezes, bottlenecks


@contextmanager
def capture_extreme_maps(model: nn.Module, blocks: list[SEBlock],
                         excitations: dict[str, torch.Tensor]) -> Iterator[tuple[dict, dict]]:
    """Collect each block's input maps U of its MAP_CHANNELS most and least excited channels (by the first
    view's s), (B, 2k, H, W), and those channels, (2k,): what the Explain tab shows before and after
    scaling, for any block, from the one forward pass. ``excitations`` is the store of a running
    ``capture_excitations``: a block's gate has run when its module's forward hook runs."""
    maps: dict[str, torch.Tensor] = {}
    channels: dict[str, torch.Tensor] = {}

    def keep(block: SEBlock):
        k = min(MAP_CHANNELS, block.channels)

        def hook(_module, inputs, _output):
            gates = excitations[block.name][0]  # (C,) of the first view
            chosen = torch.cat([torch.topk(gates, k).indices, torch.topk(-gates, k).indices])  # most, then least
            maps[block.name] = inputs[0].detach().float().index_select(1, chosen).cpu().clone()
            channels[block.name] = chosen
        return hook

    with _hooks_for_this_thread([model.get_submodule(b.path) for b in blocks], [keep(b) for b in blocks]):
        yield maps, channels


@contextmanager
def excitation_disabled(model: nn.Module, blocks: list[SEBlock]) -> Iterator[None]:
    """Force the gate of ``blocks`` to 1 (SE becomes the identity) for this thread's forwards."""

    def ones(_module, _inputs, output):
        return torch.ones_like(output)

    with _hooks_for_this_thread([gate_of(model, b) for b in blocks], [ones] * len(blocks)):
        yield


def hook_count(model: nn.Module) -> int:
    """Number of forward hooks on all modules of ``model`` (for leak checks)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
