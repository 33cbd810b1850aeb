"""The queue for a full room: one inference pool across the tabs, cheap events apart, a bounded queue,
queue positions for waiting visitors, and no direct POST around the queue."""
from __future__ import annotations

import os
import sys
import threading
import time

import pytest
import torch

from helpers import free_port, make_config
from retrieval_helpers import make_gallery
from senet_demo.config import QueueSettings
from senet_demo.services import Services
from senet_demo.ui import build_demo
from senet_demo.ui.queue import INFERENCE_POOL

# The handlers that run a model; every other event only moves values between components.
MODEL_HANDLERS = {"on_classify", "on_retrieve", "on_metrics", "on_explain", "on_figure6", "on_ablate", "on_every_tab"}


def handler_name(fn) -> str:
    return getattr(fn.fn, "__name__", fn.name)


@pytest.fixture
def keep_torch_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def built(tmp_path, resnet_name, senet_name, settings: QueueSettings, gallery: bool = False):
    config = make_config(tmp_path, [resnet_name, senet_name], queue=settings)
    if gallery:
        config.gallery_dir = make_gallery(tmp_path / "gallery", {"red": 3, "green": 3})
    services = Services.create(config)
    return services, build_demo(services)


def test_model_events_share_one_pool_and_cheap_events_do_not(tmp_path, resnet_name, senet_name, keep_torch_threads):
    settings = QueueSettings(inference_workers=3, ui_concurrency=5, max_size=7)
    _, demo = built(tmp_path, resnet_name, senet_name, settings)
    fns = [fn for fn in demo.fns.values() if fn.fn is not None]
    model_fns = [fn for fn in fns if handler_name(fn) in MODEL_HANDLERS]
    cheap_fns = [fn for fn in fns if handler_name(fn) not in MODEL_HANDLERS]
    assert {handler_name(fn) for fn in model_fns} == MODEL_HANDLERS
    assert cheap_fns, "the model switch and the session uploads are events too"

    # Gradio's own grouping: one event queue per concurrency_id, limited by the lowest limit in it.
    queue = demo._queue
    for fn in fns:
        queue.create_event_queue_for_fn(fn)
    pools = queue.event_queue_per_concurrency_id
    model_pools = {fn.concurrency_id for fn in model_fns}
    assert len(model_pools) == 1
    (pool,) = model_pools
    assert pools[pool].concurrency_limit == 3
    for fn in cheap_fns:
        assert fn.concurrency_id != pool, f"{handler_name(fn)} would wait behind forwards"
        uploads = handler_name(fn) == "on_upload"  # holds a whole upload in memory while it checks it
        assert pools[fn.concurrency_id].concurrency_limit == (settings.upload_concurrency if uploads else 5)

    # every public endpoint runs a model, so none of them escapes the pool
    public = {fn.api_name for fn in fns if fn.api_visibility == "public"}
    assert public == {fn.api_name for fn in model_fns if fn.api_visibility == "public"}
    assert {"classify", "retrieve", "explain"} <= public

    assert queue.max_size == 7
    assert demo.api_open is False
    # the status tracker (queue position, progress) is shown on every model event's outputs
    shown = {dep["id"]: dep["show_progress"] for dep in demo.get_config_file()["dependencies"]}
    assert all(shown[fn._id] == "full" for fn in model_fns)
    assert torch.get_num_threads() == settings.threads_per_forward
    demo.close()


def test_queue_settings_reject_nonsense():
    with pytest.raises(ValueError):
        QueueSettings(inference_workers=0)
    with pytest.raises(ValueError):
        QueueSettings(max_size=0)


def test_inference_workers_from_the_environment(monkeypatch):
    monkeypatch.setenv("SENET_INFERENCE_WORKERS", "5")
    assert QueueSettings().inference_workers == 5
    assert QueueSettings().threads_per_forward >= 1


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


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_full_room_waits_in_line_across_tabs(tmp_path, resnet_name, senet_name, photo_png, keep_torch_threads):
    """Two workers, seven visitors on three tabs: two forwards run, five wait with their positions."""
    import httpx
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    workers = 2
    services, demo = built(tmp_path, resnet_name, senet_name,
                           QueueSettings(inference_workers=workers, ui_concurrency=4, max_size=16), gallery=True)
    held = HeldRuns(services.engine)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        image = handle_file(str(photo_png))
        calls = [((image,), "/classify"), ((image,), "/retrieve"), ((image,), "/explain"),
                 ((image,), "/classify"), ((image,), "/ablate"), ((image,), "/explain"), ((image,), "/retrieve")]
        clients = [Client(url, verbose=False, download_files=False) for _ in calls]
        jobs = [client.submit(*args, api_name=api_name) for client, (args, api_name) in zip(clients, calls)]

        waiting = len(calls) - workers

        def queued_in_pool() -> int:
            pool = demo._queue.event_queue_per_concurrency_id.get(INFERENCE_POOL)
            return len(pool.queue) if pool else 0

        wait_for(lambda: held.in_flight == workers and queued_in_pool() == waiting, "a full pool and a queue")
        assert held.in_flight == workers

        def waiting_ranks() -> list[int]:  # each client learns its status from its own stream, a moment later
            return sorted(s.rank for s in (job.status() for job in jobs) if s.code == Status.IN_QUEUE)

        wait_for(lambda: waiting_ranks() == list(range(waiting)),
                 "every waiting visitor to know their position")
        queued = [job for job in jobs if job.status().code == Status.IN_QUEUE]
        assert len(queued) == waiting

        # the REST route that would skip the queue is closed
        direct = httpx.post(f"{url}gradio_api/run/classify", json={"data": [None, "none", 1, 1]}, timeout=30)
        assert direct.status_code == 404

        held.gate.set()
        results = [job.result(timeout=120) for job in jobs]
    finally:
        held.gate.set()
        demo.close()
    assert held.most == workers
    assert len(results) == len(calls)
    classify_out = results[0]
    assert classify_out[0]["label"]  # answers came back, not errors


