"""What is wrong with a checkpoint, in words: the model, the exact problem and the fix.

Everything here reads metadata only (a safetensors header, timm's registry, a
labels file), never a tensor, so the app can name a broken model at startup
without loading it. ``models.py`` builds the architecture and calls these
checks; the messages end with a ``Fix:`` the reader can act on. Nothing here
deletes or rewrites a file.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from .config import ModelSpec

HUB_ORIGINS = ("weights/", "hf-cache", "hub")  # a copy of a Hub repo that `download` can fetch again
RELEASE_ORIGINS = ("weights/", "torch-cache", "download")


class ModelLoadError(RuntimeError):
    """Weights were found but could not be turned into a model; the message names the fix."""


def refetch_fix(spec: ModelSpec, file: Path, origin: str, hub: bool) -> str:
    """How to replace a damaged weights file, by where it came from."""
    command = f"`python -m senet_demo download {spec.name}`"
    if hub and origin in HUB_ORIGINS:
        if origin == "weights/":
            return f"Fix: run {command} to fetch the repo again (it replaces the damaged {file.name} in {file.parent})."
        return (f"Fix: run {command}; it writes a fresh copy to weights/, which is used before the Hugging Face "
                f"cache. The damaged cache file {file} can then be deleted.")
    if not hub and origin in RELEASE_ORIGINS and file.suffix != ".safetensors":
        return f"Fix: run {command}; it writes a fresh copy to weights/{spec.arch}/, which is used before torch's cache."
    return ("Fix: export or copy the checkpoint again (timm.models.save_for_hf or safetensors.torch.save_file); "
            "the app never changes it.")


def read_header(name: str, file: Path, fix: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, without reading any tensor."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(
            f"Model {name!r}: {file} is not a readable safetensors file ({err}): it is truncated or corrupted, "
            f"or not a safetensors file at all. {fix}"
        ) from err


def compare_shapes(name: str, file: Path, arch: str, expected: dict[str, tuple[int, ...]],
                   found: dict[str, tuple[int, ...]], fix: str) -> None:
    """Raise ``ModelLoadError`` naming the first tensors where ``found`` (the checkpoint) and
    ``expected`` (the architecture) disagree."""
    # BatchNorm's step counter: many checkpoints leave it out, and PyTorch fills it in on loading
    expected = {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}
    found = {k: v for k, v in found.items() if not k.endswith("num_batches_tracked")}
    mismatched = [k for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if not (mismatched or missing or unexpected):
        return
    parts = []
    if mismatched:
        first = mismatched[0]
        parts.append(f"{len(mismatched)} tensor(s) have other shapes, the first {first!r}: "
                     f"{list(found[first])} in the checkpoint, {list(expected[first])} in {arch}")
    if missing:
        parts.append(f"{len(missing)} tensor(s) of {arch} are missing from the checkpoint, the first {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) in the checkpoint are not in {arch}, the first {unexpected[0]!r}")
    raise ModelLoadError(f"Model {name!r}: the checkpoint {file} does not fit the architecture {arch}: "
                         f"{'; '.join(parts)}. {fix}")


def architecture_fix(folder_config: Path | None) -> str:
    if folder_config is not None:
        return (f"Fix: check that 'architecture' and 'model_args' in {folder_config} match the checkpoint "
                f"(or fetch the checkpoint again if it is a damaged copy).")
    return "Fix: check that the ARCH before '=' in the SPEC matches the checkpoint (same model and size)."


def unknown_architecture(name: str, arch: str, where: str = "the SPEC") -> str | None:
    """A message if timm has no architecture called ``arch`` (a pretrained tag is ignored); else None."""
    import timm

    if timm.is_model(arch):
        return None
    base = arch.split(".")[0]
    close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return (f"Model {name!r}: timm has no architecture called {base!r}{hint}. Fix: check the ARCH in {where}; "
            f"`python -c \"import timm; print(timm.list_models('{base[:4]}*'))\"` lists the names timm knows.")


def labels_mismatch(name: str, labels_file: Path, lines: int, num_classes: int) -> str:
    return (f"Model {name!r}: {labels_file} has {lines} lines but the checkpoint has {num_classes} classes. "
            f"Fix: labels.txt must have {num_classes} lines, one class name per line in the order of the "
            f"model's outputs (or remove it to use the names in config.json).")


def release_failure(name: str, file: Path, err: Exception, fix: str) -> str:
    """A timm release file (``.pth``) that ``torch.load(weights_only=True)`` could not read."""
    import pickle

    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text or "Weights only load failed" in text:
        problem = ("holds more than tensors (a pickle that would run code), so torch.load(weights_only=True) "
                   "refused it")
    else:
        problem = "is truncated or corrupted"
    first_line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"Model {name!r}: {file} {problem} ({first_line}). {fix}"
