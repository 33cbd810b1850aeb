"""Everything the tests build, in one place: tiny timm models on disk, pictures, galleries, zips, and the
corpus of awkward and hostile uploads.

Tiny models: ``export_tiny`` writes a random-weight timm model as the Hub stores it (config.json +
model.safetensors). Random init is useless for SE tests as it comes: timm zero-initialises the last BN of
each residual branch, so the SE input is all zeros and every image gets the same excitation. ``build``
(and ``exported``, its Hub-layout copy, and ``export_tiny`` for SE architectures) gives them the app's own
varied gates (``senet_demo.varied_gates``): the gates spread over (0, 1) and differ between images, as a
trained model's do. ``reference_excitation`` recomputes s = gate(W2 act(W1 mean(u) + b1) + b2) from an SE module's own
weights with plain tensor arithmetic; it never calls the module.

Pictures: ``picture(seed, size, tint)`` is the one image maker (structured, deterministic, distinct per
seed). ``write_corpus`` and ``write_zips`` write the awkward uploads, each with, where it decodes, a plain
PNG of what the app should see. conftest.py points HF_HOME at a temporary folder before this is imported.
"""
from __future__ import annotations

import functools
import io
import json
import os
import pickle
import shutil
import socket
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
HF_HOME = Path(os.environ["HF_HOME"])  # set by conftest.py before anything imports huggingface_hub
HF_HUB_CACHE = HF_HOME / "hub"

# Six classes, like a fine-tuned landmark model; the tiny models share them so they ensemble.
LABELS = ["Eiffel Tower", "Big Ben", "Colosseum", "Taj Mahal", "Golden Gate Bridge", "Sydney Opera House"]

