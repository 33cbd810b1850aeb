"""Command line: python -m senet_demo {download,classify,retrieve,evaluate-gallery,explain,export-lite0} ...

    python -m senet_demo download                      # the default ensemble into weights/
    python -m senet_demo classify --json photo.jpg     # ensemble + members, top-5, as JSON
    python -m senet_demo retrieve --gallery gallery --queries queries --out results.json
    python -m senet_demo evaluate-gallery --gallery gallery   # P@1, P@5, mAP as JSON
    python -m senet_demo explain --json photo.jpg      # every SE block's excitation vector
    python -m senet_demo export-lite0                  # a real ImageNet model that needs no network

A usage error (a missing file, a folder that cannot be written, a bad option or environment value) is
one line on stderr and exit status 2, found before any model is loaded or any image embedded; a
failure while working (weights that will not load, an image that does not decode) is one line and 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import DEFAULT_MODELS, ENGINE_CHOICES, TTA_CHOICES, WEIGHTS_DIR, InputError, SpecError, environment_problems
from .models import ModelLoadError
from .weights import WeightsNotFound


class UsageError(ValueError):
    """A command line that cannot work as given; the message says what is wrong and what to do."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage text is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def main(argv=None) -> int:
    parser = _Parser(prog="python -m senet_demo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    download = commands.add_parser("download", help="fetch Hub weights into weights/ for offline use")
    download.add_argument("specs", nargs="*", metavar="SPEC", help=f"default: {' '.join(DEFAULT_MODELS)}")
    _common(download)

    classify = commands.add_parser("classify", help="classify images with the ensemble")
    _models(classify)
    classify.add_argument("--tta", choices=TTA_CHOICES, default="none")
    classify.add_argument("--top", type=_positive_int, default=5, metavar="K")
    classify.add_argument("--json", action="store_true", help="print JSON (default: a readable table)")
    classify.add_argument("images", nargs="+", metavar="IMAGE")

    retrieve = commands.add_parser("retrieve", help="rank a gallery for each query image")
    _models(retrieve)
    retrieve.add_argument("--gallery", required=True, metavar="DIR", help="one sub-folder per label")
    retrieve.add_argument("--queries", required=True, nargs="+", metavar="DIR|FILE")
    retrieve.add_argument("--feature", default="ensemble", metavar="ensemble|MODEL|logsoftmax")
    retrieve.add_argument("--top", type=_positive_int, default=20, metavar="K")
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
    problems = [p for p in environment_problems()
                if not (getattr(args, "engine", None) and p.startswith("SENET_ENGINE="))]  # --engine wins
    if problems:
        parser.error(problems[0])
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
        parser.error(_one_line(err))
    except (UsageError, InputError) as err:  # the message already says what to do
        parser.exit(2, f"{parser.prog}: error: {_one_line(err)}\n")
    except (WeightsNotFound, ModelLoadError, OSError) as err:  # the message says the fix
        print(f"{parser.prog}: error: {_one_line(err)}", file=sys.stderr)
        return 1


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _writable_file(path: Path) -> None:
    """Refuse, before any work, an output file that could not be written at the end."""
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file name such as {path / 'results.json'}.")
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: the folder {path.parent} does not exist; create it or choose another.")
    from .storage import writable_problem

    problem = writable_problem(path.parent)
    if problem:
        raise UsageError(f"--out {path}: {problem}; choose a folder you can write to.")


def _image_argument(path: str, limits):
    """An image named on the command line, decoded, or a usage error naming the file and what is wrong."""
    from .images import ImageError, load_image

    if not Path(path).is_file():
        raise UsageError(f"{path} does not exist or is not a file; give the path of a photo.")
    try:
        return load_image(path, limits)
    except ImageError as err:
        raise UsageError(str(err)) from None


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
    from .gallery import gallery_problem, resolve_source, scan
    from .search import GallerySearch, feature_choices

    try:
        root = resolve_source(args.gallery, offline=args.offline)
    except FileNotFoundError as err:  # hf-dataset: offline or unreachable
        raise UsageError(str(err)) from None
    problem = gallery_problem(root)
    if problem:
        raise UsageError(problem)
    services = _services(args)
    choices = feature_choices(services)
    for feature in getattr(args, "features", None) or [getattr(args, "feature", choices[0])]:
        if feature not in choices:
            raise UsageError(f"Unknown feature {feature!r}; choose one of: {', '.join(choices)}.")
    return services, root, scan(root), GallerySearch(services)


def _gallery_error(err: ValueError, args) -> UsageError:
    """What the search found wrong with the gallery itself (no image decodes, no label with two images)."""
    from .images import READABLE

    fix = f" Fix: give a gallery of {READABLE} photos, one sub-folder per label." if "decoded" in str(err) else ""
    return UsageError(f"Gallery {args.gallery}: {err}{fix}")


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
    from .storage import atomic_write

    _writable_file(args.out)
    missing = [q for q in args.queries if not Path(q).exists()]
    if missing:
        raise UsageError(f"--queries {missing[0]} does not exist; give query photos or a folder of them.")
    queries = _query_files(args.queries)
    if not queries:
        raise UsageError(f"--queries {' '.join(args.queries)} holds no photos.")
    services, root, items, searcher = _gallery_search(args)
    results, failed = {}, False
    for path in queries:
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
        except ValueError as err:  # no gallery image decodes
            raise _gallery_error(err, args) from None
        results[path.stem] = [str(hit.item.path.relative_to(root)) for hit in hits]
    with atomic_write(args.out) as tmp:  # a failure here leaves no half-written results file
        tmp.write_text(json.dumps(results, indent=2))
    print(f"Wrote rankings for {len(results)} queries to {args.out}")
    return 1 if failed else 0


def _evaluate(args) -> int:
    from .search import feature_choices

    services, _, items, searcher = _gallery_search(args)
    features = args.features or feature_choices(services)
    try:
        report = {feature: searcher.evaluate(items, feature, progress=_progress).as_dict() for feature in features}
    except ValueError as err:  # no gallery image decodes, or no label has two images
        raise _gallery_error(err, args) from None
    print(json.dumps(report, indent=2))
    return 0


def _explain(args) -> int:
    from .config import Limits

    image = _image_argument(args.image, Limits())  # before any model is loaded
    args.models = [args.model]
    services = _services(args)
    name = services.registry.names[0]
    if not services.registry.se_blocks(name):  # judged from the structure alone: nothing is loaded
        print(f"{name} has no Squeeze-and-Excitation blocks; there is nothing to explain.", file=sys.stderr)
        return 1
    outputs = services.engine.run(name, image)
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
    from .storage import writable_problem

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder for config.json and model.safetensors.")
    problem = writable_problem(args.out)
    if problem:
        raise UsageError(f"--out {args.out}: {problem}; choose a folder you can write to.")
    folder = export_lite0(args.out)
    print(f"Wrote {folder}. Use it with: --model tf_efficientnet_lite0={folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
