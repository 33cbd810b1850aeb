"""SE block discovery, paper naming, the excitation formula, ablation and hook hygiene.

Every timm SE family is covered with a tiny random-weight model (tests/fixtures.py): ResNet
``SEModule`` (SE-ResNeXt uses the same class), legacy SENet ``SEModule``, EfficientNet and
MobileNetV3 ``SqueezeExcite`` (SiLU / ReLU + hard-sigmoid) and RegNetY ``SEModule``.
"""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import fixtures
import torch
from fixtures import one_torch_thread  # noqa: F401  autouse
from torch import nn

from senet_demo.se_blocks import (
    capture_excitations,
    capture_se_inputs,
    excitation_disabled,
    find_se_blocks,
    hook_count,
)

FAMILIES = list(fixtures.FAMILIES)


def meta_model(arch: str, **kwargs) -> nn.Module:
    import timm

    with torch.device("meta"):
        return timm.create_model(arch, pretrained=False, **kwargs)


@pytest.fixture(scope="module", params=FAMILIES)
def family_model(request):
    return request.param, fixtures.shared(request.param)


# ---------------------------------------------------------------------------------------------- discovery, naming


def test_seresnet50_blocks_are_named_as_in_the_paper():
    model = meta_model("seresnet50")
    blocks = find_se_blocks(model)
    expected = [f"SE_{stage}_{b}" for stage, count in ((2, 3), (3, 4), (4, 6), (5, 3)) for b in range(1, count + 1)]
    assert [b.name for b in blocks] == expected
    assert [b.path for b in blocks] == [f"layer{s - 1}.{b - 1}.se" for s, c in ((2, 3), (3, 4), (4, 6), (5, 3))
                                        for b in range(1, c + 1)]
    by_name = {b.name: b for b in blocks}
    se_2_3 = by_name["SE_2_3"]
    assert se_2_3.path == "layer1.2.se"
    assert (se_2_3.stage, se_2_3.block) == (2, 3)
    assert (se_2_3.channels, se_2_3.reduced, se_2_3.reduction) == (256, 16, 16)
    assert se_2_3.params == 256 * 16 + 16 + 16 * 256 + 256  # W1, b1, W2, b2
    assert se_2_3.params == sum(p.numel() for p in model.get_submodule("layer1.2.se").parameters())
    # C doubles per stage, r = 16 everywhere
    for name, channels in (("SE_3_4", 512), ("SE_4_6", 1024), ("SE_5_3", 2048)):
        assert (by_name[name].channels, by_name[name].reduced) == (channels, channels // 16)
    assert "C=256 -> 16 -> 256, r=16" in se_2_3.describe()


def test_legacy_senet_se_module_is_found():
    model = meta_model("legacy_seresnet18")
    blocks = find_se_blocks(model)
    assert [b.name for b in blocks] == ["SE_2_1", "SE_2_2", "SE_3_1", "SE_3_2", "SE_4_1", "SE_4_2", "SE_5_1", "SE_5_2"]
    assert [b.path for b in blocks] == [f"layer{i}.{j}.se_module" for i in (1, 2, 3, 4) for j in (0, 1)]
    first = blocks[0]
    assert (first.channels, first.reduced) == (64, 4)
    assert first.params == 64 * 4 + 4 + 4 * 64 + 64


@pytest.mark.parametrize("arch", ["resnet50d", "tf_efficientnet_lite0", "gmlp_ti16_224"])
def test_models_without_se_have_no_blocks(arch):
    # gMLP's GatedMlp has fc1 / fc2 / gate like an SE module, but it is a token MLP (C -> 6C -> 3C -> C)
    assert find_se_blocks(meta_model(arch)) == []


@pytest.mark.parametrize("arch, depths, index, path", [
    # MaxViT keeps SE inside the block's MBConv: stages.<s>.blocks.<b>.conv.se
    ("maxvit_tiny_rw_224", (2, 2, 5, 2), 2, "stages.1.blocks.0.conv.se"),
    # RegNetY names its blocks s<i>.b<j>
    ("regnety_002", (1, 1, 4, 7), 3, "s3.b2.se"),
])
def test_names_follow_the_stages_however_deep_the_se_module_sits(arch, depths, index, path):
    blocks = find_se_blocks(meta_model(arch))
    expected = [f"SE_{stage}_{b}" for stage, count in zip((2, 3, 4, 5), depths) for b in range(1, count + 1)]
    assert [b.name for b in blocks] == expected
    assert blocks[index].path == path


def test_every_family_finds_exactly_its_se_modules(family_model):
    _, model = family_model
    blocks = find_se_blocks(model)
    modules = fixtures.se_modules(model)  # found by class, independently of the structural rule
    assert [b.path for b in blocks] == list(modules)
    assert len({b.name for b in blocks}) == len(blocks), "SE_s_b names must be unique"
    for b in blocks:
        reduce, expand = fixtures._layers(modules[b.path])[:2]
        assert (b.channels, b.reduced) == (reduce.weight.shape[1], reduce.weight.shape[0])
        assert expand.weight.shape[:2] == (b.channels, b.reduced)
        assert b.params == sum(p.numel() for p in modules[b.path].parameters())
        assert b.name == f"SE_{b.stage}_{b.block}"
    # names follow depth: stages never go backwards, blocks count up within a stage
    pairs = [(b.stage, b.block) for b in blocks]
    assert pairs == sorted(pairs)


# ---------------------------------------------------------------------------------------------- the excitation


def test_captured_excitation_is_the_se_formula(family_model):
    family, model = family_model
    blocks = find_se_blocks(model)
    x = fixtures.batch(seed=1, n=2)
    inputs, handles = fixtures.record_se_inputs(model, [b.path for b in blocks])
    try:
        with torch.no_grad(), capture_excitations(model, blocks) as captured, capture_se_inputs(model, blocks) as u:
            model(x)
    finally:
        for h in handles:
            h.remove()
    assert set(captured) == {b.name for b in blocks}
    meaningful = 0
    for b in blocks:
        se = model.get_submodule(b.path)
        expected = fixtures.reference_excitation(se, inputs[b.path])
        assert captured[b.name].shape == (2, b.channels)
        torch.testing.assert_close(captured[b.name].double(), expected, atol=1e-6, rtol=0,
                                   msg=lambda m, b=b: f"{family} {b.name}: {m}")
        torch.testing.assert_close(u[b.name], inputs[b.path].float(), atol=0, rtol=0)
        meaningful += float((expected - 0.5).abs().gt(0.2).double().mean()) > 0.3
    assert meaningful >= len(blocks) // 2, "the random weights must push excitations away from 0.5"


@pytest.mark.parametrize("family", FAMILIES)
def test_engine_run_through_a_spec_folder_gives_the_se_formula(family, tmp_path):
    from senet_demo.config import AppConfig
    from senet_demo.engine import Engine
    from senet_demo.models import ModelRegistry

    spec, _ = fixtures.exported(family)
    registry = ModelRegistry(AppConfig.from_specs([spec], offline=True, weights_dir=tmp_path / "w",
                                                  gallery_dir=tmp_path / "g", feature_cache_dir=tmp_path / "f"))
    engine = Engine(registry)
    image = fixtures.picture(7, (64, 64))
    out = engine.run(spec, image)
    reference = fixtures.shared(family)  # the very weights that were exported, rebuilt in memory
    x = registry.get(spec).transform(image).unsqueeze(0)
    blocks = find_se_blocks(reference)
    assert [b.name for b in engine.registry.se_blocks(spec)] == [b.name for b in blocks]
    inputs, handles = fixtures.record_se_inputs(reference, [b.path for b in blocks])
    with torch.no_grad():
        logits = reference(x)
    for h in handles:
        h.remove()
    assert set(out.excitations) == {b.name for b in blocks}
    for b in blocks:
        expected = fixtures.reference_excitation(reference.get_submodule(b.path), inputs[b.path])[0].numpy()
        np.testing.assert_allclose(out.excitations[b.name], expected, atol=1e-5, rtol=0, err_msg=b.name)
    np.testing.assert_allclose(out.probs, logits.softmax(-1)[0].numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------- ablation


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def test_disabling_a_block_equals_replacing_it_by_identity(family_model):
    _, model = family_model
    blocks = find_se_blocks(model)
    block = blocks[len(blocks) // 2]
    x = fixtures.batch(seed=2)
    normal = _logits(model, x)
    with excitation_disabled(model, [block]):
        ablated = _logits(model, x)
    expected = _logits(fixtures.with_identity(model, [block.path]), x)
    torch.testing.assert_close(ablated, expected, atol=1e-5, rtol=1e-5)
    assert (ablated - normal).abs().max() > 1e-3, "switching SE off must change the output"
    torch.testing.assert_close(_logits(model, x), normal, atol=0, rtol=0)  # nothing left behind


def test_disabling_a_stage_equals_replacing_all_its_se_modules(family_model):
    _, model = family_model
    blocks = find_se_blocks(model)
    stage = max({b.stage for b in blocks}, key=lambda s: sum(b.stage == s for b in blocks))
    chosen = [b for b in blocks if b.stage == stage]
    x = fixtures.batch(seed=3)
    with excitation_disabled(model, chosen):
        ablated = _logits(model, x)
    torch.testing.assert_close(ablated, _logits(fixtures.with_identity(model, [b.path for b in chosen]), x),
                               atol=1e-5, rtol=1e-5)
    if len(chosen) > 1:  # all of them, not just one
        only_first = _logits(fixtures.with_identity(model, [chosen[0].path]), x)
        assert (ablated - only_first).abs().max() > 1e-4


def test_engine_run_ablated_equals_identity_replacement(tmp_path):
    from senet_demo.config import AppConfig
    from senet_demo.engine import Engine
    from senet_demo.models import ModelRegistry

    spec, _ = fixtures.exported("regnety")
    registry = ModelRegistry(AppConfig.from_specs([spec], offline=True, weights_dir=tmp_path / "w"))
    engine = Engine(registry)
    image = fixtures.picture(8, (64, 64))
    blocks = engine.registry.se_blocks(spec)
    stage5 = [b for b in blocks if b.stage == 5]
    out = engine.run_ablated(spec, image, stage5)
    x = registry.get(spec).transform(image).unsqueeze(0)
    expected = _logits(fixtures.with_identity(fixtures.shared("regnety"), [b.path for b in stage5]), x).softmax(-1)[0]
    np.testing.assert_allclose(out.probs, expected.numpy(), atol=1e-5)
    assert np.abs(out.probs - engine.run(spec, image).probs).max() > 1e-3
    for b in stage5:  # the ablated pass reports gate = 1 where SE was switched off
        np.testing.assert_array_equal(out.excitations[b.name], np.ones(b.channels, np.float32))


def test_ablation_in_one_thread_leaves_concurrent_forwards_alone():
    model = fixtures.shared("resnet-semodule")
    blocks = find_se_blocks(model)
    x = fixtures.batch(seed=4, n=1)
    reference = _logits(model, x)
    ablated_reference = _logits(fixtures.with_identity(model, [b.path for b in blocks]), x)
    assert (reference - ablated_reference).abs().max() > 1e-2

    ablator = {}
    inside, other_done = threading.Event(), threading.Event()
    results, errors = {}, []

    def slow_down(_module, _inputs):  # holds the ablated forward half-way until the other thread has run
        if threading.get_ident() == ablator.get("id"):
            inside.set()
            assert other_done.wait(30), "the concurrent forward never finished"

    pause = model.get_submodule("layer3").register_forward_pre_hook(slow_down)

    def ablate():
        ablator["id"] = threading.get_ident()
        try:
            with excitation_disabled(model, blocks):
                results["ablated"] = _logits(model, x)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)
            inside.set()

    def normal():
        try:
            assert inside.wait(30), "the ablated forward never started"
            outs = []
            with capture_excitations(model, blocks) as seen:
                for _ in range(3):
                    outs.append(_logits(model, x))
            results["normal"], results["seen"] = outs, seen
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)
        finally:
            other_done.set()

    threads = [threading.Thread(target=ablate), threading.Thread(target=normal)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        pause.remove()
    assert not errors, errors
    assert inside.is_set() and other_done.is_set()
    for out in results["normal"]:
        torch.testing.assert_close(out, reference, atol=0, rtol=0)
    assert all(results["seen"][b.name].lt(0.999).any() for b in blocks), "the other thread saw forced gates"
    torch.testing.assert_close(results["ablated"], ablated_reference, atol=1e-5, rtol=1e-5)


def test_captures_only_see_their_own_threads_forwards():
    model = fixtures.shared("legacy-senet")
    blocks = find_se_blocks(model)
    mine, theirs = fixtures.batch(seed=5, n=1), fixtures.batch(seed=6, n=1)
    with capture_excitations(model, blocks) as own:
        _logits(model, mine)
    expected = {k: v.clone() for k, v in own.items()}

    opened, other_ran = threading.Event(), threading.Event()
    seen = {}

    def capturer():
        with capture_excitations(model, blocks) as store, capture_se_inputs(model, blocks) as u:
            opened.set()
            other_ran.wait(30)
            seen["before_own_forward"] = (dict(store), dict(u))
            _logits(model, mine)
            seen["after"] = dict(store)

    def other():
        opened.wait(30)
        _logits(model, theirs)
        other_ran.set()

    threads = [threading.Thread(target=capturer), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert other_ran.is_set()
    assert seen["before_own_forward"] == ({}, {}), "another thread's forward was captured"
    for name, vector in expected.items():
        torch.testing.assert_close(seen["after"][name], vector, atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------- hook hygiene


class Boom(RuntimeError):
    pass


def _raise_in_head(model):
    def hook(_module, _inputs):
        raise Boom("head failed")
    return model.get_classifier().register_forward_pre_hook(hook)


@pytest.mark.parametrize("context", ["capture_excitations", "capture_se_inputs", "excitation_disabled"])
def test_hooks_are_removed_when_the_forward_raises(context):
    model = fixtures.build("mobilenetv3")
    blocks = find_se_blocks(model)
    factory = {"capture_excitations": capture_excitations, "capture_se_inputs": capture_se_inputs,
               "excitation_disabled": excitation_disabled}[context]
    failing = _raise_in_head(model)
    baseline = hook_count(model)
    with pytest.raises(Boom), factory(model, blocks):
        assert hook_count(model) == baseline + len(blocks)
        _logits(model, fixtures.batch(seed=7, n=1))
    assert hook_count(model) == baseline
    failing.remove()
    assert hook_count(model) == 0


@pytest.fixture(scope="module")
def se_services(tmp_path_factory):
    from senet_demo.config import AppConfig
    from senet_demo.services import Services

    spec, _ = fixtures.exported("mobilenetv3")
    root = tmp_path_factory.mktemp("se-services")
    services = Services.create(AppConfig.from_specs([spec], offline=True, weights_dir=root / "w",
                                                    gallery_dir=root / "g", feature_cache_dir=root / "f"))
    return services, spec


def test_engine_removes_its_hooks_when_the_head_raises(se_services, monkeypatch):
    from senet_demo.engine import Engine

    services, spec = se_services
    engine = Engine(services.registry)
    model = services.registry.get(spec).model
    blocks = engine.registry.se_blocks(spec)
    baseline = hook_count(model)

    def broken_head(*args, **kwargs):
        raise Boom("head failed")

    monkeypatch.setattr(model, "forward_head", broken_head)
    with pytest.raises(Boom):
        engine.run(spec, fixtures.picture(9, (64, 64)))
    assert hook_count(model) == baseline
    with pytest.raises(Boom):
        engine.run_ablated(spec, fixtures.picture(9, (64, 64)), blocks)
    assert hook_count(model) == baseline
    with pytest.raises(Boom):
        engine.feature_maps(spec, fixtures.picture(9, (64, 64)), blocks[0], [0])
    assert hook_count(model) == baseline
    assert len(engine.cache) == 0  # a failed pass caches nothing
    monkeypatch.undo()
    assert engine.run(spec, fixtures.picture(9, (64, 64))).excitations  # and the model still works afterwards


def _live(kind) -> int:
    return sum(issubclass(type(o), kind) for o in gc.get_objects())


def test_a_hundred_runs_leave_hooks_and_memory_flat(se_services):
    from senet_demo.engine import Engine, Outputs

    services, spec = se_services
    engine = Engine(services.registry, cache_entries=1)  # the bounded LRU keeps one result at most
    model = services.registry.get(spec).model
    images = [fixtures.picture(1000 + i, (32, 32)) for i in range(103)]  # distinct: every call really runs forward
    for image in images[:3]:  # warm-up: one-off allocations of the first passes
        engine.run(spec, image)
    gc.collect()
    hooks, tensors, outputs, objects = hook_count(model), _live(torch.Tensor), _live(Outputs), len(gc.get_objects())
    passes = engine.forward_passes
    for image in images[3:]:
        engine.run(spec, image)
        assert hook_count(model) == hooks
    gc.collect()
    assert engine.forward_passes == passes + 100
    assert hook_count(model) == hooks
    # keeping anything per call (a result, its excitation tensors, a hook closure) adds >= 100 objects
    assert _live(torch.Tensor) - tensors <= 5
    assert _live(Outputs) - outputs <= 1
    assert len(gc.get_objects()) - objects < 100
