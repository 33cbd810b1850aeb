"""Model SPEC parsing and the app configuration."""
from __future__ import annotations

import pytest

from senet_demo.config import DEFAULT_MODELS, AppConfig, ModelSpec, SpecError


def test_arch_only_spec():
    spec = ModelSpec.parse("resnet152d.gluon_in1k")
    assert (spec.arch, spec.source) == ("resnet152d.gluon_in1k", None)
    assert spec.name == "resnet152d.gluon_in1k"


@pytest.mark.parametrize(
    "text, arch, source",
    [
        ("resnet50d=hf-hub:org/name", "resnet50d", "hf-hub:org/name"),
        ("tf_efficientnet_lite0=/models/lite0", "tf_efficientnet_lite0", "/models/lite0"),
        ("resnet50d=/models/landmarks.safetensors", "resnet50d", "/models/landmarks.safetensors"),
        ("  resnet50d = /models/my folder  ", "resnet50d", "/models/my folder"),
        ("resnet50d=/models/a=b", "resnet50d", "/models/a=b"),  # only the first '=' separates
    ],
)
def test_arch_source_spec(text, arch, source):
    spec = ModelSpec.parse(text)
    assert (spec.arch, spec.source) == (arch, source)
    assert spec.name == f"{arch}={source}"
    assert ModelSpec.parse(spec.name) == spec  # the display name is itself a SPEC


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "Empty"),
        ("   ", "Empty"),
        ("=/models/x", "architecture"),
        ("timm/resnet50d", "architecture"),
        ("hf-hub:timm/resnet50d", "architecture"),
        ("res net50d", "architecture"),
        ("resnet50d=", "no SOURCE"),
        ("resnet50d=hf-hub:resnet50d", "hf-hub:org/name"),
        ("resnet50d=hf-hub:a/b/c", "hf-hub:org/name"),
        ("resnet50d=hf-hub:/name", "hf-hub:org/name"),
        ("resnet50d=hf-hub:org/", "hf-hub:org/name"),
        ("resnet50d=hf-hub:", "hf-hub:org/name"),
    ],
)
def test_malformed_specs_raise_spec_error(text, reason):
    with pytest.raises(SpecError, match=reason):
        ModelSpec.parse(text)


def test_spec_error_is_a_value_error():
    # The UI shows ValueErrors to the visitor as readable messages.
    assert issubclass(SpecError, ValueError)


def test_from_specs_defaults_to_the_default_ensemble():
    config = AppConfig.from_specs(None)
    assert [m.name for m in config.models] == list(DEFAULT_MODELS)
    assert [m.name for m in AppConfig.from_specs([]).models] == list(DEFAULT_MODELS)


def test_from_specs_replaces_the_ensemble_in_order(tmp_path):
    config = AppConfig.from_specs(["b_model=/x", "a_model"], offline=True, weights_dir=tmp_path)
    assert [m.name for m in config.models] == ["b_model=/x", "a_model"]
    assert config.offline is True and config.weights_dir == tmp_path


def test_from_specs_rejects_a_bad_spec():
    with pytest.raises(SpecError):
        AppConfig.from_specs(["resnet50d", "bad/arch"])


def test_configs_do_not_share_mutable_defaults():
    first, second = AppConfig(), AppConfig()
    first.models.append(ModelSpec.parse("resnet50d"))
    assert len(second.models) == len(DEFAULT_MODELS)


def test_unusable_engine_and_worker_settings_are_named(monkeypatch):
    from senet_demo.config import AppConfig, QueueSettings

    monkeypatch.setenv("SENET_ENGINE", "tensorrt")
    with pytest.raises(ValueError, match=r"Unknown engine 'tensorrt' \(from --engine or SENET_ENGINE\)"):
        AppConfig()
    monkeypatch.setenv("SENET_INFERENCE_WORKERS", "two")
    with pytest.raises(ValueError, match="SENET_INFERENCE_WORKERS='two' is not a whole number"):
        QueueSettings()


def test_app_refuses_an_unusable_setting_with_a_message_not_a_traceback(monkeypatch, capsys):
    import app
    from fixtures import free_port

    monkeypatch.setenv("SENET_ENGINE", "tensorrt")
    with pytest.raises(SystemExit) as stopped:
        app.main(["--offline", "--port", str(free_port())])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.startswith("app.py: error: SENET_ENGINE='tensorrt' is not an engine")
