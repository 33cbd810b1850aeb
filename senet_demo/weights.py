"""From a model SPEC to weights on disk.

Resolution order for Hub models: the repo's ``weights/`` folder, then the
Hugging Face cache, then a download from the Hub (``huggingface_hub`` shows a
tqdm bar, which the UI mirrors with ``gr.Progress(track_tqdm=True)``).
Local SOURCEs (a folder or a ``.safetensors`` file) are used as they are.

Models whose timm weights are a release file rather than a Hub repo (the
legacy SENets, e.g. ``legacy_seresnet152.in1k``) are found in ``weights/<ARCH>/``,
then torch's cache, then downloaded; timm reads them with ``weights_only=True``.

Only safe formats are accepted: a folder must hold ``model.safetensors``; a
user's single file must end in ``.safetensors``. Nothing here unpickles anything.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from .config import ModelSpec, SpecError
from .storage import cache_dir, read_checked, write_or_warn

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
HUB_FILES = [CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE]

log = logging.getLogger(__name__)


class WeightsNotFound(RuntimeError):
    """No usable weights for a model; the message names the model and the fix.

    ``reason`` says why in one word, so a page can put it in a short sentence of its own and keep the
    full message one click away: ``offline`` (not on disk, and the app was started with --offline),
    ``hub-offline`` (HF_HUB_OFFLINE=1 is set), ``unreachable`` (the download failed on the network),
    ``missing`` (a local SOURCE that is not there), ``unsafe`` (not safetensors) or ``download``
    (any other failed download)."""

    def __init__(self, message: str, reason: str = "missing"):
        super().__init__(message)
        self.reason = reason


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
        if file.is_symlink() and _is_sha256(blob):
            return blob[:16]
        return remembered_sha256(file)[:16]


IDENTITY_RECORDS = 256  # files whose sha256 is remembered
RACY_NS = 3_000_000_000  # files changed this recently are hashed every time (FAT keeps times to 2 s)


def remembered_sha256(file: Path) -> str:
    """The file's sha256, read once and then remembered by its stat signature, so that a restart does
    not read a large checkpoint again. Any write to the file changes its ctime, which no program can
    set back, so a changed file is always hashed afresh."""
    stat = file.stat()
    key = str(file.resolve())
    signature = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]
    store = _identity_store()
    with _IDENTITY_LOCK:
        records = _read_records(store)
        record = records.get(key)
        if isinstance(record, dict) and record.get("signature") == signature and _is_sha256(record.get("sha256")):
            return record["sha256"]
    started = time.time_ns()
    digest = file_sha256(file)
    if started - stat.st_ctime_ns < RACY_NS:
        return digest  # just written: a rewrite within the clock's tick would leave the same signature
    with _IDENTITY_LOCK:
        records = _read_records(store)
        records.pop(key, None)
        records[key] = {"signature": signature, "sha256": digest}
        kept = json.dumps(dict(list(records.items())[-IDENTITY_RECORDS:]))
        # another process reads the old or the new records, never half of them; a read-only home or a full
        # disk is logged, and the file is hashed again next time
        write_or_warn(store, lambda tmp: tmp.write_text(kept), what="weights hash store")
    return digest


def file_sha256(file: Path) -> str:
    with open(file, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _is_sha256(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


_IDENTITY_LOCK = threading.Lock()


def _identity_store() -> Path:
    return cache_dir("weights-sha256.json")


def _read_records(store: Path) -> dict:
    """The remembered hashes; a damaged store (empty, truncated, not a JSON object) is logged and dropped.
    Each record is checked again where it is used."""
    records = read_checked(store, lambda file: json.loads(file.read_text(encoding="utf-8")),
                           lambda value: None if isinstance(value, dict) else "not a JSON object",
                           what="weights hash store")
    return records or {}


def _timm_cfg(spec: ModelSpec):
    import timm

    try:
        return timm.models.get_pretrained_cfg(spec.arch, allow_unregistered=False)
    except RuntimeError:  # an unknown architecture or pretrained tag
        return None


def release_url_for(spec: ModelSpec) -> str | None:
    """For an ``ARCH`` whose timm weights are a release file rather than a Hub repo
    (e.g. ``legacy_seresnet152.in1k``): that file's URL; else None."""
    if spec.source is not None:
        return None
    cfg = _timm_cfg(spec)
    return cfg.url if cfg is not None and not cfg.hf_hub_id and cfg.url else None


