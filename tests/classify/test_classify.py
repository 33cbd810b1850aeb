"""classify(): members, weighted ensemble, missing or unusable members; the classify command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures import LABELS, make_config, pickle_trap, picture
from senet_demo.__main__ import main
from senet_demo.classify import classify
from senet_demo.ensemble import top_k
from senet_demo.services import Services

MISSING = "seresnext101_64x4d.gluon_in1k"  # never present: each test's weights/ and the HF cache are empty
OTHER_LABELS = ["cat", "dog", "horse", "cow", "sheep", "goat"]


@pytest.fixture(scope="module")
def other_classes(tmp_path_factory, tiny_senet):
    """The tiny SE model again, but predicting other classes (labels.txt beside it)."""
    folder = tiny_senet.copy_to(tmp_path_factory.mktemp("other") / "animals")
    (folder / "labels.txt").write_text("\n".join(OTHER_LABELS))
    return f"seresnext26d_32x4d={folder}"


def services_for(tmp_path, specs):
    return Services.create(make_config(tmp_path, specs))


def expected_ensemble(engine, names, image, weights, tta="none"):
    """The weighted mean of the members' probabilities, computed here from each member's own run."""
    probs = [engine.run(n, image, tta).probs.astype(np.float64) for n in names]
    w = np.array([weights.get(n, 1.0) for n in names], dtype=np.float64)
    return (w[:, None] * np.stack(probs)).sum(0) / w.sum()


# ---------------------------------------------------------------- the ensemble


@pytest.mark.parametrize("tta", ["none", "flip", "tencrop"])
def test_ensemble_is_the_mean_of_the_members(tiny_services, resnet_name, senet_name, photo, tta):
    result = classify(tiny_services.engine, photo, tta=tta)
    names = [resnet_name, senet_name]
    expected = expected_ensemble(tiny_services.engine, names, photo, {}, tta)
    assert result.tta == tta
    assert [p.index for p in result.ensemble] == list(np.argsort(-expected)[:5])
    assert [p.prob for p in result.ensemble] == pytest.approx(sorted(expected, reverse=True)[:5], abs=1e-6)
    assert all(p.label == LABELS[p.index] for p in result.ensemble)
    assert [m.name for m in result.members] == names
    for member in result.members:
        assert member.in_ensemble and member.error is None and member.weight == 1.0
        own = tiny_services.engine.run(member.name, photo, tta).probs
        assert member.top == top_k(own, LABELS, 5)
    assert result.agree == (result.members[0].top[0].index == result.members[1].top[0].index)
    assert result.note == ""


def test_the_image_is_hashed_once_for_all_members(tiny_services, monkeypatch):
    """The members' cache keys share one content hash of the image (4 ms for a phone photo at working size)."""
    import senet_demo.classify as classify_module
    import senet_demo.engine as engine_module
    from senet_demo.images import content_hash

    hashed = []

    def counting(image):
        hashed.append(image)
        return content_hash(image)

    monkeypatch.setattr(classify_module, "content_hash", counting)
    monkeypatch.setattr(engine_module, "content_hash", counting)
    image = picture(7, (90, 70))  # new to the engine's cache
    before = tiny_services.engine.forward_passes
    result = classify(tiny_services.engine, image)
    assert len(result.members) == 2 and tiny_services.engine.forward_passes == before + 2
    assert hashed == [image]
    classify(tiny_services.engine, image.copy())
    assert tiny_services.engine.forward_passes == before + 2  # same pixels: the cache


def test_member_weights(tiny_services, resnet_name, senet_name, photo):
    weights = {resnet_name: 0.8, senet_name: 0.2}
    result = classify(tiny_services.engine, photo, weights=weights, k=6)
    expected = expected_ensemble(tiny_services.engine, [resnet_name, senet_name], photo, weights)
    assert [p.prob for p in sorted(result.ensemble, key=lambda p: p.index)] == pytest.approx(expected, abs=1e-6)
    assert [m.weight for m in result.members] == [0.8, 0.2]


def test_zero_weight_member_is_shown_but_not_averaged(tiny_services, resnet_name, senet_name, photo):
    result = classify(tiny_services.engine, photo, weights={resnet_name: 0.0, senet_name: 1.0}, k=6)
    senet_probs = tiny_services.engine.run(senet_name, photo).probs
    assert [p.prob for p in sorted(result.ensemble, key=lambda p: p.index)] == pytest.approx(senet_probs, abs=1e-6)
    resnet = result.members[0]
    assert resnet.top and not resnet.in_ensemble
    assert result.members[1].in_ensemble


