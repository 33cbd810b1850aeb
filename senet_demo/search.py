"""Gallery search for the Retrieve tab and the retrieve / evaluate-gallery commands.

Glue between the stored gallery features (``gallery.FeatureStore``), the
query's own forward pass (``engine``, shared with the other tabs) and the pure
ranking and metrics of ``retrieval``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from .engine import LRUCache
from .gallery import GalleryItem
from .retrieval import ENSEMBLE, LOGSOFTMAX, CosineIndex, RetrievalQuality, feature_matrix, leave_one_out
from .services import Services

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Hit:
    item: GalleryItem
    score: float


def feature_choices(services: Services) -> list[str]:
    return [ENSEMBLE, *services.registry.names, LOGSOFTMAX]


class GallerySearch:
    """Indexes of a gallery for each feature choice, built once and kept in a small LRU."""

    def __init__(self, services: Services, weights: dict[str, float] | None = None, cache_entries: int = 8):
        self.services = services
        self.weights = weights or {}  # per-member weight in the ensemble feature; 1.0 when absent
        self._indexes = LRUCache(cache_entries)

    def gallery_matrix(self, items: list[GalleryItem], feature: str, progress: Progress | None = None) -> np.ndarray:
        store = self.services.features
        outputs = {name: store.outputs(name, items, progress) for name in self._members(feature)}
        return feature_matrix(outputs, feature, self.weights)

    def index(self, items: list[GalleryItem], feature: str, progress: Progress | None = None) -> CosineIndex:
        digest = hashlib.sha256("".join(i.digest for i in items).encode()).hexdigest()
        key = (feature, tuple(self.services.registry.names), digest)
        index = self._indexes.get(key)
        if index is None:
            index = CosineIndex(self.gallery_matrix(items, feature, progress))
            self._indexes.put(key, index)
        return index

    def query_vector(self, image: Image.Image, feature: str) -> np.ndarray:
        engine = self.services.engine
        outputs = {name: [engine.run(name, image)] for name in self._members(feature)}
        return feature_matrix(outputs, feature, self.weights)[0]

    def search(self, image: Image.Image, items: list[GalleryItem], feature: str = ENSEMBLE, k: int = 5,
               progress: Progress | None = None) -> list[Hit]:
        if not items:
            raise ValueError("The gallery is empty: add images or start the app with --gallery DIR.")
        index = self.index(items, feature, progress)
        scores, indices = index.search(self.query_vector(image, feature), k)
        return [Hit(items[i], float(s)) for s, i in zip(scores[0], indices[0]) if i >= 0]

    def evaluate(self, items: list[GalleryItem], feature: str, progress: Progress | None = None) -> RetrievalQuality:
        return leave_one_out(self.gallery_matrix(items, feature, progress), [i.label for i in items])

    def _members(self, feature: str) -> list[str]:
        return self.services.registry.names if feature in (ENSEMBLE, LOGSOFTMAX) else [feature]