# Deliberately different preprocessing per model: a shared transform would show up in the tests.
RESNET_DATA = dict(input_size=(3, 64, 64), crop_pct=0.875, interpolation="bilinear",
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
SENET_DATA = dict(input_size=(3, 80, 80), crop_pct=1.0, interpolation="bicubic",
                  mean=(0.5, 0.5, 0.5), std=(0.25, 0.3, 0.35))
DATA_CONFIG = dict(input_size=(3, 64, 64), crop_pct=1.0, interpolation="bilinear",
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
TINY_INPUT = (3, 64, 64)


# ------------------------------------------------------------------------------------------ tiny models
@dataclass(frozen=True)
class TinyModel:
    """A random-weight timm model written as the Hub stores it (config.json + model.safetensors)."""

    arch: str  # the timm architecture of the weights
    layers: tuple[int, ...]
    folder: Path
    labels: list[str]
    data_config: dict  # the preprocessing it was exported with

    @property
    def weights_file(self) -> Path:
        return self.folder / "model.safetensors"

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(self.data_config["input_size"][1:])

    def copy_to(self, folder: Path) -> Path:
        """The same two files in another folder (e.g. weights/ or an HF cache snapshot)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "model.safetensors"):
            shutil.copyfile(self.folder / name, folder / name)
        return folder


def export_tiny(arch: str, folder: Path, seed: int, data_config: dict, labels=LABELS, **model_args) -> TinyModel:
    """A random-weight ``arch`` (one block per stage unless ``layers`` is given) with a decisive head,
    written as the Hub stores it. ``labels=None`` writes no class names (``num_classes`` then sets the count)."""
    import timm

    torch.manual_seed(seed)
    layers = model_args.pop("layers", [1, 1, 1, 1])
    num_classes = len(labels) if labels is not None else model_args.pop("num_classes")
    model = timm.create_model(arch, pretrained=False, layers=layers, num_classes=num_classes, **model_args).eval()
    if se_modules(model):  # SE models get varied gates (timm's zero-initialised last BN would feed SE only zeros)
        randomize(model, seed)
    else:
        _decisive(model, seed)
    save_hub_layout(model, folder, data_config, labels)
    return TinyModel(arch, tuple(layers), Path(folder), list(labels or []), dict(data_config))


def save_hub_layout(model: nn.Module, folder: Path, data_config: dict, labels=None) -> Path:
    from timm.models import save_for_hf

    model_config = {"label_names": list(labels)} if labels is not None else None
    save_for_hf(model, str(folder), safe_serialization=True, data_config=dict(data_config), model_config=model_config)
    return Path(folder)


def _decisive(model: torch.nn.Module, seed: int) -> None:
    """Random init gives near-uniform softmax; a larger head makes the top classes well separated."""
    generator = torch.Generator().manual_seed(seed + 100)
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.5)


def folder_spec(model: TinyModel) -> str:
    return f"{model.arch}={model.folder}"


def make_config(root: Path, specs: list[str], **kwargs):
    """An offline AppConfig whose every path lies under ``root`` (no repo gallery, no user cache)."""
    from senet_demo.config import AppConfig

    kwargs.setdefault("offline", True)
    kwargs.setdefault("weights_dir", root / "weights")
    kwargs.setdefault("gallery_dir", root / "no-gallery")
    if "feature_cache_dir" in AppConfig.__dataclass_fields__:
        kwargs.setdefault("feature_cache_dir", root / "features")
    return AppConfig.from_specs(specs, **kwargs)


def export_tiny_resnet(folder: Path, seed: int) -> Path:
    """A random ResNet-D with 10 unnamed classes and the 64-px input, for the retrieval tests."""
    return export_tiny("resnet50d", folder, seed, {"input_size": TINY_INPUT}, labels=None, num_classes=10).folder


def spec_for(folder: Path) -> str:
    return f"resnet50d={folder}"


def services_for(spec: str, root: Path, gallery_dir: Path | None = None, cache_dir: Path | None = None, **kwargs):
    """A fresh ``Services`` (new registry, new engine) whose every path lies under ``root``."""
    from senet_demo.services import Services

    if gallery_dir is not None:
        kwargs["gallery_dir"] = gallery_dir
    if cache_dir is not None:
        kwargs["feature_cache_dir"] = cache_dir
    return Services.create(make_config(root, [spec], **kwargs))


# ------------------------------------------------------------------------- SE models of every family
# family -> (timm architecture, factory kwargs); all build in about a second and run 64-px inputs fast.
# (SE-ResNeXt uses the same timm SEModule as SE-ResNet; conftest's tiny_senet covers it.)
FAMILIES: dict[str, tuple[str, dict]] = {
    "resnet-semodule": ("seresnet50", {"layers": [1, 1, 1, 1]}),
    "legacy-senet": ("legacy_seresnet18", {"layers": [1, 1, 1, 1]}),
    "efficientnet": ("efficientnet_b0", {}),
    "mobilenetv3": ("mobilenetv3_small_050", {}),
    "regnety": ("regnety_002", {}),
}



@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core runner the threads' spin-waits
    cost far more than the work. Import this fixture into a test module to use it there."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def se_module_types() -> tuple[type, ...]:
    """The SE classes of the families above, by class (not by the structure rule under test)."""
    from timm.layers.squeeze_excite import SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models.senet import SEModule as LegacySEModule

    return SEModule, LegacySEModule, SqueezeExcite


def se_modules(model: nn.Module) -> dict[str, nn.Module]:
    """path -> SE module, in forward order, found by class."""
    types = se_module_types()
    return {path: m for path, m in model.named_modules() if isinstance(m, types)}


def build(family: str, seed: int = 0, num_classes: int = len(LABELS)) -> nn.Module:
    import timm

    arch, kwargs = FAMILIES[family]
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs).eval()
    randomize(model, seed)
    return model.requires_grad_(False)


@functools.cache
def shared(family: str) -> nn.Module:
    """``build(family)``, built once per session: for tests that only read it (hooks are removed after use)."""
    return build(family)


def randomize(model: nn.Module, seed: int) -> None:
    """The app's varied-gate maker (``senet_demo.varied_gates``): BN statistics, strong SE layers, a calibrated
    head; then checked here, by class, that every SE module of the model was reached."""
    from senet_demo.varied_gates import randomize as varied

    varied(model, seed)
    for se in se_modules(model).values():
        assert float(_layers(se)[1].bias.detach().abs().mean()) > 0.3, "an SE module the varied-gate maker missed"


def _layers(se: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """(reduce, expand, activation, gate) of an SE module, by family."""
    from timm.layers.squeeze_excite import SEModule
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models.senet import SEModule as LegacySEModule

    if isinstance(se, SEModule):
        assert isinstance(se.bn, nn.Identity) and not se.add_maxpool, "formula below has no BN / max-pool branch"
        return se.fc1, se.fc2, se.act, se.gate
    if isinstance(se, LegacySEModule):
        return se.fc1, se.fc2, se.relu, se.sigmoid
    if isinstance(se, SqueezeExcite):
        return se.conv_reduce, se.conv_expand, se.act1, se.gate
    raise TypeError(f"not an SE module of a known family: {type(se).__name__}")


def _activation(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The formula of an activation module, written out (the module itself is never called)."""
    from timm.layers import activations as timm_act

    if isinstance(module, nn.ReLU):
        return torch.where(x > 0, x, torch.zeros_like(x))
    if isinstance(module, (nn.SiLU, timm_act.Swish)):
        return x / (1.0 + torch.exp(-x))
    if isinstance(module, (nn.Sigmoid, timm_act.Sigmoid)):
        return 1.0 / (1.0 + torch.exp(-x))
    if isinstance(module, (nn.Hardsigmoid, timm_act.HardSigmoid)):
        return torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)  # relu6(x + 3) / 6
    raise TypeError(f"no reference formula for {type(module).__module__}.{type(module).__name__}")


def reference_excitation(se: nn.Module, u: torch.Tensor) -> torch.Tensor:
    """s = gate(W2 act(W1 z + b1) + b2), z = spatial mean of u; (B, C) in float64."""
    reduce, expand, act, gate = _layers(se)
    z = u.double().mean(dim=(2, 3))  # (B, C)
    w1 = reduce.weight.double().reshape(reduce.weight.shape[0], -1)  # (C/r, C)
    w2 = expand.weight.double().reshape(expand.weight.shape[0], -1)  # (C, C/r)
    hidden = _activation(act, z @ w1.T + reduce.bias.double())
    return _activation(gate, hidden @ w2.T + expand.bias.double())


def record_se_inputs(model: nn.Module, paths: list[str]):
    """My own forward pre-hooks: path -> list of SE inputs seen; returns (store, handles)."""
    store: dict[str, torch.Tensor] = {}
    handles = []
    for path in paths:
        def hook(_module, inputs, path=path):
            store[path] = inputs[0].detach().clone()
        handles.append(model.get_submodule(path).register_forward_pre_hook(hook))
    return store, handles


def with_identity(model: nn.Module, paths: list[str]) -> nn.Module:
    """A deep copy of ``model`` whose modules at ``paths`` are replaced by nn.Identity()."""
    import copy

    clone = copy.deepcopy(model)
    for path in paths:
        parent_path, _, name = path.rpartition(".")
        parent = clone.get_submodule(parent_path) if parent_path else clone
        setattr(parent, name, nn.Identity())
    return clone


def image_following_senet(folder: Path, seed: int = 0) -> str:
    """SPEC of a small SE-ResNeXt (two blocks per stage) whose gates spread over (0, 1) and follow the image,
    more in later blocks than in early ones (``varied_gates.follow_images``), with ImageNet's classes: the
    model the Explain views are looked at with. Its gates are sensitive to rounding, so it is for looking,
    not for comparing numbers."""
    import timm
    from timm.data import ImageNetInfo

    from senet_demo.varied_gates import follow_images, randomize as varied

    torch.manual_seed(seed)
    model = timm.create_model("seresnext26d_32x4d", pretrained=False, layers=[2, 2, 2, 2]).eval()
    varied(model, seed, side=112)
    follow_images(model, picture_batch(range(100, 112), size=112), seed)
    config = dict(input_size=(3, 112, 112), crop_pct=0.875, interpolation="bicubic",
                  mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    save_hub_layout(model, folder, config, list(ImageNetInfo().label_names()))
    return f"seresnext26d_32x4d={folder}"


def picture_batch(seeds, size: int = 64) -> torch.Tensor:
    """``picture(seed)`` for each seed as a (N, 3, size, size) tensor on about [-2, 2], as a model's transform gives."""
    arrays = [np.asarray(picture(seed, (size, size)), np.float32) for seed in seeds]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 64.0 - 2.0


def batch(seed: int = 0, n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def work_dir() -> Path:
    """Scratch space inside the session's temporary HF home (conftest deletes it at the end)."""
    root = Path(os.environ.get("HF_HOME", tempfile.gettempdir())) / "se-tests"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root))


@functools.cache
def exported(family: str, seed: int = 0) -> tuple[str, Path]:
    """(SPEC, folder): the randomized model of ``family`` written as timm's Hub layout; once per session."""
    arch = FAMILIES[family][0]
    folder = save_hub_layout(build(family, seed), work_dir() / arch, DATA_CONFIG, LABELS)
    return f"{arch}={folder}", folder


@functools.cache
def exported_plain(arch: str = "resnet50d") -> tuple[str, Path]:
    """(SPEC, folder) of a tiny random model *without* SE (one block per stage), once per session."""
    model = export_tiny(arch, work_dir() / arch, 0, DATA_CONFIG)
    return folder_spec(model), model.folder


# ------------------------------------------------------------------------------ pictures and galleries
def picture(seed: int = 0, size: tuple[int, int] = (96, 80), tint: tuple[int, int, int] | None = None) -> Image.Image:
    """A deterministic structured RGB picture (so crops and mirrors differ); different seeds give clearly
    different pictures, and ``tint`` shifts its colours (one tint per label makes labels separable)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    freq = 1 + seed % 7
    base = np.stack([np.sin(x * freq / 9.0), np.cos(y * freq / 7.0), np.sin((x + y) / (3.0 + freq))], axis=-1)
    array = 110 + 70 * base + rng.normal(0, 25, size=(height, width, 3))
    if tint is not None:
        array = 0.5 * array + 0.5 * np.asarray(tint)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


TINTS = [(230, 40, 40), (40, 200, 60), (50, 70, 230), (220, 220, 40)]


def make_gallery(root: Path, per_label: dict[str, int], seed: int = 0) -> Path:
    """``root/<label>/<label>_<i>.jpg``, each label with its own colour tint; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    n = seed * 1000
    for li, (label, count) in enumerate(per_label.items()):
        (root / label).mkdir(exist_ok=True)
        for i in range(count):
            n += 1
            picture(n, tint=TINTS[li % len(TINTS)]).save(root / label / f"{label}_{i}.jpg", quality=92)
    return root


def embeddings(services, items) -> np.ndarray:
    """The first model's stored gallery embeddings of ``items``, (N, D)."""
    name = services.registry.names[0]
    return np.stack([o.embedding for o in services.features.outputs(name, items)])


class BatchCounter:
    """Wraps ``engine.run_batch`` on one engine and records the images it was given."""

    def __init__(self, engine):
        from senet_demo.images import content_hash

        self._hash = content_hash
        self._run_batch = engine.run_batch
        self.images: list[str] = []  # content hashes, in call order
        engine.run_batch = self

    def __call__(self, name, images):
        self.images.extend(self._hash(image) for image in images)
        return self._run_batch(name, images)



def subprocess_env(hf_home: Path) -> dict[str, str]:
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=str(REPO_ROOT))
    env.pop("SENET_WEIGHTS_DIR", None)
    return env


