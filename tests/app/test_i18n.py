"""English and Korean: the catalogue is complete in both languages, messages keep English as their string
and render in Korean on request, the visitor's language comes from the browser's Accept-Language, and the
library's own errors reach a Korean visitor in Korean."""
from __future__ import annotations

import ast
import copy
import pickle
import re
import string
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pytest

from fixtures import MINIMAL_PDF, REPO_ROOT, encode, free_port, picture, tiny_png, zip_with
from senet_demo import i18n
from senet_demo.i18n import EN, KO, Message, from_accept_language, language, placeholders, render, text

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Templates with no words to translate: the same in both languages, or Korean without Hangul.
LANGUAGE_NEUTRAL = {"size.mb", "image.error", "image.formats", "checkpoint.the_spec", "retrieve.query_caption"}


# --- the catalogue ----------------------------------------------------------------------------------------


def test_every_key_has_a_text_in_both_languages():
    assert set(EN) == set(KO), {"English only": sorted(set(EN) - set(KO)), "Korean only": sorted(set(KO) - set(EN))}
    for lang, catalogue in (("en", EN), ("ko", KO)):
        empty = [key for key, value in catalogue.items() if not value.strip()]
        assert not empty, (lang, empty)


def test_keys_are_flat_and_dotted():
    bad = [key for key in EN if not re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)+", key)]
    assert not bad, bad


def test_both_languages_use_the_same_named_parameters():
    differing = {key: (placeholders(EN[key]), placeholders(KO[key])) for key in EN
                 if placeholders(EN[key]) != placeholders(KO[key])}
    assert not differing, differing


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_template_renders_with_its_parameters(lang):
    for key in EN:
        names = placeholders(EN[key])
        rendered = text(key, lang, **{name: 1234.5 for name in names})  # a number suits every format spec used
        assert not [name for name in names if "{" + name in rendered], (key, rendered)
        if names:
            assert "1,234" in rendered or "1234" in rendered, (key, rendered)


def test_a_text_without_parameters_is_shown_as_written(monkeypatch):
    """As the browser shows a gr.I18n key: a formula keeps its LaTeX braces."""
    formula = r"Squeeze: $z_c = \frac{1}{H \times W} \sum_{i=1}^{H} \sum_{j=1}^{W} u_c(i, j)$"
    monkeypatch.setitem(EN, "test.formula", formula)
    monkeypatch.setitem(KO, "test.formula", formula.replace("Squeeze:", "Squeeze(압축):"))
    assert placeholders(formula) == set()
    assert Message("test.formula") == formula
    assert Message("test.formula").render("ko").startswith(r"Squeeze(압축): $z_c = \frac{1}{H \times W}")
    page = i18n.Page()
    with gr.Blocks():
        shown = page(gr.Markdown, value=Message("test.formula"))
    assert shown.value == str(i18n.ui("test.formula"))  # the browser's copy, translated there
    assert page.updates("ko")[0]["value"] == KO["test.formula"]


def test_the_korean_is_written_in_korean():
    """A Korean text copied from the English (or left in English) is caught: every Korean template has
    Hangul, except the few that have no words to translate."""
    without_hangul = {key for key, value in KO.items() if not HANGUL.search(value)}
    assert without_hangul == LANGUAGE_NEUTRAL
    copied = {key for key in EN if KO[key] == EN[key]}
    assert copied <= LANGUAGE_NEUTRAL, copied


def test_the_seminar_terms_are_kept():
    """Korean messages use the established terms (docs/glossary.md), not other renderings of them."""
    korean = " ".join(KO.values())
    for avoided in ("화상", "그림 파일", "레이블", "체크 포인트", "아키텍쳐"):
        assert avoided not in korean, avoided


