"""Tiny random-weight SE models of every timm SE family, and an independent SE formula.

Used by test_se_blocks.py, test_excitation.py and test_explain_ui.py.

Random init is useless for SE tests as it comes: timm zero-initialises the last
BN of each residual branch, so the SE input is all zeros and every image gets
the same excitation. ``randomize`` gives the BN layers non-trivial statistics
and the SE layers large random weights and biases, so excitations spread over
(0, 1) and differ between images.

``reference_excitation`` recomputes s = gate(W2 act(W1 mean(u) + b1) + b2) from
an SE module's own weights with plain tensor arithmetic; it never calls the
module (or any of its sub-modules).
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

# family -> (timm architecture, factory kwargs); all build in about a second and run 64-px inputs fast.
# (SE-ResNeXt uses the same timm SEModule as SE-ResNet; conftest's tiny_senet covers it.)
FAMILIES: dict[str, tuple[str, dict]] = {
    "resnet-semodule": ("seresnet50", {"layers": [1, 1, 1, 1]}),
    "legacy-senet": ("legacy_seresnet18", {"layers": [1, 1, 1, 1]}),
    "efficientnet": ("efficientnet_b0", {}),
    "mobilenetv3": ("mobilenetv3_small_050", {}),
    "regnety": ("regnety_002", {}),
}

LABELS = ["cat", "dog", "car", "tree", "boat", "house"]
DATA_CONFIG = dict(input_size=(3, 64, 64), crop_pct=1.0, interpolation="bilinear",
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core runner the threads' spin-waits
    cost far more than the work. Import this fixture into a test module to use it there."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def se_module_types() -> tuple[type, ...]:
    """The SE classes of the families above, by class (not by the structure rule under test)."""
    from timm.layers.squeeze_excite import SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models.senet import SEModule as LegacySEModule

    return SEModule, LegacySEModule, SqueezeExcite


def se_modules(model: nn.Module) -> dict[str, nn.Module]:
    """path -> SE module, in forward order, found by class."""
    types = se_module_types()
    return {path: m for path, m in model.named_modules() if isinstance(m, types)}


def build(family: str, seed: int = 0, num_classes: int = len(LABELS)) -> nn.Module:
    import timm

    arch, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs).eval()
    randomize(model, seed)
    return model.requires_grad_(False)


@functools.cache
def shared(family: str) -> nn.Module:
    """``build(family)``, built once per session: for tests that only read it (hooks are removed after use)."""
    return build(family)


def randomize(model: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics, strong random SE layers and a calibrated head (see the module docstring).

    ``model`` must be in eval mode (the head is calibrated on one forward pass).
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
        for se in se_modules(model).values():
            reduce, expand = _layers(se)[:2]
            for layer, gain in ((reduce, 1.5), (expand, 1.5)):
                fan_in = layer.weight[0].numel()
                normal(layer.weight, gain / fan_in ** 0.5)
                normal(layer.bias, 1.5)
        # a random head whose logits have std ~2: confident, but not saturated, probabilities
        head = model.get_classifier()
        normal(head.weight, 1.0)
        head.bias.zero_()
        logits = model(torch.randn(4, 3, 64, 64, generator=g))
        head.weight.mul_(2.0 / float(logits.std()))


def _layers(se: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(reduce, expand, activation, gate) of an SE module, by family."""
    from timm.layers.squeeze_excite import SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models.senet import SEModule as LegacySEModule

    if isinstance(se, SEModule):
        assert isinstance(se.bn, nn.Identity) and not se.add_maxpool, "formula below has no BN / max-pool branch"
        return se.fc1, se.fc2, se.act, se.gate
    if isinstance(se, LegacySEModule):
        return se.fc1, se.fc2, se.relu, se.sigmoid
    if isinstance(se, SqueezeExcite):
        return se.conv_reduce, se.conv_expand, se.act1, se.gate
    raise TypeError(f"not an SE module of a known family: {type(se).__name__}")


