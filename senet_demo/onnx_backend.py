"""ONNX Runtime behind the engine: export a model once, check it against eager PyTorch, serve it.

``prepare`` returns a ready ``OrtBackend`` for a loaded model. It opens the cached export when its
record (read with ``storage.read_checked``: this export's name, weights, format and library versions)
says the export passed validation and the file's sha256 is the one validated; otherwise -- no record, a
damaged one, a truncated or altered graph, each logged with its path -- it exports the model and
validates it first. Anything that keeps ONNX Runtime from serving a model (a folder that cannot be
written included) raises ``OnnxUnavailable`` with the reason; the engine then keeps eager PyTorch for
that model and shows the reason.

The export traces ``forward.forward_outputs``, the function eager PyTorch runs, so the graph returns
the same things: ``logits``, the pooled pre-logits ``embedding``, one output per SE block named as the
block (``SE_2_1`` ..., its excitation as (B, C)), its squeeze z (``z_SE_2_1``, (B, C)) and bottleneck
(``h_SE_2_1``, (B, C/r)), the input maps U of its most and least excited channels (``U_SE_2_1``,
(B, 2k, H, W)) and those channels (``I_SE_2_1``, (2k,)). The batch axis is dynamic, so the ten TTA crops run in one call.
ONNX Runtime's own graph optimisations (``ORT_ENABLE_ALL``) do the rest: hand-written layout rewrites of
the graph were measured against them and did not pay for their code (docs/performance.md).

Exports are cached as ``<dir>/<arch>-<weights identity>-<H>x<W>-f<FORMAT>-op<OPSET>.onnx``, written
with ``storage.atomic_write``, beside a JSON record of the file's sha256, the library versions and the
validation on a fixed picture's ten crops: the largest difference of probabilities (under
``PROB_TOLERANCE``), the same top-5 for every crop, and how close the embedding, the excitations and
the maps are.

Threads: ONNX Runtime can run every session of a process in one thread pool, a setting of the whole
process that must be made before its first session. The engine asks for it when one forward runs at a
time (the served app's default), so that the ensemble's sessions, which run back to back, share one
pool sized as a PyTorch forward's threads. The first session opened decides, once, for the process
(``_Threads``); every later session follows that decision.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from .ensemble import tta_batch
from .forward import ForwardResult, forward_outputs
from .models import LoadedModel
from .se_blocks import SEBlock
from . import storage
from .storage import atomic_write, cache_dir
from .weights import file_sha256, remembered_sha256

log = logging.getLogger(__name__)

NAME = "onnxruntime"
FORMAT_VERSION = 5  # bump when what the graph takes, returns or holds changes: old exports are then ignored
OPSET = 17
INPUT = "image"
LOGITS, EMBEDDING = "logits", "embedding"
MAP_PREFIX, CHANNELS_PREFIX = "U_", "I_"  # a block's kept input maps and their channels: U_SE_3_23, I_SE_3_23
SQUEEZE_PREFIX, BOTTLENECK_PREFIX = "z_", "h_"  # a block's squeeze and bottleneck: z_SE_3_23, h_SE_3_23
PROB_TOLERANCE = 1e-4  # max |p_onnx - p_eager| over every class of every validation view
FEATURE_TOLERANCE = 1e-3  # embedding and maps (relative to their largest value) and excitations (absolute)


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime cannot serve this model; the message says why."""


def missing_packages() -> str | None:
    """Why ONNX Runtime cannot be used at all (a package is missing), or None when it can."""
    for package in ("onnxruntime", "onnx"):  # the session, and the exporter's graph format
        try:
            importlib.import_module(package)
        except ImportError:
            return f"ONNX Runtime is not installed ({package} missing: pip install onnxruntime onnx)"
    return None


# ---------------------------------------------------------------- the export


class _TracedForward(nn.Module):
    """``forward_outputs`` as a module with flat outputs in a fixed order, for the exporter to trace."""

    def __init__(self, model: nn.Module, blocks: list[SEBlock]):
        super().__init__()
        self.model, self.blocks = model, blocks

    def forward(self, batch: torch.Tensor):
        result = forward_outputs(self.model, self.blocks, batch)
        return (result.logits, result.embedding, *(result.excitations[b.name] for b in self.blocks),
                *(result.squeezes[b.name] for b in self.blocks), *(result.bottlenecks[b.name] for b in self.blocks),
                *(result.maps[b.name] for b in self.blocks), *(result.map_channels[b.name] for b in self.blocks))


