"""The Gradio queue for a full room: one shared pool for model-running events, a bounded queue.

Every event that runs a model is registered by ``model_events.listen``, which passes
``**inference(services)`` to its listener, so all of them, in every tab, share one concurrency group:
at most ``QueueSettings.inference_workers`` forwards run at once across the whole app, and visitors
beyond that wait in line and see their queue position (the status tracker of ``show_progress="full"``,
Gradio's default, which no event here turns off). Cheap events keep Gradio's own group per event, with
``ui_concurrency`` as the default limit, so they never wait behind a forward.
"""
from __future__ import annotations

import ctypes
import os
import sys

import gradio as gr
import torch

from ..services import Services
from .queue_start import start_events_on_arrival

INFERENCE_POOL = "inference"  # the concurrency_id shared by every model-running event
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
QUEUE_POLL_S = 0.005  # how often the idle queue looks for a new event where queue_start cannot wake it (Gradio's own: every 1 ms)
PROGRESS_EVERY_S = 0.2  # how often running events' progress is sent (Gradio's own: every 10 ms)
GIL_SWITCH_INTERVAL_S = 0.001  # how long a thread waits for the GIL before asking for it (Python's own: 5 ms)
MONITORING_SUMMARY_EVERY = 20  # events between Gradio's traffic-monitoring summaries (Gradio's own: every event)


def inference(services: Services) -> dict:
    """Listener keyword arguments that put an event into the shared inference pool."""
    return {"concurrency_id": INFERENCE_POOL, "concurrency_limit": services.config.queue.inference_workers}


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX does, set from inside the process).

    Gradio runs every event in a pool of up to 40 threads; glibc gives threads their own arenas (up to
    8 per core), each keeping the memory its requests freed, so the server's resident set creeps up
    under a full room although nothing leaks. Returns False where it does not apply (not glibc).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def quiet_queue_polling(demo: gr.Blocks, seconds: float = QUEUE_POLL_S) -> bool:
    """Let the queue look for new events every ``seconds`` instead of every millisecond: the fallback for a
    Gradio whose loop ``queue_start`` does not know.

    Its loop wakes up that often whenever it has no event to start, which includes all the time a
    forward runs; on 2 cores the wake-ups took a forward from 217 ms to 239 ms (222 ms at 20 ms). At 5 ms
    a new event waits at most 5 ms to start. Returns False where this Gradio has no such setting.
    """
    return _interval_at_least(demo, "sleep_when_free", seconds)


def send_progress_less_often(demo: gr.Blocks, seconds: float = PROGRESS_EVERY_S) -> bool:
    """Let the queue send running events' progress every ``seconds`` (5 times a second) instead of every 10 ms.

    Its progress loop wakes up that often all the time, idle or not, and every wake-up during a forward
    takes a moment of a core from it: forwards in a worker thread, as the app runs them, took 224.0 ms
    with an idle event loop, 224.7 ms with one waking 17 times a second, 226.7 ms with 40 and 231.5 ms
    with 100 (medians of four runs of 12 each, taking turns). A progress bar of the slow events (a ten-crop
    classify, a gallery's indexing) needs no more than 5 updates a second. Returns False where this Gradio
    has no such setting.
    """
    return _interval_at_least(demo, "progress_update_sleep_when_free", seconds)


def _interval_at_least(demo: gr.Blocks, attribute: str, seconds: float) -> bool:
    """Raise one of the queue's loop intervals to at least ``seconds``; False where this Gradio lacks it."""
    queue = getattr(demo, "_queue", None)
    if queue is None or not isinstance(getattr(queue, attribute, None), float):
        return False
    setattr(queue, attribute, max(getattr(queue, attribute), seconds))
    return True


def summarise_monitoring_less_often(demo: gr.Blocks, events: int = MONITORING_SUMMARY_EVERY) -> bool:
    """Let Gradio's queue rebuild its traffic-monitoring summary every ``events`` events, not after each one.

    The summary (for the ``/monitoring`` dashboard) is a pandas table of the last 10,000 events, grouped by
    function, rebuilt after every event: 3.5 ms of a 2-core server's time per event when the app is fresh,
    11 ms once it has served 10,000. ``GRADIO_ANALYTICS_CACHE_FREQUENCY`` in the environment still wins.
    Returns False where this Gradio has no such setting.
    """
    queue = getattr(demo, "_queue", None)
    if queue is None or not isinstance(getattr(queue, "ANAYLTICS_CACHE_FREQUENCY", None), int):  # (sic)
        return False
    if "GRADIO_ANALYTICS_CACHE_FREQUENCY" not in os.environ:
        queue.ANAYLTICS_CACHE_FREQUENCY = events
    return True


def configure_queue(demo: gr.Blocks, services: Services) -> gr.Blocks:
    settings = services.config.queue
    limit_malloc_arenas(max(2, settings.inference_workers))
    # N forwards at once, each with cores / N intra-op threads: together they use each core once
    # instead of N * cores threads spinning on the same cores.
    torch.set_num_threads(settings.threads_per_forward)
    hand_over_the_gil_sooner()
    # api_open=False: Gradio's direct POST routes (/run/<api_name>) would otherwise skip the queue and its limits.
    demo.queue(default_concurrency_limit=settings.ui_concurrency, max_size=settings.max_size, api_open=False)
    quieten_queue(demo)
    return demo


def hand_over_the_gil_sooner(seconds: float = GIL_SWITCH_INTERVAL_S) -> None:
    """Let a thread that waits for the GIL ask for it after ``seconds`` instead of Python's 5 ms.

    An event's handler starts in a worker thread just as the event loop answers the visitor's stream
    request and sends the queue's messages; while the loop runs Python, the handler waits. In A/B runs
    of two servers taking turns (21 classifications each, three times two), a classify's time beyond
    its forwards was 3.6 ms shorter on average with 1 ms (5 pairs of 6). The forwards themselves run
    outside the GIL, so this costs them nothing. It is a setting of the whole process (as the torch
    threads above are), made when the app is built.
    """
    sys.setswitchinterval(seconds)


def quieten_queue(demo: gr.Blocks) -> None:
    """Gradio's queue (after ``demo.queue()``) with less background work beside the forwards: events
    start as they arrive (or the idle queue polls every 5 ms), progress is sent 5 times a second, and
    the monitoring summary is rebuilt every 20 events."""
    if start_events_on_arrival(demo._queue) is None:
        quiet_queue_polling(demo)
    send_progress_less_often(demo)
    summarise_monitoring_less_often(demo)
