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
   resident memory. Where a ``gradio_client`` call's own time goes: ``client_cost.py``.

    .venv/bin/python benchmarks/bench.py   # the full run; docs/performance.md says how long it takes
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

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT))

ARCHS = ("resnet152d.gluon_in1k", "seresnext101_64x4d.gluon_in1k")
DEFAULT_WORK_DIR = Path.home() / ".cache" / "senet-explorer" / "bench"
LIBRARIES = ("torch", "onnxruntime", "gradio", "gradio_client")
LOAD_ONLY = """import sys, timm
from safetensors.torch import load_file
for arch, folder in (spec.split("=", 1) for spec in sys.argv[1:]):
    timm.create_model(arch, pretrained=False).load_state_dict(load_file(folder + "/model.safetensors"))
"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "load_1min_at_start":
            round(os.getloadavg()[0], 2), **{p: version(p) for p in LIBRARIES}}


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


def prepare(work_dir: Path) -> list[str]:
    """Write each arch with random weights in the Hub layout once; return the app's SPECs for them. Sets the
    environment first, which the app and every child inherit: offline, gallery features kept in ``work_dir``."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("HF_HOME", str(work_dir / "hf-home"))
    import timm
    import torch
    from timm.models import save_for_hf

    folders = {arch: work_dir / "weights" / arch for arch in ARCHS}
    for arch, folder in folders.items():
        if not (folder / "model.safetensors").exists():
            print(f"writing random-weight {arch} …", flush=True)
            torch.manual_seed(0)
            save_for_hf(timm.create_model(arch, pretrained=False).eval(), str(folder), safe_serialization=True)
    return [f"{arch}={folder}" for arch, folder in folders.items()]