def output_names(blocks: list[SEBlock]) -> list[str]:
    return [LOGITS, EMBEDDING, *(b.name for b in blocks), *(SQUEEZE_PREFIX + b.name for b in blocks),
            *(BOTTLENECK_PREFIX + b.name for b in blocks), *(MAP_PREFIX + b.name for b in blocks),
            *(CHANNELS_PREFIX + b.name for b in blocks)]


@dataclass(frozen=True)
class ExportFiles:
    """Where one model's export and its validation record live."""

    graph: Path
    sidecar: Path


def export_files(directory: Path, loaded: LoadedModel) -> ExportFiles:
    """The cache key: architecture, weights content, input size, export format and opset."""
    _, height, width = loaded.data_config["input_size"]
    arch = re.sub(r"[^A-Za-z0-9_.-]", "_", loaded.spec.arch)[:80]
    stem = f"{arch}-{loaded.weights.identity}-{height}x{width}-f{FORMAT_VERSION}-op{OPSET}"
    return ExportFiles(directory / f"{stem}.onnx", directory / f"{stem}.json")


def default_cache_dir(weights_dir: Path) -> Path:
    """``<weights dir>/onnx`` when it can be written, else ``storage.cache_dir("onnx")``."""
    preferred = Path(weights_dir) / "onnx"
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    return cache_dir("onnx")


def versions() -> dict[str, str]:
    """Library versions an export depends on; a failed validation is retried when they change."""
    import onnx
    import onnxruntime
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def export_graph(loaded: LoadedModel, blocks: list[SEBlock], path: Path) -> str:
    """Write the ONNX graph of ``loaded`` to ``path`` atomically; returns the file's sha256."""
    traced = _TracedForward(loaded.model, blocks).eval()  # eval: the exporter restores the module's mode
    _, height, width = loaded.data_config["input_size"]
    example = torch.zeros(2, 3, height, width)  # batch 2: the batch axis is never specialised to 1
    names = output_names(blocks)
    with atomic_write(path) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(
                traced, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                input_names=[INPUT], output_names=names,
                dynamic_axes={name: {0: "batch"} for name in [INPUT, *names]},
            )
        digest = file_sha256(tmp)
    return digest


# ---------------------------------------------------------------- validation against eager PyTorch


