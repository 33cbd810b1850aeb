"""Statistics behind the Explain tab's figures, the stored gallery excitations, the plots and the explain command."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import fixtures
import torch
from PIL import Image
from fixtures import one_torch_thread  # noqa: F401  autouse

from fixtures import REPO_ROOT
from senet_demo import excitation as ex
from senet_demo import plots
from senet_demo.se_blocks import SEBlock, find_se_blocks



def block(name: str, channels: int, reduced: int = 2, params: int = 0) -> SEBlock:
    _, stage, index = name.split("_")
    return SEBlock(name, f"layer{int(stage) - 1}.{int(index) - 1}.se", int(stage), int(index), channels, reduced, params)


def meta_blocks(arch: str) -> list[SEBlock]:
    import timm

    with torch.device("meta"):
        return find_se_blocks(timm.create_model(arch, pretrained=False))


# ---------------------------------------------------------------------------------------------- pure statistics


def test_sampled_channels_follow_the_paper():
    picked = ex.sampled_channels(2048)
    assert len(picked) == 50 and len(set(picked.tolist())) == 50
    assert picked[0] == 0 and picked[-1] == 2047
    assert (np.diff(picked) > 0).all()
    assert set(np.diff(picked).tolist()) <= {41, 42}  # evenly spread: 2047 / 49 = 41.8
    np.testing.assert_array_equal(ex.sampled_channels(40), np.arange(40))  # fewer than 50: all of them
    np.testing.assert_array_equal(ex.sampled_channels(256, 256), np.arange(256))


def test_depth_profile_spread_is_the_mean_pairwise_rms_distance():
    a, b = block("SE_2_1", 4), block("SE_3_1", 3)
    images = [
        {"SE_2_1": np.array([0.1, 0.2, 0.3, 0.4]), "SE_3_1": np.array([0.5, 0.5, 0.5])},
        {"SE_2_1": np.array([0.1, 0.2, 0.3, 0.8]), "SE_3_1": np.array([0.5, 0.5, 0.5])},
        {"SE_2_1": np.array([0.5, 0.2, 0.3, 0.4]), "SE_3_1": np.array([0.5, 0.5, 0.5])},
    ]
    profile = ex.depth_profile(images, [a, b])
    # RMS distances for SE_2_1: |1-2| = sqrt(0.4^2 / 4) = 0.2, |1-3| = 0.2, |2-3| = sqrt(2 * 0.4^2 / 4) = sqrt(0.08)
    np.testing.assert_allclose(profile["spread"], [(0.2 + 0.2 + math.sqrt(0.08)) / 3, 0.0], atol=1e-9)
    np.testing.assert_allclose(profile["mean"], [[0.25, 0.5], [0.35, 0.5], [0.35, 0.5]], atol=1e-9)
    # spread of [0.1, 0.2, 0.3, 0.4] around 0.25: deviations 0.15, 0.05, 0.05, 0.15
    assert profile["std"][0, 0] == pytest.approx(math.sqrt((0.15**2 * 2 + 0.05**2 * 2) / 4))
    assert profile["std"][0, 1] == pytest.approx(0.0)

    same = ex.depth_profile([images[0]] * 3, [a, b])
    np.testing.assert_array_equal(same["spread"], [0.0, 0.0])
    np.testing.assert_array_equal(ex.depth_profile(images[:1], [a, b])["spread"], [0.0, 0.0])


def test_figure6_blocks_of_seresnet50_are_those_of_the_paper():
    chosen = ex.figure6_blocks(meta_blocks("seresnet50"))
    assert [b.name for b in chosen] == ["SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3"]
    # RegNetY-200MF: depths 1, 1, 4, 7
    chosen = ex.figure6_blocks(meta_blocks("regnety_002"))
    assert [b.name for b in chosen] == ["SE_2_1", "SE_3_1", "SE_4_4"] + [f"SE_5_{i}" for i in range(1, 8)]
    assert ex.figure6_blocks([]) == []


def test_category_means_average_each_category_and_weigh_categories_equally():
    rng = np.random.default_rng(3)
    labels = ["b", "a", "b", "c", "b", "a"]
    sizes = {"SE_2_1": 4, "SE_3_1": 6}
    images = [{name: rng.uniform(0, 1, c) for name, c in sizes.items()} for _ in labels]
    means = ex.category_means(images, labels, ["SE_2_1", "SE_3_1"])
    assert set(means) == {"a", "b", "c", "all"}
    for name, channels in sizes.items():
        expected = {}
        for category in ("a", "b", "c"):
            total, count = [0.0] * channels, 0
            for image, label in zip(images, labels):
                if label == category:
                    count += 1
                    for ch in range(channels):
                        total[ch] += image[name][ch]
            expected[category] = [t / count for t in total]
            np.testing.assert_allclose(means[category][name], expected[category], atol=1e-12)
        overall = [(expected["a"][ch] + expected["b"][ch] + expected["c"][ch]) / 3 for ch in range(channels)]
        np.testing.assert_allclose(means["all"][name], overall, atol=1e-12)
        image_mean = np.mean([image[name] for image in images], axis=0)  # differs: categories are unbalanced
        assert np.abs(means["all"][name] - image_mean).max() > 1e-3
    only_one = ex.category_means(images, labels, ["SE_3_1"])
    assert set(only_one["a"]) == {"SE_3_1"}


def test_extreme_channels_are_the_true_maxima_and_minima():
    vector = np.array([0.3, 0.9, 0.1, 0.5, 0.95, 0.05, 0.6, 0.2])
    top, bottom = ex.extreme_channels(vector, 2)
    assert top.tolist() == [4, 1] and bottom.tolist() == [5, 2]
    top, bottom = ex.extreme_channels(vector, 3)
    assert top.tolist() == [4, 1, 6] and bottom.tolist() == [5, 2, 7]
    top, bottom = ex.extreme_channels(vector, 100)  # never more than half each, never overlapping
    assert len(top) == len(bottom) == 4 and not set(top) & set(bottom)

    v = np.random.default_rng(1).uniform(0, 1, 256)
    top, bottom = ex.extreme_channels(v, 5)
    rest = np.setdiff1d(np.arange(256), np.concatenate([top, bottom]))
    assert top[0] == int(np.argmax(v)) and bottom[0] == int(np.argmin(v))
    assert v[top].min() > v[rest].max() and v[bottom].max() < v[rest].min()
    assert (np.diff(v[top]) <= 0).all() and (np.diff(v[bottom]) >= 0).all()


def test_formula_text_uses_the_blocks_own_sizes():
    se_2_3 = next(b for b in meta_blocks("seresnet50") if b.name == "SE_2_3")
    text = ex.formula_text(se_2_3)
    for part in ("**SE_2_3**", "`layer1.2.se`", "C = 256", "r = 16", "256 → 16 → 256", "8,464 parameters",
                 "\\mathbb{R}^{16\\times256}", "\\mathbb{R}^{256\\times16}"):
        assert part in text, part


# ---------------------------------------------------------------------------------------------- plots carry the data


def test_excitation_map_sorts_each_blocks_channels_on_its_own_axis_and_one_colour_scale():
    blocks = [block("SE_2_1", 4), block("SE_2_2", 4), block("SE_3_1", 6), block("SE_4_1", 3)]
    rng = np.random.default_rng(3)
    vectors = {b.name: rng.uniform(0, 1, b.channels) for b in blocks}
    vectors["SE_5_1"] = np.array([0.5])  # a block not asked for is not drawn
    fig = plots.excitation_map(vectors, blocks, "t").validated()
    assert [t.name for t in fig.data] == [b.name for b in blocks]
    for row, (trace, b) in enumerate(zip(fig.data, blocks)):
        z, channels = np.asarray(trace.z, dtype=float)[0], np.asarray(trace.customdata)[0].astype(int)
        assert z.shape == (b.channels,)  # not padded to the widest block
        assert sorted(channels) == list(range(b.channels))
        np.testing.assert_allclose(z, np.sort(vectors[b.name].astype(np.float32))[::-1])  # most excited first
        np.testing.assert_allclose(z, vectors[b.name][channels].astype(np.float32))  # each cell names its channel
        x = np.asarray(trace.x, dtype=float)
        assert 0 < x[0] and x[-1] < 1  # every block spans the same width, whatever its C
        assert list(trace.y) == [row] and trace.coloraxis == "coloraxis"
        assert f"block {b.name}<br>channel %{{customdata}}" in trace.hovertemplate
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 1.0)
    assert list(fig.layout.yaxis.ticktext) == [b.name for b in blocks] and list(fig.layout.yaxis.tickvals) == [0, 1, 2, 3]
    assert fig.layout.yaxis.autorange == "reversed"  # the first block on top
    assert fig.layout.height >= 20 * len(blocks)  # rows tall enough to read


def test_the_summary_gives_each_blocks_mean_and_quartiles():
    blocks = [block("SE_2_1", 4), block("SE_3_1", 8)]
    vectors = {"SE_2_1": np.array([0.1, 0.2, 0.3, 0.9]), "SE_3_1": np.linspace(0, 1, 8)}
    fig = plots.excitation_summary(vectors, blocks).validated()
    mean = next(t for t in fig.data if t.name == "mean s")
    np.testing.assert_allclose(mean.y, [0.375, 0.5], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mean.customdata)[:, 0], [np.percentile(v, 25) for v in vectors.values()],
                               rtol=1e-6)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text


def test_figure6_plot_shows_each_category_mean_on_the_sampled_channels_with_the_mean_beneath():
    big, small = block("SE_5_3", 2048), block("SE_4_6", 30)
    rng = np.random.default_rng(0)
    means = {c: {"SE_5_3": rng.uniform(0, 1, 2048), "SE_4_6": rng.uniform(0, 1, 30)} for c in ("x", "y", "all")}
    fig = plots.figure6(means, [small, big], 50).validated()
    traces = {(t.xaxis, t.name): t for t in fig.data}
    assert len(fig.data) == 2 * 3
    for axis, b in (("x", small), ("x2", big)):
        channels = ex.sampled_channels(b.channels)
        for category, name in (("x", "x"), ("y", "y"), ("all", "all categories")):
            trace = traces[(axis, name)]
            np.testing.assert_array_equal(np.asarray(trace.x), channels)
            np.testing.assert_allclose(np.asarray(trace.y), means[category][b.name][channels], rtol=1e-6)
    first = fig.data[0]
    assert first.name == "all categories" and first.line.width <= 1.0  # thin, and drawn first: beneath
    assert all(t.line.width > first.line.width for t in fig.data if t.name != "all categories")
    assert fig.layout.xaxis2.title.text == "channel index" and fig.layout.yaxis.title.text == "mean s"  # bottom panel
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0  # below the panels, covering nothing
    full = plots.figure6(means, [big], None)
    assert len(full.data[0]["x"]) == 2048


def test_comparison_gives_each_image_its_own_panel():
    b = block("SE_3_1", 6)
    vectors = {"one": np.linspace(0, 1, 6), "two": np.linspace(1, 0, 6), "three": np.full(6, 0.5)}
    fig = plots.channel_plot(vectors, b, np.array([0, 2, 5])).validated()
    own = [t for t in fig.data if t.name in vectors]
    assert [t.name for t in own] == list(vectors)
    assert len({t.yaxis for t in own}) == 3  # one panel each: no image hides another
    np.testing.assert_allclose(np.asarray(own[1].y), vectors["two"][[0, 2, 5]])
    domains = [fig.layout[f"yaxis{'' if i == 0 else i + 1}"].domain for i in range(3)]
    assert all(upper[0] > lower[1] for upper, lower in zip(domains, domains[1:]))  # stacked, not overlapping
    profile = ex.depth_profile([{"SE_3_1": v} for v in vectors.values()], [b])
    fig = plots.depth_profile(profile, [b], list(vectors)).validated()
    np.testing.assert_allclose(np.asarray(fig.data[-1].y), profile["spread"])
    np.testing.assert_allclose(np.asarray(fig.data[0].y), [0.5])
    assert all(t.opacity < 1 for t in fig.data[:-1])  # translucent lines: crossing images stay visible
    assert fig.data[-1].yaxis == "y2" and fig.layout.yaxis2.domain[1] < fig.layout.yaxis.domain[0]  # its own panel
    assert fig.layout.xaxis.matches == "x2"  # one block axis for both panels


def _explain_figures():
    b = block("SE_3_1", 6)
    vectors = {"one": np.linspace(0, 1, 6), "two": np.linspace(1, 0, 6).astype(np.float32)}
    means = {c: {"SE_3_1": np.linspace(0, 1, 6)} for c in ("x", "all")}
    return [plots.excitation_map({"SE_3_1": vectors["one"], "SE_3_2": np.ones(4)}, [b, block("SE_3_2", 4)], "t"),
            plots.excitation_summary({"SE_3_1": vectors["one"]}, [b]),
            plots.se_steps(np.linspace(-1, 1, 6), np.linspace(0, 2, 3), vectors["one"], b, [5, 0]),
            plots.channel_plot(vectors, b, np.arange(6)),
            plots.channel_plot({"wide": np.linspace(0, 1, 2048)}, block("SE_5_1", 2048), np.arange(0, 2048, 7)),
            plots.depth_profile(ex.depth_profile([{"SE_3_1": v} for v in vectors.values()], [b]), [b], list(vectors)),
            plots.figure6(means, [b], 50)]


def test_the_explain_figures_are_valid_plotly_although_built_as_plain_dicts():
    """The builders skip plotly's validation for speed; validating their figures here catches a wrong
    property name or value, as building them validated would."""
    for fig in _explain_figures():
        validated = fig.validated()  # raises on anything plotly does not know
        assert len(validated.data) == len(fig.data) and validated.layout.title.text == fig.layout["title"]["text"]
    with pytest.raises(ValueError):
        plots.PlotlyFigure([{"type": "heatmap", "zz": [[1.0]]}], {}).validated()  # what the check above catches


def test_the_explain_figures_send_what_plotly_would_send():
    """``to_json`` (what gr.Plot sends) gives the JSON of plotly's own figure: the same typed arrays (int64
    channels shrunk as plotly shrinks them, float32 and float64 kept), and the default template."""
    import plotly.graph_objects as go

    for fig in _explain_figures():
        assert json.loads(fig.to_json()) == json.loads(go.Figure(fig.to_plotly_json(), _validate=False).to_json())
    two_d = json.loads(_explain_figures()[0].to_json())["data"][0]["z"]
    assert two_d["dtype"] == "f4" and two_d["shape"] == "1, 6"  # a typed array, not a list of numbers


def test_a_figure_of_odd_values_sends_what_plotly_would_send():
    """Values the Explain figures may come to hold: not-a-number, numpy numbers, arrays plotly sends as lists
    (in a list, under "range", of a type plotly.js has no typed array for, too large to shrink, empty), and a
    visitor's image name with markup."""
    import plotly.graph_objects as go

    traces = [{"type": "scatter", "name": "</script><b>x.png", "x": np.array([0, 2**40, 3]),
               "y": [float("nan"), np.float32(0.5), float("inf")], "customdata": [np.arange(3), np.ones(2)],
               "text": np.array(["a", "b"]), "ids": np.array([], np.int64), "selectedpoints": np.array([True, False])}]
    fig = plots.PlotlyFigure(traces, {"xaxis": {"range": np.array([0.0, 1.0])}})
    sent = fig.to_json()
    assert json.loads(sent) == json.loads(go.Figure(fig.to_plotly_json(), _validate=False).to_json())
    assert "NaN" not in sent and "Infinity" not in sent and "<" not in sent  # JSON.parse reads it; no markup
    swapped = plots.PlotlyFigure([{"type": "scatter", "y": np.array([1.5, 2.5], dtype=">f8")}], {})
    assert json.loads(swapped.to_json())["data"][0]["y"] == [1.5, 2.5]  # plotly itself refuses this byte order


