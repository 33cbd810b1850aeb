"""Explain tab: what the SE blocks of a model do with an image.

Views, each a sub-tab with short name so that all of them fit on a phone:

* **Step by step** (the default): the chosen block's squeeze z, bottleneck and excitation s for the
  visitor's image, its real sizes and cost, and its input channels before and after scaling;
* **Map**: every block's excitation, each block's channels sorted on its own axis, and a per-block summary;
* **Compare**: up to four images, one small panel each, and the depth profile;
* **Figure 6**: the paper's per-category mean excitation, rebuilt from the gallery;
* **SE off**: the top-5 with SE switched off in a stage or block.

Everything for one image comes from its one forward pass (``Engine.run``), as the other tabs do. The texts,
plots and messages are in the visitor's language (``lang``, the last input); the view chooser's values, the
block names and the ablation choices' values stay the same English ids in both.
"""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import numpy as np

from .. import excitation as ex
from .. import plots, se_cost
from ..built_index import is_index_folder
from ..config import result_count
from ..ensemble import top_k
from ..i18n import Message, Page, render, text, ui
from ..images import content_hash
from ..se_blocks import MAP_CHANNELS, SEBlock, default_block, layer_names
from ..services import Services
from ..uploads import forget
from .explain_text import WHAT_SE_DOES, compare_text, figure6_text, map_text, scale_text, steps_text
from .common import TabEvent, decode, display_name, example_images, image_input, user_errors
from .queue import inference

MAX_COMPARED = 4  # images in the Compare view
STALE = text("explain.stale")


def no_se_text(name: str, se_models: list[str], lang: str = "en") -> str:
    """Why a model shows nothing here, and where to find one that does (plain text: also used in toasts)."""
    where = (text("explain.no_se.pick", lang, models=", ".join(se_models)) if se_models else
             text("explain.no_se.start", lang))
    return text("explain.no_se", lang, name=name, where=where)


AUTO_BLOCK = "auto"  # the chosen model's default block, so API calls naming only a model get a fitting block


def block_choices(blocks: list[SEBlock]) -> list[tuple[str, str]]:
    if not blocks:
        return []
    auto = (Message("explain.block.auto", block=default_block(blocks)), AUTO_BLOCK)
    return [auto, *[(f"{b.name} · {b.path} · C={b.channels}", b.name) for b in blocks]]


def ablation_choices(blocks: list[SEBlock]) -> list[str]:
    """The values of the "Switch SE off in" list (the API's, the same in every language)."""
    if not blocks:
        return []
    stages = sorted({b.stage for b in blocks})
    return ["all SE blocks", *[f"stage {s}" for s in stages], *[b.name for b in blocks]]


def ablation_options(blocks: list[SEBlock]) -> list[tuple[str, str]]:
    """(name, value) of each ablation choice: the names follow the visitor's language, the values do not."""
    stages = {f"stage {b.stage}": b.stage for b in blocks}
    return [(Message("explain.ablate.all") if value == "all SE blocks" else
             Message("explain.ablate.stage", stage=stages[value]) if value in stages else value, value)
            for value in ablation_choices(blocks)]


def rendered_choices(choices: list, lang: str) -> list:
    """Choices as (name, value) pairs with every name in ``lang``."""
    return [(render(name, lang), value) for name, value in choices]


