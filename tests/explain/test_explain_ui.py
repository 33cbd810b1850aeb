"""The Explain tab through a running Gradio server and gradio_client: /explain, /ablate and /figure6.

The app serves a tiny ResNet-D without SE and a tiny random SE-ResNet-50 (one block per stage, so its SE
blocks are SE_2_1, SE_3_1, SE_4_1 and SE_5_1), and a tmp gallery of two labels with three pictures each,
plus one file that is not an image. Every answer is checked against the app's own Engine.
"""
from __future__ import annotations

import base64
import json
import re
from contextlib import contextmanager

import numpy as np
import pytest
import fixtures
from fixtures import free_port
from fixtures import one_torch_thread  # noqa: F401  autouse

pytest.importorskip("gradio_client")

SE_BLOCKS = ["SE_2_1", "SE_3_1", "SE_4_1", "SE_5_1"]



@contextmanager
def _served(root, models, explain_models, gallery):
    """The app over these SPECs, on a free local port: (services, client); closed afterwards."""
    from gradio_client import Client

    from senet_demo.config import AppConfig
    from senet_demo.services import Services
    from senet_demo.ui import allowed_paths, build_demo

    services = Services.create(AppConfig.from_specs(
        models, explain_models, offline=True, weights_dir=root / "weights", gallery_dir=gallery,
        feature_cache_dir=root / "features"))
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                allowed_paths=allowed_paths(services), quiet=True)
    try:
        yield services, Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain-ui")
    gallery = fixtures.make_gallery(root / "gallery", {label: 3 for label in ("alpha", "beta")})
    (gallery / "alpha" / "zz_broken.png").write_bytes(b"this is not an image")  # sorts after alpha's pictures
    se_spec, _ = fixtures.exported("resnet-semodule")
    plain_spec, _ = fixtures.exported_plain("resnet50d")
    with _served(root, [plain_spec, se_spec], None, gallery) as (services, client):
        query = root / "query.png"
        fixtures.picture(5, (64, 64)).save(query)
        yield {"services": services, "client": client, "se": se_spec, "plain": plain_spec, "query": query,
               "gallery": gallery}


