#!/usr/bin/env python3
"""How fast SENet Explorer is, each figure a ratio against a baseline measured in the same run.

Full-size ``resnet152d.gluon_in1k`` and ``seresnext101_64x4d.gluon_in1k`` with random weights (the arithmetic
does not depend on the values), written once under ``--work-dir``; every figure a median of ``--runs`` runs:
1. the ensemble forward, eager PyTorch against the app's engine (``auto``), in processes of their own taking
   turns (the machine's speed drifts within minutes); 2. the engine against the physical floor (FLOPs over
   the best fp32 matrix multiply); 3. classify through ``gradio_client`` against the bare forwards (the same
   image through the same engine in a process of its own, in turns with the requests); 4. ``/every_tab``
   (Classify + Retrieve + Explain) against one classify; 5. ``app.py`` restarted (weights, exports, gallery
   features on disk) to its first answer against a process that only loads the weights, and the app's peak
   resident memory; 6. where a ``gradio_client`` call's time goes, on cached answers (no forward runs).

    .venv/bin/python benchmarks/bench.py                         # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/bench.py --json benchmarks/results.json

A script, not a test: the figures depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

ARCHS = ("resnet152d.gluon_in1k", "seresnext101_64x4d.gluon_in1k")
TARGETS = {"engine_speedup": ("≥", 1.3), "engine_vs_floor": ("≤", 1.4), "api_vs_bare": ("≤", 1.25),
           "every_tab_vs_classify": ("≤", 1.5), "restart_vs_load": ("≤", 2.0)}
LOAD_ONLY = """import sys, timm
from safetensors.torch import load_file
for arch, folder in zip(sys.argv[1::2], sys.argv[2::2]):
    timm.create_model(arch, pretrained=False).load_state_dict(load_file(folder + "/model.safetensors"))
"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_s(fn, runs: int) -> float:
    fn()  # warm-up: first connections, first allocations
    return statistics.median(timed(fn) for _ in range(runs))


def machine() -> dict:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "load_1min_at_start":
            round(os.getloadavg()[0], 2), **{p: version(p) for p in ("torch", "onnxruntime", "gradio", "gradio_client")}}


def peak_gflops(runs: int = 5) -> float:
    """The best fp32 GFLOP/s of large matrix multiplies, PyTorch's (MKL) or numpy's (OpenBLAS): the floor's
    divisor, so the best of several sizes and runs, that a slow moment does not lower it."""
    import numpy as np
    import torch

    best = 0.0
    for n in (2048, 4096):
        for a, b, multiply in ((torch.randn(n, n), torch.randn(n, n), torch.mm),
                               (np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32), np.matmul)):
            multiply(a, b)
            best = max(best, 2 * n**3 / min(timed(lambda: multiply(a, b)) for _ in range(runs)) / 1e9)
    return best


def photos() -> list[Path]:
    """The committed gallery's photos: distinct pixels, so every one misses the app's result cache."""
    return sorted((REPO_ROOT / "gallery").glob("*/*.jpg"))


def random_weight_models(work_dir: Path) -> list[str]:
    """Write each arch with random weights in the Hub layout once; return the app's SPECs for them."""
    import timm
    import torch
    from timm.models import save_for_hf

    specs = []
    for arch in ARCHS:
        folder = work_dir / "weights" / arch
        if not (folder / "model.safetensors").exists():
            print(f"writing random-weight {arch} …", flush=True)
            torch.manual_seed(0)
            save_for_hf(timm.create_model(arch, pretrained=False).eval(), str(folder), safe_serialization=True)
        specs.append(f"{arch}={folder}")
    return specs


