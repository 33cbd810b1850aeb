"""The gallery index job: embed a large gallery on Ray Data and write an index folder the app searches.

    python -m senet_demo index --gallery gallery --out /data/gallery-index [--model SPEC]... [--ray ADDRESS] [--workers N]

Three steps:

1. **Plan**, on the driver: list the source (a folder with one sub-folder per label, in ``gallery.scan``'s
   order, or a Hub dataset streamed with ``datasets``, one shard per data file) and cut it into shards. Each
   shard gets a fingerprint of what it holds (file names, sizes and times, or the dataset's name, split and
   file), of the models' weights identities and preprocessing, and of how it is computed. The driver
   loads each model once, to record what the manifest says about it.
2. **Embed**, on Ray: ``map_batches`` over the pending shards, one shard a call, on a fixed pool of actors
   (``ActorPoolStrategy``); each actor loads the models once (an ``Engine`` of its own) and writes its
   shards itself, to the output folder (a shared filesystem, or object storage through pyarrow's
   filesystems): a Parquet file, then a small JSON record with the shard's fingerprint and sha256. Only
   these records travel back to the driver.
3. **Finalise**, on the driver: every shard is checked against its record, the faiss index is built
   (``built_index.choose_index``), and ``rows.parquet``, ``sample.parquet``, ``index.faiss`` and, last,
   ``manifest.json`` are written.

Restarting: a shard whose record matches its plan and whose file matches the record's sha256 is kept;
any other is embedded again, so a killed job run again finishes the same folder, and a shard that fails
its checksum is rebuilt, never used. The manifest is removed while any shard is pending, so the app never
reads an index whose shards are being rewritten.

Ray, Ray Data and pyarrow are imported only when the job runs (``requirements-ray.txt``).
"""
from __future__ import annotations

import importlib
import json
import logging
import os
import socket
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .built_index import (
    EXTRA,
    FORMAT,
    INDEX_FILE,
    INDEX_KINDS,
    MANIFEST,
    RECALL_K,
    RECALL_QUERIES,
    ROWS_FILE,
    SAMPLE_FILE,
    SHARDS,
    choose_index,
    embedding_column,
    feature_members,
    feature_vectors,
    fixed_list_to_numpy,
    log_probs_column,
    new_faiss_index,
    normal_json,
    numpy_to_fixed_list,
    quality_sample_rows,
    recall_at_k,
    sha256_bytes,
    shard_name,
    top_k_merge,
)
from .images import IMAGE_SUFFIXES, WORKING_SIDE, ImageError, load_image
from .retrieval import ENSEMBLE, LOGSOFTMAX

log = logging.getLogger(__name__)

SHARD_SIZE = 1024  # images a shard of a folder source; also the unit of restart
BATCH_SIZE = 16  # images a forward pass: gallery.BATCH_SIZE, so batches match the app's own
DATASET_PREFIX = "hf-dataset:"
META_COLUMNS = ("id", "source", "label", "digest")

Say = Callable[[str], None]


class JobError(RuntimeError):
    """The job cannot finish; the message says why and what to do."""


def missing_packages(dataset: bool = False) -> str | None:
    """What the job needs and is not installed, as one line naming the extra, or None."""
    needed = [("ray", "Ray"), ("ray.data", "Ray Data"), ("pyarrow", "pyarrow")]
    if dataset:
        needed.append(("datasets", "the datasets library (for hf-dataset: sources)"))
    for module, what in needed:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{what} is not installed; the index job needs it: {EXTRA}"
    return None