def test_the_app_queue_starts_events_on_arrival_or_else_polls_every_few_milliseconds(tmp_path, resnet_name,
                                                                                   keep_torch_threads, monkeypatch):
    """Gradio's queue wakes up every 1 ms while it has nothing to start, forwards included. The app's queue
    is woken by arriving and ending events instead (ui/queue_start.py); with a Gradio whose loop it does
    not know, it polls every QUEUE_POLL_S (this Gradio must still have the setting)."""
    from gradio.queueing import Queue

    from senet_demo.ui import queue_start
    from senet_demo.ui.queue import QUEUE_POLL_S

    demo = build_demo(Services.create(make_config(tmp_path, [resnet_name])))
    assert getattr(demo._queue.start_processing, "__func__", None) is not Queue.start_processing

    monkeypatch.setattr(queue_start, "KNOWN_SOURCES_SHA256", "0" * 64)
    demo = build_demo(Services.create(make_config(tmp_path / "other", [resnet_name])))
    assert demo._queue.start_processing.__func__ is Queue.start_processing
    assert demo._queue.sleep_when_free >= QUEUE_POLL_S  # Gradio's own is 1 ms on Linux


def test_progress_is_sent_five_times_a_second_not_a_hundred(tmp_path, resnet_name, keep_torch_threads):
    """Gradio's progress loop wakes every 10 ms, idle or not; a progress bar needs 5 updates a second."""
    from senet_demo.ui.queue import PROGRESS_EVERY_S

    demo = build_demo(Services.create(make_config(tmp_path, [resnet_name])))
    assert demo._queue.progress_update_sleep_when_free == PROGRESS_EVERY_S >= 0.2


def test_the_monitoring_summary_is_rebuilt_every_few_events_not_after_each(tmp_path, resnet_name, keep_torch_threads,
                                                                        monkeypatch):
    """Gradio rebuilds a pandas summary of its last 10,000 events after every event (3.5 to 11 ms each on
    2 cores); the app asks for it every MONITORING_SUMMARY_EVERY events, and the environment still wins."""
    from senet_demo.ui.queue import MONITORING_SUMMARY_EVERY

    monkeypatch.delenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", raising=False)
    demo = build_demo(Services.create(make_config(tmp_path, [resnet_name])))
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == MONITORING_SUMMARY_EVERY > 1  # (sic: Gradio's own spelling)
    assert "GRADIO_ANALYTICS_CACHE_FREQUENCY" not in os.environ  # set on this app's queue, not the process

    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "3")
    demo = build_demo(Services.create(make_config(tmp_path / "again", [resnet_name])))
    assert demo._queue.ANAYLTICS_CACHE_FREQUENCY == 3


def test_a_thread_waiting_for_the_gil_asks_for_it_after_a_millisecond(tmp_path, resnet_name, keep_torch_threads):
    """A handler starting while the event loop runs Python waits at most this long (Python's own: 5 ms)."""
    from senet_demo.ui.queue import GIL_SWITCH_INTERVAL_S

    previous = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        build_demo(Services.create(make_config(tmp_path, [resnet_name])))
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_S) and GIL_SWITCH_INTERVAL_S <= 0.001
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop has no Windows build; requirements.txt skips it there")
def test_the_server_runs_on_uvloop_and_httptools(tmp_path, resnet_name, keep_torch_threads):
    """requirements.txt installs them and Gradio's uvicorn picks them itself: every request, and the queue's
    and the streams' event loop, run on them (on 2 cores a do-nothing event took 1.5-2.5 ms less)."""
    demo = build_demo(Services.create(make_config(tmp_path, [resnet_name])))
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        assert demo.server.config.http_protocol_class.__name__ == "HttpToolsProtocol"
        (listening,) = demo.server.servers
        assert type(listening.get_loop()).__module__.split(".")[0] == "uvloop"
    finally:
        demo.close()
