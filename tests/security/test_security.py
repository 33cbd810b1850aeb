"""Security: no pickle is ever executed, and no file outside the app's own folders can be read.

* Pickled checkpoints planted everywhere a weights file can come from are refused with a reason, and the
  code inside them never runs (its marker file never appears).
* Against a running app (launched as app.py launches it, ``allowed_paths(services)`` included): every GET
  route of the server that takes a path, with ``../``, encoded and absolute paths to a secret file outside
  the app's folders and to /etc/passwd; every event of the Blocks config (found from the config, so a new
  input is covered automatically) with file payloads pointing outside and with path-like names in every
  textbox and dropdown; uploaded file names and zip entries that climb out. The secret never comes back,
  no file appears outside, and the server keeps serving.
* A visitor's upload folder is deleted when the session ends.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import pickle
import re
import shutil
import socket
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from fixtures import export_tiny, folder_spec, free_port, make_config, pickle_trap, picture, remove_hf_cache, write_hf_cache
from PIL import PngImagePlugin

from senet_demo.config import ModelSpec
from senet_demo.models import ModelLoadError, ModelRegistry
from senet_demo.weights import WeightsNotFound, release_file, release_url_for

pytest.importorskip("gradio_client")

TOKEN = f"SECRET-{uuid.uuid4().hex}"  # in the secret files; must never appear in a response
PASSWD_LINE = "root:x:0:0"
HUB_ARCH = "resnet152d.gluon_in1k"
HUB_REPO = "timm/resnet152d.gluon_in1k"
RELEASE_ARCH = "legacy_seresnet18.in1k"


# ---------------------------------------------------------------- pickles: refused wherever they come from


def test_the_pickle_trap_is_live(tmp_path):
    """Control for the tests below: unpickling the trap really does create the marker."""
    marker = tmp_path / "unpickled"
    pickle.loads(pickle_trap(tmp_path / "trap.pkl", marker).read_bytes())
    assert marker.exists()


def _own_file(root, tiny, marker, name):
    return f"resnet50d={pickle_trap(root / name, marker)}", WeightsNotFound, ["is not a .safetensors file",
                                                                              "Pickled checkpoints are never loaded"]


def _own_folder_with_only_pickles(root, tiny, marker):
    folder = root / "old-style"
    folder.mkdir()
    shutil.copyfile(tiny.folder / "config.json", folder / "config.json")
    pickle_trap(folder / "pytorch_model.bin", marker)
    pickle_trap(folder / "model.pth", marker)
    return f"resnet50d={folder}", WeightsNotFound, ["has no model.safetensors", "Only safetensors weights are loaded"]


def _pickle_named_safetensors(root, tiny, marker):
    fake = pickle_trap(root / "model.safetensors", marker)
    shutil.copyfile(tiny.folder / "config.json", root / "config.json")
    return f"resnet50d={fake}", ModelLoadError, [f"{fake} is not a readable safetensors file"]


def _pickle_as_a_folders_safetensors(root, tiny, marker):
    folder = root / "disguised"
    folder.mkdir()
    shutil.copyfile(tiny.folder / "config.json", folder / "config.json")
    pickle_trap(folder / "model.safetensors", marker)
    return f"resnet50d={folder}", ModelLoadError, [f"{folder / 'model.safetensors'} is not a readable safetensors"]


def _weights_dir_with_only_pickles(root, tiny, marker):
    folder = root / "weights" / HUB_REPO.replace("/", "--")
    folder.mkdir(parents=True)
    shutil.copyfile(tiny.folder / "config.json", folder / "config.json")
    pickle_trap(folder / "pytorch_model.bin", marker)
    return HUB_ARCH, WeightsNotFound, ["holds no model.safetensors", "pickled weights are never loaded"]


def _weights_dir_pickle_named_safetensors(root, tiny, marker):
    folder = root / "weights" / HUB_REPO.replace("/", "--")
    folder.mkdir(parents=True)
    shutil.copyfile(tiny.folder / "config.json", folder / "config.json")
    pickle_trap(folder / "model.safetensors", marker)
    return HUB_ARCH, ModelLoadError, ["is not a readable safetensors file", f"download {HUB_ARCH}"]


def _hf_cache_pickle_named_safetensors(root, tiny, marker):
    snapshot = write_hf_cache(HUB_REPO, tiny)
    pickle_trap(snapshot / "model.safetensors", marker)
    return HUB_ARCH, ModelLoadError, [f"{snapshot / 'model.safetensors'} is not a readable safetensors file"]


def _release_file_in_weights_dir(root, tiny, marker):
    spec = ModelSpec.parse(RELEASE_ARCH)
    target = release_file(spec, release_url_for(spec), root / "weights")
    target.parent.mkdir(parents=True)
    pickle_trap(target, marker)
    return RELEASE_ARCH, ModelLoadError, [f"{target} holds more than tensors", "weights_only=True"]


def _release_file_in_torch_cache(root, tiny, marker):
    spec = ModelSpec.parse(RELEASE_ARCH)
    target = root / "torch-hub" / "checkpoints" / Path(release_url_for(spec)).name
    target.parent.mkdir(parents=True)
    pickle_trap(target, marker)
    return RELEASE_ARCH, ModelLoadError, [f"{target} holds more than tensors", "weights_only=True"]


PICKLE_PLACES = {
    **{f"own file {name}": (lambda r, t, m, name=name: _own_file(r, t, m, name))
       for name in ("model.pth", "pytorch_model.bin", "checkpoint.pt", "weights.ckpt", "model.pkl")},
    "own folder with only pickles": _own_folder_with_only_pickles,
    "own .safetensors that is a pickle": _pickle_named_safetensors,
    "own folder whose model.safetensors is a pickle": _pickle_as_a_folders_safetensors,
    "weights/ folder with only pytorch_model.bin": _weights_dir_with_only_pickles,
    "weights/ folder whose model.safetensors is a pickle": _weights_dir_pickle_named_safetensors,
    "HF cache snapshot whose model.safetensors is a pickle": _hf_cache_pickle_named_safetensors,
    "release .pth in weights/": _release_file_in_weights_dir,
    "release .pth in torch's cache": _release_file_in_torch_cache,
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("place", list(PICKLE_PLACES))
def test_a_pickle_is_refused_wherever_it_comes_from(place, tmp_path, tiny_resnet, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch-hub"))
    marker = tmp_path / "unpickled"
    try:
        spec, error, phrases = PICKLE_PLACES[place](tmp_path, tiny_resnet, marker)
        registry = ModelRegistry(make_config(tmp_path, [spec]))
        with pytest.raises(error) as caught:
            registry.get(spec)
        for phrase in [repr(spec), *phrases]:
            assert phrase in str(caught.value)
        from senet_demo.services import Services

        status = Services.create(make_config(tmp_path, [spec])).model_status()[spec]  # the startup check
        assert not status.startswith(("ready", "loaded")) or place.startswith("release")
    finally:
        remove_hf_cache(HUB_REPO)
    assert not marker.exists()


def test_a_folder_with_safetensors_ignores_pickles_beside_it(tmp_path, tiny_resnet):
    marker = tmp_path / "unpickled"
    folder = tiny_resnet.copy_to(tmp_path / "mixed")
    pickle_trap(folder / "pytorch_model.bin", marker)
    pickle_trap(folder / "model.pth", marker)
    spec = f"resnet50d={folder}"
    loaded = ModelRegistry(make_config(tmp_path, [spec])).get(spec)
    assert loaded.weights.weights_file == folder.resolve() / "model.safetensors"
    assert not marker.exists()


# ---------------------------------------------------------------- a running app



def _png_with_token(seed: int) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", TOKEN)
    buffer = io.BytesIO()
    picture(seed, (146, 110)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app as app.py launches it, over a tiny model and a two-label gallery; a secret folder beside."""
    from fixtures import RESNET_DATA

    from senet_demo.services import Services
    from senet_demo.ui import allowed_paths, build_demo

    root = tmp_path_factory.mktemp("security")
    tiny = export_tiny("resnet50d", root / "model", 0, RESNET_DATA)
    gallery = root / "gallery"
    for label in ("alpha", "beta"):
        (gallery / label).mkdir(parents=True)
        for i in range(2):
            picture(10 * len(label) + i, (146, 110)).save(gallery / label / f"{i}.png")
    secret = root / "secret"  # beside the gallery, outside every folder the app serves
    secret.mkdir()
    (secret / "secret.txt").write_text(TOKEN)
    (secret / "secret.png").write_bytes(_png_with_token(7))
    services = Services.create(make_config(root, [folder_spec(tiny)], gallery_dir=gallery))
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                allowed_paths=allowed_paths(services))
    try:
        yield {"demo": demo, "url": f"http://127.0.0.1:{port}", "port": port, "root": root, "gallery": gallery,
               "secret": secret, "services": services}
    finally:
        demo.close()


