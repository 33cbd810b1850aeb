"""From a model SPEC to weights on disk.

Resolution order for Hub models: the repo's ``weights/`` folder, then the
Hugging Face cache, then a download from the Hub (``huggingface_hub`` shows a
tqdm bar, which the UI mirrors with ``gr.Progress(track_tqdm=True)``).
Local SOURCEs (a folder or a ``.safetensors`` file) are used as they are.

Only safe formats are accepted: a folder must hold ``model.safetensors``; a
single file must end in ``.safetensors``. Nothing here unpickles anything.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .config import ModelSpec, SpecError

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
HUB_FILES = [CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE]


class WeightsNotFound(RuntimeError):
    """No usable weights for a model; the message names the model and the fix."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a model's weights were found."""

    path: Path  # a folder (config.json + model.safetensors) or a .safetensors file
    origin: str  # "weights/", "hf-cache", "hub" or "local"
    repo_id: str | None  # the Hub repo, for Hub models

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def weights_file(self) -> Path:
        return self.path / WEIGHTS_FILE if self.is_folder else self.path

    @cached_property
    def identity(self) -> str:
        """Fingerprint of the weights' content: the Hub cache's blob name (already a sha256), or a sha256."""
        file = self.weights_file
        blob = file.resolve().name
        if file.is_symlink() and len(blob) == 64 and all(c in "0123456789abcdef" for c in blob):
            return blob[:16]
        with open(file, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def hub_repo_for(spec: ModelSpec) -> str | None:
    """The Hub repo id a SPEC loads from, or None for local SOURCEs."""
    if spec.source is None:
        import timm

        try:
            cfg = timm.models.get_pretrained_cfg(spec.arch, allow_unregistered=False)
        except RuntimeError:  # an unknown architecture or pretrained tag
            cfg = None
        if cfg is None or not cfg.hf_hub_id:
            raise SpecError(
                f"timm knows no Hub weights for {spec.arch!r}. Use a pretrained name such as "
                f"'resnet152d.gluon_in1k', or give a SOURCE: {spec.arch}=hf-hub:org/name or a local path."
            )
        return cfg.hf_hub_id
    if spec.source.startswith("hf-hub:"):
        return spec.source[len("hf-hub:"):]
    return None


def local_folder(repo_id: str, weights_dir: Path) -> Path:
    """The folder under ``weights/`` that holds a Hub repo's files."""
    return weights_dir / repo_id.replace("/", "--")


def resolve(spec: ModelSpec, weights_dir: Path, offline: bool = False) -> ResolvedWeights:
    """Find (or fetch) the weights for ``spec``; raise ``WeightsNotFound`` with the fix."""
    repo_id = hub_repo_for(spec)
    if repo_id is None:
        return _resolve_local(spec)

    folder = local_folder(repo_id, weights_dir)
    if _is_complete(folder):
        return ResolvedWeights(folder, "weights/", repo_id)

    cached = _from_hf_cache(repo_id)
    if cached is not None:
        return ResolvedWeights(cached, "hf-cache", repo_id)

    if offline:
        raise WeightsNotFound(
            f"Model {spec.name!r} is not available offline: no copy in {weights_dir} or in the "
            f"Hugging Face cache. Fix: on a machine with internet run "
            f"`python -m senet_demo download {spec.name}` (it fills weights/), or start without --offline."
        )
    return ResolvedWeights(_download_to_cache(spec, repo_id), "hub", repo_id)


def download(spec: ModelSpec, weights_dir: Path) -> Path:
    """Fetch a Hub model into ``weights/<org>--<name>/`` for offline use; return the folder."""
    repo_id = hub_repo_for(spec)
    if repo_id is None:
        raise SpecError(f"{spec.name!r} is a local SOURCE; there is nothing to download.")
    fix = f"check the network (and that the repo {repo_id!r} exists), then run the command again."
    return _fetch(spec, repo_id, fix, local_dir=local_folder(repo_id, weights_dir))


def _is_complete(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def _from_hf_cache(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return folder if _is_complete(folder) else None


def _download_to_cache(spec: ModelSpec, repo_id: str) -> Path:
    fix = (f"check the network, or copy the weights with `python -m senet_demo download {spec.name}` "
           f"on a machine with internet.")
    return _fetch(spec, repo_id, fix)


def _fetch(spec: ModelSpec, repo_id: str, fix: str, **snapshot_kwargs) -> Path:
    """Download a Hub repo's config and safetensors weights (with tqdm progress); the folder holding them."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, **snapshot_kwargs))
    except Exception as err:  # network errors come in many types; all mean the same to the user
        raise WeightsNotFound(
            f"Could not download {spec.name!r} from the Hugging Face Hub ({type(err).__name__}: {err}). Fix: {fix}"
        ) from err
    if not _is_complete(folder):
        raise WeightsNotFound(f"The Hub repo {repo_id!r} has no {WEIGHTS_FILE}; only safetensors weights are loaded.")
    return folder


def _resolve_local(spec: ModelSpec) -> ResolvedWeights:
    path = Path(spec.source).expanduser()
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise WeightsNotFound(
                f"Model {spec.name!r}: folder {path} has no {WEIGHTS_FILE}. Only safetensors weights are loaded; "
                f"convert a .pth with safetensors.torch.save_file."
            )
        return ResolvedWeights(path.resolve(), "local", None)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsNotFound(
                f"Model {spec.name!r}: {path.name} is not a .safetensors file. Pickled checkpoints are never "
                f"loaded; convert it with safetensors.torch.save_file."
            )
        return ResolvedWeights(path.resolve(), "local", None)
    raise WeightsNotFound(f"Model {spec.name!r}: {path} does not exist.")
