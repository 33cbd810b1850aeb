#!/usr/bin/env python3
"""How fast SENet Explorer is on this machine, against the physical floor and the naive way.

Runs with random weights by default (the arithmetic of a forward pass does not depend on the weight
values): full-size ``resnet152d.gluon_in1k`` and ``seresnext101_64x4d.gluon_in1k`` are written once in
the Hugging Face layout under ``--work-dir`` and loaded through the app's own code. Every figure is the
median of ``--runs`` runs, and every comparison is a ratio of figures measured in this one run:

* the machine's fp32 peak, from large matrix multiplies (PyTorch's and numpy's, the faster);
* per model: FLOPs of one forward (counted by ``torch.utils.flop_counter``), eager PyTorch latency, the
  selected engine's latency (each engine in a process of its own, the two taking turns), achieved GFLOP/s
  and the fraction of peak; the ensemble (its members run back to back, as a classify runs them) against
  the floor (its FLOPs divided by the peak);
* the app's classify request through the Gradio API against the bare forward passes (the app's overhead):
  ``app.py`` runs in a process of its own, as on a Space, and is called the way a browser calls it; the bare
  forwards run in another process, in turns with the requests; the same forwards as the app times them
  inside the server; and an event with the same inputs and outputs whose handler does nothing; the same
  classify of 12-megapixel phone photos (the gallery's photos enlarged, with sensor-like noise, as JPEGs);
* one image through Classify, Retrieve and Explain, against one classify: for the app in one request (the
  Classify tab's "Classify, retrieve and explain") and as a request per tab, and for a naive baseline
  written here (a separate forward per tab with a freshly built transform);
* the gallery index build (images/s), search latency at 1k and 100k vectors;
* restart: ``app.py`` started with weights, exports and gallery features on disk, to its first answer,
  against a process that only loads the weights; the app's peak resident memory.

    .venv/bin/python benchmarks/bench.py                 # about 5 minutes on 2 cores
    .venv/bin/python benchmarks/bench.py --quick         # fewer runs, no 100k search
    .venv/bin/python benchmarks/bench.py --json benchmarks/results.json

A script, not a test: the figures depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_ARCHS = ("resnet152d.gluon_in1k", "seresnext101_64x4d.gluon_in1k")
DEFAULT_WORK_DIR = Path.home() / ".cache" / "senet-explorer" / "bench"
TURN_PAUSE_S = 0.2  # between two processes' turns: the last one's threads stop spinning before the next runs


# ----------------------------------------------------------------------------------------------- helpers
def median_of(values: list[float]) -> float:
    return statistics.median(values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "load_1min": os.getloadavg()[0]}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    info["server"] = server_stack()
    return info


def server_stack() -> str:
    """The event loop and HTTP parser Gradio's uvicorn picks here ("auto": uvloop and httptools when installed)."""
    import importlib.util

    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{loop}, {AutoHTTPProtocol.__name__.removesuffix('Protocol')}"


