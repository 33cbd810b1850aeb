"""Figure builders for the Explain tab: plotly figures, and the before/after images of the scale step.

Every builder returns a new figure object (no global plotting state), with hover text naming the block,
the channel and the value, axis titles, and the page's light or dark theme followed (``PLOT_CSS``).
Comparisons put each image in its own small panel, or draw translucent lines, so none hides another.
The figures are drawn on every request, so they stay plain dicts (``PlotlyFigure``), serialised
without building plotly's objects.
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

from .excitation import sampled_channels
from .i18n import text
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


# Plots follow the page's light or dark theme: transparent backgrounds, grid lines of a grey that reads on
# both, text in the light theme's colour here and in the dark theme's through PLOT_CSS (plotly draws its text
# as SVG with the colour inline, which only a page style can change).
TEXT_COLOR, GRID_COLOR = "#1f2937", "rgba(128, 128, 128, 0.3)"
PLOT_CSS = """
.dark .js-plotly-plot .main-svg text { fill: #e5e7eb !important; }
.dark .js-plotly-plot .hoverlayer text { fill: inherit; }
.dark .js-plotly-plot .gridlayer path, .dark .js-plotly-plot .zerolinelayer path { stroke: rgba(200, 200, 200, 0.25) !important; }
/* The scale step's pictures are twice as wide as tall: their cells follow, instead of Gradio's squares. */
#explain-scale .thumbnail-item { aspect-ratio: 344 / 196 !important; }
#explain-scale .thumbnail-item img { object-fit: contain !important; }
"""
MUTED = "#8c8c8c"  # the mean of all categories, the other images: beneath the lines read first


def _axis(title: str, **extra) -> dict:
    return {"title": {"text": title}, "gridcolor": GRID_COLOR, "zerolinecolor": GRID_COLOR, "automargin": True,
            **extra}


def _layout(title: str, height: int, **extra) -> dict:
    """The layout every Explain figure shares: readable on a phone and on a projector, in either theme."""
    return {"title": {"text": title, "x": 0, "xanchor": "left", "font": {"size": 15}}, "height": height,
            "template": _template("plotly_white"), "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
            "font": {"size": 13, "color": TEXT_COLOR}, "margin": {"l": 10, "r": 10, "t": 60, "b": 10},
            "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0, "bgcolor": "rgba(0,0,0,0)"},
            **extra}


def se_steps(z: np.ndarray, hidden: np.ndarray, s: np.ndarray, block: SEBlock, shown: list[int],
             lang: str = "en") -> PlotlyFigure:
    """The squeeze z (C values), the bottleneck after the activation (C/r values) and the excitation s (C
    values on [0, 1]) of one block, as three stacked bar charts; the channels shown before and after
    scaling are marked on s."""
    channels, units = np.arange(len(z)), np.arange(len(hidden))
    marked = np.asarray(shown, dtype=np.int64)

    def values(x, y, name, color, axis, what):
        # hundreds of channels: dots read better than hairline bars
        shape = ({"type": "bar", "marker": {"color": color}} if len(y) <= 128 else
                 {"type": "scatter", "mode": "markers", "marker": {"color": color, "size": 4}})
        return {**shape, "x": x, "y": np.asarray(y, np.float32), "name": name, "xaxis": f"x{axis}",
                "yaxis": f"y{axis}", "hovertemplate": f"{what} %{{x}}<br>{name} = %{{y:.3f}}<extra></extra>"}

    channel, shown_below = text("plot.channel", lang), text("plot.shown_below", lang)
    traces = [
        values(channels, z, "z", "#3b6ea5", "", channel),
        values(units, hidden, text("plot.bottleneck", lang), "#d9730d", "2", text("plot.unit", lang)),
        values(channels, s, "s", "#2f8a3b", "3", channel),
        {"type": "scatter", "mode": "markers", "x": marked, "y": np.asarray(s, np.float32)[marked],
         "name": shown_below, "marker": {"color": "#e45756", "size": 9, "symbol": "diamond"},
         "xaxis": "x3", "yaxis": "y3",
         "hovertemplate": f"{channel} %{{x}}<br>s = %{{y:.3f}} ({shown_below})<extra></extra>"},
    ]
    cr = block.reduced
    return PlotlyFigure(traces, _layout(
        text("plot.steps.title", lang, block=block.name), 640, showlegend=False, bargap=0.1,
        xaxis=_axis(text("plot.steps.z", lang), anchor="y"),
        yaxis=_axis("z", domain=[0.75, 1.0]),
        xaxis2=_axis(text("plot.steps.bottleneck", lang, count=cr), anchor="y2"),
        yaxis2=_axis(text("plot.value", lang), domain=[0.41, 0.63]),
        xaxis3=_axis(text("plot.steps.s", lang), anchor="y3"),
        yaxis3=_axis("s", domain=[0.0, 0.29], range=[0, 1.05]),
    ))


def scale_pairs(maps: np.ndarray, gates: np.ndarray, size: int = 168, gap: int = 8, band: int = 28) -> list[Image.Image]:
    """Each channel's map before (left) and after (right) multiplying by its gate, side by side.

    Brightness is the size of a value, |u| (magma: black is 0), on one colour scale per channel, that of the
    map before scaling: a channel with s near 0 fades to black, one with s near 1 stays as it was. Pixels
    are enlarged without smoothing (one square per position of the block's H x W map). A grey band below
    leaves room for the caption the page lays over the picture's foot.
    """
    table = _magma_table().tobytes()
    pairs = []
    for fmap, gate in zip(maps, gates):
        magnitude = np.abs(np.asarray(fmap, np.float32))
        top = float(magnitude.max())
        scale = top if top > 0 else 1.0
        halves = []
        for values in (magnitude, magnitude * float(gate)):
            level = Image.fromarray(np.uint8(np.clip(values / scale, 0.0, 1.0) * 255))
            level = level.resize((size, size), Image.NEAREST)
            level.putpalette(table)
            halves.append(level.convert("RGB"))
        pair = Image.new("RGB", (2 * size + gap, size + band), (128, 128, 128))
        pair.paste(halves[0], (0, 0))
        pair.paste(halves[1], (size + gap, 0))
        pairs.append(pair)
    return pairs


def excitation_map(excitations: dict[str, np.ndarray], blocks: list[SEBlock], title: str,
                   lang: str = "en") -> PlotlyFigure:
    """Heatmap of every block (rows, by depth), each block's channels sorted by s on its own axis.

    Channel numbers mean different things in different blocks, and a block has 64 to 2048 of them: so
    each row holds its own block's channels, sorted from the most to the least excited, spread over the
    same width (x is the rank as a fraction of the block's channels). A row then reads as "how many of
    this block's channels pass, how many are shut"; hovering names the block, the channel and s.
    """
    heatmaps = []
    block_word, channel = text("plot.block", lang), text("plot.channel", lang)
    for row, block in enumerate(blocks):
        vector = np.asarray(excitations[block.name], np.float32)
        order = np.argsort(-vector, kind="stable")
        heatmaps.append({
            "type": "heatmap", "z": vector[order][None], "x": (np.arange(len(order), dtype=np.float32) + 0.5) / len(order),
            "y": [row], "customdata": order[None].astype(np.int32), "name": block.name, "coloraxis": "coloraxis",
            "hovertemplate": f"{block_word} {block.name}<br>{channel} %{{customdata}}<br>s = %{{z:.3f}}<extra></extra>"})
    return PlotlyFigure(heatmaps, _layout(title, max(360, 20 * len(blocks) + 130),
        coloraxis={"colorscale": "Viridis", "cmin": 0.0, "cmax": 1.0,
                   "colorbar": {"title": {"text": "s"}, "thickness": 12, "len": 0.8}},
        yaxis=_axis(text("plot.by_depth", lang), autorange="reversed", tickvals=list(range(len(blocks))),
                    ticktext=[b.name for b in blocks], showgrid=False),
        xaxis=_axis(text("plot.map.sorted", lang), range=[0, 1], tickformat=".0%",
                    showgrid=False),
    ))


def excitation_summary(excitations: dict[str, np.ndarray], blocks: list[SEBlock], lang: str = "en") -> PlotlyFigure:
    """Per block: the mean of s, and the band where the middle half of its channels lie (quartiles)."""
    names = [b.name for b in blocks]
    vectors = [np.asarray(excitations[name], np.float32) for name in names]
    low, mid, high = (np.array([np.percentile(v, q) for v in vectors], np.float32) for q in (25, 50, 75))
    mean = np.array([v.mean() for v in vectors], np.float32)
    traces = [
        {"type": "scatter", "x": names, "y": high, "mode": "lines", "line": {"width": 0}, "showlegend": False,
         "hoverinfo": "skip"},
        {"type": "scatter", "x": names, "y": low, "mode": "lines", "line": {"width": 0}, "fill": "tonexty",
         "fillcolor": "rgba(76, 120, 168, 0.3)", "name": text("plot.summary.middle", lang), "hoverinfo": "skip"},
        {"type": "scatter", "x": names, "y": mean, "mode": "lines+markers", "name": text("plot.mean_s", lang),
         "line": {"color": "#4c78a8", "width": 2}, "customdata": np.stack([low, mid, high], 1),
         "hovertemplate": f"%{{x}}<br>{text('plot.mean_s', lang)} %{{y:.3f}}<br>{text('plot.quartiles', lang)} "
                          "%{customdata[0]:.2f} · %{customdata[1]:.2f} · %{customdata[2]:.2f}<extra></extra>"},
    ]
    return PlotlyFigure(traces, _layout(text("plot.per_block.title", lang), 340,
        xaxis=_axis(text("plot.by_depth", lang), tickangle=-60),
        yaxis=_axis(text("plot.excitation_s", lang), range=[0, 1.02])))


def channel_plot(series: dict[str, np.ndarray], block: SEBlock, channels: np.ndarray,
                 lang: str = "en") -> PlotlyFigure:
    """Excitation of each channel of one block: one small panel per image, every panel on the same axes,
    the first image repeated in grey beneath the others so each can be read against it."""
    names = list(series)
    rows = len(names)
    gap = 0.1 if rows > 1 else 0.0  # room for each panel's image name
    height = (1.0 - gap * (rows - 1)) / rows
    channels = np.asarray(channels)
    mode = "lines+markers" if len(channels) <= 64 else "lines"
    traces, layout_axes, notes = [], {}, []
    channel = text("plot.channel", lang)
    for i, name in enumerate(names):
        suffix = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (height + gap)
        if i > 0:  # the first image, faint, as the reference
            traces.append({"type": "scatter", "x": channels, "y": np.asarray(series[names[0]])[channels],
                           "mode": "lines", "line": {"color": MUTED, "width": 1}, "opacity": 0.6, "showlegend": False,
                           "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", "hoverinfo": "skip"})
        traces.append({"type": "scatter", "x": channels, "y": np.asarray(series[name])[channels], "name": name,
                       "mode": mode, "line": {"color": COLORS[i % len(COLORS)], "width": 1.5},
                       "marker": {"size": 5}, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                       "hovertemplate": f"{block.name}<br>{channel} %{{x}}<br>s = %{{y:.3f}}<extra>{name}</extra>"})
        layout_axes[f"xaxis{suffix}"] = _axis(text("plot.channel_index", lang) if i == rows - 1 else "",
                                              anchor=f"y{suffix}",
                                              **({} if i == 0 else {"matches": "x"}),
                                              showticklabels=i == rows - 1)
        layout_axes[f"yaxis{suffix}"] = _axis("s", domain=[max(0.0, top - height), top], range=[0, 1.05])
        notes.append({"text": f"<b>{name}</b>", "xref": "paper", "yref": f"y{suffix} domain", "x": 0, "y": 1.0,
                      "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                      "font": {"size": 13, "color": COLORS[i % len(COLORS)]}})
    shown = (text("plot.channels.all", lang, count=block.channels) if len(channels) == block.channels else
             text("plot.channels.some", lang, count=len(channels), total=block.channels))
    return PlotlyFigure(traces, _layout(text("plot.channels.title", lang, block=block.name, shown=shown),
                                        110 + 190 * rows,
                                        showlegend=False, annotations=notes, **layout_axes))


def depth_profile(profile: dict[str, np.ndarray], blocks: list[SEBlock], image_names: list[str],
                  lang: str = "en") -> PlotlyFigure:
    """Mean excitation per block for each image (translucent, so crossing lines stay visible), and how much
    the images differ per block below it."""
    names = [b.name for b in blocks]
    symbols = ["circle", "square", "diamond", "triangle-up"]
    traces = [
        {"type": "scatter", "x": names, "y": profile["mean"][i], "name": image_name, "mode": "lines+markers",
         "opacity": 0.75, "line": {"color": COLORS[i % len(COLORS)], "width": 2},
         "marker": {"symbol": symbols[i % len(symbols)], "size": 7},
         "customdata": profile["std"][i],
         "hovertemplate": f"%{{x}}<br>{text('plot.mean', lang)} %{{y:.3f}} ± %{{customdata:.3f}}<extra>"
                          + image_name + "</extra>"}
        for i, image_name in enumerate(image_names)
    ]
    if len(image_names) < 2:  # nothing to tell apart: one panel
        return PlotlyFigure(traces, _layout(text("plot.per_block.title", lang), 400,
            xaxis=_axis(text("plot.by_depth", lang), tickangle=-60),
            yaxis=_axis(text("plot.mean_s", lang), range=[0, 1.02])))
    traces.append({"type": "bar", "x": names, "y": profile["spread"], "name": text("plot.depth.difference", lang),
                   "marker": {"color": MUTED}, "xaxis": "x2", "yaxis": "y2",
                   "hovertemplate": f"%{{x}}<br>{text('plot.depth.rms', lang)} %{{y:.3f}}<extra></extra>"})
    # two stacked panels sharing the block axis (what make_subplots builds, at a fraction of its cost)
    layout = _layout(text("plot.depth.title", lang), 620,
        xaxis=_axis("", anchor="y", matches="x2", showticklabels=False),
        yaxis=_axis(text("plot.mean_s", lang), domain=[0.40, 1.0], range=[0, 1.02]),
        xaxis2=_axis(text("plot.by_depth", lang), anchor="y2", tickangle=-60),
        yaxis2=_axis(text("plot.depth.differ", lang), domain=[0.0, 0.30], rangemode="tozero"),
    )
    # the legend below the panels, where its rows never cover the title on a phone
    layout["legend"] = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0,
                        "bgcolor": "rgba(0,0,0,0)"}
    layout["margin"] = {"l": 10, "r": 10, "t": 60, "b": 100}
    return PlotlyFigure(traces, layout)


def figure6(means: dict[str, dict[str, np.ndarray]], blocks: list[SEBlock], sample: int | None,
            lang: str = "en") -> PlotlyFigure:
    """The paper's Figure 6: one panel per block, one line per category, the mean of all categories
    beneath them in grey; the paper's 50 evenly sampled channels, or all of them."""
    categories = [c for c in means if c != "all"]
    rows = len(blocks)
    gap = 0.3 / max(1, rows - 1) if rows > 1 else 0.0  # room for each panel's name and tick labels
    height = (1.0 - gap * (rows - 1)) / rows
    traces, axes, notes = [], {}, []
    channel, mean_s = text("plot.channel", lang), text("plot.mean_s", lang)
    for index, block in enumerate(blocks):
        suffix = "" if index == 0 else str(index + 1)
        channels = sampled_channels(block.channels, sample) if sample else np.arange(block.channels)
        lines = [("all", MUTED, 1.0, "dot")] + [(c, COLORS[i % len(COLORS)], 1.5, "solid")
                                                for i, c in enumerate(categories)]
        for category, color, width, dash in lines:  # "all" first: drawn beneath the categories
            traces.append({
                "type": "scatter", "x": channels, "y": np.asarray(means[category][block.name], np.float32)[channels],
                "name": text("plot.figure6.all", lang) if category == "all" else category, "legendgroup": category,
                "showlegend": index == 0, "mode": "lines", "opacity": 1.0 if category == "all" else 0.85,
                "line": {"color": color, "width": width, "dash": dash},
                "xaxis": f"x{suffix}", "yaxis": f"y{suffix}",
                "hovertemplate": f"{block.name}<br>{channel} %{{x}}<br>{mean_s} %{{y:.3f}}<extra>{category}</extra>"})
        top = 1.0 - index * (height + gap)
        axes[f"xaxis{suffix}"] = _axis(text("plot.channel_index", lang) if index == rows - 1 else "",
                                       anchor=f"y{suffix}")
        axes[f"yaxis{suffix}"] = _axis(mean_s, domain=[max(0.0, top - height), top], range=[0, 1.02])
        notes.append({"text": f"<b>{block.name}</b> (C = {block.channels})", "xref": "paper",
                      "yref": f"y{suffix} domain", "x": 0, "y": 1.0, "xanchor": "left", "yanchor": "bottom",
                      "showarrow": False, "font": {"size": 13}})
    # The title is the text above the plot; the legend goes below the panels, where it may take several rows
    # on a phone without covering anything.
    height = 120 + 230 * rows
    layout = _layout("", height, annotations=notes, showlegend=True, **axes)
    layout["legend"] = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0,
                        "bgcolor": "rgba(0,0,0,0)", "font": {"size": 12}}
    layout["margin"] = {"l": 10, "r": 10, "t": 30, "b": 110}
    return PlotlyFigure(traces, layout)


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


@lru_cache(maxsize=1)
def _magma_table() -> np.ndarray:
    """The magma colormap as 256 RGB rows, looked up by a uint8 image: black at 0, light at 1."""
    return np.uint8(colormaps["magma"](np.arange(256) / 255.0)[:, :3] * 255)
