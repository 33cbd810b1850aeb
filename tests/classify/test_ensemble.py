"""Ensemble averaging, top-k, agreement, and the test-time-augmentation views."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import ImageOps

from senet_demo.classify import ClassifyResult, MemberResult
from senet_demo.ensemble import Prediction, combine, top_k, tta_batch

A = np.array([0.7, 0.2, 0.1])
B = np.array([0.1, 0.3, 0.6])


# ---------------------------------------------------------------- combine


def test_equal_weights_average():
    assert combine({"a": A, "b": B}) == pytest.approx([0.4, 0.25, 0.35])
    assert combine({"a": A, "b": B}, {"a": 1.0, "b": 1.0}) == pytest.approx([0.4, 0.25, 0.35])


def test_weights_are_normalised():
    expected = (3 * A + 1 * B) / 4
    assert combine({"a": A, "b": B}, {"a": 3, "b": 1}) == pytest.approx(expected)
    assert combine({"a": A, "b": B}, {"a": 0.75, "b": 0.25}) == pytest.approx(expected)
    assert combine({"a": A, "b": B}, {"a": 30, "b": 10}).sum() == pytest.approx(1.0)


def test_zero_weight_member_is_left_out():
    assert combine({"a": A, "b": B}, {"a": 0.0, "b": 0.5}) == pytest.approx(B)


def test_missing_weight_means_one_and_extra_weights_are_ignored():
    assert combine({"a": A, "b": B}, {"a": 3.0, "gone": 5.0}) == pytest.approx((3 * A + B) / 4)


def test_single_member_is_itself():
    assert combine({"a": A}) == pytest.approx(A)


def test_mismatched_class_counts():
    with pytest.raises(ValueError, match="different numbers of classes"):
        combine({"a": A, "c": np.array([0.5, 0.5])})


@pytest.mark.parametrize("weights", [{"a": 0, "b": 0}, {"a": 0.0, "b": 0.0}, {"a": -1, "b": 2}])
def test_zero_or_negative_weights(weights):
    with pytest.raises(ValueError, match="non-negative and not all zero"):
        combine({"a": A, "b": B}, weights)


def test_nothing_to_combine():
    with pytest.raises(ValueError, match="No member"):
        combine({})


# ---------------------------------------------------------------- top_k


def test_top_k_order_labels_and_indices():
    probs = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    labels = ["v", "w", "x", "y", "z"]
    top = top_k(probs, labels, 3)
    assert top == [Prediction("w", 1, 0.4), Prediction("y", 3, 0.3), Prediction("z", 4, 0.15)]
    assert all(isinstance(p.index, int) and isinstance(p.prob, float) for p in top)
    assert top[0].as_dict() == {"label": "w", "index": 1, "prob": 0.4}


def test_top_k_bounds_and_ties():
    probs = np.array([0.25, 0.25, 0.5])
    assert [p.index for p in top_k(probs, ["a", "b", "c"], 10)] == [2, 0, 1]  # k capped, ties stable
    assert [p.index for p in top_k(probs, ["a", "b", "c"], 0)] == [2]  # at least one


# ---------------------------------------------------------------- agreement


def _member(name, *tops, error=None):
    return MemberResult(name=name, weight=1.0, top=[Prediction(f"c{i}", i, 0.5) for i in tops], error=error)


@pytest.mark.parametrize(
    "members, agree",
    [
        ([_member("a", 1, 2), _member("b", 1, 0)], True),
        ([_member("a", 1, 2), _member("b", 2, 1)], False),
        ([_member("a", 1), _member("b", 1), _member("c", 3)], False),
        ([_member("a", 1), _member("b", error="missing")], None),  # only one answered
        ([_member("a", 1)], None),
    ],
)
def test_agreement_flag(members, agree):
    result = ClassifyResult(ensemble=[], members=members, tta="none")
    assert result.agree is agree
    assert result.as_dict()["agree"] is agree


# ---------------------------------------------------------------- TTA views


@pytest.fixture(params=["resnet", "senet"])
def loaded(request, tiny_registry, resnet_name, senet_name):
    return tiny_registry.get(resnet_name if request.param == "resnet" else senet_name)


@pytest.mark.parametrize("tta, views", [("none", 1), ("flip", 2), ("tencrop", 10)])
def test_tta_shapes_follow_each_models_input_size(loaded, photo, tta, views):
    height, width = loaded.data_config["input_size"][1:]
    batch = tta_batch(loaded.transform, photo, tta)
    assert tuple(batch.shape) == (views, 3, height, width)


def test_none_is_the_models_own_transform(loaded, photo):
    assert torch.equal(tta_batch(loaded.transform, photo, "none")[0], loaded.transform(photo))


def test_flip_adds_the_mirrored_view(loaded, photo):
    batch = tta_batch(loaded.transform, photo, "flip")
    assert torch.equal(batch[0], loaded.transform(photo))
    assert torch.equal(batch[1], batch[0].flip(-1))
    assert not torch.equal(batch[0], batch[1])


def test_tencrop_views(loaded, photo):
    views = tta_batch(loaded.transform, photo, "tencrop")
    none = tta_batch(loaded.transform, photo, "none")[0]
    # View 4 is the centre crop: exactly the single view of "none" (same transform).
    assert torch.allclose(views[4], none, atol=1e-6)
    assert not torch.allclose(views[0], views[1], atol=1e-3)  # left and right crops differ
    # Views 5..9 are the same five crops of the mirrored picture: each corner of the mirror is
    # the mirror of the opposite corner (tl<->tr, bl<->br) ...
    assert torch.allclose(views[5], views[1].flip(-1), atol=1e-6)
    assert torch.allclose(views[6], views[0].flip(-1), atol=1e-6)
    assert torch.allclose(views[7], views[3].flip(-1), atol=1e-6)
    assert torch.allclose(views[8], views[2].flip(-1), atol=1e-6)
    # ... and view 9 is the centre view of the mirrored picture.
    mirrored = tta_batch(loaded.transform, ImageOps.mirror(photo), "none")[0]
    assert torch.allclose(views[9], mirrored, atol=1e-5)


def test_tencrop_corners_are_at_the_corners(loaded):
    """Views 0..3 are the top-left, top-right, bottom-left and bottom-right crops."""
    from PIL import Image

    colours = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 255)}
    picture = Image.new("RGB", (200, 160), (128, 128, 128))
    for corner, box in (("tl", (0, 0)), ("tr", (188, 0)), ("bl", (0, 148)), ("br", (188, 148))):
        picture.paste(colours[corner], (*box, box[0] + 12, box[1] + 12))
    views = tta_batch(loaded.transform, picture, "tencrop")
    mean, std = torch.tensor(loaded.data_config["mean"]), torch.tensor(loaded.data_config["std"])

    def colour(view, y, x):
        return tuple(((view[:, y, x] * std + mean) * 255).round().int().tolist())

    assert colour(views[0], 0, 0) == colours["tl"]
    assert colour(views[1], 0, -1) == colours["tr"]
    assert colour(views[2], -1, 0) == colours["bl"]
    assert colour(views[3], -1, -1) == colours["br"]
    assert colour(views[4], 0, 0) == (128, 128, 128)  # the centre crop touches no corner
    assert colour(views[5], 0, 0) == colours["tr"]  # mirrored picture: its top-left is the top-right


def test_unknown_tta():
    with pytest.raises(ValueError, match="Unknown TTA"):
        tta_batch(lambda image: torch.zeros(3, 8, 8), None, "rotate")


def test_tencrop_needs_a_center_crop(photo):
    with pytest.raises(ValueError, match="CenterCrop"):
        tta_batch(lambda image: torch.zeros(3, 8, 8), photo, "tencrop")


def test_model_view_is_exactly_the_crop_the_model_sees(tiny_registry, senet_name, photo):
    """Feature-map overlays are drawn on this picture, so it must be the model's own resize + crop."""
    import torch
    from torchvision.transforms import functional as F

    from senet_demo.ensemble import model_view

    loaded = tiny_registry.get(senet_name)
    view = model_view(loaded.transform, photo)
    assert view.size == tuple(loaded.data_config["input_size"][1:][::-1])
    tensor = F.normalize(F.to_tensor(view), loaded.data_config["mean"], loaded.data_config["std"])
    torch.testing.assert_close(tensor, loaded.transform(photo))
