"""The shared forward pass: outputs, SE excitations, hook hygiene and the result cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures import encode, picture
from senet_demo.engine import Engine
from senet_demo.storage import LRUCache
from senet_demo.ensemble import tta_batch
from senet_demo.images import load_image
from senet_demo.se_blocks import hook_count


def reference_probs(loaded, image, tta="none") -> np.ndarray:
    """Softmax of the plain ``model(x)`` forward, averaged over the TTA views."""
    with torch.no_grad():
        return loaded.model(tta_batch(loaded.transform, image, tta)).softmax(-1).mean(0).numpy()


# ---------------------------------------------------------------- outputs


@pytest.mark.parametrize("tta, views", [("none", 1), ("flip", 2), ("tencrop", 10)])
def test_outputs_match_the_plain_forward(engine, tiny_registry, resnet_name, senet_name, photo, tta, views):
    for name in (resnet_name, senet_name):
        loaded = tiny_registry.get(name)
        outputs = engine.run(name, photo, tta)
        assert outputs.model == name and outputs.views == views
        assert outputs.probs.shape == (loaded.num_classes,)
        assert outputs.probs.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(outputs.probs, reference_probs(loaded, photo, tta), atol=1e-6)
        assert outputs.embedding.shape == (loaded.model.num_features,)
        assert outputs.latency_ms > 0


def test_log_probs_are_of_the_mean_logits(engine, tiny_registry, senet_name, photo):
    loaded = tiny_registry.get(senet_name)
    outputs = engine.run(senet_name, photo, "flip")
    with torch.no_grad():
        logits = loaded.model(tta_batch(loaded.transform, photo, "flip"))
    np.testing.assert_allclose(outputs.log_probs, logits.mean(0).log_softmax(-1).numpy(), atol=1e-5)
    assert np.exp(outputs.log_probs).sum() == pytest.approx(1.0, abs=1e-5)


def test_excitations_of_the_se_model(engine, tiny_senet, senet_name, photo):
    blocks = engine.registry.se_blocks(senet_name)
    assert len(blocks) == sum(tiny_senet.layers)  # one SE module per bottleneck block
    outputs = engine.run(senet_name, photo)
    assert set(outputs.excitations) == {b.name for b in blocks}
    for block in blocks:
        vector = outputs.excitations[block.name]
        assert vector.shape == (block.channels,)
        assert np.all((vector > 0) & (vector < 1))  # sigmoid gates
    # Stage widths of a ResNeXt-D: 256, 512, 1024, 2048 channels, each doubling the last.
    channels = [b.channels for b in blocks]
    assert channels == [channels[0] * 2**i for i in range(4)]


def test_excitations_are_the_mean_over_views(engine, tiny_registry, senet_name, photo):
    """Independently hook each SE module's sigmoid gate and average its output over the TTA views."""
    loaded = tiny_registry.get(senet_name)
    captured = {}
    handles = [
        loaded.model.get_submodule(block.path).gate.register_forward_hook(
            lambda module, inputs, output, name=block.name: captured.__setitem__(name, output.flatten(1)))
        for block in engine.registry.se_blocks(senet_name)
    ]
    try:
        with torch.no_grad():
            loaded.model(tta_batch(loaded.transform, photo, "tencrop"))
    finally:
        for handle in handles:
            handle.remove()
    outputs = engine.run(senet_name, photo, "tencrop")
    assert set(outputs.excitations) == set(captured)
    for name, per_view in captured.items():
        assert per_view.shape[0] == 10
        np.testing.assert_allclose(outputs.excitations[name], per_view.mean(0).numpy(), atol=1e-6)


def test_resnet_d_has_no_excitations(engine, resnet_name, photo):
    assert engine.registry.se_blocks(resnet_name) == []
    assert engine.run(resnet_name, photo).excitations == {}


def test_run_batch_matches_single_runs(engine, resnet_name, senet_name):
    images = [picture(s, (146, 110)) for s in (1, 2, 3)]
    for name in (resnet_name, senet_name):
        batch = engine.run_batch(name, images)
        assert len(batch) == 3
        for image, outputs in zip(images, batch):
            single = engine.run(name, image)
            np.testing.assert_allclose(outputs.probs, single.probs, atol=1e-5)
            np.testing.assert_allclose(outputs.embedding, single.embedding, atol=1e-4)
            assert set(outputs.excitations) == set(single.excitations)


# ---------------------------------------------------------------- hooks never outlive a call


@pytest.mark.parametrize("tta", ["none", "tencrop"])
def test_hooks_are_removed_after_each_run(engine, tiny_registry, resnet_name, senet_name, photo, tta):
    for name in (resnet_name, senet_name):
        model = tiny_registry.get(name).model
        before = hook_count(model)
        engine.run(name, photo, tta)
        engine.run_batch(name, [photo])
        assert hook_count(model) == before


