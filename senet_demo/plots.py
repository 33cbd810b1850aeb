"""Figure builders for the Explain tab: plotly figures and overlay images.

Every builder returns a new figure object (no global plotting state), with
hover text naming the block, the channel and the value. The Explain tab's three
figures are drawn on every request, so they stay plain dicts (``PlotlyFigure``),
serialised without building plotly's objects.
"""
from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from matplotlib import colormaps
from PIL import Image
from plotly.subplots import make_subplots

from .excitation import sampled_channels
from .se_blocks import SEBlock

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]


@dataclass(frozen=True, eq=False)
class PlotlyFigure:
    """A plotly figure as the plain dicts plotly.js reads, for ``gr.Plot``, which sends any figure by its
    ``to_json()``. Building plotly's objects for every request costs more than the figures' data; ``to_json``
    sends what plotly's own figure sends (a test compares the two): numpy arrays as plotly's typed arrays, the template written out, ``<`` and ``>``
    escaped. Only plotly's escaping of every ``/`` is left out."""

    data: list[dict]
    layout: dict

    def to_plotly_json(self) -> dict:
        return {"data": self.data, "layout": self.layout}

    def to_json(self) -> str:
        layout = _for_plotly_js(self.layout)
        template = self.layout.get("template")
        template = pio.templates.default if template is None else template
        if isinstance(template, str):  # a template's name, which plotly's own figure writes out in full
            template = _template(template)
        if template is None:
            layout.pop("template", None)
        else:
            layout["template"] = template
        text = json.dumps({"data": _for_plotly_js(self.data), "layout": layout}, separators=(",", ":"),
                          default=_unsendable)
        return text.replace("<", "\\u003c").replace(">", "\\u003e")  # never "</script>" inside a page

    def validated(self) -> go.Figure:
        """The same figure as plotly's objects, validated: raises on a property plotly does not know."""
        return go.Figure(self.to_plotly_json())


def excitation_map(excitations: dict[str, np.ndarray], blocks: list[SEBlock], title: str) -> PlotlyFigure:
    """Heatmap: SE blocks by depth (rows) x channels (columns), coloured by excitation.

    One single-row heatmap per block, each as wide as its block, on one shared colour axis: narrower blocks
    are not padded out to the widest, which halves what the browser receives for an SE-ResNeXt. Rows are
    numbered by depth and labelled with the block names: the plotly.js that Gradio ships did not draw
    several heatmaps on one category axis.
    """
    heatmaps = [
        {"type": "heatmap", "z": np.asarray(excitations[block.name], np.float32)[None], "y": [row], "name": block.name,
         "coloraxis": "coloraxis",
         "hovertemplate": f"block {block.name}<br>channel %{{x}}<br>excitation %{{z:.3f}}<extra></extra>"}
        for row, block in enumerate(blocks)
    ]
    return PlotlyFigure(heatmaps, {
        "title": {"text": title}, "height": max(320, 18 * len(blocks) + 120),
        "margin": {"l": 80, "r": 20, "t": 50, "b": 40},
        "coloraxis": {"colorscale": "Viridis", "cmin": 0.0, "cmax": 1.0, "colorbar": {"title": {"text": "s"}}},
        "yaxis": {"autorange": "reversed", "title": {"text": "SE block (by depth)"},
                  "tickvals": list(range(len(blocks))), "ticktext": [b.name for b in blocks]},
        "xaxis": {"title": {"text": "channel"}},
    })


def channel_plot(series: dict[str, np.ndarray], block: SEBlock, channels: np.ndarray) -> PlotlyFigure:
    """Excitation of each channel of one block, one line per image."""
    lines = [
        {"type": "scatter", "x": channels, "y": vector[channels], "name": name,
         "mode": "lines+markers" if len(channels) <= 64 else "lines",
         "line": {"color": COLORS[i % len(COLORS)], "width": 1.5},
         "hovertemplate": f"{block.name}<br>channel %{{x}}<br>excitation %{{y:.3f}}<extra>{name}</extra>"}
        for i, (name, vector) in enumerate(series.items())
    ]
    sampled = "" if len(channels) == block.channels else f", {len(channels)} evenly sampled channels"
    return PlotlyFigure(lines, {
        "title": {"text": f"{block.name}: C={block.channels}{sampled}"}, "height": 400, "margin": {"t": 90},
        "xaxis": {"title": {"text": "channel index"}},
        "yaxis": {"title": {"text": "excitation s_c"}, "range": [0, 1.02]},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    })