def _image(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def _figure(payload) -> dict:
    assert isinstance(payload, dict) and payload.get("type") == "plotly", payload
    return json.loads(payload["plot"])


def _array(value) -> np.ndarray:
    """Plotly JSON arrays: plain lists, or {"dtype", "bdata", "shape"} typed arrays."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            array = array.reshape([int(n) for n in str(shape).split(",")] if isinstance(shape, str) else shape)
        return array.astype(float)
    return np.array(value, dtype=float)


VIEWS = ("steps_text", "steps_plot", "scale_text", "pictures", "map_text", "map_plot", "summary_plot",
         "compare_text", "channel_plot", "depth_plot")  # what /explain returns, in order


def _explain(client, **kwargs) -> dict:
    return dict(zip(VIEWS, client.predict(api_name="/explain", **kwargs), strict=True))


def _heatmap_rows(figure: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Block name -> (its row of the excitation map, the channel of each cell): one single-row heatmap per
    block, as wide as the block, its channels sorted by s."""
    rows = {}
    for trace in figure["data"]:
        assert trace["type"] == "heatmap" and trace["coloraxis"] == "coloraxis"
        z = _array(trace["z"])
        assert z.ndim == 2 and z.shape[0] == 1, z.shape
        rows[trace["name"]] = z[0], _array(trace["customdata"])[0].astype(int)
    return rows


def _assert_map_shows(figure: dict, excitations: dict, names: list[str]) -> None:
    rows = _heatmap_rows(figure)
    assert list(rows) == names
    for name in names:
        values, channels = rows[name]
        assert sorted(channels.tolist()) == list(range(len(excitations[name])))  # every channel, once
        np.testing.assert_allclose(values, excitations[name][channels], atol=1e-4, err_msg=name)
        assert np.all(np.diff(values) <= 1e-6), f"{name}: sorted from the most to the least excited"


def _reference(app):
    from senet_demo.images import load_image

    return app["services"].engine.run(app["se"], load_image(app["query"]))


def test_explain_with_just_an_image_shows_the_default_block_step_by_step(app):
    from senet_demo.excitation import sampled_channels

    views = _explain(app["client"], image=_image(app["query"]))
    reference = _reference(app)
    # default: the last block of the second-to-last stage, SE_4_1 = layer3.0.se with C = 1024, C/r = 64
    text = views["steps_text"]
    assert "**SE_4_1**" in text and "`layer3.0.se`" in text and "1024 channels of" in text and "C/r = 64" in text
    block = next(b for b in app["services"].registry.se_blocks(app["se"]) if b.name == "SE_4_1")
    assert f"Its {block.params:,} parameters" in text and f"all {len(SE_BLOCKS)} SE blocks" in text

    # the squeeze, bottleneck and excitation plotted are the forward pass's own
    steps = {t["name"]: t for t in _figure(views["steps_plot"])["data"]}
    np.testing.assert_allclose(_array(steps["z"]["y"]), reference.squeezes["SE_4_1"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_array(steps["bottleneck"]["y"]), reference.bottlenecks["SE_4_1"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_array(steps["s"]["y"]), reference.excitations["SE_4_1"], atol=1e-5)
    assert len(_array(steps["bottleneck"]["y"])) == 64

    _assert_map_shows(_figure(views["map_plot"]), reference.excitations, SE_BLOCKS)
    summary = {t.get("name"): t for t in _figure(views["summary_plot"])["data"]}
    np.testing.assert_allclose(_array(summary["mean s"]["y"]), [reference.excitations[n].mean() for n in SE_BLOCKS],
                               atol=1e-5)

    lines = _figure(views["channel_plot"])["data"]
    assert [t["name"] for t in lines] == ["your image"]
    channels = sampled_channels(1024)  # the paper's 50 evenly sampled channels by default
    np.testing.assert_array_equal(_array(lines[0]["x"]), channels)
    np.testing.assert_allclose(_array(lines[0]["y"]), reference.excitations["SE_4_1"][channels], atol=1e-4)
    depth = _figure(views["depth_plot"])["data"]
    np.testing.assert_allclose(_array(depth[0]["y"]), [reference.excitations[n].mean() for n in SE_BLOCKS], atol=1e-4)

    # two most and two least excited channels of SE_4_1, before and after scaling, with their own s
    vector = reference.excitations["SE_4_1"]
    captions = [picture["caption"] for picture in views["pictures"]]
    channels = [int(re.match(r"ch (\d+) ", c).group(1)) for c in captions]
    order = np.argsort(-vector)
    assert channels == [*order[:2].tolist(), *order[::-1][:2].tolist()]
    for channel, caption in zip(channels, captions):
        assert f"s = {vector[channel]:.2f}" in caption
    assert f"{channels[0]} (s = {vector[channels[0]]:.2f})" in views["scale_text"]


def test_explain_for_a_model_without_se_says_why(app):
    views = _explain(app["client"], image=_image(app["query"]), model=app["plain"])
    label = app["services"].registry.specs[app["plain"]].label
    assert "has no Squeeze-and-Excitation blocks" in views["steps_text"] and label in views["steps_text"]
    assert "resnet152d" not in views["steps_text"]  # it speaks of the models this app serves
    assert all(views[name] in (None, [], "") for name in VIEWS[1:])


def test_ablate_with_just_an_image_shows_before_after_and_the_change(app):
    before, after, text = app["client"].predict(_image(app["query"]), api_name="/ablate")
    services, spec = app["services"], app["se"]
    from senet_demo.images import load_image

    image = load_image(app["query"])
    labels = services.registry.get(spec).labels
    normal = services.engine.run(spec, image)
    ablated = services.engine.run_ablated(spec, image, services.registry.se_blocks(spec))  # "all SE blocks"
    top1 = int(normal.probs.argmax())
    assert before["label"] == labels[top1]
    assert after["label"] == labels[int(ablated.probs.argmax())]
    for shown, probs in ((before, normal.probs), (after, ablated.probs)):
        for entry in shown["confidences"]:
            assert entry["confidence"] == pytest.approx(float(probs[labels.index(entry["label"])]), abs=1e-5)
    delta = ablated.probs[top1] - normal.probs[top1]
    assert abs(delta) > 1e-3, "switching every SE block off must move the prediction"
    assert "**all SE blocks**" in text
    assert f"p({labels[top1]}) goes from {normal.probs[top1]:.3f} to {ablated.probs[top1]:.3f}" in text
    assert f"**{delta:+.3f}**" in text


def test_figure6_plots_each_categorys_mean_excitation(app):
    """alpha also holds a file that is not an image: it is skipped, and must not shift the labels of the
    images after it (beta's first picture counted as alpha's)."""
    from senet_demo.images import load_image

    text, payload = app["client"].predict(sample50=False, api_name="/figure6")
    figure = _figure(payload)
    services, spec = app["services"], app["se"]
    singles = {label: [services.engine.run(spec, load_image(p)) for p in sorted((app["gallery"] / label).glob("*_[0-9].jpg"))]
               for label in ("alpha", "beta")}
    assert [len(v) for v in singles.values()] == [3, 3]
    expected = {label: {n: np.mean([o.excitations[n] for o in outs], axis=0) for n in SE_BLOCKS}
                for label, outs in singles.items()}
    expected["all categories"] = {n: (expected["alpha"][n] + expected["beta"][n]) / 2 for n in SE_BLOCKS}

    titles = [re.match(r"<b>(\w+)</b>", a["text"]).group(1) for a in figure["layout"]["annotations"]]
    assert titles == SE_BLOCKS  # the Figure-6 blocks: last of every stage, all of the last (one each here)
    axes = {("x" if i == 0 else f"x{i + 1}"): name for i, name in enumerate(SE_BLOCKS)}
    seen = set()
    for trace in figure["data"]:
        name = axes[trace["xaxis"]]
        np.testing.assert_allclose(_array(trace["y"]), expected[trace["name"]][name], atol=1e-4,
                                   err_msg=f"{trace['name']} {name}")
        seen.add((trace["name"], name))
    assert seen == {(c, n) for c in ("alpha", "beta", "all categories") for n in SE_BLOCKS}
    assert figure["data"][0]["name"] == "all categories"  # drawn first: beneath the categories' lines
    assert "2 gallery categories" in text


def test_figure6_starts_with_the_papers_50_sampled_channels(app):
    from senet_demo.excitation import sampled_channels

    _text, payload = app["client"].predict(api_name="/figure6")
    figure = _figure(payload)
    blocks = {b.name: b for b in app["services"].registry.se_blocks(app["se"])}
    for trace in figure["data"]:
        block = blocks[SE_BLOCKS[int(trace["xaxis"][1:] or 1) - 1]]
        np.testing.assert_array_equal(_array(trace["x"]), sampled_channels(block.channels))
        assert len(_array(trace["x"])) == min(50, block.channels)
    layout = figure["layout"]
    last = f"xaxis{len(SE_BLOCKS)}"
    assert layout[last]["title"]["text"] == "channel index" and layout["yaxis"]["title"]["text"] == "mean s"


def test_block_and_stage_choices_of_the_tab():
    import timm
    import torch

    from senet_demo.se_blocks import find_se_blocks
    from senet_demo.ui.explain_tab import ablation_choices, blocks_to_disable, default_block

    with torch.device("meta"):
        blocks = find_se_blocks(timm.create_model("seresnet50", pretrained=False))
    assert default_block(blocks) == "SE_4_6"  # last block of the second-to-last stage
    assert default_block([b for b in blocks if b.stage == 2]) == "SE_2_3"
    assert default_block([]) is None
    names = [b.name for b in blocks]
    assert ablation_choices(blocks) == ["all SE blocks", "stage 2", "stage 3", "stage 4", "stage 5", *names]
    assert [b.name for b in blocks_to_disable(blocks, "stage 3")] == ["SE_3_1", "SE_3_2", "SE_3_3", "SE_3_4"]
    assert [b.name for b in blocks_to_disable(blocks, "SE_5_2")] == ["SE_5_2"]
    assert blocks_to_disable(blocks, "all SE blocks") == blocks
    with pytest.raises(ValueError, match="SE_9_9"):
        blocks_to_disable(blocks, "SE_9_9")


@pytest.fixture(scope="module")
def other_families_app(tmp_path_factory):
    """The same tab with three more SE families as extra Explain models (--explain-model)."""
    root = tmp_path_factory.mktemp("explain-families")
    gallery = fixtures.make_gallery(root / "gallery", {label: 2 for label in ("alpha", "beta")})
    plain_spec, _ = fixtures.exported_plain("resnet50d")
    specs = {family: fixtures.exported(family)[0] for family in ("legacy-senet", "efficientnet", "regnety")}
    with _served(root, [plain_spec], list(specs.values()), gallery) as (services, client):
        query = root / "query.png"
        fixtures.picture(7, (64, 64)).save(query)
        yield {"services": services, "client": client, "specs": specs, "query": query}


@pytest.mark.parametrize("family", ["legacy-senet", "efficientnet", "regnety"])
def test_all_six_views_work_for_other_se_families(other_families_app, family):
    from senet_demo.excitation import figure6_blocks
    from senet_demo.images import load_image
    from senet_demo.ui.explain_tab import default_block

    app = other_families_app
    spec, client, services = app["specs"][family], app["client"], app["services"]
    reference = services.engine.run(spec, load_image(app["query"]))
    blocks = services.registry.se_blocks(spec)
    chosen = default_block(blocks)

    views = _explain(client, image=_image(app["query"]), model=spec, sample50=False)
    assert f"**{chosen}**" in views["steps_text"] and f"all {len(blocks)} SE blocks" in views["steps_text"]
    _assert_map_shows(_figure(views["map_plot"]), reference.excitations, [b.name for b in blocks])
    np.testing.assert_allclose(_array(_figure(views["channel_plot"])["data"][0]["y"]), reference.excitations[chosen],
                               atol=1e-4)
    np.testing.assert_allclose(_array(_figure(views["depth_plot"])["data"][0]["y"]),
                               [reference.excitations[b.name].mean() for b in blocks], atol=1e-4)
    steps = {t["name"]: t for t in _figure(views["steps_plot"])["data"]}
    np.testing.assert_allclose(_array(steps["z"]["y"]), reference.squeezes[chosen], rtol=1e-4, atol=1e-5)
    top_channel = int(np.argmax(reference.excitations[chosen]))
    assert views["pictures"] and views["pictures"][0]["caption"].startswith(f"ch {top_channel} ")

    _text, payload = client.predict(model=spec, sample50=False, api_name="/figure6")
    titles = [re.match(r"<b>(\w+)</b>", a["text"]).group(1) for a in _figure(payload)["layout"]["annotations"]]
    assert titles == [b.name for b in figure6_blocks(blocks)]

    before, after, ablation_text = client.predict(image=_image(app["query"]), model=spec, choice="all SE blocks",
                                                  api_name="/ablate")
    ablated = services.engine.run_ablated(spec, load_image(app["query"]), blocks)
    labels = services.registry.get(spec).labels
    assert before["label"] == labels[int(reference.probs.argmax())]
    assert after["label"] == labels[int(ablated.probs.argmax())]
    assert "goes from" in ablation_text


def test_a_block_of_any_explain_model_can_be_asked_for_by_name(other_families_app):
    """The block lists show the default model's blocks until a visitor picks another model; the handlers check a
    block's name against the model asked for, so the API can name any model's blocks without that step."""
    from gradio_client.exceptions import AppError

    app = other_families_app
    client, services = app["client"], app["services"]
    shown = {b.name for b in services.registry.se_blocks(app["specs"]["legacy-senet"])}  # the first SE model's
    spec = app["specs"]["efficientnet"]
    first = next(b.name for b in services.registry.se_blocks(spec) if b.name not in shown)
    views = _explain(client, image=_image(app["query"]), model=spec, block_name=first)
    assert f"**{first}**" in views["steps_text"]
    _, _, ablation_text = client.predict(image=_image(app["query"]), model=spec, choice=first, api_name="/ablate")
    assert f"Switching off **{first}**" in ablation_text
    unseen = app["query"].with_name("unseen.png")
    fixtures.picture(11, (64, 64)).save(unseen)
    passes = services.engine.forward_passes
    with pytest.raises(AppError, match="has no SE block 'SE_9_9'"):  # the handler's message, not a choices check
        client.predict(image=_image(unseen), model=spec, block_name="SE_9_9", api_name="/explain")
    with pytest.raises(AppError, match="No SE block or stage called 'stage 9'"):
        client.predict(image=_image(unseen), model=spec, choice="stage 9", api_name="/ablate")
    with pytest.raises(AppError, match="has no SE block 'x{40}…'"):  # a long value is cut in the message
        client.predict(image=_image(unseen), model=spec, block_name="x" * 5000, api_name="/explain")
    assert services.engine.forward_passes == passes  # refused before any forward ran on the new picture
