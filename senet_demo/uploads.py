"""Visitor uploads that extend the gallery for one session only.

Uploads are untrusted: a zip member with an absolute path or ``..`` rejects
the whole zip (nothing is ever extracted by its own path: a folder name only
becomes a sanitised label); counts and uncompressed sizes are capped, first
from the zip's directory (before anything is extracted), then while reading (a
directory can lie); the pixels all the pictures would decode to are summed from
their headers and capped before any is decoded; a session's files are capped in
bytes; every file must decode as an image (others are skipped with a message)
and is stored under the suffix of the format it decodes as; names are reduced
to safe characters. Files land in a per-session temporary folder that no other
visitor can reach and that is deleted when the session ends, or when the visitor
asks (``forget``, which also deletes the copies the web server kept), or, if it
never ends cleanly, at the next start a day later. Their features are kept in
memory only, never in the shared on-disk feature store. Messages are ``i18n.Message``s: English as
strings, Korean through ``i18n.render``.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath

from .config import Limits
from .gallery import GalleryItem
from .i18n import Message, message_of
from .images import FORMAT_SUFFIXES, IMAGE_SUFFIXES, ImageError, decoded_size, load_image, shown_name, size_text

DEFAULT_LABEL = "uploaded"
MAX_SKIP_MESSAGES = 10
STALE_SESSION_SECONDS = 24 * 3600  # folders older than this are left from sessions that never ended cleanly


class UploadError(ValueError):
    """An upload refused as a whole; the message (an ``i18n.Message``) is for the visitor."""


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


def gradio_upload_root() -> Path:
    """Where Gradio keeps its own copy of every uploaded file (``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def forget(session_dir: Path | str | None, uploaded: list[str | Path] | None = ()) -> int:
    """Delete a visitor's uploads: the session folder, and the copies Gradio kept of the files the
    visitor sent (``uploaded``: the paths Gradio passed to the upload handler), which Gradio would
    otherwise serve by URL for a day. Only paths inside Gradio's upload folder are touched, so a path
    that came from anywhere else deletes nothing. Returns how many of Gradio's copies were deleted."""
    remove_session_dir(session_dir)
    root, removed = gradio_upload_root(), 0
    for name in uploaded or ():
        if not name:
            continue
        path = Path(name).resolve()
        if not path.is_relative_to(root) or path == root or not path.is_file():
            continue
        path.unlink(missing_ok=True)
        removed += 1
        folder = path.parent  # Gradio keeps each file in a folder of its own, named by its hash
        if folder != root and folder.is_relative_to(root) and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def session_bytes(session_dir: Path | str | None) -> int:
    """Bytes of the files a session holds now."""
    if not session_dir or not Path(session_dir).is_dir():
        return 0
    return sum(p.stat().st_size for p in Path(session_dir).rglob("*") if p.is_file())


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
           limits: Limits = Limits()) -> tuple[list[GalleryItem], list[Message]]:
    """Copy valid images from ``files`` (images or zips) into ``session_dir``; return items and messages."""
    session_dir = Path(session_dir)
    default_label = safe_name(label or DEFAULT_LABEL, DEFAULT_LABEL)
    candidates: list[tuple[str, str, bytes]] = []  # (label, file name, bytes)
    total = 0
    items, messages = [], []
    for file in files:
        path = Path(file)
        if not path.is_file():
            name = shown_name(path.name)
            subject = Message("upload.subject.named", name=name) if name else Message("upload.subject.unnamed")
            raise UploadError(Message("upload.not_received", subject=subject))
        if _looks_like_zip(path) and not zipfile.is_zipfile(path):
            raise UploadError(Message("upload.zip_truncated", name=shown_name(path.name)))
        if zipfile.is_zipfile(path):
            entries, skipped = _zip_entries(path, default_label, limits)
            messages += [Message("upload.skipped_not_image", name=name) for name in skipped[:MAX_SKIP_MESSAGES]]
            if len(skipped) > MAX_SKIP_MESSAGES:
                messages.append(Message("upload.skipped_more", count=len(skipped) - MAX_SKIP_MESSAGES))
        else:
            size = path.stat().st_size
            if total + size > limits.max_upload_total_bytes:  # before reading it into memory
                raise UploadError(_too_large(limits))
            if size > limits.max_image_bytes:
                messages.append(Message("upload.skipped_too_big", name=shown_name(path.name), size=size_text(size),
                                        limit=size_text(limits.max_image_bytes)))
                continue
            entries = [(default_label, path.name, path.read_bytes())]
        for entry in entries:
            total += len(entry[2])
            candidates.append(entry)
        if len(candidates) > limits.max_upload_files:
            raise UploadError(Message("upload.too_many_files", limit=limits.max_upload_files))
        if total > limits.max_upload_total_bytes:
            raise UploadError(_too_large(limits))

    held = session_bytes(session_dir)
    if held + total > limits.max_session_bytes:
        raise UploadError(Message("upload.session_full", total=size_text(held + total),
                                  limit=size_text(limits.max_session_bytes)))
    # The decoding work, from the headers, before anything is decoded.
    headers, pixels = [], 0
    for entry_label, name, data in candidates:
        try:
            fmt, (width, height) = decoded_size(data, limits, name=name)
        except ImageError as err:
            messages.append(_skipped(err))
            continue
        pixels += width * height
        headers.append((entry_label, name, data, fmt))
    if pixels > limits.max_upload_pixels:
        raise UploadError(Message("upload.too_many_pixels", pixels=pixels, limit=limits.max_upload_pixels))

    for entry_label, name, data, fmt in headers:
        try:
            load_image(data, limits, name=name)
        except ImageError as err:
            messages.append(_skipped(err))
            continue
        folder = session_dir / safe_name(entry_label, default_label)
        folder.mkdir(parents=True, exist_ok=True)
        # stored under the suffix of what it is, so every later reader sees the format it holds
        stem = safe_name(PurePosixPath(name).stem, "image")
        target = _unique(folder / f"{stem}{FORMAT_SUFFIXES.get(fmt, '.img')}")
        try:
            target.write_bytes(data)
        except OSError as err:  # a full or read-only temporary folder: the upload as a whole is not added
            for written in [target, *(item.path for item in items)]:
                written.unlink(missing_ok=True)
            raise UploadError(Message("upload.store_failed", reason=err.strerror or type(err).__name__)) from err
        items.append(GalleryItem(target, folder.name, hashlib.sha256(data).hexdigest(), persist=False))
    messages.insert(0, Message("upload.added", count=len(items)))
    return items, messages


