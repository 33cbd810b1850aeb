"""A gallery index built offline (``python -m senet_demo index``, see ``index_job``), and searching it.

An index is a folder; every file in it but the shards' records is listed in the manifest with its sha256:

    manifest.json                 written last: the models and their weights identities, the preprocessing,
                                  the feature, the counts, and each file with its sha256
    shards/shard-NNNNN.parquet    the features: id, source (the file's path or the dataset row), label,
                                  digest (sha256 of the image's bytes) and one embedding column per model
    shards/shard-NNNNN.json       written after its shard: the shard's plan fingerprint, rows and sha256
    rows.parquet                  id, source, label and digest of every row, in the faiss index's order
    sample.parquet                the quality sample: whole labels' rows with their feature vectors
    index.faiss                   the feature's faiss index: exact (flat) below ``EXACT_BELOW`` rows; HNSW
                                  while the vectors fit ``HNSW_MAX_BYTES``; IVF-PQ above (kind and parameters
                                  in the manifest)

The app and the CLI search one with ``--gallery index:DIR`` (or ``index:hf-dataset:org/name``, a Hub dataset
repo holding such a folder). The manifest is read when the app starts; the rows, the sample and the faiss
index (memory-mapped where faiss allows) when first searched, each after its sha256 is checked: a file that
fails is never used, and the message says to run the index job again. An index answers only for the models
and weights it was built with: ``BuiltIndex.check`` refuses any other ensemble with a message naming both.

Reading an index needs pyarrow (``requirements-ray.txt``); the default install does not carry it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .images import WORKING_SIDE
from .retrieval import (ENSEMBLE, FAISS_THRESHOLD, LOGSOFTMAX, MAX_EVAL_QUERIES, RetrievalQuality, feature_matrix,
                        l2_normalize)

if TYPE_CHECKING:
    from .models import ModelRegistry

log = logging.getLogger(__name__)

FORMAT = "senet-explorer-gallery-index/1"
MANIFEST = "manifest.json"
SHARDS = "shards"
ROWS_FILE = "rows.parquet"
SAMPLE_FILE = "sample.parquet"
INDEX_FILE = "index.faiss"
EXTRA = "pip install -r requirements-ray.txt"

EXACT_BELOW = FAISS_THRESHOLD  # rows; below this, exact search (as the app's own galleries)
HNSW_MAX_BYTES = 4 * 2**30  # HNSW keeps every vector (4 bytes a value); above this, IVF-PQ's compact codes
INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq")
SAMPLE_ROWS = MAX_EVAL_QUERIES  # rows of the quality sample
SAMPLE_PER_LABEL = 50  # at most this many rows of one label in the sample
RECALL_K = 10
RECALL_QUERIES = 200  # rows whose exact and approximate top-10 are compared at build time
PICTURES_KEPT = 2000  # hit pictures kept in the temporary folder


class IndexProblem(ValueError):
    """A built index that cannot be used as asked; the message says what is wrong and what to do."""


def missing_packages() -> str | None:
    """What reading or writing an index needs and is not installed, as one line, or None."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401  (a separate module of the package, and the one an index needs)
    except ImportError:
        return f"pyarrow is not installed; a built gallery index needs it: {EXTRA}"
    return None


def is_index_folder(folder: Path | str) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def shard_name(number: int) -> str:
    return f"{SHARDS}/shard-{number:05d}.parquet"


def embedding_column(position: int) -> str:
    return f"embedding_{position}"


def log_probs_column(position: int) -> str:
    return f"log_probs_{position}"


def normal_json(value):
    """``value`` as JSON gives it back (tuples become lists): how manifests compare."""
    return json.loads(json.dumps(value))


# ------------------------------------------------------------------------------------------ features
def feature_members(feature: str, names: list[str]) -> list[int]:
    """Positions of the models a feature is made of."""
    if feature in (ENSEMBLE, LOGSOFTMAX):
        return list(range(len(names)))
    if feature in names:
        return [names.index(feature)]
    raise IndexProblem(f"Unknown feature {feature!r}; choose {ENSEMBLE}, {LOGSOFTMAX} or one of {names}.")


