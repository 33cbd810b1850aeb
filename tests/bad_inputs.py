"""A corpus of awkward and hostile uploads, generated in code as real files (each small on disk).

``write_corpus(folder)`` writes one file per case and, for the valid-but-odd images, a plain PNG of what
the app should see (``Corpus.references``): the first frame of an animated GIF, the upright view of an
EXIF-rotated photo, a palette image composited on white, and so on. ``write_zips(folder)`` writes the
hostile gallery uploads. Nothing here imports the app.
"""
from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BOMB_SIDE = 40_000  # 1.6 Gpx declared; about 200 kB on disk


@dataclass
class Corpus:
    files: dict[str, Path] = field(default_factory=dict)  # case -> the file a visitor uploads
    references: dict[str, Path] = field(default_factory=dict)  # case -> PNG of what the app should see
    wrong: dict[str, Path] = field(default_factory=dict)  # case -> PNG of what a careless decoder would see


def scene(width: int = 96, height: int = 72, seed: int = 0) -> Image.Image:
    """A structured RGB picture with a few hundred distinct colours (so models see something)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x * y) % 97 * 2.5], axis=-1)
    return Image.fromarray(np.clip(base + rng.integers(0, 40, (height, width, 3)), 0, 255).astype(np.uint8))


def blocks(colours: list[tuple[int, int, int]], size: tuple[int, int] = (96, 72)) -> Image.Image:
    """Vertical stripes of flat colours: exact in a palette, so GIF and PNG hold the same pixels."""
    width, height = size
    image = Image.new("RGB", size)
    step = width // len(colours)
    for i, colour in enumerate(colours):
        image.paste(colour, (i * step, 0, width if i == len(colours) - 1 else (i + 1) * step, height))
    # a horizontal band, so a rotation changes the picture as well as a mirror does
    image.paste((250, 250, 250), (0, height // 3, width, height // 3 + 6))
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A side×side 1-bit black PNG, written by hand: the zlib stream of side rows of zeros."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    chunk = row * 1000
    body = b"".join(packer.compress(chunk) for _ in range(side // 1000))
    body += packer.compress(row * (side % 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def heic_header() -> bytes:
    """The start of a real HEIC file (ISO-BMFF ftyp box, brand heic; then an empty meta box)."""
    ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"heic", 0) + b"mif1heic"
    meta = struct.pack(">I4sI", 12, b"meta", 0)
    return ftyp + meta + b"\x00" * 64


MINIMAL_PDF = (b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
               b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\n"
               b"trailer <</Root 1 0 R>>\n%%EOF\n")


def _save(image: Image.Image, path: Path, fmt: str | None = None, **params) -> Path:
    image.save(path, fmt, **params)
    return path


def write_corpus(folder: Path) -> Corpus:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = Corpus()
    f, ref, wrong = c.files, c.references, c.wrong

    # --- refused, each with its own message
    f["empty"] = folder / "empty.jpg"
    f["empty"].write_bytes(b"")
    f["text_as_jpg"] = folder / "notes.jpg"
    f["text_as_jpg"].write_text("Shopping list\n- coffee\n- milk\n" * 10)
    f["pdf_as_jpg"] = folder / "invoice.jpg"
    f["pdf_as_jpg"].write_bytes(MINIMAL_PDF)
    whole = io.BytesIO()
    scene(256, 192).save(whole, "JPEG", quality=90)
    f["truncated_jpeg"] = folder / "cut.jpg"
    f["truncated_jpeg"].write_bytes(whole.getvalue()[: len(whole.getvalue()) * 6 // 10])
    f["bomb"] = folder / "bomb.png"
    f["bomb"].write_bytes(bomb_png())
    f["one_pixel"] = _save(Image.new("RGB", (1, 1), (200, 30, 30)), folder / "dot.png")
    f["heic"] = folder / "IMG_0001.heic"
    f["heic"].write_bytes(heic_header())
    f["avif"] = _save(scene(), folder / "photo.avif", "AVIF")

    # --- valid but odd: the app must see the reference picture
    strip = scene(10_000, 20)
    f["strip"] = _save(strip, folder / "strip.png")

    grey = np.asarray(scene().convert("L"), dtype=np.uint16)
    f["png16"] = _save(Image.fromarray(grey * 257), folder / "deep.png")  # 16-bit: v * 257 is v in 8 bits
    assert Image.open(f["png16"]).mode.startswith("I;16")
    ref["png16"] = _save(Image.fromarray(grey.astype(np.uint8)).convert("RGB"), folder / "deep_ref.png")

    cmyk = Image.new("CMYK", (96, 72), (0, 255, 255, 0))  # red
    cmyk.paste((255, 0, 255, 0), (48, 0, 96, 72))  # green
    f["cmyk_jpeg"] = _save(cmyk, folder / "print.jpg", "JPEG", quality=95)

    palette = Image.new("P", (96, 72), 0)
    palette.putpalette([0, 0, 0, 200, 30, 40, 30, 60, 220] + [0] * 759)
    palette.paste(1, (0, 0, 48, 72))
    palette.paste(2, (48, 36, 96, 72))  # index 0 (black, transparent) is left top-right
    f["palette_alpha"] = _save(palette, folder / "logo.png", transparency=0)
    upright = Image.new("RGB", (96, 72), (255, 255, 255))
    upright.paste((200, 30, 40), (0, 0, 48, 72))
    upright.paste((30, 60, 220), (48, 36, 96, 72))
    ref["palette_alpha"] = _save(upright, folder / "logo_ref.png")
    wrong["palette_alpha"] = _save(palette.convert("RGB"), folder / "logo_black.png")  # alpha dropped

    first = blocks([(220, 30, 30), (30, 200, 40), (30, 40, 210)])
    second = blocks([(240, 220, 20), (20, 20, 20), (200, 40, 200), (20, 200, 200)])
    f["animated_gif"] = folder / "wave.gif"
    first.save(f["animated_gif"], save_all=True, append_images=[second], duration=200, loop=0)
    assert Image.open(f["animated_gif"]).n_frames == 2
    ref["animated_gif"] = _save(first, folder / "wave_first.png")
    wrong["animated_gif"] = _save(second, folder / "wave_second.png")

    # EXIF orientation 6: stored turned 90° counter-clockwise, shown turned back clockwise.
    shown = scene(72, 96, seed=3)
    shown.paste((230, 20, 20), (0, 0, 72, 48))  # top half red when upright
    stored = shown.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    f["exif_rotated"] = _save(stored, folder / "phone.jpg", "JPEG", quality=95, exif=exif)
    plain = _save(stored, folder / "phone_no_exif.jpg", "JPEG", quality=95)  # same pixel data, no tag
    decoded = Image.open(plain).convert("RGB")
    ref["exif_rotated"] = _save(decoded.transpose(Image.Transpose.ROTATE_270), folder / "phone_upright.png")
    wrong["exif_rotated"] = _save(decoded, folder / "phone_sideways.png")

    picture = scene(seed=5)
    f["webp"] = _save(picture, folder / "photo.webp", "WEBP", lossless=True)
    ref["webp"] = _save(picture, folder / "photo_ref.png")
    return c


# ------------------------------------------------------------------------------------------------ zips


def zip_with(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def tiny_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    scene(8, 8, seed).save(buffer, "PNG")
    return buffer.getvalue()


def lying_zip(path: Path, name: str, data: bytes, declared: int) -> Path:
    """A one-member zip whose local header and central directory both claim ``declared`` bytes."""
    zip_with(path, {name: data})
    raw = bytearray(path.read_bytes())
    real = struct.pack("<I", len(data))
    for at in (i for i in range(len(raw) - 4) if raw[i:i + 4] in (b"PK\x03\x04", b"PK\x01\x02")):
        offset = at + (22 if raw[at + 2] == 3 else 24)  # uncompressed size field
        assert raw[offset:offset + 4] == real
        raw[offset:offset + 4] = struct.pack("<I", declared)
    path.write_bytes(bytes(raw))
    return path


def write_zips(folder: Path, image_limit: int) -> dict[str, Path]:
    """The hostile gallery uploads; ``image_limit`` is the app's per-image byte limit."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = tiny_png(1)
    zeros = bytes(image_limit + 2**20)  # 1 MB over the limit; compresses to about 20 kB
    return {
        "dotdot": zip_with(folder / "holiday.zip", {"beach/a.png": good, "../../escaped.png": good}),
        "ten_thousand": zip_with(folder / "many.zip", {f"tiny/{i:05d}.png": good for i in range(10_000)}),
        "big_member": zip_with(folder / "big.zip", {"beach/a.png": good, "beach/huge.png": zeros}),
        "lying_header": lying_zip(folder / "liar.zip", "beach/liar.png", zeros, declared=len(good)),
    }
