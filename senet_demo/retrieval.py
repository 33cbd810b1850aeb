"""Image retrieval by cosine similarity of model features, and its quality metrics.

Features (``feature_matrix``): each member's pooled pre-logits embedding,
L2-normalised; the ensemble feature concatenates the members' normalised
embeddings, each scaled by its weight; ``logsoftmax`` uses the log-softmax
output vector (the feature of the original SE-ResNet-152 retrieval script).
Search is exact cosine top-k by one matrix product for small galleries and a
faiss HNSW index for large ones. Metrics are leave-one-out P@1, P@5 and mAP.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .engine import Outputs

ENSEMBLE = "ensemble"
LOGSOFTMAX = "logsoftmax"
FAISS_THRESHOLD = 100_000  # vectors; below this an exact matrix product is fast enough


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
        float(weights.get(name, 1.0)) * l2_normalize(np.stack([getattr(o, attribute) for o in outputs[name]]))
        for name in members
    ]
    return l2_normalize(np.concatenate(parts, axis=1))


class CosineIndex:
    """Top-k by cosine similarity over unit-norm vectors: exact matmul, or faiss HNSW when large.

    A faiss index can be saved and loaded (``path``), so a large gallery is indexed once, not at
    every start.
    """

    def __init__(self, vectors: np.ndarray, use_faiss: bool | None = None, path: Path | None = None):
        vectors = np.ascontiguousarray(l2_normalize(vectors))
        self.size = len(vectors)
        self.use_faiss = self.size >= FAISS_THRESHOLD if use_faiss is None else use_faiss
        self._faiss = self._load_or_build_faiss(vectors, path) if self.use_faiss else None
        self.vectors = None if self.use_faiss else vectors  # faiss keeps its own copy

    @staticmethod
    def _load_or_build_faiss(vectors: np.ndarray, path: Path | None):
        import faiss

        if path is not None and Path(path).is_file():
            index = faiss.read_index(str(path))
            if index.ntotal == len(vectors) and index.d == vectors.shape[1]:
                return index
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 128
        index.add(vectors)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(path).with_suffix(f".{os.getpid()}.tmp")
            faiss.write_index(index, str(tmp))
            tmp.replace(path)
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


def leave_one_out(vectors: np.ndarray, labels: Sequence[str]) -> RetrievalQuality:
    """Each image queries all the others; relevant = same label."""
    vectors = l2_normalize(vectors)
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2 or len(vectors) != n:
        raise ValueError(f"Leave-one-out needs at least two images, one label each ({len(vectors)} vectors, "
                         f"{n} labels).")
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    ranking = np.argsort(-similarity, axis=1, kind="stable")[:, : n - 1]  # (N, N-1), self excluded
    relevant = labels[ranking] == labels[:, None]  # (N, N-1)
    has_relevant = relevant.any(axis=1)
    k5 = min(5, n - 1)
    hits = np.cumsum(relevant, axis=1)
    precision_at_rank = hits / np.arange(1, n)
    ap = (precision_at_rank * relevant).sum(axis=1) / np.maximum(relevant.sum(axis=1), 1)
    return RetrievalQuality(
        precision_at_1=float(relevant[:, 0].mean()),
        precision_at_5=float(relevant[:, :k5].mean()),
        mean_average_precision=float(ap[has_relevant].mean()) if has_relevant.any() else 0.0,
        queries=n,
    )
