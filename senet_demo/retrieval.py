"""Image retrieval by cosine similarity of model features, and its quality metrics.

Features (``feature_matrix``): each member's pooled pre-logits embedding,
L2-normalised; the ensemble feature concatenates the members' normalised
embeddings, each scaled by its weight; ``logsoftmax`` uses the log-softmax
output vector (the feature of the original SE-ResNet-152 retrieval script),
centred: log-softmax is the logits minus one constant per image, a large
shared offset that would put every cosine near 1, so each vector's mean is
subtracted first.
Search is exact cosine top-k by one matrix product for small galleries and a
faiss HNSW index for large ones. Metrics are leave-one-out P@1, P@5 and mAP.

``match_threshold`` says, from the gallery's own leave-one-out scores, below which similarity a query is
unlikely to have a match in the gallery at all.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .engine import Outputs
from . import storage

ENSEMBLE = "ensemble"
LOGSOFTMAX = "logsoftmax"
FAISS_THRESHOLD = 100_000  # vectors; below this an exact matrix product is fast enough
MAX_EVAL_QUERIES = 2_000  # leave-one-out queries; larger galleries are sampled evenly
EVAL_CHUNK = 256  # queries ranked at once


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def feature_matrix(
    outputs: Mapping[str, Sequence[Outputs]], feature: str, weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """(N, D) unit-norm features of N images from each member's outputs, for one feature choice."""
    weights = weights or {}
    if feature in (ENSEMBLE, LOGSOFTMAX):
        members = list(outputs)
    elif feature in outputs:
        members = [feature]
    else:
        raise ValueError(f"Unknown feature {feature!r}; choose {ENSEMBLE}, {LOGSOFTMAX} or one of {list(outputs)}.")
    attribute = "log_probs" if feature == LOGSOFTMAX else "embedding"
    parts = [
        float(weights.get(name, 1.0)) * l2_normalize(_member_rows(outputs[name], attribute)) for name in members
    ]
    return l2_normalize(np.concatenate(parts, axis=1))


def _member_rows(outputs: Sequence[Outputs], attribute: str) -> np.ndarray:
    """One member's rows; log-probabilities centred (each row minus its mean, the per-image constant that
    softmax ignores)."""
    rows = np.stack([getattr(o, attribute) for o in outputs]).astype(np.float32, copy=False)
    return rows - rows.mean(axis=-1, keepdims=True) if attribute == "log_probs" else rows