def _leaks(text: str) -> bool:
    return TOKEN in text or PASSWD_LINE in text


def _raw_get(port: int, path: str) -> tuple[int, str]:
    """GET exactly this path (no client-side normalisation of ../ or %2e)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode("latin-1")
    finally:
        conn.close()


def _path_payloads(app) -> list[str]:
    secret = app["secret"] / "secret.txt"
    gallery = app["gallery"]
    climb = "../" * 12 + str(secret).lstrip("/")
    beside = f"{gallery}/alpha/../../secret/secret.txt"
    return [
        str(secret), "/etc/passwd", climb, climb.replace("../", "..%2f"), climb.replace("../", "%2e%2e/"),
        climb.replace("../", "%2e%2e%2f"), climb.replace("../", "%252e%252e%252f"), climb.replace("../", "..\\"),
        climb.replace("../", "....//"), beside, beside.replace("/../", "/%2e%2e/"), f"{gallery}/alpha/0.png%00/../../../secret/secret.txt",
        "%2fetc%2fpasswd", "//etc/passwd", "file:///etc/passwd", f"file://{secret}",
    ]


def _get_routes(routes, prefix: str = ""):
    """Every GET route of the server, routers included (FastAPI nests them)."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _get_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif "GET" in (getattr(route, "methods", None) or ()):
            yield prefix + route.path


def _get_routes_with_params(app) -> list[str]:
    return sorted({path for path in _get_routes(app["demo"].server_app.routes) if "{" in path})


def test_every_get_route_that_takes_a_path_refuses_files_outside(app):
    routes = _get_routes_with_params(app)
    assert any("file=" in r for r in routes) and any("/file/" in r for r in routes)
    # control: the route does serve the gallery, so a refusal below is a refusal, not a broken route
    status, body = _raw_get(app["port"], f"/gradio_api/file={app['gallery']}/alpha/0.png")
    assert status == 200 and body.startswith("\x89PNG")

    tried = 0
    for route in routes:
        for payload in _path_payloads(app):
            path = re.sub(r"\{[^}:]+:path\}", lambda m, payload=payload: payload, route)  # the path parameter
            path = re.sub(r"\{[^}]+\}", lambda m, payload=payload: payload.replace("/", "%2f"), path)  # so do the others
            status, body = _raw_get(app["port"], path)
            tried += 1
            assert not _leaks(body), (path, status)
    assert tried >= 10 * len(_path_payloads(app))
    assert _raw_get(app["port"], "/")[0] == 200  # still serving


def _upload(app, files: list[tuple[str, bytes]]) -> list[str]:
    response = httpx.post(f"{app['url']}/gradio_api/upload",
                          files=[("files", (name, data, "application/octet-stream")) for name, data in files],
                          timeout=60)
    response.raise_for_status()
    return response.json()


def _file_data(path: str, name: str = "photo.png") -> dict:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def _run_event(app, fn_index: int, data: list, session_hash: str | None = None) -> tuple[bool, str]:
    """Run one event through the queue as the browser does; (success, every message the server sent)."""
    session_hash = session_hash or uuid.uuid4().hex[:12]
    joined = httpx.post(f"{app['url']}/gradio_api/queue/join", timeout=60, json={
        "data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None, "trigger_id": None})
    if joined.status_code != 200:
        return False, joined.text
    text = ""
    with httpx.stream("GET", f"{app['url']}/gradio_api/queue/data", params={"session_hash": session_hash},
                      timeout=120) as stream:
        for line in stream.iter_lines():
            text += line + "\n"
            if "process_completed" in line:
                message = json.loads(line.removeprefix("data:").strip())
                return bool(message.get("success")), text
    return False, text


def _files_in(text: str) -> list[str]:
    """Every file URL an event's output points at."""
    return sorted(set(re.findall(r'"url":\s*"([^"]+)"', text)))


def _events(app) -> list[tuple[int, list[dict]]]:
    config = app["demo"].config
    components = {c["id"]: c for c in config["components"]}
    return [(i, [components[c] for c in dep["inputs"]]) for i, dep in enumerate(config["dependencies"])]


def _benign(component: dict, photo: dict):
    props = component.get("props", {})
    kind = component["type"]
    if kind == "image":
        return photo
    if kind == "file":
        return [photo] if props.get("file_count") == "multiple" else photo
    if kind in ("dropdown", "radio"):
        choices = [c[1] if isinstance(c, (list, tuple)) else c for c in props.get("choices") or []]
        if props.get("multiselect"):
            return choices[:1]
        return choices[0] if choices else None
    if kind == "dataset":
        return 0
    return props.get("value")


def _hostile_files(app) -> list:
    secret = app["secret"]
    return [_file_data(str(secret / "secret.png")), _file_data(str(secret / "secret.txt")),
            _file_data("/etc/passwd"), _file_data("../" * 12 + str(secret / "secret.png").lstrip("/")),
            {"path": "x.png", "url": f"file://{secret / 'secret.png'}", "meta": {"_type": "gradio.FileData"}},
            str(secret / "secret.png")]


def _hostile_names(app) -> list[str]:
    secret = app["secret"]
    return [str(secret / "secret.txt"), "../" * 12 + "etc/passwd", "alpha/../../secret/secret.txt",
            "..%2f..%2fsecret%2fsecret.txt", "alpha/0.png\x00/../../secret/secret.txt", "a" * 5000, "/etc/passwd"]


def test_every_event_refuses_files_and_names_that_point_outside(app):
    photo = _file_data(_upload(app, [("photo.png", _png_with_token(3).replace(TOKEN.encode(), b"x" * len(TOKEN)))])[0])
    events = _events(app)
    kinds = {c["type"] for _, inputs in events for c in inputs}
    assert {"image", "file", "textbox", "dropdown"} <= kinds  # the inputs this test is about are all found
    file_attacks = name_attacks = 0
    for fn_index, inputs in events:
        benign = [_benign(c, photo) for c in inputs]
        for position, component in enumerate(inputs):
            kind = component["type"]
            if kind in ("image", "file"):
                for hostile in _hostile_files(app):
                    value = [hostile] if kind == "file" and component["props"].get("file_count") == "multiple" \
                        else hostile
                    success, text = _run_event(app, fn_index, benign[:position] + [value] + benign[position + 1:])
                    file_attacks += 1
                    assert not success, (fn_index, component["type"], hostile)  # refused before any handler
                    assert not _leaks(text)
            elif kind in ("textbox", "dropdown", "radio", "state", "dataset"):
                for hostile in _hostile_names(app):
                    value = [hostile] if component.get("props", {}).get("multiselect") else hostile
                    success, text = _run_event(app, fn_index, benign[:position] + [value] + benign[position + 1:])
                    name_attacks += 1
                    assert not _leaks(text), (fn_index, kind, hostile)
                    for url in _files_in(text):  # any file an answer points at is the app's own
                        assert not _leaks(httpx.get(url, timeout=30).content.decode("latin-1"))
    assert file_attacks and name_attacks
    assert not list(app["root"].glob("**/evil*"))
    assert _raw_get(app["port"], "/")[0] == 200


def _upload_event(app) -> int:
    config = app["demo"].config
    components = {c["id"]: c for c in config["components"]}
    found = [i for i, dep in enumerate(config["dependencies"])
             if [components[c]["type"] for c in dep["inputs"]] == ["file", "textbox", "state", "radio"]]  # radio: language
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("name", ["../../../../../../tmp/evil-{id}.png", "/tmp/evil-{id}.png",
                                  "..\\..\\..\\evil-{id}.png", "evil-{id}\x00.png", "evil-{id}" + "x" * 300 + ".png"])
def test_uploaded_file_names_that_climb_out_stay_inside(app, name):
    """Names with ../, absolute paths, backslashes, NUL bytes or 300 characters: stored under Gradio's
    cache, then copied into the session's folder under a safe name; nothing lands where the name points."""
    from senet_demo.uploads import SESSIONS_ROOT

    marker = uuid.uuid4().hex[:8]
    name = name.format(id=marker)
    try:
        paths = _upload(app, [(name, _png_with_token(4))])
    except httpx.HTTPStatusError:
        paths = []  # refused outright is fine too
    gradio_cache = Path(os.environ["GRADIO_TEMP_DIR"]).resolve()
    for path in paths:
        assert Path(path).resolve().is_relative_to(gradio_cache), path
    if paths:
        success, text = _run_event(app, _upload_event(app), [[_file_data(p, name) for p in paths], "../../evil", None, "en"])
        assert success, text
        assert "Added 1 image(s)" in text
        session_files = [p for p in SESSIONS_ROOT.rglob(f"*evil-{marker}*")]
        assert session_files and all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in session_files)
    for where in (Path("/tmp"), Path("/"), app["root"], Path.cwd()):  # where the names point
        assert not list(where.glob(f"*evil-{marker}*"))
    assert _raw_get(app["port"], "/")[0] == 200


def test_a_zip_whose_names_climb_out_is_refused_through_the_app(app):
    marker = uuid.uuid4().hex[:8]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("alpha/ok.png", _png_with_token(5))
        archive.writestr(f"../../../../../../tmp/evil-{marker}.png", _png_with_token(6))
        archive.writestr(f"/tmp/evil-{marker}-abs.png", _png_with_token(6))
    paths = _upload(app, [("photos.zip", buffer.getvalue())])
    success, text = _run_event(app, _upload_event(app), [[_file_data(paths[0], "photos.zip")], "label", None, "en"])
    assert not success and "points outside the archive" in text
    assert not list(Path("/tmp").glob(f"evil-{marker}*"))


# ---------------------------------------------------------------- session folders end with the session


def test_a_sessions_upload_folder_is_deleted_when_the_session_ends(app, monkeypatch):
    from senet_demo.uploads import SESSIONS_ROOT

    monkeypatch.setenv("GRADIO_IS_E2E_TEST", "1")  # Gradio keeps a closed session's state 1 s instead of 1 h
    session_hash = uuid.uuid4().hex[:12]
    # the browser's open heartbeat connection; closing it ends the session
    beat = socket.create_connection(("127.0.0.1", app["port"]), timeout=30)
    beat.sendall(f"GET /gradio_api/heartbeat/{session_hash} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert b"ALIVE" in beat.recv(4096) or b"ALIVE" in beat.recv(4096)
    before = set(SESSIONS_ROOT.glob("session-*"))
    label = f"mine-{session_hash}"  # other apps on this machine may open sessions meanwhile
    paths = _upload(app, [("mine.png", _png_with_token(8))])
    success, text = _run_event(app, _upload_event(app), [[_file_data(paths[0], "mine.png")], label, None, "en"],
                               session_hash=session_hash)
    assert success, text
    created = [f for f in set(SESSIONS_ROOT.glob("session-*")) - before if any(label in str(p) for p in f.rglob("*"))]
    assert len(created) == 1
    folder = created.pop()
    assert list(folder.rglob("*.png"))
    beat.close()
    deadline = time.monotonic() + 60
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not folder.exists()
