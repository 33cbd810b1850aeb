"""Command line: python -m senet_demo {download,classify,retrieve,evaluate-gallery,explain,export-lite0} ...

    python -m senet_demo download                      # the default ensemble into weights/
    python -m senet_demo classify --json photo.jpg     # ensemble + members, top-5, as JSON
    python -m senet_demo retrieve --gallery gallery --queries queries --out results.json
    python -m senet_demo evaluate-gallery --gallery gallery   # P@1, P@5, mAP as JSON
    python -m senet_demo explain --json photo.jpg      # every SE block's excitation vector
    python -m senet_demo export-lite0                  # a real ImageNet model that needs no network
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import DEFAULT_MODELS, ENGINE_CHOICES, TTA_CHOICES, WEIGHTS_DIR, SpecError
from .models import ModelLoadError
from .weights import WeightsNotFound


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m senet_demo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser("download", help="fetch Hub weights into weights/ for offline use")
    download.add_argument("specs", nargs="*", metavar="SPEC", help=f"default: {' '.join(DEFAULT_MODELS)}")
    _common(download)

    classify = commands.add_parser("classify", help="classify images with the ensemble")
    _models(classify)
    classify.add_argument("--tta", choices=TTA_CHOICES, default="none")
    classify.add_argument("--top", type=int, default=5, metavar="K")
    classify.add_argument("--json", action="store_true", help="print JSON (default: a readable table)")
    classify.add_argument("images", nargs="+", metavar="IMAGE")

    retrieve = commands.add_parser("retrieve", help="rank a gallery for each query image")
    _models(retrieve)
    retrieve.add_argument("--gallery", required=True, metavar="DIR", help="one sub-folder per label")
    retrieve.add_argument("--queries", required=True, nargs="+", metavar="DIR|FILE")
    retrieve.add_argument("--feature", default="ensemble", metavar="ensemble|MODEL|logsoftmax")
    retrieve.add_argument("--top", type=int, default=20, metavar="K")
    retrieve.add_argument("--out", type=Path, required=True, metavar="results.json")

    evaluate = commands.add_parser("evaluate-gallery", help="leave-one-out P@1, P@5 and mAP of a labelled gallery")
    _models(evaluate)
    evaluate.add_argument("--gallery", required=True, metavar="DIR", help="one sub-folder per label")
    evaluate.add_argument("--feature", action="append", dest="features", metavar="ensemble|MODEL|logsoftmax",
                          help="default: every feature choice")

    explain = commands.add_parser("explain", help="print every SE block's excitation vector for an image")
    explain.add_argument("--model", dest="model", metavar="SPEC", default=DEFAULT_MODELS[1],
                         help="an SE model SPEC (default: %(default)s)")
    _common(explain)
    _engine(explain)
    explain.add_argument("--json", action="store_true", help="print JSON (default: one summary line per block)")
    explain.add_argument("image", metavar="IMAGE")

    lite0 = commands.add_parser("export-lite0", help="write the pip-installed ImageNet EfficientNet-Lite0 as a SPEC folder")
    lite0.add_argument("--out", type=Path, default=WEIGHTS_DIR / "tf_efficientnet_lite0", metavar="DIR")

    args = parser.parse_args(argv)
    if getattr(args, "offline", False):
        os.environ["HF_HUB_OFFLINE"] = "1"
    if getattr(args, "engine", None) == "onnx":
        from .onnx_backend import missing_packages

        problem = missing_packages()
        if problem:
            parser.error(f"--engine onnx: {problem}")
    handlers = {"download": _download, "classify": _classify, "retrieve": _retrieve,
                "evaluate-gallery": _evaluate, "explain": _explain, "export-lite0": _export_lite0}
    if args.command == "download" and args.offline:
        parser.error("download needs the network; run it without --offline.")
    try:
        return handlers[args.command](args)
    except SpecError as err:  # a malformed --model: a usage error, not a traceback
        parser.error(str(err))
    except (WeightsNotFound, ModelLoadError) as err:  # missing or broken weights: the message says the fix
        print(f"error: {err}", file=sys.stderr)
        return 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, metavar="DIR")
    parser.add_argument("--offline", action="store_true", help="no network: only weights/ and the HF cache")


def _models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", dest="models", metavar="SPEC",
                        help="ARCH or ARCH=SOURCE; repeatable; replaces the default ensemble")
    _common(parser)
    _engine(parser)


def _engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINE_CHOICES,
                        help="ONNX Runtime, eager PyTorch, or auto = ONNX Runtime when installed and valid "
                             "(default: $SENET_ENGINE or auto)")


def _services(args):
    from .config import AppConfig
    from .services import Services

    engine = {"engine": args.engine} if args.engine else {}
    return Services.create(AppConfig.from_specs(args.models, offline=args.offline, weights_dir=args.weights_dir,
                                                **engine))


def _download(args) -> int:
    from .config import ModelSpec
    from .weights import WeightsNotFound, download

    failed = False
    for text in args.specs or DEFAULT_MODELS:
        try:
            folder = download(ModelSpec.parse(text), args.weights_dir)
        except WeightsNotFound as err:
            print(f"{text}: {err}", file=sys.stderr)
            failed = True
            continue
        print(f"{text}: {folder}")
    return 1 if failed else 0


def _classify(args) -> int:
    from .classify import NoModelAnswered, classify
    from .images import ImageError, load_image

    services = _services(args)
    results, failed = {}, False
    for path in args.images:
        try:
            image = load_image(path, services.config.limits)
            results[path] = classify(services.engine, image, tta=args.tta, k=args.top).as_dict()
        except (ImageError, NoModelAnswered) as err:
            results[path] = {"error": str(err)}
            failed = True
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for path, result in results.items():
            print(path)
            if "error" in result:
                print(f"  error: {result['error']}")
                continue
            print("  ensemble: " + ", ".join(f"{p['label']} {p['prob']:.3f}" for p in result["ensemble"]))
            for name, member in result["members"].items():
                tops = ", ".join(f"{p['label']} {p['prob']:.3f}" for p in member["top"]) or member.get("error", "")
                print(f"  {name}: {tops}")
    return 1 if failed else 0


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr)


def _gallery_search(args):
    from .gallery import resolve_source, scan
    from .search import GallerySearch, feature_choices

    services = _services(args)
    root = resolve_source(args.gallery, offline=args.offline)
    items = scan(root)
    if not items:
        raise SystemExit(f"No images found under {args.gallery}/<label>/.")
    choices = feature_choices(services)
    for feature in getattr(args, "features", None) or [getattr(args, "feature", choices[0])]:
        if feature not in choices:
            raise SystemExit(f"Unknown feature {feature!r}; choose one of: {', '.join(choices)}.")
    return services, root, items, GallerySearch(services)


def _query_files(sources: list[str]) -> list[Path]:
    from .images import IMAGE_SUFFIXES

    files = []
    for source in map(Path, sources):
        if source.is_dir():
            files += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(source)
    return files


def _retrieve(args) -> int:
    from .images import ImageError, load_image

    services, root, items, searcher = _gallery_search(args)
    results, failed = {}, False
    for path in _query_files(args.queries):
        if path.stem in results:
            print(f"{path}: a query named {path.stem!r} was already ranked; ids are file stems, skipping it",
                  file=sys.stderr)
            failed = True
            continue
        try:
            hits = searcher.search(load_image(path, services.config.limits), items, args.feature, args.top,
                                   progress=_progress)
        except ImageError as err:
            print(f"{path}: {err}", file=sys.stderr)
            failed = True
            continue
        results[path.stem] = [str(hit.item.path.relative_to(root)) for hit in hits]
    args.out.write_text(json.dumps(results, indent=2))
    print(f"Wrote rankings for {len(results)} queries to {args.out}")
    return 1 if failed else 0


def _evaluate(args) -> int:
    from .search import feature_choices

    services, _, items, searcher = _gallery_search(args)
    features = args.features or feature_choices(services)
    report = {feature: searcher.evaluate(items, feature, progress=_progress).as_dict() for feature in features}
    print(json.dumps(report, indent=2))
    return 0


def _explain(args) -> int:
    from .images import load_image

    args.models = [args.model]
    services = _services(args)
    name = services.registry.names[0]
    if not services.registry.se_blocks(name):  # judged from the structure alone: nothing is loaded
        print(f"{name} has no Squeeze-and-Excitation blocks; there is nothing to explain.", file=sys.stderr)
        return 1
    outputs = services.engine.run(name, load_image(args.image, services.config.limits))
    blocks = services.registry.se_blocks(name)
    rows = [
        {"name": b.name, "path": b.path, "channels": b.channels, "reduction": b.reduction,
         "excitation": [round(float(v), 6) for v in outputs.excitations[b.name]]}
        for b in blocks
    ]
    if args.json:
        print(json.dumps({"model": name, "image": args.image, "blocks": rows}, indent=1))
    else:
        for row in rows:
            vector = row["excitation"]
            print(f"{row['name']:8} {row['path']:24} C={row['channels']:<5} r={row['reduction']:<4g} "
                  f"mean={sum(vector) / len(vector):.3f} min={min(vector):.3f} max={max(vector):.3f}")
    return 0


def _export_lite0(args) -> int:
    from .convert import export_lite0

    folder = export_lite0(args.out)
    print(f"Wrote {folder}. Use it with: --model tf_efficientnet_lite0={folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
