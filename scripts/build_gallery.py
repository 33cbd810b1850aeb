#!/usr/bin/env python3
"""Rebuild the committed sample gallery and its query views.

The gallery (``gallery/<label>/<name>.jpg``) holds real photographs only,
taken from files that ship with installed packages:

* ``tuxpaint-stamps-default`` (Debian): photo cut-outs with transparency,
  GPL-2.0-or-later per ``/usr/share/doc/tuxpaint-stamps-default/copyright``;
* ``scikit-image`` / ``scikit-learn``: a few sample photographs whose licence
  is stated by the package.

Cut-outs are trimmed to their opaque area, centred on a square white canvas
with a small margin, and sized to 256-512 px; package photos are only
downscaled to at most 512 px.  Every image is saved as a JPEG (quality 88).

``gallery/MANIFEST.csv`` records ``file,label,source,license`` per image.

``queries/`` holds "same object, new conditions" views of two images per
category: rotation, brightness, scale and occlusion.  They are named
``<label>__<gallery-stem>__<transform>.jpg`` and listed in
``queries/QUERIES.csv`` (``file,source,transform``).

All parameters are fixed, so running ``python scripts/build_gallery.py``
twice produces byte-identical files.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageEnhance

REPO_ROOT = Path(__file__).resolve().parent.parent
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
TUXPAINT_LICENSE = "GPL-2.0-or-later"

BACKGROUND = (255, 255, 255)
OCCLUDER = (128, 128, 128)
MARGIN = 0.08  # canvas margin around a cut-out, as a fraction of its long side
MIN_SIDE, MAX_SIDE = 256, 512
JPEG_QUALITY = 88
QUERIES_PER_LABEL = 2


@dataclass(frozen=True)
class Source:
    """One gallery image: where it comes from and under which licence."""

    origin: str  # "tuxpaint-stamps-default", "scikit-image" or "scikit-learn"
    path: str  # path (tuxpaint) or package file name
    license: str
    name: str = ""  # output stem; defaults to the sanitised file stem

    @property
    def stem(self) -> str:
        return safe_name(self.name or Path(self.path).stem)

    @property
    def manifest_source(self) -> str:
        return f"{self.origin}:{self.path}"


def tux(rel_path: str) -> Source:
    return Source("tuxpaint-stamps-default", str(TUXPAINT_STAMPS / rel_path), TUXPAINT_LICENSE)


def tux_group(folder: str, *stems: str) -> list[Source]:
    return [tux(f"{folder}/{stem}.png") for stem in stems]


# Chosen by eye: photographs only (drawings, cartoons and SVG stamps are left
# out).  Categories were kept only if they retrieve well with an ImageNet
# EfficientNet-Lite0 (`python -m senet_demo evaluate-gallery`); an insect category was
# dropped for that reason.
CATEGORIES: dict[str, list[Source]] = {
    "bird": tux_group(
        "animals/birds",
        "blackbird", "crow", "duck", "gander", "hen", "rooster", "owl",
        "pelican", "penguin", "pigeon", "seagull", "lark",
    ),
    "fish": tux_group(
        "animals/fish",
        "bluegroper", "butterflyfish", "clownfish", "coraltrout", "dolphinfish",
        "lionfish", "moonwrasse", "stripedfish",
    ),
    "bovine": tux_group(
        "animals/mammals/bovines",
        "bull", "cow", "cow_white", "bison", "yak", "zebu", "gnu-stand",
        "gnu-baby-stand", "gnu-baby", "gnu-sitting",
    ),
    "small_mammal": tux_group(
        "animals/mammals/rodents",
        "squirrel", "rabbit", "rabbit-2", "rat", "mouse", "marmot", "beaver",
        "capybara",
    ) + tux_group("animals/mammals", "rabbit_little", "ferret") + [
        Source("scikit-image", "skimage/data/chelsea.png", "CC0-1.0"),
    ],
    "fruit": tux_group(
        "food/fruit",
        "Apricot_whole", "Cherry_Stella", "Strawberry2", "apricot", "avocado",
        "cherimoya", "kiwi", "lemon", "mandarine", "orange_seville", "pomegranate",
        "orange",
    ),
    "vegetable": tux_group(
        "food/vegetables",
        "broccoli", "carrot", "chilepepper", "corn", "garlic", "lettuce",
        "onion", "pepper", "potato", "yellowpepper", "redlettuce", "pumpkin_small",
    ),
    "flower": tux_group(
        "plants/flowers",
        "adeenia", "anemone_red", "daffodil", "flower1", "flower2", "flower3",
        "flower6", "flower8", "marigold", "red-gazania", "rose", "whitestar-petunia",
    ) + [
        Source("scikit-learn", "sklearn/datasets/images/flower.jpg",
               "CC-BY-2.0", name="sklearn_flower"),
    ],
    "tool": tux_group(
        "household/tools",
        "hammer", "mallet_metal", "measuring_tape", "paintbrush_large", "plyers",
        "saw", "spade", "wrench", "wrench_adjustable", "wrench_plumbers",
    ),
    "vehicle": tux_group("vehicles/auto", "beetle", "sedan", "sportscar2", "truck")
    + tux_group("vehicles/emergency", "firetruck")
    + tux_group("vehicles", "garbagetruck")
    + tux_group("vehicles/masstransit", "green_korean_bus")
    + tux_group("vehicles/race", "indycar")
    + tux_group("vehicles/construction", "dumper")
    + tux_group("military/vehicles", "infantry-stryker"),
    "gravestone": tux_group(
        "seasonal/halloween",
        # grave-c (a cross) is left out: the model takes it for a tool.
        *[f"grave-{c}" for c in "abdefghij"],
    ),
}


# --------------------------------------------------------------------------- helpers


def safe_name(stem: str) -> str:
    """Lowercase ASCII file stem: letters, digits and underscores only."""
    return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")


def resolve_path(source: Source) -> Path:
    """Absolute path of a source file on this machine."""
    if source.origin == "tuxpaint-stamps-default":
        return Path(source.path)
    if source.origin == "scikit-learn":
        import sklearn

        return Path(sklearn.__file__).parent.parent / source.path
    if source.origin == "scikit-image":
        import skimage

        return Path(skimage.__file__).parent.parent / source.path
    raise ValueError(f"unknown origin {source.origin!r}")


def resize_long_side(img: Image.Image, long_side: int) -> Image.Image:
    scale = long_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.LANCZOS)


def cutout_on_canvas(img: Image.Image) -> Image.Image:
    """Trim a transparent cut-out and centre it on a square background canvas."""
    rgba = img.convert("RGBA")
    bbox = rgba.getchannel("A").point(lambda a: 255 if a > 8 else 0).getbbox()
    if bbox:
        rgba = rgba.crop(bbox)
    side = round(max(rgba.size) * (1 + 2 * MARGIN))
    canvas = Image.new("RGBA", (side, side), BACKGROUND + (255,))
    canvas.alpha_composite(rgba, ((side - rgba.width) // 2, (side - rgba.height) // 2))
    canvas = canvas.convert("RGB")
    return resize_long_side(canvas, min(max(side, MIN_SIDE), MAX_SIDE))


def load_gallery_image(source: Source) -> Image.Image:
    img = Image.open(resolve_path(source))
    if source.origin == "tuxpaint-stamps-default":
        return cutout_on_canvas(img)
    img = img.convert("RGB")
    return resize_long_side(img, MAX_SIDE) if max(img.size) > MAX_SIDE else img


def save_jpeg(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert("RGB").save(path, "JPEG", quality=JPEG_QUALITY, optimize=True)


def clean_outputs(gallery_dir: Path, queries_dir: Path) -> None:
    """Remove previously generated images and CSVs (README files are kept)."""
    for path in list(gallery_dir.glob("*/*.jpg")) + list(queries_dir.glob("*.jpg")):
        path.unlink()
    for path in (gallery_dir / "MANIFEST.csv", queries_dir / "QUERIES.csv"):
        path.unlink(missing_ok=True)
    for sub in gallery_dir.glob("*"):
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()


# --------------------------------------------------------------------------- gallery


def build_gallery(gallery_dir: Path) -> list[dict[str, str]]:
    """Write every gallery image; return the manifest rows."""
    rows, seen = [], set()
    for label, sources in CATEGORIES.items():
        for source in sources:
            file = f"{label}/{source.stem}.jpg"
            if source.stem in seen:
                raise SystemExit(f"duplicate gallery file name: {source.stem}")
            seen.add(source.stem)
            save_jpeg(load_gallery_image(source), gallery_dir / file)
            rows.append({"file": file, "label": label,
                         "source": source.manifest_source, "license": source.license})
    return rows


# --------------------------------------------------------------------------- queries


def seeded_fraction(key: str, salt: str) -> float:
    """Deterministic pseudo-random number in [0, 1) derived from a string."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def view_rotate(img: Image.Image, key: str) -> Image.Image:
    angle = 15 + 10 * seeded_fraction(key, "angle")
    if seeded_fraction(key, "sign") < 0.5:
        angle = -angle
    rotated = img.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=BACKGROUND)
    return resize_long_side(rotated, max(img.size))


