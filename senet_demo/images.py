"""Safe decoding of untrusted images into RGB PIL images.

Everything a visitor sends goes through ``load_image``: size limits are checked
before and after decoding (decompression bombs), and so is the ratio of the sides (a long strip
would make every model's resize enormous), EXIF orientation is applied,
and palette, grayscale, CMYK, 16-bit and alpha images all become 8-bit RGB,
with transparency composited on white; the file's metadata (EXIF, GPS,
comments) is dropped. A picture larger than the models need is decoded at a working
size (``WORKING_SIDE``). Failures raise ``ImageError`` whose
message is safe to show to the visitor: it names the file when there is one,
says what is wrong (for a file that is not a photo, what it looks like) and
what to do about it. The message is an ``i18n.Message``: English as a string, Korean through
``i18n.render(err, "ko")``.
"""
from __future__ import annotations

import hashlib
import io
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import Limits
from .i18n import Message

BACKGROUND = (255, 255, 255)
# Photo formats only: Pillow's other plugins include EPS, which runs Ghostscript on the visitor's file.
DECODABLE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG also opens MPO files
READABLE = Message("image.formats")  # "JPEG, PNG, WebP, GIF, BMP or TIFF"
# The shorter side a decoded picture keeps at least: the default models resize it to 256 px, and few of timm's
# ImageNet models to more than 600. A 12-megapixel phone photo is decoded at 1008×756 instead of 4032×3024,
# so decoding, hashing and resizing it cost a fraction of the full-size work.
WORKING_SIDE = 640


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}  # files read as images

class ImageError(ValueError):
    """An input that is not a usable image; the message is meant for the user."""


def load_image(source, limits: Limits = Limits(), name: str | None = None) -> Image.Image:
    """Decode ``source`` (path, bytes, PIL image or HxW[xC] array) into an RGB image.

    A picture whose shorter side is at least twice ``WORKING_SIDE`` comes back reduced by a whole factor
    (an average over each block of pixels), its shorter side still ``WORKING_SIDE`` or more; a JPEG is
    reduced while it is decoded. ``name`` is how messages call the file; a path's own file name by default.
    """
    if source is None:
        raise ImageError(Message("image.missing"))
    if name is None and isinstance(source, (str, Path)):
        name = Path(source).name
    name = shown_name(name)
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image = _open(source, limits, name)
    _check_pixels(image.size, limits, name)
    try:
        rgb = to_rgb(ImageOps.exif_transpose(image))
    except Exception as err:  # e.g. a broken EXIF block or palette
        raise _error(name, Message("image.undecodable", detail=str(err))) from err
    rgb = to_working_size(rgb)
    # Pixels only: the file's EXIF (camera, GPS position…), comments and profiles would otherwise travel
    # with every image derived from it, into the files the app serves back.
    rgb.info = {}
    return rgb


def to_working_size(image: Image.Image) -> Image.Image:
    """``image`` reduced by the largest whole factor that keeps its shorter side at ``WORKING_SIDE`` or more."""
    factor = min(image.size) // WORKING_SIDE
    return image.reduce(factor) if factor >= 2 else image


def shown_name(name: str | None) -> str | None:
    """A visitor's file name made safe to quote in a message (no markup, no paths, bounded length)."""
    if not name:
        return None
    cleaned = re.sub(r"[^\w .()+-]+", "_", Path(str(name)).name).strip()
    return (cleaned[:60] + "…" if len(cleaned) > 61 else cleaned) or None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; alpha is composited on a white background."""
    if image.mode in ("RGB", "L") and "transparency" in image.info:  # a transparent colour key (PNG tRNS)
        image = image.convert("RGBA")
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _scale_to_8bit(image, full_range=65535.0 if image.mode.startswith("I;16") else None)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBa", "La"):  # premultiplied alpha (Pillow converts La only to LA)
        image = image.convert(image.mode.upper())
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def content_hash(image: Image.Image) -> str:
    """Hash of the decoded pixels: the same picture hits the cache whatever file it came in."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _open(source, limits: Limits, name: str | None) -> Image.Image:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(Message("image.no_such_file", name=name))
        if path.stat().st_size > limits.max_image_bytes:
            raise _error(name, _too_big(path.stat().st_size, limits))
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        raise ImageError(Message("image.unsupported_type", kind=type(source).__name__))
    if len(data) > limits.max_image_bytes:
        raise _error(name, _too_big(len(data), limits))
    if not data:
        raise _error(name, Message("image.empty", formats=READABLE))
    Image.init()  # register every plugin, so the formats named below are known
    with _decoding(data, limits, name):
        image = Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS)
        _check_pixels(image.size, limits, name)  # from the header, before any pixel is decoded
        image.draft(None, (WORKING_SIDE, WORKING_SIDE))  # a JPEG decodes at 1/2, 1/4 or 1/8 scale; others ignore it
        image.load()
    return image


