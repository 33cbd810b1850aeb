"""Services.model_status: where each model's weights are, without loading or downloading anything."""
from __future__ import annotations


from fixtures import make_config
from senet_demo.services import Services

MISSING = "seresnext101_64x4d.gluon_in1k"


def status_for(tmp_path, specs, **config):
    services = Services.create(make_config(tmp_path, specs, **config))
    return services, services.model_status()


def test_status_of_present_missing_and_unknown_models(tmp_path, resnet_name):
    services, status = status_for(tmp_path, [resnet_name, MISSING, "no_such_architecture"])
    assert list(status) == [resnet_name, MISSING, "no_such_architecture"]
    assert status[resnet_name] == "ready (local)"
    assert MISSING in status[MISSING] and f"python -m senet_demo download {MISSING}" in status[MISSING]
    assert "timm has no architecture called 'no_such_architecture'" in status["no_such_architecture"]
    assert not any(services.registry.is_loaded(name) for name in status)  # nothing was loaded


def test_status_of_a_loaded_model(tiny_services, resnet_name):
    tiny_services.registry.get(resnet_name)
    assert tiny_services.model_status()[resnet_name] == "loaded (local); engine: torch"


def test_hub_model_online_downloads_on_first_use(tmp_path):
    _, status = status_for(tmp_path, [MISSING], offline=False)
    assert "downloads on first use" in status[MISSING]


def test_missing_local_source_online_is_reported_as_missing(tmp_path):
    spec = f"resnet50d={tmp_path / 'nowhere'}"
    _, status = status_for(tmp_path, [spec], offline=False)
    assert "does not exist" in status[spec]


def test_preload_loads_the_local_ensemble_and_skips_what_is_missing(tmp_path, tiny_resnet, caplog):
    import logging

    from fixtures import folder_spec

    missing = "resnet18.a1_in1k"  # offline, nowhere on disk
    services = Services.create(make_config(tmp_path, [folder_spec(tiny_resnet), missing]))
    with caplog.at_level(logging.INFO, logger="senet_demo.services"):
        services.preload().join(timeout=120)
    local = folder_spec(tiny_resnet)
    assert services.registry.is_loaded(local) and not services.registry.is_loaded(missing)
    assert services.engine.backend_name(local) == "torch"  # the backend was chosen too
    assert any(missing in r.message and "not preloaded" in r.message for r in caplog.records)


def test_a_config_json_timm_cannot_build_is_named_not_raised(tmp_path, tiny_resnet):
    import json

    folder = tiny_resnet.copy_to(tmp_path / "odd")
    config = json.loads((folder / "config.json").read_text())
    config["model_args"] = {**config.get("model_args", {}), "made_up_width": 3}
    (folder / "config.json").write_text(json.dumps(config))
    spec = f"{tiny_resnet.arch}={folder}"
    _, status = status_for(tmp_path, [spec])
    assert "timm cannot build its architecture" in status[spec] and "made_up_width" in status[spec]
    assert f"'architecture' and 'model_args' in {folder / 'config.json'}" in status[spec]


def test_the_models_panel_is_read_again_when_opened(tmp_path, resnet_name):
    from fixtures import picture
    from senet_demo.ui import build_demo

    services = Services.create(make_config(tmp_path, [resnet_name]))
    demo = build_demo(services)
    (refresh,) = [fn for fn in demo.fns.values() if fn.targets and fn.targets[0][1] == "expand"]
    assert "ready (local)" in refresh.fn()
    services.engine.run(resnet_name, picture(0, (146, 110)))  # loads the model and picks its engine
    assert "loaded (local); engine: torch" in refresh.fn()
