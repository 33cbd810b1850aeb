"""ONNX Runtime behind the engine: one session per model, the same outputs as the eager forward.

``prepare`` returns a ready ``OrtBackend`` for a loaded model: it opens the cached export when its
record says it passed validation and the file is intact, otherwise exports and validates it first
(see ``onnx_export``). Anything that keeps ONNX Runtime from serving a model raises ``OnnxUnavailable``
with the reason; the engine then keeps eager PyTorch for that model and shows the reason.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from . import onnx_export as ox
from .models import LoadedModel
from .se_blocks import SEBlock, map_blocks
from .weights import remembered_sha256

log = logging.getLogger(__name__)

NAME = "onnxruntime"


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


_shared_pool_threads: int | None = None  # None: not decided; 0: a pool per session; n: one pool of n threads
_shared_pool_lock = threading.Lock()


def serve_sessions_in_one_pool(config) -> bool:
    """The served app's threading: every ONNX Runtime session of the process in one pool, where one forward
    runs at a time (``inference_workers`` 1, the default).

    ONNX Runtime gives each session a pool of its own otherwise; the ensemble's two sessions run back to
    back, and their forwards took 237 ms on 2 cores with a pool each, 206 ms with one pool (two processes
    taking turns). With more workers, concurrent forwards would share one pool sized for one of them, so
    each session keeps its own, as measured for that setting. A setting of the whole process, made before
    any session opens: ONNX Runtime then refuses a session with a pool of its own in this process, which
    is why only ``app.py`` and the benchmark's copies of its engine ask for it.
    """
    if config.engine == "torch" or config.queue.inference_workers != 1 or missing_packages():
        return False
    return _share_one_pool(config.queue.threads_per_forward)


def _share_one_pool(threads: int) -> bool:
    global _shared_pool_threads
    import onnxruntime as ort

    with _shared_pool_lock:
        if _shared_pool_threads is None:
            try:
                ort.set_global_thread_pool_sizes(threads, 1)
            except Exception as err:
                log.warning("ONNX Runtime sessions keep a thread pool each: %s", err)
                _shared_pool_threads = 0
                return False
            # ONNX Runtime's environment (made by the first session) takes the pool only if no session came
            # first; the probe tells which kind of session this process can open from now on.
            if _opens(shared_pool=True) or not _opens(shared_pool=False):
                _shared_pool_threads = threads
            else:
                log.warning("ONNX Runtime sessions keep a thread pool each: a session opened before the "
                            "shared pool was set up")
                _shared_pool_threads = 0
        elif _shared_pool_threads and _shared_pool_threads != threads:
            log.warning("ONNX Runtime's shared pool keeps its %d threads (asked for %d)", _shared_pool_threads,
                        threads)
    return bool(_shared_pool_threads)


def _opens(shared_pool: bool) -> bool:
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


def session_options(threads: int):
    """All graph optimisations, ``threads`` intra-op threads (the same share of the CPUs a PyTorch forward
    gets), or the process's one pool where ``serve_sessions_in_one_pool`` set it up (sized the same way;
    its threads wait for work spinning a little, ONNX Runtime's default, which Python cannot change)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if _shared_pool_threads:
        options.use_per_session_threads = False
    else:
        options.intra_op_num_threads = max(1, threads)
        # No busy-waiting between runs: one session's spinning threads took the cores from the next
        # (the ensemble 0.43 s with spinning, 0.36 s without, on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OrtBackend:
    """Runs a batch of views through an ONNX Runtime session."""

    name = NAME

    def __init__(self, session, blocks: list[SEBlock], path: Path):
        self.session, self.blocks, self.path = session, blocks, path
        self._outputs = ox.output_names(blocks)

    def forward(self, batch: torch.Tensor) -> ox.ForwardResult:
        values = self.session.run(self._outputs, {ox.INPUT: batch.detach().float().contiguous().numpy()})
        logits, embedding, *rest = (torch.from_numpy(v) for v in values)
        gates, maps = rest[:len(self.blocks)], rest[len(self.blocks):]
        return (logits, embedding, {b.name: g for b, g in zip(self.blocks, gates)},
                {b.name: u for b, u in zip(map_blocks(self.blocks), maps)})