def shown_value(value, limit: int = 40) -> str:
    """A value a visitor sent, quoted for a message, cut at ``limit`` characters."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def blocks_to_disable(blocks: list[SEBlock], choice: str) -> list[SEBlock]:
    if choice == "all SE blocks":
        return list(blocks)
    chosen = [b for b in blocks if choice in (b.name, f"stage {b.stage}")]
    if not chosen:
        raise ValueError(Message("explain.no_such_choice", choice=shown_value(choice)))
    return chosen


def why_nothing(services: Services, model: str, lang: str = "en") -> str:
    """A model with no SE blocks to show: timm cannot build it (and why), or it has none."""
    registry = services.registry
    se_labels = [display_name(services, n) for n in registry.all_names if registry.se_blocks(n)]
    problem = registry.architecture_problem(model)
    return render(problem, lang) if problem else no_se_text(display_name(services, model), se_labels, lang)


def block_by_name(services: Services, model: str, block_name: str | None) -> SEBlock:
    """The model's block called ``block_name`` (``auto``: its default block); a clear error for any other
    name, since the block list accepts what a visitor or an API call types."""
    blocks = services.registry.se_blocks(model)
    wanted = default_block(blocks) if block_name in (None, AUTO_BLOCK) else block_name
    chosen = next((b for b in blocks if b.name == wanted), None)
    if chosen is None:
        raise ValueError(Message("explain.no_such_block", model=display_name(services, model),
                                 block=shown_value(block_name), first=blocks[0].name, last=blocks[-1].name))
    return chosen


def compared_images(services: Services, image, picks, uploads, lang: str = "en") -> list[tuple[str, object]]:
    """(name, decoded picture) of the visitor's image and up to MAX_COMPARED - 1 others to compare with."""
    gallery_ids = {item.id: item for item in services.gallery()}
    others = [(item_id, gallery_ids[item_id].path) for item_id in picks or [] if item_id in gallery_ids]
    others += [(Path(upload).name, upload) for upload in uploads or []]
    if len(others) > MAX_COMPARED - 1:
        gr.Warning(text("explain.compare.only_first", lang, count=MAX_COMPARED))
    return [(text("explain.your_image", lang), decode(image, services))] + [
        (name, decode(source, services)) for name, source in others[: MAX_COMPARED - 1]]


def checked_model(services: Services, model) -> str:
    """``model`` if the app serves it (Gradio checks the dropdown's value too; this keeps the message ours)."""
    if model not in services.registry.specs:
        raise ValueError(Message("explain.no_such_model", model=shown_value(model)))
    return model


EXPLAIN_OUTPUTS = 10  # the views /explain fills, in the order explain_views returns them


