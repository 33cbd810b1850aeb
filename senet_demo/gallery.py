"""Labelled image galleries and their persistent feature store.

A gallery is a folder with one sub-folder per label (``gallery/<label>/<file>``).
Each image's forward-pass outputs are stored on disk under
``<cache>/<model>@<weights identity>/<sha256 of the file>.npz``, so a restart
re-embeds nothing and adding one image embeds only that image. Missing entries
are computed in batches with a progress callback.

A stored entry is checked when read (the model identity it was written for, the shapes and dtypes
of that model's outputs, finite values); one that fails is logged with its path and recomputed.
When the store cannot be written (a read-only or full folder) features stay in memory: the
store says so once at start (``FeatureStore.warning``) and every request still gets its answer.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .engine import Engine, Outputs
from .excitation import figure6_blocks
from .images import IMAGE_SUFFIXES, READABLE, WORKING_SIDE, ImageError, decoded_size, load_image
from . import storage
from .storage import LRUCache

log = logging.getLogger(__name__)

BATCH_SIZE = 16
MEMORY_ENTRIES = 20_000  # outputs kept in memory; older ones are read back from disk


@dataclass(frozen=True)
class GalleryItem:
    path: Path
    label: str
    digest: str  # sha256 of the file's bytes: the key of its stored features
    persist: bool = True  # False for a visitor's uploads: features stay in memory, never on disk

    @property
    def id(self) -> str:
        return f"{self.label}/{self.path.name}"


def scan(root: Path) -> list[GalleryItem]:
    """Every image under ``root/<label>/``, sorted by label then file name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Gallery folder {root} does not exist.")
    items = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for path in sorted(label_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(GalleryItem(path, label_dir.name, file_digest(path)))
    return items


def resolve_source(source: str | Path, offline: bool = False) -> Path:
    """A gallery folder, or ``hf-dataset:org/name`` fetched (or found cached) with huggingface_hub; or
    ``index:DIR`` / ``index:hf-dataset:org/name``, the folder of an index built by ``python -m senet_demo
    index`` (see ``built_index``)."""
    text = str(source)
    if text.startswith("index:"):  # a folder, or a Hub dataset repo, holding a built index
        from .built_index import checked_index_folder

        given = text[len("index:"):]
        return checked_index_folder(resolve_source(given, offline=offline), given)
    if not text.startswith("hf-dataset:"):
        return Path(text).expanduser()
    from huggingface_hub import snapshot_download

    repo_id = text[len("hf-dataset:"):]
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=offline))
    except Exception as err:
        raise FileNotFoundError(
            f"Gallery dataset {repo_id!r} is not available{' offline' if offline else ''} ({type(err).__name__}). "
            f"Fix: download it once with network, or give a local folder with one sub-folder per label."
        ) from err


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def gallery_problem(root: Path | str) -> str | None:
    """Why ``root`` cannot serve as a gallery (missing, not a folder, no ``<label>/<image>`` inside), or None."""
    root = Path(root)
    from .built_index import index_problem, is_index_folder

    if is_index_folder(root):  # a built index: its manifest and files, not images
        return index_problem(root)
    if not root.exists():
        return (f"Gallery folder {root} does not exist. Fix: give a folder with one sub-folder per label, "
                f"e.g. --gallery gallery.")
    if not root.is_dir():
        return f"Gallery {root} is not a folder. Fix: give a folder with one sub-folder per label."
    try:
        items = scan(root)
        if not items:
            return f"Gallery folder {root} holds no images in <label>/ sub-folders ({', '.join(sorted(IMAGE_SUFFIXES))})."
        # From the headers, stopping at the first that reads: cheap for a healthy gallery.
        if not any(_header_reads(item.path) for item in items):
            return (f"Gallery folder {root}: none of its {len(items)} image files is a photo this app reads. "
                    f"Fix: give a gallery of {READABLE} photos, one sub-folder per label.")
    except OSError as err:
        return f"Gallery folder {root} cannot be read ({err.strerror or type(err).__name__})."
    return None


def _header_reads(path: Path) -> bool:
    try:
        decoded_size(path.read_bytes())
        return True
    except (ImageError, OSError):
        return False


