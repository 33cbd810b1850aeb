"""Services.model_status and model_states: where each model's weights are, and whether a missing one can still
be downloaded, without loading anything; the Hub is checked in the background, never at start."""
from __future__ import annotations

import http.server
import logging
import threading
import time

import pytest

from fixtures import folder_spec, free_port, make_config
from senet_demo import services as services_module
from senet_demo.config import ModelSpec
from senet_demo.services import (
    DOWNLOAD,
    HUB_OFFLINE,
    NOT_FOUND,
    OFFLINE,
    READY,
    UNREACHABLE_HUB,
    Services,
)
from senet_demo.weights import NOT_ON_HUB, REACHABLE, UNREACHABLE, probe_download

MISSING = "seresnext101_64x4d.gluon_in1k"
OTHER_MISSING = "resnet152d.gluon_in1k"


class Probe:
    """Stands in for the Hub: answers ``result`` for every SPEC, after ``delay`` seconds, and counts the calls."""

    def __init__(self, result: str, delay: float = 0.0):
        self.result, self.delay, self.asked = result, delay, []

    def __call__(self, spec: ModelSpec) -> str:
        self.asked.append(spec.name)
        time.sleep(self.delay)
        return self.result


def online_services(tmp_path, monkeypatch, specs, probe) -> Services:
    """Services started without --offline and without HF_HUB_OFFLINE (the tests' environment sets it)."""
    monkeypatch.setattr(services_module, "hub_offline", lambda: False)
    services = Services.create(make_config(tmp_path, specs, offline=False))
    services.probe = probe
    return services


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


def test_hub_model_online_downloads_on_first_use_when_the_hub_answers(tmp_path, monkeypatch):
    services = online_services(tmp_path, monkeypatch, [MISSING], Probe(REACHABLE))
    states = services.model_states(wait=10)
    assert states[MISSING].kind == DOWNLOAD and states[MISSING].usable
    assert "downloads on first use" in services.model_status()[MISSING]


def test_an_unreachable_hub_is_said_with_the_fix_and_asked_once(tmp_path, monkeypatch, resnet_name):
    probe = Probe(UNREACHABLE)
    services = online_services(tmp_path, monkeypatch, [resnet_name, MISSING, OTHER_MISSING], probe)
    states = services.model_states(wait=10)
    assert states[resnet_name].kind == READY
    for name in (MISSING, OTHER_MISSING):
        assert states[name].kind == UNREACHABLE_HUB and not states[name].usable
        assert "cannot be reached" in states[name].detail
        assert f"python -m senet_demo download {name}" in states[name].detail
        assert "--offline" not in states[name].detail  # the app was not started with it
    assert probe.asked == [MISSING]  # after one Hub model did not answer, the next is not tried
    assert "downloads on first use" not in services.model_status()[MISSING]


def test_a_repo_the_hub_does_not_have_is_named(tmp_path, monkeypatch):
    services = online_services(tmp_path, monkeypatch, ["resnet50d=hf-hub:nobody/nothing"], Probe(NOT_ON_HUB))
    state = services.model_states(wait=10)["resnet50d=hf-hub:nobody/nothing"]
    assert state.kind == NOT_FOUND and "has no such repo" in state.detail


def test_the_check_never_holds_the_caller(tmp_path, monkeypatch):
    probe = Probe(REACHABLE, delay=1.5)
    services = online_services(tmp_path, monkeypatch, [MISSING], probe)
    started = time.monotonic()
    assert services.model_states(wait=0) is None  # still checking: the caller is answered at once
    assert time.monotonic() - started < 1.0
    assert services.model_state(MISSING).kind == "checking"
    assert services.model_states(wait=10)[MISSING].kind == DOWNLOAD


