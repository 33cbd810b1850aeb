"""Visitor uploads that extend the gallery for one session only.

Uploads are untrusted: a zip member with an absolute path or ``..`` rejects
the whole zip; counts and uncompressed sizes are capped; every file must
decode as an image (others are skipped with a message); names are reduced to
safe characters. Files land in a per-session temporary folder that no other
visitor can reach and that is deleted when the session ends (or, if it never
ends cleanly, at the next start a day later). Their features are kept in
memory only, never in the shared on-disk feature store.
"""
from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

from .config import Limits
from .gallery import IMAGE_SUFFIXES, GalleryItem, file_digest
from .images import ImageError, load_image

DEFAULT_LABEL = "uploaded"
MAX_SKIP_MESSAGES = 10
STALE_SESSION_SECONDS = 24 * 3600  # folders older than this are left from sessions that never ended cleanly


class UploadError(ValueError):
    """An upload refused as a whole; the message is for the visitor."""


SESSIONS_ROOT = Path(tempfile.gettempdir()) / "senet-explorer-sessions"


def new_session_dir() -> Path:
    """A fresh folder with an unguessable name, for one visitor's uploads."""
    SESSIONS_ROOT.mkdir(parents=True, exist_ok=True)
    # 128 bits from the OS's CSPRNG, so no other process or visitor can guess where the files are
    # (mkdtemp's own suffix is 8 characters from random.Random).
    return Path(tempfile.mkdtemp(prefix=f"session-{secrets.token_hex(16)}-", dir=SESSIONS_ROOT))


def remove_session_dir(path: Path | str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale_sessions(max_age_s: float = STALE_SESSION_SECONDS) -> int:
    """Delete session folders left by sessions that never ended (a crash, a restart); return how many."""
    if not SESSIONS_ROOT.is_dir():
        return 0
    cutoff = time.time() - max_age_s
    stale = [p for p in SESSIONS_ROOT.glob("session-*") if p.is_dir() and p.stat().st_mtime < cutoff]
    for folder in stale:
        remove_session_dir(folder)
    return len(stale)


def safe_name(text: str, fallback: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80]
    return cleaned or fallback


def ingest(files: list[str | Path], session_dir: Path, label: str = DEFAULT_LABEL,
           limits: Limits = Limits()) -> tuple[list[GalleryItem], list[str]]:
    """Copy valid images from ``files`` (images or zips) into ``session_dir``; return items and messages."""
    session_dir = Path(session_dir)
    default_label = safe_name(label or DEFAULT_LABEL, DEFAULT_LABEL)
    candidates: list[tuple[str, str, bytes]] = []  # (label, file name, bytes)
    total = 0
    items, messages = [], []
    for file in files:
        path = Path(file)
        if zipfile.is_zipfile(path):
            entries, skipped = _zip_entries(path, default_label, limits)
            messages += [f"Skipped {name}: not an image file." for name in skipped[:MAX_SKIP_MESSAGES]]
            if len(skipped) > MAX_SKIP_MESSAGES:
                messages.append(f"… and {len(skipped) - MAX_SKIP_MESSAGES} more files that are not images.")
        else:
            if total + path.stat().st_size > limits.max_upload_total_bytes:  # before reading it into memory
                raise UploadError(_too_large(limits))
            entries = [(default_label, path.name, path.read_bytes())]
        for entry in entries:
            total += len(entry[2])
            candidates.append(entry)
        if len(candidates) > limits.max_upload_files:
            raise UploadError(f"Too many files: at most {limits.max_upload_files} images per upload.")
        if total > limits.max_upload_total_bytes:
            raise UploadError(_too_large(limits))

    for entry_label, name, data in candidates:
        try:
            load_image(data, limits)
        except ImageError as err:
            messages.append(f"Skipped {name}: {err}")
            continue
        folder = session_dir / safe_name(entry_label, default_label)
        folder.mkdir(parents=True, exist_ok=True)
        target = _unique(folder / safe_name(name, "image"))
        target.write_bytes(data)
        items.append(GalleryItem(target, folder.name, file_digest(target), persist=False))
    messages.insert(0, f"Added {len(items)} image(s) to your session's gallery (only you can see them).")
    return items, messages


def _too_large(limits: Limits) -> str:
    return f"The upload is too large: at most {limits.max_upload_total_bytes // 2**20} MB in all."


def _zip_entries(path: Path, default_label: str, limits: Limits) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """(label, file name, bytes) of the zip's images, and the names of the other files (skipped)."""
    try:
        return _read_zip(path, default_label, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as err:
        # a corrupt member (bad CRC, truncated data) or an unsupported compression method
        raise UploadError(f"The zip could not be read ({err}).") from err


def _read_zip(path: Path, default_label: str, limits: Limits) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    with zipfile.ZipFile(path) as archive:
        if len(archive.infolist()) > 10 * limits.max_upload_files:  # a huge directory of tiny entries
            raise UploadError(f"The zip lists too many entries: at most {limits.max_upload_files} images.")
        infos = [info for info in archive.infolist() if not info.is_dir()]
        for info in infos:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise UploadError(f"The zip was rejected: entry {info.filename!r} points outside the archive.")
        infos = [i for i in infos if not _hidden(i.filename)]  # .DS_Store, ._photo.jpg, __MACOSX/: skipped silently
        skipped = [PurePosixPath(i.filename).name for i in infos
                   if Path(i.filename).suffix.lower() not in IMAGE_SUFFIXES]
        infos = [i for i in infos if Path(i.filename).suffix.lower() in IMAGE_SUFFIXES]
        if len(infos) > limits.max_upload_files:
            raise UploadError(f"Too many files in the zip: at most {limits.max_upload_files} images.")
        if sum(i.file_size for i in infos) > limits.max_upload_total_bytes:
            raise UploadError(f"The zip unpacks to more than {limits.max_upload_total_bytes // 2**20} MB.")
        entries = []
        for info in infos:
            with archive.open(info) as member:
                data = member.read(limits.max_image_bytes + 1)  # never trust the declared size
            if len(data) > limits.max_image_bytes:
                raise UploadError(f"{info.filename} is larger than {limits.max_image_bytes // 2**20} MB.")
            parts = PurePosixPath(info.filename).parts
            label = parts[-2] if len(parts) >= 2 else default_label
            entries.append((label, parts[-1], data))
        return entries, skipped


def _hidden(filename: str) -> bool:
    parts = PurePosixPath(filename).parts
    return not parts or parts[-1].startswith(".") or parts[0] == "__MACOSX"


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate
