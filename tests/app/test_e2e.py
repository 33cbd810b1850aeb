"""The running app: launch it, call /classify over HTTP with gradio_client, survive bad uploads."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fixtures import REPO_ROOT, free_port, make_config
from senet_demo.classify import classify
from senet_demo.images import load_image
from senet_demo.services import Services
from senet_demo.ui import build_demo

MISSING = "seresnext101_64x4d.gluon_in1k"



@pytest.fixture(scope="module")
def app(tmp_path_factory, resnet_name, senet_name):
    """The app over the two tiny models, served on 127.0.0.1; closed after the module."""
    services = Services.create(make_config(tmp_path_factory.mktemp("e2e"), [resnet_name, senet_name]))
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield services, f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app[1], verbose=False, download_files=False)


def confidences(label_output: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label_output["confidences"]}


def test_classify_endpoint_with_just_an_image(app, client, photo_png):
    from gradio_client import handle_file

    services, _ = app
    ensemble, summary, *members = client.predict(handle_file(str(photo_png)), api_name="/classify")

    expected = classify(services.engine, load_image(photo_png), k=5)  # defaults: tta none, weights 1
    assert ensemble["label"] == expected.ensemble[0].label
    got = confidences(ensemble)
    assert list(got) == [p.label for p in expected.ensemble]
    assert list(got.values()) == pytest.approx([p.prob for p in expected.ensemble], abs=1e-6)
    assert "TTA: none" in summary
    assert len(members) == 2
    for output, member in zip(members, expected.members):
        assert output["label"] == member.top[0].label


def test_non_image_upload_is_an_error_and_the_server_keeps_serving(app, client, tmp_path, photo_png):
    from gradio_client import handle_file

    bogus = tmp_path / "holiday.jpg"
    bogus.write_bytes(b"This is a text file pretending to be a JPEG.\n" * 20)
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client.predict(handle_file(str(bogus)), api_name="/classify")
    assert "not an image" in str(caught.value)

    ensemble, *_ = client.predict(handle_file(str(photo_png)), api_name="/classify")
    assert ensemble["label"] == classify(app[0].engine, load_image(photo_png)).ensemble[0].label


def test_app_starts_with_a_missing_model_and_says_so(tmp_path, resnet_name):
    services = Services.create(make_config(tmp_path, [resnet_name, MISSING]))
    demo = build_demo(services)
    (open_models,) = [fn for fn in demo.fns.values() if fn.targets and fn.targets[0][1] == "expand"]
    status = open_models.fn(None)  # the Models panel, as it reads when opened (no request: English)
    assert MISSING in status and "python -m senet_demo download" in status, status
    assert resnet_name in status
    demo.close()


def test_app_help_lists_the_flags():
    done = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO_ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for flag in ("--port", "--host", "--share", "--model", "--offline"):
        assert flag in done.stdout


IMPORT_OFFLINE = """
import socket
import senet_demo.models as models

def refuse(*args, **kwargs):
    raise AssertionError("the network was used")

socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
loaded = []
real_get = models.ModelRegistry.get
models.ModelRegistry.get = lambda self, name: loaded.append(name) or real_get(self, name)

import app

print(type(app.demo).__module__, type(app.demo).__name__, loaded)
"""


def test_importing_app_builds_demo_without_network_or_weights():
    """`import app` (what `gradio app.py` and Spaces rely on) builds the Blocks from the defaults: the default
    ensemble's weights are nowhere on this machine, so a download or a model load would show here."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", IMPORT_OFFLINE], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "gradio.blocks Blocks []"


def _refused(capsys, argv) -> str:
    import app

    with pytest.raises(SystemExit) as stopped:
        app.main(argv)
    assert stopped.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and message.startswith("app.py: error: "), message
    return message


def test_an_invalid_port_is_refused_in_one_line(capsys):
    assert "--port 70000 is not a port number (1-65535)" in _refused(capsys, ["--offline", "--port", "70000"])


def test_a_busy_port_is_refused_in_one_line(capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = _refused(capsys, ["--offline", "--host", "127.0.0.1", "--port", str(port)])
    assert f"port {port} on 127.0.0.1 is not free" in message and "--port" in message


def test_a_bad_port_from_the_command_line_exits_with_status_2():
    done = subprocess.run([sys.executable, "app.py", "--port", "70000"], cwd=REPO_ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "app.py: error: --port 70000 is not a port number (1-65535); pick one, e.g. --port 7861."]
