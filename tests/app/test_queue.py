"""The queue for a full room: one inference pool across the tabs, cheap events apart, a bounded queue,
queue positions for waiting visitors, and no direct POST around the queue."""
from __future__ import annotations

import contextlib
import threading
import time

import httpx
import pytest

from fixtures import free_port, make_config, make_gallery
from senet_demo.config import QueueSettings
from senet_demo.services import Services
from senet_demo.ui import build_demo

# The events that run a model (by api_name); every other event only moves values between components. A tab's
# clickable examples run its handler too (common.clickable_examples names those events <handler>_example; a
# tab without example pictures has none).
MODEL_EVENTS = {"classify", "classify_on_upload", "retrieve", "retrieve_on_upload", "retrieval_quality", "explain",
                "figure6", "ablate", "every_tab"}


def runs_a_model(api_name: str) -> bool:
    """A listed model event, a tab's example, or a tab's run on upload (the gallery's own upload is on_upload)."""
    return api_name in MODEL_EVENTS or api_name.endswith(("_example", "_on_upload"))


def built(tmp_path, resnet_name, senet_name, settings: QueueSettings, gallery: bool = False):
    config = make_config(tmp_path, [resnet_name, senet_name], queue=settings)
    if gallery:
        config.gallery_dir = make_gallery(tmp_path / "gallery", {"red": 3, "green": 3})
    services = Services.create(config)
    return services, build_demo(services)


def test_model_events_share_one_pool_and_cheap_events_do_not(tmp_path, resnet_name, senet_name):
    settings = QueueSettings(inference_workers=3, ui_concurrency=5, max_size=7)
    _, demo = built(tmp_path, resnet_name, senet_name, settings)
    fns = [fn for fn in demo.fns.values() if fn.fn is not None]
    model_fns = [fn for fn in fns if runs_a_model(fn.api_name)]
    cheap_fns = [fn for fn in fns if not runs_a_model(fn.api_name)]
    assert {fn.api_name for fn in model_fns} >= MODEL_EVENTS | {"retrieve_image_example"}
    assert {"model_status", "model_changed", "on_upload", "on_clear"} <= {fn.api_name for fn in cheap_fns}

    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in model_fns} == {("inference", 3)}
    for fn in cheap_fns:
        assert fn.concurrency_id != "inference", f"{fn.api_name} would wait behind forwards"
        expected = settings.upload_concurrency if fn.api_name == "on_upload" else "default"  # default: ui_concurrency
        assert fn.concurrency_limit == expected, fn.api_name

    # every public endpoint runs a model, so none of them escapes the pool
    public = {fn.api_name for fn in fns if fn.api_visibility == "public"}
    assert public == {"classify", "retrieve", "retrieval_quality", "explain", "figure6", "ablate", "every_tab"}
    # the status tracker (queue position, progress) is shown on every model event's outputs
    shown = {dep["api_name"]: dep["show_progress"] for dep in demo.get_config_file()["dependencies"]}
    assert all(shown[fn.api_name] == "full" for fn in model_fns)
    demo.close()


def test_queue_settings_reject_nonsense():
    with pytest.raises(ValueError):
        QueueSettings(inference_workers=0)
    with pytest.raises(ValueError):
        QueueSettings(max_size=0)


def test_inference_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("SENET_INFERENCE_WORKERS", "5")
    assert QueueSettings().inference_workers == 5


class HeldRuns:
    """Wraps ``engine.run``: every call waits at a gate and is counted while it is in flight."""

    def __init__(self, engine):
        self._run = engine.run
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        engine.run = self

    def __call__(self, *args, **kwargs):
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            if not self.gate.wait(timeout=120):
                raise RuntimeError("the gate was never opened")
            return self._run(*args, **kwargs)
        finally:
            with self.lock:
                self.in_flight -= 1


@contextlib.contextmanager
def served_with_held_runs(tmp_path, resnet_name, senet_name, settings, **kwargs):
    """The app served on a free port, its forwards held at a gate (``HeldRuns``); yields (url, held)."""
    services, demo = built(tmp_path, resnet_name, senet_name, settings, **kwargs)
    held = HeldRuns(services.engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", held
    finally:
        held.gate.set()
        demo.close()


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds; the timeout only stops a broken run from hanging."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def private_endpoint(client, api_name: str) -> int:
    """The fn_index of a browser-only event, made callable from gradio_client (as benchmarks/load_test.py does)."""
    index = next(d["id"] for d in client.config["dependencies"] if d.get("api_name") == api_name)
    client.endpoints[index].is_valid = True
    return index


def test_a_full_room_waits_in_line_across_tabs(tmp_path, resnet_name, senet_name, photo_png):
    """Two workers, seven visitors on three tabs: two forwards run, five wait with their positions, a cheap
    event still answers, and no more than two forwards ever run at once."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    workers = 2
    settings = QueueSettings(inference_workers=workers, ui_concurrency=4, max_size=16)
    with served_with_held_runs(tmp_path, resnet_name, senet_name, settings, gallery=True) as (url, held):
        image = handle_file(str(photo_png))
        calls = [((image,), "/classify"), ((image,), "/retrieve"), ((image,), "/explain"),
                 ((image,), "/classify"), ((image,), "/ablate"), ((image,), "/explain"), ((image,), "/retrieve")]
        clients = [Client(url, verbose=False, download_files=False) for _ in calls]
        jobs = [client.submit(*args, api_name=api_name) for client, (args, api_name) in zip(clients, calls)]
        waiting = len(calls) - workers

        def waiting_ranks() -> list[int]:  # each client learns its status from its own stream, a moment later
            return sorted(s.rank for s in (job.status() for job in jobs) if s.code == Status.IN_QUEUE)

        wait_for(lambda: held.in_flight == workers and waiting_ranks() == list(range(waiting)),
                 "two forwards running and every waiting visitor knowing their position")
        assert held.in_flight == workers

        # a cheap event has its own group: it answers while every worker is busy
        status = clients[0].predict(fn_index=private_endpoint(clients[0], "model_status"))
        assert resnet_name in status

        # the REST route that would skip the queue is closed
        direct = httpx.post(f"{url}gradio_api/run/classify", json={"data": [None, "none", 1, 1]}, timeout=30)
        assert direct.status_code == 404

        held.gate.set()
        results = [job.result(timeout=120) for job in jobs]
    assert held.most == workers
    assert len(results) == len(calls)
    assert results[0][0]["label"]  # answers came back, not errors


def test_a_full_queue_refuses_at_once_instead_of_growing(tmp_path, resnet_name, senet_name, photo_png):
    """One worker and room for two waiting events: a fourth visitor is told the queue is full."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    settings = QueueSettings(inference_workers=1, max_size=2)
    with served_with_held_runs(tmp_path, resnet_name, senet_name, settings) as (url, held):
        image = handle_file(str(photo_png))
        clients = [Client(url, verbose=False, download_files=False) for _ in range(4)]
        jobs = [clients[0].submit(image, api_name="/classify")]
        wait_for(lambda: held.in_flight == 1, "the first forward")
        jobs += [client.submit(image, api_name="/classify") for client in clients[1:3]]
        wait_for(lambda: sorted(j.status().rank for j in jobs[1:] if j.status().code == Status.IN_QUEUE) == [0, 1],
                 "two visitors in line")
        with pytest.raises(Exception, match="[Qq]ueue is full"):
            clients[3].predict(image, api_name="/classify")
        held.gate.set()
        assert all(job.result(timeout=120)[0]["label"] for job in jobs)
    assert held.most == 1
