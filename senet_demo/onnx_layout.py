"""Rewrite an exported graph so that ONNX Runtime's blocked layout covers SE blocks and narrow grouped convs.

On x86 CPUs ONNX Runtime runs convolutions in a blocked channel layout (NCHWc: 8 channels per block, 16
with AVX-512) and converts back to plain NCHW around every operator its layout pass does not cover. As
exported from PyTorch, two parts of an SE-ResNeXt fall outside it:

* the SE block's squeeze (``ReduceMean`` over H and W) and its channel-wise scaling ``u * s``, a Mul that
  broadcasts s of shape (B, C, 1, 1) over u of shape (B, C, H, W). The pass covers ``GlobalAveragePool``,
  and a Mul only of two inputs with the same shape. So the squeeze becomes ``GlobalAveragePool``, and s is
  repeated over H x W by a nearest-neighbour ``Resize`` (covered) before the Mul. The Resize's output is
  declared with the graph input's batch dimension: ONNX shape inference drops symbolic dimensions through
  a Resize, and without it the pass cannot prove the Mul's shapes equal.
* grouped convolutions with fewer input channels per group than a block (ResNeXt's first two stages: 4
  and 8). Neighbouring groups are merged into groups one block wide, with zero weights between them
  (block-diagonal): the same sums, with more arithmetic that runs in the blocked layout.

Every rewrite computes the same values up to the order of floating-point sums; the export is validated
against eager PyTorch afterwards as always. Where ONNX Runtime has no blocked layout (not x86), the graph
is left as it is.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass

import numpy as np

_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}


@dataclass
class LayoutRewrites:
    """What ``fit_blocked_layout`` changed; recorded beside the export."""

    block: int
    squeezes: int = 0  # ReduceMean -> GlobalAveragePool
    broadcasts: int = 0  # (B, C, 1, 1) * (B, C, H, W) -> Resize, then Mul of equal shapes
    merged_convs: int = 0  # grouped convs widened to one block per group

    def as_record(self) -> dict:
        return asdict(self)


def blocked_layout_width() -> int:
    """Channels per block of ONNX Runtime's NCHWc layout on this CPU, or 0 where it has none.

    As PyTorch detects the CPU: 16 with AVX-512, else 8 on x86. Should ONNX Runtime see it otherwise, the
    rewrites are still exact; they only help less.
    """
    if platform.machine().lower() not in _X86:
        return 0
    import torch

    return 16 if "AVX512" in torch.backends.cpu.get_cpu_capability() else 8


def fit_blocked_layout(model, block: int) -> LayoutRewrites:
    """Rewrite ``model`` (an ``onnx.ModelProto``, changed in place) for a layout of ``block`` channels."""
    rewrites = LayoutRewrites(block)
    if block <= 0:
        return rewrites
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = _Graph(model, _shapes(inferred), _element_types(inferred))
    new_nodes = []
    for node in model.graph.node:
        if node.op_type == "ReduceMean" and _is_spatial_mean(node, graph):
            node.op_type, node.name = "GlobalAveragePool", f"{node.name}__as_GlobalAveragePool"
            del node.attribute[:]
            del node.input[1:]
            rewrites.squeezes += 1
        elif node.op_type == "Mul" and (broadcast := _spatial_broadcast(node, graph)) is not None:
            new_nodes.append(_repeat_over_space(graph, node, *broadcast))
            rewrites.broadcasts += 1
        elif node.op_type == "Conv" and _merge_groups(graph, node, block):
            rewrites.merged_convs += 1
        new_nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return rewrites


class _Graph:
    """What the rewrites read about the graph: shapes, element types, constants and how often each is used."""

    def __init__(self, model, shapes: dict[str, list], element_types: dict[str, int]):
        self.model, self.shapes, self.element_types = model, shapes, element_types
        self.batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        self.batch = self.batch_dim.dim_param or self.batch_dim.dim_value  # every tensor here is batch-first
        self.initializers = {t.name: t for t in model.graph.initializer}
        self.constants = set(self.initializers) | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
        self.uses: dict[str, int] = {}
        for node in model.graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
        self.scales: dict[tuple[int, int], str] = {}  # (H, W) -> the Resize scales initializer


def _shapes(inferred) -> dict[str, list[int | str | None]]:
    """Tensor name -> dims: a number, a symbol's name, or None."""
    shapes = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                  for d in tensor_type.shape.dim]
    for tensor in inferred.graph.initializer:
        shapes[tensor.name] = list(tensor.dims)
    return shapes