def peak_gflops(runs: int, sizes: tuple[int, ...] = (2048, 4096)) -> dict[str, float]:
    """The best fp32 GFLOP/s of n×n matrix multiplies, per library: PyTorch's (MKL) and numpy's (OpenBLAS in
    its wheels). The best of them is the machine's practical peak: on an AMD EPYC here, MKL reached 137–182
    GFLOP/s and OpenBLAS 175–200. The best of several sizes and runs, so that one slow moment does not lower the
    floor it defines."""
    import numpy as np
    import torch

    multiplies = {"torch": (torch.mm, lambda n: torch.randn(n, n)),
                  "numpy": (np.matmul, lambda n: np.random.default_rng(0).standard_normal((n, n), np.float32))}
    best = {}
    for library, (multiply, matrix) in multiplies.items():
        best[library] = 0.0
        for n in sizes:
            a, b = matrix(n), matrix(n)
            multiply(a, b)
            seconds = min(_timed(lambda: multiply(a, b)) for _ in range(runs))
            best[library] = max(best[library], 2 * n**3 / seconds / 1e9)
    return best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def photos(count: int) -> list[Path]:
    """Distinct real photos from the committed gallery (distinct pixels: every one misses the cache)."""
    from senet_demo.config import GALLERY_DIR
    from senet_demo.gallery import scan

    items = scan(GALLERY_DIR)
    step = max(1, len(items) // count)
    return [item.path for item in items[::step][:count]]


PHONE_SIZE = (4032, 3024)  # a 12-megapixel phone camera


def phone_photos(count: int, work_dir: Path) -> list[Path]:
    """``count`` of the gallery's photos at a phone camera's size, as JPEGs (made once, kept in ``work_dir``).

    Enlarged, a photo is smoother than a camera's, and its JPEG smaller and faster to decode; sensor-like
    noise brings the file near a camera's (2 to 2.5 MB at quality 92; phones write 2 to 5 MB).
    """
    import numpy as np
    from PIL import Image

    folder = work_dir / "camera-like-photos"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, source in enumerate(photos(count)):
        path = folder / f"{i:02d}-{source.stem}.jpg"
        if not path.is_file():
            with Image.open(source) as image:
                pixels = np.asarray(image.convert("RGB").resize(PHONE_SIZE, Image.BICUBIC), dtype=np.float32)
            noise = np.random.default_rng(i).normal(0.0, 6.0, pixels.shape)
            Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------- models
def random_weight_models(work_dir: Path, archs: tuple[str, ...]) -> list[str]:
    """Write each arch with random weights in the Hub layout once; return the app's SPECs for them."""
    import timm
    import torch
    from timm.models import save_for_hf

    specs = []
    for arch in archs:
        folder = work_dir / "weights" / arch
        if not (folder / "model.safetensors").exists():
            print(f"writing random-weight {arch} to {folder} …", flush=True)
            torch.manual_seed(0)
            model = timm.create_model(arch, pretrained=False).eval()
            save_for_hf(model, str(folder), safe_serialization=True)
        specs.append(f"{arch}={folder}")
    return specs


def flop_count(model, input_size: tuple[int, int, int]) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, *input_size))
    return counter.get_total_flops()