# ------------------------------------------------------------------------------------------ settings
@dataclass
class JobSettings:
    """Everything the job needs, plain data so that it travels to the actors."""

    source: str  # a folder, or hf-dataset:NAME (a Hub dataset, or a local folder the datasets library reads)
    out: str  # a local folder or a URI pyarrow reaches (s3://bucket/path, gs://..., hdfs://...)
    specs: list[str] | None = None  # the ensemble; None: the app's default
    weights_dir: str | None = None
    offline: bool = False
    engine: str | None = None  # None: the app's default (SENET_ENGINE or auto)
    feature: str = ENSEMBLE
    shard_size: int = SHARD_SIZE
    batch_size: int = BATCH_SIZE
    index_kind: str = "auto"
    ray_address: str | None = None  # None: start Ray on this machine
    workers: int | None = None  # actors; None: the CPUs / cpus_per_worker
    cpus_per_worker: int = 1
    split: str = "train"
    image_column: str | None = None  # None: the dataset's first Image column
    label_column: str | None = None  # None: "label", else the dataset's first ClassLabel column
    member_weights: dict[str, float] = field(default_factory=dict)  # 1.0 where absent, as the app's search

    def __post_init__(self):
        if self.index_kind not in INDEX_KINDS:
            raise ValueError(f"Unknown index kind {self.index_kind!r}; choose one of {', '.join(INDEX_KINDS)}.")
        if self.shard_size < 1 or self.batch_size < 1 or self.cpus_per_worker < 1 or (self.workers or 1) < 1:
            raise ValueError("Shard size, batch size, workers and CPUs per worker must be 1 or more.")

    @property
    def is_dataset(self) -> bool:
        return self.source.startswith(DATASET_PREFIX)

    def app_config(self, cpus: int | None = None):
        """The app's configuration for these models; ``cpus``: the CPUs one actor may use, so that its
        engine takes that many threads (``QueueSettings.threads_per_forward``)."""
        from .config import AppConfig, QueueSettings, _cpu_count

        kwargs = {"offline": self.offline}
        if self.weights_dir:
            kwargs["weights_dir"] = Path(self.weights_dir)
        if self.engine:
            kwargs["engine"] = self.engine
        if cpus:
            kwargs["queue"] = QueueSettings(inference_workers=max(1, _cpu_count() // cpus))
        return AppConfig.from_specs(self.specs, **kwargs)


# ------------------------------------------------------------------------------------------ output folder
class Output:
    """The index folder: a local path, or a URI of any filesystem pyarrow reaches. Writes are atomic for
    a reader (a temporary name, then a move: a rename on local and shared filesystems; object stores
    show an object only once it is whole)."""

    def __init__(self, uri: str):
        from pyarrow import fs as pafs

        self.uri = uri
        if "://" in uri:
            self.fs, self.base = pafs.FileSystem.from_uri(uri)
        else:
            self.fs, self.base = pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
        self.local = type(self.fs).__name__ == "LocalFileSystem"

    def path(self, name: str) -> str:
        return f"{self.base}/{name}"

    def make_folders(self) -> None:
        self.fs.create_dir(self.path(SHARDS), recursive=True)

    def read(self, name: str) -> bytes | None:
        from pyarrow import fs as pafs

        info = self.fs.get_file_info(self.path(name))
        if info.type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(self.path(name)) as stream:
            return stream.read()

    def read_json(self, name: str) -> dict | None:
        data = self.read(name)
        try:
            value = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def write(self, name: str, data: bytes) -> None:
        folder, _, base = self.path(name).rpartition("/")
        tmp = f"{folder}/.{base}.tmp-{uuid.uuid4().hex}"
        with self.fs.open_output_stream(tmp) as stream:
            stream.write(data)
        self.fs.move(tmp, self.path(name))

    def put_file(self, name: str, local: Path) -> None:
        """A file written locally (faiss writes to paths only), moved or copied into the folder."""
        if self.local:
            target = Path(self.path(name))
            os.replace(local, target)
        else:
            from pyarrow import fs as pafs

            folder, _, base = self.path(name).rpartition("/")
            tmp = f"{folder}/.{base}.tmp-{uuid.uuid4().hex}"
            pafs.copy_files(str(local), tmp, destination_filesystem=self.fs)
            self.fs.move(tmp, self.path(name))

    def delete(self, name: str) -> None:
        try:
            self.fs.delete_file(self.path(name))
        except FileNotFoundError:
            pass

    def names(self, folder: str) -> list[str]:
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.path(folder), allow_not_found=True))
        return sorted(f"{folder}/{info.base_name}" for info in infos if info.type == pafs.FileType.File)

    def scratch(self) -> Path:
        """A local folder for files on their way into the index (on the same filesystem when local)."""
        return Path(self.base) if self.local else Path(tempfile.mkdtemp(prefix="senet-index-"))