def retrieve_handlers(services) -> dict:
    """The Retrieve tab's handlers by their event names (on_retrieve, on_metrics, on_upload, on_clear), bound
    to ``services`` as the app binds them: they take an image as Gradio's preprocessing gives it (a path) and
    answer as the tab's handlers do (a gallery as (path, caption) pairs)."""
    import functools

    from senet_demo.ui import retrieve_tab

    return {"on_retrieve": functools.partial(retrieve_tab.retrieve_image, services),
            "on_metrics": functools.partial(retrieve_tab.retrieval_quality, services),
            "on_upload": functools.partial(retrieve_tab.add_uploads, services),
            "on_clear": retrieve_tab.clear_uploads}


def no_progress(*args, **kwargs) -> None:
    """Stands in for gr.Progress when a handler is called outside a Gradio event."""


def gallery_pairs(answer: list) -> list[tuple[str, str]]:
    """(file path, caption) of each item of a Gallery's value as the Retrieve handler returns it."""
    return [(str(path), caption) for path, caption in answer]


# ---------------------------------------------------------------- awkward and hostile uploads
BOMB_SIDE = 40_000  # 1.6 Gpx declared; about 200 kB on disk


@dataclass
class Corpus:
    files: dict[str, Path] = field(default_factory=dict)  # case -> the file a visitor uploads
    references: dict[str, Path] = field(default_factory=dict)  # case -> PNG of what the app should see
    wrong: dict[str, Path] = field(default_factory=dict)  # case -> PNG of what a careless decoder would see


