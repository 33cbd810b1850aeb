"""Run in a fresh process by test_hostile_geometry.py: decode each file as a request would, apply an
ImageNet model's own resize (shorter side to 256 px, ratio kept), and print what happened and the
process's peak memory, as JSON on stdout.

    python tests/geometry_probe.py FILE...
"""
from __future__ import annotations

import json
import sys


def peak_mib() -> float:
    """The process's peak resident memory: VmHWM, which starts afresh at exec (ru_maxrss would carry the
    peak of the pytest process that started this one)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main(paths: list[str]) -> None:
    from timm.data import create_transform

    from senet_demo.images import ImageError, load_image

    transform = create_transform(input_size=224, crop_pct=0.875, interpolation="bilinear", is_training=False)
    resize = transform.transforms[0]  # the step whose output grows with the picture's aspect ratio
    before = peak_mib()
    results = {}
    for path in paths:
        try:
            picture = load_image(path)
        except ImageError as err:
            results[path] = {"refused": str(err)}
            continue
        resized = resize(picture)
        results[path] = {"decoded": list(picture.size), "resized": list(resized.size),
                         "tensor": list(transform(picture).shape)}
        del picture, resized
    print(json.dumps({"results": results, "baseline_mib": before, "peak_mib": peak_mib()}))


if __name__ == "__main__":
    main(sys.argv[1:])
