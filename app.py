"""SENet Explorer: parse flags, build the Gradio app, launch it.

    python app.py                      # the default ensemble, http://127.0.0.1:7860
    python app.py --share              # a public link for a seminar
    python app.py --offline            # only weights/ and the Hugging Face cache
    python app.py --model tf_efficientnet_lite0=weights/lite0   # your own SPECs
"""
from __future__ import annotations

import argparse
import logging
import os

from senet_demo.config import ENGINE_CHOICES


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SENet Explorer: a Gradio app about Squeeze-and-Excitation networks.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for every interface; default %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
                        help="port to listen on (default %(default)s)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link (for seminars)")
    parser.add_argument("--model", action="append", metavar="SPEC", dest="models",
                        help="ARCH or ARCH=SOURCE (hf-hub:org/name, a folder, or a .safetensors file); "
                             "repeat for several; replaces the default ensemble")
    parser.add_argument("--explain-model", action="append", metavar="SPEC", dest="explain_models",
                        help="an extra SE model for the Explain tab only (e.g. legacy_seresnet152.in1k); repeatable")
    parser.add_argument("--offline", action="store_true",
                        help="use no network at all: weights only from weights/ or the Hugging Face cache")
    parser.add_argument("--gallery", metavar="DIR",
                        help="gallery for Retrieve/Explain: a folder with one sub-folder per label, or "
                             "hf-dataset:org/name (default: the sample gallery in gallery/)")
    parser.add_argument("--weights-dir", metavar="DIR", help="where local weights live (default: weights/)")
    parser.add_argument("--engine", choices=ENGINE_CHOICES,
                        help="forward pass: ONNX Runtime (exported once, checked against PyTorch), eager PyTorch, "
                             "or auto = ONNX Runtime when installed and valid, else PyTorch "
                             "(default: $SENET_ENGINE or auto)")
    args = parser.parse_args(argv)
    if args.engine == "onnx":
        from senet_demo.onnx_backend import missing_packages

        problem = missing_packages()
        if problem:
            parser.error(f"--engine onnx: {problem}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from senet_demo.config import AppConfig
    from senet_demo.services import Services
    from senet_demo.ui import allowed_paths, build_demo

    engine = {"engine": args.engine} if args.engine else {}
    try:
        config = AppConfig.from_specs(args.models, args.explain_models, offline=args.offline, **engine, **_paths(args))
    except ValueError as err:  # a SPEC, an engine or an environment setting that cannot be used
        raise SystemExit(f"app.py: error: {err}") from None
    from senet_demo.onnx_backend import serve_sessions_in_one_pool

    serve_sessions_in_one_pool(config)  # a setting of this process, before any session opens
    services = Services.create(config)
    services.preload()  # models with weights on disk load while the server starts
    demo = build_demo(services)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                max_file_size=config.limits.max_upload_total_bytes, allowed_paths=allowed_paths(services))


def _paths(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from senet_demo.gallery import resolve_source

    paths = {}
    if args.gallery:
        paths["gallery_dir"] = resolve_source(args.gallery, offline=args.offline)
    if args.weights_dir:
        paths["weights_dir"] = Path(args.weights_dir)
    return paths


if __name__ == "__main__":
    main()