def is_downloadable(spec: ModelSpec) -> bool:
    """Whether the weights come from the network (a Hub repo or a timm release file)."""
    return release_url_for(spec) is not None or hub_repo_for(spec) is not None


def hub_repo_for(spec: ModelSpec) -> str | None:
    """The Hub repo id a SPEC loads from, or None for local SOURCEs and timm release files."""
    if spec.source is None:
        cfg = _timm_cfg(spec)
        if cfg is not None and not cfg.hf_hub_id and cfg.url:
            return None
        if cfg is None or not cfg.hf_hub_id:
            from .checkpoint import unknown_architecture

            unknown = unknown_architecture(spec.name, spec.arch)
            if unknown:
                raise SpecError(unknown)
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


def find_local(spec: ModelSpec, weights_dir: Path) -> ResolvedWeights | None:
    """The weights already on this machine (weights/, the Hugging Face or torch cache, a local SOURCE), or
    None; never touches the network. A local SOURCE that is missing or unsafe raises ``WeightsNotFound``."""
    url = release_url_for(spec)
    if url is not None:
        local = release_file(spec, url, weights_dir)
        if local.is_file():
            return ResolvedWeights(local, "weights/", None)
        cached = _torch_cache_file(local.name)
        return ResolvedWeights(cached, "torch-cache", None) if cached.is_file() else None
    repo_id = hub_repo_for(spec)
    if repo_id is None:
        return _resolve_local(spec)
    folder = local_folder(repo_id, weights_dir)
    if _is_complete(folder):
        return ResolvedWeights(folder, "weights/", repo_id)
    cached = _from_hf_cache(repo_id)
    return ResolvedWeights(cached, "hf-cache", repo_id) if cached is not None else None


def resolve(spec: ModelSpec, weights_dir: Path, offline: bool = False) -> ResolvedWeights:
    """Find (or fetch) the weights for ``spec``; raise ``WeightsNotFound`` with the fix. ``offline`` is
    the app's --offline: nothing is downloaded, and the message says so."""
    found = find_local(spec, weights_dir)
    if found is not None:
        return found
    url = release_url_for(spec)
    if url is not None:
        local = release_file(spec, url, weights_dir)
        if offline:
            raise WeightsNotFound(
                f"Model {spec.name!r} is not available offline: no {local.name} in {local.parent} or in torch's "
                f"cache. Fix: on a machine with internet run `python -m senet_demo download {spec.name}`, or start "
                f"without --offline.", reason="offline")
        return ResolvedWeights(_fetch_release(spec, url, _torch_cache_file(local.name)), "download", None)
    repo_id = hub_repo_for(spec)
    if offline:
        raise WeightsNotFound(
            f"Model {spec.name!r} is not available offline: no copy in {weights_dir} or in the "
            f"Hugging Face cache.{_only_pickles_note(local_folder(repo_id, weights_dir))} Fix: on a machine with "
            f"internet run `python -m senet_demo download {spec.name}` (it fills weights/), or start without "
            f"--offline.", reason="offline")
    return ResolvedWeights(_download_to_cache(spec, repo_id), "hub", repo_id)


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set: huggingface_hub then refuses every download, --offline or not."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


REACHABLE, UNREACHABLE, NOT_ON_HUB = "reachable", "unreachable", "not-on-hub"
PROBE_TIMEOUT_S = 3.0  # a reachable Hub answers a HEAD well within this; an unreachable one must not hold the page


def probe_download(spec: ModelSpec, timeout: float = PROBE_TIMEOUT_S, endpoint: str | None = None) -> str:
    """Whether the place ``spec`` downloads from answers: ``REACHABLE``, ``UNREACHABLE`` or ``NOT_ON_HUB``
    (the Hub answers, but has no such repo). One HEAD request with a short timeout; reads nothing."""
    import urllib.error
    import urllib.request

    url = release_url_for(spec)
    if url is None:
        from huggingface_hub import constants

        url = f"{(endpoint or constants.ENDPOINT).rstrip('/')}/api/models/{hub_repo_for(spec)}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return REACHABLE
    except urllib.error.HTTPError as err:  # an answer: the server is there
        return NOT_ON_HUB if err.code == 404 and release_url_for(spec) is None else REACHABLE
    except (OSError, ValueError):  # no DNS, refused, timed out, a proxy that does not answer
        return UNREACHABLE