def test_every_message_key_in_the_library_is_in_the_catalogue():
    """Each ``Message("key", ...)`` written in the package names a key that exists (a typo would otherwise
    surface only on the rare path that raises it)."""
    used = set()
    for path in (REPO_ROOT / "senet_demo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Message"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                used.add((path.name, node.args[0].value))
    assert len(used) > 40  # the walk finds the library's messages
    missing = sorted((name, key) for name, key in used if key not in EN)
    assert not missing, missing


def test_an_unknown_key_fails_where_it_is_written():
    with pytest.raises(KeyError):
        text("image.no_such_key", "ko")
    with pytest.raises(KeyError):
        Message("image.no_such_key")
    with pytest.raises(KeyError):
        i18n.ui("image.no_such_key")


# --- Message ----------------------------------------------------------------------------------------------


def test_a_message_is_its_english_text_and_renders_in_korean():
    message = Message("image.too_small", width=4, height=5, limit=8)
    assert isinstance(message, str)
    assert message == "is too small: 4×5 px; each side needs at least 8 px"
    assert str(message) == f"{message}" == text("image.too_small", "en", width=4, height=5, limit=8)
    assert message.render("ko") == "너무 작습니다: 4×5px. 가로와 세로가 모두 8px 이상인 이미지를 올려 주세요"
    assert message.render("en") == str(message)
    assert type(message.render("ko")) is str


def test_parameters_that_are_messages_render_in_the_same_language():
    message = Message("image.error", subject=Message("image.subject.unnamed"),
                      problem=Message("image.empty", formats=Message("image.formats")))
    assert message == "The image is an empty file (0 bytes); upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo."
    assert message.render("ko") == ("이 이미지는 빈 파일입니다(0바이트). JPEG, PNG, WebP, GIF, BMP, TIFF 사진을 "
                                    "올려 주세요.")


def test_a_list_parameter_is_joined_in_either_language():
    parts = [Message("checkpoint.tensors_missing", count=2, arch="a", tensor="w"),
             Message("checkpoint.tensors_unexpected", count=1, arch="a", tensor="v")]
    message = Message("checkpoint.mismatch", name="m", file="f", arch="a", parts=parts, fix="")
    assert "are missing from the checkpoint, the first 'w'; 1 tensor(s) in the checkpoint" in message
    assert "체크포인트에 없습니다. 첫 번째는 'w'; 체크포인트의 텐서 1개가" in message.render("ko")


def test_a_message_survives_copying_and_pickling_with_its_key():
    message = Message("upload.added", count=3)
    for clone in (copy.copy(message), copy.deepcopy(message), pickle.loads(pickle.dumps(message))):
        assert clone == message and clone.key == "upload.added" and clone.params == {"count": 3}
        assert clone.render("ko") == "이미지 3장을 이 세션의 갤러리에 추가했습니다(본인만 볼 수 있습니다)."
    err = pickle.loads(pickle.dumps(ValueError(message)))
    assert render(err, "ko") == message.render("ko")


def test_an_error_raised_with_a_message_stays_english_as_a_string():
    err = ValueError(Message("image.missing"))
    assert str(err) == "No image given. Upload a photo or pick an example."
    assert render(err, "ko") == "이미지가 없습니다. 사진을 올리거나 예시를 하나 골라 주세요."
    assert render(err, "en") == str(err)
    plain = ValueError("something else")
    assert render(plain, "ko") == "something else"  # an error without a Message keeps its text
    assert render("already text", "ko") == "already text"


# --- the visitor's language -------------------------------------------------------------------------------


@pytest.mark.parametrize("header, expected", [
    ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),  # Chrome in Korean
    ("ko-KR", "ko"),  # Playwright's locale="ko-KR"
    ("ko", "ko"),
    ("KO-kr", "ko"),
    ("en-US,en;q=0.9,ko;q=0.8", "en"),  # Korean accepted, English preferred
    ("en;q=0.5, ko-KR;q=0.8", "ko"),  # the highest q wins, not the first
    ("ja,ko;q=0.9", "en"),  # the preferred language is neither: English
    ("ko;q=0", "en"),  # q=0: not acceptable
    ("kok", "en"),  # Konkani is not Korean
    ("*", "en"),
    (None, "en"),
    ("", "en"),
    ("!!;;q=abc,,;q=,", "en"),
    ("x" * 100_000 + ",ko", "en"),  # only the first part of an enormous header is read
])
def test_the_language_comes_from_accept_language(header, expected):
    assert from_accept_language(header) == expected


@pytest.mark.parametrize("value, expected", [("ko", "ko"), ("ko-KR", "ko"), ("ko_KR", "ko"), ("한국어", "ko"),
                                             ("en", "en"), ("English", "en"), (None, "en"), ("fr", "en"),
                                             ("korean", "en")])
def test_the_switch_value_names_a_language(value, expected):
    assert language(value) == expected


def test_a_request_without_headers_is_english():
    assert i18n.visitor_language(None) == "en"
    assert i18n.visitor_language(object()) == "en"