def open_session(path: Path, blocks: list[SEBlock], threads: int) -> OrtBackend:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    if names != ox.output_names(blocks):
        raise OnnxUnavailable(f"the graph's outputs {names[:4]}... are not this model's")
    return OrtBackend(session, blocks, path)


def prepare(loaded: LoadedModel, blocks: list[SEBlock], cache_dir: Path,
            eager: Callable[[torch.Tensor], ox.ForwardResult], threads: int = 1) -> OrtBackend:
    """A validated ONNX Runtime backend for ``loaded``, from the cache or exported now."""
    missing = missing_packages()
    if missing:
        raise OnnxUnavailable(missing)
    files = ox.export_files(cache_dir, loaded)
    record = ox.read_sidecar(files.sidecar)
    if record is not None and files.graph.is_file():
        if not record.get("valid"):
            if record.get("versions") == ox.versions():
                raise OnnxUnavailable(f"its export failed validation against PyTorch ({record.get('reason')}); "
                                      f"see {files.sidecar}")
        else:
            return _open_cached(files, record, blocks, threads)
    return _export(loaded, blocks, files, eager, threads)


def _open_cached(files: ox.ExportFiles, record: dict, blocks: list[SEBlock], threads: int) -> OrtBackend:
    try:
        if remembered_sha256(files.graph) != record.get("sha256"):  # read once, then known by its stat
            raise OnnxUnavailable("its content does not match the sha256 recorded when it was validated")
        backend = open_session(files.graph, blocks, threads)
    except Exception as err:
        # A damaged cache file: remove it so that the next start exports afresh, and keep eager for now.
        for path in (files.graph, files.sidecar):
            path.unlink(missing_ok=True)
        raise OnnxUnavailable(f"the cached export {files.graph.name} is corrupt ({err}); it was removed and "
                              f"is made again on the next start") from err
    log.info("%s: ONNX Runtime from %s", files.graph.stem, files.graph)
    return backend


def _export(loaded: LoadedModel, blocks: list[SEBlock], files: ox.ExportFiles,
            eager: Callable[[torch.Tensor], ox.ForwardResult], threads: int) -> OrtBackend:
    start = time.perf_counter()
    log.info("%s: exporting to ONNX (once) at %s", loaded.name, files.graph)
    try:
        digest, layout = ox.export_graph(loaded, blocks, files.graph)
        backend = open_session(files.graph, blocks, threads)
    except Exception as err:
        files.graph.unlink(missing_ok=True)
        raise OnnxUnavailable(f"the ONNX export failed: {type(err).__name__}: {err}") from err
    try:
        report = ox.validate(loaded, eager, backend.forward)
    except Exception as err:
        files.graph.unlink(missing_ok=True)
        raise OnnxUnavailable(f"the exported graph failed on the validation batch: {type(err).__name__}: {err}") from err
    record = {"model": loaded.name, "weights_identity": loaded.weights.identity, "file": files.graph.name,
              "sha256": digest, "format": ox.FORMAT_VERSION, "opset": ox.OPSET, "outputs": ox.output_names(blocks),
              "layout": layout.as_record(), "export_seconds": round(time.perf_counter() - start, 2),
              "versions": ox.versions(), **report}
    ox.write_sidecar(files.sidecar, record)
    if not report["valid"]:
        raise OnnxUnavailable(f"its export failed validation against PyTorch ({report['reason']}); see {files.sidecar}")
    log.info("%s: exported and validated in %.1f s (max |Δp| %.1e, same top-5)", loaded.name,
             record["export_seconds"], report["max_abs_prob_diff"])
    return backend