def _activation(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The formula of an activation module, written out (the module itself is never called)."""
    from timm.layers import activations as timm_act

    if isinstance(module, nn.ReLU):
        return torch.where(x > 0, x, torch.zeros_like(x))
    if isinstance(module, (nn.SiLU, timm_act.Swish)):
        return x / (1.0 + torch.exp(-x))
    if isinstance(module, (nn.Sigmoid, timm_act.Sigmoid)):
        return 1.0 / (1.0 + torch.exp(-x))
    if isinstance(module, (nn.Hardsigmoid, timm_act.HardSigmoid)):
        return torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)  # relu6(x + 3) / 6
    raise TypeError(f"no reference formula for {type(module).__module__}.{type(module).__name__}")


def reference_excitation(se: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """s = gate(W2 act(W1 z + b1) + b2), z = spatial mean of u; (B, C) in float64."""
    reduce, expand, act, gate = _layers(se)
    z = u.double().mean(dim=(2, 3))  # (B, C)
    w1 = reduce.weight.double().reshape(reduce.weight.shape[0], -1)  # (C/r, C)
    w2 = expand.weight.double().reshape(expand.weight.shape[0], -1)  # (C, C/r)
    hidden = _activation(act, z @ w1.T + reduce.bias.double())
    return _activation(gate, hidden @ w2.T + expand.bias.double())


def record_se_inputs(model: nn.Module, paths: list[str]):
    """My own forward pre-hooks: path -> list of SE inputs seen; returns (store, handles)."""
    store: dict[str, torch.Tensor] = {}
    handles = []
    for path in paths:
        def hook(_module, inputs, path=path):
            store[path] = inputs[0].detach().clone()
        handles.append(model.get_submodule(path).register_forward_pre_hook(hook))
    return store, handles


def with_identity(model: nn.Module, paths: list[str]) -> nn.Module:
    """A deep copy of ``model`` whose modules at ``paths`` are replaced by nn.Identity()."""
    import copy

    clone = copy.deepcopy(model)
    for path in paths:
        parent_path, _, name = path.rpartition(".")
        parent = clone.get_submodule(parent_path) if parent_path else clone
        setattr(parent, name, nn.Identity())
    return clone


def batch(seed: int = 0, n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def picture(seed: int, size: int = 64) -> Image.Image:
    """A deterministic structured RGB image; different seeds give clearly different pictures."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    fx, fy, phase = rng.uniform(0.05, 0.4, 3)
    base = np.stack([np.sin(x * fx + phase), np.cos(y * fy), np.sin((x + y) * fx * fy)], axis=-1) * 100 + 128
    noise = rng.integers(-40, 40, size=(size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def work_dir() -> Path:
    """Scratch space inside the session's temporary HF home (conftest deletes it at the end)."""
    root = Path(os.environ.get("HF_HOME", tempfile.gettempdir())) / "se-tests"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root))


@functools.cache
def exported(family: str, seed: int = 0) -> tuple[str, Path]:
    """(SPEC, folder): the randomized model of ``family`` written as timm's Hub layout; once per session."""
    from timm.models import save_for_hf

    arch = FAMILIES[family][0]
    folder = work_dir() / arch
    save_for_hf(build(family, seed), str(folder), safe_serialization=True, data_config=dict(DATA_CONFIG),
                model_config={"label_names": list(LABELS)})
    return f"{arch}={folder}", folder


@functools.cache
def exported_plain(arch: str = "resnet50d") -> tuple[str, Path]:
    """(SPEC, folder) of a tiny random model *without* SE (one block per stage), once per session."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=len(LABELS), layers=[1, 1, 1, 1]).eval()
    folder = work_dir() / arch
    save_for_hf(model, str(folder), safe_serialization=True, data_config=dict(DATA_CONFIG),
                model_config={"label_names": list(LABELS)})
    return f"{arch}={folder}", folder


def write_gallery(root: Path, labels=("alpha", "beta"), per_label: int = 3, seed: int = 0) -> Path:
    """root/<label>/<n>.png: distinct generated pictures."""
    for li, label in enumerate(labels):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            picture(seed + 100 * li + i).save(root / label / f"{i}.png")
    return root
