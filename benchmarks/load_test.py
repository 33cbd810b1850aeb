#!/usr/bin/env python3
"""A seminar room against the running app: N concurrent visitors, M requests across all three tabs.

It builds tiny random-weight timm models in the Hub's layout (the test suite's builder), a small
labelled gallery and a pool of query images in a temporary folder, starts ``app.py --offline`` on
127.0.0.1 in a subprocess (so the memory figures are the server's own resident set), waits until it
answers, and runs N threads, each with its own ``gradio_client.Client`` (its own session), through
a warm-up and then M measured requests: Classify (with and without TTA), Retrieve (gallery search,
a session upload and searches over it, retrieval quality) and Explain (views, ablation, Figure 6).
Query images mix a few popular ones (cache hits) with fresh ones (misses beyond the LRU's size).

    .venv/bin/python benchmarks/load_test.py --clients 12 --requests 400
    .venv/bin/python benchmarks/load_test.py --clients 4 --requests 40 --json load.json

It prints failures (with the first messages), throughput, p50/p95 latency overall and per endpoint,
and the server's RSS after warm-up and at the end. Exit status 1 when any request failed or the RSS
grew by MAX_GROWTH_MB or more. A script, not a test: its timings depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GALLERY_LABELS = ("red", "green", "blue")
POPULAR_IMAGES = 8  # queries many visitors send (repeats: the cache answers)
MAX_GROWTH_MB = 50.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent visitors (default %(default)s)")
    parser.add_argument("--requests", type=int, default=300, help="measured requests after warm-up, in all")
    parser.add_argument("--warmup", type=int, help="random requests before the first RSS reading, after one of "
                                                   "every kind (default: 10%% of --requests, at least 2 per client)")
    parser.add_argument("--port", type=int, help="server port (default: a free one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-growth-mb", type=float, default=MAX_GROWTH_MB)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1:
        parser.error("--clients and --requests must be at least 1")
    if args.warmup is None:
        args.warmup = max(2 * args.clients, args.requests // 10)
    return args


# --- the fixture: models, gallery, images --------------------------------------------------------

def build_fixture(root: Path, query_count: int, seed: int) -> dict:
    """Tiny models (two ensemble members, one extra SE model for Explain), a gallery and query images."""
    os.environ["HF_HOME"] = str(root / "hf")  # the test helpers read it on import
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    sys.path.insert(0, str(REPO_ROOT))
    from fixtures import RESNET_DATA, SENET_DATA, encode, export_tiny, folder_spec, picture

    models = root / "models"
    resnet = export_tiny("resnet50d", models / "resnet50d", 0, RESNET_DATA)
    senet = export_tiny("seresnext26d_32x4d", models / "seresnext26d", 1, SENET_DATA)
    explainer = export_tiny("seresnet50", models / "seresnet50", 2, RESNET_DATA)

    gallery = root / "gallery"
    for li, label in enumerate(GALLERY_LABELS):
        (gallery / label).mkdir(parents=True)
        for i in range(4):
            picture(1000 + 10 * li + i, (120, 96)).save(gallery / label / f"{label}_{i}.jpg", quality=90)

    rng = random.Random(seed)
    queries = root / "queries"
    queries.mkdir()
    paths = []
    for i in range(query_count):
        width, height = rng.randint(80, 200), rng.randint(80, 200)
        fmt, suffix = rng.choice([("PNG", ".png"), ("JPEG", ".jpg")])
        path = queries / f"q{i:04d}{suffix}"
        path.write_bytes(encode(picture(seed * 100_000 + i, (width, height)), fmt))
        paths.append(path)

    upload = root / "upload"
    upload.mkdir()
    uploads = [upload / f"mine_{i}.jpg" for i in range(3)]
    for i, path in enumerate(uploads):
        picture(5000 + i, (110, 110)).save(path, quality=90)
    return {"models": [folder_spec(resnet), folder_spec(senet)], "explain_models": [folder_spec(explainer)],
            "gallery": gallery, "queries": paths, "uploads": uploads}


# --- the server ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(fixture: dict, root: Path, port: int) -> tuple[subprocess.Popen, Path]:
    cmd = [sys.executable, "app.py", "--offline", "--host", "127.0.0.1", "--port", str(port),
           "--gallery", str(fixture["gallery"]), "--weights-dir", str(root / "weights")]
    for spec in fixture["models"]:
        cmd += ["--model", spec]
    for spec in fixture["explain_models"]:
        cmd += ["--explain-model", spec]
    env = dict(os.environ, HF_HOME=str(root / "hf"), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(root / "gradio"))
    env.pop("SENET_WEIGHTS_DIR", None)
    log = root / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return server, log


def wait_until_serving(server: subprocess.Popen, url: str, log: Path, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"The server exited with {server.returncode}:\n{tail(log)}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"The server did not answer within {timeout:.0f} s:\n{tail(log)}")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


# --- the visitors --------------------------------------------------------------------------------

@dataclass
class Record:
    endpoint: str
    seconds: float
    error: str | None = None


@dataclass
class Visitor:
    """One browser tab: its own client and session, a seeded plan of requests."""

    url: str
    fixture: dict
    rng: random.Random
    client: object = None
    uploaded: bool = False
    upload_index: int = -1
    records: list[Record] = field(default_factory=list)

    def connect(self) -> None:
        from gradio_client import Client

        self.client = Client(self.url, verbose=False, download_files=False)
        # The session upload is a browser-only event; gradio_client refuses those unless told otherwise.
        deps = self.client.config["dependencies"]
        self.upload_index = next(d["id"] for d in deps if d.get("api_name") == "on_upload")
        self.client.endpoints[self.upload_index].is_valid = True

    def image(self):
        from gradio_client import handle_file

        queries = self.fixture["queries"]
        popular = self.rng.random() < 0.5
        index = self.rng.randrange(POPULAR_IMAGES) if popular else self.rng.randrange(POPULAR_IMAGES, len(queries))
        return handle_file(str(queries[index]))

    def request(self) -> tuple[str, dict]:
        """The next request: (endpoint, keyword arguments), roughly a seminar's mix of clicks."""
        from gradio_client import handle_file

        roll = self.rng.random()
        se_models = [self.fixture["models"][1], *self.fixture["explain_models"]]
        if roll < 0.30:
            tta = self.rng.choice(["none", "none", "flip", "tencrop"])
            return "/classify", {"image": self.image(), "tta": tta}
        if roll < 0.50:
            feature = self.rng.choice(["ensemble", "logsoftmax", self.fixture["models"][0]])
            return "/retrieve", {"image": self.image(), "feature": feature, "k": self.rng.randint(1, 10)}
        if roll < 0.53 and not self.uploaded:
            self.uploaded = True
            return "upload", {"files": [handle_file(str(p)) for p in self.fixture["uploads"]]}
        if roll < 0.55:
            return "/retrieval_quality", {}
        if roll < 0.80:
            return "/explain", {"image": self.image(), "model": self.rng.choice(se_models),
                                "sample50": self.rng.random() < 0.3}
        if roll < 0.95:
            return "/ablate", {"image": self.image(), "model": self.rng.choice(se_models)}
        return "/figure6", {"model": self.rng.choice(se_models)}

    def run(self, count: int, planned: list[tuple[str, dict]] = ()) -> None:
        for endpoint, kwargs in [*planned, *(self.request() for _ in range(count))]:
            start = time.perf_counter()
            try:
                if endpoint == "upload":
                    self.client.predict(kwargs["files"], "mine", "en", fn_index=self.upload_index)
                else:
                    self.client.predict(api_name=endpoint, **kwargs)
                self.records.append(Record(endpoint, time.perf_counter() - start))
            except Exception as err:  # every failure is a finding, with its message
                self.records.append(Record(endpoint, time.perf_counter() - start, f"{type(err).__name__}: {err}"))