def test_hooks_are_removed_when_the_forward_raises(engine, tiny_registry, senet_name, photo, monkeypatch):
    model = tiny_registry.get(senet_name).model
    before = hook_count(model)
    during = []

    def broken_head(*args, **kwargs):
        during.append(hook_count(model))
        raise RuntimeError("head exploded")

    monkeypatch.setattr(model, "forward_head", broken_head)
    with pytest.raises(RuntimeError, match="head exploded"):
        engine.run(senet_name, photo)
    # hooks were in place: four per SE block (gate, squeeze, bottleneck, kept input maps)
    assert during and during[0] == before + 4 * len(engine.registry.se_blocks(senet_name))
    assert hook_count(model) == before
    assert len(engine.cache) == 0  # a failed run caches nothing
    monkeypatch.undo()
    assert engine.run(senet_name, photo).excitations  # and the model still works


# ---------------------------------------------------------------- the result cache


def test_same_image_twice_is_one_forward_pass(engine, senet_name, photo):
    first = engine.run(senet_name, photo)
    second = engine.run(senet_name, photo)
    assert engine.forward_passes == 1
    assert (engine.cache.hits, engine.cache.misses) == (1, 1)
    assert not first.from_cache and second.from_cache
    assert second.probs is first.probs and second.embedding is first.embedding  # the same arrays, not recomputed


def test_identical_pixels_from_other_objects_and_files_hit_the_cache(engine, resnet_name, photo, photo_png, tmp_path):
    bmp = tmp_path / "same.bmp"
    photo.save(bmp)
    sources = [photo, photo.copy(), load_image(photo_png), load_image(bmp), load_image(encode(photo, "TIFF")),
               load_image(np.asarray(photo))]
    results = [engine.run(resnet_name, image) for image in sources]
    assert engine.forward_passes == 1
    assert engine.cache.hits == len(sources) - 1
    assert all(r.probs is results[0].probs for r in results)
    assert [r.from_cache for r in results] == [False] + [True] * (len(sources) - 1)


def test_other_tta_other_image_other_model_are_other_entries(engine, resnet_name, senet_name, photo):
    other = photo.copy()
    other.putpixel((0, 0), (0, 0, 0))
    engine.run(resnet_name, photo, "none")
    engine.run(resnet_name, photo, "flip")
    engine.run(resnet_name, photo, "tencrop")
    engine.run(resnet_name, other, "none")
    engine.run(senet_name, photo, "none")
    assert engine.forward_passes == 5 and engine.cache.hits == 0
    engine.run(resnet_name, photo, "flip")
    assert engine.forward_passes == 5 and engine.cache.hits == 1


def test_cache_is_bounded_lru(tiny_registry, resnet_name):
    engine = Engine(tiny_registry, cache_entries=2)
    a, b, c = (picture(s, (32, 32)) for s in (10, 11, 12))
    engine.run(resnet_name, a)
    engine.run(resnet_name, b)
    engine.run(resnet_name, a)  # hit; a is now the most recent
    assert (engine.forward_passes, engine.cache.hits) == (2, 1)
    engine.run(resnet_name, c)  # evicts b, the least recently used
    assert len(engine.cache) == 2
    engine.run(resnet_name, a)
    engine.run(resnet_name, c)
    assert (engine.forward_passes, engine.cache.hits) == (3, 3)
    engine.run(resnet_name, b)  # b was evicted: a new forward pass
    assert engine.forward_passes == 4 and len(engine.cache) == 2


def test_default_cache_size_comes_from_the_limits(tiny_registry):
    assert Engine(tiny_registry).cache.max_entries == tiny_registry.config.limits.result_cache_entries


def test_lru_cache_unit():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    cache.put("a", 10)  # overwrite keeps one entry
    assert len(cache) == 2 and cache.get("a") == 10
    assert (cache.hits, cache.misses) == (4, 1)


def test_models_with_the_same_preprocessing_share_the_views(tmp_path, tiny_resnet, resnet_name, senet_name, photo,
                                                           monkeypatch):
    """The default ensemble's two models preprocess alike: the image is resized and cropped once for both."""
    from fixtures import make_config
    from senet_demo import engine as engine_module
    from senet_demo.models import ModelRegistry

    twin = f"{tiny_resnet.arch}={tiny_resnet.copy_to(tmp_path / 'twin')}"  # same preprocessing, other model
    registry = ModelRegistry(make_config(tmp_path, [resnet_name, twin, senet_name]))
    calls = []

    def counted(transform, image, tta="none"):
        calls.append(tta)
        return tta_batch(transform, image, tta)

    monkeypatch.setattr(engine_module, "tta_batch", counted)
    engine = Engine(registry)
    for tta in ("none", "tencrop"):
        engine.run(resnet_name, photo, tta)
        engine.run(twin, photo, tta)
        assert calls.count(tta) == 1
    engine.run(senet_name, photo, "tencrop")  # its own input size and normalisation
    assert calls == ["none", "tencrop", "tencrop"] and engine.forward_passes == 5
    for name in (twin, senet_name):
        np.testing.assert_allclose(engine.run(name, photo, "tencrop").probs,
                                   reference_probs(registry.get(name), photo, "tencrop"), atol=1e-6)