class FeatureStore:
    """Forward-pass outputs of gallery images, persisted per (model, weights, image)."""

    def __init__(self, engine: Engine, cache_dir: Path | None = None):
        self.engine = engine
        self.cache_dir = Path(cache_dir) if cache_dir else storage.cache_dir("features")
        self._memory = LRUCache(MEMORY_ENTRIES)  # (model key, digest) -> outputs read or computed this run
        # Checked once at start, so an operator learns of a read-only or full cache folder before any
        # visitor does; shown in the Models panel. None when the store can be written.
        self.warning = storage.writable_problem(self.cache_dir)
        if self.warning:
            self.warning = (f"Gallery features cannot be stored: {self.warning}. They are kept in memory "
                            f"and computed again after a restart.")
            log.warning("%s", self.warning)
        else:
            storage.remove_stale_temporaries(self.cache_dir)
        self._write_failed = False

    def kept_excitations(self, model_name: str) -> set[str]:
        """Only the Figure-6 blocks are stored: enough for the paper's analysis, small on disk."""
        return {b.name for b in figure6_blocks(self.engine.registry.se_blocks(model_name))}

    def outputs(
        self,
        model_name: str,
        items: list[GalleryItem],
        progress: Callable[[float, str], None] | None = None,
    ) -> list[Outputs]:
        """Outputs of the items whose images decode, in order; undecodable ones are left out (logged).

        The list is shorter than ``items`` when an image does not decode: to pair outputs with their
        items, use ``outputs_by_digest``.
        """
        found = self.outputs_by_digest(model_name, items, progress)
        return [found[item.digest] for item in items if item.digest in found]

    def outputs_by_digest(
        self,
        model_name: str,
        items: list[GalleryItem],
        progress: Callable[[float, str], None] | None = None,
    ) -> dict[str, Outputs]:
        """Outputs by file digest for every decodable item, computing (batched) and storing only the missing ones."""
        loaded = self.engine.registry.get(model_name)
        key = loaded.key
        # Stored features hold for these weights and for pictures decoded at this working size.
        folder = self.cache_dir / _safe_name(f"{key}@{WORKING_SIDE}px")
        kept = self.kept_excitations(model_name)
        shapes = self._expected_shapes(model_name, kept)
        results: dict[str, Outputs] = {}
        missing = []
        for item in items:
            stored = self._memory.get((key, item.digest))
            if stored is None and item.persist:
                stored = _read(folder / f"{item.digest}.npz", model_name, key, shapes)
            if stored is None:
                missing.append(item)
                continue
            self._memory.put((key, item.digest), stored)
            results[item.digest] = stored
        for start in range(0, len(missing), BATCH_SIZE):
            batch = missing[start:start + BATCH_SIZE]
            if progress:
                progress(start / len(missing), f"Embedding {len(missing)} gallery images with {model_name}")
            images, decoded = [], []
            for item in batch:
                try:
                    images.append(load_image(item.path))
                    decoded.append(item)
                except ImageError as err:
                    log.warning("Skipping %s: %s", item.path, err)
            if not images:
                continue
            for item, out in zip(decoded, self.engine.run_batch(model_name, images)):
                out = replace(out, excitations={n: v for n, v in out.excitations.items() if n in kept},
                              squeezes={}, bottlenecks={})  # the gallery needs no step view
                if item.persist and not self._write_failed:
                    # After one failed write (full disk, read-only folder) the rest of this run stays in memory
                    # rather than logging, and leaving behind, one failure per image.
                    self._write_failed = not _write(folder / f"{item.digest}.npz", out, key)
                self._memory.put((key, item.digest), out)
                results[item.digest] = out
        if progress and missing:
            progress(1.0, "Gallery features ready")
        return results

    def _expected_shapes(self, model_name: str, kept: set[str]) -> dict[str, tuple[int, ...]]:
        """The shape of every array a valid entry of this model holds."""
        loaded = self.engine.registry.get(model_name)
        shapes = {"probs": (loaded.num_classes,), "log_probs": (loaded.num_classes,),
                  "embedding": (_embedding_size(loaded.model),)}
        shapes.update({f"se:{b.name}": (b.channels,) for b in self.engine.registry.se_blocks(model_name)
                       if b.name in kept})
        return shapes


def _embedding_size(model) -> int:
    """Width of timm's pre-logits features (``head_hidden_size`` where a head adds a layer before the classifier)."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def _safe_name(text: str, limit: int = 150) -> str:
    """A folder name for ``text``; a long one keeps its start and ends with a hash of the whole text.

    (Cutting it short instead would drop the weights identity at the end of a model key, so two
    different weights at the same long path would share -- and be served -- each other's features.)
    """
    name = re.sub(r"[^A-Za-z0-9._@-]+", "_", text)
    if len(name) <= limit:
        return name
    return f"{name[:limit - 33]}-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _write(path: Path, out: Outputs, key: str) -> bool:
    """Store one entry with the model identity it belongs to; False when the folder cannot be written."""
    arrays = {"model_key": np.array(key), "probs": out.probs, "log_probs": out.log_probs, "embedding": out.embedding}
    arrays.update({f"se:{name}": vector for name, vector in out.excitations.items()})
    # A name per writer: two requests may store the same entry at once, and with one shared name the
    # first to finish would move the other's half-written file into place (or away from under it).
    return storage.write_or_warn(path, lambda tmp: np.savez(tmp, **arrays), suffix=".npz",
                                 what="gallery features")


def _read(path: Path, model_name: str, key: str, shapes: dict[str, tuple[int, ...]]) -> Outputs | None:
    def read(file: Path) -> dict[str, np.ndarray]:
        with np.load(file, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}

    def check(arrays: dict[str, np.ndarray]) -> str | None:
        stored_key = arrays.get("model_key")
        if stored_key is None or stored_key.shape != () or str(stored_key) != key:
            return f"written for another model or weights ({stored_key}), not {key}"
        for name, shape in shapes.items():
            array = arrays.get(name)
            if array is None:
                return f"no {name!r} array"
            if array.shape != shape or array.dtype.kind != "f":
                return f"{name!r} is {array.dtype}{list(array.shape)}, expected float{list(shape)}"
            if not np.isfinite(array).all():
                return f"{name!r} holds NaN or infinite values"
        return None

    arrays = storage.read_checked(path, read, check, what="gallery features")
    if arrays is None:
        return None
    return Outputs(
        model=model_name,
        probs=arrays["probs"],
        log_probs=arrays["log_probs"],
        embedding=arrays["embedding"],
        excitations={k[3:]: arrays[k] for k in shapes if k.startswith("se:")},
    )
