"""Explain tab: what the SE blocks of a model do with an image.

Views: excitation map (all blocks x channels), per-channel plot for one block
over up to four images, depth profile, the paper's Figure 6 rebuilt from the
gallery, the most/least excited channels with their feature maps, and an
ablation that switches SE off in a stage or block.
"""
from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
import numpy as np

from .. import excitation as ex
from .. import plots
from ..config import result_count
from ..ensemble import model_view, top_k
from ..images import content_hash
from ..se_blocks import MAP_CHANNELS, SEBlock, default_block
from ..services import Services
from ..uploads import forget
from .common import TabEvent, decode, display_name, example_images, image_input, user_errors
from .queue import inference

MAX_COMPARED = 4  # images overlaid in the per-channel and depth views


def no_se_text(name: str, se_models: list[str]) -> str:
    """Why a model shows nothing here, and where to find one that does (plain text: also used in toasts)."""
    where = (f"Pick an SE model in the list ({', '.join(se_models)})." if se_models else
             "Start the app with an SE model for this tab, e.g. --explain-model seresnext101_64x4d.gluon_in1k "
             "or --explain-model seresnet50.a1_in1k.")
    return (f"{name} has no Squeeze-and-Excitation blocks: none of its layers re-weights channels by a learned "
            f"gate, so there are no excitation values to show. (In the default ensemble, resnet152d is the same "
            f"ResNet design as seresnext101_64x4d without SE.) {where}")


AUTO_BLOCK = "auto"  # the chosen model's default block, so API calls naming only a model get a fitting block


def block_choices(blocks: list[SEBlock]) -> list[tuple[str, str]]:
    if not blocks:
        return []
    auto = (f"{AUTO_BLOCK} ({default_block(blocks)}: last block of the second-to-last stage)", AUTO_BLOCK)
    return [auto, *[(f"{b.name} · {b.path} · C={b.channels}", b.name) for b in blocks]]


def ablation_choices(blocks: list[SEBlock]) -> list[str]:
    if not blocks:
        return []
    stages = sorted({b.stage for b in blocks})
    return ["all SE blocks", *[f"stage {s}" for s in stages], *[b.name for b in blocks]]


def shown_value(value, limit: int = 40) -> str:
    """A value a visitor sent, quoted for a message, cut at ``limit`` characters."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def blocks_to_disable(blocks: list[SEBlock], choice: str) -> list[SEBlock]:
    if choice == "all SE blocks":
        return list(blocks)
    chosen = [b for b in blocks if choice in (b.name, f"stage {b.stage}")]
    if not chosen:
        raise ValueError(f"No SE block or stage called {shown_value(choice)} in this model.")
    return chosen


def why_nothing(services: Services, model: str) -> str:
    """A model with no SE blocks to show: timm cannot build it (and why), or it has none."""
    registry = services.registry
    se_labels = [display_name(services, n) for n in registry.all_names if registry.se_blocks(n)]
    return registry.architecture_problem(model) or no_se_text(display_name(services, model), se_labels)


def block_by_name(services: Services, model: str, block_name: str | None) -> SEBlock:
    """The model's block called ``block_name`` (``auto``: its default block); a clear error for any other
    name, since the block list accepts what a visitor or an API call types."""
    blocks = services.registry.se_blocks(model)
    wanted = default_block(blocks) if block_name in (None, AUTO_BLOCK) else block_name
    chosen = next((b for b in blocks if b.name == wanted), None)
    if chosen is None:
        raise ValueError(f"{display_name(services, model)} has no SE block {shown_value(block_name)}; its blocks are "
                         f"{blocks[0].name}…{blocks[-1].name}.")
    return chosen


def compared_images(services: Services, image, picks, uploads) -> list[tuple[str, object]]:
    """(name, decoded picture) of the visitor's image and up to MAX_COMPARED - 1 others to compare with."""
    gallery_ids = {item.id: item for item in services.gallery()}
    others = [(item_id, gallery_ids[item_id].path) for item_id in picks or [] if item_id in gallery_ids]
    others += [(Path(upload).name, upload) for upload in uploads or []]
    if len(others) > MAX_COMPARED - 1:
        gr.Warning(f"Only the first {MAX_COMPARED} images are compared.")
    return [("your image", decode(image, services))] + [
        (name, decode(source, services)) for name, source in others[: MAX_COMPARED - 1]]


def checked_model(services: Services, model) -> str:
    """``model`` if the app serves it (Gradio checks the dropdown's value too; this keeps the message ours)."""
    if model not in services.registry.specs:
        raise ValueError(f"No model called {shown_value(model)} in this app.")
    return model


