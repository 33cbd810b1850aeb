"""Hostile geometry: pictures inside the byte and pixel limits whose shape makes the work explode.

Extreme aspect ratios at the pixel limit, 1-px strips, 16-bit and multi-frame pictures, and zips that
unpack to a great deal of decoding. Each must get an answer or a one-line refusal, and the work a
request costs is bounded before anything expensive runs: the resized picture a model sees has at most
``max_aspect_ratio`` x side² pixels, and an upload decodes at most ``max_upload_pixels`` pixels. The
peak memory of decoding and resizing the whole corpus in a fresh process stays within the budget stated
in docs/security.md ("Limits and budgets of one request").
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import REPO_ROOT
from senet_demo.config import Limits
from senet_demo.images import ImageError, load_image

LIMITS = Limits()
RESIZE_SIDE = 256  # the ImageNet models' resize (224 px crop at crop_pct 0.875)
REQUEST_BUDGET_MIB = 640  # peak resident memory a request may add to the process (docs/security.md)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def grey16(width: int, height: int) -> Image.Image:
    """A 16-bit greyscale picture (mode I;16) that compresses to a few kB."""
    return Image.frombuffer("I;16", (width, height), bytes(2 * width * height), "raw", "I;16", 0, 1)


def write_corpus(folder: Path) -> dict[str, Path]:
    """name -> file; the name says whether it is to be answered ("ok_") or refused ("no_")."""
    files = {
        # the reported picture: 40 Mpx, 25,000:1, a 119 kB PNG that made a 256 x 6,400,000 resize
        "no_strip_40x1000000": png(Image.new("L", (40, 1_000_000))),
        "no_strip_1x40000": png(Image.new("L", (1, 40_000))),
        "no_strip_8x5000000": png(Image.new("L", (8, 5_000_000))),
        "no_just_over_ratio": png(Image.new("L", (2_001, 200))),
        "ok_ratio_limit_at_pixel_limit": png(Image.new("L", (20_000, 2_000))),  # 10:1, 40 Mpx
        "ok_16bit_at_pixel_limit": png(grey16(6_000, 6_600)),
        "ok_square_at_pixel_limit": png(Image.new("RGB", (6_324, 6_324))),
    }
    frames = [Image.new("P", (1_000, 1_000), i) for i in range(100)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    files["ok_100_frame_gif"] = gif.getvalue()
    tiff = io.BytesIO()
    Image.new("RGB", (4_000, 4_000)).save(tiff, "TIFF", save_all=True, compression="tiff_deflate",
                                           append_images=[Image.new("RGB", (4_000, 4_000))] * 9)
    files["ok_10_page_tiff"] = tiff.getvalue()
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.{'gif' if 'gif' in name else 'tif' if 'tiff' in name else 'png'}"
        paths[name].write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("geometry"))


@pytest.fixture(scope="module")
def probe(corpus) -> dict:
    """Decode and resize the whole corpus in a fresh process; its results and peak memory."""
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "geometry_probe.py"), *map(str, corpus.values())],
                          capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_hostile_picture_gets_an_answer_or_a_one_line_refusal(corpus, probe):
    for name, path in corpus.items():
        result = probe["results"][str(path)]
        if name.startswith("no_"):
            assert "refused" in result, name
            message = result["refused"]
            assert "\n" not in message and message.startswith(path.name), message
            assert ("too long and narrow" in message) or ("too small" in message), message
        else:
            assert "decoded" in result, (name, result)
            assert result["tensor"] == [3, 224, 224]


def test_the_reported_strip_is_refused_with_what_to_do(corpus, probe):
    message = probe["results"][str(corpus["no_strip_40x1000000"])]["refused"]
    assert message == ("no_strip_40x1000000.png is too long and narrow: 40×1,000,000 px, a ratio of 25,000:1 "
                       "(at most 10:1); crop it to the part that matters and try again.")


def test_the_resize_a_model_makes_is_bounded_by_the_aspect_ratio(corpus, probe):
    """What bounds a forward's work: the resized picture never exceeds max_aspect_ratio x side² pixels."""
    bound = LIMITS.max_aspect_ratio * RESIZE_SIDE * (RESIZE_SIDE + 1)  # +1: rounding of the long side
    resized = {name: probe["results"][str(path)]["resized"] for name, path in corpus.items() if name.startswith("ok_")}
    for name, (width, height) in resized.items():
        assert min(width, height) == RESIZE_SIDE and width * height <= bound, (name, width, height)
    width, height = resized["ok_ratio_limit_at_pixel_limit"]
    assert width / height > 0.99 * LIMITS.max_aspect_ratio  # the bound is reached, not merely respected


