#!/usr/bin/env python3
"""Search latency of ``senet_demo.retrieval.CosineIndex``: exact matmul vs faiss HNSW.

For each gallery size (default 1k and 100k random 2048-d vectors, the width of a
ResNet-152 / SE-ResNeXt-101 pooled feature) it measures, in one run on one machine:

* the time to build each index (matmul: normalising and storing the matrix;
  faiss: that plus building the HNSW graph);
* the median (and 90th percentile) latency of one query, top-k, over several
  runs with a different query each time -- the Retrieve tab's workload;
* the ratio of the two medians;
* HNSW's approximation: how often its top-1 / top-k agree with the exact
  answer for random queries (the hardest case: in 2048-d random data every
  vector is almost equally far), and how often a near-duplicate query (a
  stored vector plus noise, cosine ~0.9: a realistic retrieval) finds its
  original first.

    .venv/bin/python benchmarks/bench_search.py
    .venv/bin/python benchmarks/bench_search.py --sizes 1000 10000 100000 --runs 50 --threads 1

This is a script, not a test: wall-clock figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

np = None  # imported in main(), after the thread settings are in the environment


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def latencies(index, queries: np.ndarray, k: int, warmup: int = 2) -> list[float]:
    for query in queries[:warmup]:
        index.search(query, k)
    out = []
    for query in queries[warmup:]:
        _, seconds = timed(lambda q=query: index.search(q, k))
        out.append(seconds)
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench(n: int, dim: int, runs: int, k: int, seed: int) -> dict:
    from senet_demo.retrieval import CosineIndex

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    queries = rng.standard_normal((runs + 2, dim), dtype=np.float32)
    originals = rng.choice(n, size=min(n, 200), replace=False)
    near = vectors[originals] + 0.48 * rng.standard_normal((len(originals), dim), dtype=np.float32)  # cos ~0.9

    exact, build_exact = timed(lambda: CosineIndex(vectors, use_faiss=False))
    approx, build_faiss = timed(lambda: CosineIndex(vectors, use_faiss=True))
    t_exact = latencies(exact, queries, k)
    t_faiss = latencies(approx, queries, k)

    _, exact_ids = exact.search(queries, k)
    _, faiss_ids = approx.search(queries, k)
    _, near_exact = exact.search(near, 1)
    _, near_faiss = approx.search(near, 1)
    assert np.array_equal(near_exact[:, 0], originals)  # the exact path is exact
    return {
        "n": n,
        "build_exact_s": build_exact,
        "build_faiss_s": build_faiss,
        "exact_median_ms": statistics.median(t_exact) * 1e3,
        "exact_p90_ms": percentile(t_exact, 90) * 1e3,
        "faiss_median_ms": statistics.median(t_faiss) * 1e3,
        "faiss_p90_ms": percentile(t_faiss, 90) * 1e3,
        "top1_agree": float(np.mean(exact_ids[:, 0] == faiss_ids[:, 0])),
        "topk_recall": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact_ids, faiss_ids)])),
        "near_found": float(np.mean(near_faiss[:, 0] == originals)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 100_000], metavar="N")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=30, help="timed queries per index (median over these)")
    parser.add_argument("--k", type=int, default=20, help="results per query (the UI's largest k)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and faiss threads (default: the libraries' own, usually one per CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:  # before numpy / faiss load their thread pools
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    global np
    import faiss
    import numpy as np

    from senet_demo.retrieval import FAISS_THRESHOLD

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.1f}; numpy "
          f"{np.__version__}, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads); dim {args.dim}, "
          f"k {args.k}, {args.runs} timed single-vector queries per index; the app switches to faiss at "
          f"{FAISS_THRESHOLD:,} vectors")
    header = (f"{'vectors':>9} | {'build matmul':>12} | {'build faiss':>11} | {'matmul median':>13} | "
              f"{'faiss median':>12} | {'matmul/faiss':>12} | {'matmul p90':>10} | {'faiss p90':>9} | "
              f"{'top-1 same':>10} | {'top-k recall':>12} | {'near-dup found':>14}")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        r = bench(n, args.dim, args.runs, args.k, args.seed)
        print(f"{n:>9,} | {r['build_exact_s']:>11.3f}s | {r['build_faiss_s']:>10.2f}s | "
              f"{r['exact_median_ms']:>10.3f} ms | {r['faiss_median_ms']:>9.3f} ms | "
              f"{r['exact_median_ms'] / r['faiss_median_ms']:>11.1f}x | {r['exact_p90_ms']:>7.3f} ms | "
              f"{r['faiss_p90_ms']:>6.3f} ms | {r['top1_agree']:>10.1%} | {r['topk_recall']:>12.1%} | "
              f"{r['near_found']:>14.1%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
