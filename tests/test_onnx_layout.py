"""The graph rewrites for ONNX Runtime's blocked layout: same outputs, and the layout switches are gone."""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

import se_models as sm
from senet_demo import onnx_export, onnx_layout

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
numpy_helper = onnx.numpy_helper


def export(module: nn.Module, size: int, path, channels: int = 3) -> "onnx.ModelProto":
    """``module`` as ONNX with a dynamic batch axis, as the engine exports it."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(2, channels, size, size),), str(path), dynamo=False, opset_version=onnx_export.OPSET,
                          input_names=["image"], output_names=["out"],
                          dynamic_axes={"image": {0: "batch"}, "out": {0: "batch"}})
    return onnx.load(str(path))


def session(model, optimized_path=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(model, batch: np.ndarray) -> np.ndarray:
    return session(model).run(None, {"image": batch})[0]


def ops(model) -> Counter:
    return Counter(node.op_type for node in model.graph.node)


@pytest.fixture(scope="module")
def senext():
    """A small SE-ResNeXt-D (4 input channels per group in its first stage) with non-trivial SE layers."""
    import timm

    torch.manual_seed(3)
    model = timm.create_model("seresnext26d_32x4d", pretrained=False, layers=[1, 1, 1, 1], num_classes=6).eval()
    sm.randomize(model, 3)
    return model


def test_grouped_conv_is_widened_block_diagonally_with_the_same_output(tmp_path):
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 64, 3, padding=1, groups=8, bias=True)  # 4 in, 8 out channels per group
    original = export(nn.Sequential(conv), 12, tmp_path / "conv.onnx", channels=32)
    rewritten = onnx.load(str(tmp_path / "conv.onnx"))

    rewrites = onnx_layout.fit_blocked_layout(rewritten, 16)

    assert rewrites.merged_convs == 1
    node = next(n for n in rewritten.graph.node if n.op_type == "Conv")
    assert onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "group")) == 2
    weight = numpy_helper.to_array(next(t for t in rewritten.graph.initializer if t.name == node.input[1]))
    assert weight.shape == (64, 16, 3, 3)
    old = conv.weight.detach().numpy()
    for group in range(8):  # each old group sits on its own 4 input channels of its merged group, zeros elsewhere
        rows, offset = slice(group * 8, group * 8 + 8), (group % 4) * 4
        np.testing.assert_array_equal(weight[rows, offset:offset + 4], old[rows])
        assert not weight[rows, :offset].any() and not weight[rows, offset + 4:].any()
    batch = np.random.default_rng(0).normal(size=(3, 32, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(run(rewritten, batch), run(original, batch), atol=1e-5, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(run(rewritten, batch), conv(torch.from_numpy(batch)).numpy(), atol=1e-5, rtol=0)


def test_wide_depthwise_and_unmergeable_groups_are_left_alone(tmp_path):
    module = nn.Sequential(nn.Conv2d(36, 36, 3, padding=1, groups=2),  # 18 per group: wide enough
                           nn.Conv2d(36, 36, 3, padding=1, groups=36),  # depthwise: a layout of its own
                           nn.Conv2d(36, 36, 3, padding=1, groups=6),  # 6 per group: 16 is no multiple of 6
                           nn.Conv2d(36, 24, 3, padding=1, groups=12))  # 3 per group, 12 groups: 16 / 3 is no whole
    model = export(module, 8, tmp_path / "convs.onnx", channels=36)
    before = [numpy_helper.to_array(t).shape for t in model.graph.initializer]

    assert onnx_layout.fit_blocked_layout(model, 16).merged_convs == 0
    assert [numpy_helper.to_array(t).shape for t in model.graph.initializer] == before


@pytest.mark.parametrize("block, narrow_groups", [(16, 2), (8, 1)])  # AVX-512, AVX2
def test_se_squeeze_and_scale_are_rewritten_with_the_same_outputs(senext, tmp_path, block, narrow_groups):
    original = export(senext, 64, tmp_path / "senext.onnx")
    rewritten = onnx.load(str(tmp_path / "senext.onnx"))
    se_count = len(sm.se_modules(senext))
    assert ops(original)["ReduceMean"] == se_count

    rewrites = onnx_layout.fit_blocked_layout(rewritten, block)

    narrow = [m for m in senext.modules()
              if isinstance(m, nn.Conv2d) and m.groups > 1 and 1 < m.in_channels // m.groups < block]
    assert len(narrow) == narrow_groups  # the first two stages' grouped 3x3 convs have 4 and 8 channels per group
    assert (rewrites.squeezes, rewrites.broadcasts, rewrites.merged_convs) == (se_count, se_count, len(narrow))
    assert ops(rewritten)["ReduceMean"] == 0 and ops(rewritten)["Resize"] == se_count
    declared = {v.name: v for v in rewritten.graph.value_info}
    for node in (n for n in rewritten.graph.node if n.op_type == "Resize"):
        # the batch axis is declared, or ONNX Runtime cannot prove the Mul's two inputs the same shape
        assert declared[node.output[0]].type.tensor_type.shape.dim[0].dim_param == "batch"
    onnx.checker.check_model(rewritten)
    rng = np.random.default_rng(1)
    for size in (1, 3):  # the batch axis stays dynamic
        batch = rng.normal(size=(size, 3, 64, 64)).astype(np.float32)
        with torch.no_grad():
            eager = senext(torch.from_numpy(batch)).numpy()
        np.testing.assert_allclose(run(rewritten, batch), eager, atol=1e-4, rtol=0)


def test_a_constant_per_channel_scale_is_not_taken_for_a_per_image_one(tmp_path):
    class LayerScale(nn.Module):  # x * gamma with gamma (1, C, 1, 1): a weight, the same for every image
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.gamma = nn.Parameter(torch.linspace(0.5, 2.0, 16).reshape(1, 16, 1, 1))

        def forward(self, x):
            return self.conv(x) * self.gamma

    module = LayerScale()
    model = export(module, 8, tmp_path / "scale.onnx")

    assert onnx_layout.fit_blocked_layout(model, 16).broadcasts == 0
    batch = np.random.default_rng(2).normal(size=(4, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run(model, batch), module(torch.from_numpy(batch)).numpy(), atol=1e-5, rtol=0)


@pytest.mark.skipif(onnx_layout.blocked_layout_width() == 0, reason="ONNX Runtime has no blocked layout on this CPU")
def test_onnx_runtime_keeps_the_se_resnext_in_its_blocked_layout(senext, tmp_path):
    """ONNX Runtime's own optimised graph: the layout switches around every SE block and narrow group are gone."""
    original = export(senext, 64, tmp_path / "senext.onnx")
    rewritten = onnx.load(str(tmp_path / "senext.onnx"))
    onnx_layout.fit_blocked_layout(rewritten, onnx_layout.blocked_layout_width())

    def reorders(model, name):
        session(model, tmp_path / name)
        return sum(n.op_type.startswith("Reorder") for n in onnx.load(str(tmp_path / name)).graph.node)

    assert reorders(original, "original.opt.onnx") >= 2 * len(sm.se_modules(senext))
    assert reorders(rewritten, "rewritten.opt.onnx") == 1  # only back to NCHW for the head


def test_no_blocked_layout_leaves_the_graph_as_exported(senext, tmp_path):
    model = export(senext, 64, tmp_path / "senext.onnx")
    before = model.SerializeToString()

    assert onnx_layout.fit_blocked_layout(model, 0) == onnx_layout.LayoutRewrites(0)
    assert model.SerializeToString() == before


@pytest.mark.parametrize("machine, capability, width", [
    ("x86_64", "AVX512", 16), ("AMD64", "AVX2", 8), ("x86_64", "DEFAULT", 8), ("arm64", "DEFAULT", 0),
    ("aarch64", "SVE256", 0),
])
def test_the_block_width_follows_the_cpu(monkeypatch, machine, capability, width):
    monkeypatch.setattr(onnx_layout.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert onnx_layout.blocked_layout_width() == width