def depth_profile(profile: dict[str, np.ndarray], blocks: list[SEBlock], image_names: list[str]) -> PlotlyFigure:
    """Mean ± std of the excitation per block for each image, and the images' spread below it."""
    names = [b.name for b in blocks]
    traces = [
        {"type": "scatter", "x": names, "y": profile["mean"][i], "name": image_name, "mode": "lines+markers",
         "line": {"color": COLORS[i % len(COLORS)]},
         "error_y": {"type": "data", "array": profile["std"][i], "visible": True, "thickness": 1},
         "hovertemplate": "%{x}<br>mean %{y:.3f}<extra>" + image_name + "</extra>"}
        for i, image_name in enumerate(image_names)
    ]
    traces.append({"type": "bar", "x": names, "y": profile["spread"], "name": "difference between images",
                   "marker": {"color": "#555"}, "xaxis": "x2", "yaxis": "y2",
                   "hovertemplate": "%{x}<br>mean pairwise RMS distance %{y:.3f}<extra></extra>"})
    # two stacked panels sharing the block axis (what make_subplots builds, at a fraction of its cost)
    return PlotlyFigure(traces, {
        "title": {"text": "Depth profile"}, "height": 520, "legend": {"orientation": "h"},
        "xaxis": {"anchor": "y", "matches": "x2", "showticklabels": False},
        "yaxis": {"domain": [0.37, 1.0], "title": {"text": "mean ± std over channels"}},
        "xaxis2": {"anchor": "y2"},
        "yaxis2": {"domain": [0.0, 0.31], "title": {"text": "images differ by"}},
    })


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


@lru_cache(maxsize=4)
def _template(name: str) -> dict:
    """The named plotly template as plotly.js reads it (what plotly's own figures carry in their layout)."""
    return pio.templates[name].to_plotly_json()


def _unsendable(value):
    raise TypeError(f"a {type(value).__name__} cannot be sent in a figure")


_TYPED_ARRAY_DTYPES = {"float32": "f4", "float64": "f8", "int8": "i1", "int16": "i2", "int32": "i4",
                       "uint8": "u1", "uint16": "u2", "uint32": "u4"}
_PLAIN_KEYS = ("geojson", "layer", "layers", "range")  # plotly sends these as they are, arrays as lists


def _for_plotly_js(value):
    """``value`` converted as plotly converts a figure: a numpy array held by a key becomes a typed array
    (base64 bytes, the form plotly 6 sends); any other array a list, a numpy number a number, and a float
    that is not finite null."""
    if isinstance(value, dict):
        return {key: _plain(item) if key in _PLAIN_KEYS else
                _typed_array(item) if isinstance(item, np.ndarray) else _for_plotly_js(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_for_plotly_js(item) for item in value]
    return _plain(value)


def _typed_array(array: np.ndarray):
    # plotly's own converter lives in its private _plotly_utils and checks each array against pandas, polars
    # and more (a third of what serialising cost); these few lines make the same typed array
    if array.dtype in (np.int64, np.uint64) and array.size:  # as plotly does: the smallest type that holds them
        kinds = (np.int8, np.int16, np.int32) if array.dtype == np.int64 else (np.uint8, np.uint16, np.uint32)
        fits = [t for t in kinds if np.iinfo(t).min <= array.min() and array.max() <= np.iinfo(t).max]
        array = array.astype(fits[0]) if fits else array
    dtype = _TYPED_ARRAY_DTYPES.get(str(array.dtype))
    if dtype is None or not array.size:
        return _plain(array)
    spec = {"dtype": dtype, "bdata": base64.b64encode(array.tobytes()).decode("ascii")}
    if array.ndim > 1:
        spec["shape"] = ", ".join(str(n) for n in array.shape)
    return spec


def _plain(value):
    """``value`` in JSON's own types: arrays as lists, numpy numbers as numbers, NaN and infinities as null."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def feature_overlays(view: Image.Image, feature_maps: list[np.ndarray], size: int = 224) -> list[Image.Image]:
    """Each channel's feature map, normalised and upsampled, blended over the model's view of the image."""
    picture = view.convert("RGB").resize((size, size))
    jet = _jet_table().tobytes()
    overlays = []
    for feature_map in feature_maps:
        fmap = feature_map.astype(np.float32)
        fmap = (fmap - fmap.min()) / (fmap.max() - fmap.min() + 1e-8)
        heat = Image.fromarray(np.uint8(fmap * 255)).resize((size, size), Image.BILINEAR)
        heat.putpalette(jet)  # the grey levels index the colour table (Pillow's own lookup, not numpy's)
        overlays.append(Image.blend(picture, heat.convert("RGB"), alpha=0.45))
    return overlays


@lru_cache(maxsize=1)
def _jet_table() -> np.ndarray:
    """The jet colormap as 256 RGB rows, looked up by a uint8 image."""
    return np.uint8(colormaps["jet"](np.arange(256) / 255.0)[:, :3] * 255)