@contextmanager
def _decoding(data: bytes, limits: Limits, name: str | None) -> Iterator[None]:
    """Every way Pillow can fail on ``data``, as an ``ImageError`` that names the problem."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own, larger limit, raised before ours could run
        size = _declared_size(data)
        if size:
            _check_pixels(size, limits, name)
        raise _error(name, Message("image.bomb", limit=limits.max_image_pixels))
    except UnidentifiedImageError:
        raise _error(name, _not_readable(data)) from None
    except Exception as err:  # a decoder can fail in many ways; none may reach the visitor as a traceback
        raise _error(name, Message("image.corrupt", detail=str(err))) from err


# (signature, what it is, whether it is a picture in a format this app does not read)
_SIGNATURES = [
    (b"%PDF", "pdf", False),
    (b"%!PS", "postscript", True),
    (b"\xc5\xd0\xd3\xc6", "postscript", True),
    (b"PK\x03\x04", "zip", False),
    (b"8BPS", "photoshop", True),
    (b"\xff\x4f\xff\x51", "jpeg2000", True),
    (b"\x00\x00\x00\x0cjP  ", "jpeg2000", True),
    (b"II*\x00\x10\x00\x00\x00CR", "cr2", True),
    (b"\x00\x00\x00\x0cJXL ", "jpegxl", True),
    (b"\xff\x0a", "jpegxl", True),
]  # the kinds are keys under "image.kind." in the catalogue ("pdf": "a PDF document")
_HEIC, _HEIF, _AVIF = "heic", "heif", "avif"
_FTYP_BRANDS = {b"heic": _HEIC, b"heix": _HEIC, b"heim": _HEIC, b"heis": _HEIC, b"hevc": _HEIC, b"hevx": _HEIC,
                b"mif1": _HEIF, b"msf1": _HEIF, b"avif": _AVIF, b"avis": _AVIF}


def _not_readable(data: bytes) -> Message:
    """What to tell a visitor whose file no allowed decoder accepts: what it looks like, and what to do."""
    kind, picture = None, False
    for signature, what, is_picture in _SIGNATURES:
        if data.startswith(signature):
            kind, picture = what, is_picture
            break
    if kind is None and data[4:8] == b"ftyp":  # ISO base media: HEIC/AVIF photos, MP4/MOV videos
        brand = data[8:12]
        kind, picture = (_FTYP_BRANDS[brand], True) if brand in _FTYP_BRANDS else ("video", False)
    if kind is None and b"<svg" in data[:1024].lower():
        kind, picture = "svg", True
    if kind is None and _looks_like_text(data[:1024]):
        kind = "text"
    if kind is None:
        return Message("image.not_an_image", formats=READABLE)
    what = Message(f"image.kind.{kind}")
    if picture:
        return Message("image.unreadable_picture", kind=what)
    return Message("image.not_an_image_like", kind=what, formats=READABLE)


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut in two at the end
            return False
        text = head[:err.start].decode("utf-8")
    return bool(text) and all(c.isprintable() or c in "\r\n\t\f" for c in text)


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header alone, without Pillow's decompression-bomb check."""
    for fmt in DECODABLE_FORMATS:
        factory, accept = Image.OPEN[fmt]
        if accept is None or accept(data[:16]):
            try:
                return factory(io.BytesIO(data), "").size
            except Exception:
                continue
    return None


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(Message("image.bad_array", shape=str(array.shape)))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype != np.uint8:
        array = np.asarray(array, dtype=np.float64)
        top = 1.0 if array.max(initial=0) <= 1.0 else (255.0 if array.max() <= 255 else 65535.0)
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def _scale_to_8bit(image: Image.Image, full_range: float | None = None) -> Image.Image:
    """16-bit modes have a known range; for 32-bit int/float modes guess it from the values."""
    array = np.asarray(image, dtype=np.float32)  # one float32 copy, scaled in place: 4 bytes a pixel at most
    top = full_range or (65535.0 if array.max(initial=0) > 255 else 255.0)
    array *= 255.0 / top
    array += 0.5
    np.clip(array, 0, 255, out=array)
    return Image.fromarray(array.astype(np.uint8), mode="L")


def decoded_size(data: bytes, limits: Limits = Limits(), name: str | None = None) -> tuple[str, tuple[int, int]]:
    """The format and the size ``load_image`` would decode ``data`` at, from the header alone (nothing is
    decoded): a JPEG at the reduced scale it is decoded at. Raises ``ImageError`` for what ``load_image``
    would refuse from the header (not an image, too many pixels, too small, too narrow)."""
    name = shown_name(name)
    if not data:
        raise _error(name, Message("image.empty", formats=READABLE))
    Image.init()
    with _decoding(data, limits, name), Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS) as image:
        _check_pixels(image.size, limits, name)
        image.draft(None, (WORKING_SIDE, WORKING_SIDE))
        return image.format, image.size


# The file suffix an image is stored under, from the format its content decodes as (never the name it came with).
FORMAT_SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp",
                   "TIFF": ".tif"}


def _check_pixels(size: tuple[int, int], limits: Limits, name: str | None = None) -> None:
    width, height = size
    if width * height > limits.max_image_pixels:
        raise _error(name, Message("image.too_many_pixels", width=width, height=height, pixels=width * height,
                                   limit=limits.max_image_pixels))
    if min(width, height) < limits.min_image_side:
        raise _error(name, Message("image.too_small", width=width, height=height, limit=limits.min_image_side))
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise _error(name, Message("image.too_narrow", width=width, height=height,
                                   ratio=max(width, height) / min(width, height), limit=limits.max_aspect_ratio))


def _too_big(size: int, limits: Limits) -> Message:
    return Message("image.too_big", size=size_text(size), limit=size_text(limits.max_image_bytes))


def size_text(size: int) -> Message:
    """A byte count as a visitor reads it: MB from 1 MB up, exact bytes below."""
    return Message("size.mb", mb=size / 2**20) if size >= 2**20 else Message("size.bytes", count=size)


def _error(name: str | None, problem: Message) -> ImageError:
    """``problem`` is a predicate ("is an empty file …"); the subject is the file's name or "The image"."""
    subject = Message("image.subject.named", name=name) if name else Message("image.subject.unnamed")
    return ImageError(Message("image.error", subject=subject, problem=problem))
