"""Figure builders for the Explain tab: plotly figures and overlay images.

Every builder returns a new figure object (no global plotting state), with
hover text naming the block, the channel and the value.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from matplotlib import colormaps
from PIL import Image
from plotly.subplots import make_subplots

from .excitation import sampled_channels
from .se_blocks import SEBlock

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


def excitation_map(matrix: np.ndarray, blocks: list[SEBlock], title: str) -> go.Figure:
    """Heatmap: SE blocks by depth (rows) x channels (columns), coloured by excitation."""
    names = [b.name for b in blocks]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            y=names,
            colorscale="Viridis",
            zmin=0.0,
            zmax=1.0,
            colorbar={"title": "s"},
            hovertemplate="block %{y}<br>channel %{x}<br>excitation %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="SE block (by depth)", type="category")
    fig.update_xaxes(title="channel")
    fig.update_layout(title=title, height=max(320, 18 * len(blocks) + 120), margin={"l": 80, "r": 20, "t": 50, "b": 40})
    return fig


def channel_plot(series: dict[str, np.ndarray], block: SEBlock, channels: np.ndarray) -> go.Figure:
    """Excitation of each channel of one block, one line per image."""
    fig = go.Figure()
    for i, (name, vector) in enumerate(series.items()):
        fig.add_trace(
            go.Scatter(
                x=channels,
                y=vector[channels],
                mode="lines+markers" if len(channels) <= 64 else "lines",
                name=name,
                line={"color": COLORS[i % len(COLORS)], "width": 1.5},
                hovertemplate=f"{block.name}<br>channel %{{x}}<br>excitation %{{y:.3f}}<extra>{name}</extra>",
            )
        )
    sampled = "" if len(channels) == block.channels else f", {len(channels)} evenly sampled channels"
    fig.update_layout(title=f"{block.name}: C={block.channels}{sampled}", xaxis_title="channel index",
                      yaxis_title="excitation s_c", yaxis_range=[0, 1.02], height=400,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
                      margin={"t": 90})
    return fig


def depth_profile(profile: dict[str, np.ndarray], blocks: list[SEBlock], image_names: list[str]) -> go.Figure:
    """Mean ± std of the excitation per block for each image, and the images' spread."""
    names = [b.name for b in blocks]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06)
    for i, image_name in enumerate(image_names):
        fig.add_trace(
            go.Scatter(
                x=names, y=profile["mean"][i], name=image_name, mode="lines+markers",
                line={"color": COLORS[i % len(COLORS)]},
                error_y={"type": "data", "array": profile["std"][i], "visible": True, "thickness": 1},
                hovertemplate="%{x}<br>mean %{y:.3f}<extra>" + image_name + "</extra>",
            ),
            row=1, col=1,
        )
    fig.add_trace(
        go.Bar(x=names, y=profile["spread"], name="difference between images", marker_color="#555",
               hovertemplate="%{x}<br>mean pairwise RMS distance %{y:.3f}<extra></extra>"),
        row=2, col=1,
    )
    fig.update_yaxes(title="mean ± std over channels", row=1, col=1)
    fig.update_yaxes(title="images differ by", row=2, col=1)
    fig.update_layout(title="Depth profile", height=520, legend={"orientation": "h"})
    return fig


def figure6(means: dict[str, dict[str, np.ndarray]], blocks: list[SEBlock], sample: int | None) -> go.Figure:
    """The paper's Figure 6: per block, the mean excitation of each category and of all of them."""
    cols = min(3, len(blocks))
    rows = (len(blocks) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[b.name for b in blocks])
    categories = [c for c in means if c != "all"] + ["all"]
    for index, block in enumerate(blocks):
        channels = np.arange(block.channels)
        if sample:
            channels = sampled_channels(block.channels, sample)
        for ci, category in enumerate(categories):
            is_all = category == "all"
            fig.add_trace(
                go.Scatter(
                    x=channels, y=means[category][block.name][channels], name=category,
                    legendgroup=category, showlegend=index == 0, mode="lines",
                    line={"color": "black" if is_all else COLORS[ci % len(COLORS)], "width": 2.5 if is_all else 1,
                          "dash": "dash" if is_all else "solid"},
                    hovertemplate=f"{block.name}<br>channel %{{x}}<br>mean excitation %{{y:.3f}}<extra>{category}</extra>",
                ),
                row=index // cols + 1, col=index % cols + 1,
            )
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title="Mean excitation per gallery category (SENet paper, Figure 6)",
                      height=300 * rows + 80, legend={"orientation": "h"})
    return fig


def feature_overlay(view: Image.Image, feature_map: np.ndarray, size: int = 224) -> Image.Image:
    """One channel's feature map, normalised and upsampled, blended over the model's view of the image."""
    picture = view.convert("RGB").resize((size, size))
    fmap = feature_map.astype(np.float32)
    fmap = (fmap - fmap.min()) / (fmap.max() - fmap.min() + 1e-8)
    heat = Image.fromarray(np.uint8(fmap * 255)).resize((size, size), Image.BILINEAR)
    colored = colormaps["jet"](np.asarray(heat) / 255.0)[..., :3]
    colored = Image.fromarray(np.uint8(colored * 255))
    return Image.blend(picture, colored, alpha=0.45)