def test_text_in_an_unsupported_language_is_english():
    assert text("image.missing", "fr") == EN["image.missing"]


def test_the_library_never_imports_gradio_for_its_messages():
    """The command line and the library use the catalogue without paying gradio's import."""
    code = ("import sys; import senet_demo.i18n, senet_demo.images, senet_demo.uploads, senet_demo.config, "
            "senet_demo.storage, senet_demo.checkpoint, senet_demo.convert; "
            "from senet_demo.i18n import Message; Message('image.missing').render('ko'); "
            "print('gradio' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- Gradio: the catalogue for the browser, the page's texts, the request's language ----------------------


def test_the_gradio_catalogue_is_the_whole_catalogue():
    assert isinstance(i18n.I18N, gr.I18n)
    assert i18n.I18N is i18n.I18N  # built once
    assert i18n.I18N.translations_dict == {"en": EN, "ko": KO}
    assert i18n.ui("lang.label").key == "lang.label"


def test_the_page_builds_with_gradio_keys_and_switches_every_text():
    page = i18n.Page()
    with gr.Blocks():
        switch = i18n.language_switch()
        button = page(gr.Button, value=Message("lang.label"), variant="primary")
        kinds = page(gr.Radio, choices=[(Message("image.kind.pdf"), "pdf"), (Message("image.kind.zip"), "zip")],
                     value="pdf", label=Message("image.kind.text"), info=Message("image.too_small", width=1, height=2,
                                                                                  limit=8))
        plain = gr.Textbox(label="not tracked")
        with page(gr.Tab, label=Message("image.kind.svg")) as tab:
            pass
        picks = page(gr.Dropdown, choices=[(Message("image.kind.heic"), "heic"), ("P@1", "p1")], value="heic")
    assert switch.elem_id == i18n.SWITCH_ID and switch.value == "en"
    assert [choice[1] for choice in switch.choices] == ["en", "ko"]
    # a parameterless text in a prop the browser translates is a gr.I18n key; the others start in English
    assert button.value == str(i18n.ui("lang.label"))
    assert kinds.label.key == "image.kind.text"
    assert kinds.info == EN["image.too_small"].format(width=1, height=2, limit=8)
    assert kinds.choices == [("a PDF document", "pdf"), ("a zip archive", "zip")]
    assert page.components == [button, kinds, tab, picks]
    assert plain not in page.components

    korean = page.updates("ko")
    assert korean[0]["value"] == "언어"
    assert korean[1]["label"] == "텍스트 파일"
    assert korean[1]["choices"] == [("PDF 문서", "pdf"), ("zip 압축 파일", "zip")]
    assert korean[1]["info"].startswith("너무 작습니다: 1×2px")
    assert korean[2]["label"] == "SVG 그림"
    assert korean[3]["choices"] == [("HEIC 사진", "heic"), ("P@1", "p1")]
    assert all(type(value) is str for update in korean for value in update.values() if isinstance(value, str))
    english = page.updates("en")
    assert english[1]["choices"] == [("a PDF document", "pdf"), ("a zip archive", "zip")]
    with pytest.raises(TypeError):
        page(gr.Button, Message("lang.label"))  # positional texts could not be switched


def test_a_handler_reads_the_visitors_language_from_the_request():
    """Through Gradio's public gr.Request: the Accept-Language header of the caller's own request."""
    from gradio_client import Client

    def answer(request: gr.Request) -> str:  # gr at module level: Gradio resolves this annotation there
        return i18n.visitor_language(request)

    with gr.Blocks() as demo:
        out = gr.Textbox()
        gr.Button("go").click(answer, None, out, api_name="language")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, i18n=i18n.I18N)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert Client(url, headers={"Accept-Language": "ko-KR,ko;q=0.9"}, verbose=False).predict(
            api_name="/language") == "ko"
        assert Client(url, headers={"Accept-Language": "en-US,en;q=0.9"}, verbose=False).predict(
            api_name="/language") == "en"
        assert Client(url, verbose=False).predict(api_name="/language") == "en"  # gradio_client sends none
        import httpx

        config = httpx.get(f"{url}config", timeout=30).json()
        assert config["i18n_translations"]["ko"]["lang.label"] == "언어"  # what the browser receives
    finally:
        demo.close()


# --- the library's errors, as a Korean visitor reads them -------------------------------------------------


