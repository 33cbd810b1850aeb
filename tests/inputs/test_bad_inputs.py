"""The bad-input corpus against the running app: every awkward file through every endpoint that takes an image.

The app (two tiny models, a small labelled gallery) is served on 127.0.0.1 the way app.py serves it, and
called with gradio_client. A refused file must give an AppError whose message names the file, says what
is wrong and what to do; an odd but valid file must give exactly the answer its plain-PNG reference gives
(the same decoded pixels), and not the answer a careless decoder would give. After every refusal a good
photo still gets its answer: the server keeps serving. The gallery-upload zips go through the Retrieve
tab's own upload handler on the same running app (that event is not part of the public API).
"""
from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest
from fixtures import write_corpus, write_zips
from fixtures import free_port
from fixtures import make_gallery

pytest.importorskip("gradio_client")

ENDPOINTS = ("/classify", "/retrieve", "/explain")

# case -> what the visitor reads (a regex over the whole message)
REFUSED = {
    "empty": r"^empty\.jpg is an empty file \(0 bytes\); upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo\.$",
    "text_as_jpg": r"^notes\.jpg is not an image this app reads \(it looks like a text file\); upload a JPEG, PNG",
    "pdf_as_jpg": r"^invoice\.jpg is not an image this app reads \(it looks like a PDF document\); upload a JPEG",
    "truncated_jpeg": r"^cut\.jpg is truncated or corrupt \(image file is truncated .*\); re-save it as JPEG or PNG",
    "bomb": r"^bomb\.png has too many pixels: 40,000×40,000 = 1,600,000,000 > 40,000,000; scale it down",
    "one_pixel": r"^dot\.png is too small: 1×1 px; each side needs at least 8 px\.$",
    "heic": r"^IMG_0001\.heic is a HEIC photo, which this app does not read: convert it to JPEG or PNG",
    "avif": r"^photo\.avif is an AVIF image, which this app does not read: convert it to JPEG or PNG",
    "oversized": r"^huge\.jpg is too big: 21\.0 MB > 20\.0 MB; scale it down or save it as JPEG",
    # every model would resize it to a 256 px short side: 128,000 px long
    "strip": r"^strip\.png is too long and narrow: 10,000×20 px, a ratio of 500:1 \(at most 10:1\); crop it",
}
WITH_REFERENCE = ("png16", "palette_alpha", "animated_gif", "exif_rotated", "webp")  # decoded == reference
DECODED_IN_PROCESS = ("cmyk_jpeg",)  # valid; the answer equals the app's own in-process one


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    corpus = write_corpus(folder)
    huge = folder / "huge.jpg"  # over the 20 MB image limit; under Gradio's upload limit
    huge.write_bytes(b"\xff\xd8\xff\xe0" + bytes(21 * 2**20 - 4))
    corpus.files["oversized"] = huge
    return corpus


@pytest.fixture(scope="module")
def app(tmp_path_factory, resnet_name, senet_name):
    """The app as app.py launches it (same upload limit), over two tiny models and a 2-label gallery."""
    from gradio_client import Client
    from fixtures import make_config

    from senet_demo.services import Services
    from senet_demo.ui import allowed_paths, build_demo

    root = tmp_path_factory.mktemp("bad-inputs")
    gallery = make_gallery(root / "gallery", {"cat": 2, "dog": 2})
    services = Services.create(make_config(root, [resnet_name, senet_name], gallery_dir=gallery))
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=services.config.limits.max_upload_total_bytes, allowed_paths=allowed_paths(services))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
        yield {"services": services, "demo": demo, "client": client, "root": root}
    finally:
        demo.close()


def call(app, endpoint: str, path: Path):
    from gradio_client import handle_file

    return app["client"].predict(handle_file(str(path)), api_name=endpoint)


def answer(app, endpoint: str, path: Path):
    """What a person would compare: top-5 with probabilities / ranked captions / the excitation map."""
    outputs = call(app, endpoint, path)
    if endpoint == "/classify":
        ensemble, _, *members = outputs
        return [(c["label"], round(c["confidence"], 6)) for c in ensemble["confidences"]], \
               [m["label"] for m in members]
    if endpoint == "/retrieve":
        gallery, _ = outputs
        return [entry["caption"] for entry in gallery]
    steps_text, steps_plot, _scale, pictures, _map_text, excitation_map, *_ = outputs
    assert "SE blocks" in steps_text
    # the before/after pictures of the block's channels, served as PNG files
    assert pictures and all(p["image"]["path"].endswith(".png") for p in pictures)
    drawn = [hashlib.sha256(Path(p["image"]["path"]).read_bytes()).hexdigest() for p in pictures]
    return steps_plot["plot"], excitation_map["plot"], [p["caption"] for p in pictures], drawn


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from fixtures import picture

    path = tmp_path_factory.mktemp("good") / "good.png"
    picture(11, (96, 72)).save(path)
    return path


