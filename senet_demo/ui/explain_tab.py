"""Explain tab (coming soon)."""
from __future__ import annotations

import gradio as gr

from ..services import Services


def build(services: Services) -> None:
    gr.Markdown("The Explain tab is coming soon.")
