"""What is wrong with a checkpoint, in words: the model, the exact problem and the fix.

Everything here reads metadata only (a safetensors header, timm's registry, a
labels file), never a tensor, so the app can name a broken model at startup
without loading it. ``models.py`` builds the architecture and calls these
checks; the messages end with a ``Fix:`` the reader can act on. Nothing here
deletes or rewrites a file. Messages are ``i18n.Message``s: English as strings (the command line and
the logs), Korean through ``i18n.render`` where the app shows them.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from .config import ModelSpec
from .i18n import Message

HUB_ORIGINS = ("weights/", "hf-cache", "hub")  # a copy of a Hub repo that `download` can fetch again
RELEASE_ORIGINS = ("weights/", "torch-cache", "download")


class ModelLoadError(RuntimeError):
    """Weights were found but could not be turned into a model; the message names the fix."""


def refetch_fix(spec: ModelSpec, file: Path, origin: str, hub: bool) -> Message:
    """How to replace a damaged weights file, by where it came from."""
    command = f"`python -m senet_demo download {spec.name}`"
    if hub and origin in HUB_ORIGINS:
        if origin == "weights/":
            return Message("checkpoint.fix.refetch_repo", command=command, file=file.name, folder=str(file.parent))
        return Message("checkpoint.fix.refetch_cache", command=command, file=str(file))
    if not hub and origin in RELEASE_ORIGINS and file.suffix != ".safetensors":
        return Message("checkpoint.fix.refetch_release", command=command, arch=spec.arch)
    return Message("checkpoint.fix.export")


def read_header(name: str, file: Path, fix: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, without reading any tensor."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(Message("checkpoint.unreadable", name=name, file=str(file), detail=str(err),
                                     fix=fix)) from err


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
        parts.append(Message("checkpoint.shapes_differ", count=len(mismatched), tensor=first,
                             found=str(list(found[first])), expected=str(list(expected[first])), arch=arch))
    if missing:
        parts.append(Message("checkpoint.tensors_missing", count=len(missing), arch=arch, tensor=missing[0]))
    if unexpected:
        parts.append(Message("checkpoint.tensors_unexpected", count=len(unexpected), arch=arch, tensor=unexpected[0]))
    # a list parameter is joined with "; " in either language
    raise ModelLoadError(Message("checkpoint.mismatch", name=name, file=str(file), arch=arch, parts=parts, fix=fix))


def architecture_fix(folder_config: Path | None) -> Message:
    if folder_config is not None:
        return Message("checkpoint.fix.architecture_config", config=str(folder_config))
    return Message("checkpoint.fix.architecture_spec")


def unknown_architecture(name: str, arch: str, where: str | None = None) -> Message | None:
    """A message if timm has no architecture called ``arch`` (a pretrained tag is ignored); else None.
    ``where`` names where the ARCH was written ("the SPEC" by default)."""
    import timm

    if timm.is_model(arch):
        return None
    base = arch.split(".")[0]
    close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.75)
    hint = Message("checkpoint.did_you_mean", names=", ".join(close)) if close else ""
    command = f"`python -c \"import timm; print(timm.list_models('{base[:4]}*'))\"`"
    return Message("checkpoint.unknown_architecture", name=name, base=base, hint=hint,
                   where=where or Message("checkpoint.the_spec"), command=command)


def labels_mismatch(name: str, labels_file: Path, lines: int, num_classes: int) -> Message:
    return Message("checkpoint.labels_mismatch", name=name, file=str(labels_file), lines=lines, classes=num_classes)


def release_failure(name: str, file: Path, err: Exception, fix: str) -> Message:
    """A timm release file (``.pth``) that ``torch.load(weights_only=True)`` could not read."""
    import pickle

    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text or "Weights only load failed" in text:
        problem = Message("checkpoint.release.pickle")
    else:
        problem = Message("checkpoint.release.corrupt")
    first_line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return Message("checkpoint.release_failure", name=name, file=str(file), problem=problem, detail=first_line,
                   fix=fix)
