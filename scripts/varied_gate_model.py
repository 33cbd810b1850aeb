#!/usr/bin/env python3
"""Write a random-weight SE model whose gates spread over (0, 1), in the Hub's layout, for the Explain tab.

Trained SE weights are not always reachable (an offline laptop, a machine without the Hub), and random
weights as timm makes them put every gate at one value. This writes the app's varied-gate model
(``senet_demo.varied_gates``): seeded, so the same model every time; its gates follow the image more in
later blocks than in early ones, as the paper's trained models do. Its classes are ImageNet's, its
predictions mean nothing.

    python scripts/varied_gate_model.py --out weights/varied-seresnext101
    python app.py --offline --model seresnext101_64x4d=weights/varied-seresnext101

The pictures that set the gates are the sample gallery's (``gallery/``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write (config.json, model.safetensors)")
    parser.add_argument("--arch", default="seresnext101_64x4d", help="a timm SE architecture")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gallery", type=Path, default=REPO / "gallery", help="pictures that set the gates")
    args = parser.parse_args(argv)

    import timm
    import torch
    from PIL import Image
    from timm.data import ImageNetInfo, create_transform, resolve_data_config
    from timm.models import save_for_hf

    from senet_demo.images import IMAGE_SUFFIXES
    from senet_demo.se_blocks import find_se_blocks
    from senet_demo.varied_gates import follow_images, randomize

    torch.manual_seed(args.seed)
    model = timm.create_model(args.arch, pretrained=False).eval()
    if not find_se_blocks(model):
        parser.error(f"{args.arch} has no SE blocks")
    data_config = resolve_data_config({}, model=model)
    transform = create_transform(**data_config)
    files = sorted(p for p in args.gallery.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 4:
        parser.error(f"{args.gallery} holds {len(files)} pictures; at least 4 are needed")
    chosen = files[:: max(1, len(files) // 16)][:16]
    pictures = torch.stack([transform(Image.open(p).convert("RGB")) for p in chosen])
    randomize(model, args.seed, side=data_config["input_size"][-1])
    follow_images(model, pictures, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    save_for_hf(model, str(args.out), safe_serialization=True, data_config=dict(data_config),
                model_config={"label_names": list(ImageNetInfo().label_names())})
    print(f"wrote {args.out} ({args.arch}, seed {args.seed}, gates set from {len(chosen)} pictures)")
    print(f"run: python app.py --offline --model {args.arch}={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