def view_brightness(img: Image.Image, key: str) -> Image.Image:
    factor = 0.6 if seeded_fraction(key, "bright") < 0.5 else 1.4
    return ImageEnhance.Brightness(img).enhance(factor)


def view_scale(img: Image.Image, key: str) -> Image.Image:
    """Zoom in: crop the central 70% and resize it back to the original size."""
    w, h = img.size
    cw, ch = round(w * 0.7), round(h * 0.7)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC)


def view_occlude(img: Image.Image, key: str) -> Image.Image:
    """Grey rectangle covering ~20% of the image, away from the centre."""
    w, h = img.size
    rw, rh = round(w * 0.45), round(h * 0.45)
    quadrant = int(seeded_fraction(key, "quadrant") * 4)
    left = round(w * 0.05) if quadrant % 2 == 0 else w - rw - round(w * 0.05)
    top = round(h * 0.05) if quadrant < 2 else h - rh - round(h * 0.05)
    out = img.copy()
    out.paste(OCCLUDER, (left, top, left + rw, top + rh))
    return out


TRANSFORMS = {
    "rotate": view_rotate,
    "brightness": view_brightness,
    "scale": view_scale,
    "occlude": view_occlude,
}


def pick_query_sources(rows: list[dict[str, str]]) -> list[str]:
    """Two gallery files per label: the first and the middle one."""
    picked = []
    for label in CATEGORIES:
        files = [r["file"] for r in rows if r["label"] == label]
        step = max(1, len(files) // QUERIES_PER_LABEL)
        picked.extend(files[::step][:QUERIES_PER_LABEL])
    return picked


def build_queries(gallery_dir: Path, queries_dir: Path,
                  rows: list[dict[str, str]]) -> list[dict[str, str]]:
    out = []
    for rel in pick_query_sources(rows):
        img = Image.open(gallery_dir / rel).convert("RGB")
        label, stem = rel.split("/")[0], Path(rel).stem
        for name, transform in TRANSFORMS.items():
            file = f"{label}__{stem}__{name}.jpg"
            save_jpeg(transform(img, rel), queries_dir / file)
            out.append({"file": file, "source": rel, "transform": name})
    return out


# --------------------------------------------------------------------------- main


def write_csv(path: Path, rows: list[dict[str, str]], fields: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery-dir", type=Path, default=REPO_ROOT / "gallery")
    parser.add_argument("--queries-dir", type=Path, default=REPO_ROOT / "queries")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not TUXPAINT_STAMPS.is_dir():
        sys.exit(f"{TUXPAINT_STAMPS} not found: apt-get install tuxpaint-stamps-default")
    clean_outputs(args.gallery_dir, args.queries_dir)
    rows = build_gallery(args.gallery_dir)
    write_csv(args.gallery_dir / "MANIFEST.csv", rows, ["file", "label", "source", "license"])
    queries = build_queries(args.gallery_dir, args.queries_dir, rows)
    write_csv(args.queries_dir / "QUERIES.csv", queries, ["file", "source", "transform"])
    print(f"gallery: {len(rows)} images in {len(CATEGORIES)} labels -> {args.gallery_dir}")
    print(f"queries: {len(queries)} views -> {args.queries_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