def tour(fixture: dict) -> list[tuple[str, dict]]:
    """Every endpoint with every option that changes the work once, so the warm-up meets each code path
    and batch shape (TTA views) before memory is measured."""
    from gradio_client import handle_file

    image = handle_file(str(fixture["queries"][0]))
    se_models = [fixture["models"][1], *fixture["explain_models"]]
    plan = [("/classify", {"image": image, "tta": tta}) for tta in ("none", "flip", "tencrop")]
    plan += [("/retrieve", {"image": image, "feature": f}) for f in ("ensemble", "logsoftmax", *fixture["models"])]
    plan += [(name, {"image": image, "model": m}) for name in ("/explain", "/ablate") for m in se_models]
    plan += [("/explain", {"image": image, "model": se_models[0], "sample50": True})]
    plan += [("/figure6", {"model": m}) for m in se_models] + [("/retrieval_quality", {})]
    return plan


def run_phase(visitors: list[Visitor], total: int, planned: list[tuple[str, dict]] = (),
              sample=None) -> tuple[list[Record], float]:
    """``planned`` requests, then ``total`` random ones, spread over the visitors, all at once; returns their
    records and the wall time. ``sample(done)`` is called about once a second while they run."""
    shares = [total // len(visitors) + (i < total % len(visitors)) for i in range(len(visitors))]
    plans = [list(planned[i::len(visitors)]) for i in range(len(visitors))]
    before = [len(v.records) for v in visitors]
    threads = [threading.Thread(target=v.run, args=(n, plan)) for v, n, plan in zip(visitors, shares, plans)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        if sample is not None:
            sample(sum(len(v.records) - b for v, b in zip(visitors, before)))
        time.sleep(1.0)
    wall = time.perf_counter() - start
    return [r for v, b in zip(visitors, before) for r in v.records[b:]], wall


# --- the report ----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def latency_rows(records: list[Record]) -> list[dict]:
    groups = defaultdict(list)
    for r in records:
        if r.error is None:
            groups[r.endpoint].append(r.seconds)
    rows = [{"endpoint": "all", "n": sum(len(v) for v in groups.values()),
             "seconds": [s for v in groups.values() for s in v]}]
    rows += [{"endpoint": name, "n": len(v), "seconds": v} for name, v in sorted(groups.items())]
    return [{"endpoint": row["endpoint"], "n": row["n"], "p50_ms": 1000 * percentile(row["seconds"], 50),
             "p95_ms": 1000 * percentile(row["seconds"], 95)} for row in rows if row["n"]]


def report(args, warm, records, wall, rss_warm, rss_end, trace, workers) -> dict:
    failures = [r for r in records if r.error]
    figures = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(), "inference_workers": workers,
        "clients": args.clients, "warmup_requests": len(warm), "requests": len(records),
        "failures": len(failures), "first_errors": sorted({f"{r.endpoint}: {r.error}" for r in failures})[:5],
        "wall_s": round(wall, 1), "throughput_rps": round(len(records) / wall, 2),
        "latency": [{k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
                    for row in latency_rows(records)],
        "rss_after_warmup_mb": round(rss_warm, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_warm, 1),
        "rss_trace": [[done, round(mb, 1)] for done, mb in trace],  # (requests done, MB) about once a second
    }
    print(f"\nSENet Explorer under load — {figures['date']}, {figures['machine']}, Python {figures['python']}, "
          f"tiny random-weight models, {workers} inference workers")
    print("| clients | requests | failures | throughput | RSS after warm-up | RSS at end | growth |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.clients} | {len(records)} (+{len(warm)} warm-up) | {len(failures)} | "
          f"{figures['throughput_rps']} req/s | {rss_warm:.0f} MB | {rss_end:.0f} MB | {rss_end - rss_warm:+.1f} MB |")
    print("\n| endpoint | n | p50 | p95 |\n|---|---|---|---|")
    for row in figures["latency"]:
        print(f"| {row['endpoint']} | {row['n']} | {row['p50_ms']:.0f} ms | {row['p95_ms']:.0f} ms |")
    quarters = [min(trace, key=lambda t: abs(t[0] - q * len(records) / 4)) for q in range(5)]
    print("\nRSS during the measured requests: " + ", ".join(f"{done}: {mb:.0f} MB" for done, mb in quarters))
    for error in figures["first_errors"]:
        print(f"FAILED {error}")
    return figures


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="senet-load-"))
    server = None
    try:
        fixture = build_fixture(root, query_count=POPULAR_IMAGES + args.requests + args.warmup, seed=args.seed)
        port = args.port or free_port()
        url = f"http://127.0.0.1:{port}/"
        server, log = start_server(fixture, root, port)
        wait_until_serving(server, url, log)
        from senet_demo.config import QueueSettings

        workers = QueueSettings().inference_workers  # the server reads the same environment
        visitors = [Visitor(url, fixture, random.Random(args.seed * 1000 + i)) for i in range(args.clients)]
        for visitor in visitors:
            visitor.connect()

        warm, _ = run_phase(visitors, args.warmup, planned=tour(fixture))
        rss_warm = rss_mb(server.pid)
        trace = [(0, rss_warm)]
        records, wall = run_phase(visitors, args.requests, sample=lambda done: trace.append((done, rss_mb(server.pid))))
        rss_end = rss_mb(server.pid)
        trace.append((len(records), rss_end))
        if server.poll() is not None:
            print(tail(log))
        figures = report(args, warm, records, wall, rss_warm, rss_end, trace, workers)
        figures["warmup_failures"] = sum(1 for r in warm if r.error)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        ok = figures["failures"] == 0 and figures["warmup_failures"] == 0 and \
            figures["rss_growth_mb"] < args.max_growth_mb
        if figures["warmup_failures"]:
            print(f"FAILED {figures['warmup_failures']} warm-up requests: "
                  f"{next(f'{r.endpoint}: {r.error}' for r in warm if r.error)}")
        if figures["rss_growth_mb"] >= args.max_growth_mb:
            print(f"FAILED the server's RSS grew by {figures['rss_growth_mb']} MB (limit {args.max_growth_mb} MB)")
        if not ok:
            print(f"Server log (last lines):\n{tail(log)}")
        return 0 if ok else 1
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