@pytest.mark.parametrize("template", ["plotly_white", None])
def test_a_figure_writes_out_its_template_as_plotly_would(template):
    """A template named in the layout, or none (plotly's default then), is sent in full, as plotly's own
    figure sends it: plotly.js reads no template by name."""
    import plotly.graph_objects as go

    fig = plots.PlotlyFigure([{"type": "bar", "y": [1, 2]}], {"template": template})
    assert json.loads(fig.to_json()) == json.loads(go.Figure(fig.to_plotly_json()).to_json())


def test_scale_pictures_share_one_colour_scale_so_a_shut_channel_fades():
    """In pixel values: a channel with s < 0.05 renders darker after scaling than before, one with s > 0.95
    almost unchanged, and the left half of each picture is the map as it was."""
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(3, 7, 7)).astype(np.float32)  # negative values too: brightness is |u|
    gates = np.array([0.02, 0.97, 0.5], np.float32)
    size, gap, band = 56, 8, 20
    pictures = plots.scale_pairs(maps, gates, size=size, gap=gap, band=band)
    assert all(p.size == (2 * size + gap, size + band) for p in pictures)
    halves = [(np.asarray(p, float)[:size, :size], np.asarray(p, float)[:size, size + gap:]) for p in pictures]
    (shut_before, shut_after), (open_before, open_after), (half_before, half_after) = halves
    assert shut_after.mean() < 0.25 * shut_before.mean()  # s = 0.02: nearly black
    assert np.abs(open_after - open_before).mean() < 8  # s = 0.97: within a few grey levels
    assert shut_after.mean() < half_after.mean() < open_after.mean()
    brightest = np.unravel_index(np.argmax(np.abs(maps[0])), maps[0].shape)
    cell = shut_before[brightest[0] * size // 7 + 1, brightest[1] * size // 7 + 1]
    np.testing.assert_allclose(cell, np.asarray(plots._magma_table()[255], float), atol=1)  # the map's own peak is the top colour


# ---------------------------------------------------------------------------------------------- through the app


def _services(spec: str, root: Path, **kwargs):
    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    return Services.create(AppConfig.from_specs([spec], offline=True, weights_dir=root / "weights",
                                                feature_cache_dir=root / "features", **kwargs))


def test_feature_store_keeps_the_figure6_excitations_of_each_image(tmp_path):
    from senet_demo.engine import Engine
    from senet_demo.gallery import FeatureStore, scan
    from senet_demo.images import load_image

    spec, _ = fixtures.exported("regnety")  # several blocks per stage, so Figure 6 keeps only some of them
    services = _services(spec, tmp_path)
    items = scan(fixtures.make_gallery(tmp_path / "gallery", {label: 3 for label in ("alpha", "beta")}))
    assert [i.label for i in items] == ["alpha"] * 3 + ["beta"] * 3
    engine = services.engine
    store = FeatureStore(engine, tmp_path / "cache")
    outputs = store.outputs(spec, items)
    assert len(outputs) == len(items)

    kept = ["SE_2_1", "SE_3_1", "SE_4_4"] + [f"SE_5_{i}" for i in range(1, 8)]
    singles = [engine.run(spec, load_image(item.path)) for item in items]
    for item, stored, single in zip(items, outputs, singles):
        assert sorted(stored.excitations) == sorted(kept), item.id
        for name in kept:
            np.testing.assert_allclose(stored.excitations[name], single.excitations[name], atol=1e-5, err_msg=name)
    # the images really differ, so a mix-up of images would show
    assert np.abs(singles[0].excitations["SE_5_7"] - singles[3].excitations["SE_5_7"]).max() > 1e-3

    # Figure-6 data from the store: each category's mean of its own images' single-image excitations
    means = ex.category_means([o.excitations for o in outputs], [i.label for i in items], kept)
    for label, members in (("alpha", singles[:3]), ("beta", singles[3:])):
        for name in kept:
            np.testing.assert_allclose(means[label][name], sum(s.excitations[name] for s in members) / 3, atol=1e-5)

    # a restart reads the stored excitations back and runs nothing
    fresh = Engine(services.registry)
    again = FeatureStore(fresh, tmp_path / "cache").outputs(spec, items)
    assert fresh.forward_passes == 0
    for first, second in zip(outputs, again):
        for name in kept:
            np.testing.assert_array_equal(first.excitations[name], second.excitations[name])


def _explain_cli(spec: str, image: Path, weights_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "senet_demo", "explain", "--offline", "--weights-dir", str(weights_dir),
         "--model", spec, "--json", str(image)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # a tiny model: threads only add start-up and spin time
    )


def test_explain_command_prints_every_block_with_its_squeeze_and_excitation(tmp_path):
    from senet_demo.images import load_image

    spec, _ = fixtures.exported("resnet-semodule")
    image = tmp_path / "photo.png"
    fixtures.picture(21, (64, 64)).save(image)
    result = _explain_cli(spec, image, tmp_path / "weights")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)

    reference = fixtures.shared("resnet-semodule")
    modules = fixtures.se_modules(reference)
    expected = _services(spec, tmp_path).engine.run(spec, load_image(image))
    assert report["model"] == spec
    rows = report["blocks"]
    assert [r["name"] for r in rows] == ["SE_2_1", "SE_3_1", "SE_4_1", "SE_5_1"]
    assert [r["path"] for r in rows] == list(modules)
    for row in rows:
        weight = modules[row["path"]].fc1.weight  # (C/r, C, 1, 1)
        assert row["channels"] == weight.shape[1]
        assert row["reduction"] == pytest.approx(weight.shape[1] / weight.shape[0])
        np.testing.assert_allclose(row["excitation"], expected.excitations[row["name"]], atol=1e-5)
        # the step values beside the gates: z (C floats) and the bottleneck (C/r floats)
        assert len(row["squeeze"]) == row["channels"] and len(row["bottleneck"]) == weight.shape[0]
        np.testing.assert_allclose(row["squeeze"], expected.squeezes[row["name"]], atol=1e-5)
        np.testing.assert_allclose(row["bottleneck"], expected.bottlenecks[row["name"]], atol=1e-5)
    assert rows[0]["channels"] == 256 and rows[0]["reduction"] == 16


def test_explain_command_refuses_a_model_without_se(tmp_path):
    spec, _ = fixtures.exported_plain("resnet50d")
    image = tmp_path / "photo.png"
    fixtures.picture(22, (64, 64)).save(image)
    result = _explain_cli(spec, image, tmp_path / "weights")
    assert result.returncode != 0
    assert "no Squeeze-and-Excitation blocks" in result.stderr
    assert result.stdout.strip() == ""