def feature_vectors(columns: Mapping[int, np.ndarray], feature: str, names: list[str],
                    weights: Mapping[str, float]) -> np.ndarray:
    """(N, D) unit-norm features from per-model arrays, computed by ``retrieval.feature_matrix`` itself, so
    that an index's vectors are the app's own. ``columns`` maps a model's position to its (N, D_i)
    embeddings (log-probabilities for ``logsoftmax``)."""
    attribute = "log_probs" if feature == LOGSOFTMAX else "embedding"
    outputs = {names[i]: [_Row(**{attribute: row}) for row in columns[i]] for i in feature_members(feature, names)}
    return feature_matrix(outputs, feature, weights)


@dataclass(frozen=True)
class _Row:
    """One row of a shard, as ``feature_matrix`` reads an ``Outputs``."""

    embedding: np.ndarray | None = None
    log_probs: np.ndarray | None = None


def fixed_list_to_numpy(column) -> np.ndarray:
    """A pyarrow fixed-size-list column of float32 as an (N, D) array."""
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).reshape(-1, width).astype(np.float32, copy=False)


def numpy_to_fixed_list(matrix: np.ndarray):
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


# ------------------------------------------------------------------------------------------ faiss
def choose_index(rows: int, dimension: int, kind: str = "auto") -> dict:
    """The kind of faiss index and its parameters for ``rows`` vectors of ``dimension``."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"Unknown index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}.")
    if kind == "auto":
        if rows < EXACT_BELOW:
            kind = "flat"
        elif rows * dimension * 4 <= HNSW_MAX_BYTES:
            kind = "hnsw"
        else:
            kind = "ivfpq"
    if kind == "flat":
        return {"kind": "flat", "metric": "inner product"}
    if kind == "hnsw":
        return {"kind": "hnsw", "metric": "inner product", "M": 32, "efConstruction": 80, "efSearch": 128}
    # IVF-PQ: about sqrt(rows) lists; 8-bit codes of 32-value sub-vectors (fewer values where 32 does not
    # divide d). The candidates the codes find are re-ranked with the vectors kept as float16 (the refine
    # stage), which the app memory-maps: recall close to exact search for a few bytes of memory per vector.
    nlist = int(min(65536, max(16, 2 ** round(math.log2(max(1.0, math.sqrt(rows)))))))
    nlist = max(1, min(nlist, rows // 39))  # faiss's k-means wants 39 training points per list
    m = next(m for m in (dimension // 32, dimension // 16, dimension // 8, dimension // 4, dimension // 2, dimension)
             if m >= 1 and dimension % m == 0)
    m = min(m, 256)
    while dimension % m:
        m -= 1
    return {"kind": "ivfpq", "metric": "inner product", "nlist": nlist, "m": m, "nbits": 8,
            "nprobe": min(nlist, max(8, nlist // 16)), "refine": "fp16", "k_factor": 16, "kmeans_iterations": 10,
            "train_rows": min(rows, max(64 * nlist, 10_000))}


def new_faiss_index(spec: dict, dimension: int):
    """An empty faiss index for ``spec`` (``choose_index``), inner product on unit vectors."""
    import faiss

    metric = faiss.METRIC_INNER_PRODUCT
    if spec["kind"] == "flat":
        return faiss.IndexFlatIP(dimension)
    if spec["kind"] == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, spec["M"], metric)
        index.hnsw.efConstruction = spec["efConstruction"]
        index.hnsw.efSearch = spec["efSearch"]
        return index
    quantizer = faiss.IndexFlatIP(dimension)
    coarse = faiss.IndexIVFPQ(quantizer, dimension, spec["nlist"], spec["m"], spec["nbits"], metric)
    coarse.cp.seed = coarse.pq.cp.seed = 1234  # k-means' seeds: the same vectors train the same index
    coarse.cp.niter = coarse.pq.cp.niter = spec["kmeans_iterations"]
    refine = faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16, metric)
    index = faiss.IndexRefine(coarse, refine)
    tune_for_search(index, spec)
    return index


def tune_for_search(index, spec: dict) -> None:
    """Search parameters are not all kept by faiss's file format: set them from the manifest."""
    import faiss

    if spec["kind"] == "hnsw":
        index.hnsw.efSearch = spec["efSearch"]
    elif spec["kind"] == "ivfpq":
        faiss.extract_index_ivf(index).nprobe = spec["nprobe"]
        faiss.downcast_index(index).k_factor = spec["k_factor"]