@pytest.fixture(scope="module")
def baseline(app, good):
    return {endpoint: answer(app, endpoint, good) for endpoint in ENDPOINTS}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_file_is_refused_with_a_clear_message_and_the_server_keeps_serving(app, corpus, good, baseline,
                                                                                  endpoint, case):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        call(app, endpoint, corpus.files[case])
    message = str(caught.value)
    assert re.search(REFUSED[case], message), message
    assert "Traceback" not in message and str(corpus.files[case].parent) not in message  # no server internals
    assert answer(app, endpoint, good) == baseline[endpoint]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("case", WITH_REFERENCE)
def test_an_odd_but_valid_image_gives_the_answer_of_what_it_shows(app, corpus, endpoint, case):
    got = answer(app, endpoint, corpus.files[case])
    assert got == answer(app, endpoint, corpus.references[case])
    if case in corpus.wrong:  # the first frame, not the second; upright, not sideways; alpha on white, not black
        assert got != answer(app, endpoint, corpus.wrong[case])


@pytest.mark.parametrize("case", DECODED_IN_PROCESS)
def test_a_cmyk_jpeg_is_classified(app, corpus, case):
    from senet_demo.classify import classify
    from senet_demo.images import load_image

    picture = load_image(corpus.files[case])
    assert picture.getpixel((10, 36))[0] > 200 > picture.getpixel((80, 36))[0]  # red left, green right
    expected = classify(app["services"].engine, picture, k=5)
    labels, _ = answer(app, "/classify", corpus.files[case])
    assert labels == [(p.label, round(p.prob, 6)) for p in expected.ensemble]
    for endpoint in ("/retrieve", "/explain"):
        assert answer(app, endpoint, corpus.files[case])  # an answer, not an error


# --- gallery uploads ------------------------------------------------------------------------------------------

ZIP_REFUSED = {
    "dotdot": r"^holiday\.zip was rejected: its entry '\.\./\.\./escaped\.png' points outside the archive\. "
              r"Nothing was added\.$",
    "ten_thousand": r"^many\.zip lists 10,000 files; at most 200 images go in one upload, so nothing was added\.",
    "big_member": r"^big\.zip was rejected: 'beach/huge\.png' unpacks to 21\.0 MB, and an image may have at "
                  r"most 20\.0 MB\. Nothing was added\.$",
    "lying_header": r"^liar\.zip is damaged or does not match its own directory \(Bad CRC-32 .*\); nothing was added",
}


@pytest.fixture(scope="module")
def zips(app, tmp_path_factory):
    return write_zips(tmp_path_factory.mktemp("zips"), app["services"].config.limits.max_image_bytes)


@pytest.fixture
def on_upload(app):
    """The Retrieve tab's upload handler, as the running app registered it."""
    import functools

    from senet_demo.ui.retrieve_tab import add_uploads

    return functools.partial(add_uploads, app["services"])


@pytest.mark.parametrize("case", list(ZIP_REFUSED))
def test_a_hostile_zip_is_refused_whole_and_leaves_nothing_behind(app, zips, on_upload, case, monkeypatch, tmp_path):
    import gradio as gr

    from senet_demo import uploads

    sessions = tmp_path / "sessions"
    monkeypatch.setattr(uploads, "SESSIONS_ROOT", sessions)
    opened = []
    original_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(name) or
                        original_open(self, name, *a, **k))
    before = set(zips[case].parent.iterdir())

    with pytest.raises(gr.Error) as caught:
        on_upload([str(zips[case])], "mine", None)
    assert re.search(ZIP_REFUSED[case], caught.value.message), caught.value.message
    if case in ("ten_thousand", "big_member"):  # refused from the zip's directory, before extracting anything
        assert opened == []
    assert not sessions.exists() or list(sessions.iterdir()) == []  # not even an empty session folder
    assert set(zips[case].parent.iterdir()) == before  # nothing extracted beside the zip
    assert not list(tmp_path.rglob("escaped*")) and not list(Path(app["root"]).rglob("escaped*"))

    # an existing session keeps its images when a later zip is refused
    photo = Path(app["services"].gallery()[0].path)
    state, _ = on_upload([str(photo)], "mine", None)
    try:
        with pytest.raises(gr.Error):
            on_upload([str(zips[case])], "mine", state)
        assert [p.name for p in Path(state["dir"]).rglob("*") if p.is_file()] == [photo.name]
    finally:
        uploads.remove_session_dir(state["dir"])
