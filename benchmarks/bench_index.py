#!/usr/bin/env python3
"""The gallery index job and a built index at scale, each figure against a baseline measured in the same run.

1. **Embedding on Ray.** The committed gallery's photos (repeated to ``--images``) embedded by the default
   ensemble with random weights (``bench.prepare``; the arithmetic does not depend on the values): in this
   process, as the app's ``FeatureStore`` does it (``index_job.embed_in_process``), then by the index job on
   a local Ray with 1 worker and with 2 workers of 1 CPU each, and 1 worker of 2 CPUs. Images/s of each,
   medians of ``--runs``: end to end (Ray's start, the workers loading their models, finalising) and steady
   (from the first finished shard to the last), the ratios against the in-process rate, and the scaling
   efficiency (2 workers' rate over twice 1 worker's, 1 CPU each).
2. **A built index at scale.** ``--vectors`` synthetic 2048-d unit vectors (the width of one ResNet-152 or
   SE-ResNeXt-101 embedding) in clusters, as real embeddings are (random vectors in 2048 dimensions are all
   about equally far apart, which no approximate index is built for): the faiss index ``built_index.
   choose_index`` picks for that size, against exact search (a flat inner-product scan) over the same
   vectors. Build time; memory (the file, and what loading it costs: memory-mapped, as the app reads it, and
   read whole); one query's latency (median, p95); recall@10 against exact search on ``--queries`` sample
   queries (stored vectors plus noise: near-duplicates, as a photo of a known place is).

    .venv/bin/python benchmarks/bench_index.py                       # both parts
    .venv/bin/python benchmarks/bench_index.py --part ray --images 96 --runs 3
    .venv/bin/python benchmarks/bench_index.py --part index --vectors 1000000

A script, not a test: the figures depend on the machine and on what else runs on it. Needs
requirements-ray.txt.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(HERE))

from bench import DEFAULT_WORK_DIR, machine, photos, prepare  # noqa: E402

DIMENSION = 2048
CONFIGS = ((1, 1), (2, 1), (1, 2))  # (workers, CPUs each): the scaling, then one worker using both cores


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


# ------------------------------------------------------------------------------------------ part 1: Ray
def gallery_of(count: int, root: Path) -> Path:
    """``count`` images in label folders: the committed photos, repeated under other names."""
    shutil.rmtree(root, ignore_errors=True)
    sources = photos()
    for i in range(count):
        source = sources[i % len(sources)]
        target = root / source.parent.name / f"{i:05d}-{source.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return root


def ray_figures(specs: list[str], work_dir: Path, images: int, runs: int, shard_size: int, engine: str) -> dict:
    import ray

    from senet_demo.index_job import JobSettings, embed_in_process, folder_items, run, start_ray

    gallery = gallery_of(images, work_dir / "ray-gallery")
    items = folder_items(gallery)
    base = dict(source=str(gallery), specs=specs, offline=True, engine=engine, shard_size=shard_size)

    # In process: the models loaded once, then the whole gallery (as FeatureStore embeds a gallery).
    settings = JobSettings(out=str(work_dir / "unused"), **base)
    embed_in_process(settings, items[:shard_size])  # loads the models (and makes any ONNX export) first
    in_process = []
    for _ in range(runs):
        start = time.perf_counter()
        table, skipped = embed_in_process(settings, items)
        in_process.append(len(items) / (time.perf_counter() - start))
        assert table.num_rows == len(items) and not skipped
    print(f"in process: {median(in_process):.2f} images/s", flush=True)

    start_ray(num_cpus=2)
    results = {"in_process": median(in_process)}
    try:
        for workers, cpus in CONFIGS:
            end_to_end, steady = [], []
            for _ in range(runs):
                out = work_dir / f"ray-index-{workers}"
                shutil.rmtree(out, ignore_errors=True)
                stamps = []

                def say(line: str, stamps=stamps) -> None:
                    if line.startswith("[") and "] shard" in line:  # one finished shard
                        stamps.append((time.perf_counter(), int(line.split(": ")[1].split(" ")[0])))

                start = time.perf_counter()
                manifest = run(JobSettings(out=str(out), workers=workers, cpus_per_worker=cpus, **base), say=say)
                end_to_end.append(manifest["rows"] / (time.perf_counter() - start))
                (first, _), (last, _) = stamps[0], stamps[-1]
                steady.append(sum(rows for _, rows in stamps[1:]) / (last - first))
            results[f"ray_{workers}x{cpus}"] = {"end_to_end": median(end_to_end), "steady": median(steady),
                                                "workers": workers, "cpus_per_worker": cpus}
            print(f"Ray, {workers} worker(s) x {cpus} CPU: {median(steady):.2f} images/s steady, "
                  f"{median(end_to_end):.2f} end to end", flush=True)
    finally:
        ray.shutdown()
    one, two = results["ray_1x1"]["steady"], results["ray_2x1"]["steady"]
    results["scaling_efficiency"] = two / (2 * one)  # the same CPUs a worker: twice the workers, twice the rate?
    results["images"], results["runs"], results["shard_size"] = len(items), runs, shard_size
    return results


# ------------------------------------------------------------------------------------------ part 2: the index
LATENT = 64  # the synthetic vectors' intrinsic dimension


def chunks(count: int, model, chunk: int = 50_000):
    """The synthetic collection, chunk by chunk (regenerated the same each time: nothing is kept). Each vector is
    a point of a ``LATENT``-dimensional space (clusters of about 100: "places"), mapped into 2048 dimensions,
    plus a little noise in every dimension: neighbours are meaningful, as between real embeddings."""
    import numpy as np

    centers, projection = model
    for number, start in enumerate(range(0, count, chunk)):
        rng = np.random.default_rng(1_000 + number)
        size = min(chunk, count - start)
        latent = centers[rng.integers(0, len(centers), size)] + 0.5 * rng.standard_normal((size, LATENT), dtype=np.float32)
        rows = latent @ projection + 0.05 * rng.standard_normal((size, DIMENSION), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        yield start, rows


LOAD = """import json, os, sys
sys.path.insert(0, sys.argv[1])
import faiss
from senet_demo.built_index import read_faiss
def private_mb():
    fields = open("/proc/self/statm").read().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = private_mb()