def test_all_weights_zero(tiny_services, resnet_name, senet_name, photo):
    with pytest.raises(RuntimeError, match="all weights are zero"):
        classify(tiny_services.engine, photo, weights={resnet_name: 0, senet_name: 0})


@pytest.mark.parametrize("k", [1, 3, 6, 50])
def test_top_k(tiny_services, photo, k):
    result = classify(tiny_services.engine, photo, k=k)
    assert len(result.ensemble) == min(k, len(LABELS))
    assert all(len(m.top) == min(k, len(LABELS)) for m in result.members)
    probs = [p.prob for p in result.ensemble]
    assert probs == sorted(probs, reverse=True)


def test_members_with_other_classes_are_not_averaged(tmp_path, resnet_name, other_classes, photo):
    services = services_for(tmp_path, [resnet_name, other_classes])
    result = classify(services.engine, photo)
    resnet, animals = result.members
    assert resnet.in_ensemble and not animals.in_ensemble
    assert {p.label for p in animals.top} <= set(OTHER_LABELS)
    assert other_classes in result.note and "not averaged" in result.note
    assert result.ensemble == resnet.top


def test_zero_weight_member_does_not_decide_the_classes(tmp_path, resnet_name, other_classes, photo):
    """With the first member weighted 0, the second (other classes) is the ensemble, not an outcast."""
    services = services_for(tmp_path, [resnet_name, other_classes])
    result = classify(services.engine, photo, weights={resnet_name: 0.0})
    resnet, animals = result.members
    assert animals.in_ensemble and not resnet.in_ensemble
    assert result.ensemble == animals.top
    assert result.note == ""


# ---------------------------------------------------------------- members that cannot answer


def test_missing_member_leaves_the_other_classifying(tmp_path, resnet_name, photo):
    services = services_for(tmp_path, [resnet_name, MISSING])
    result = classify(services.engine, photo)
    present, missing = result.members
    assert missing.error and MISSING in missing.error and f"python -m senet_demo download {MISSING}" in missing.error
    assert missing.top == [] and not missing.in_ensemble
    assert present.error is None and present.in_ensemble
    assert result.ensemble == present.top
    assert result.agree is None  # only one member answered
    as_dict = json.loads(json.dumps(result.as_dict()))
    assert as_dict["members"][MISSING]["error"] == missing.error
    assert "error" not in as_dict["members"][resnet_name]


def test_pickle_member_is_refused_and_never_unpickled(tmp_path, resnet_name, photo):
    marker = tmp_path / "unpickled"
    trap = pickle_trap(tmp_path / "landmarks.pth", marker)
    services = services_for(tmp_path, [f"resnet50d={trap}", resnet_name])
    result = classify(services.engine, photo)
    assert "never loaded" in result.members[0].error
    assert result.members[1].in_ensemble
    assert not marker.exists()


def test_member_without_hub_weights_is_reported(tmp_path, resnet_name, photo):
    services = services_for(tmp_path, ["no_such_architecture", resnet_name])
    result = classify(services.engine, photo)
    assert "no_such_architecture" in result.members[0].error
    assert result.members[1].in_ensemble and result.ensemble == result.members[1].top


def test_all_members_missing(tmp_path, photo):
    services = services_for(tmp_path, [MISSING, "resnet152d.gluon_in1k"])
    with pytest.raises(RuntimeError) as caught:
        classify(services.engine, photo)
    assert MISSING in str(caught.value) and "resnet152d.gluon_in1k" in str(caught.value)


def test_as_dict_is_json(tiny_services, resnet_name, photo):
    result = classify(tiny_services.engine, photo, tta="flip", k=2)
    data = json.loads(json.dumps(result.as_dict()))
    assert data["tta"] == "flip" and data["agree"] == result.agree
    assert data["ensemble"] == [p.as_dict() for p in result.ensemble]
    member = data["members"][resnet_name]
    assert member["in_ensemble"] is True and member["weight"] == 1.0
    assert [p["label"] for p in member["top"]] == [p.label for p in result.members[0].top]


# ---------------------------------------------------------------- the classify command (in process)