def blocks(colours: list[tuple[int, int, int]], size: tuple[int, int] = (96, 72)) -> Image.Image:
    """Vertical stripes of flat colours: exact in a palette, so GIF and PNG hold the same pixels."""
    width, height = size
    image = Image.new("RGB", size)
    step = width // len(colours)
    for i, colour in enumerate(colours):
        image.paste(colour, (i * step, 0, width if i == len(colours) - 1 else (i + 1) * step, height))
    # a horizontal band, so a rotation changes the picture as well as a mirror does
    image.paste((250, 250, 250), (0, height // 3, width, height // 3 + 6))
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A side×side 1-bit black PNG, written by hand: the zlib stream of side rows of zeros."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    chunk = row * 1000
    body = b"".join(packer.compress(chunk) for _ in range(side // 1000))
    body += packer.compress(row * (side % 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def heic_header() -> bytes:
    """The start of a real HEIC file (ISO-BMFF ftyp box, brand heic; then an empty meta box)."""
    ftyp = struct.pack(">I4s4sI", 24, b"ftyp", b"heic", 0) + b"mif1heic"
    meta = struct.pack(">I4sI", 12, b"meta", 0)
    return ftyp + meta + b"\x00" * 64


MINIMAL_PDF = (b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
               b"2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\n"
               b"trailer <</Root 1 0 R>>\n%%EOF\n")


def _save(image: Image.Image, path: Path, fmt: str | None = None, **params) -> Path:
    image.save(path, fmt, **params)
    return path


def write_corpus(folder: Path) -> Corpus:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = Corpus()
    f, ref, wrong = c.files, c.references, c.wrong

    # --- refused, each with its own message
    f["empty"] = folder / "empty.jpg"
    f["empty"].write_bytes(b"")
    f["text_as_jpg"] = folder / "notes.jpg"
    f["text_as_jpg"].write_text("Shopping list\n- coffee\n- milk\n" * 10)
    f["pdf_as_jpg"] = folder / "invoice.jpg"
    f["pdf_as_jpg"].write_bytes(MINIMAL_PDF)
    whole = io.BytesIO()
    picture(0, (256, 192)).save(whole, "JPEG", quality=90)
    f["truncated_jpeg"] = folder / "cut.jpg"
    f["truncated_jpeg"].write_bytes(whole.getvalue()[: len(whole.getvalue()) * 6 // 10])
    f["bomb"] = folder / "bomb.png"
    f["bomb"].write_bytes(bomb_png())
    f["one_pixel"] = _save(Image.new("RGB", (1, 1), (200, 30, 30)), folder / "dot.png")
    f["heic"] = folder / "IMG_0001.heic"
    f["heic"].write_bytes(heic_header())
    f["avif"] = _save(picture(0, (96, 72)), folder / "photo.avif", "AVIF")

    # --- valid but odd: the app must see the reference picture
    strip = picture(0, (10_000, 20))
    f["strip"] = _save(strip, folder / "strip.png")

    grey = np.asarray(picture(0, (96, 72)).convert("L"), dtype=np.uint16)
    f["png16"] = _save(Image.fromarray(grey * 257), folder / "deep.png")  # 16-bit: v * 257 is v in 8 bits
    assert Image.open(f["png16"]).mode.startswith("I;16")
    ref["png16"] = _save(Image.fromarray(grey.astype(np.uint8)).convert("RGB"), folder / "deep_ref.png")

    cmyk = Image.new("CMYK", (96, 72), (0, 255, 255, 0))  # red
    cmyk.paste((255, 0, 255, 0), (48, 0, 96, 72))  # green
    f["cmyk_jpeg"] = _save(cmyk, folder / "print.jpg", "JPEG", quality=95)

    palette = Image.new("P", (96, 72), 0)
    palette.putpalette([0, 0, 0, 200, 30, 40, 30, 60, 220] + [0] * 759)
    palette.paste(1, (0, 0, 48, 72))
    palette.paste(2, (48, 36, 96, 72))  # index 0 (black, transparent) is left top-right
    f["palette_alpha"] = _save(palette, folder / "logo.png", transparency=0)
    upright = Image.new("RGB", (96, 72), (255, 255, 255))
    upright.paste((200, 30, 40), (0, 0, 48, 72))
    upright.paste((30, 60, 220), (48, 36, 96, 72))
    ref["palette_alpha"] = _save(upright, folder / "logo_ref.png")
    wrong["palette_alpha"] = _save(palette.convert("RGB"), folder / "logo_black.png")  # alpha dropped

    first = blocks([(220, 30, 30), (30, 200, 40), (30, 40, 210)])
    second = blocks([(240, 220, 20), (20, 20, 20), (200, 40, 200), (20, 200, 200)])
    f["animated_gif"] = folder / "wave.gif"
    first.save(f["animated_gif"], save_all=True, append_images=[second], duration=200, loop=0)
    assert Image.open(f["animated_gif"]).n_frames == 2
    ref["animated_gif"] = _save(first, folder / "wave_first.png")
    wrong["animated_gif"] = _save(second, folder / "wave_second.png")

    # EXIF orientation 6: stored turned 90° counter-clockwise, shown turned back clockwise.
    shown = picture(3, (72, 96))
    shown.paste((230, 20, 20), (0, 0, 72, 48))  # top half red when upright
    stored = shown.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    f["exif_rotated"] = _save(stored, folder / "phone.jpg", "JPEG", quality=95, exif=exif)
    plain = _save(stored, folder / "phone_no_exif.jpg", "JPEG", quality=95)  # same pixel data, no tag
    decoded = Image.open(plain).convert("RGB")
    ref["exif_rotated"] = _save(decoded.transpose(Image.Transpose.ROTATE_270), folder / "phone_upright.png")
    wrong["exif_rotated"] = _save(decoded, folder / "phone_sideways.png")

    photo = picture(5, (96, 72))
    f["webp"] = _save(photo, folder / "photo.webp", "WEBP", lossless=True)
    ref["webp"] = _save(photo, folder / "photo_ref.png")
    return c


def zip_with(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    """A zip whose entries have exactly these names (``zipfile`` keeps '..' and absolute names)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def tiny_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    picture(seed, (8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


def lying_zip(path: Path, name: str, data: bytes, declared: int) -> Path:
    """A one-member zip whose local header and central directory both claim ``declared`` bytes."""
    zip_with(path, {name: data})
    raw = bytearray(path.read_bytes())
    real = struct.pack("<I", len(data))
    for at in (i for i in range(len(raw) - 4) if raw[i:i + 4] in (b"PK\x03\x04", b"PK\x01\x02")):
        offset = at + (22 if raw[at + 2] == 3 else 24)  # uncompressed size field
        assert raw[offset:offset + 4] == real
        raw[offset:offset + 4] = struct.pack("<I", declared)
    path.write_bytes(bytes(raw))
    return path


def write_zips(folder: Path, image_limit: int) -> dict[str, Path]:
    """The hostile gallery uploads; ``image_limit`` is the app's per-image byte limit."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = tiny_png(1)
    zeros = bytes(image_limit + 2**20)  # 1 MB over the limit; compresses to about 20 kB
    return {
        "dotdot": zip_with(folder / "holiday.zip", {"beach/a.png": good, "../../escaped.png": good}),
        "ten_thousand": zip_with(folder / "many.zip", {f"tiny/{i:05d}.png": good for i in range(10_000)}),
        "big_member": zip_with(folder / "big.zip", {"beach/a.png": good, "beach/huge.png": zeros}),
        "lying_header": lying_zip(folder / "liar.zip", "beach/liar.png", zeros, declared=len(good)),
    }


# ------------------------------------------------------------------ Hub cache, traps, processes
def write_hf_cache(repo_id: str, model: TinyModel, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """The Hugging Face cache layout, by hand: refs/main -> snapshots/<commit>/files."""
    repo = HF_HUB_CACHE / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return model.copy_to(repo / "snapshots" / commit)


def remove_hf_cache(repo_id: str) -> None:
    shutil.rmtree(HF_HUB_CACHE / f"models--{repo_id.replace('/', '--')}", ignore_errors=True)


class _Trap:
    """Unpickling this object creates ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_trap(path: Path, marker: Path) -> Path:
    """Write a pickle at ``path`` whose loading (with full unpickling) would create ``marker``."""
    path.write_bytes(pickle.dumps({"state_dict": _Trap(marker)}))
    return path


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

