"""The Gradio queue for a full room: one shared pool for model-running events, a bounded queue.

Every event that runs a model passes ``**inference(services)`` to its listener, so all of them, in every
tab, share one concurrency group: at most ``QueueSettings.inference_workers`` forwards run at once across
the whole app, and visitors beyond that wait in line and see their queue position (the status tracker of
``show_progress="full"``, Gradio's default). Cheap events keep Gradio's own group per event, with
``ui_concurrency`` as the default limit, so they never wait behind a forward. Only Gradio's public
``Blocks.queue`` and listener arguments are used.
"""
from __future__ import annotations

import gradio as gr

from ..services import Services

INFERENCE_POOL = "inference"  # the concurrency_id shared by every model-running event


def inference(services: Services) -> dict:
    """Listener keyword arguments that put an event into the shared inference pool."""
    return {"concurrency_id": INFERENCE_POOL, "concurrency_limit": services.config.queue.inference_workers}


def configure_queue(demo: gr.Blocks, services: Services) -> gr.Blocks:
    """Turn on ``demo``'s queue with the app's settings; returns ``demo``."""
    settings = services.config.queue
    # api_open=False: Gradio's direct POST routes (/run/<api_name>) would otherwise skip the queue and its limits.
    demo.queue(default_concurrency_limit=settings.ui_concurrency, max_size=settings.max_size, api_open=False)
    return demo