def read_faiss(path: Path, spec: dict):
    """The faiss index at ``path``, memory-mapped where faiss allows (flat codes, HNSW storage and
    inverted lists with faiss >= 1.9; older versions map inverted lists only, and read the rest)."""
    import faiss

    flags = getattr(faiss, "IO_FLAG_MMAP_IFC", None) or faiss.IO_FLAG_MMAP
    try:
        index = faiss.read_index(str(path), flags | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:  # a kind this faiss cannot map: read it into memory
        index = faiss.read_index(str(path))
    tune_for_search(index, spec)
    return index


def top_k_merge(scores: np.ndarray, ids: np.ndarray, new_scores: np.ndarray, new_ids: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of two (Q, *) candidate lists, best first (ties: the lower id)."""
    all_scores = np.concatenate([scores, new_scores], axis=1)
    all_ids = np.concatenate([ids, new_ids], axis=1)
    order = np.lexsort((all_ids, -all_scores), axis=1)[:, :k] if all_scores.size else np.zeros((len(scores), 0), int)
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_ids, order, axis=1)


def recall_at_k(approximate: np.ndarray, exact: np.ndarray, queries: np.ndarray, k: int = RECALL_K) -> float:
    """Mean share of each query's exact top-``k`` that the approximate search also returned in its top-``k``;
    the query's own row (a query is a row of the index) is left out of both lists."""
    shares = []
    for query, approx_row, exact_row in zip(queries, approximate, exact):
        truth = [i for i in exact_row if i != query and i >= 0][:k]
        got = [i for i in approx_row if i != query and i >= 0][:k]
        if truth:
            shares.append(len(set(got).intersection(truth)) / len(truth))
    return float(np.mean(shares)) if shares else 1.0


def quality_sample_rows(labels: np.ndarray, rows: int = SAMPLE_ROWS, per_label: int = SAMPLE_PER_LABEL) -> np.ndarray:
    """Row numbers of the quality sample: whole labels (at most ``per_label`` rows each, evenly spaced), the
    labels evenly spaced over the sorted label names, until ``rows`` rows. Whole labels, so that a label's
    images meet in the sample, as leave-one-out needs."""
    labels = np.asarray(labels)
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(labels) <= rows:
        return np.arange(len(labels))
    taken = np.minimum(counts, per_label)
    wanted_labels = max(1, min(len(names), int(round(len(names) * rows / max(1, taken.sum())))))
    chosen = np.unique(np.linspace(0, len(names) - 1, wanted_labels).round().astype(int))
    picked = []
    order = np.argsort(inverse, kind="stable")  # rows grouped by label, each group in row order
    starts = np.concatenate([[0], np.cumsum(counts)])
    for label in chosen:
        members = order[starts[label]:starts[label + 1]]
        if len(members) > per_label:
            members = members[np.unique(np.linspace(0, len(members) - 1, per_label).round().astype(int))]
        picked.append(members)
    return np.sort(np.concatenate(picked))


# ------------------------------------------------------------------------------------------ the manifest
@dataclass(frozen=True)
class IndexedModel:
    """One model an index was built with, as the manifest records it."""

    spec: str  # the SPEC the job was given
    arch: str
    label: str  # ModelSpec.label: how messages name it
    identity: str  # weights identity (weights.ResolvedWeights.identity)
    data_config: dict  # timm's preprocessing of the model
    embedding_size: int
    num_classes: int

    @classmethod
    def from_dict(cls, data: dict) -> "IndexedModel":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def shown(self) -> str:
        return f"{self.label} (weights {self.identity})"


def read_manifest(folder: Path) -> dict:
    """The manifest of the index in ``folder``, checked for its format and fields; ``IndexProblem`` if not."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise IndexProblem(f"{folder} holds no built gallery index ({MANIFEST} is missing; an index job that "
                           f"was stopped writes none). Fix: run python -m senet_demo index --gallery SOURCE "
                           f"--out {folder} (again).") from None
    except (OSError, ValueError) as err:
        raise IndexProblem(f"{path} cannot be read ({type(err).__name__}). Fix: run the index job again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexProblem(f"{path} is not a gallery index of this app's format ({FORMAT}). Fix: build it "
                           f"again with python -m senet_demo index.")
    needed = ("models", "feature", "member_weights", "rows", "shards", "files", "index", "working_side")
    missing = [name for name in needed if name not in manifest]
    if missing:
        raise IndexProblem(f"{path} lacks {', '.join(missing)}. Fix: build the index again.")
    return manifest


def index_problem(folder: Path | str) -> str | None:
    """Why ``folder`` cannot serve as a built gallery index, or None: the packages, the manifest, its files."""
    problem = missing_packages()
    if problem:
        return problem
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except IndexProblem as err:
        return str(err)
    for name in manifest["files"]:
        if not (folder / name).is_file():
            return f"Gallery index {folder}: {name} is missing. Fix: run the index job again with --out {folder}."
    return None


def checked_index_folder(folder: Path, given: str) -> Path:
    """``folder`` (what ``--gallery index:GIVEN`` names, found by ``gallery.resolve_source``) when it holds
    a built index; ``FileNotFoundError`` with the fix when it does not."""
    if given.startswith("index:"):
        raise FileNotFoundError(f"--gallery index:{given}: name the index folder once, e.g. index:DIR.")
    if not folder.is_dir():
        raise FileNotFoundError(f"Gallery index folder {folder} does not exist. Fix: build one with "
                                f"python -m senet_demo index --gallery SOURCE --out {folder}.")
    if not is_index_folder(folder):
        raise FileNotFoundError(f"{folder} holds no built gallery index ({MANIFEST} is missing). Fix: build one "
                                f"with python -m senet_demo index --gallery SOURCE --out {folder}, or let a "
                                f"stopped job finish by running it again.")
    return folder


# ------------------------------------------------------------------------------------------ searching
class BuiltIndex:
    """A built index opened for searching: the manifest at once, the rest on first use (checked)."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = Path(folder)
        self.manifest = manifest
        self.models = [IndexedModel.from_dict(m) for m in manifest["models"]]
        self.names = [m["spec"] for m in manifest["models"]]
        self.feature: str = manifest["feature"]
        self.spec: dict = manifest["index"]
        self._lock = threading.Lock()
        self._rows = None  # pyarrow table: id, source, label, digest
        self._faiss = None
        self._sample = None  # (vectors, labels)
        self._checked: set[tuple] = set()

    @classmethod
    def open(cls, folder: Path | str) -> "BuiltIndex":
        problem = missing_packages()
        if problem:
            raise IndexProblem(problem)
        return cls(Path(folder), read_manifest(Path(folder)))

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    # ---- provenance
    def check(self, registry: ModelRegistry, feature: str, weights: Mapping[str, float]) -> None:
        """Refuse (``IndexProblem``) a search whose query would not be comparable with the index: other
        models or weights, other preprocessing, another feature or other member weights."""
        if feature != self.feature:
            raise IndexProblem(f"This gallery is an index of the {self.feature!r} feature; it cannot be searched "
                               f"by {feature!r}. Fix: choose {self.feature!r}, or build an index with "
                               f"--feature {feature}.")
        key = (tuple(registry.names), tuple(sorted(weights.items())))
        if key in self._checked:
            return
        app = [registry.get(name) for name in registry.names]  # loads (or downloads) the models: the query needs them
        ours = [(m.spec.arch, m.weights.identity, normal_json(m.data_config)) for m in app]
        built = [(m.arch, m.identity, normal_json(m.data_config)) for m in self.models]
        if ours != built:
            app_text = ", ".join(f"{m.spec.label} (weights {m.weights.identity})" for m in app)
            index_text = ", ".join(m.shown() for m in self.models)
            detail = ""
            if [t[:2] for t in ours] == [t[:2] for t in built]:
                detail = " The weights are the same, but the preprocessing differs."
            raise IndexProblem(f"The gallery index {self.folder} was built with {index_text}; this app runs "
                               f"{app_text}.{detail} Their features cannot be compared. Fix: start the app with "
                               f"the index's models (--model SPEC for each), or build the index again with "
                               f"these models.")
        if self.manifest["working_side"] != WORKING_SIDE:
            raise IndexProblem(f"The gallery index {self.folder} decoded its images at {self.manifest['working_side']}"
                               f" px, this app at {WORKING_SIDE} px. Fix: build the index again.")
        recorded = {name: float(w) for name, w in self.manifest["member_weights"].items()}
        wanted = {m.spec: float(weights.get(name, 1.0)) for m, name in zip(self.models, registry.names)}
        if recorded != wanted:
            raise IndexProblem(f"The gallery index {self.folder} weighs its members {recorded}; this search "
                               f"{wanted}. Fix: use the index's weights, or build the index with these.")
        self._checked.add(key)

    # ---- the files, each checked against the manifest's sha256 before first use
    def _checked_path(self, name: str) -> Path:
        path = self.folder / name
        expected = self.manifest["files"].get(name)
        try:
            actual = sha256_file(path)
        except OSError as err:
            raise IndexProblem(f"Gallery index {self.folder}: {name} cannot be read ({err.strerror or err}). "
                               f"Fix: run the index job again with --out {self.folder}.") from None
        if actual != expected:
            log.error("Gallery index %s: %s fails its checksum (sha256 %s, manifest %s); not used", self.folder,
                      name, actual, expected)
            raise IndexProblem(f"Gallery index {self.folder}: {name} fails its checksum, so it is not used. "
                               f"Fix: run the index job again with --out {self.folder}; it rebuilds what is "
                               f"damaged.")
        return path

    def rows(self):
        with self._lock:
            if self._rows is None:
                import pyarrow.parquet as pq

                table = pq.read_table(self._checked_path(ROWS_FILE))
                if table.num_rows != len(self):
                    raise IndexProblem(f"Gallery index {self.folder}: {ROWS_FILE} holds {table.num_rows} rows, "
                                       f"the manifest {len(self)}. Fix: build the index again.")
                self._rows = table
            return self._rows

    def faiss_index(self):
        with self._lock:
            if self._faiss is None:
                index = read_faiss(self._checked_path(INDEX_FILE), self.spec)
                if index.ntotal != len(self):
                    raise IndexProblem(f"Gallery index {self.folder}: {INDEX_FILE} holds {index.ntotal} vectors, "
                                       f"the manifest {len(self)}. Fix: build the index again.")
                self._faiss = index
            return self._faiss

    def quality_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, labels) of the quality sample, recorded when the index was built."""
        with self._lock:
            if self._sample is None:
                import pyarrow.parquet as pq

                table = pq.read_table(self._checked_path(SAMPLE_FILE))
                self._sample = (fixed_list_to_numpy(table.column("vector")),
                                np.asarray(table.column("label").to_pylist()))
            return self._sample

    # ---- search
    def search(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, cosine) of the ``k`` best rows for one unit-norm query feature, best first."""
        index = self.faiss_index()
        query = np.ascontiguousarray(l2_normalize(np.atleast_2d(query)), dtype=np.float32)
        if query.shape[1] != index.d:
            raise IndexProblem(f"The query feature has {query.shape[1]} values, the index {index.d}.")
        scores, ids = index.search(query, max(1, min(int(k), len(self))))
        return [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]

    def hit(self, row: int) -> tuple[Path, str, str]:
        """(picture, label, digest) of one row, the fields of its ``gallery.GalleryItem``: the picture one
        the app may show (see ``hit_picture``)."""
        table = self.rows()
        record = {name: table.column(name)[row].as_py() for name in ("id", "source", "label", "digest")}
        return hit_picture(record), record["label"], record["digest"]

    def row_id(self, row: int) -> str:
        """The row's id: ``label/file name`` for a folder source, ``file/row`` for a dataset."""
        return self.rows().column("id")[row].as_py()

    def figures(self) -> dict:
        """What the quality figures of an index rest on, for the CLI's report."""
        recall = 1.0 if self.kind == "flat" else self.spec.get("recall_at_10")
        return {"index": self.kind, "index_rows": len(self), "sample_rows": self.manifest.get("sample", {}).get("rows"),
                "recall@10": recall, "recall_queries": self.spec.get("recall_queries", 0)}

    # ---- texts
    def describe(self) -> str:
        kind = {"flat": "exact search", "hnsw": "HNSW (approximate)", "ivfpq": "IVF-PQ (approximate)"}[self.kind]
        return f"{len(self)} images in a built index ({kind})"

    def recall_text(self) -> str:
        if self.kind == "flat":
            return "Its search is exact: recall@10 against exact search is 1 by construction."
        recall = self.spec.get("recall_at_10")
        queries = self.spec.get("recall_queries")
        params = ", ".join(f"{k}={v}" for k, v in self.spec.items()
                           if k not in ("kind", "metric", "recall_at_10", "recall_queries"))
        return (f"Its search is approximate ({self.kind.upper()}, {params}): recall@10 against exact search "
                f"**{recall:.3f}** on {queries} sample queries, measured when the index was built.")

    def quality_note(self, quality: RetrievalQuality, uploads: int = 0) -> str:
        sample = self.manifest.get("sample", {})
        extra = f" plus your {uploads} uploaded images" if uploads else ""
        return (f"Leave-one-out on a sample of the built index: {sample.get('rows', '?')} of its {len(self)} "
                f"images, {sample.get('labels', '?')} whole labels{extra}; {quality.queries} images whose label "
                f"has another image each query all the others. {self.recall_text()}")


# ------------------------------------------------------------------------------------------ hit pictures
_picture_lock = threading.Lock()
_pictures_made = 0


def pictures_dir() -> Path:
    """Pictures of hits live in the temporary folder, which Gradio may serve (the images themselves may lie
    anywhere, on another machine even)."""
    return Path(tempfile.gettempdir()) / "senet-index-hits"


def hit_picture(record: dict) -> Path:
    """A picture of an index row the app may show: the row's own image, read from its source and saved
    small, where the source is a file this machine reaches; otherwise a plain tile naming the row. Named
    after the row's file, so that ``GalleryItem.id`` is ``label/file name`` as for a folder gallery."""
    global _pictures_made
    from PIL import Image, ImageDraw

    from .images import ImageError, load_image

    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(record["id"]).name)[:120] or "image"
    source = record["source"]
    reachable = bool(source) and not source.startswith("hf-dataset:") and Path(source).is_file()
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
    if Path(name).suffix.lower() not in formats:
        name += ".png"
    kind = formats[Path(name).suffix.lower()]
    target = pictures_dir() / record["digest"][:32] / name
    if target.is_file():
        return target
    picture = None
    if reachable:
        try:
            picture = load_image(source)
            picture.thumbnail((320, 320))
        except (ImageError, OSError) as err:
            log.info("Index row %s: its image %s cannot be shown (%s)", record["id"], source, err)
    if picture is None:
        picture = Image.new("RGB", (240, 180), (225, 228, 235))
        ImageDraw.Draw(picture).multiline_text((10, 10), f"{record['label']}\n{record['id'][-60:]}\n(image not "
                                               f"reachable here)", fill=(40, 40, 60))
    from .storage import atomic_write

    with atomic_write(target, suffix=target.suffix) as tmp:
        picture.save(tmp, kind)
    with _picture_lock:
        _pictures_made += 1
        if _pictures_made % 100 == 0:
            _prune_pictures()
    return target


def _prune_pictures() -> None:
    """Keep the newest ``PICTURES_KEPT`` hit pictures."""
    files = sorted(pictures_dir().glob("*/*"), key=lambda p: p.stat().st_mtime)
    for old in files[:-PICTURES_KEPT]:
        old.unlink(missing_ok=True)