def test_a_pdf_named_jpg_is_refused_in_korean(tmp_path):
    from senet_demo.images import ImageError, load_image

    bogus = tmp_path / "invoice.jpg"
    bogus.write_bytes(MINIMAL_PDF)
    with pytest.raises(ImageError) as refused:
        load_image(bogus)
    assert str(refused.value) == ("invoice.jpg is not an image this app reads (it looks like a PDF document); "
                                  "upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo.")
    assert render(refused.value, "ko") == ("invoice.jpg 파일은 이 앱이 읽을 수 있는 이미지가 아닙니다(내용으로 보아 "
                                           "PDF 문서입니다). JPEG, PNG, WebP, GIF, BMP, TIFF 사진을 올려 주세요.")


@pytest.mark.parametrize("data, words", [
    (b"", "빈 파일입니다(0바이트)"),
    (b"\x00\x00\x00\x18ftypheic0000mif1heic" + b"\x00" * 64, "HEIC 사진입니다"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG 그림입니다"),
    (b"just some notes\n" * 10, "텍스트 파일입니다"),
    (b"PK\x03\x04" + b"\x00" * 40, "zip 압축 파일입니다"),
])
def test_every_kind_of_refused_file_is_explained_in_korean(data, words):
    from senet_demo.images import ImageError, load_image

    with pytest.raises(ImageError) as refused:
        load_image(data, name="upload.jpg")
    korean = render(refused.value, "ko")
    assert korean.startswith("upload.jpg 파일은 ") and words in korean, korean
    assert not HANGUL.search(str(refused.value))  # the string itself stays English


def test_a_truncated_picture_is_explained_in_korean():
    from senet_demo.images import ImageError, load_image

    cut = encode(picture(0, (64, 64)), "PNG")[:200]
    with pytest.raises(ImageError) as refused:
        load_image(cut, name="cut.png")
    assert str(refused.value).startswith("cut.png is truncated or corrupt (")
    assert render(refused.value, "ko").startswith("cut.png 파일은 잘렸거나 손상되었습니다(")
    assert render(refused.value, "ko").endswith("JPEG나 PNG로 다시 저장한 뒤 올려 주세요.")


def test_pictures_out_of_bounds_are_refused_in_korean():
    from senet_demo.config import Limits
    from senet_demo.images import ImageError, load_image, size_text

    cases = [(picture(0, (4, 40)), Limits(), "이 이미지는 너무 작습니다: 4×40px"),
             (picture(0, (400, 20)), Limits(), "이 이미지는 너무 가늘고 깁니다: 400×20px, 가로세로 비율 20:1(최대 10:1)"),
             (picture(0, (300, 300)), Limits(max_image_pixels=50_000), "픽셀이 너무 많습니다: 300×300 = 90,000 > 50,000")]
    for image, limits, korean in cases:
        with pytest.raises(ImageError) as refused:
            load_image(image, limits)
        assert korean in render(refused.value, "ko"), render(refused.value, "ko")
    with pytest.raises(ImageError) as refused:
        load_image(tiny_png(1) * 40, Limits(max_image_bytes=1000), name="big.png")
    assert render(refused.value, "ko").startswith(f"big.png 파일은 너무 큽니다: {len(tiny_png(1)) * 40:,}바이트 > "
                                                  "1,000바이트")
    assert render(size_text(3 * 2**20), "ko") == "3.0 MB"


def test_upload_refusals_and_notes_are_korean(tmp_path):
    from senet_demo.config import Limits
    from senet_demo.uploads import UploadError, ingest

    session = tmp_path / "session"
    session.mkdir()
    escaping = zip_with(tmp_path / "holiday.zip", {"beach/a.png": tiny_png(1), "../../escaped.png": tiny_png(2)})
    with pytest.raises(UploadError) as refused:
        ingest([escaping], session)
    assert str(refused.value).startswith("holiday.zip was rejected: its entry '../../escaped.png' points outside")
    assert render(refused.value, "ko") == ("holiday.zip 파일을 거부했습니다. 항목 '../../escaped.png'의 경로가 압축 파일 "
                                           "바깥을 가리킵니다. 아무것도 추가하지 않았습니다.")

    fake = tmp_path / "notes.png"
    fake.write_bytes(b"not a picture at all\n" * 4)
    mixed = zip_with(tmp_path / "mixed.zip", {"cats/a.png": tiny_png(3), "cats/readme.txt": b"hello"})
    items, messages = ingest([mixed, fake], session)
    assert len(items) == 1
    korean = [render(message, "ko") for message in messages]
    assert korean[0] == "이미지 1장을 이 세션의 갤러리에 추가했습니다(본인만 볼 수 있습니다)."
    assert "readme.txt 건너뜀: 이미지 파일이 아닙니다." in korean
    assert any(m.startswith("건너뜀: notes.png 파일은 이 앱이 읽을 수 있는 이미지가 아닙니다") for m in korean), korean
    assert messages[0] == "Added 1 image(s) to your session's gallery (only you can see them)."  # English as before

    loose = tmp_path / "loose.png"
    loose.write_bytes(tiny_png(4))
    with pytest.raises(UploadError) as refused:
        ingest([loose], session, limits=Limits(max_upload_total_bytes=10))
    assert render(refused.value, "ko") == "올린 파일이 너무 큽니다. 모두 합쳐 10바이트까지 올릴 수 있어 아무것도 추가하지 않았습니다."


def test_request_numbers_are_refused_in_korean():
    from senet_demo.config import InputError, member_weight, result_count

    with pytest.raises(InputError) as refused:
        member_weight("seresnext101_64x4d", 1.5)
    assert str(refused.value) == "The weight of seresnext101_64x4d must be a number from 0 to 1, not 1.5."
    assert render(refused.value, "ko") == "seresnext101_64x4d의 가중치에는 0에서 1 사이의 수를 넣어 주세요(받은 값: 1.5)."
    with pytest.raises(InputError) as refused:
        result_count(0)
    assert render(refused.value, "ko") == "결과 개수: 1에서 1000 사이의 정수를 넣어 주세요(받은 값: 0)."


def test_storage_checkpoint_and_conversion_problems_read_in_korean(tmp_path):
    from senet_demo import checkpoint, storage
    from senet_demo.convert import convert_by_order

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    problem = storage.writable_problem(blocker / "cache")
    assert problem.startswith(f"{blocker / 'cache'} cannot be written (")
    assert problem.render("ko").startswith(f"{blocker / 'cache'} 폴더에 쓸 수 없습니다(")

    unknown = checkpoint.unknown_architecture("resnt50d", "resnt50d")
    assert unknown.startswith("Model 'resnt50d': timm has no architecture called 'resnt50d' (did you mean")
    assert unknown.render("ko").startswith("모델 'resnt50d': timm에는 'resnt50d' 아키텍처가 없습니다(혹시 ")
    assert "해결 방법: SPEC의 ARCH를 확인해 주세요." in unknown.render("ko")
    labels = checkpoint.labels_mismatch("m", Path("labels.txt"), 3, 6)
    assert labels.render("ko").startswith("모델 'm': labels.txt 파일은 3줄인데 체크포인트의 클래스는 6개입니다.")

    with pytest.raises(ValueError) as refused:
        convert_by_order({}, "resnet10t")
    assert re.fullmatch(r"resnet10t has \d+ tensors, the checkpoint 0\.", str(refused.value))
    assert re.fullmatch(r"resnet10t의 텐서는 \d+개인데 체크포인트에는 0개가 있습니다\.", render(refused.value, "ko"))


# --- the app: every label goes through the catalogue ------------------------------------------------------


def _english_of_a_template(value: str) -> bool:
    """Whether ``value`` is the English of a catalogue template with parameters: a text the page starts in
    English and re-renders in the visitor's language when it loads."""
    for template in EN.values():
        if placeholders(template):
            pattern = "".join(re.escape(literal) + (".+?" if field is not None else "")
                              for literal, field, _, _ in string.Formatter().parse(template))
            if re.fullmatch(pattern, value, flags=re.DOTALL):
                return True
    return False


def _literals(component: dict, allowed: set[str]) -> list[str]:
    props = component.get("props", {})
    found = []
    for prop in ("label", "info", "placeholder", "description", "title", "value"):
        value = props.get(prop)
        if prop == "value" and component.get("type") not in ("markdown", "button", "html"):
            continue  # other values are data, not text
        if isinstance(value, dict) and value.get("__type__") == "translation_metadata":
            continue
        if isinstance(value, str) and "__i18n__" not in value and re.search(r"[A-Za-z]{2}", value) \
                and value.strip() not in allowed and not _english_of_a_template(value):
            found.append(f"{component.get('type')}.{prop}: {value[:60]!r}")
    return found


def test_every_label_of_the_app_goes_through_the_catalogue(tiny_services):
    """The app's page as the browser receives it (/config): every label, info, button and Markdown text is a
    catalogue key or text the language switch re-renders; model names are data and may stay as they are."""
    import httpx

    from senet_demo.ui import allowed_paths, build_demo

    demo = build_demo(tiny_services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, i18n=i18n.I18N,
                allowed_paths=allowed_paths(tiny_services))
    try:
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=60).json()
    finally:
        demo.close()
    components = config["components"]
    keys = [c for c in components for prop in c.get("props", {}).values()
            if (isinstance(prop, dict) and prop.get("__type__") == "translation_metadata")
            or (isinstance(prop, str) and "__i18n__" in prop)]
    if not keys:
        pytest.skip("the UI modules (senet_demo/ui/) do not use senet_demo.i18n yet: no component carries a "
                    "gr.I18n key")
    registry = tiny_services.registry
    allowed = {*registry.names, *(registry.specs[n].label for n in registry.all_names), *registry.all_names,
               "English", "한국어"}
    untranslated = [literal for component in components for literal in _literals(component, allowed)]
    assert not untranslated, untranslated