class BrowserProtocolClient:
    """Calls the app's events the way the browser does: upload, join the queue, read the SSE stream.

    ``gradio_client`` polls its message queue every 50 ms, which would be counted as the app's
    overhead; this reads the server's events as they arrive. Inputs not given keep their UI defaults.
    Like a browser tab (and ``gradio_client``), one client is one session: Gradio sets up a session's
    state on its first event (about 10 ms for this app's page), not on every event.
    """

    def __init__(self, url: str):
        import uuid

        import httpx

        self.http = httpx.Client(timeout=600)
        self.base = url.rstrip("/")
        config = self.http.get(f"{self.base}/config").json()
        self.api = self.base + config.get("api_prefix", "/gradio_api")
        self.defaults = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
        self.events = {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}
        self.session = uuid.uuid4().hex

    def upload(self, path: Path) -> dict:
        with open(path, "rb") as f:
            (server_path,) = self.http.post(f"{self.api}/upload", files={"files": (path.name, f)}).json()
        return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def predict(self, api_name: str, image: Path, **values) -> list:
        """Run ``api_name`` with ``image`` as its first input; ``values`` set other inputs by position name."""
        event = self.events[api_name]
        data = [self.defaults.get(i) for i in event["inputs"]]
        data[0] = self.upload(image)
        for position, value in values.items():
            data[int(position.removeprefix("input"))] = value
        joined = self.http.post(f"{self.api}/queue/join", json={
            "data": data, "fn_index": event["id"], "trigger_id": None, "session_hash": self.session, "event_data": None})
        joined.raise_for_status()
        with self.http.stream("GET", f"{self.api}/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"{api_name} failed: {message.get('output')}")
                    return message["output"]["data"]
        raise RuntimeError(f"{api_name}: the stream ended without a result")


# ----------------------------------------------------------------------------------------------- figures
def forward_latency(args: argparse.Namespace, specs: list[str], engine: str) -> dict:
    """Per model: FLOPs of one forward and the median latency of eager PyTorch and of ``engine`` on one
    preprocessed view; the ensemble's members back to back.

    Each engine runs in a process of its own (PyTorch's and ONNX Runtime's thread pools would slow each
    other down in one process), and the two take turns, a pause between turns for the other's threads to go
    idle: run one after the other, they compared different minutes of a machine whose speed drifts (here
    once the engine's side measured 390 ms, the bare forwards 352 ms a minute later). A turn is two ensemble
    forwards, the second timed: right after the other process, eager PyTorch's forward took 483-514 ms in
    four runs, where warm it took 389-479 ms in the runs around them; ONNX Runtime's about the same either
    way.
    """
    with contextlib.ExitStack() as stack:
        sides = {"torch": stack.enter_context(BareForwards(args, specs, "torch", count_flops=True))}
        if engine != "torch":
            sides[engine] = stack.enter_context(BareForwards(args, specs, engine))
        rounds = {name: [] for name in sides}
        for _ in range(args.runs):
            for name, side in sides.items():
                time.sleep(TURN_PAUSE_S)
                side.once_by_model()  # untimed: the process comes back to its forward warm, as back to back
                rounds[name].append(side.once_by_model())
        models = {name: {"gflop": row["gflop"], f"{engine}_backend": sides[engine].models[name]["backend"]}
                  for name, row in sides["torch"].models.items()}
    for name, row in models.items():
        for side, measured in rounds.items():
            row[f"{side}_s"] = median_of([r[name] for r in measured])
    return {"models": models, **{f"{side}_ensemble_s": median_of([sum(r.values()) for r in measured])
                                 for side, measured in rounds.items()}}


def _ensemble_runner(specs: list[str], engine: str, work_dir: Path, count_flops: bool = True):
    """Per model its FLOPs (when counted) and backend, and a function that runs the engine's members back to
    back on one preprocessed view (as a classify runs them) and returns each member's seconds."""
    from PIL import Image

    from senet_demo.images import load_image

    services = _services(specs, engine, work_dir)
    image = load_image(Image.open(photos(1)[0]))
    models, batches = {}, {}
    for name in services.registry.names:
        loaded = services.registry.get(name)
        batches[name] = loaded.transform(image).unsqueeze(0)
        models[name] = {"gflop": flop_count(loaded.model, tuple(batches[name].shape[1:])) / 1e9} if count_flops else {}
    backends = {name: services.engine.backend(name) for name in batches}
    for name in batches:
        models[name]["backend"] = services.engine.backend_name(name)

    def run_once() -> dict[str, float]:
        return {name: _timed(lambda: backend.forward(batches[name])) for name, backend in backends.items()}

    return models, run_once


def serve_bare_forwards(args: argparse.Namespace) -> None:
    """The child of ``BareForwards``: one ensemble forward per line read, each member's seconds printed back
    as JSON; first "ready" and the members (with their FLOPs where asked)."""
    models, run_once = _ensemble_runner(args.models, args.engine, args.work_dir, count_flops=args.count_flops)
    run_once()  # warm-up
    print("ready " + json.dumps(models), flush=True)
    for _ in sys.stdin:
        print(json.dumps(run_once()), flush=True)


class BareForwards:
    """The bare forward passes in a process of their own, run on request.

    Asked in turns with the app's requests, so that the app's overhead compares figures from the same
    minutes: this machine's speed drifts by up to 10% within minutes. While one side runs, the other waits
    (the bare process blocked on a read; the idle app wakes up about 20 times a second).
    """

    def __init__(self, args: argparse.Namespace, specs: list[str], engine: str, count_flops: bool = False):
        command = [sys.executable, __file__, "--child", "bare-forwards", "--engine", engine, "--runs", "1",
                   "--work-dir", str(args.work_dir)] + [f"--model={s}" for s in specs]
        command += ["--count-flops"] if count_flops else []
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True)
        ready = self.process.stdout.readline().strip()
        try:
            self.models = json.loads(ready.removeprefix("ready "))  # per member: its backend (and FLOPs)
        except ValueError:
            why = _tail(self.log)
            self._stop()
            raise RuntimeError(f"the bare-forward process did not start:\n{why}") from None

    def once_by_model(self) -> dict[str, float]:
        """One ensemble forward: each member's seconds."""
        try:
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            return json.loads(self.process.stdout.readline())
        except (BrokenPipeError, ValueError) as err:
            raise RuntimeError(f"the bare-forward process failed:\n{_tail(self.log)}") from err

    def once(self) -> float:
        return sum(self.once_by_model().values())

    def _stop(self) -> None:
        try:
            self.process.stdin.close()
            self.process.wait(timeout=60)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop()