class CosineIndex:
    """Top-k by cosine similarity over unit-norm vectors: exact matmul, or faiss HNSW when large.

    A faiss index can be saved and loaded (``path``), so a large gallery is indexed once, not at
    every start. The file's name carries a hash of the vectors it indexes, so a file indexes exactly
    these vectors; one that does not read back as such an index is logged and rebuilt.
    """

    def __init__(self, vectors: np.ndarray, use_faiss: bool | None = None, path: Path | None = None):
        vectors = np.ascontiguousarray(l2_normalize(vectors))
        if vectors.ndim != 2 or not np.isfinite(vectors).all():
            raise ValueError("Features must be a finite (N, D) matrix.")
        self.size = len(vectors)
        self.use_faiss = self.size >= FAISS_THRESHOLD if use_faiss is None else use_faiss
        self._faiss = self._load_or_build_faiss(vectors, path) if self.use_faiss else None
        self.vectors = None if self.use_faiss else vectors  # faiss keeps its own copy

    @staticmethod
    def _load_or_build_faiss(vectors: np.ndarray, path: Path | None):
        import faiss

        if path is not None:
            path = Path(path)
            path = path.with_name(f"{path.stem}-{hashlib.sha256(vectors.tobytes()).hexdigest()[:16]}{path.suffix}")

            def check(index) -> str | None:
                if not hasattr(index, "hnsw"):
                    return f"is a {type(index).__name__}, not an HNSW index"
                if index.ntotal != len(vectors) or index.d != vectors.shape[1]:
                    return f"holds {index.ntotal} vectors of {index.d}, expected {len(vectors)} of {vectors.shape[1]}"
                if index.metric_type != faiss.METRIC_INNER_PRODUCT:
                    return "is not an inner-product index"
                return None

            stored = storage.read_checked(path, lambda file: faiss.read_index(str(file)), check, what="faiss index")
            if stored is not None:
                stored.hnsw.efSearch = 128
                return stored
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
        index.add(vectors)
        if path is not None:  # a folder that cannot be written only costs a rebuild at the next start
            storage.write_or_warn(path, lambda tmp: faiss.write_index(index, str(tmp)), what="faiss index")
        return index

    def __len__(self) -> int:
        return self.size

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices), each (Q, k), best first."""
        queries = np.ascontiguousarray(l2_normalize(np.atleast_2d(queries)))
        k = max(1, min(int(k), len(self)))
        if self._faiss is not None:
            return self._faiss.search(queries, k)
        scores = queries @ self.vectors.T  # (Q, N)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        indices = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, indices, axis=1), indices


@dataclass(frozen=True)
class RetrievalQuality:
    precision_at_1: float
    precision_at_5: float
    mean_average_precision: float
    queries: int

    def as_dict(self) -> dict:
        return {"P@1": round(self.precision_at_1, 4), "P@5": round(self.precision_at_5, 4),
                "mAP": round(self.mean_average_precision, 4), "queries": self.queries}


def leave_one_out(vectors: np.ndarray, labels: Sequence[str], max_queries: int = MAX_EVAL_QUERIES) -> RetrievalQuality:
    """Each image queries all the others; relevant = same label.

    Images whose label has no other image cannot be answered right and are not used as queries
    (they stay candidates). Large galleries are evaluated on an evenly spaced sample of
    ``max_queries`` queries, in chunks, so memory stays O(chunk x N), never O(N^2).
    """
    vectors = l2_normalize(vectors)
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2 or len(vectors) != n:
        raise ValueError(f"Leave-one-out needs at least two images, one label each ({len(vectors)} vectors, "
                         f"{n} labels).")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    queries = np.flatnonzero(counts[inverse] >= 2)
    if len(queries) == 0:
        raise ValueError("Leave-one-out needs a label with at least two images.")
    if len(queries) > max_queries:
        queries = queries[np.unique(np.linspace(0, len(queries) - 1, max_queries).round().astype(int))]
    k5 = min(5, n - 1)
    p1, p5, ap = [], [], []
    for start in range(0, len(queries), EVAL_CHUNK):
        chunk = queries[start:start + EVAL_CHUNK]
        similarity = vectors[chunk] @ vectors.T  # (c, N)
        similarity[np.arange(len(chunk)), chunk] = -np.inf  # a query never retrieves itself
        ranking = np.argsort(-similarity, axis=1, kind="stable")[:, : n - 1]  # (c, N-1)
        relevant = labels[ranking] == labels[chunk][:, None]
        precision_at_rank = np.cumsum(relevant, axis=1) / np.arange(1, n)
        p1.append(relevant[:, 0])
        p5.append(relevant[:, :k5].mean(axis=1))
        ap.append((precision_at_rank * relevant).sum(axis=1) / relevant.sum(axis=1))
    return RetrievalQuality(
        precision_at_1=float(np.concatenate(p1).mean()),
        precision_at_5=float(np.concatenate(p5).mean()),
        mean_average_precision=float(np.concatenate(ap).mean()),
        queries=len(queries),
    )


MATCH_PERCENTILE = 5.0  # of the gallery's own best same-label matches: below it, a match is unlikely


def match_threshold(vectors: np.ndarray, labels: Sequence[str], percentile: float = MATCH_PERCENTILE,
                    max_queries: int = MAX_EVAL_QUERIES) -> float | None:
    """The similarity below which a query is unlikely to match anything in the gallery.

    Each gallery image whose label has another image is held out and scored against the others; its best
    same-label score is how close a true match of that kind comes. The ``percentile`` of those scores is the
    threshold: that share of the gallery's own matches score lower. None when no label has two images.
    Sampled and chunked as ``leave_one_out`` is, so memory stays O(chunk x N).
    """
    vectors = l2_normalize(vectors)
    labels = np.asarray(labels)
    if len(labels) < 2 or len(vectors) != len(labels):
        return None
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    queries = np.flatnonzero(counts[inverse] >= 2)
    if len(queries) == 0:
        return None
    if len(queries) > max_queries:
        queries = queries[np.unique(np.linspace(0, len(queries) - 1, max_queries).round().astype(int))]
    best = []
    for start in range(0, len(queries), EVAL_CHUNK):
        chunk = queries[start:start + EVAL_CHUNK]
        similarity = vectors[chunk] @ vectors.T  # (c, N)
        similarity[np.arange(len(chunk)), chunk] = -np.inf  # never itself
        similarity[labels[None, :] != labels[chunk][:, None]] = -np.inf  # only its own label
        best.append(similarity.max(axis=1))
    return float(np.percentile(np.concatenate(best), percentile))
