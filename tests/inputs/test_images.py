"""Safe decoding of untrusted images: every odd mode becomes 8-bit RGB; bad input is an ImageError."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fixtures import encode, picture
from senet_demo.config import Limits
from senet_demo.images import WORKING_SIDE, ImageError, content_hash, load_image

WHITE = (255, 255, 255)


def decoded(image: Image.Image, fmt: str = "PNG", **params) -> Image.Image:
    """The image after a round trip through a file and ``load_image``."""
    result = load_image(encode(image, fmt, **params))
    assert result.mode == "RGB"
    return result


def close(pixel, expected, tol=2):
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected))


# ---------------------------------------------------------------- sources


def test_path_bytes_pil_and_array_sources_agree(tmp_path):
    image = picture(0, (40, 30))
    path = tmp_path / "x.png"
    image.save(path)
    expected = np.asarray(image)
    for source in (path, str(path), path.read_bytes(), bytearray(path.read_bytes()), image, np.asarray(image)):
        result = load_image(source)
        assert result.mode == "RGB" and result.size == (40, 30)
        assert np.array_equal(np.asarray(result), expected), type(source)


def test_pil_source_is_not_modified(photo):
    before = photo.tobytes()
    result = load_image(photo)
    assert result is not photo and photo.tobytes() == before


@pytest.mark.parametrize("source, message", [(None, "No image"), (12345, "Unsupported input")])
def test_unusable_sources(source, message):
    with pytest.raises(ImageError, match=message):
        load_image(source)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="No such file"):
        load_image(tmp_path / "missing.jpg")


# ---------------------------------------------------------------- odd modes


def test_palette_without_transparency():
    image = Image.new("P", (16, 16), 1)
    image.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    assert decoded(image).getpixel((3, 3)) == (200, 30, 40)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt):
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)  # index 0 is black
    for x in range(8, 16):
        for y in range(16):
            image.putpixel((x, y), 1)
    image.info["transparency"] = 0
    result = decoded(image, fmt, transparency=0)
    assert result.getpixel((2, 2)) == WHITE  # transparent black -> white, not black
    assert result.getpixel((12, 2)) == (200, 30, 40)


@pytest.mark.parametrize("mode, key, opaque, shown", [("RGB", (0, 0, 0), (200, 10, 10), (200, 10, 10)),
                                                      ("L", 0, 99, (99, 99, 99))])
def test_transparent_colour_key_is_composited_on_white(mode, key, opaque, shown):
    image = Image.new(mode, (16, 16), key)
    image.paste(opaque, (8, 0, 16, 16))
    result = decoded(image, transparency=key)
    assert result.getpixel((2, 2)) == WHITE  # the key colour is transparent
    assert result.getpixel((12, 2)) == shown


def test_grayscale_l():
    image = Image.new("L", (16, 16), 77)
    assert decoded(image).getpixel((0, 0)) == (77, 77, 77)


def test_grayscale_with_alpha_la():
    image = Image.new("LA", (16, 16), (0, 0))  # black, fully transparent
    image.paste((100, 255), (8, 0, 16, 16))  # grey, opaque
    image.paste((0, 128), (0, 8, 8, 16))  # black, half transparent
    result = decoded(image)
    assert result.getpixel((0, 0)) == WHITE
    assert result.getpixel((12, 4)) == (100, 100, 100)
    assert close(result.getpixel((2, 12)), (127, 127, 127))


def test_rgba_composited_on_white():
    image = Image.new("RGBA", (16, 16), (10, 200, 30, 0))  # fully transparent green
    image.paste((40, 50, 60, 255), (8, 0, 16, 16))
    result = decoded(image)
    assert result.getpixel((0, 0)) == WHITE
    assert result.getpixel((12, 5)) == (40, 50, 60)


@pytest.mark.parametrize("mode", ["RGBA", "RGBa", "La", "PA"])
def test_in_memory_images_with_alpha_are_composited_on_white(mode):
    image = Image.new(mode, (16, 16))  # all zeros: fully transparent black
    assert image.getpixel((5, 5))[-1] == 0
    assert load_image(image).getpixel((5, 5)) == WHITE


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image.paste((0, 0, 0, 0), (8, 0, 16, 16))  # no ink: white
    result = decoded(image, fmt)
    assert close(result.getpixel((2, 8)), (255, 0, 0), tol=3)
    assert close(result.getpixel((13, 8)), WHITE, tol=3)


def test_16_bit_uses_the_full_range():
    array = np.zeros((16, 16), np.uint16)
    array[0, 0], array[0, 1], array[0, 2] = 65535, 32768, 257
    image = Image.fromarray(array)
    assert image.mode == "I;16"
    result = decoded(image)
    assert result.getpixel((0, 0)) == (255, 255, 255)
    assert result.getpixel((1, 0)) == (128, 128, 128)
    assert result.getpixel((2, 0)) == (1, 1, 1)
    assert result.getpixel((5, 5)) == (0, 0, 0)


def test_dark_16_bit_image_stays_dark():
    """A 16-bit pixel of 200 is 200/65535 of full scale: black in 8 bits, not light grey."""
    image = Image.fromarray(np.full((16, 16), 200, np.uint16))
    assert image.mode == "I;16"
    assert decoded(image).getpixel((3, 3)) == (1, 1, 1)


def test_float_and_wide_integer_arrays():
    ones = np.ones((16, 16), np.float32)
    assert load_image(ones).getpixel((0, 0)) == WHITE
    assert load_image(ones * 0.5).getpixel((0, 0)) == (128, 128, 128)
    wide = np.full((16, 16, 3), 65535, np.uint16)
    assert load_image(wide).getpixel((0, 0)) == WHITE


@pytest.mark.parametrize("shape", [(16,), (16, 16, 2), (16, 16, 5), (2, 16, 16, 3)])
def test_bad_array_shapes(shape):
    with pytest.raises(ImageError, match="HxW"):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("orientation, size", [(1, (40, 20)), (6, (20, 40)), (8, (20, 40)), (3, (40, 20))])
def test_exif_orientation_is_applied(orientation, size):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = load_image(encode(image, "JPEG", exif=exif, quality=95))
    assert result.size == size
    # Where the (originally left) red half ends up when the picture is shown upright.
    red_at = {1: (5, 10), 3: (35, 10), 6: (10, 5), 8: (10, 35)}[orientation]
    blue_at = {1: (35, 10), 3: (5, 10), 6: (10, 35), 8: (10, 5)}[orientation]
    assert close(result.getpixel(red_at), (255, 0, 0), tol=12)
    assert close(result.getpixel(blue_at), (0, 0, 255), tol=12)


def test_metadata_is_dropped_so_nothing_derived_carries_it():
    """EXIF (here a camera model and a GPS position) must not reach the images the app derives and serves."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "Secret Camera 3000"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    data = encode(picture(0, (40, 20)), "JPEG", exif=exif, comment=b"private note")
    assert b"Secret Camera" in data
    result = load_image(data)
    assert result.size == (20, 40)  # the orientation was applied before the metadata went
    assert result.info == {}
    derived = io.BytesIO()
    result.resize((10, 20)).save(derived, "WEBP", exif=result.getexif())
    assert b"Secret Camera" not in derived.getvalue()


