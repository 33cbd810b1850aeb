"""Converting foreign checkpoints: tensors only, matched by order and shape, written in the Hub layout."""
from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from fixtures import make_config, pickle_trap, read_json
from senet_demo.convert import convert_by_order, export_folder, load_checkpoint
from senet_demo.models import ModelRegistry


@pytest.fixture(scope="module")
def foreign_state():
    """A test_resnet checkpoint whose tensors carry another library's names (same order, same shapes)."""
    import timm

    torch.manual_seed(7)
    model = timm.create_model("test_resnet", num_classes=4).eval()
    return model, {f"backbone.param_{i:03d}": t.clone() for i, t in enumerate(model.state_dict().values())}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_checkpoint_never_unpickles(tmp_path):
    marker = tmp_path / "unpickled"
    trap = pickle_trap(tmp_path / "foreign.pth", marker)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(trap)
    assert not marker.exists()


@pytest.mark.parametrize("wrapped", [False, True])
def test_load_checkpoint_tensors_only_torch_file(tmp_path, foreign_state, wrapped):
    _, state = foreign_state
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": state} if wrapped else state, path)
    loaded = load_checkpoint(path)
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_load_checkpoint_safetensors(tmp_path, foreign_state):
    _, state = foreign_state
    save_file(state, str(tmp_path / "foreign.safetensors"))
    loaded = load_checkpoint(tmp_path / "foreign.safetensors")
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)


def test_convert_by_order_maps_every_tensor(foreign_state):
    original, state = foreign_state
    converted = convert_by_order(state, "test_resnet", num_classes=4)
    assert not converted.training
    for (name, tensor), expected in zip(converted.state_dict().items(), original.state_dict().values()):
        assert torch.equal(tensor, expected), name
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(converted(x), original(x), atol=1e-6)


def test_convert_by_order_rejects_other_counts_and_shapes(foreign_state):
    _, state = foreign_state
    fewer = dict(list(state.items())[:-1])
    with pytest.raises(ValueError, match="tensors"):
        convert_by_order(fewer, "test_resnet", num_classes=4)
    with pytest.raises(ValueError, match="Shape mismatch"):
        convert_by_order(state, "test_resnet", num_classes=5)  # the head has 4 rows


def test_export_folder_loads_as_a_spec(tmp_path, foreign_state):
    original, state = foreign_state
    labels = ["north", "east", "south", "west"]
    folder = export_folder(convert_by_order(state, "test_resnet", num_classes=4), tmp_path / "out", labels)
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    assert read_json(folder / "config.json")["architecture"] == "test_resnet"
    spec = f"test_resnet={folder}"
    loaded = ModelRegistry(make_config(tmp_path, [spec])).get(spec)
    assert loaded.labels == labels
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), original(x), atol=1e-6)