def _services(specs: list[str], engine: str, work_dir: Path):
    """The app's services in this (child) process, its engine set up as ``app.py`` sets it up."""
    from senet_demo.config import GALLERY_DIR, AppConfig
    from senet_demo.onnx_backend import serve_sessions_in_one_pool
    from senet_demo.services import Services

    config = AppConfig.from_specs(specs, offline=True, weights_dir=work_dir / "weights", gallery_dir=GALLERY_DIR,
                                  feature_cache_dir=work_dir / "features", engine=engine)
    serve_sessions_in_one_pool(config)
    return Services.create(config)


def app_overhead(client: BrowserProtocolClient, bare: "BareForwards", images: list[Path], runs: int,
                 rounds: int = 2) -> dict:
    """Classify as a browser asks for it (a new image each time: no cache), end to end; the members' forward
    latencies the app reports in its table, i.e. the same forwards timed inside the server; and the bare
    forwards in their own process. Requests and bare forwards take turns in blocks of ``runs``: this
    machine's speed drifts within minutes, and a bare forward between every two requests cost each request
    about 15 ms more here (it evicts the server's working set from the caches, which a server on its own
    keeps between visitors)."""
    if len(images) < runs * rounds:
        raise ValueError(f"app_overhead needs {runs * rounds} images, got {len(images)}")
    requests, forwards, bare_forwards = [], [], []
    pending = iter(images)
    for _ in range(rounds):
        for path in itertools.islice(pending, runs):
            start = time.perf_counter()
            outputs = client.predict("classify", path)
            requests.append(time.perf_counter() - start)
            forwards.append(_reported_forwards_s(outputs))
        bare_forwards += [bare.once() for _ in range(runs)]
    return {"api_classify_s": median_of(requests), "server_forwards_s": median_of(forwards),
            "bare_forwards_s": median_of(bare_forwards)}


def serve_noop_app(args: argparse.Namespace) -> None:
    """The child of ``noop_event``: the Classify tab's inputs and outputs, its queue set up as the app's, and
    a handler that only returns answers of the same size, registered as the app registers its model events
    (inputs read and answers serialised in the handler's thread); prints its port, then serves until killed."""
    import gradio as gr

    from senet_demo.ui.common import image_input
    from senet_demo.ui.model_events import postprocessed, preprocessed
    from senet_demo.ui.queue import INFERENCE_POOL, quieten_queue

    top5 = {f"class {i}": 0.5 / (i + 1) for i in range(5)}
    table = "\n".join(["| member | weight | top-1 | prob | latency |", "|---|---|---|---|---|",
                       "| a | 1 | class 0 | 0.500 | 100 ms |", "| b | 1 | class 0 | 0.500 | 150 ms |"])

    def classify(image, tta, *weights, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="Preparing models…")
        return [top5, table, top5, top5]

    with gr.Blocks() as demo:
        image = image_input(label="Image")
        tta = gr.Radio(["none", "flip", "tencrop"], value="none")
        weights = [gr.Slider(0, 1, value=1.0, step=0.05) for _ in range(2)]
        outputs = [gr.Label(num_top_classes=5), gr.Markdown(), gr.Label(num_top_classes=5), gr.Label(num_top_classes=5)]
        inputs = [image, tta, *weights]
        gr.Button().click(postprocessed(preprocessed(classify, inputs), outputs), inputs, outputs, api_name="classify",
                          preprocess=False, postprocess=False, concurrency_id=INFERENCE_POOL, concurrency_limit=1)
    demo.queue(api_open=False)
    quieten_queue(demo)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    print(port, flush=True)
    while True:
        time.sleep(60)


def noop_event(images: list[Path], runs: int) -> float:
    """What an event with the Classify tab's inputs and outputs costs through Gradio when its handler does
    nothing (upload, queue, pre- and postprocessing, server-sent events): the floor under the app's overhead.
    ``images``: 3 for the warm-up, then ``runs`` timed."""
    if len(images) < 3 + runs:
        raise ValueError(f"noop_event needs {3 + runs} images, got {len(images)}")
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen([sys.executable, __file__, "--child", "noop-app"], stdout=subprocess.PIPE,
                                  stderr=log, text=True, cwd=REPO_ROOT)
        try:
            port = server.stdout.readline().strip()
            if not port.isdigit():
                raise RuntimeError(f"the no-op app did not start:\n{_tail(log)}")
            client = _connect(f"http://127.0.0.1:{port}/", server)
            for path in images[:3]:
                client.predict("classify", path)
            return median_of([_timed(lambda: client.predict("classify", path)) for path in images[3:3 + runs]])
        finally:
            server.kill()
            server.wait(timeout=30)


