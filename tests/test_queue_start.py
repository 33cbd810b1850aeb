"""The queue starts an event when it arrives or when a worker frees up, not on a poll; a Gradio whose loop
is not the one the app knows keeps its own."""
from __future__ import annotations

import time

import gradio as gr
import pytest

from helpers import free_port
from senet_demo.ui import queue_start
from senet_demo.ui.queue_start import KNOWN_SOURCES_SHA256, sources_digest, start_events_on_arrival

NEVER_S = 600.0  # a fallback no test waits out: an event that is not woken for never starts in time


def doubling_app(concurrency_limit: int) -> tuple[gr.Blocks, list[float]]:
    started: list[float] = []

    def double(x):
        started.append(time.monotonic())
        time.sleep(0.2)
        return 2 * x

    with gr.Blocks() as demo:
        number, result = gr.Number(), gr.Number()
        number.submit(double, number, result, api_name="double", concurrency_limit=concurrency_limit)
    demo.queue()
    return demo, started


@pytest.fixture
def served():
    demos = []

    def serve(demo: gr.Blocks) -> str:
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        demos.append(demo)
        return f"http://127.0.0.1:{port}/"

    yield serve
    for demo in demos:
        demo.close()


def test_the_installed_gradio_has_the_queue_the_app_knows():
    """requirements.txt pins the Gradio the loop was taken from; with another the app keeps polling."""
    assert sources_digest() == KNOWN_SOURCES_SHA256


def test_events_start_on_arrival_and_when_a_worker_frees_up(served):
    """With a fallback of ten minutes, every event can only start in time if its arrival, or the end of the
    event before it, wakes the loop; and the idle loop does not look at the queue at all."""
    from gradio_client import Client

    demo, started = doubling_app(concurrency_limit=1)
    wakeup = start_events_on_arrival(demo._queue, fallback_s=NEVER_S)
    assert wakeup is not None
    client = Client(served(demo), verbose=False, download_files=False)

    one_after_another = [client.submit(x, api_name="/double").result(timeout=60) for x in (1, 2, 3)]
    assert one_after_another == [2, 4, 6]
    assert wakeup.looks >= 3  # this loop started them, not Gradio's own

    jobs = [client.submit(x, api_name="/double") for x in (10, 20, 30, 40)]  # one worker: three wait in line
    assert sorted(job.result(timeout=60) for job in jobs) == [20, 40, 60, 80]
    gaps = [b - a for a, b in zip(started[3:], started[4:])]
    assert all(0.19 < gap < 60 for gap in gaps), gaps  # in line, each as the one before it ends

    looks = wakeup.looks
    time.sleep(1.0)
    assert wakeup.looks - looks <= 1  # Gradio's own loop looks every millisecond


def test_the_next_event_in_line_does_not_wait_for_the_last_ones_cleanup(served):
    """Gradio's process_events frees the worker, then resets iterators and rebuilds its monitoring summary
    (3.5 to 11 ms, here made to take 2 s): the next event in line starts once the worker is free."""
    from gradio_client import Client

    demo, started = doubling_app(concurrency_limit=1)
    queue = demo._queue
    queue.ANAYLTICS_CACHE_FREQUENCY = 1  # (sic: Gradio's own spelling) a summary after every event
    queue.compute_analytics_summary = lambda records: time.sleep(2.0)
    assert start_events_on_arrival(queue, fallback_s=NEVER_S) is not None
    client = Client(served(demo), verbose=False, download_files=False)

    jobs = [client.submit(x, api_name="/double") for x in (1, 2, 3)]
    assert sorted(job.result(timeout=60) for job in jobs) == [2, 4, 6]
    gaps = [b - a for a, b in zip(started, started[1:])]
    assert all(0.19 < gap < 1.5 for gap in gaps), gaps  # 2.2 s each if the next waited for the summary


def test_a_gradio_with_another_loop_keeps_it(monkeypatch):
    from gradio.queueing import Queue

    monkeypatch.setattr(queue_start, "KNOWN_SOURCES_SHA256", "0" * 64)
    demo, _ = doubling_app(concurrency_limit=1)
    queue = demo._queue
    assert start_events_on_arrival(queue) is None
    for name in ("start_processing", "push", "process_events", "reset_iterators"):
        assert getattr(queue, name).__func__ is getattr(Queue, name), name


def test_the_wakeup_is_remade_for_a_new_event_loop():
    """A server launched again runs another asyncio loop; an event bound to the first would fail in it."""
    import asyncio

    wakeup = queue_start.Wakeup(fallback_s=NEVER_S)

    async def woken_once():
        asyncio.get_running_loop().call_soon(wakeup.set)
        await wakeup.wait()

    for _ in range(2):
        asyncio.run(asyncio.wait_for(woken_once(), 30))
    assert wakeup.looks == 2
