"""The engine: one forward per (model, image, TTA) feeds every tab.

``Engine.run`` returns an ``Outputs`` holding the probabilities, the pooled pre-logits embedding and,
for SE models, every SE block's squeeze, bottleneck and excitation vectors, all averaged over the TTA views. Results are cached
by image content hash in a bounded LRU, so switching tabs on the same image costs no second pass.

How the modules fit, each imported only by those after it (no cycle):

* ``forward`` - the one forward (``forward_outputs``), ``ForwardResult``, the ``Backend`` interface and
  ``EagerBackend``, which runs that forward in PyTorch;
* ``onnx_backend`` - the same forward exported to ONNX, validated against eager, served by a session;
* ``engine`` (here) - which backend serves each model, the threads, the cache and ``Outputs``.

The backend is chosen per model on first use: eager PyTorch for ``torch``; ONNX Runtime for ``auto``
and ``onnx``, with eager and the reason logged when it cannot serve the model. Both return, for every
SE block, the input maps U of its most and least excited channels; a single-view pass keeps them, so the
Explain tab's before/after pictures of any block need no second pass. The SE ablation, and the maps of
other channels, need hooks inside the model, so they run eagerly.

Threads are the engine's to set, once, when it is made: PyTorch's intra-op threads, and (through
``onnx_backend``) ONNX Runtime's, both ``config.queue.threads_per_forward``.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import onnx_backend
from .config import ENGINE_CHOICES
from .ensemble import tta_batch
from .forward import Backend, EagerBackend, ForwardResult
from .images import content_hash
from .models import LoadedModel, ModelRegistry
from .se_blocks import SEBlock, capture_se_inputs, excitation_disabled
from .storage import LRUCache

__all__ = ["Backend", "EagerBackend", "Engine", "ForwardResult", "Outputs"]  # the first two from forward.py

log = logging.getLogger(__name__)

ENGINES = ENGINE_CHOICES


@dataclass(frozen=True)
class Outputs:
    """Everything one forward pass tells about one image, for one model."""

    model: str
    probs: np.ndarray  # (K,) softmax, mean over TTA views
    log_probs: np.ndarray  # (K,) log-softmax of the mean logits (the 000_* retrieval feature)
    embedding: np.ndarray  # (D,) pooled pre-logits feature, mean over views
    excitations: dict[str, np.ndarray] = field(default_factory=dict)  # SE_s_b -> s, (C,), mean over views
    # SE_s_b -> the block's squeeze z, (C,), and bottleneck after the activation, (C/r,): mean over views
    squeezes: dict[str, np.ndarray] = field(default_factory=dict)
    bottlenecks: dict[str, np.ndarray] = field(default_factory=dict)
    # SE_s_b -> {channel: (H, W) input map}, for its MAP_CHANNELS most and least excited channels;
    # single-view passes only (a map is of one crop, not a mean over views)
    channel_maps: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    latency_ms: float = 0.0  # wall time of the forward pass that produced this
    views: int = 1
    from_cache: bool = False  # True when served from the cache (latency_ms is then the original pass's)


class Engine:
    """Runs models on images, once per (model, image, TTA).

    ``backend`` is ``"torch"`` (eager PyTorch), ``"onnx"`` or ``"auto"`` (ONNX Runtime where it is
    installed and the model's export validates, else eager); ONNX exports are cached in ``onnx_dir``
    (default: ``onnx_backend.default_cache_dir`` of the config's weights dir).

    Making an engine sets PyTorch's intra-op threads for the process to ``threads_per_forward``: with
    ``inference_workers`` forwards at once, each takes its share of the cores instead of all of them.
    """

    def __init__(self, registry: ModelRegistry, cache_entries: int | None = None, backend: str = "torch",
                 onnx_dir: Path | None = None):
        if backend not in ENGINES:
            raise ValueError(f"Unknown engine {backend!r}; choose one of {', '.join(ENGINES)}.")
        self.registry = registry
        self.mode = backend
        self.threads = registry.config.queue.threads_per_forward
        torch.set_num_threads(self.threads)
        self.onnx_dir = onnx_dir
        self.cache = LRUCache(cache_entries or registry.config.limits.result_cache_entries)
        self._batches = LRUCache(4)  # preprocessed views of the latest images (a ten-crop batch is large)
        self._backends: dict[str, Backend] = {}
        self._backend_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.forward_passes = 0  # count of real forward passes, for cache checks

    def backend(self, name: str) -> Backend:
        """The backend that runs ``name``'s shared forward (chosen, and exported if need be, on first use)."""
        chosen = self._backends.get(name)
        if chosen is None:
            with self._locks_lock:
                lock = self._backend_locks.setdefault(name, threading.Lock())
            with lock:  # concurrent first requests export once; the others wait and reuse it
                chosen = self._backends.get(name) or self._choose(name)
                self._backends[name] = chosen
        return chosen

    def backend_name(self, name: str) -> str:
        """"onnxruntime", "torch", or "torch; ONNX Runtime not used: <reason>" (for status texts)."""
        chosen = self._backends.get(name)
        if chosen is None:
            if self.mode == "torch":
                return "torch"
            lock = self._backend_locks.get(name)
            if lock is not None and lock.locked():
                return f"{self.mode}, being chosen now (a first start exports to ONNX and checks the export)"
            return f"{self.mode}, chosen on first use"
        reason = getattr(chosen, "reason", None)
        return f"{chosen.name}; {reason}" if reason else chosen.name

    def _choose(self, name: str) -> Backend:
        loaded = self.registry.get(name)
        eager = EagerBackend(loaded.model, self.registry.se_blocks(name))
        if self.mode == "torch":
            return eager
        if self.onnx_dir is None:
            self.onnx_dir = onnx_backend.default_cache_dir(self.registry.config.weights_dir)
        # One forward at a time (the served app's default): the ensemble's sessions, run back to back,
        # can share one pool; concurrent forwards each need their own.
        share_pool = self.registry.config.queue.inference_workers == 1
        try:
            return onnx_backend.prepare(loaded, eager.blocks, self.onnx_dir, eager.forward, self.threads, share_pool)
        except onnx_backend.OnnxUnavailable as err:
            eager.reason = f"ONNX Runtime not used: {err}"
            level = logging.WARNING if self.mode == "onnx" else logging.INFO
            log.log(level, "%s: eager PyTorch; %s", name, eager.reason)
            return eager

    def run(self, name: str, image: Image.Image, tta: str = "none", digest: str | None = None) -> Outputs:
        """One model's outputs for ``image``; ``digest`` is its ``content_hash`` where the caller has it already
        (running several models on one image: hashing a large photo is not free)."""
        digest = digest or content_hash(image)
        key = (name, digest, tta)
        cached = self.cache.get(key)
        if cached is not None:
            return replace(cached, from_cache=True)
        loaded = self.registry.get(name)
        outputs = self._forward(loaded, self._views(loaded, image, digest, tta), self.backend(name))
        self.cache.put(key, outputs)
        return outputs

    def _views(self, loaded: LoadedModel, image: Image.Image, digest: str, tta: str) -> torch.Tensor:
        """The TTA batch, shared by models with the same preprocessing (as the default ensemble's two)."""
        key = (digest, tta, repr(sorted(loaded.data_config.items())))
        batch = self._batches.get(key)
        if batch is None:
            batch = tta_batch(loaded.transform, image, tta)
            self._batches.put(key, batch)
        return batch

    def run_batch(self, name: str, images: list[Image.Image]) -> list[Outputs]:
        """One forward pass over several images (no TTA), e.g. to index a gallery."""
        loaded = self.registry.get(name)
        batch = torch.stack([loaded.transform(image) for image in images])
        return self._forward(loaded, batch, self.backend(name), per_image=True)

    def run_ablated(self, name: str, image: Image.Image, disabled: list[SEBlock]) -> Outputs:
        """A fresh forward pass with the gates of ``disabled`` forced to 1 (SE as identity).

        The hook acts only for this thread, so concurrent requests are unaffected; nothing is cached.
        """
        loaded = self.registry.get(name)
        with excitation_disabled(loaded.model, disabled):
            eager = EagerBackend(loaded.model, self.registry.se_blocks(name))
            return self._forward(loaded, tta_batch(loaded.transform, image), eager)

    def feature_maps(self, name: str, image: Image.Image, block: SEBlock, channels: list[int],
                     digest: str | None = None) -> np.ndarray:
        """Channels of the input U of one SE block, (len(channels), H, W): the maps its excitation rescales.

        The shared pass keeps every block's most and least excited channels; any other channel costs an
        eager forward, whose maps are cached like the outputs. ``digest`` as in ``run``.
        """
        digest = digest or content_hash(image)
        shared = self.cache.get((name, digest, "none"))
        kept = shared.channel_maps.get(block.name, {}) if shared is not None else {}
        if all(c in kept for c in channels):
            return np.stack([kept[c] for c in channels])
        key = (name, digest, "se-input", block.name)
        maps = self.cache.get(key)
        if maps is None:
            loaded = self.registry.get(name)
            with torch.inference_mode(), capture_se_inputs(loaded.model, [block]) as inputs:
                loaded.model(tta_batch(loaded.transform, image))
            self.forward_passes += 1
            maps = inputs[block.name][0].numpy()
            self.cache.put(key, maps)
        return maps[list(channels)]

    def _forward(self, loaded: LoadedModel, batch: torch.Tensor, backend: Backend, per_image: bool = False):
        start = time.perf_counter()
        result = backend.forward(batch)
        latency_ms = (time.perf_counter() - start) * 1000.0
        self.forward_passes += 1
        # numpy from here: a few small operations per output, which torch would dispatch to its thread pool
        logits, embedding = result.logits.numpy(), result.embedding.numpy()
        excitations = {n: v.numpy() for n, v in result.excitations.items()}
        squeezes = {n: v.numpy() for n, v in result.squeezes.items()}
        bottlenecks = {n: v.numpy() for n, v in result.bottlenecks.items()}
        probs = _softmax(logits)
        if per_image:
            return [
                Outputs(
                    model=loaded.name,
                    probs=probs[i],
                    log_probs=_log_softmax(logits[i]),
                    embedding=embedding[i],
                    excitations={n: v[i] for n, v in excitations.items()},
                    squeezes={n: v[i] for n, v in squeezes.items()},
                    bottlenecks={n: v[i] for n, v in bottlenecks.items()},
                    latency_ms=latency_ms / len(batch),
                )
                for i in range(len(batch))
            ]
        return Outputs(
            model=loaded.name,
            probs=_mean_of_views(probs),
            log_probs=_log_softmax(_mean_of_views(logits)),
            embedding=_mean_of_views(embedding),
            excitations={n: _mean_of_views(v) for n, v in excitations.items()},
            squeezes={n: _mean_of_views(v) for n, v in squeezes.items()},
            bottlenecks={n: _mean_of_views(v) for n, v in bottlenecks.items()},
            channel_maps=_kept_maps(result) if len(batch) == 1 else {},
            latency_ms=latency_ms,
            views=len(batch),
        )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _mean_of_views(values: np.ndarray) -> np.ndarray:
    """The mean over the first axis (the TTA views); a single view as it is."""
    return values[0] if len(values) == 1 else values.mean(0)


def _kept_maps(result) -> dict[str, dict[int, np.ndarray]]:
    """Each block's kept maps of a single-view pass, by channel."""
    return {name: {int(c): maps[0, i].numpy() for i, c in enumerate(result.map_channels[name])}
            for name, maps in result.maps.items()}