def validation_batch(loaded: LoadedModel) -> torch.Tensor:
    """A fixed structured picture (gradients, stripes, a disc) as the model's ten crops."""
    height, width = 320, 400
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - 260) ** 2 + (y - 150) ** 2 < 70**2) * 180.0
    pixels = np.stack([x * 255 / width, (np.sin(x / 9) + 1) * 60 + disc, (x + y) % 48 * 5], axis=-1)
    pixels += np.random.default_rng(0).integers(0, 40, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return tta_batch(loaded.transform, image, "tencrop")


def compare(eager: ForwardResult, onnx: ForwardResult) -> dict:
    """How far the ONNX outputs are from eager PyTorch, and whether that is within the tolerances."""
    logits_e, embedding_e, excitations_e, maps_e = eager.logits, eager.embedding, eager.excitations, eager.maps
    logits_o, embedding_o, excitations_o, maps_o = onnx.logits, onnx.embedding, onnx.excitations, onnx.maps
    probs_e, probs_o = logits_e.float().softmax(-1), logits_o.float().softmax(-1)
    k = min(5, probs_e.shape[-1])
    top5_match = bool(torch.equal(probs_e.topk(k, -1).indices, probs_o.topk(k, -1).indices))
    prob_diff = float((probs_e - probs_o).abs().max())
    embedding_diff = _relative_diff(embedding_e, embedding_o)
    same_blocks = list(excitations_e) == list(excitations_o) and list(maps_e) == list(maps_o)
    excitation_diff = max((float((excitations_e[n] - excitations_o[n]).abs().max())
                           for n in excitations_e if n in excitations_o), default=0.0)
    # the squeeze and bottleneck are on the features' scale, so they are compared as the maps are
    step_diff = max((_relative_diff(eager_steps[n], onnx_steps[n])
                     for eager_steps, onnx_steps in ((eager.squeezes, onnx.squeezes), (eager.bottlenecks, onnx.bottlenecks))
                     for n in eager_steps if n in onnx_steps), default=0.0)
    maps_diff = max((_kept_maps_diff(eager, onnx, n) for n in maps_e if n in maps_o), default=0.0)
    problems = []
    if prob_diff >= PROB_TOLERANCE:
        problems.append(f"probabilities differ by up to {prob_diff:.2e} (limit {PROB_TOLERANCE:g})")
    if not top5_match:
        problems.append("the top-5 classes differ")
    if embedding_diff >= FEATURE_TOLERANCE:
        problems.append(f"embeddings differ by up to {embedding_diff:.2e} of their scale")
    if not same_blocks:
        problems.append("the SE blocks differ")
    if excitation_diff >= FEATURE_TOLERANCE:
        problems.append(f"excitations differ by up to {excitation_diff:.2e}")
    if maps_diff >= FEATURE_TOLERANCE:
        problems.append(f"feature maps differ by up to {maps_diff:.2e} of their scale")
    if step_diff >= FEATURE_TOLERANCE:
        problems.append(f"squeeze or bottleneck values differ by up to {step_diff:.2e} of their scale")
    return {
        "valid": not problems,
        "reason": "; ".join(problems),
        "views": int(probs_e.shape[0]),
        "max_abs_prob_diff": prob_diff,
        "top5_match": top5_match,
        "embedding_max_rel_diff": embedding_diff,
        "excitation_max_abs_diff": excitation_diff,
        "maps_max_rel_diff": maps_diff,
        "steps_max_rel_diff": step_diff,
    }


def _kept_maps_diff(eager: ForwardResult, onnx: ForwardResult, name: str) -> float:
    """How far the maps of the channels both kept are apart. Gates that tie (saturated at 1.0, say) may be
    ordered differently by the two runtimes, so each map is matched by its channel, not by its place."""
    eager_at = {int(c): i for i, c in enumerate(eager.map_channels[name])}
    pairs = [(eager_at[int(c)], j) for j, c in enumerate(onnx.map_channels[name]) if int(c) in eager_at]
    if not pairs:
        return 0.0
    ours, theirs = zip(*pairs)
    return _relative_diff(eager.maps[name][:, list(ours)], onnx.maps[name][:, list(theirs)])


def _relative_diff(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """The largest absolute difference, over the larger of 1 and the largest expected magnitude."""
    scale = max(1.0, float(expected.abs().max()))
    return float((expected.float() - actual.float()).abs().max()) / scale


def validate(loaded: LoadedModel, eager: Callable[[torch.Tensor], ForwardResult],
             onnx: Callable[[torch.Tensor], ForwardResult]) -> dict:
    batch = validation_batch(loaded)
    return compare(eager(batch), onnx(batch))


def write_sidecar(path: Path, record: dict) -> bool:
    """Store the validation record; False (logged) when its folder cannot be written."""
    text = json.dumps(record, indent=1)
    return storage.write_or_warn(path, lambda tmp: tmp.write_text(text, encoding="utf-8"),
                                 what="ONNX validation record")


def read_sidecar(files: ExportFiles, loaded: LoadedModel) -> dict | None:
    """The validation record of this model's export, or None when there is none; a damaged one, or one
    written for another export, is logged with its path and removed (``storage.read_checked``)."""
    return storage.read_checked(files.sidecar, lambda path: json.loads(path.read_text(encoding="utf-8")),
                                lambda record: record_problem(record, files, loaded), what="ONNX validation record")


def record_problem(record, files: ExportFiles, loaded: LoadedModel) -> str | None:
    """What makes ``record`` unusable as the validation record of ``files.graph``, or None."""
    if not isinstance(record, dict):
        return "it is not a JSON object"
    expected = {"file": files.graph.name, "weights_identity": loaded.weights.identity, "format": FORMAT_VERSION,
                "opset": OPSET}
    for key, value in expected.items():
        if record.get(key) != value:
            return f"its {key} is {str(record.get(key))[:80]!r}, not {value!r}"
    if not isinstance(record.get("valid"), bool):
        return "it holds no validation result"
    if not (isinstance(record.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", record["sha256"])):
        return "it holds no sha256 of the graph"
    if not isinstance(record.get("versions"), dict):
        return "it does not name the library versions it was validated with"
    return None


# ---------------------------------------------------------------- sessions and their threads


class _Threads:
    """The process's one decision about ONNX Runtime's thread pools, made when its first session opens.

    ONNX Runtime takes a process-wide pool only before its environment exists (the first session
    creates it), and from then on refuses sessions with a pool of their own; without it, it refuses
    sessions that ask for the shared one. So the first session decides, and this object remembers.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.shared: int | None = None  # None: not decided; 0: a pool per session; n: one pool of n threads

    def options(self, threads: int, share: bool):
        """Session options: all graph optimisations, and either the shared pool or ``threads`` of its own."""
        import onnxruntime as ort

        with self._lock:
            if self.shared is None:
                self.shared = self._set_up_shared_pool(threads) if share else 0
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if self.shared:
            options.use_per_session_threads = False
            if self.shared != threads:
                log.info("ONNX Runtime's shared pool keeps its %d threads (asked for %d)", self.shared, threads)
        else:
            options.intra_op_num_threads = max(1, threads)
            # Threads that spin between runs would take the cores from the session that runs next.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return options

    @staticmethod
    def _set_up_shared_pool(threads: int) -> int:
        import onnxruntime as ort

        try:
            ort.set_global_thread_pool_sizes(max(1, threads), 1)
        except Exception as err:
            log.warning("ONNX Runtime sessions keep a thread pool each: %s", err)
            return 0
        # The pool is taken only if no session of this process came first; a probe tells which kind opens.
        if _probe_opens(shared_pool=True) or not _probe_opens(shared_pool=False):
            return max(1, threads)
        log.warning("ONNX Runtime sessions keep a thread pool each: a session opened before the shared pool")
        return 0


def _probe_opens(shared_pool: bool) -> bool:
    """Whether a one-node session opens in the shared pool (or, with False, in a pool of its own)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    value = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]) for name in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", value[:1], value[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # readable by any ONNX Runtime this app supports, whatever onnx writes by default
    options = ort.SessionOptions()
    options.use_per_session_threads = not shared_pool
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return True
    except Exception:
        return False


THREADS = _Threads()  # ONNX Runtime's pools are the process's, so their decision is too


class OrtBackend:
    """Runs a batch of views through an ONNX Runtime session."""

    name = NAME

    def __init__(self, session, blocks: list[SEBlock], path: Path):
        self.session, self.blocks, self.path = session, blocks, path
        self._outputs = output_names(blocks)

    def forward(self, batch: torch.Tensor) -> ForwardResult:
        values = self.session.run(self._outputs, {INPUT: batch.detach().float().contiguous().numpy()})
        logits, embedding, *rest = (torch.from_numpy(v) for v in values)
        n = len(self.blocks)

        def by_block(tensors):
            return {b.name: t for b, t in zip(self.blocks, tensors)}

        return ForwardResult(logits, embedding, by_block(rest[:n]), by_block(rest[n:2 * n]), by_block(rest[2 * n:3 * n]),
                             by_block(rest[3 * n:4 * n]), by_block(rest[4 * n:]))


def open_session(path: Path, blocks: list[SEBlock], threads: int, share_pool: bool = False) -> OrtBackend:
    import onnxruntime as ort

    options = THREADS.options(threads, share_pool)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if names != output_names(blocks):
        raise OnnxUnavailable(f"the graph's outputs {names[:4]}... are not this model's")
    return OrtBackend(session, blocks, path)


# ---------------------------------------------------------------- a ready backend, cached or exported now


def prepare(loaded: LoadedModel, blocks: list[SEBlock], directory: Path,
            eager: Callable[[torch.Tensor], ForwardResult], threads: int = 1, share_pool: bool = False) -> OrtBackend:
    """A validated ONNX Runtime backend for ``loaded``, from the cache or exported now.

    ``threads``: intra-op threads of its session; ``share_pool``: ask for the process's one pool (see
    ``_Threads``), for when one forward runs at a time.
    """
    missing = missing_packages()
    if missing:
        raise OnnxUnavailable(missing)
    files = export_files(directory, loaded)
    record = read_sidecar(files, loaded)
    if record is not None and record["versions"] != versions():
        log.info("%s: %s was validated with other library versions; exporting again", loaded.name, files.graph)
    elif record is not None and record["valid"]:
        backend = _open_cached(files, record, blocks, threads, share_pool)
        if backend is not None:
            return backend
    elif record is not None and files.graph.is_file():
        raise OnnxUnavailable(f"its export failed validation against PyTorch ({record.get('reason')}); "
                              f"see {files.sidecar}")
    return _export(loaded, blocks, files, eager, threads, share_pool)


def _open_cached(files: ExportFiles, record: dict, blocks: list[SEBlock], threads: int,
                 share_pool: bool) -> OrtBackend | None:
    """The validated export's session, or None when the file is not the one validated (missing, truncated,
    altered) or does not open: it is then logged with its path and removed, so the caller exports afresh."""
    try:
        # checked before ONNX Runtime parses the file: a damaged graph never reaches the parser
        if remembered_sha256(files.graph) != record["sha256"]:  # read once, then known by its stat
            raise OnnxUnavailable("its content does not match the sha256 recorded when it was validated")
        backend = open_session(files.graph, blocks, threads, share_pool)
    except Exception as err:
        reason = "it is missing" if isinstance(err, FileNotFoundError) else str(err)
        log.warning("Discarding the cached ONNX export %s: %s; it is exported again", files.graph, reason)
        for path in (files.graph, files.sidecar):
            path.unlink(missing_ok=True)
        return None
    log.info("%s: ONNX Runtime from %s", files.graph.stem, files.graph)
    return backend


def _export(loaded: LoadedModel, blocks: list[SEBlock], files: ExportFiles,
            eager: Callable[[torch.Tensor], ForwardResult], threads: int, share_pool: bool) -> OrtBackend:
    start = time.perf_counter()
    log.info("%s: exporting to ONNX (once) at %s", loaded.name, files.graph)
    try:
        digest = export_graph(loaded, blocks, files.graph)
    except OSError as err:  # a read-only or full folder, or a file in its place: this model stays eager
        problem = f"the ONNX export cannot be stored in {files.graph.parent} ({err.strerror or err})"
        log.warning("%s: %s; eager PyTorch serves it", loaded.name, problem)
        raise OnnxUnavailable(problem) from err
    except Exception as err:
        files.graph.unlink(missing_ok=True)  # an older graph there is not this export
        raise OnnxUnavailable(f"the ONNX export failed: {type(err).__name__}: {err}") from err
    try:
        backend = open_session(files.graph, blocks, threads, share_pool)
    except Exception as err:
        files.graph.unlink(missing_ok=True)
        raise OnnxUnavailable(f"the ONNX export failed: {type(err).__name__}: {err}") from err
    try:
        report = validate(loaded, eager, backend.forward)
    except Exception as err:
        files.graph.unlink(missing_ok=True)
        raise OnnxUnavailable(f"the exported graph failed on the validation batch: {type(err).__name__}: {err}") from err
    record = {"model": loaded.name, "weights_identity": loaded.weights.identity, "file": files.graph.name,
              "sha256": digest, "format": FORMAT_VERSION, "opset": OPSET, "outputs": output_names(blocks),
              "export_seconds": round(time.perf_counter() - start, 2), "versions": versions(), **report}
    if not write_sidecar(files.sidecar, record):
        files.graph.unlink(missing_ok=True)  # a graph without its record is never opened: it is made again
    if not report["valid"]:
        raise OnnxUnavailable(f"its export failed validation against PyTorch ({report['reason']}); see {files.sidecar}")
    log.info("%s: exported and validated in %.1f s (max |Δp| %.1e, same top-5)", loaded.name,
             record["export_seconds"], report["max_abs_prob_diff"])
    return backend