# ------------------------------------------------------------------ the bare forwards, in a process of their own
def serve_forwards(specs: list[str], engine: str, work_dir: Path) -> None:
    """The child of ``Forwards``: the app's engine as ``app.py`` sets it up; per image path read, the image
    decoded and run through every model, the seconds printed back. First line: each model's GFLOP."""
    import torch
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode

    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    config = AppConfig.from_specs(specs, offline=True, weights_dir=work_dir / "weights", engine=engine,
                                  feature_cache_dir=work_dir / "features")
    services = Services.create(config)
    gflop = {}
    for name in services.registry.names:
        loaded = services.registry.get(name)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            loaded.model(torch.zeros(1, *loaded.data_config["input_size"]))
        gflop[name.split("=")[0]] = counter.get_total_flops() / 1e9
        services.engine.backend(name)  # exported or opened now, not during a timed run
    print(json.dumps(gflop), flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        image = Image.open(line.strip()).convert("RGB")
        outputs = [services.engine.run(name, image) for name in services.registry.names]
        print(json.dumps({"wall_s": time.perf_counter() - start,
                          "forward_s": sum(o.latency_ms for o in outputs) / 1e3}), flush=True)


class Forwards:
    """The bare forwards of one engine in a child process, run one image at a time on request."""

    def __init__(self, specs: list[str], engine: str, work_dir: Path):
        command = [sys.executable, __file__, "--serve-forwards", engine, "--work-dir", str(work_dir)]
        self.process = subprocess.Popen(command + [f"--model={s}" for s in specs], text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.gflop = json.loads(self.process.stdout.readline() or "null")
        if self.gflop is None:
            self.close()
            raise RuntimeError(f"the {engine} forwards did not start (see the error above)")

    def run(self, image: Path) -> dict:
        self.process.stdin.write(f"{image}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


# ------------------------------------------------------------------ the app, in a process of its own
@contextlib.contextmanager
def served_app(specs: list[str], work_dir: Path, engine: str = "auto"):
    """``python app.py`` as an operator starts it; yields its URL, a ``gradio_client.Client`` and its process."""
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "app.py", "--offline", "--port", str(port), "--engine", engine,
               "--weights-dir", str(work_dir / "weights")] + [f"--model={s}" for s in specs]
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would stall the logging server
    server = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if server.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"app.py exited with code {server.returncode}:\n{log.read()[-3000:]}")
            try:
                client = Client(url, verbose=False, download_files=False)
                break
            except Exception:  # not listening yet
                time.sleep(0.05)
        yield url, client, server
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def upload(http, url: str, image: Path) -> dict:
    """Upload once through Gradio's upload route; the returned reference can be sent again and again."""
    with open(image, "rb") as f:
        (path,) = http.post(f"{url}gradio_api/upload", files={"files": (image.name, f)}).json()
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def call_raw(http, url: str, api: str, data: list) -> list:
    """One call of Gradio's HTTP API without ``gradio_client``: POST the inputs, read the answer's SSE stream."""
    event_id = http.post(f"{url}gradio_api/call/{api}", json={"data": data}).json()["event_id"]
    with http.stream("GET", f"{url}gradio_api/call/{api}/{event_id}") as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"/{api} failed: {line[5:].strip()}")
                return json.loads(line[5:])
    raise RuntimeError(f"/{api}: the stream ended without an answer")


# ------------------------------------------------------------------ the measurements
def engine_vs_eager(specs: list[str], work_dir: Path, runs: int) -> dict:
    """The ensemble forward (its members back to back), eager and engine taking turns; each turn runs one
    untimed image first, so the side comes back warm to its timed one."""
    sides = {"eager": Forwards(specs, "torch", work_dir), "engine": Forwards(specs, "auto", work_dir)}
    times = {side: [] for side in sides}
    images = iter(photos())
    try:
        for _ in range(runs):
            for side, forwards in sides.items():
                forwards.run(next(images))
                times[side].append(forwards.run(next(images))["forward_s"])
    finally:
        for forwards in sides.values():
            forwards.close()
    return {"gflop": sides["eager"].gflop, **{f"{side}_s": statistics.median(t) for side, t in times.items()}}


