#!/usr/bin/env python3
"""Where a ``gradio_client`` call to SENet Explorer spends its time, on cached answers (no forward runs).

``app.py`` serves the same random-weight models as ``bench.py`` (shared ``--work-dir``); one photo's forwards run
once, then each way of calling ``/classify`` and ``/retrieve`` (``gradio_client`` with and without downloads or
a reused SSL context, raw HTTP with the image uploaded once or on every call) is timed, median of ``--runs``.

    .venv/bin/python benchmarks/client_cost.py
    .venv/bin/python benchmarks/client_cost.py --runs 3 --json cost.json

A script, not a test: the figures depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import DEFAULT_WORK_DIR, photos, prepare, served_app, timed  # noqa: E402


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


def costs(work_dir: Path, runs: int) -> dict:
    import httpx
    from gradio_client import Client, handle_file

    image = photos()[-1]
    with served_app(prepare(work_dir), work_dir) as (url, client, _), httpx.Client(timeout=600) as http:
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
        # this first retrieve runs the image's forwards: every call below gets a cached answer
        gallery = call_raw(http, url, "retrieve", [reference, *defaults["retrieve"]])[0]
        calls = {
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
        medians = {}
        for name, fn in calls.items():
            fn()  # warm-up: first connections, first allocations
            medians[name] = statistics.median(timed(fn) for _ in range(runs))
        files_kb = sum(len(http.get(item["image"]["url"]).content) for item in gallery) / 1024
    return {"runs": runs, "retrieve_files": len(gallery), "retrieve_files_kb": files_kb, "cached_s": medians}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timed calls per way of calling (the median is reported)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="the same as bench.py's")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    r = costs(args.work_dir, args.runs)
    print(f"Cached answers (no forward), {r['retrieve_files']} retrieve files of {r['retrieve_files_kb']:.0f} kB "
          f"in all; median of {r['runs']} calls:\n| call | median |\n|---|---:|")
    for name, seconds in r["cached_s"].items():
        print(f"| {name.replace('_', ' ')} | {seconds * 1e3:.1f} ms |")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