# ------------------------------------------------------------------ the bare forwards, in a process of their own
def serve_forwards(engine: str, work_dir: str, specs: list[str]) -> None:
    """The child of ``Forwards``: the app's engine as ``app.py`` sets it up; per image path read, the image
    decoded and run through every model, the seconds printed back. First line: each model's GFLOP."""
    import torch
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode

    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    config = AppConfig.from_specs(specs, offline=True, weights_dir=Path(work_dir, "weights"), engine=engine,
                                  feature_cache_dir=Path(work_dir, "features"))
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
        serve = "import sys, bench; bench.serve_forwards(sys.argv[1], sys.argv[2], sys.argv[3:])"
        self.process = subprocess.Popen([sys.executable, "-c", serve, engine, str(work_dir), *specs], cwd=HERE,
                                        text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
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
def served_app(specs: list[str], work_dir: Path):
    """``python app.py`` as an operator starts it; yields its URL, a ``gradio_client.Client`` and its process."""
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "app.py", "--offline", "--port", str(port), "--engine", "auto",
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
                # as the README's snippet calls the app: one SSL context for all the client's requests
                client = Client(url, verbose=False, download_files=False, ssl_verify=ssl.create_default_context())
                break
            except Exception:  # not listening yet
                time.sleep(0.05)
        yield url, client, server
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


# ------------------------------------------------------------------ the measurements
def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {f"{name}_s": statistics.median(seconds) for name, seconds in times.items()}


def engine_vs_eager(specs: list[str], work_dir: Path, runs: int) -> dict:
    """The ensemble forward (its members back to back), eager and engine taking turns; each turn runs one
    untimed image first, so the side comes back warm to its timed one."""
    sides = {"eager": Forwards(specs, "torch", work_dir), "engine": Forwards(specs, "auto", work_dir)}
    times = {side: [] for side in sides}
    images = iter(photos())  # 4 per run, from the front
    try:
        for _ in range(runs):
            for side, forwards in sides.items():
                forwards.run(next(images))
                times[side].append(forwards.run(next(images))["forward_s"])
    finally:
        for forwards in sides.values():
            forwards.close()
    return {"gflop": sides["eager"].gflop, **medians(times)}


def app_figures(specs: list[str], work_dir: Path, runs: int) -> dict:
    """Items 3 and 4, and the app's peak memory, on one running app."""
    from gradio_client import handle_file

    # 4 + 4 per run, from the back: other images than engine_vs_eager's, so the app has none of them cached
    images = iter(photos()[::-1])
    times = {"api_classify": [], "bare_forwards": [], "classify": [], "every_tab": []}
    with served_app(specs, work_dir) as (_, client, server):
        ask = lambda api, image: timed(lambda: client.predict(handle_file(image), api_name=api))  # noqa: E731
        for api in ("/classify", "/retrieve", "/explain", "/every_tab"):  # warm-up; stores the gallery features
            ask(api, next(images))
        bare = Forwards(specs, "auto", work_dir)
        try:  # blocks of runs, requests and bare forwards in turn, on the same images
            for _ in range(2):
                block = [next(images) for _ in range(runs)]
                times["api_classify"] += [ask("/classify", image) for image in block]
                times["bare_forwards"] += [bare.run(image)["wall_s"] for image in block]
        finally:
            bare.close()
        for _ in range(runs):  # alternating, each on a new image
            times["classify"].append(ask("/classify", next(images)))
            times["every_tab"].append(ask("/every_tab", next(images)))
        peak = next(l for l in Path(f"/proc/{server.pid}/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return {**medians(times), "app_peak_rss_mb": int(peak.split()[1]) / 1024}


def restart(specs: list[str], work_dir: Path, runs: int) -> dict:
    """Seconds from process start: ``app.py`` (exports and gallery features on disk) to its first classify
    answer, against a fresh process that only loads the weights."""
    from gradio_client import handle_file

    times = {"load_weights": [], "first_answer": []}
    for _ in range(runs):
        times["load_weights"].append(timed(lambda: subprocess.run([sys.executable, "-c", LOAD_ONLY, *specs], check=True)))
        start = time.perf_counter()
        with served_app(specs, work_dir) as (_, client, _):
            client.predict(handle_file(photos()[0]), api_name="/classify")
            times["first_answer"].append(time.perf_counter() - start)
    return medians(times)


# ------------------------------------------------------------------ the report
def targets(r: dict) -> list[tuple]:
    """The targets table, one row per ratio: (figure, its value, ratio name, ratio, baseline, sign, target)."""
    e, a, s = r["engine"], r["app"], r["restart"]
    ms = lambda seconds: f"{seconds * 1e3:.0f} ms"  # noqa: E731
    floor = f"{sum(e['gflop'].values()):.1f} GFLOP / {r['peak_gflops']:.0f} GFLOP/s = {ms(e['floor_s'])}"
    engine = ("ensemble forward, engine", ms(e["engine_s"]))
    return [(*engine, "engine_speedup", e["eager_s"] / e["engine_s"], f"faster than eager ({ms(e['eager_s'])})", "≥", 1.3),
            (*engine, "engine_vs_floor", e["engine_s"] / e["floor_s"], f"the floor ({floor})", "≤", 1.4),
            ("classify through gradio_client", ms(a["api_classify_s"]), "api_vs_bare",
             a["api_classify_s"] / a["bare_forwards_s"], f"the bare forwards ({ms(a['bare_forwards_s'])})", "≤", 1.25),
            ("Classify + Retrieve + Explain (/every_tab)", ms(a["every_tab_s"]), "every_tab_vs_classify",
             a["every_tab_s"] / a["classify_s"], f"one classify ({ms(a['classify_s'])})", "≤", 1.5),
            ("restart to first answer", f"{s['first_answer_s']:.1f} s", "restart_vs_load",
             s["first_answer_s"] / s["load_weights_s"], f"loading the weights ({s['load_weights_s']:.1f} s)", "≤", 2.0)]


def report(r: dict, rows: list[tuple]) -> str:
    m = r["machine"]
    versions = ", ".join(f"{library} {m[library]}" for library in LIBRARIES)
    lines = [f"{m['cpu']}, {m['cores']} cores; {versions}; median of {r['runs']} runs", "",
             "| figure | value | ratio | target | held |", "|---|---:|---|---|---|"]
    for what, value, _, ratio, baseline, sign, target in rows:
        held = ratio >= target if sign == "≥" else ratio <= target
        lines.append(f"| {what} | {value} | **{ratio:.2f}×** {baseline} | {sign} {target} | {'yes' if held else 'NO'} |")
    return "\n".join(lines + [f"| app peak resident memory (VmHWM) | {r['app']['app_peak_rss_mb']:.0f} MB | | | |"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (the median is reported)")
    parser.add_argument("--restarts", type=int, default=3, help="app restarts timed (each takes a while)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help="random-weight models, ONNX exports and gallery features (kept between runs)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    most = (len(photos()) - 4) // 8  # every forward needs an image of its own: 4 + 8 per run in all
    if not 1 <= args.runs <= most or args.restarts < 1:
        parser.error(f"--runs must be between 1 and {most}, --restarts at least 1")
    began = time.perf_counter()
    specs = prepare(args.work_dir)
    r = {"models": list(ARCHS), "runs": args.runs, "machine": machine()}
    # in a child: its thread pools do not linger in this process
    peak = subprocess.run([sys.executable, "-c", "import bench; print(bench.peak_gflops())"], check=True,
                          cwd=HERE, capture_output=True, text=True)
    r["peak_gflops"] = float(peak.stdout)
    r["engine"] = engine_vs_eager(specs, args.work_dir, args.runs)
    r["engine"]["floor_s"] = sum(r["engine"]["gflop"].values()) / r["peak_gflops"]
    print(json.dumps(r["engine"]), flush=True)
    r["app"] = app_figures(specs, args.work_dir, args.runs)
    print(json.dumps(r["app"]), flush=True)
    r["restart"] = restart(specs, args.work_dir, args.restarts)
    rows = targets(r)
    r["ratios"] = {name: ratio for _, _, name, ratio, *_ in rows}
    r["duration_s"] = time.perf_counter() - began
    print("\n" + report(r, rows) + f"\n\nThis run took {r['duration_s'] / 60:.1f} minutes.")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