def record_name(number: int) -> str:
    return f"{SHARDS}/shard-{number:05d}.json"


# ------------------------------------------------------------------------------------------ the plan
@dataclass
class Shard:
    number: int
    fingerprint: str
    items: list[dict]  # folder sources: {"id", "source", "label"} of each image; empty for a dataset shard
    dataset_shard: int | None = None
    dataset_shards: int | None = None


def model_records(settings: JobSettings) -> list[dict]:
    """What the manifest records of each model (built_index.IndexedModel); loads each once, on the driver."""
    from .models import ModelRegistry

    registry = ModelRegistry(settings.app_config())
    records = []
    for name in registry.names:
        loaded = registry.get(name)
        records.append({
            "spec": name, "arch": loaded.spec.arch, "label": loaded.spec.label, "identity": loaded.weights.identity,
            "data_config": normal_json(loaded.data_config), "embedding_size": _embedding_size(loaded.model),
            "num_classes": loaded.num_classes,
        })
    feature_members(settings.feature, [r["spec"] for r in records])  # an unknown feature fails here
    return records


def _embedding_size(model) -> int:
    """Width of timm's pre-logits features, as ``gallery`` stores them."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def job_key(settings: JobSettings, models: list[dict]) -> str:
    """What every shard's numbers depend on besides its images."""
    from .config import AppConfig

    engine = settings.engine or AppConfig().engine
    return sha256_bytes(json.dumps({
        "format": FORMAT, "models": [(m["arch"], m["identity"], m["data_config"]) for m in models],
        "working_side": WORKING_SIDE, "batch_size": settings.batch_size, "engine": engine,
        "log_probs": settings.feature == LOGSOFTMAX,
    }, sort_keys=True).encode())


