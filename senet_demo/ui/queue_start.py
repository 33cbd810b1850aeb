"""Start a queued event as soon as it can start, instead of on the queue's next poll.

Gradio's queue loop looks for an event to start every millisecond (on Linux) whenever it has none it
can start, which includes the whole time a forward runs, and its progress loop every 10 ms. On a 2-core
machine those wake-ups take time from the forward's own threads. An idle server woke 266 times a second
with the 5 ms poll ``queue.py`` sets, and 40 times with this loop and progress sent every 50 ms; the
ensemble's forwards inside the server took 261 ms with the poll and 248 ms with this loop (servers
taking turns, in the same run). With progress sent every 200 ms and a fallback of 0.5 s, it wakes about
20 times a second, half of them uvicorn's own loop.

Here the loop sleeps until something can change what it would find: an event joins (``push``), or an
event's worker and concurrency slot are freed (in ``process_events``' cleanup, just before it awaits
``reset_iterators``; the rest of that cleanup, Gradio's monitoring summary included, no longer delays
the next event); and at the latest after ``FALLBACK_S``, so that a change made some other way is
picked up anyway (``process_events`` ending wakes it too).

The loop is Gradio's own (``Queue.start_processing``) with its ``asyncio.sleep`` replaced by that wait.
It is installed only when the Gradio methods it copies or relies on have the source digest of the
Gradio it was taken from; any other Gradio keeps its own loop, with ``queue.py``'s slower poll, and the
log says so.
"""
from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time

log = logging.getLogger(__name__)

# The Queue methods the waking loop copies (start_processing) or relies on (start calls it; push is the
# only way in; process_events frees the slot just before awaiting reset_iterators), and the sha256 of
# their sources in the Gradio it was taken from (6.31.0).
RELIED_ON = ("start", "start_processing", "push", "process_events", "reset_iterators")
KNOWN_SOURCES_SHA256 = "a1f3bbbd43ebc8bcaa4542e0b115c83fb485a2ca218c8970c90d910358cc00e4"
FALLBACK_S = 0.5  # the longest the loop sleeps without being woken (each wake-up costs a forward a little)


def sources_digest() -> str | None:
    """The digest of the installed Gradio's ``RELIED_ON`` queue methods, or None when they cannot be read."""
    try:
        from gradio.queueing import Queue

        sources = "".join(inspect.getsource(getattr(Queue, name)) for name in RELIED_ON)
        return hashlib.sha256(sources.encode()).hexdigest()
    except (ImportError, AttributeError, OSError, TypeError):
        return None


class Wakeup:
    """What the loop waits on between looks at the queue; ``looks`` counts them.

    Used only from the server's event loop; a server launched again runs a new loop, so the asyncio
    event is made anew for it.
    """

    def __init__(self, fallback_s: float = FALLBACK_S):
        self.fallback_s = fallback_s
        self.looks = 0
        self._loop = self._event = None

    def _current(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._event = loop, asyncio.Event()
        return self._event

    def set(self) -> None:
        self._current().set()

    async def wait(self) -> None:
        event = self._current()
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), self.fallback_s)
            except asyncio.TimeoutError:
                pass
        event.clear()  # before the next look: a change after this wakes the wait after it
        self.looks += 1


def start_events_on_arrival(queue, fallback_s: float = FALLBACK_S) -> Wakeup | None:
    """Install the waking loop on Gradio's ``queue`` (before the server starts it); returns its ``Wakeup``,
    or None, leaving the queue as it was, when this Gradio's loop is not the one it replaces."""
    digest = sources_digest()
    if digest != KNOWN_SOURCES_SHA256:
        log.warning("Gradio's queue is not the one this app knows (sha256 %s of %s); it keeps polling, every "
                    "5 ms", digest, ", ".join(RELIED_ON))
        return None
    wakeup = Wakeup(fallback_s)
    push, process_events, reset_iterators = queue.push, queue.process_events, queue.reset_iterators

    async def push_and_wake(*args, **kwargs):
        try:
            return await push(*args, **kwargs)
        finally:
            wakeup.set()

    async def reset_iterators_after_waking(*args, **kwargs):
        wakeup.set()  # the event's slot was freed just before this call
        return await reset_iterators(*args, **kwargs)

    async def process_and_wake(*args, **kwargs):
        try:
            return await process_events(*args, **kwargs)
        finally:
            wakeup.set()

    queue.push = push_and_wake
    queue.reset_iterators = reset_iterators_after_waking
    queue.process_events = process_and_wake
    queue.start_processing = lambda: _start_processing(queue, wakeup)
    return wakeup


async def _start_processing(self, wakeup: Wakeup) -> None:
    """Gradio 6.31's ``Queue.start_processing``; every ``await asyncio.sleep(self.sleep_when_free)`` is
    ``await wakeup.wait()``."""
    from gradio.utils import run_coro_in_background, set_task_name

    try:
        while not self.stopped:
            if len(self) == 0:
                await wakeup.wait()
                continue

            if None not in self.active_jobs:
                await wakeup.wait()
                continue

            async with self.delete_lock:
                event_batch = self.get_events()

            if event_batch:
                events, batch, concurrency_id = event_batch
                self.active_jobs[self.active_jobs.index(None)] = events
                event_queue = self.event_queue_per_concurrency_id[concurrency_id]
                event_queue.current_concurrency += 1
                start_time = time.time()
                fn = events[0].fn
                event_queue.start_times_per_fn[fn].add(start_time)
                for event in events:
                    if (a := self.event_analytics.get(event._id)) is not None:
                        a["status"] = "processing"
                process_event_task = run_coro_in_background(
                    self.process_events, events, batch, start_time, fn
                )
                set_task_name(process_event_task, events[0].session_hash, fn._id, events[0]._id, batch)

                self._asyncio_tasks.add(process_event_task)
                process_event_task.add_done_callback(self._asyncio_tasks.discard)
                if self.live_updates:
                    self.broadcast_estimations(concurrency_id)
            else:
                await wakeup.wait()
    finally:
        self.stopped = True
        self._cancel_asyncio_tasks()