def _tail(log, chars: int = 3000) -> str:
    """The end of a child process's stderr (a temporary file), to show when the child fails."""
    log.flush()
    log.seek(0)
    return log.read()[-chars:]


def _reported_forwards_s(outputs: list) -> float:
    """The sum of the latency column ("| 118 ms |") of the classify answer's member table (every image here
    is new, so no row may come from the cache, whose latency would be the original pass's)."""
    table = next(o for o in outputs if isinstance(o, str) and "| member |" in o)
    rows = [line for line in table.splitlines() if line.rstrip().endswith(" ms |")]
    if not rows or "(cached)" in table:
        raise RuntimeError(f"expected fresh forwards in the classify table:\n{table}")
    return sum(float(line.rsplit("|", 2)[-2].split()[0]) for line in rows) / 1e3


def three_tabs(client: BrowserProtocolClient, images: list[Path], runs: int) -> dict:
    """One new image through Classify, Retrieve and Explain in a row (three requests, as a visitor clicking
    through the tabs), and in one request (the Classify tab's "Classify, retrieve and explain"), vs one classify."""
    classify_only, all_three, every_tab = [], [], []
    for i in range(runs):
        one, two, three = images[3 * i:3 * i + 3]
        classify_only.append(_timed(lambda: client.predict("classify", one)))
        all_three.append(_timed(lambda: [client.predict(api, two) for api in ("classify", "retrieve", "explain")]))
        every_tab.append(_timed(lambda: client.predict("every_tab", three)))
    return {"classify_s": median_of(classify_only), "three_tabs_s": median_of(all_three),
            "every_tab_s": median_of(every_tab)}


def naive_three_tabs(specs: list[str], runs: int, work_dir: Path) -> dict:
    """The way most demos do it: eager PyTorch, a fresh transform and a separate forward pass in every tab."""
    import timm
    import torch
    from PIL import Image

    services = _services(specs, "torch", work_dir)
    images = photos(12 * runs)[8 * runs:10 * runs]
    gallery_matrix = _gallery_matrix(services)
    models = {name: services.registry.get(name).model for name in services.registry.names}

    def prepare(model, path):
        config = timm.data.resolve_data_config({}, model=model)
        transform = timm.data.create_transform(**config)
        return transform(Image.open(path).convert("RGB")).unsqueeze(0)

    def classify(path):
        with torch.no_grad():
            probs = [model(prepare(model, path)).softmax(-1) for model in models.values()]
        return torch.stack(probs).mean(0)

    def retrieve(path):
        with torch.no_grad():
            embeddings = []
            for model in models.values():
                features = model.forward_features(prepare(model, path))
                embeddings.append(torch.nn.functional.normalize(model.forward_head(features, pre_logits=True), dim=-1))
            query = torch.cat(embeddings, -1)
        return (gallery_matrix @ query.T).topk(5, dim=0)

    def explain(path):
        from senet_demo.se_blocks import capture_excitations, find_se_blocks

        for model in models.values():
            blocks = find_se_blocks(model)
            if blocks:
                with torch.no_grad(), capture_excitations(model, blocks) as excitations:
                    model(prepare(model, path))
                return excitations

    classify_only, all_three = [], []
    for i in range(runs):
        one, two = images[2 * i], images[2 * i + 1]
        classify_only.append(_timed(lambda: classify(one)))
        all_three.append(_timed(lambda: (classify(two), retrieve(two), explain(two))))
    return {"classify_s": median_of(classify_only), "three_tabs_s": median_of(all_three)}


def gallery_build(services, count: int) -> dict:
    """Embedding throughput of a fresh gallery index (every model, batched as the app does)."""
    from senet_demo.config import GALLERY_DIR
    from senet_demo.gallery import FeatureStore, scan

    items = scan(GALLERY_DIR)[:count]
    with tempfile.TemporaryDirectory() as cache:
        store = FeatureStore(services.engine, Path(cache))
        start = time.perf_counter()
        for name in services.registry.names:
            store.outputs(name, items)
        seconds = time.perf_counter() - start
    return {"images": len(items), "seconds": seconds, "images_per_s": len(items) / seconds}