def app_figures(specs: list[str], work_dir: Path, runs: int) -> dict:
    """Items 3, 4 and 6, and the app's peak memory, on one running app."""
    import httpx
    from gradio_client import Client, handle_file

    images = iter(photos()[::-1])  # other images than engine_vs_eager's: the app caches nothing from them yet
    figures = {}
    with served_app(specs, work_dir) as (url, client, server), httpx.Client(timeout=600) as http:
        for api in ("/classify", "/retrieve", "/explain", "/every_tab"):  # warm-up; stores the gallery features
            client.predict(handle_file(next(images)), api_name=api)
        bare, api_s, bare_s = Forwards(specs, "auto", work_dir), [], []
        try:  # blocks of runs, requests and bare forwards in turn, on the same images
            for _ in range(2):
                block = [next(images) for _ in range(runs)]
                api_s += [timed(lambda: client.predict(handle_file(i), api_name="/classify")) for i in block]
                bare_s += [bare.run(i)["wall_s"] for i in block]
        finally:
            bare.close()
        figures.update(api_classify_s=statistics.median(api_s), bare_forwards_s=statistics.median(bare_s))

        classify_s, every_tab_s = [], []
        for _ in range(runs):
            classify_s.append(timed(lambda: client.predict(handle_file(next(images)), api_name="/classify")))
            every_tab_s.append(timed(lambda: client.predict(handle_file(next(images)), api_name="/every_tab")))
        figures.update(classify_s=statistics.median(classify_s), every_tab_s=statistics.median(every_tab_s))

        # cached answers from here: this image's forwards ran in the warm-up above, so no forward runs
        image = photos()[-1]
        downloading = Client(url, verbose=False)
        # gradio_client opens a new HTTP client for each upload, join and download, each loading the CA
        # certificates unless given an SSL context to reuse (httpx takes one where it takes verify)
        context = ssl.create_default_context()
        lean = Client(url, verbose=False, download_files=False, ssl_verify=context)
        lean_downloading = Client(url, verbose=False, ssl_verify=context)
        info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        defaults = {api: [p.get("parameter_default") for p in info[f"/{api}"]["parameters"][1:]]
                    for api in ("classify", "retrieve")}
        reference = upload(http, url, image)
        gallery = call_raw(http, url, "retrieve", [reference, *defaults["retrieve"]])[0]
        costs = {
            "upload_only": lambda: upload(http, url, image),
            "classify_client": lambda: client.predict(handle_file(image), api_name="/classify"),
            "classify_client_reused_ssl_context": lambda: lean.predict(handle_file(image), api_name="/classify"),
            "classify_raw_upload_each_call": lambda: call_raw(http, url, "classify", [upload(http, url, image), *defaults["classify"]]),
            "classify_raw_uploaded_once": lambda: call_raw(http, url, "classify", [reference, *defaults["classify"]]),
            "retrieve_client_downloading": lambda: downloading.predict(handle_file(image), api_name="/retrieve"),
            "retrieve_client_download_files_false": lambda: client.predict(handle_file(image), api_name="/retrieve"),
            "retrieve_client_reused_ssl_context": lambda: lean.predict(handle_file(image), api_name="/retrieve"),
            "retrieve_client_downloading_reused_ssl_context":
                lambda: lean_downloading.predict(handle_file(image), api_name="/retrieve"),
            "retrieve_raw_uploaded_once": lambda: call_raw(http, url, "retrieve", [reference, *defaults["retrieve"]]),
            "download_retrieve_files": lambda: [http.get(item["image"]["url"]).content for item in gallery],
        }
        figures["cached"] = {name: median_s(fn, 2 * runs + 1) for name, fn in costs.items()}
        figures["retrieve_files"] = len(gallery)
        figures["retrieve_files_kb"] = sum(len(http.get(item["image"]["url"]).content) for item in gallery) / 1024
        peak = next(l for l in Path(f"/proc/{server.pid}/status").read_text().splitlines() if l.startswith("VmHWM:"))
        figures["app_peak_rss_mb"] = int(peak.split()[1]) / 1024
    return figures


def restart(specs: list[str], work_dir: Path, runs: int) -> dict:
    """Seconds from process start: ``app.py`` (exports and gallery features on disk) to its first classify
    answer, against a fresh process that only loads the weights."""
    from gradio_client import handle_file

    arguments = [part for spec in specs for part in (spec.split("=")[0].split(".")[0], spec.split("=", 1)[1])]
    load_s, first_answer_s = [], []
    for _ in range(runs):
        load_s.append(timed(lambda: subprocess.run([sys.executable, "-c", LOAD_ONLY, *arguments], check=True)))
        start = time.perf_counter()
        with served_app(specs, work_dir) as (_, client, _):
            client.predict(handle_file(photos()[0]), api_name="/classify")
            first_answer_s.append(time.perf_counter() - start)
    return {"load_weights_s": statistics.median(load_s), "first_answer_s": statistics.median(first_answer_s)}


# ------------------------------------------------------------------ the report
def ratios(r: dict) -> dict:
    e, a, s = r["engine"], r["app"], r["restart"]
    return {"engine_speedup": e["eager_s"] / e["engine_s"], "engine_vs_floor": e["engine_s"] / e["floor_s"],
            "api_vs_bare": a["api_classify_s"] / a["bare_forwards_s"],
            "every_tab_vs_classify": a["every_tab_s"] / a["classify_s"],
            "restart_vs_load": s["first_answer_s"] / s["load_weights_s"]}