def _skipped(err: ImageError) -> Message:
    """"Skipped" and the image's own message, which stays translatable."""
    return Message("upload.skipped_image", error=message_of(err) or str(err))


def _too_large(limits: Limits) -> Message:
    return Message("upload.too_large", limit=size_text(limits.max_upload_total_bytes))


def _zip_entries(path: Path, default_label: str, limits: Limits) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """(label, file name, bytes) of the zip's images, and the names of the other files (skipped)."""
    try:
        return _read_zip(path, default_label, limits)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as err:
        # a corrupt member (bad CRC, truncated data, a size in the directory that the data does not
        # match) or an unsupported compression method
        raise UploadError(Message("upload.zip_damaged", name=shown_name(path.name), detail=_quoted(str(err)))) from err


def _read_zip(path: Path, default_label: str, limits: Limits) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    zip_name = shown_name(path.name)
    with zipfile.ZipFile(path) as archive:
        listed = archive.infolist()
        if len(listed) > 10 * limits.max_upload_files:  # a huge directory of tiny entries: refuse unread
            raise UploadError(Message("upload.zip_lists_too_many", name=zip_name, count=len(listed),
                                      limit=limits.max_upload_files))
        infos = [info for info in listed if not info.is_dir()]
        for info in infos:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            # A drive letter ("C:") is a path outside; a colon elsewhere ("Trip: Rome 2024/") is only a name.
            if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and _DRIVE.fullmatch(parts[0])):
                raise UploadError(Message("upload.zip_escapes", name=zip_name, entry=_quoted(info.filename)))
        if any(info.flag_bits & 0x1 for info in infos):  # bit 0: the member is encrypted
            raise UploadError(Message("upload.zip_encrypted", name=zip_name))
        infos = [i for i in infos if not _hidden(i.filename)]  # .DS_Store, ._photo.jpg, __MACOSX/: skipped silently
        skipped = [_quoted(PurePosixPath(i.filename).name) for i in infos
                   if Path(i.filename).suffix.lower() not in IMAGE_SUFFIXES]
        infos = [i for i in infos if Path(i.filename).suffix.lower() in IMAGE_SUFFIXES]
        if len(infos) > limits.max_upload_files:
            raise UploadError(Message("upload.zip_too_many_images", name=zip_name, count=len(infos),
                                      limit=limits.max_upload_files))
        for info in infos:  # sizes as the directory states them, before anything is extracted
            if info.file_size > limits.max_image_bytes:
                raise UploadError(_member_too_big(zip_name, info.filename, info.file_size, limits))
        if sum(i.file_size for i in infos) > limits.max_upload_total_bytes:
            raise UploadError(Message("upload.zip_too_large", name=zip_name,
                                      limit=size_text(limits.max_upload_total_bytes)))
        entries = []
        for info in infos:
            with archive.open(info) as member:
                data = member.read(limits.max_image_bytes + 1)  # never trust the declared size
            if len(data) > limits.max_image_bytes:
                raise UploadError(_member_too_big(zip_name, info.filename, len(data), limits))
            parts = PurePosixPath(info.filename).parts
            label = parts[-2] if len(parts) >= 2 else default_label
            entries.append((label, parts[-1], data))
        return entries, skipped


_DRIVE = re.compile(r"[A-Za-z]:")


def _looks_like_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def _member_too_big(zip_name: str, member: str, size: int, limits: Limits) -> Message:
    most = limits.max_image_bytes
    # most + 1: a capped read, so only "more than" is known
    amount = Message("upload.more_than", size=size_text(most)) if size == most + 1 else size_text(size)
    return Message("upload.member_too_big", name=zip_name, member=_quoted(member), amount=amount,
                   limit=size_text(most))


def _quoted(text: str, limit: int = 80) -> str:
    """A name from inside an upload, safe to quote: no markup, bounded length."""
    cleaned = re.sub(r"[^\w ./()+'-]+", "_", text)
    return cleaned[:limit] + "…" if len(cleaned) > limit + 1 else cleaned


def _hidden(filename: str) -> bool:
    parts = PurePosixPath(filename).parts
    return not parts or parts[-1].startswith(".") or parts[0] == "__MACOSX"


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{n}{path.suffix}")
        n += 1
    return candidate
