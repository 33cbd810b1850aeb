"""Safe decoding of untrusted images into RGB PIL images.

Everything a visitor sends goes through ``load_image``: size limits are checked
before and after decoding (decompression bombs), EXIF orientation is applied,
and palette, grayscale, CMYK, 16-bit and alpha images all become 8-bit RGB,
with transparency composited on white. Failures raise ``ImageError`` whose
message is safe to show to the visitor.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import Limits

BACKGROUND = (255, 255, 255)
# Photo formats only: Pillow's other plugins include EPS, which runs Ghostscript on the visitor's file.
DECODABLE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG also opens MPO files


class ImageError(ValueError):
    """An input that is not a usable image; the message is meant for the user."""


def load_image(source, limits: Limits = Limits()) -> Image.Image:
    """Decode ``source`` (path, bytes, PIL image or HxW[xC] array) into an RGB image."""
    if source is None:
        raise ImageError("No image given. Upload a photo or pick an example.")
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, np.ndarray):
        image = _from_array(source)
    else:
        image = _open(source, limits)
    _check_pixels(image.size, limits)
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except Exception as err:  # e.g. a broken EXIF block or palette
        raise ImageError(f"The image could not be decoded ({err}). Try re-saving it as JPEG or PNG.") from err


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


def _open(source, limits: Limits) -> Image.Image:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"No such file: {path.name}")
        if path.stat().st_size > limits.max_image_bytes:
            raise ImageError(_too_big(path.stat().st_size, limits))
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        raise ImageError(f"Unsupported input of type {type(source).__name__}.")
    if len(data) > limits.max_image_bytes:
        raise ImageError(_too_big(len(data), limits))
    if not data:
        raise ImageError("The file is empty.")
    Image.init()  # register every plugin, so the formats named below are known
    try:
        image = Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS)
        _check_pixels(image.size, limits)  # from the header, before any pixel is decoded
        image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"The image is too large to decode safely (limit {limits.max_image_pixels:,} pixels).")
    except UnidentifiedImageError:
        raise ImageError("This file is not an image this app reads (JPEG, PNG, WebP, GIF, BMP or TIFF).")
    except Exception as err:  # a decoder can fail in many ways; none may reach the visitor as a traceback
        raise ImageError(f"The image is corrupt or truncated ({type(err).__name__}: {err}).") from err
    return image


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ImageError(f"An image array must be HxW or HxWx(1|3|4), got shape {array.shape}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.dtype != np.uint8:
        array = np.asarray(array, dtype=np.float64)
        top = 1.0 if array.max(initial=0) <= 1.0 else (255.0 if array.max() <= 255 else 65535.0)
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def _scale_to_8bit(image: Image.Image, full_range: float | None = None) -> Image.Image:
    """16-bit modes have a known range; for 32-bit int/float modes guess it from the values."""
    array = np.asarray(image, dtype=np.float64)
    top = full_range or (65535.0 if array.max(initial=0) > 255 else 255.0)
    return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def _check_pixels(size: tuple[int, int], limits: Limits) -> None:
    width, height = size
    if width * height > limits.max_image_pixels:
        raise ImageError(f"The image is {width}x{height}; the limit is {limits.max_image_pixels:,} pixels.")
    if min(width, height) < limits.min_image_side:
        raise ImageError(f"The image is {width}x{height}; it needs at least {limits.min_image_side} px per side.")


def _too_big(size: int, limits: Limits) -> str:
    return f"The file is {size / 2**20:.1f} MB; the limit is {limits.max_image_bytes / 2**20:.0f} MB."