def folder_items(root: Path) -> list[dict]:
    """Every image under ``root/<label>/``, in ``gallery.scan``'s order, with its size and time (the
    plan's fingerprint notices a file changed since its shard was built)."""
    items = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        for path in sorted(label_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                stat = path.stat()
                items.append({"id": f"{label_dir.name}/{path.name}", "source": str(path.resolve()),
                              "label": label_dir.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return items


def plan(settings: JobSettings, key: str) -> list[Shard]:
    if settings.is_dataset:
        name = settings.source[len(DATASET_PREFIX):]
        dataset, image_column, label_column, _ = open_dataset(settings)
        count = _dataset_shards(dataset)
        return [Shard(i, sha256_bytes(json.dumps([key, name, settings.split, count, i, image_column, label_column])
                                      .encode()), [], i, count) for i in range(count)]
    root = Path(settings.source).expanduser()
    items = folder_items(root)
    if not items:
        raise JobError(f"Gallery folder {root} holds no images in <label>/ sub-folders.")
    shards = []
    for number, start in enumerate(range(0, len(items), settings.shard_size)):
        chunk = items[start:start + settings.shard_size]
        fingerprint = sha256_bytes(json.dumps([key, chunk], sort_keys=True).encode())
        shards.append(Shard(number, fingerprint, [{k: item[k] for k in ("id", "source", "label")} for item in chunk]))
    return shards


def open_dataset(settings: JobSettings):
    """(streamed dataset with undecoded images, image column, label column, label names or None)."""
    from datasets import ClassLabel, Image, load_dataset

    name = settings.source[len(DATASET_PREFIX):]
    try:
        dataset = load_dataset(name, split=settings.split, streaming=True)
    except Exception as err:
        raise JobError(f"Dataset {name!r} (split {settings.split!r}) cannot be opened: {type(err).__name__}: "
                       f"{err}".splitlines()[0]) from err
    features = dataset.features or {}
    image_column = settings.image_column or next((c for c, f in features.items() if isinstance(f, Image)), None)
    label_column = settings.label_column or ("label" if "label" in features else next(
        (c for c, f in features.items() if isinstance(f, ClassLabel)), None))
    for what, column in (("image", image_column), ("label", label_column)):
        if column is None or column not in features:
            raise JobError(f"Dataset {name!r} has no {what} column {column or ''}; its columns are "
                           f"{', '.join(features)}. Fix: name it with --{what}-column.")
    names = features[label_column].names if isinstance(features[label_column], ClassLabel) else None
    return dataset.cast_column(image_column, Image(decode=False)), image_column, label_column, names


def _dataset_shards(dataset) -> int:
    return int(getattr(dataset, "num_shards", None) or dataset.n_shards)


# ------------------------------------------------------------------------------------------ embedding
def embed_records(registry, engine, records: Iterable[tuple[dict, bytes | None]], batch_size: int = BATCH_SIZE,
                  log_probs: bool = False, limits=None):
    """(table, skipped ids): the shard's rows (``META_COLUMNS`` and one embedding column per model, plus
    log-probabilities with ``log_probs``) for records of (meta, image bytes); an image that does not
    decode is skipped. Each model runs ``engine.run_batch`` on ``batch_size`` images at a time, as the
    app's ``FeatureStore`` does, so the features are the app's own."""
    import pyarrow as pa

    from .config import Limits

    limits = limits or Limits()
    metas, skipped = [], []
    per_model: dict[int, list[np.ndarray]] = {i: [] for i in range(len(registry.names))}
    per_model_lp: dict[int, list[np.ndarray]] = {i: [] for i in range(len(registry.names))}
    pending: list[tuple[dict, object]] = []

    def flush():
        images = [image for _, image in pending]
        for position, name in enumerate(registry.names):
            outputs = engine.run_batch(name, images)
            per_model[position].append(np.stack([o.embedding for o in outputs]).astype(np.float32))
            if log_probs:
                per_model_lp[position].append(np.stack([o.log_probs for o in outputs]).astype(np.float32))
        metas.extend(meta for meta, _ in pending)
        pending.clear()

    for meta, data in records:
        if data is None:
            skipped.append(meta["id"])
            continue
        try:
            image = load_image(data, limits, name=meta["id"])
        except ImageError as err:
            log.warning("Skipping %s: %s", meta["id"], err)
            skipped.append(meta["id"])
            continue
        pending.append(({**meta, "digest": sha256_bytes(data)}, image))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    columns = {name: pa.array([m[name] for m in metas], pa.string()) for name in META_COLUMNS}
    for position, name in enumerate(registry.names):
        width = _embedding_size(registry.get(name).model)
        matrix = np.concatenate(per_model[position]) if per_model[position] else np.zeros((0, width), np.float32)
        columns[embedding_column(position)] = numpy_to_fixed_list(matrix)
        if log_probs:
            classes = registry.get(name).num_classes
            matrix = np.concatenate(per_model_lp[position]) if per_model_lp[position] else np.zeros((0, classes), np.float32)
            columns[log_probs_column(position)] = numpy_to_fixed_list(matrix)
    return pa.table(columns), skipped


def parquet_bytes(table) -> bytes:
    """The table as Parquet; the same table gives the same bytes (no timestamps in the file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def folder_records(items: list[dict], limits) -> Iterator[tuple[dict, bytes | None]]:
    for item in items:
        meta = {k: item[k] for k in ("id", "source", "label")}
        path = Path(item["source"])
        try:
            if path.stat().st_size > limits.max_image_bytes:
                log.warning("Skipping %s: larger than %d bytes", item["id"], limits.max_image_bytes)
                yield meta, None
                continue
            yield meta, path.read_bytes()
        except OSError as err:
            log.warning("Skipping %s: %s", item["id"], err.strerror or err)
            yield meta, None


def dataset_records(settings: JobSettings, shard: Shard) -> Iterator[tuple[dict, bytes | None]]:
    dataset, image_column, label_column, names = open_dataset(settings)
    name = settings.source[len(DATASET_PREFIX):]
    if _dataset_shards(dataset) != shard.dataset_shards:
        raise JobError(f"Dataset {name!r} now has {_dataset_shards(dataset)} data files, not {shard.dataset_shards}: "
                       f"it changed while the job ran. Fix: build the index again into a new folder.")
    part = dataset.shard(num_shards=shard.dataset_shards, index=shard.dataset_shard)
    for row, example in enumerate(part):
        value = example[label_column]
        label = names[value] if names is not None and isinstance(value, int) else str(value)
        image = example[image_column] or {}
        data = image.get("bytes")
        if data is None and image.get("path") and Path(image["path"]).is_file():
            data = Path(image["path"]).read_bytes()
        meta = {"id": f"{shard.dataset_shard:05d}/{row:07d}", "label": label,
                "source": f"{DATASET_PREFIX}{name} split {settings.split} file {shard.dataset_shard} row {row}"}
        yield meta, data


class ShardEmbedder:
    """A Ray Data actor: loads the models once, then embeds whole shards and writes them to the index folder."""

    def __init__(self, settings: dict, models: list[dict]):
        from .engine import Engine
        from .models import ModelRegistry

        self.settings = JobSettings(**settings)
        config = self.settings.app_config(cpus=self.settings.cpus_per_worker)
        self.limits = config.limits
        self.registry = ModelRegistry(config)
        self.engine = Engine(self.registry, backend=config.engine)
        for name, expected in zip(self.registry.names, models):
            loaded = self.registry.get(name)
            if loaded.weights.identity != expected["identity"] or normal_json(loaded.data_config) != expected["data_config"]:
                raise JobError(f"On {socket.gethostname()}, {name} has weights {loaded.weights.identity}, but the job "
                               f"was planned with {expected['identity']}. Fix: give every node the same weights "
                               f"(the same files, or the Hub).")
        self.log_probs = self.settings.feature == LOGSOFTMAX
        self.output = Output(self.settings.out)

    def __call__(self, batch: dict) -> dict:
        return {"result": np.array([json.dumps(self.write_shard(Shard(**json.loads(text)))) for text in batch["shard"]],
                                   dtype=object)}

    def write_shard(self, shard: Shard) -> dict:
        start = time.perf_counter()
        records = (dataset_records(self.settings, shard) if shard.dataset_shard is not None
                   else folder_records(shard.items, self.limits))
        table, skipped = embed_records(self.registry, self.engine, records, self.settings.batch_size, self.log_probs,
                                       self.limits)
        data = parquet_bytes(table)
        record = {"fingerprint": shard.fingerprint, "rows": table.num_rows, "skipped": skipped,
                  "sha256": sha256_bytes(data), "columns": table.column_names}
        self.output.write(shard_name(shard.number), data)
        self.output.write(record_name(shard.number), json.dumps(record, indent=1).encode())  # after its shard
        return {"shard": shard.number, "rows": table.num_rows, "skipped": len(skipped),
                "seconds": time.perf_counter() - start, "host": socket.gethostname()}


# ------------------------------------------------------------------------------------------ Ray
def start_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address``, or start Ray on this machine; False when Ray is already running in
    this process (then it is used as it is). The package travels to the workers with the job, so a node
    needs only the requirements installed."""
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"py_modules": [str(Path(__file__).resolve().parent)]}
    env = {name: os.environ[name] for name in ("HF_HUB_OFFLINE", "SENET_ENGINE") if name in os.environ}
    if env:
        runtime_env["env_vars"] = env
    if address:
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env, logging_level=logging.WARNING)
    return True


def embed_on_ray(settings: JobSettings, models: list[dict], pending: list[Shard], say: Say) -> list[dict]:
    import ray
    import ray.data

    from .config import _cpu_count

    local_cpus = max(_cpu_count(), (settings.workers or 1) * settings.cpus_per_worker)
    started = start_ray(settings.ray_address, None if settings.ray_address else local_cpus)
    try:
        context = ray.data.DataContext.get_current()
        if hasattr(context, "enable_progress_bars"):
            context.enable_progress_bars = False  # one line a shard, below, instead
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = settings.workers or max(1, cpus // settings.cpus_per_worker)
        workers = min(workers, len(pending))
        say(f"Embedding {len(pending)} shards on Ray ({workers} workers, {settings.cpus_per_worker} CPU each, "
            f"{cpus} CPUs in the cluster)")
        shards = ray.data.from_items([{"shard": json.dumps(asdict(s))} for s in pending],
                                     override_num_blocks=len(pending))
        embedded = shards.map_batches(
            ShardEmbedder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=settings.cpus_per_worker,
            fn_constructor_kwargs={"settings": asdict(settings), "models": models})
        results = []
        try:
            for row in embedded.iter_rows():
                result = json.loads(row["result"])
                results.append(result)
                skipped = f" ({result['skipped']} skipped)" if result["skipped"] else ""
                say(f"[{len(results)}/{len(pending)}] shard {result['shard']}: {result['rows']} images{skipped} "
                    f"in {result['seconds']:.1f} s on {result['host']}")
        except Exception as err:  # a worker's failure, as Ray reports it: its root cause in one line
            raise JobError(f"A shard failed on Ray: {_root_cause(err)}") from err
        return results
    finally:
        if started:
            ray.shutdown()


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


# ------------------------------------------------------------------------------------------ the run
def check_shards(output: Output, shards: list[Shard], say: Say) -> tuple[dict[int, dict], list[Shard]]:
    """(records of the finished shards, the shards to embed): a shard is finished when its record matches
    its plan and its file matches the record's sha256."""
    done, pending = {}, []
    for shard in shards:
        record = output.read_json(record_name(shard.number))
        if record is None:
            pending.append(shard)
            continue
        if record.get("fingerprint") != shard.fingerprint:
            say(f"shard {shard.number} was built for other images or models; embedding it again")
        else:
            data = output.read(shard_name(shard.number))
            if data is not None and sha256_bytes(data) == record.get("sha256"):
                done[shard.number] = record
                continue
            say(f"shard {shard.number} fails its checksum; it is not used, and is built again")
        output.delete(record_name(shard.number))
        output.delete(shard_name(shard.number))
        pending.append(shard)
    return done, pending


def run(settings: JobSettings, say: Say = print) -> dict:
    """Build (or finish, or check) the index folder ``settings.out``; returns its manifest."""
    output = Output(settings.out)
    output.make_folders()
    settings = _absolute(settings, output)
    models = model_records(settings)
    if len(models) == 1 and settings.feature == models[0]["spec"]:
        settings = replace(settings, feature=ENSEMBLE)  # one model: its feature is the ensemble's, as the app names it
    key = job_key(settings, models)
    shards = plan(settings, key)
    _remove_leftovers(output, shards)
    done, pending = check_shards(output, shards, say)
    say(f"{len(shards)} shards: {len(done)} already built, {len(pending)} to embed")
    if not pending and _up_to_date(output, settings, key, shards, done):
        say(f"The index in {settings.out} is up to date.")
        return output.read_json(MANIFEST)
    output.delete(MANIFEST)  # while shards are rewritten, no reader takes the folder for a finished index
    if pending:
        embed_on_ray(settings, models, pending, say)
        done, still = check_shards(output, shards, say)
        if still:
            raise JobError(f"{len(still)} shards were not written (first: shard {still[0].number}). Fix: run the "
                           f"job again; finished shards are kept.")
    return finalise(output, settings, models, key, shards, done, say)


def _absolute(settings: JobSettings, output: Output) -> JobSettings:
    """The settings with every local path absolute: the workers do not run in the driver's folder."""
    from .config import ModelSpec

    def spec(text: str) -> str:
        parsed = ModelSpec.parse(text)
        if parsed.source is None or parsed.source.startswith("hf-hub:") or not Path(parsed.source).exists():
            return text
        return f"{parsed.arch}={Path(parsed.source).expanduser().resolve()}"

    changes = {"out": output.base if output.local else settings.out,
               "specs": [spec(text) for text in settings.specs] if settings.specs else settings.specs}
    if settings.weights_dir:
        changes["weights_dir"] = str(Path(settings.weights_dir).expanduser().resolve())
    if not settings.is_dataset:
        changes["source"] = str(Path(settings.source).expanduser().resolve())
    elif Path(settings.source[len(DATASET_PREFIX):]).exists():  # a local dataset folder
        changes["source"] = DATASET_PREFIX + str(Path(settings.source[len(DATASET_PREFIX):]).resolve())
    return replace(settings, **changes)


def _remove_leftovers(output: Output, shards: list[Shard]) -> None:
    """Temporary files of a stopped run, and shards beyond the plan (the source shrank)."""
    planned = {shard_name(s.number) for s in shards} | {record_name(s.number) for s in shards}
    for name in output.names(SHARDS):
        if name not in planned:
            output.delete(name)
    for name in output.names(".") if output.local else []:
        if Path(name).name.startswith(".") and ".tmp-" in name:
            output.delete(name)


def _up_to_date(output: Output, settings: JobSettings, key: str, shards: list[Shard], done: dict[int, dict]) -> bool:
    """Whether the folder's manifest is this job's: the same shards, feature, index kind and weights, and
    files that still match their checksums."""
    manifest = output.read_json(MANIFEST)
    if manifest is None or manifest.get("job") != key or manifest.get("feature") != settings.feature:
        return False
    if manifest.get("index_kind") != settings.index_kind or manifest.get("member_weights") != {
            m["spec"]: float(settings.member_weights.get(m["spec"], 1.0)) for m in manifest.get("models", [])}:
        return False
    if manifest.get("shards") != [{"file": shard_name(s.number), "rows": done[s.number]["rows"],
                                   "sha256": done[s.number]["sha256"]} for s in shards]:
        return False
    for name, digest in manifest.get("files", {}).items():
        data = output.read(name)
        if data is None or sha256_bytes(data) != digest:
            return False
    return True


def _read_shard(output: Output, shard: Shard, record: dict):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = output.read(shard_name(shard.number))
    if data is None or sha256_bytes(data) != record["sha256"]:
        raise JobError(f"shard {shard.number} changed or vanished while the index was built. Fix: run the job again.")
    return pq.read_table(pa.BufferReader(data))


def _evenly(count: int, total: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(np.int64)) if total else np.zeros(0, int)


def finalise(output: Output, settings: JobSettings, models: list[dict], key: str, shards: list[Shard],
             done: dict[int, dict], say: Say) -> dict:
    """The faiss index, rows.parquet, sample.parquet and, last, manifest.json, from the checked shards."""
    import faiss
    import pyarrow as pa

    names = [m["spec"] for m in models]
    weights = {name: float(settings.member_weights.get(name, 1.0)) for name in names}
    members = feature_members(settings.feature, names)
    column = log_probs_column if settings.feature == LOGSOFTMAX else embedding_column

    def vectors_of(table) -> np.ndarray:
        return feature_vectors({i: fixed_list_to_numpy(table.column(column(i))) for i in members},
                               settings.feature, names, weights)

    total = sum(done[s.number]["rows"] for s in shards)
    if total == 0:
        raise JobError("No image of the gallery could be decoded; there is nothing to index.")
    dimension = sum(models[i]["num_classes"] if settings.feature == LOGSOFTMAX else models[i]["embedding_size"]
                    for i in members)
    spec = choose_index(total, dimension, settings.index_kind)
    approximate = spec["kind"] != "flat"
    train_rows = _evenly(spec.get("train_rows", 0), total)
    recall_rows = _evenly(RECALL_QUERIES, total) if approximate else np.zeros(0, np.int64)
    started = time.perf_counter()

    # First pass: every row's metadata, the training sample and the recall queries.
    metadata, train, queries, offset = [], [], [], 0
    for shard in shards:
        table = _read_shard(output, shard, done[shard.number])
        metadata.append(table.select(list(META_COLUMNS)))
        if len(train_rows) or len(recall_rows):
            vectors = vectors_of(table)
            train.append(vectors[_within(train_rows, offset, table.num_rows)])
            queries.append(vectors[_within(recall_rows, offset, table.num_rows)])
        offset += table.num_rows
    rows = pa.concat_tables(metadata)
    labels = np.asarray(rows.column("label").to_pylist())
    sample_rows = quality_sample_rows(labels)

    # Second pass: the vectors into the index; the exact top-k of the recall queries; the sample's vectors.
    index = new_faiss_index(spec, dimension)
    if spec["kind"] == "ivfpq":
        say(f"Training IVF-PQ on {len(train_rows)} vectors")
        index.train(np.concatenate(train))
    queries = np.concatenate(queries) if queries else np.zeros((0, dimension), np.float32)
    exact_scores = np.full((len(queries), 0), -np.inf, np.float32)
    exact_ids = np.zeros((len(queries), 0), np.int64)
    sample_vectors, offset = [], 0
    for shard in shards:
        table = _read_shard(output, shard, done[shard.number])
        vectors = vectors_of(table)
        index.add(vectors)
        if len(queries):
            scores = queries @ vectors.T
            ids = np.broadcast_to(np.arange(offset, offset + len(vectors)), scores.shape)
            exact_scores, exact_ids = top_k_merge(exact_scores, exact_ids, scores, ids, RECALL_K + 1)
        sample_vectors.append(vectors[_within(sample_rows, offset, len(vectors))])
        offset += len(vectors)
    if approximate:
        _, approximate_ids = index.search(np.ascontiguousarray(queries), RECALL_K + 1)
        spec["recall_at_10"] = round(recall_at_k(approximate_ids, exact_ids, recall_rows), 4)
        spec["recall_queries"] = int(len(recall_rows))
    build_seconds = time.perf_counter() - started

    sample = pa.table({"row": pa.array(sample_rows, pa.int64()), "label": pa.array(labels[sample_rows].tolist(), pa.string()),
                       "vector": numpy_to_fixed_list(np.concatenate(sample_vectors))})
    files = {}
    for name, table in ((ROWS_FILE, rows), (SAMPLE_FILE, sample)):
        data = parquet_bytes(table)
        output.write(name, data)
        files[name] = sha256_bytes(data)
    scratch = output.scratch()
    local = scratch / f".{INDEX_FILE}.tmp-{uuid.uuid4().hex}"
    try:
        faiss.write_index(index, str(local))
        files[INDEX_FILE] = _sha256_path(local)
        index_bytes = local.stat().st_size
        output.put_file(INDEX_FILE, local)
    finally:
        local.unlink(missing_ok=True)
    skipped = [i for s in shards for i in done[s.number].get("skipped", [])]
    manifest = {
        "format": FORMAT,
        "job": key,
        "source": settings.source,
        "feature": settings.feature,
        "feature_kind": ("log-softmax of the class scores" if settings.feature == LOGSOFTMAX else
                         "pooled pre-logits embedding") + (", each member L2-normalised, weighted, concatenated "
                                                          "and L2-normalised" if settings.feature in (ENSEMBLE, LOGSOFTMAX)
                                                          else ", L2-normalised"),
        "member_weights": weights,
        "working_side": WORKING_SIDE,
        "batch_size": settings.batch_size,
        "models": models,
        "rows": total,
        "labels": int(len(np.unique(labels))),
        "skipped": len(skipped),
        "skipped_ids": skipped[:100],
        "shards": [{"file": shard_name(s.number), "rows": done[s.number]["rows"], "sha256": done[s.number]["sha256"]}
                   for s in shards],
        "sample": {"rows": int(len(sample_rows)), "labels": int(len(np.unique(labels[sample_rows])))},
        "index_kind": settings.index_kind,  # as asked: "auto" chose by size
        "index": {**spec, "dimension": dimension, "bytes": index_bytes},
        "files": files,
    }
    output.write(MANIFEST, json.dumps(manifest, indent=1).encode())
    say(f"Index: {spec['kind']} over {total} vectors of {dimension} values, built in {build_seconds:.1f} s"
        + (f"; recall@10 against exact search {spec['recall_at_10']:.3f} on {spec['recall_queries']} queries"
           if approximate else ""))
    return manifest


def _within(rows: np.ndarray, offset: int, count: int) -> np.ndarray:
    """Positions within a shard starting at ``offset`` of the global ``rows`` that fall in it."""
    chosen = rows[(rows >= offset) & (rows < offset + count)]
    return chosen - offset


def _sha256_path(path: Path) -> str:
    from .built_index import sha256_file

    return sha256_file(path)


def embed_in_process(settings: JobSettings, items: list[dict] | None = None):
    """The job's embedding without Ray, in this process (the benchmark's baseline): (table, skipped)."""
    from .engine import Engine
    from .models import ModelRegistry

    config = settings.app_config()
    registry = ModelRegistry(config)
    engine = Engine(registry, backend=config.engine)
    items = items if items is not None else folder_items(Path(settings.source))
    return embed_records(registry, engine, folder_records(items, config.limits), settings.batch_size,
                         settings.feature == LOGSOFTMAX, config.limits)


__all__ = ["JobError", "JobSettings", "Output", "ShardEmbedder", "embed_in_process", "missing_packages", "run",
           "start_ray"]