def _element_types(inferred) -> dict[str, int]:
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {v.name: v.type.tensor_type.elem_type for v in values if v.type.HasField("tensor_type")}


def _attribute(node, name: str, default=None):
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _is_spatial_mean(node, graph: _Graph) -> bool:
    """A ReduceMean over H and W of a 4-d tensor that keeps the reduced dims: GlobalAveragePool's job."""
    from onnx import numpy_helper

    shape = graph.shapes.get(node.input[0])
    axes = _attribute(node, "axes")
    if len(node.input) > 1 and node.input[1]:  # opset 18 on: the axes are an input
        axes_tensor = graph.initializers.get(node.input[1])
        axes = None if axes_tensor is None else numpy_helper.to_array(axes_tensor).tolist()
    if shape is None or len(shape) != 4 or not axes:
        return False
    return sorted(a % 4 for a in axes) == [2, 3] and _attribute(node, "keepdims", 1) == 1


def _spatial_broadcast(node, graph: _Graph) -> tuple[int, int, int, int] | None:
    """(index of the per-channel input, C, H, W) when the Mul scales each image's (B, C, H, W) map by its own
    (B, C, 1, 1) vector, as an SE block does."""
    if len(node.input) != 2:
        return None
    a, b = (graph.shapes.get(name) for name in node.input)
    if a is None or b is None or len(a) != 4 or len(b) != 4:
        return None
    for small_index, (small, big) in enumerate(((a, b), (b, a))):
        channels, height, width = big[1:]
        per_image = small[0] == big[0] and (isinstance(small[0], int) or small[0] == graph.batch)
        if (per_image and node.input[small_index] not in graph.constants and small[1:] == [channels, 1, 1]
                and all(isinstance(d, int) for d in (channels, height, width)) and height * width > 1):
            return small_index, channels, height, width
    return None


def _repeat_over_space(graph: _Graph, mul, small_index: int, channels: int, height: int, width: int):
    """A Resize that repeats the Mul's per-channel input over H x W; the Mul then takes its output."""
    from onnx import helper, numpy_helper

    if (height, width) not in graph.scales:
        name = f"senet_layout__scales_{height}x{width}"
        graph.model.graph.initializer.append(
            numpy_helper.from_array(np.array([1, 1, height, width], dtype=np.float32), name))
        graph.scales[(height, width)] = name
    small = mul.input[small_index]
    repeated = f"{small}__over_{mul.output[0]}"
    resize = helper.make_node("Resize", [small, "", graph.scales[(height, width)]], [repeated],
                              name=f"{repeated}__resize", mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    declared = helper.make_tensor_value_info(repeated, graph.element_types[small], [None, channels, height, width])
    declared.type.tensor_type.shape.dim[0].CopyFrom(graph.batch_dim)
    graph.model.graph.value_info.append(declared)
    mul.input[small_index] = repeated
    return resize


def _merge_groups(graph: _Graph, conv, block: int) -> bool:
    """Widen a grouped conv with fewer than ``block`` input channels per group to ``block`` per group."""
    from onnx import numpy_helper

    groups = _attribute(conv, "group", 1)
    weight_tensor = graph.initializers.get(conv.input[1])
    if groups <= 1 or weight_tensor is None or len(weight_tensor.dims) != 4:
        return False
    out_channels, per_group_in = weight_tensor.dims[0], weight_tensor.dims[1]
    if per_group_in <= 1 or per_group_in >= block or block % per_group_in or out_channels % groups:
        return False  # depthwise convs and wide groups are covered already
    merge = block // per_group_in
    per_group_out = out_channels // groups
    if groups % merge or (per_group_out * merge) % block:
        return False
    weight = numpy_helper.to_array(weight_tensor)
    widened = np.zeros((out_channels, block, *weight.shape[2:]), dtype=weight.dtype)
    for group in range(groups):
        rows = slice(group * per_group_out, (group + 1) * per_group_out)
        offset = (group % merge) * per_group_in
        widened[rows, offset:offset + per_group_in] = weight[rows]
    if graph.uses.get(conv.input[1], 0) == 1:
        weight_tensor.CopyFrom(numpy_helper.from_array(widened, conv.input[1]))
    else:  # shared with another node, which keeps the original
        name = f"{conv.input[1]}__merged_{conv.output[0]}"
        graph.model.graph.initializer.append(numpy_helper.from_array(widened, name))
        conv.input[1] = name
    for attribute in conv.attribute:
        if attribute.name == "group":
            attribute.i = groups // merge
    return True
