"""Gallery search for the Retrieve tab and the retrieve / evaluate-gallery commands.

Glue between the stored gallery features (``gallery.FeatureStore``), the
query's own forward pass (``engine``, shared with the other tabs) and the pure
ranking and metrics of ``retrieval``. Member weights and k are checked to be finite and
in range before any work.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from .config import member_weight, result_count
from .storage import LRUCache
from .gallery import GalleryItem
from .i18n import Message
from .images import content_hash
from .retrieval import (ENSEMBLE, LOGSOFTMAX, CosineIndex, RetrievalQuality, feature_matrix, leave_one_out,
                        match_threshold)

if TYPE_CHECKING:  # services builds a GallerySearch, so importing it here would make a cycle
    from .services import Services

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Hit:
    item: GalleryItem
    score: float


def feature_choices(services: Services) -> list[str]:
    built = services.built_index
    if built is not None:  # a built index answers for the one feature it was built with
        return [built.feature]
    return [ENSEMBLE, *services.registry.names, LOGSOFTMAX]


def _key_digest(key: tuple) -> str:
    return hashlib.sha256(repr(key).encode()).hexdigest()[:32]


class GallerySearch:
    """Indexes of a gallery for each feature choice, built once and kept in a small LRU."""

    def __init__(self, services: Services, weights: dict[str, float] | None = None, cache_entries: int = 8):
        self.services = services
        # per-member weight in the ensemble feature; 1.0 when absent
        self.weights = {name: member_weight(name, value) for name, value in (weights or {}).items()}
        self._indexes = LRUCache(cache_entries)  # operator galleries: few, large, kept
        self._upload_indexes = LRUCache(4 * cache_entries)  # visitors' uploads: many, small; never evict the above
        self._thresholds = LRUCache(cache_entries)  # (feature, models, gallery) -> match_threshold

    def index(self, items: list[GalleryItem], feature: str, progress: Progress | None = None) -> CosineIndex:
        """The index over the items whose images decode, in order."""
        return self._indexed(items, feature, progress)[1]

    def query_vector(self, image: Image.Image, feature: str) -> np.ndarray:
        engine = self.services.engine
        digest = content_hash(image)
        outputs = {name: [engine.run(name, image, digest=digest)] for name in self._members(feature)}
        return feature_matrix(outputs, feature, self.weights)[0]

    def search(self, image: Image.Image, items: list[GalleryItem], feature: str = ENSEMBLE, k: int = 5,
               progress: Progress | None = None, extra_items: list[GalleryItem] = ()) -> list[Hit]:
        """Top-``k`` over ``items`` (indexed once, kept) and ``extra_items`` (e.g. one visitor's uploads).

        The two are searched apart and merged, so a visitor's uploads never rebuild the index of a
        large operator gallery.
        """
        k = result_count(k)
        built = self.services.built_index  # a built index (--gallery index:DIR) is searched too
        if not items and not extra_items and built is None:
            raise ValueError(Message("search.empty_gallery"))
        if built is not None:
            built.check(self.services.registry, feature, self.weights)  # the same models and feature, or a message
        query = self.query_vector(image, feature)
        hits = []
        if built is not None:
            hits = [Hit(GalleryItem(*built.hit(row)), score) for row, score in built.search(query, k)]
        for group in (items, extra_items):
            if group:
                usable, index = self._indexed(group, feature, progress)
                scores, indices = index.search(query, k)
                hits += [Hit(usable[i], float(s)) for s, i in zip(scores[0], indices[0]) if i >= 0]
        return sorted(hits, key=lambda hit: -hit.score)[:k]

    def match_threshold(self, items: list[GalleryItem], feature: str, progress: Progress | None = None) -> float | None:
        """The similarity below which a query is unlikely to match anything in ``items`` (see
        ``retrieval.match_threshold``), computed once per gallery, feature and models; None without a label
        that has two images. With no ``items`` and a built index (--gallery index:DIR): from the quality sample
        recorded with the index."""
        if not items:
            built = self.services.built_index
            if built is None:
                return None
            key = ("built", str(built.folder), feature)
            entry = self._thresholds.get(key)
            if entry is None:
                entry = (match_threshold(*built.quality_sample()),)
                self._thresholds.put(key, entry)
            return entry[0]
        digest = hashlib.sha256("".join(i.digest for i in items).encode()).hexdigest()
        models = tuple(self.services.registry.get(name).key for name in self._members(feature))
        key = (feature, models, tuple(sorted(self.weights.items())), digest)
        entry = self._thresholds.get(key)  # (threshold,): a gallery without a threshold is remembered too
        if entry is None:
            rows, matrix = self._prepare(items, feature, progress)
            entry = (match_threshold(matrix, [items[i].label for i in rows]),)
            self._thresholds.put(key, entry)
        return entry[0]

    def evaluate(self, items: list[GalleryItem], feature: str, progress: Progress | None = None) -> RetrievalQuality:
        built = self.services.built_index
        if built is not None:  # a built index: its quality sample, with ``items`` (a visitor's uploads) added
            return self._evaluate_index(built, items, feature, progress)
        rows, matrix = self._prepare(items, feature, progress)
        return leave_one_out(matrix, [items[i].label for i in rows])

    def _evaluate_index(self, built, items: list[GalleryItem], feature: str,
                        progress: Progress | None) -> RetrievalQuality:
        built.check(self.services.registry, feature, self.weights)
        vectors, labels = built.quality_sample()
        if items:
            rows, matrix = self._prepare(items, feature, progress)
            vectors = np.concatenate([vectors, matrix])
            labels = np.concatenate([labels, [items[i].label for i in rows]])
        return leave_one_out(vectors, list(labels))

    def _indexed(self, items: list[GalleryItem], feature: str,
                 progress: Progress | None) -> tuple[list[GalleryItem], CosineIndex]:
        """The items that are indexed (those whose image decodes) and the index, whose row i is item i."""
        digest = hashlib.sha256("".join(i.digest for i in items).encode()).hexdigest()
        models = tuple(self.services.registry.get(name).key for name in self._members(feature))  # weights identity
        key = (feature, models, tuple(sorted(self.weights.items())), digest)
        persist = all(item.persist for item in items)
        cache = self._indexes if persist else self._upload_indexes
        entry = cache.get(key)
        if entry is None:
            rows, matrix = self._prepare(items, feature, progress)
            saved = self.services.features.cache_dir / "indexes" / f"{_key_digest(key)}.faiss" if persist else None
            entry = (rows, CosineIndex(matrix, path=saved))
            cache.put(key, entry)
        rows, index = entry  # positions, not items: another caller's items may share the files but not the paths
        return [items[i] for i in rows], index

    def _prepare(self, items: list[GalleryItem], feature: str,
                 progress: Progress | None) -> tuple[list[int], np.ndarray]:
        """Positions in ``items`` of the images that decode (others are skipped and logged), and their rows.

        Pairing outputs with items by digest keeps row j with item ``items[rows[j]]`` when one is skipped.
        """
        store = self.services.features
        found = {name: store.outputs_by_digest(name, items, progress) for name in self._members(feature)}
        rows = [i for i, item in enumerate(items) if all(item.digest in outputs for outputs in found.values())]
        if not rows:
            raise ValueError(Message("search.none_decoded"))
        outputs = {name: [by_digest[items[i].digest] for i in rows] for name, by_digest in found.items()}
        return rows, feature_matrix(outputs, feature, self.weights)

    def _members(self, feature: str) -> list[str]:
        if feature in (ENSEMBLE, LOGSOFTMAX):
            return self.services.registry.names
        if feature in self.services.registry.all_names:
            return [feature]
        raise ValueError(Message("search.unknown_feature", feature=feature,
                                 choices=", ".join(feature_choices(self.services))))
