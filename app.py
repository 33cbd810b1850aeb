"""SENet Explorer: parse flags, build the Gradio app, launch it.

    python app.py                      # the default ensemble, http://127.0.0.1:7860
    python app.py --share              # a public link for a seminar
    python app.py --offline            # only weights/ and the Hugging Face cache
    python app.py --model tf_efficientnet_lite0=weights/lite0   # your own SPECs
    gradio app.py -- --offline         # reload mode: the app is rebuilt when a source file changes

Importing this module builds ``demo`` (Gradio's convention) from the defaults and the environment, without
loading weights or downloading anything; ``python app.py`` builds it from the flags, starts loading the
models whose weights are on disk, and launches it.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING

from senet_demo.config import ENGINE_CHOICES

if TYPE_CHECKING:
    import gradio as gr


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


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (with what to do), or None."""
    if not 1 <= port <= 65535:
        return f"--port {port} is not a port number (1-65535); pick one, e.g. --port 7861."
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as err:
        return f"--host {host} cannot be used ({err.strerror or err}); try --host 127.0.0.1 or --host 0.0.0.0."
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket does
        try:
            probe.bind(address)
        except OSError as err:
            return (f"port {port} on {host} is not free ({err.strerror or err}); stop what listens there "
                    f"or pick another with --port.")
    return None


def start_problem(args: argparse.Namespace) -> str | None:
    """The first reason not to start (a SENET_* setting, a --gallery folder that cannot serve), or None;
    checked before anything is built, so the operator gets one line instead of a half-started server."""
    from senet_demo.config import environment_problems

    problems = environment_problems()
    if problems:
        return problems[0]
    if args.gallery:
        from senet_demo.gallery import gallery_problem, resolve_source

        try:
            folder = resolve_source(args.gallery, offline=args.offline)
        except FileNotFoundError as err:  # a Hub dataset that cannot be fetched
            return str(err)
        args.gallery = str(folder)  # a dataset is fetched once: the services use the folder found here
        return gallery_problem(folder)
    return None


def build_services(args: argparse.Namespace):
    """The shared services for these flags; a SPEC or setting that cannot be used exits with its message."""
    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    engine = {"engine": args.engine} if args.engine else {}
    try:
        config = AppConfig.from_specs(args.models, args.explain_models, offline=args.offline, **engine, **_paths(args))
    except ValueError as err:  # a SPEC, an engine or an environment setting that cannot be used
        print(f"app.py: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return Services.create(config)


def build_app(args: argparse.Namespace) -> gr.Blocks:
    """The app's Blocks for these flags; loads no weights (they load on first use or in ``serve``)."""
    from senet_demo.ui import build_demo

    return build_demo(build_services(args))


def main(argv=None) -> None:
    global demo  # `gradio app.py` looks for the launched Blocks under this name
    args = parse_args(argv)
    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported (Gradio imports it)
    problem = start_problem(args)
    if problem:
        print(f"app.py: error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    import gradio as gr

    # Before anything slow is built. Not when `gradio app.py` re-runs this file after a change: its server
    # holds the port then.
    if gr.NO_RELOAD:
        problem = port_problem(args.host, args.port)
        if problem:
            print(f"app.py: error: {problem}", file=sys.stderr)
            raise SystemExit(2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    services = build_services(args)
    from senet_demo.ui import build_demo, launch_options
    from senet_demo.uploads import sweep_stale_sessions

    sweep_stale_sessions()  # session folders a crashed or killed server left behind
    demo = build_demo(services)
    # Models with weights on disk load while the server starts; whether the missing ones can be downloaded is
    # checked beside it (a short timeout, in the background), so the page can say so before anyone clicks.
    services.preload()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                **launch_options(services))


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
else:
    demo = build_app(parse_args([]))