@user_errors
def explain_image(services: Services, image, model, block_name, picks, uploads, sample50, k,
                  progress=gr.Progress(track_tqdm=True)):
    """/explain: the block's formula and a summary, the excitation map, the per-channel plot, the depth
    profile, and the most and least excited channels' feature maps."""
    registry, engine = services.registry, services.engine
    model = checked_model(services, model)
    progress(0, desc=f"Running {display_name(services, model)}…")
    blocks = registry.se_blocks(model)
    if not blocks:
        return why_nothing(services, model), None, None, None, []
    block = block_by_name(services, model, block_name)  # before any forward: another model's block is refused at once
    series = compared_images(services, image, picks, uploads)
    digests = [content_hash(picture) for _, picture in series]  # once each, for the pass and the maps
    outputs = [engine.run(model, picture, digest=digest) for (_, picture), digest in zip(series, digests)]
    main = outputs[0].excitations
    channels = ex.sampled_channels(block.channels) if sample50 else np.arange(block.channels)
    per_channel = {name: out.excitations[block.name] for (name, _), out in zip(series, outputs)}
    profile = ex.depth_profile([out.excitations for out in outputs], blocks)
    top, bottom = ex.extreme_channels(main[block.name], result_count(k, "Top/bottom channels", MAP_CHANNELS))
    shown = [(kind, int(c)) for kind, extreme in (("most", top), ("least", bottom)) for c in extreme]
    fmaps = engine.feature_maps(model, series[0][1], block, [c for _, c in shown], digest=digests[0])
    view = model_view(registry.get(model).transform, series[0][1])  # the crop the feature maps cover
    tiles = [(overlay, f"ch {c} · s={main[block.name][c]:.3f} ({kind})")
             for (kind, c), overlay in zip(shown, plots.feature_overlays(view, fmaps))]
    label = display_name(services, model)
    text = "\n\n".join([
        ex.formula_text(block),
        f"**{label}** has {len(blocks)} SE blocks. The map shows s for every channel of every block for your "
        f"image; the channel plot overlays {len(series)} image(s) for {block.name}; the depth profile shows "
        f"where the images' excitations differ (early blocks: alike, class-agnostic; later: class-specific).",
    ])
    return (text, plots.excitation_map(main, blocks, f"Excitation of every SE block — {label}"),
            plots.channel_plot(per_channel, block, channels),
            plots.depth_profile(profile, blocks, [name for name, _ in series]), tiles)


@user_errors
def figure6(services: Services, model, sample50, progress=gr.Progress(track_tqdm=True)):
    """/figure6: the mean excitation per gallery category, as in Figure 6 of the SENet paper."""
    model = checked_model(services, model)
    blocks = services.registry.se_blocks(model)
    if not blocks:
        raise gr.Error(why_nothing(services, model))
    items = services.gallery()
    if not items:
        raise gr.Error("No gallery is configured; start the app with --gallery DIR.")
    by_digest = services.features.outputs_by_digest(model, items, progress=lambda f, d: progress(f, desc=d))
    decoded = [item for item in items if item.digest in by_digest]  # undecodable files are skipped
    chosen = ex.figure6_blocks(blocks)
    means = ex.category_means([by_digest[i.digest].excitations for i in decoded], [i.label for i in decoded],
                              [b.name for b in chosen])
    return plots.figure6(means, chosen, ex.PAPER_SAMPLED_CHANNELS if sample50 else None)


@user_errors
def ablate(services: Services, image, model, choice, progress=gr.Progress(track_tqdm=True)):
    """/ablate: the top-5 with SE and with SE switched off in ``choice``, and what changed."""
    registry, engine = services.registry, services.engine
    model = checked_model(services, model)
    blocks = registry.se_blocks(model)
    if not blocks:
        raise gr.Error(why_nothing(services, model))
    disabled = blocks_to_disable(blocks, choice)  # before any forward, as in explain_image
    picture = decode(image, services)
    labels = registry.get(model).labels
    before = engine.run(model, picture)
    after = engine.run_ablated(model, picture, disabled)
    top1 = int(before.probs.argmax())
    delta = after.probs[top1] - before.probs[top1]
    new_top1 = int(after.probs.argmax())
    text = (f"Switching off **{choice}** (gate forced to 1, so SE passes features through unchanged): "
            f"p({labels[top1]}) goes from {before.probs[top1]:.3f} to {after.probs[top1]:.3f} "
            f"(**{delta:+.3f}**). Top-1 {'stays' if new_top1 == top1 else 'changes to ' + labels[new_top1]}.")
    return ({p.label: p.prob for p in top_k(before.probs, labels)},
            {p.label: p.prob for p in top_k(after.probs, labels)}, text)


@user_errors
def model_changed(services: Services, model):
    """The chosen model's block lists (for this visitor only), its note, and the previous model's views cleared."""
    blocks = services.registry.se_blocks(checked_model(services, model))
    note = "" if blocks else why_nothing(services, model)
    cleared = [None] * 8  # the previous model's plots, tiles and ablation no longer apply
    return (gr.Dropdown(choices=block_choices(blocks), value=AUTO_BLOCK if blocks else None),
            gr.Dropdown(choices=ablation_choices(blocks), value="all SE blocks" if blocks else None), note,
            *cleared)