def search_latency(sizes: list[int], runs: int) -> list[dict]:
    import numpy as np

    import bench_search

    bench_search.np = np
    return [bench_search.bench(n, 2048, runs, 20, seed=0) for n in sizes]


LOAD_ONLY = """
import sys, time, timm, torch
from safetensors.torch import load_file
for arch, folder in zip(sys.argv[1::2], sys.argv[2::2]):
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(load_file(folder + "/model.safetensors"))
    model.eval()
print("ready", flush=True)
"""


def cold_start(specs: list[str], engine: str, gallery: Path, weights_dir: Path, runs: int) -> dict:
    """Seconds from process start: (a) just loading the weights; (b) ``app.py`` to its first classify answer."""
    args = []
    for spec in specs:
        arch, _, folder = spec.partition("=")
        args += [arch.split(".")[0], folder]
    load_only, first_answer, peak_rss = [], [], []
    image = photos(1)[0]
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", LOAD_ONLY, *args], check=True, capture_output=True)
        load_only.append(time.perf_counter() - start)

        start = time.perf_counter()
        with served_app(specs, engine, gallery, weights_dir) as (client, server):
            client.predict("classify", image)
            first_answer.append(time.perf_counter() - start)
            peak_rss.append(_vm_hwm_mb(server.pid))
    return {"load_weights_s": median_of(load_only), "first_answer_s": median_of(first_answer),
            "app_peak_rss_mb": max(peak_rss)}


@contextlib.contextmanager
def served_app(specs: list[str], engine: str, gallery: Path, weights_dir: Path):
    """``app.py`` in a process of its own, as a Space runs it; yields a client that speaks the browser's
    protocol, and the server's process."""
    port = free_port()
    command = [sys.executable, str(REPO_ROOT / "app.py"), "--offline", "--port", str(port), "--engine", engine,
               "--gallery", str(gallery), "--weights-dir", str(weights_dir)] + [f"--model={s}" for s in specs]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT)
    try:
        yield _connect(f"http://127.0.0.1:{port}/", server), server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _connect(url: str, server: subprocess.Popen, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"app.py exited with code {server.returncode}")
        try:
            return BrowserProtocolClient(url)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------------------------- report