def test_offline_modes_need_no_probe_and_name_their_own_fix(tmp_path, monkeypatch):
    probe = Probe(REACHABLE)
    flag = Services.create(make_config(tmp_path / "flag", [MISSING], offline=True))
    flag.probe = probe
    state = flag.model_states(wait=10)[MISSING]
    assert state.kind == OFFLINE and "--offline" in state.detail
    env = Services.create(make_config(tmp_path / "env", [MISSING], offline=False))  # HF_HUB_OFFLINE=1 is set
    env.probe = probe
    state = env.model_states(wait=10)[MISSING]
    assert state.kind == HUB_OFFLINE and "HF_HUB_OFFLINE" in state.detail and "--offline" not in state.detail
    assert probe.asked == []


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200
    methods: list = []

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        self.methods.append(("HEAD", self.path))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, expected", [(200, REACHABLE), (401, REACHABLE), (404, NOT_ON_HUB)])
def test_probe_asks_the_hub_with_one_head_request(status, expected):
    handler = type("Answer", (_Answer,), {"status": status, "methods": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        assert probe_download(ModelSpec.parse(MISSING), timeout=3, endpoint=endpoint) == expected
    finally:
        server.shutdown()
    assert handler.methods == [("HEAD", "/api/models/timm/seresnext101_64x4d.gluon_in1k")]


def test_probe_of_a_closed_port_is_unreachable_within_its_timeout():
    started = time.monotonic()
    result = probe_download(ModelSpec.parse(MISSING), timeout=2, endpoint=f"http://127.0.0.1:{free_port()}")
    assert result == UNREACHABLE and time.monotonic() - started < 3


def test_missing_local_source_online_is_reported_as_missing(tmp_path):
    spec = f"resnet50d={tmp_path / 'nowhere'}"
    _, status = status_for(tmp_path, [spec], offline=False)
    assert "does not exist" in status[spec]


def test_preload_loads_the_local_ensemble_and_skips_what_is_missing(tmp_path, tiny_resnet, caplog):
    missing = "resnet18.a1_in1k"  # offline, nowhere on disk
    services = Services.create(make_config(tmp_path, [folder_spec(tiny_resnet), missing]))
    with caplog.at_level(logging.INFO, logger="senet_demo.services"):
        services.preload().join(timeout=120)
        assert services.model_states(wait=30) is not None
    local = folder_spec(tiny_resnet)
    assert services.registry.is_loaded(local) and not services.registry.is_loaded(missing)
    assert services.engine.backend_name(local) == "torch"  # the backend was chosen too
    # the log's advice fits how the app was started (here: --offline)
    said = [r.message for r in caplog.records if missing in r.message]
    assert said and all("--offline" in message for message in said)


def test_the_log_speaks_of_hf_hub_offline_when_that_is_what_stops_downloads(tmp_path, caplog):
    services = Services.create(make_config(tmp_path, [MISSING], offline=False))  # HF_HUB_OFFLINE=1 is set
    with caplog.at_level(logging.INFO, logger="senet_demo.services"):
        services.preload().join(timeout=60)
        services.model_states(wait=30)
    said = [r.message for r in caplog.records if MISSING in r.message]
    assert said and all("HF_HUB_OFFLINE" in m and "without --offline" not in m for m in said)


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
    assert "ready (local)" in refresh.fn(None)  # no request: English
    services.engine.run(resnet_name, picture(0, (146, 110)))  # loads the model and picks its engine
    assert "loaded (local); engine: torch" in refresh.fn(None)  # no request: English


def test_a_page_load_reads_what_the_check_found_without_checking_again(tmp_path, monkeypatch, resnet_name):
    """Every page load asks for the states: the weights' headers are read once, by the background check, and a
    model loaded since is reported as loaded."""
    from senet_demo import models

    checked = []
    real_check = models.check
    monkeypatch.setattr(models, "check", lambda spec, weights: checked.append(spec.name) or real_check(spec, weights))
    services = Services.create(make_config(tmp_path, [resnet_name, MISSING]))
    first = services.model_states(wait=30)
    assert first[resnet_name].kind == READY and first[MISSING].kind == OFFLINE
    for _ in range(3):
        assert services.model_states(wait=0) == first
    assert checked == [resnet_name]
    services.registry.get(resnet_name)
    assert services.model_states(wait=0)[resnet_name].kind == "loaded"