def test_cli_classify_json(tmp_path, capsys, tiny_services, resnet_name, senet_name, photo, photo_png):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    code = main(["classify", "--offline", "--weights-dir", str(tmp_path), "--model", resnet_name,
                 "--model", senet_name, "--tta", "flip", "--top", "3", "--json", str(photo_png), str(text)])
    assert code == 1  # one of the inputs failed
    output = json.loads(capsys.readouterr().out)
    assert set(output) == {str(photo_png), str(text)}
    assert "not an image" in output[str(text)]["error"]
    expected = classify(tiny_services.engine, photo, tta="flip", k=3).as_dict()
    got = output[str(photo_png)]
    assert got["tta"] == "flip" and list(got["members"]) == [resnet_name, senet_name]
    assert [p["index"] for p in got["ensemble"]] == [p["index"] for p in expected["ensemble"]]
    assert [p["prob"] for p in got["ensemble"]] == pytest.approx([p["prob"] for p in expected["ensemble"]], abs=1e-6)


def test_cli_classify_table_with_a_missing_model(tmp_path, capsys, resnet_name, photo_png):
    code = main(["classify", "--offline", "--weights-dir", str(tmp_path), "--model", resnet_name,
                 "--model", MISSING, str(photo_png)])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith(str(photo_png))
    assert "ensemble: " in out and "python -m senet_demo download" in out
    assert any(label in out for label in LABELS)


def test_cli_bad_model_spec_is_a_usage_error(capsys, photo_png):
    with pytest.raises(SystemExit) as caught:
        main(["classify", "--offline", "--model", "bad/arch", str(photo_png)])
    assert caught.value.code == 2
    assert "Bad architecture" in capsys.readouterr().err



def test_cli_download_failure_is_a_message_not_a_traceback(tmp_path, capsys):
    # HF_HUB_OFFLINE=1: the download fails at once, without touching the network.
    code = main(["download", "--weights-dir", str(tmp_path), "resnet50d=hf-hub:nobody/nothing"])
    assert code == 1
    err = capsys.readouterr().err
    assert "Could not download 'resnet50d=hf-hub:nobody/nothing'" in err
    assert not (tmp_path / "nobody--nothing" / "model.safetensors").exists()


def test_cli_download_of_a_local_source_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["download", "--weights-dir", str(tmp_path), f"resnet50d={tmp_path}"])
    assert caught.value.code == 2
    assert "nothing to download" in capsys.readouterr().err


def test_cli_download_with_offline_says_why_it_cannot(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["download", "--offline", "--weights-dir", str(tmp_path)])
    assert caught.value.code == 2
    assert "without --offline" in capsys.readouterr().err


def test_cli_with_missing_weights_prints_the_fix_and_fails(tmp_path, capsys, photo_png):
    code = main(["explain", "--offline", "--weights-dir", str(tmp_path), str(photo_png)])
    assert code == 1
    err = capsys.readouterr().err
    assert "seresnext101_64x4d.gluon_in1k" in err and "python -m senet_demo download" in err
    assert "Traceback" not in err

    code = main(["classify", "--offline", "--weights-dir", str(tmp_path), "--json", str(photo_png)])
    assert code == 1, "every model failed: the command must not report success"


# --- fail safe: numbers are checked; nothing shown depends on other visitors' requests ------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, 1.5, "heavy", None, True])
def test_a_member_weight_must_be_finite_and_in_range(tiny_services, resnet_name, photo, bad):
    from senet_demo.config import InputError

    before = tiny_services.engine.forward_passes
    with pytest.raises(InputError) as refused:
        classify(tiny_services.engine, photo, weights={resnet_name: bad})
    assert str(refused.value) == f"The weight of {resnet_name} must be a number from 0 to 1, not {bad!r}."
    assert tiny_services.engine.forward_passes == before  # refused before any model ran


@pytest.mark.parametrize("bad", [0, -1, 2.5, float("nan"), 10_001])
def test_k_must_be_a_whole_number_in_range(tiny_services, photo, bad):
    from senet_demo.config import InputError

    with pytest.raises(InputError, match=r"^k \(how many classes to show\) must be a whole number from 1 to 1000"):
        classify(tiny_services.engine, photo, k=bad)


def test_a_slider_value_is_a_whole_k(tiny_services, photo):
    assert len(classify(tiny_services.engine, photo, k=3.0).ensemble) == 3


def test_the_answer_does_not_say_whether_another_request_was_served_first(tiny_services, photo):
    """Visitor B must not learn that visitor A sent the same picture: the first and the repeated answer are equal."""
    image = picture(11, (77, 66))  # new to the engine's cache
    first = classify(tiny_services.engine, image).as_dict()
    repeated = classify(tiny_services.engine, image.copy()).as_dict()
    assert first == repeated
    assert all("cached" not in member for member in first["members"].values())