def report(r: dict) -> str:
    m = r["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cpus']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
             f"onnxruntime {m['onnxruntime']}, Python {m['python']}, server on {m['server']}; "
             f"load at start {m['load_1min']:.2f}",
             f"Peak fp32 (2048² and 4096² matmul, best of {max(5, r['runs'])} each): {r['peak_gflops']:.1f} GFLOP/s ("
             + ", ".join(f"{k} {v:.0f}" for k, v in r.get("peak_by_library", {}).items()) + ")", ""]
    engine = r["engine"]
    lines += [f"| model | GFLOP | eager | {engine} | speed-up | {engine} GFLOP/s | of peak |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in r["models"].items():
        fast = row[f"{engine}_s"]
        lines.append(f"| {name.split('=')[0]} | {row['gflop']:.1f} | {row['torch_s'] * 1e3:.0f} ms | "
                     f"{fast * 1e3:.0f} ms | {row['torch_s'] / fast:.2f}× | {row['gflop'] / fast:.0f} | "
                     f"{row['gflop'] / fast / r['peak_gflops']:.0%} |")
    e = r["ensemble"]
    lines += [f"| **ensemble** | {e['gflop']:.1f} | {e['torch_s'] * 1e3:.0f} ms | {e['engine_s'] * 1e3:.0f} ms | "
              f"**{e['speedup']:.2f}×** | {e['gflop'] / e['engine_s']:.0f} | {e['gflop'] / e['engine_s'] / r['peak_gflops']:.0%} |",
              "", "Backends: " + ", ".join(f"{n.split('=')[0]}: {row[f'{engine}_backend']}" for n, row in r["models"].items()),
              f"Physical floor of the ensemble: {e['gflop']:.1f} GFLOP / {r['peak_gflops']:.0f} GFLOP/s = "
              f"{e['floor_s'] * 1e3:.0f} ms; the {engine} engine takes **{e['engine_s'] / e['floor_s']:.2f}×** the floor"
              + (" (its convolutions outrun the matrix multiplies that define the floor)." if e["engine_s"] < e["floor_s"]
                 else "."), ""]
    o = r["app_overhead"]
    lines += ["| figure | value | ratio |", "|---|---:|---:|",
              f"| classify through the Gradio API | {o['api_classify_s'] * 1e3:.0f} ms | **{o['api_classify_s'] / o['bare_forwards_s']:.2f}×** the bare forwards ({o['bare_forwards_s'] * 1e3:.0f} ms, taking turns with the requests) |"]
    lines += [f"| its forwards, as timed inside the server | {o['server_forwards_s'] * 1e3:.0f} ms | "
              f"{o['server_forwards_s'] / o['bare_forwards_s']:.2f}× the bare forwards |",
              f"| an event with the classify's inputs and outputs whose handler does nothing (Gradio alone) | "
              f"{o['noop_event_s'] * 1e3:.0f} ms | {o['noop_event_s'] / o['bare_forwards_s']:.2f}× the bare forwards |"]
    if "phone_photo" in r:
        p = r["phone_photo"]
        lines.append(f"| classify of a {PHONE_SIZE[0]}×{PHONE_SIZE[1]} phone photo (JPEG) through the Gradio API | "
                     f"{p['api_classify_s'] * 1e3:.0f} ms | {p['api_classify_s'] / p['bare_forwards_s']:.2f}× the bare "
                     f"forwards ({p['bare_forwards_s'] * 1e3:.0f} ms) |")
    t, n = r["three_tabs"], r["naive"]
    lines += [f"| Classify + Retrieve + Explain, app, one request | {t['every_tab_s'] * 1e3:.0f} ms | **{t['every_tab_s'] / t['classify_s']:.2f}×** one classify ({t['classify_s'] * 1e3:.0f} ms) |",
              f"| Classify + Retrieve + Explain, app, a request per tab | {t['three_tabs_s'] * 1e3:.0f} ms | **{t['three_tabs_s'] / t['classify_s']:.2f}×** one classify |",
              f"| Classify + Retrieve + Explain, naive | {n['three_tabs_s'] * 1e3:.0f} ms | {n['three_tabs_s'] / n['classify_s']:.2f}× one naive classify ({n['classify_s'] * 1e3:.0f} ms) |"]
    g = r["gallery_build"]
    lines.append(f"| gallery index build ({g['images']} images, {len(r['models'])} models) | {g['images_per_s']:.2f} images/s | |")
    for s in r["search"]:
        lines.append(f"| search, {s['n']:,} vectors (2048-d, k=20) | exact {s['exact_median_ms']:.2f} ms, faiss {s['faiss_median_ms']:.2f} ms | faiss HNSW build {s['build_faiss_s']:.1f} s |")
    c = r["cold_start"]
    lines += [f"| restart to first answer (`app.py`, {engine}) | {c['first_answer_s']:.1f} s | **{c['first_answer_s'] / c['load_weights_s']:.2f}×** just loading the weights ({c['load_weights_s']:.1f} s) |",
              f"| app peak resident memory | {c['app_peak_rss_mb']:.0f} MB | |"]
    return "\n".join(lines)


CHILD_SECTIONS = ("prepare", "naive", "peak", "gallery", "bare-forwards", "noop-app")


def run_child(section: str, args: argparse.Namespace, specs: list[str], engine: str = "torch") -> dict:
    """One section of the benchmark in a fresh Python process; its figures come back as JSON.

    Every section that loads the models runs in a process of its own (the forwards' two, ``BareForwards``,
    alive together while they take turns), which ends before the next one starts: ONNX Runtime's and
    PyTorch's thread pools would slow each other down in one process, and a process still holding the
    models' 2 GB made the restart figure 20% slower here (on this VM, memory never touched before is slow
    to touch the first time), which no real restart pays.
    """
    command = [sys.executable, __file__, "--child", section, "--engine", engine, "--runs", str(args.runs),
               "--work-dir", str(args.work_dir)] + [f"--model={s}" for s in specs] + (["--quick"] if args.quick else [])
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(section: str, args: argparse.Namespace) -> None:
    if section == "prepare":  # exports on a first run, before anything is timed
        services = _services(args.models, args.engine, args.work_dir)
        for name in services.registry.names:
            services.engine.backend(name)
        result = {name: services.engine.backend_name(name) for name in services.registry.names}
    elif section == "gallery":
        result = gallery_build(_services(args.models, args.engine, args.work_dir), count=16 if args.quick else 32)
    elif section == "bare-forwards":
        serve_bare_forwards(args)
        return
    elif section == "noop-app":
        serve_noop_app(args)
        return
    elif section == "naive":
        result = naive_three_tabs(args.models, args.runs, args.work_dir)
    else:
        by_library = peak_gflops(max(5, args.runs))
        result = {"peak_gflops": max(by_library.values()), "peak_by_library": by_library, "machine": machine()}
    print(json.dumps(result))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per figure (the median is reported)")
    parser.add_argument("--engine", default="onnx", choices=["onnx", "torch"], help="the app's engine, compared with eager")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help="random-weight models, exports and gallery features (kept between runs)")
    parser.add_argument("--model", action="append", dest="models", metavar="SPEC",
                        help="benchmark these SPECs instead of random-weight copies of the default ensemble")
    parser.add_argument("--quick", action="store_true", help="3 runs, no 100k search, 2 restarts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", choices=CHILD_SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 3
    os.environ["HF_HUB_OFFLINE"] = "1"
    # the served app's gallery features and remembered hashes stay with the benchmark's files (children inherit it)
    os.environ.setdefault("HF_HOME", str(args.work_dir / "hf-home"))
    if args.child:
        child(args.child, args)
        return 0

    from senet_demo.config import GALLERY_DIR

    args.work_dir.mkdir(parents=True, exist_ok=True)
    specs = args.models or random_weight_models(args.work_dir, DEFAULT_ARCHS)
    runs = args.runs
    results: dict = {"runs": runs, "engine": args.engine, "specs": specs}

    run_child("prepare", args, specs, args.engine)
    results.update(run_child("peak", args, specs))
    print(f"{results['machine']}\npeak {results['peak_gflops']:.1f} GFLOP/s", flush=True)

    forwards = forward_latency(args, specs, args.engine)
    results["models"] = forwards["models"]
    rows = results["models"].values()
    ensemble = {"gflop": sum(r["gflop"] for r in rows), "torch_s": forwards["torch_ensemble_s"],
                "engine_s": forwards[f"{args.engine}_ensemble_s"]}
    ensemble["speedup"] = ensemble["torch_s"] / ensemble["engine_s"]
    ensemble["floor_s"] = ensemble["gflop"] / results["peak_gflops"]
    results["ensemble"] = ensemble
    print(json.dumps(results["models"]), flush=True)

    with served_app(specs, args.engine, GALLERY_DIR, args.work_dir / "weights") as (client, _):
        pool = photos(12 * runs)
        for api in ("classify", "retrieve", "explain", "every_tab"):  # warm-up; the first retrieve stores the gallery features
            client.predict(api, pool[-1])
        with BareForwards(args, specs, args.engine) as bare:
            results["app_overhead"] = app_overhead(client, bare, pool[:2 * runs], runs)
            results["phone_photo"] = app_overhead(client, bare, phone_photos(2 * runs, args.work_dir), runs)
        results["three_tabs"] = three_tabs(client, pool[4 * runs:8 * runs], runs)
    results["app_overhead"]["noop_event_s"] = noop_event(pool[8 * runs:9 * runs + 3], runs)
    results["naive"] = run_child("naive", args, specs)
    print(json.dumps({k: results[k] for k in ("app_overhead", "phone_photo", "three_tabs", "naive")}), flush=True)

    results["gallery_build"] = run_child("gallery", args, specs, args.engine)
    results["search"] = search_latency([1_000] if args.quick else [1_000, 100_000], runs=30)
    results["cold_start"] = cold_start(specs, args.engine, GALLERY_DIR, args.work_dir / "weights", runs=2 if args.quick else 3)

    text = report(results)
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def _gallery_matrix(services):
    """The gallery's ensemble embeddings, normalised per model and concatenated (as the naive retrieve uses)."""
    import torch

    from senet_demo.gallery import scan
    from senet_demo.config import GALLERY_DIR

    items = scan(GALLERY_DIR)
    parts = []
    for name in services.registry.names:
        outputs = services.features.outputs(name, items)
        parts.append(torch.nn.functional.normalize(torch.tensor(
            [o.embedding for o in outputs]), dim=-1))
    return torch.cat(parts, -1)


if __name__ == "__main__":
    sys.exit(main())
