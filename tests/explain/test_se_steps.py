"""The step view's numbers: squeeze z, bottleneck and excitation s of every block, from the one forward pass,
checked against the SE module's own weights computed independently; the SE cost figures; the sentences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fixtures
from fixtures import one_torch_thread  # noqa: F401  autouse
from senet_demo.forward import forward_outputs
from senet_demo.se_blocks import find_se_blocks, layer_names

FAMILIES = list(fixtures.FAMILIES)


def _independent_steps(se: torch.nn.Module, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z, δ(W1 z + b1) and σ(W2 δ(W1 z + b1) + b2) in float64, from the module's weights (never calling it)."""
    reduce, expand, act, gate = fixtures._layers(se)
    z = u.double().mean(dim=(2, 3))  # (B, C)
    w1 = reduce.weight.double().reshape(reduce.weight.shape[0], -1)  # (C/r, C)
    w2 = expand.weight.double().reshape(expand.weight.shape[0], -1)  # (C, C/r)
    hidden = fixtures._activation(act, z @ w1.T + reduce.bias.double())
    return z, hidden, fixtures._activation(gate, hidden @ w2.T + expand.bias.double())


def _forward_with_inputs(model, blocks, batch):
    """The app's one forward over ``batch``, and each block's input U as my own hooks saw it."""
    inputs, handles = fixtures.record_se_inputs(model, [b.path for b in blocks])
    try:
        with torch.inference_mode():
            return forward_outputs(model, blocks, batch), inputs
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_squeeze_bottleneck_and_gate_equal_the_formula_for_every_family(family):
    model = fixtures.shared(family)
    blocks = find_se_blocks(model)
    result, inputs = _forward_with_inputs(model, blocks, fixtures.batch(seed=3, n=2))
    spread = []
    for b in blocks:
        z, hidden, s = _independent_steps(model.get_submodule(b.path), inputs[b.path])
        assert result.squeezes[b.name].shape == (2, b.channels) and result.bottlenecks[b.name].shape == (2, b.reduced)
        torch.testing.assert_close(result.squeezes[b.name].double(), z, atol=1e-6 * max(1.0, float(z.abs().max())),
                                   rtol=0, msg=lambda m, b=b: f"{family} {b.name} z: {m}")
        torch.testing.assert_close(result.bottlenecks[b.name].double(), hidden,
                                   atol=1e-6 * max(1.0, float(hidden.abs().max())), rtol=0,
                                   msg=lambda m, b=b: f"{family} {b.name} bottleneck: {m}")
        torch.testing.assert_close(result.excitations[b.name].double(), s, atol=1e-6, rtol=0,
                                   msg=lambda m, b=b: f"{family} {b.name} s: {m}")
        spread.append(float(s.std()))
    assert np.median(spread) > 0.1, "the fixture's gates must spread over (0, 1), not sit at 0.5"


def test_the_kept_maps_are_the_blocks_input_channels_most_and_least_excited_first():
    model = fixtures.shared("resnet-semodule")
    blocks = find_se_blocks(model)
    result, inputs = _forward_with_inputs(model, blocks, fixtures.batch(seed=4, n=1))
    for b in blocks:
        channels = result.map_channels[b.name].tolist()
        s = result.excitations[b.name][0]
        k = len(channels) // 2
        assert sorted(s[channels[:k]].tolist(), reverse=True) == sorted(s.topk(k).values.tolist(), reverse=True)
        assert sorted(s[channels[k:]].tolist()) == sorted((-s).topk(k).values.neg().tolist())
        torch.testing.assert_close(result.maps[b.name][0], inputs[b.path][0, channels].float(), atol=0, rtol=0)


def test_the_se_cost_is_counted_from_the_model():
    """SE-ResNet-50 on 224 px: the paper's sizes (28.1 M parameters with SE), SE a tenth of the parameters
    and well under 1% of the FLOPs; each block's FLOPs are its two FCs plus the squeeze and the scale."""
    import timm

    from senet_demo.se_cost import model_cost

    model = timm.create_model("seresnet50", pretrained=False).eval()
    blocks = find_se_blocks(model)
    cost = model_cost(model, blocks, (3, 224, 224))
    assert cost.model_params == sum(p.numel() for p in model.parameters())
    assert 28.0e6 < cost.model_params < 28.2e6
    assert cost.se_params == sum(b.params for b in blocks)
    assert 0.05 < cost.se_params / cost.model_params < 0.15
    assert cost.se_flops / cost.model_flops < 0.01
    last = cost.blocks["SE_5_3"]
    assert last.input_hw == (7, 7)
    fc_flops = 2 * 2 * 2048 * 128  # two FCs of 2048 x 128 multiply-adds
    assert last.flops == fc_flops + 2 * 2048 * 7 * 7
    assert sum(p.numel() for p in model.parameters()) == cost.model_params  # the model itself is untouched
    assert next(model.parameters()).device.type == "cpu"


def test_the_step_text_states_the_blocks_numbers():
    from senet_demo.se_cost import model_cost
    from senet_demo.ui.explain_text import scale_text, steps_text

    model = fixtures.shared("resnet-semodule")
    blocks = find_se_blocks(model)
    block = blocks[-1]
    cost = model_cost(model, blocks, (3, 64, 64))
    activation, gate = layer_names(model, block)
    assert (activation, gate) == ("ReLU", "Sigmoid")
    z = np.linspace(-1, 2, block.channels)
    s = np.linspace(0.01, 0.99, block.channels)
    text = steps_text(block, blocks, cost, activation, gate, z, s, "tiny SE-ResNet")
    h, w = cost.blocks[block.name].input_hw
    for part in (f"**{block.channels} channels of {h}×{w}**", f"C/r = {block.reduced}", f"{block.params:,} parameters",
                 f"FC {block.channels}→{block.reduced}, ReLU, FC {block.reduced}→{block.channels}, Sigmoid",
                 f"{int((s > 0.9).sum())} channels above 0.9, {int((s < 0.1).sum())} below 0.1",
                 "① **Squeeze**", "② **Excitation**", "③ **Scale**"):
        assert part in text, part
    shown = [("most", block.channels - 1), ("least", 0)]
    assert f"{block.channels - 1} (s = 0.99)" in scale_text(shown, s, (h, w))


def test_every_block_is_explained_from_the_one_forward_pass(tmp_path, senet_name):
    """Any block's step view, its before/after pictures and the other views come from the image's one pass:
    choosing another block runs nothing more."""
    from senet_demo.ui.explain_tab import explain_image

    services = fixtures.services_for(senet_name, tmp_path)
    image = tmp_path / "photo.png"
    fixtures.picture(23, (96, 80)).save(image)
    blocks = services.registry.se_blocks(senet_name)
    for block in blocks:
        views = explain_image(services, str(image), senet_name, block.name, [], [], True, 3)
        assert f"**{block.name}**" in views[0] and len(views[3]) == 6
        assert services.engine.forward_passes == 1, block.name