def report(r: dict) -> str:
    e, a, s, q = r["engine"], r["app"], r["restart"], r["ratios"]

    def row(what: str, value: str, key: str, baseline: str) -> str:
        sign, target = TARGETS[key]
        held = q[key] >= target if sign == "≥" else q[key] <= target
        return f"| {what} | {value} | **{q[key]:.2f}×** {baseline} | {sign} {target} | {'yes' if held else 'NO'} |"

    ms = lambda seconds: f"{seconds * 1e3:.0f} ms"  # noqa: E731
    m = r["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores; torch {m['torch']}, onnxruntime {m['onnxruntime']}, gradio "
             f"{m['gradio']}, gradio_client {m['gradio_client']}; median of {r['runs']} runs", "",
             "| figure | value | ratio | target | held |", "|---|---:|---|---|---|",
             row("ensemble forward, engine", ms(e["engine_s"]), "engine_speedup", f"faster than eager ({ms(e['eager_s'])})"),
             row("ensemble forward, engine", ms(e["engine_s"]), "engine_vs_floor",
                 f"the floor ({sum(e['gflop'].values()):.1f} GFLOP / {r['peak_gflops']:.0f} GFLOP/s = {ms(e['floor_s'])})"),
             row("classify through gradio_client", ms(a["api_classify_s"]), "api_vs_bare",
                 f"the bare forwards ({ms(a['bare_forwards_s'])})"),
             row("Classify + Retrieve + Explain (/every_tab)", ms(a["every_tab_s"]), "every_tab_vs_classify",
                 f"one classify ({ms(a['classify_s'])})"),
             row("restart to first answer", f"{s['first_answer_s']:.1f} s", "restart_vs_load",
                 f"loading the weights ({s['load_weights_s']:.1f} s)"),
             f"| app peak resident memory (VmHWM) | {a['app_peak_rss_mb']:.0f} MB | | | |", "",
             f"Cached answers (no forward), {a['retrieve_files']} retrieve files of {a['retrieve_files_kb']:.0f} kB in all:",
             "| call | median |", "|---|---:|"]
    lines += [f"| {name.replace('_', ' ')} | {seconds * 1e3:.1f} ms |" for name, seconds in a["cached"].items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (the median is reported)")
    parser.add_argument("--restarts", type=int, default=3, help="app restarts timed (each takes a while)")
    parser.add_argument("--work-dir", type=Path, default=Path.home() / ".cache" / "senet-explorer" / "bench",
                        help="random-weight models, ONNX exports and gallery features (kept between runs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve-forwards", choices=["torch", "auto"], help=argparse.SUPPRESS)
    parser.add_argument("--model", action="append", dest="models", help=argparse.SUPPRESS)
    parser.add_argument("--peak", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= len(photos()) // 9:  # every timed forward needs an image of its own
        parser.error(f"--runs must be between 1 and {len(photos()) // 9}")
    os.environ["HF_HUB_OFFLINE"] = "1"
    # the app's gallery features stay with the benchmark's files (the children inherit it)
    os.environ.setdefault("HF_HOME", str(args.work_dir / "hf-home"))
    if args.peak:
        print(peak_gflops())
        return 0
    if args.serve_forwards:
        serve_forwards(args.models, args.serve_forwards, args.work_dir)
        return 0

    began = time.perf_counter()
    specs = random_weight_models(args.work_dir)
    r = {"models": list(ARCHS), "runs": args.runs, "machine": machine()}
    peak = subprocess.run([sys.executable, __file__, "--peak"], check=True, capture_output=True, text=True)
    r["peak_gflops"] = float(peak.stdout)  # in a child: its thread pools do not linger in this process
    r["engine"] = engine_vs_eager(specs, args.work_dir, args.runs)
    r["engine"]["floor_s"] = sum(r["engine"]["gflop"].values()) / r["peak_gflops"]
    print(json.dumps(r["engine"]), flush=True)
    r["app"] = app_figures(specs, args.work_dir, args.runs)
    print(json.dumps(r["app"]), flush=True)
    r["restart"] = restart(specs, args.work_dir, args.restarts)
    r["ratios"] = ratios(r)
    r["duration_s"] = time.perf_counter() - began
    print("\n" + report(r) + f"\n\nThis run took {r['duration_s'] / 60:.1f} minutes.")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