# ---------------------------------------------------------------- bad files


def test_truncated_jpeg():
    data = encode(picture(0, (64, 64)), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_truncated_png():
    data = encode(picture(0, (64, 64)), "PNG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_corrupt_pixel_data():
    data = bytearray(encode(picture(0, (64, 64)), "PNG"))
    data[200:260] = b"\x00" * 60  # garbage inside the compressed stream
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(bytes(data))


@pytest.mark.parametrize("data", [b"hello, this is not an image", b"%PDF-1.4\n" + b"x" * 100, b"\x00" * 64])
def test_non_image_bytes(data, tmp_path):
    with pytest.raises(ImageError, match="not an image"):
        load_image(data)
    path = tmp_path / "notes.png"  # a misleading extension changes nothing
    path.write_bytes(data)
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.jpg")


# ---------------------------------------------------------------- limits


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("L", (3000, 3000)), "PNG")  # 9 Mpx in a few kB
    assert len(bomb) < 50_000
    with pytest.raises(ImageError, match=r"too many pixels: 3,000×3,000 = 9,000,000 > 1,000,000"):
        load_image(bomb, Limits(max_image_pixels=1_000_000))
    assert load_image(bomb, Limits(max_image_pixels=9_000_000)).size == (750, 750)  # accepted, at working size


def test_pixel_limit_applies_to_pil_and_array_inputs():
    limits = Limits(max_image_pixels=10_000)
    with pytest.raises(ImageError, match="20,000 > 10,000"):
        load_image(Image.new("RGB", (200, 100)), limits)
    with pytest.raises(ImageError, match="20,000 > 10,000"):
        load_image(np.zeros((100, 200, 3), np.uint8), limits)


def test_oversized_bytes(tmp_path):
    data = encode(picture(0, (64, 64)), "PNG")
    limits = Limits(max_image_bytes=len(data) - 1)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(ImageError, match=f"too big: {len(data):,} bytes > {len(data) - 1:,} bytes"):
            load_image(source, limits)
    assert load_image(data, Limits(max_image_bytes=len(data))).size == (64, 64)


def test_too_small_image():
    with pytest.raises(ImageError, match="too small: 7×100 px; each side needs at least 8 px"):
        load_image(encode(Image.new("RGB", (7, 100)), "PNG"))
    assert load_image(encode(Image.new("RGB", (8, 8)), "PNG")).size == (8, 8)


# ---------------------------------------------------------------- working size


def smooth_picture(width: int, height: int) -> Image.Image:
    """A large picture that still compresses like a photo (random pixels would not)."""
    return picture(0, (146, 110)).resize((width, height), Image.BICUBIC)


@pytest.mark.parametrize("size, fmt, expected", [
    ((4032, 3024), "JPEG", (1008, 756)),  # a phone photo: decoded at 1/4 scale
    ((4032, 3024), "PNG", (1008, 756)),  # decoded whole, then averaged over 4×4 blocks
    ((3024, 4032), "WEBP", (756, 1008)),
    ((1280, 1500), "PNG", (640, 750)),  # just twice the working side
    ((1279, 2000), "JPEG", (1279, 2000)),  # less than twice: as it is
    ((200, 150), "JPEG", (200, 150)),
])
def test_a_large_picture_is_decoded_at_working_size(size, fmt, expected):
    result = load_image(encode(smooth_picture(*size), fmt, quality=92) if fmt != "PNG" else encode(smooth_picture(*size), fmt))
    assert result.size == expected
    assert min(result.size) >= min(WORKING_SIDE, *size)


def test_a_large_jpeg_is_reduced_while_it_is_decoded(monkeypatch):
    """The phone photo's speed-up: its JPEG decodes at 1/4 scale; it is never decoded whole and reduced."""
    data = encode(smooth_picture(4032, 3024), "JPEG", quality=92)

    def no_reduce(self, *args, **kwargs):
        raise AssertionError("decoded at full size, then reduced")

    monkeypatch.setattr(Image.Image, "reduce", no_reduce)
    assert load_image(data).size == (1008, 756)


def test_the_working_size_is_an_average_over_blocks_of_pixels():
    picture = smooth_picture(2000, 1300)
    result = np.asarray(load_image(encode(picture, "PNG")), dtype=np.float64)
    blocks = np.asarray(picture, dtype=np.float64).reshape(650, 2, 1000, 2, 3).mean(axis=(1, 3))
    assert result.shape == (650, 1000, 3)
    assert np.abs(result - blocks).max() <= 1.0  # rounding only
    # A picture given in memory is reduced the same way, and left as it was.
    before = picture.tobytes()
    assert np.array_equal(np.asarray(load_image(picture)), result)
    assert picture.tobytes() == before


def test_a_rotated_phone_photo_is_decoded_at_working_size_and_upright():
    picture = smooth_picture(4032, 3024)
    picture.paste((255, 0, 0), (0, 0, 2016, 3024))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: the red half on top
    result = load_image(encode(picture, "JPEG", exif=exif, quality=92))
    assert result.size == (756, 1008)
    assert close(result.getpixel((378, 100)), (255, 0, 0), tol=12)
    assert not close(result.getpixel((378, 900)), (255, 0, 0), tol=60)


# ---------------------------------------------------------------- content hash


def test_content_hash_depends_on_pixels_only(photo):
    png, bmp = load_image(encode(photo, "PNG")), load_image(encode(photo, "BMP"))
    assert content_hash(png) == content_hash(bmp) == content_hash(photo)
    changed = photo.copy()
    changed.putpixel((0, 0), tuple(255 - v for v in photo.getpixel((0, 0))))
    assert content_hash(changed) != content_hash(photo)
    # Same bytes, other shape: not the same picture.
    flat = Image.frombytes("RGB", (photo.width * photo.height, 1), photo.tobytes())
    assert content_hash(flat) != content_hash(photo)


def test_postscript_is_refused_without_running_ghostscript(tmp_path, monkeypatch):
    """EPS is an image format to Pillow, decoded by running Ghostscript on the file: never for visitors."""
    import io
    import subprocess

    from PIL import Image

    from senet_demo.images import ImageError, load_image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, "EPS")
    assert buffer.getvalue().startswith(b"%!PS")

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a subprocess was started while decoding a visitor's file")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(subprocess, "check_call", no_subprocess)
    with pytest.raises(ImageError, match="is a PostScript file, which this app does not read"):
        load_image(buffer.getvalue())
    renamed = tmp_path / "photo.jpg"
    renamed.write_bytes(buffer.getvalue())
    with pytest.raises(ImageError):
        load_image(renamed)