def test_peak_memory_of_the_corpus_stays_within_the_budget(probe):
    """VmHWM of a fresh process after torch and timm are imported, then after every request in turn."""
    print(f"baseline {probe['baseline_mib']:.0f} MiB, peak {probe['peak_mib']:.0f} MiB")
    assert probe["peak_mib"] - probe["baseline_mib"] <= REQUEST_BUDGET_MIB, probe


def test_a_multi_frame_picture_decodes_its_first_frame_only(corpus):
    first = load_image(corpus["ok_100_frame_gif"])
    assert first.size == (1_000, 1_000)
    assert np.asarray(first).std() == 0


def test_a_16_bit_picture_becomes_8_bit_grey_of_the_same_values():
    values = np.array([[0, 257 * 10, 257 * 128, 65_535] * 4] * 16, dtype=np.uint16)
    image = Image.frombuffer("I;16", (16, 16), values.tobytes(), "raw", "I;16", 0, 1)
    decoded = np.asarray(load_image(png(image)))
    assert decoded[0, :4, 0].tolist() == [0, 10, 128, 255]


@pytest.mark.parametrize("size", [(40, 1_000_000), (1_000_000, 40), (101, 1_011)])
def test_the_ratio_is_checked_from_the_header_before_decoding(size, monkeypatch):
    data = png(Image.new("L", size))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(ImageError, match="too long and narrow"):
        load_image(data)
    assert decoded == []


# --- uploads: the decoding work of one upload, bounded from the headers ----------------------------------------


def test_a_zip_of_twenty_16_bit_pictures_is_refused_before_any_is_decoded(tmp_path, monkeypatch):
    """The reported upload: 8 kB holding twenty 16-bit 6000x6600 PNGs (792 Mpx to decode)."""
    import senet_demo.uploads as uploads

    member = png(grey16(6_000, 6_600))
    archive = tmp_path / "deep.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for i in range(20):
            zipped.writestr(f"scans/{i:02d}.png", member)
    assert archive.stat().st_size < 100_000
    decoded = []
    monkeypatch.setattr(uploads, "load_image", lambda *a, **k: decoded.append(a) or None)
    session = tmp_path / "session"
    with pytest.raises(uploads.UploadError) as refused:
        uploads.ingest([archive], session)
    assert str(refused.value) == (f"The upload would decode to {20 * 6_000 * 6_600:,} pixels, more than the "
                                  f"{LIMITS.max_upload_pixels:,} one upload may have; nothing was added. Upload "
                                  f"fewer or smaller pictures at a time.")
    assert decoded == [] and not session.exists()


def test_jpegs_count_at_the_size_they_are_decoded_at(tmp_path):
    """A JPEG decodes at a reduced scale, so 200 phone photos fit in one upload's decoding budget."""
    from senet_demo.images import decoded_size

    photo = io.BytesIO()
    Image.new("RGB", (4_032, 3_024), (90, 120, 150)).save(photo, "JPEG", quality=80)
    fmt, (width, height) = decoded_size(photo.getvalue())
    assert (fmt, width, height) == ("JPEG", 1_008, 756)
    assert LIMITS.max_upload_files * width * height <= LIMITS.max_upload_pixels