index = read_faiss(sys.argv[2], json.loads(sys.argv[3])) if sys.argv[4] == "mapped" else faiss.read_index(sys.argv[2])
print(private_mb() - before)
"""


def loading_mb(path: Path, spec: dict, how: str) -> float:
    """Memory of this machine's own (not a mapped file's pages) that loading the index costs, in a fresh process."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", LOAD, str(REPO_ROOT), str(path), json.dumps(spec), how],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def latencies(index, queries, k: int = 10) -> list[float]:
    times = []
    for query in queries:
        start = time.perf_counter()
        index.search(query[None], k)
        times.append(time.perf_counter() - start)
    return times


def index_figures(vectors: int, queries: int, latency_queries: int, work_dir: Path, kind: str) -> dict:
    import faiss
    import numpy as np

    from senet_demo.built_index import RECALL_K, choose_index, new_faiss_index, read_faiss, recall_at_k

    rng = np.random.default_rng(0)
    clusters = max(100, vectors // 100)  # about 100 vectors a "place"
    model = (rng.standard_normal((clusters, LATENT), dtype=np.float32),
             rng.standard_normal((LATENT, DIMENSION), dtype=np.float32) / np.sqrt(LATENT))
    sample_rows = np.sort(rng.choice(vectors, size=queries, replace=False))
    spec = choose_index(vectors, DIMENSION, kind)
    print(f"{vectors} vectors of {DIMENSION}: {spec}", flush=True)

    # Exact search: every vector in a flat inner-product index (the scan the approximate index avoids).
    exact = faiss.IndexFlatIP(DIMENSION)
    query_vectors = np.zeros((queries, DIMENSION), np.float32)
    start = time.perf_counter()
    for offset, rows in chunks(vectors, model):
        exact.add(rows)
        inside = sample_rows[(sample_rows >= offset) & (sample_rows < offset + len(rows))]
        query_vectors[np.searchsorted(sample_rows, inside)] = rows[inside - offset]
    exact_build = time.perf_counter() - start
    query_vectors += 0.01 * rng.standard_normal(query_vectors.shape, dtype=np.float32)  # a near-duplicate
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    _, truth = exact.search(query_vectors, RECALL_K)
    exact_times = latencies(exact, query_vectors[:latency_queries])
    exact_bytes = exact.ntotal * DIMENSION * 4
    print(f"exact: {median(exact_times) * 1e3:.1f} ms a query", flush=True)
    del exact
    gc.collect()

    # The approximate index, built as the index job builds it: trained on an even sample, then added to.
    start = time.perf_counter()
    index = new_faiss_index(spec, DIMENSION)
    if spec["kind"] == "ivfpq":
        train_rows = np.unique(np.linspace(0, vectors - 1, spec["train_rows"]).round().astype(np.int64))
        train = [rows[train_rows[(train_rows >= offset) & (train_rows < offset + len(rows))] - offset]
                 for offset, rows in chunks(vectors, model)]
        index.train(np.concatenate(train))
        del train
    for _, rows in chunks(vectors, model):
        index.add(rows)
    build = time.perf_counter() - start
    path = work_dir / "bench.faiss"
    faiss.write_index(index, str(path))
    del index
    gc.collect()
    print(f"{spec['kind']}: built in {build:.1f} s", flush=True)

    mapped = read_faiss(path, spec)  # as the app opens it
    approx_times = latencies(mapped, query_vectors[:max(latency_queries, 200)])
    _, found = mapped.search(query_vectors, RECALL_K)
    recall = recall_at_k(found, truth, np.full(len(found), -1), RECALL_K)  # the queries are not rows
    del mapped
    mapped_mb, whole_mb = loading_mb(path, spec, "mapped"), loading_mb(path, spec, "whole")
    file_mb = path.stat().st_size / 2**20
    path.unlink()
    return {
        "vectors": vectors, "dimension": DIMENSION, "clusters": clusters, "index": spec,
        "build_s": build, "exact_build_s": exact_build, "file_mb": file_mb, "exact_mb": exact_bytes / 2**20,
        "loaded_mapped_mb": mapped_mb, "loaded_whole_mb": whole_mb,
        "latency_ms": {"median": median(approx_times) * 1e3, "p95": percentile(approx_times, 95) * 1e3,
                       "queries": len(approx_times)},
        "exact_latency_ms": {"median": median(exact_times) * 1e3, "p95": percentile(exact_times, 95) * 1e3,
                             "queries": len(exact_times)},
        "recall_at_10": recall, "recall_queries": queries,
    }


# ------------------------------------------------------------------------------------------ report
def report(results: dict) -> str:
    lines = [f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
             f"load {results['machine']['load_1min_at_start']} at start"]
    ray_part = results.get("ray")
    if ray_part:
        base = ray_part["in_process"]
        lines += [f"\nEmbedding {ray_part['images']} photos with the default ensemble (medians of {ray_part['runs']} runs):",
                  f"  {'':36} {'images/s':>9} {'x in-process':>13}",
                  f"  {'in process (FeatureStore)':36} {base:9.2f} {1.0:13.2f}"]
        for workers, cpus in CONFIGS:
            figures = ray_part[f"ray_{workers}x{cpus}"]
            for what in ("steady", "end_to_end"):
                label = f"Ray {workers} worker{'s' if workers > 1 else ''} x {cpus} CPU, {what.replace('_', ' ')}"
                lines.append(f"  {label:36} {figures[what]:9.2f} {figures[what] / base:13.2f}")
        lines.append(f"  scaling efficiency, 2 workers against 1, 1 CPU each (steady): {ray_part['scaling_efficiency']:.2f}")
        lines.append(f"  one million images at the 2-worker steady rate: {1e6 / ray_part['ray_2x1']['steady'] / 86400:.1f} days")
    index = results.get("index")
    if index:
        spec = index["index"]
        params = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("kind", "metric"))
        lines += [f"\n{index['vectors']} synthetic {index['dimension']}-d vectors in {index['clusters']} clusters of a {LATENT}-d space:",
                  f"  index: {spec['kind']} ({params})",
                  f"  build: {index['build_s']:.1f} s (exact: {index['exact_build_s']:.1f} s to fill the flat index)",
                  f"  memory: file {index['file_mb']:.0f} MB (exact: {index['exact_mb']:.0f} MB); loading it costs "
                  f"{index['loaded_mapped_mb']:.0f} MB memory-mapped, {index['loaded_whole_mb']:.0f} MB read whole",
                  f"  one query, top-10: median {index['latency_ms']['median']:.2f} ms, p95 {index['latency_ms']['p95']:.2f} ms "
                  f"(exact: median {index['exact_latency_ms']['median']:.1f} ms, p95 {index['exact_latency_ms']['p95']:.1f} ms; "
                  f"{index['exact_latency_ms']['median'] / index['latency_ms']['median']:.0f}x)",
                  f"  recall@10 against exact search: {index['recall_at_10']:.3f} on {index['recall_queries']} queries"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "ray", "index"), default="all")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                        help="random-weight models and scratch files (models kept between runs)")
    parser.add_argument("--images", type=int, default=96, help="photos embedded in part 1")
    parser.add_argument("--runs", type=int, default=3, help="runs of each part-1 configuration")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--engine", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--vectors", type=int, default=1_000_000, help="vectors of part 2")
    parser.add_argument("--queries", type=int, default=200, help="recall@10 queries of part 2")
    parser.add_argument("--latency-queries", type=int, default=30, help="exact-search queries timed in part 2")
    parser.add_argument("--kind", default="auto", choices=("auto", "flat", "hnsw", "ivfpq"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from senet_demo.index_job import missing_packages

    problem = missing_packages()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "python": platform.python_version()}
    if args.part in ("all", "ray"):
        specs = prepare(args.work_dir)
        results["ray"] = ray_figures(specs, args.work_dir, args.images, args.runs, args.shard_size, args.engine)
    if args.part in ("all", "index"):
        with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
            results["index"] = index_figures(args.vectors, args.queries, args.latency_queries, Path(scratch), args.kind)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