def download(spec: ModelSpec, weights_dir: Path) -> Path:
    """Fetch a Hub model into ``weights/<org>--<name>/`` (a timm release file into ``weights/<ARCH>/``)
    for offline use; return where it went."""
    url = release_url_for(spec)
    if url is not None:
        return _fetch_release(spec, url, release_file(spec, url, weights_dir))
    repo_id = hub_repo_for(spec)
    if repo_id is None:
        raise SpecError(f"{spec.name!r} is a local SOURCE; there is nothing to download.")
    fix = f"check the network (and that the repo {repo_id!r} exists), then run the command again."
    return _fetch(spec, repo_id, fix, local_dir=local_folder(repo_id, weights_dir))


PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl", ".pickle")


def _only_pickles_note(folder: Path) -> str:
    """Why a weights/ folder that is there was passed over."""
    if not folder.is_dir() or (folder / WEIGHTS_FILE).is_file():
        return ""
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        return ""
    return (f" ({folder} holds no {WEIGHTS_FILE}, only {', '.join(pickles)}: pickled weights are never loaded, "
            f"since unpickling can run code.)")


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

    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, **snapshot_kwargs))
    except OfflineModeIsEnabled as err:
        raise WeightsNotFound(
            f"Could not download {spec.name!r}: HF_HUB_OFFLINE=1 is set, so nothing is downloaded. Fix: unset "
            f"HF_HUB_OFFLINE, or on a machine with internet run `python -m senet_demo download {spec.name}` and "
            f"copy weights/ here.", reason="hub-offline") from err
    except Exception as err:  # network errors come in many types; all mean the same to the user
        # The exception chain (often a dozen lines of ConnectError) goes to the log, not to the visitor.
        log.warning("Download of %s from the Hugging Face Hub failed: %r", spec.name, err)
        reason = "unreachable" if _is_network_error(err) else "download"
        what = "the Hub cannot be reached" if reason == "unreachable" else type(err).__name__
        raise WeightsNotFound(
            f"Could not download {spec.name!r} from the Hugging Face Hub ({what}). Fix: {fix}", reason=reason
        ) from err
    if not _is_complete(folder):
        raise WeightsNotFound(f"The Hub repo {repo_id!r} has no {WEIGHTS_FILE}; only safetensors weights are loaded.",
                              reason="unsafe")
    return folder


def _is_network_error(err: BaseException) -> bool:
    """Whether a failed download failed on the network (anywhere in its chain of causes)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, (OSError, TimeoutError, LocalEntryNotFoundError)) or type(err).__name__ in (
                "ConnectError", "ConnectTimeout", "ReadTimeout", "ProxyError", "ConnectionError"):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def release_file(spec: ModelSpec, url: str, weights_dir: Path) -> Path:
    """Where ``weights/`` keeps a timm release file: ``weights/<ARCH>/<file name>``."""
    return weights_dir / spec.arch / Path(urlparse(url).path).name


def _torch_cache_file(name: str) -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _fetch_release(spec: ModelSpec, url: str, target: Path) -> Path:
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=True)  # tqdm bar, mirrored in the UI
    except Exception as err:  # network errors come in many types; all mean the same to the user
        log.warning("Download of %s from %s failed: %r", spec.name, url, err)
        reason = "unreachable" if _is_network_error(err) else "download"
        raise WeightsNotFound(
            f"Could not download {spec.name!r} from {url} ({type(err).__name__}). Fix: check the network.",
            reason=reason) from err
    return target


def _resolve_local(spec: ModelSpec) -> ResolvedWeights:
    path = Path(spec.source).expanduser()
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise WeightsNotFound(
                f"Model {spec.name!r}: folder {path} has no {WEIGHTS_FILE}. Only safetensors weights are loaded; "
                f"convert a .pth with safetensors.torch.save_file.", reason="unsafe"
            )
        return ResolvedWeights(path.resolve(), "local", None)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsNotFound(
                f"Model {spec.name!r}: {path.name} is not a .safetensors file. Pickled checkpoints are never "
                f"loaded; convert it with safetensors.torch.save_file.", reason="unsafe"
            )
        return ResolvedWeights(path.resolve(), "local", None)
    raise WeightsNotFound(f"Model {spec.name!r}: {path} does not exist.")