def uploaded_files(files) -> list:
    """The compare box's files, kept per visitor in a ``gr.State``."""
    return list(files or [])


def forget_compared(files) -> None:
    """Gradio's delete callback for the compare box's state: the visitor left, so the copies Gradio kept
    of the files they sent are deleted instead of being served for another day."""
    forget(None, files)


def build(services: Services) -> TabEvent:
    """The tab's layout and events; returns its main event (for the button that runs every tab)."""
    registry = services.registry
    names = registry.all_names
    se_names = [n for n in names if registry.se_blocks(n)]
    default_model = se_names[0] if se_names else names[0]
    start_blocks = registry.se_blocks(default_model)
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(label="Image", height=280, elem_id="explain-image")
            model = gr.Dropdown([(display_name(services, n), n) for n in names], value=default_model, label="Model",
                                info="models without SE blocks are listed too, with the reason they show nothing")
            # The block lists change with the visitor's model, and the API may name any model's block:
            # the handlers check the name against the model asked for (allow_custom_value lets it reach them).
            block = gr.Dropdown(block_choices(start_blocks), value=AUTO_BLOCK if start_blocks else None,
                                label="SE block (SE_stage_block, as in the paper)", allow_custom_value=True)
            with gr.Accordion("Compare with (up to 3 more images)", open=False):
                picks = gr.Dropdown([item.id for item in services.gallery()], multiselect=True,
                                    max_choices=MAX_COMPARED - 1, label="Gallery images", value=[])
                upload_box = gr.File(file_count="multiple", file_types=["image"], label="Or upload images")
                # per-visitor; keeps the endpoint callable with just an image
                uploads = gr.State([], delete_callback=forget_compared)
            sample50 = gr.Checkbox(value=False, label="Show 50 evenly sampled channels (as the paper does)")
            k = gr.Slider(1, MAP_CHANNELS, value=4, step=1, label="Top/bottom channels to show")
            button = gr.Button("Explain", variant="primary")
            examples = example_images(services)
            if examples:
                gr.Examples(examples, inputs=image, label="Examples")
        with gr.Column(scale=2):
            text = gr.Markdown("" if start_blocks else why_nothing(services, default_model),
                               latex_delimiters=[{"left": "$", "right": "$", "display": False}])
            with gr.Tab("Excitation map"):
                map_plot = gr.Plot(label="Excitation map")
            with gr.Tab("Per-channel"):
                channel_plot = gr.Plot(label="Per-channel excitation")
            with gr.Tab("Depth profile"):
                depth_plot = gr.Plot(label="Depth profile")
            with gr.Tab("Top channels"):
                # JPEG: these small overlays are photos, which JPEG encodes faster than Gradio's default WebP
                tiles = gr.Gallery(label="Most and least excited channels: the block's input maps", columns=4,
                                   height="auto", format="jpeg", elem_id="explain-tiles")
            with gr.Tab("Figure 6 (gallery)"):
                gr.Markdown("Mean excitation per gallery category for the last SE block of each stage and every "
                            "block of the last stage, as in Figure 6 of the SENet paper. Computed once from the "
                            "stored gallery forward passes.")
                fig6_button = gr.Button("Build Figure 6")
                fig6_plot = gr.Plot(label="Figure 6")
            with gr.Tab("Ablation"):
                ablate_choice = gr.Dropdown(ablation_choices(start_blocks),
                                            value="all SE blocks" if start_blocks else None, label="Switch SE off in",
                                            allow_custom_value=True)  # checked by the handler, as the block is
                ablate_button = gr.Button("Run with SE switched off")
                with gr.Row():
                    before = gr.Label(num_top_classes=5, label="With SE")
                    after = gr.Label(num_top_classes=5, label="SE switched off")
                ablate_text = gr.Markdown()

    explain = functools.partial(explain_image, services)
    explain_inputs = [image, model, block, picks, uploads, sample50, k]
    explain_outputs = [text, map_plot, channel_plot, depth_plot, tiles]
    button.click(explain, explain_inputs, explain_outputs, api_name="explain", **inference(services))
    fig6_button.click(functools.partial(figure6, services), [model, sample50], fig6_plot, api_name="figure6",
                      **inference(services))
    ablate_button.click(functools.partial(ablate, services), [image, model, ablate_choice],
                        [before, after, ablate_text], api_name="ablate", **inference(services))
    upload_box.change(uploaded_files, upload_box, uploads, api_name="compare_uploads", api_visibility="private")
    model.change(functools.partial(model_changed, services), model,
                 [block, ablate_choice, text, map_plot, channel_plot, depth_plot, tiles, fig6_plot, before, after,
                  ablate_text], api_name="model_changed", api_visibility="private")
    return TabEvent(explain_inputs, explain_outputs)
