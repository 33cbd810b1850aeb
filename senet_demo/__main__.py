"""Command line: python -m senet_demo {download,classify,retrieve,evaluate-gallery,explain,export-lite0,index} ...

    python -m senet_demo download                      # the default ensemble into weights/
    python -m senet_demo classify --json photo.jpg     # ensemble + members, top-5, as JSON
    python -m senet_demo retrieve --gallery gallery --queries queries --out results.json
    python -m senet_demo evaluate-gallery --gallery gallery   # P@1, P@5, mAP as JSON
    python -m senet_demo explain --json photo.jpg      # every SE block's squeeze, bottleneck and excitation
    python -m senet_demo export-lite0                  # a real ImageNet model that needs no network
    python -m senet_demo index --gallery gallery --out gallery-index   # embed on Ray (requirements-ray.txt)
    python -m senet_demo retrieve --gallery index:gallery-index --queries queries --out results.json

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


GALLERY_HELP = ("a folder with one sub-folder per label, hf-dataset:org/name, or index:DIR (an index built by "
                "the index command; also index:hf-dataset:org/name)")


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
    retrieve.add_argument("--gallery", required=True, metavar="DIR", help=GALLERY_HELP)
    retrieve.add_argument("--queries", required=True, nargs="+", metavar="DIR|FILE")
    retrieve.add_argument("--feature", default="ensemble", metavar="ensemble|MODEL|logsoftmax")
    retrieve.add_argument("--top", type=_positive_int, default=20, metavar="K")
    retrieve.add_argument("--out", type=Path, required=True, metavar="results.json")

    evaluate = commands.add_parser("evaluate-gallery", help="leave-one-out P@1, P@5 and mAP of a labelled gallery")
    _models(evaluate)
    evaluate.add_argument("--gallery", required=True, metavar="DIR", help=GALLERY_HELP)
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

    index = commands.add_parser("index", help="embed a gallery on Ray into an index folder that retrieve and the app "
                                              "search (pip install -r requirements-ray.txt)")
    _models(index)
    index.add_argument("--gallery", required=True, metavar="SOURCE",
                       help="a folder with one sub-folder per label, or hf-dataset:NAME (streamed with datasets)")
    index.add_argument("--out", required=True, metavar="DIR",
                       help="the index folder: a path, or a URI pyarrow reaches (s3://bucket/path)")
    index.add_argument("--ray", metavar="ADDRESS", help="join this Ray cluster (default: start Ray on this machine)")
    index.add_argument("--workers", type=_positive_int, metavar="N",
                       help="Ray workers, each with its own models (default: the CPUs / --cpus-per-worker)")
    index.add_argument("--cpus-per-worker", type=_positive_int, default=1, metavar="C",
                       help="CPUs, and threads, of each worker (default: %(default)s)")
    index.add_argument("--feature", default="ensemble", metavar="ensemble|MODEL|logsoftmax",
                       help="the feature the index searches (default: %(default)s)")
    index.add_argument("--shard-size", type=_positive_int, default=1024, metavar="N",
                       help="images a shard of a folder source: the unit of work and of restart (default: %(default)s)")
    index.add_argument("--index", dest="index_kind", choices=("auto", "flat", "hnsw", "ivfpq"), default="auto",
                       help="the faiss index (default auto: exact below 100k images, HNSW or IVF-PQ above)")
    index.add_argument("--split", default="train", help="the dataset's split (hf-dataset: sources; default: %(default)s)")
    index.add_argument("--image-column", metavar="NAME", help="default: the dataset's first image column")
    index.add_argument("--label-column", metavar="NAME", help="default: label, else the first class-label column")

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
                "evaluate-gallery": _evaluate, "explain": _explain, "export-lite0": _export_lite0, "index": _index}
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


def _services(args, **paths):
    from .config import AppConfig
    from .services import Services

    engine = {"engine": args.engine} if args.engine else {}
    return Services.create(AppConfig.from_specs(args.models, offline=args.offline, weights_dir=args.weights_dir,
                                                **engine, **paths))


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
    services = _services(args, gallery_dir=root)
    choices = feature_choices(services)
    features = getattr(args, "features", None) or [getattr(args, "feature", choices[0])]
    for feature in features:
        if feature not in choices:
            raise UsageError(f"Unknown feature {feature!r}; choose one of: {', '.join(choices)}.")
    searcher = GallerySearch(services)
    if services.built_index is not None:  # a built index: refused before any query when its models differ
        from .built_index import IndexProblem

        try:
            for feature in features:
                services.built_index.check(services.registry, feature, searcher.weights)
        except IndexProblem as err:
            raise UsageError(str(err)) from None
        return services, root, [], searcher
    return services, root, scan(root), searcher


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
    built = services.built_index
    results, failed = {}, False
    for path in queries:
        if path.stem in results:
            print(f"{path}: a query named {path.stem!r} was already ranked; ids are file stems, skipping it",
                  file=sys.stderr)
            failed = True
            continue
        try:
            if built is not None:  # the rows' ids (label/file of a folder source), not pictures to show
                from .config import result_count

                query = searcher.query_vector(load_image(path, services.config.limits), args.feature)
                results[path.stem] = [built.row_id(row) for row, _ in built.search(query, result_count(args.top))]
                continue
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
    if services.built_index is not None:  # measured on the index's sample; its search may be approximate
        for figures in report.values():
            figures.update(services.built_index.figures())
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
         "squeeze": [round(float(v), 6) for v in outputs.squeezes[b.name]],  # z: the mean of each input channel
         "bottleneck": [round(float(v), 6) for v in outputs.bottlenecks[b.name]],  # C/r values after the activation
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


def _index(args) -> int:
    from .config import DEFAULT_MODELS, ModelSpec
    from .index_job import DATASET_PREFIX, JobError, JobSettings, missing_packages, run
    from .storage import writable_problem

    dataset = args.gallery.startswith(DATASET_PREFIX)
    problem = missing_packages(dataset=dataset)
    if problem:  # one line naming the optional extra
        raise UsageError(problem)
    if not dataset and not Path(args.gallery).expanduser().is_dir():
        raise UsageError(f"--gallery {args.gallery} is not a folder; give one with a sub-folder per label, or "
                         f"hf-dataset:NAME.")
    names = [ModelSpec.parse(spec).name for spec in args.models or DEFAULT_MODELS]
    if args.feature not in ("ensemble", "logsoftmax", *names):
        raise UsageError(f"Unknown feature {args.feature!r}; choose one of: {', '.join(['ensemble', *names, 'logsoftmax'])}.")
    if "://" not in args.out:
        out = Path(args.out).expanduser()
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {args.out} is a file; give a folder for the index.")
        problem = writable_problem(out)
        if problem:
            raise UsageError(f"--out {args.out}: {problem}; choose a folder you can write to.")
    settings = JobSettings(
        source=args.gallery, out=args.out, specs=args.models, weights_dir=str(args.weights_dir), offline=args.offline,
        engine=args.engine, feature=args.feature, shard_size=args.shard_size, index_kind=args.index_kind,
        ray_address=args.ray, workers=args.workers, cpus_per_worker=args.cpus_per_worker, split=args.split,
        image_column=args.image_column, label_column=args.label_column)
    try:
        manifest = run(settings, say=lambda line: print(line, file=sys.stderr))
    except JobError as err:  # the message says the fix
        print(f"python -m senet_demo: error: {_one_line(err)}", file=sys.stderr)
        return 1
    print(f"Wrote a gallery index of {manifest['rows']} images ({manifest['index']['kind']}) to {args.out}. "
          f"Search it: python app.py --gallery index:{args.out}")
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