# ---------------------------------------------------------------- feature maps for Explain's tiles


def _direct_maps(loaded, image, block) -> np.ndarray:
    """The block's input U for the model's own crop, captured by a plain forward."""
    from senet_demo.se_blocks import capture_se_inputs

    with torch.no_grad(), capture_se_inputs(loaded.model, [block]) as inputs:
        loaded.model(tta_batch(loaded.transform, image))
    return inputs[block.name][0].numpy()


def test_every_blocks_extreme_channels_come_from_the_shared_pass(engine, tiny_registry, senet_name):
    from senet_demo.excitation import extreme_channels
    from senet_demo.se_blocks import MAP_CHANNELS

    image = picture(31, (146, 110))
    outputs = engine.run(senet_name, image)
    passes = engine.forward_passes
    for block in engine.registry.se_blocks(senet_name):
        direct = _direct_maps(tiny_registry.get(senet_name), image, block)
        kept = outputs.channel_maps[block.name]
        top, bottom = extreme_channels(outputs.excitations[block.name], MAP_CHANNELS)
        assert set(kept) == {int(c) for c in (*top, *bottom)}  # the most and least excited, no more
        assert len(kept) <= 2 * MAP_CHANNELS < block.channels  # only the extremes are kept, not all C maps
        for k in (1, 4, MAP_CHANNELS):
            top, bottom = extreme_channels(outputs.excitations[block.name], k)
            channels = [*top, *bottom]
            maps = engine.feature_maps(senet_name, image, block, channels)
            np.testing.assert_allclose(maps, direct[channels], atol=1e-5, rtol=0)
    assert engine.forward_passes == passes  # no second forward for any block's pictures


def test_other_channels_take_an_eager_pass(engine, tiny_registry, senet_name):
    image = picture(32, (146, 110))
    blocks = engine.registry.se_blocks(senet_name)
    outputs = engine.run(senet_name, image)
    passes = engine.forward_passes
    for block in (blocks[0], blocks[-1]):
        middle = [c for c in range(block.channels) if c not in outputs.channel_maps[block.name]][:3]
        maps = engine.feature_maps(senet_name, image, block, middle)
        np.testing.assert_allclose(maps, _direct_maps(tiny_registry.get(senet_name), image, block)[middle],
                                   atol=1e-5, rtol=0)
    assert engine.forward_passes == passes + 2  # one eager pass per block asked for, cached


def test_multi_view_passes_keep_no_maps(engine, senet_name):
    assert engine.run(senet_name, picture(33, (146, 110)), "flip").channel_maps == {}


# ---------------------------------------------------------------- the package's shape


def _package_imports(root) -> dict[str, set[str]]:
    """Module -> the modules of the package at ``root`` it imports anywhere in its text (functions included)."""
    import ast
    from pathlib import Path

    modules = {}
    for path in Path(root).rglob("*.py"):
        parts = [Path(root).name, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        found = set()
        for node in _runtime_nodes(ast.parse(Path(path).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)  # ``from . import engine``
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _runtime_nodes(tree):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for annotations, never run)."""
    import ast

    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _a_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, trail = {}, []  # state: 1 on the current path, 2 done

    def visit(module):
        state[module] = 1
        trail.append(module)
        for other in sorted(graph[module]):
            if state.get(other) == 1:
                return trail[trail.index(other):] + [other]
            if other not in state and (cycle := visit(other)):
                return cycle
        state[module] = 2
        trail.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    from fixtures import REPO_ROOT

    graph = _package_imports(REPO_ROOT / "senet_demo")
    # The walk sees what it must: the engine uses the one forward and the ONNX Runtime backend.
    assert {"senet_demo.forward", "senet_demo.onnx_backend"} <= graph["senet_demo.engine"]
    assert "senet_demo.forward" in graph["senet_demo.onnx_backend"]
    assert _a_cycle(graph) is None, " -> ".join(_a_cycle(graph))


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub.b import thing\n")
    (package / "sub" / "b.py").write_text("import os\nthing = 1\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\n"
                                  "from . import a\n")
    assert _a_cycle(_package_imports(package)) is None  # an import for annotations only is no cycle
    (package / "sub" / "b.py").write_text("def later():\n    from ..c import a\n")  # the cycle hides in a function
    graph = _package_imports(package)
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg", "pkg.a"}  # not pkg.sub: TYPE_CHECKING
    assert _a_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


def test_the_engine_sets_pytorchs_threads_from_the_config(tiny_registry):
    threads = tiny_registry.config.queue.threads_per_forward
    previous = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        Engine(tiny_registry)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(previous)
