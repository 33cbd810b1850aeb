"""The shared forward pass: one run per (model, image, TTA) feeds every tab.

``Engine.run`` returns an ``Outputs`` holding the probabilities, the pooled
pre-logits embedding and, for SE models, every SE block's excitation vector,
all averaged over the TTA views. Results are cached by image content hash in
a bounded LRU, so switching tabs on the same image costs no second pass.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from .ensemble import tta_batch
from .images import content_hash
from .models import LoadedModel, ModelRegistry
from .se_blocks import SEBlock, capture_excitations, capture_se_inputs, excitation_disabled, find_se_blocks


@dataclass(frozen=True)
class Outputs:
    """Everything one forward pass tells about one image, for one model."""

    model: str
    probs: np.ndarray  # (K,) softmax, mean over TTA views
    log_probs: np.ndarray  # (K,) log-softmax of the mean logits (the 000_* retrieval feature)
    embedding: np.ndarray  # (D,) pooled pre-logits feature, mean over views
    excitations: dict[str, np.ndarray] = field(default_factory=dict)  # SE_s_b -> (C,), mean over views
    latency_ms: float = 0.0  # wall time of the forward pass that produced this
    views: int = 1
    from_cache: bool = False  # True when served from the cache (latency_ms is then the original pass's)


class LRUCache:
    """A small thread-safe LRU map with hit/miss counters."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Engine:
    """Runs models on images, once per (model, image, TTA)."""

    def __init__(self, registry: ModelRegistry, cache_entries: int | None = None):
        self.registry = registry
        self.cache = LRUCache(cache_entries or registry.config.limits.result_cache_entries)
        self._blocks: dict[str, list[SEBlock]] = {}
        self.forward_passes = 0  # count of real forward passes, for cache checks

    def se_blocks(self, name: str) -> list[SEBlock]:
        """The SE blocks of a model (empty for models without SE)."""
        if name not in self._blocks:
            self._blocks[name] = find_se_blocks(self.registry.get(name).model)
        return self._blocks[name]

    def run(self, name: str, image: Image.Image, tta: str = "none") -> Outputs:
        key = (name, content_hash(image), tta)
        cached = self.cache.get(key)
        if cached is not None:
            return replace(cached, from_cache=True)
        loaded = self.registry.get(name)
        outputs = self._forward(loaded, tta_batch(loaded.transform, image, tta), self.se_blocks(name))
        self.cache.put(key, outputs)
        return outputs

    def run_batch(self, name: str, images: list[Image.Image]) -> list[Outputs]:
        """One forward pass over several images (no TTA), e.g. to index a gallery."""
        loaded = self.registry.get(name)
        batch = torch.stack([loaded.transform(image) for image in images])
        return self._forward(loaded, batch, self.se_blocks(name), per_image=True)

    def run_ablated(self, name: str, image: Image.Image, disabled: list[SEBlock]) -> Outputs:
        """A fresh forward pass with the gates of ``disabled`` forced to 1 (SE as identity).

        The hook acts only for this thread, so concurrent requests are unaffected; nothing is cached.
        """
        loaded = self.registry.get(name)
        with excitation_disabled(loaded.model, disabled):
            return self._forward(loaded, tta_batch(loaded.transform, image), self.se_blocks(name))

    def feature_maps(self, name: str, image: Image.Image, block: SEBlock) -> np.ndarray:
        """The input U of one SE block, (C, H, W): the maps its excitation rescales.

        Too large to keep for every block in the shared pass, so one block's maps are computed on
        request (another forward) and cached like the outputs.
        """
        key = (name, content_hash(image), "se-input", block.name)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        loaded = self.registry.get(name)
        with torch.inference_mode(), capture_se_inputs(loaded.model, [block]) as inputs:
            loaded.model(tta_batch(loaded.transform, image))
        maps = inputs[block.name][0].numpy()
        self.cache.put(key, maps)
        return maps

    def _forward(self, loaded: LoadedModel, batch: torch.Tensor, blocks: list[SEBlock], per_image: bool = False):
        model = loaded.model
        start = time.perf_counter()
        with torch.inference_mode(), capture_excitations(model, blocks) as excitations:
            features = model.forward_features(batch)
            embedding = model.forward_head(features, pre_logits=True)  # (V, D)
            logits = model.forward_head(features).float()  # (V, K)
        latency_ms = (time.perf_counter() - start) * 1000.0
        self.forward_passes += 1
        probs = logits.softmax(-1)
        if per_image:
            return [
                Outputs(
                    model=loaded.name,
                    probs=probs[i].numpy(),
                    log_probs=logits[i].log_softmax(-1).numpy(),
                    embedding=embedding[i].float().numpy(),
                    excitations={n: v[i].numpy() for n, v in excitations.items()},
                    latency_ms=latency_ms / len(batch),
                )
                for i in range(len(batch))
            ]
        return Outputs(
            model=loaded.name,
            probs=probs.mean(0).numpy(),
            log_probs=logits.mean(0).log_softmax(-1).numpy(),
            embedding=embedding.float().mean(0).numpy(),
            excitations={n: v.mean(0).numpy() for n, v in excitations.items()},
            latency_ms=latency_ms,
            views=len(batch),
        )