def shown_channels(s: np.ndarray, kept: dict, k: int) -> tuple[list[int], list[int]]:
    """The ``k`` most and ``k`` least excited channels, taken from those whose maps the forward pass kept
    (its most and least excited: where gates tie, the pass's own choice), so no second pass is needed."""
    if not kept:
        return ex.extreme_channels(s, k)
    k = max(1, min(k, len(s) // 2 or 1))
    most = sorted(kept, key=lambda c: (-s[c], c))[:k]
    least = sorted(kept, key=lambda c: (s[c], c))[:k]
    return most, least


def explain_views(services: Services, model: str, block: SEBlock, series: list[tuple[str, object]],
                  digest: str, outputs: list, channels: np.ndarray, k, lang: str = "en") -> tuple:
    """The step view, the map and the comparison of ``block``, from the images' forward passes
    (``outputs``, the visitor's image first, whose content hash is ``digest``)."""
    registry = services.registry
    blocks = registry.se_blocks(model)
    loaded = registry.get(model)
    main = outputs[0]
    s, z, hidden = main.excitations[block.name], main.squeezes[block.name], main.bottlenecks[block.name]
    cost = se_cost.cached_model_cost(loaded.key, loaded.model, blocks, loaded.data_config["input_size"])
    activation, gate = layer_names(loaded.model, block)
    top, bottom = shown_channels(s, main.channel_maps.get(block.name, {}), result_count(k, Message("explain.k.what"), MAP_CHANNELS))
    shown = [(kind, int(c)) for kind, extreme in (("most", top), ("least", bottom)) for c in extreme]
    chosen = [c for _, c in shown]
    maps = services.engine.feature_maps(model, series[0][1], block, chosen, digest=digest)
    pictures = [(pair, text("explain.picture", lang, channel=c, s=s[c])) for c, pair in zip(chosen, plots.scale_pairs(maps, s[chosen]))]
    label = display_name(services, model)
    profile = ex.depth_profile([out.excitations for out in outputs], blocks)
    names = [name for name, _ in series]
    return (
        steps_text(block, blocks, cost, activation, gate, z, s, label, lang),
        plots.se_steps(z, hidden, s, block, chosen, lang),
        scale_text(shown, s, cost.blocks[block.name].input_hw, lang),
        pictures,
        map_text(main.excitations, blocks, lang),
        plots.excitation_map(main.excitations, blocks, text("plot.map.title", lang), lang),
        plots.excitation_summary(main.excitations, blocks, lang),
        compare_text(names, block, profile["spread"], blocks, lang),
        plots.channel_plot({name: out.excitations[block.name] for name, out in zip(names, outputs)}, block, channels,
                           lang),
        plots.depth_profile(profile, blocks, names, lang),
    )


@user_errors
def explain_image(services: Services, image, model, block_name, picks, uploads, sample50, k, lang="en",
                  progress=gr.Progress(track_tqdm=True)):
    """/explain: the chosen block step by step (its sentences, its squeeze/excitation plot, and its channels
    before and after scaling), the map of every block with its summary, and the comparison of the images
    (a small panel per image, and the depth profile), in ``lang``. Each image is run once (``Engine.run``)."""
    registry, engine = services.registry, services.engine
    model = checked_model(services, model)
    progress(0, desc=text("explain.progress", lang, model=display_name(services, model)))
    if not registry.se_blocks(model):
        return cleared_views(why_nothing(services, model, lang))
    block = block_by_name(services, model, block_name)  # before any forward: another model's block is refused at once
    series = compared_images(services, image, picks, uploads, lang)
    digests = [content_hash(picture) for _, picture in series]  # once each, for the pass and the maps
    outputs = [engine.run(model, picture, digest=digest) for (_, picture), digest in zip(series, digests)]
    channels = ex.sampled_channels(block.channels) if sample50 else np.arange(block.channels)
    return explain_views(services, model, block, series, digests[0], outputs, channels, k, lang)


def cleared_views(message: str = STALE) -> tuple:
    """Every view emptied, with ``message`` where the step text goes: after a refused image, nothing of the
    previous image stays on show as if it belonged to the new one."""
    return (message, *[None] * (EXPLAIN_OUTPUTS - 1))


def stale_views(lang: str = "en") -> tuple:
    """``cleared_views`` after a refused image, saying so in ``lang``."""
    return cleared_views(text("explain.stale", lang))


@user_errors
def figure6(services: Services, model, sample50, lang="en", progress=gr.Progress(track_tqdm=True)):
    """/figure6: a sentence, and the mean excitation per gallery category, as in Figure 6 of the SENet paper."""
    model = checked_model(services, model)
    blocks = services.registry.se_blocks(model)
    if not blocks:
        raise gr.Error(why_nothing(services, model, lang))
    items = services.gallery()
    if not items:  # a built index keeps embeddings, not the images whose gates Figure 6 averages
        indexed = is_index_folder(services.config.gallery_dir)
        raise gr.Error(text("explain.figure6.index_only" if indexed else "explain.figure6.no_gallery", lang))
    by_digest = services.features.outputs_by_digest(model, items, progress=lambda f, d: progress(f, desc=render(d, lang)))
    decoded = [item for item in items if item.digest in by_digest]  # undecodable files are skipped
    chosen = ex.figure6_blocks(blocks)
    means = ex.category_means([by_digest[i.digest].excitations for i in decoded], [i.label for i in decoded],
                              [b.name for b in chosen])
    return (figure6_text(means, chosen, lang),
            plots.figure6(means, chosen, ex.PAPER_SAMPLED_CHANNELS if sample50 else None, lang))


@user_errors
def ablate(services: Services, image, model, choice, lang="en", progress=gr.Progress(track_tqdm=True)):
    """/ablate: the top-5 with SE and with SE switched off in ``choice``, and what changed."""
    registry, engine = services.registry, services.engine
    model = checked_model(services, model)
    blocks = registry.se_blocks(model)
    if not blocks:
        raise gr.Error(why_nothing(services, model, lang))
    disabled = blocks_to_disable(blocks, choice)  # before any forward, as in explain_image
    picture = decode(image, services)
    labels = registry.get(model).labels
    before = engine.run(model, picture)
    after = engine.run_ablated(model, picture, disabled)
    top1 = int(before.probs.argmax())
    delta = after.probs[top1] - before.probs[top1]
    new_top1 = int(after.probs.argmax())
    names = dict(rendered_choices(ablation_options(blocks), lang))
    shown = {value: name for name, value in names.items()}.get(choice, choice)
    outcome = (text("explain.ablate.stays", lang) if new_top1 == top1 else
               text("explain.ablate.changes", lang, label=labels[new_top1]))
    said = text("explain.ablate.result", lang, choice=shown, label=labels[top1], before=before.probs[top1],
                after=after.probs[top1], delta=delta, outcome=outcome)
    return ({p.label: p.prob for p in top_k(before.probs, labels)},
            {p.label: p.prob for p in top_k(after.probs, labels)}, said)


@user_errors
def model_changed(services: Services, model, lang="en"):
    """The chosen model's block lists (for this visitor only), its note, and the previous model's views cleared."""
    blocks = services.registry.se_blocks(checked_model(services, model))
    note = "" if blocks else why_nothing(services, model, lang)
    cleared = [None] * (EXPLAIN_OUTPUTS - 1 + 5)  # the previous model's views, Figure 6 and ablation no longer apply
    return (gr.Dropdown(choices=rendered_choices(block_choices(blocks), lang), value=AUTO_BLOCK if blocks else None),
            gr.Dropdown(choices=rendered_choices(ablation_options(blocks), lang),
                        value="all SE blocks" if blocks else None), note,
            *cleared)


def uploaded_files(files) -> list:
    """The compare box's files, kept per visitor in a ``gr.State``."""
    return list(files or [])


def forget_compared(files) -> None:
    """Gradio's delete callback for the compare box's state: the visitor left, so the copies Gradio kept
    of the files they sent are deleted instead of being served for another day."""
    forget(None, files)


def build(services: Services, page: Page | None = None, switch: gr.Radio | None = None) -> TabEvent:
    """The tab's layout and events; returns its main event (for the button that runs every tab). ``page``
    tracks the tab's texts for the language switch; ``switch`` is the handlers' last input."""
    page = page if page is not None else Page()
    language = [switch] if switch is not None else []
    registry = services.registry
    names = registry.all_names
    se_names = [n for n in names if registry.se_blocks(n)]
    default_model = se_names[0] if se_names else names[0]
    start_blocks = registry.se_blocks(default_model)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = image_input(label=Message("common.image"), height=280, elem_id="explain-image", page=page)
            model = page(gr.Dropdown, choices=[(display_name(services, n), n) for n in names], value=default_model,
                         label=Message("explain.model"), info=Message("explain.model.info"))
            # The block lists change with the visitor's model, and the API may name any model's block:
            # the handlers check the name against the model asked for (allow_custom_value lets it reach them).
            block = page(gr.Dropdown, choices=block_choices(start_blocks), value=AUTO_BLOCK if start_blocks else None,
                         label=Message("explain.block"), allow_custom_value=True)
            k = page(gr.Slider, minimum=1, maximum=MAP_CHANNELS, value=2, step=1, label=Message("explain.k"),
                     info=Message("explain.k.info"))
            with page(gr.Accordion, label=Message("explain.compare_with", count=MAX_COMPARED - 1), open=False):
                picks = page(gr.Dropdown, choices=[item.id for item in services.gallery()], multiselect=True,
                             max_choices=MAX_COMPARED - 1, label=Message("explain.picks"), value=[])
                upload_box = page(gr.File, file_count="multiple", file_types=["image"],
                                  label=Message("explain.uploads"), elem_id="explain-compare-files")
                # per-visitor; keeps the endpoint callable with just an image
                uploads = gr.State([], delete_callback=forget_compared)
            button = page(gr.Button, value=Message("explain.run"), variant="primary")
            examples_slot = gr.Column()
        with gr.Column(scale=2, min_width=300):
            # A choice of views rather than tabs: all five stay one tap away on a phone, where tabs overflow.
            # Its values are the English names, the same in every language; the names shown follow the switch.
            view = page(gr.Radio, choices=[(Message(key), name) for name, key in VIEW_KEYS.items()], value=VIEWS[0],
                        label=Message("explain.view"), elem_id="explain-view")
            with gr.Column(visible=True, elem_id="explain-steps") as steps_view:
                # Its first text is in the browser's language and not tracked by the switch: it is a view
                # the handlers fill, and switching the language must not wipe an answer on show.
                steps_note = gr.Markdown(ui("explain.what_se_does") if start_blocks else
                                         why_nothing(services, default_model), elem_id="explain-steps-text")
                steps_plot = page(gr.Plot, label=Message("explain.steps_plot"), elem_id="explain-steps-plot")
                scale_note = gr.Markdown(elem_id="explain-scale-text")
                # no floating label: it would cover the first row; the text above says what the pictures are
                pictures = page(gr.Gallery, label=Message("explain.pictures"), show_label=False,
                                columns=2, height="auto", format="png", elem_id="explain-scale",
                                object_fit="contain")
            with gr.Column(visible=False, elem_id="explain-map") as map_view:
                map_note = gr.Markdown(elem_id="explain-map-text")
                map_plot = page(gr.Plot, label=Message("explain.map_plot"), elem_id="explain-map-plot")
                summary_plot = page(gr.Plot, label=Message("explain.summary_plot"), elem_id="explain-summary-plot")
            with gr.Column(visible=False, elem_id="explain-compare") as compare_view:
                compare_note = gr.Markdown(elem_id="explain-compare-text")
                sample50 = page(gr.Checkbox, value=True, label=Message("explain.sample50"))
                channel_plot = page(gr.Plot, label=Message("explain.channel_plot"), elem_id="explain-channel-plot")
                depth_plot = page(gr.Plot, label=Message("explain.depth_plot"), elem_id="explain-depth-plot")
            with gr.Column(visible=False, elem_id="explain-figure6") as figure6_view:
                fig6_note = gr.Markdown(ui("explain.figure6.intro"), elem_id="explain-fig6-text")  # as steps_note
                with gr.Row():
                    fig6_sample = page(gr.Checkbox, value=True, label=Message("explain.figure6.sample50"))
                    fig6_button = page(gr.Button, value=Message("explain.figure6.run"))
                fig6_plot = page(gr.Plot, label=Message("explain.figure6.plot"), elem_id="explain-fig6-plot")
            with gr.Column(visible=False, elem_id="explain-ablation") as ablation_view:
                page(gr.Markdown, value=Message("explain.ablate.intro"))
                ablate_choice = page(gr.Dropdown, choices=ablation_options(start_blocks),
                                     value="all SE blocks" if start_blocks else None,
                                     label=Message("explain.ablate.label"),
                                     allow_custom_value=True)  # checked by the handler, as the block is
                ablate_button = page(gr.Button, value=Message("explain.ablate.run"))
                with gr.Row():
                    before = page(gr.Label, num_top_classes=5, label=Message("explain.ablate.with"))
                    after = page(gr.Label, num_top_classes=5, label=Message("explain.ablate.without"))
                ablate_text = gr.Markdown()

    views = [steps_view, map_view, compare_view, figure6_view, ablation_view]
    view.change(show_view, view, views, api_visibility="private", queue=False, show_progress="hidden")
    explain = functools.partial(explain_image, services)
    explain_inputs = [image, model, block, picks, uploads, sample50, k]  # the API's; the language comes last
    explain_outputs = [steps_note, steps_plot, scale_note, pictures, map_note, map_plot, summary_plot,
                       compare_note, channel_plot, depth_plot]
    button.click(explain, explain_inputs + language, explain_outputs, api_name="explain",
                 **inference(services)).failure(
        stale_views, language, explain_outputs, api_visibility="private", show_progress="hidden")
    image.upload(explain, explain_inputs + language, explain_outputs, api_name="explain_on_upload",
                 api_visibility="private", **inference(services)).failure(
        stale_views, language, explain_outputs, api_visibility="private", show_progress="hidden")
    with examples_slot:
        explain_examples(services, image, explain_inputs[1:] + language, explain_outputs, page)
    fig6_button.click(functools.partial(figure6, services), [model, fig6_sample, *language], [fig6_note, fig6_plot],
                      api_name="figure6", **inference(services))
    ablate_button.click(functools.partial(ablate, services), [image, model, ablate_choice, *language],
                        [before, after, ablate_text], api_name="ablate", **inference(services))
    upload_box.change(uploaded_files, upload_box, uploads, api_name="compare_uploads", api_visibility="private")
    model.change(functools.partial(model_changed, services), [model, *language],
                 [block, ablate_choice, *explain_outputs, fig6_note, fig6_plot, before, after, ablate_text],
                 api_name="model_changed", api_visibility="private")
    if switch is not None:
        switch.change(functools.partial(note_in_language, services), [model, switch], steps_note,
                      api_visibility="private", show_progress="hidden")
    return TabEvent(explain_inputs, explain_outputs)


def note_in_language(services: Services, model, lang="en"):
    """A model without SE blocks: its note, again in the visitor's language. An SE model's note is an answer
    (or the browser-translated welcome) and stays as it is."""
    if model in services.registry.specs and not services.registry.se_blocks(model):
        return why_nothing(services, model, lang)
    return gr.update()


VIEWS = ["Step by step", "Map", "Compare", "Figure 6", "SE off"]  # the chooser's values (and English names)
VIEW_KEYS = dict(zip(VIEWS, ["explain.view.steps", "explain.view.map", "explain.view.compare",
                             "explain.view.figure6", "explain.view.ablation"]))
EXPLAIN_SETTINGS = 6  # /explain's inputs after the image: model, block, picks, uploads, sample50, k


def show_view(chosen: str) -> list:
    """Only the chosen view's column is shown."""
    return [gr.Column(visible=name == chosen) for name in VIEWS]


def explain_example(services: Services, examples: list[str], chosen, *settings, progress=gr.Progress()):
    """An example clicked: Explain on its photo with the visitor's current settings. (Gradio passes the
    clicked example as (index, values); the index picks the file from the app's own list.)"""
    index = chosen[0] if isinstance(chosen, (tuple, list)) else chosen
    if not isinstance(index, int) or not 0 <= index < len(examples):
        raise gr.Error(text("explain.no_such_example", settings[-1] if settings else "en"))
    return explain_image(services, examples[index], *settings, progress=progress)


def explain_examples(services: Services, image, settings: list, outputs: list, page: Page | None = None) -> None:
    """Gallery photos, captioned with their category, that fill the image and run Explain when clicked,
    in the queue's one inference group like every forward."""
    examples = example_images(services)
    if not examples:
        return
    page = page if page is not None else Page()
    shown = page(gr.Examples, examples=[[path] for path in examples], inputs=[image],
                 label=Message("explain.examples"), example_labels=[Path(path).parent.name for path in examples],
                 elem_id="explain-examples")
    shown.dataset.click(functools.partial(explain_example, services, examples), [shown.dataset, *settings], outputs,
                        api_visibility="private", **inference(services))