# --- server-made text: the Explain sentences, plots and the API's optional lang ----------------------------


def test_the_explain_sentences_and_plots_say_the_same_numbers_in_korean():
    """Each sentence and plot text in Korean, with the numbers of its English; the English is the default."""
    import numpy as np

    from senet_demo import plots
    from senet_demo.se_blocks import SEBlock
    from senet_demo.ui import explain_text

    blocks = [SEBlock("SE_2_1", "layer1.0.se", 2, 1, 64, 4, 576), SEBlock("SE_3_1", "layer2.0.se", 3, 1, 64, 4, 576)]
    rng = np.random.default_rng(0)
    excitations = {b.name: rng.uniform(0, 1, 64).astype(np.float32) for b in blocks}
    for make in (lambda lang: explain_text.map_text(excitations, blocks, lang),
                 lambda lang: explain_text.compare_text(["a", "b"], blocks[0], np.array([0.25, 0.5]), blocks, lang),
                 lambda lang: explain_text.scale_text([("most", 3), ("least", 7)], excitations["SE_2_1"], (7, 7), lang)):
        english, korean = make("en"), make("ko")
        assert not HANGUL.search(english) and len(HANGUL.findall(korean)) > 20, korean
        assert re.findall(r"\d+\.\d+", english) == re.findall(r"\d+\.\d+", korean)
    assert explain_text.map_text(excitations, blocks) == explain_text.map_text(excitations, blocks, "en")

    figure = plots.channel_plot({"a": excitations["SE_2_1"]}, blocks[0], np.arange(64), "ko")
    assert figure.layout["title"]["text"] == "SE_2_1: 채널별 s (전체 64개)"
    assert plots.channel_plot({"a": excitations["SE_2_1"]}, blocks[0], np.arange(64)).layout["title"]["text"] \
        == "SE_2_1: s per channel (all 64)"