# ---------------------------------------------------------------- messages a visitor reads


def test_messages_name_the_file_and_say_what_it_looks_like(tmp_path):
    from fixtures import MINIMAL_PDF, heic_header

    cases = {
        "invoice.jpg": (MINIMAL_PDF, r"^invoice\.jpg is not an image this app reads \(it looks like a PDF document\)"),
        "notes.jpg": (b"Dear all,\nthe seminar starts at ten.\n", r"^notes\.jpg .*looks like a text file"),
        "IMG_0001.heic": (heic_header(), (r"^IMG_0001\.heic is a HEIC photo, which this app does not read: "
                                          r"convert it to JPEG or PNG")),
        "clip.jpg": (b"\x00\x00\x00\x18ftypmp42" + bytes(40), r"^clip\.jpg .*looks like a video"),
        "blob.jpg": (bytes(range(256)) * 4, r"^blob\.jpg is not an image this app reads; upload a JPEG, PNG"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=message):
            load_image(tmp_path / name)
    with pytest.raises(ImageError, match=r"^The image is a HEIC photo"):  # bytes: no name to give
        load_image(heic_header())


def test_avif_is_refused_although_pillow_could_read_it():
    """Only the photo formats listed are decoded, whatever plugins this Pillow has."""
    data = encode(picture(0, (32, 32)), "AVIF")
    with pytest.raises(ImageError, match="is an AVIF image, which this app does not read"):
        load_image(data)


def test_a_given_name_is_sanitised_before_it_is_quoted():
    with pytest.raises(ImageError) as caught:
        load_image(b"", name="../../<img src=x onerror=alert(1)> holiday.jpg")
    message = str(caught.value)
    assert message.startswith("_img src_x onerror_alert(1)_ holiday.jpg is an empty file")  # no folders, no markup


def test_a_bomb_past_pillows_own_limit_is_reported_with_its_size():
    """Pillow refuses > 2 x MAX_IMAGE_PIXELS itself, before the app's check; the message still gives the size."""
    from fixtures import bomb_png

    side = 14_000  # 196 Mpx: over Pillow's 179 Mpx refusal
    assert side * side > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match=f"too many pixels: 14,000×14,000 = {side * side:,} > 40,000,000"):
        load_image(bomb_png(side), name="bomb.png")