def test_an_api_call_may_ask_for_korean_text(tmp_path, tiny_senet):
    """/retrieve and /explain take one more optional input, the language: without it their text is English as
    before, with "ko" it is Korean; the values besides the text are the same."""
    from gradio_client import Client, handle_file

    from fixtures import folder_spec, make_gallery, services_for
    from senet_demo.ui import build_demo, launch_options

    services = services_for(folder_spec(tiny_senet), tmp_path, make_gallery(tmp_path / "gallery", {"a": 2, "b": 2}))
    image = services.gallery()[0].path
    demo = build_demo(services)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(services))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        english = client.predict(handle_file(str(image)), api_name="/retrieve")
        korean = client.predict(handle_file(str(image)), lang="ko", api_name="/retrieve")
        assert not HANGUL.search(english[1]) and HANGUL.search(korean[1])
        assert [item["caption"] for item in english[0]] == [item["caption"] for item in korean[0]]
        bogus = tmp_path / "invoice.jpg"
        bogus.write_bytes(MINIMAL_PDF)
        with pytest.raises(Exception) as refused:
            client.predict(handle_file(str(bogus)), lang="ko", api_name="/retrieve")
        assert "invoice.jpg 파일은 이 앱이 읽을 수 있는 이미지가 아닙니다" in str(refused.value)
    finally:
        demo.close()
