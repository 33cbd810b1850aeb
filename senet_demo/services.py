"""The objects one running app (or one CLI call) shares: config, models, engine, gallery features and search."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .config import AppConfig
from .engine import Engine
from .built_index import BuiltIndex, is_index_folder
from .gallery import FeatureStore, GalleryItem, scan
from .models import ModelRegistry
from .weights import WeightsNotFound, is_downloadable, resolve

if TYPE_CHECKING:
    from .search import GallerySearch

log = logging.getLogger(__name__)


@dataclass
class Services:
    config: AppConfig
    registry: ModelRegistry
    engine: Engine
    features: FeatureStore
    # the gallery's search indexes, shared by every visitor (set by ``create``: search.py builds on Services)
    search: GallerySearch | None = field(default=None, repr=False)
    _gallery: list[GalleryItem] | None = field(default=None, repr=False)
    _gallery_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _built_index: BuiltIndex | None = field(default=None, repr=False)  # see ``built_index``

    @classmethod
    def create(cls, config: AppConfig) -> "Services":
        """Everything for ``config``; ``config.engine`` picks the forward backend ("auto", "torch", "onnx")."""
        from .search import GallerySearch

        registry = ModelRegistry(config)
        engine = Engine(registry, backend=config.engine)
        services = cls(config=config, registry=registry, engine=engine,
                       features=FeatureStore(engine, config.feature_cache_dir))
        services.search = GallerySearch(services)
        return services

    def preload(self) -> threading.Thread:
        """Load the ensemble's models whose weights are on disk, with their engine backends (an ONNX
        export is opened, or made once), in a background thread while the server starts, so the first
        visitor does not wait for them. Models that would download, or are broken, are left to the first
        request, which shows the progress or the problem."""

        def load_all():
            for name, spec in self.registry.specs.items():
                if name not in self.registry.names:
                    continue  # Explain-only models load when a visitor picks them
                try:
                    resolve(spec, self.config.weights_dir, offline=True)
                    self.engine.backend(name)
                    log.info("%s: ready (%s)", name, self.engine.backend_name(name))
                except Exception as err:  # reported with its fix in the Models panel and on first use
                    log.info("%s: not preloaded: %s", name, err)

        thread = threading.Thread(target=load_all, name="preload-models", daemon=True)
        thread.start()
        return thread

    def gallery(self) -> list[GalleryItem]:
        """The operator's gallery (scanned once); empty if there is none, or if it is a built index (whose rows
        are not image files to scan: ``built_index`` searches it)."""
        with self._gallery_lock:
            if self._gallery is None:
                try:
                    self._gallery = [] if is_index_folder(self.config.gallery_dir) else scan(self.config.gallery_dir)
                except FileNotFoundError:
                    self._gallery = []
            return self._gallery

    @property
    def built_index(self) -> BuiltIndex | None:
        """The index the app searches when its gallery is one built by ``python -m senet_demo index``
        (``--gallery index:DIR``), else None. Its manifest is read once, its files on first search; raises
        ``built_index.IndexProblem`` (a ValueError, with the fix) when it cannot be used."""
        if not is_index_folder(self.config.gallery_dir):
            return None
        with self._gallery_lock:
            if self._built_index is None or str(self._built_index.folder) != str(self.config.gallery_dir):
                self._built_index = BuiltIndex.open(self.config.gallery_dir)
            return self._built_index

    def model_status(self) -> dict[str, str]:
        """Per model, where its weights are, or what is wrong and the fix; reads metadata only (a safetensors
        header, the architecture on the meta device), never loads or downloads weights."""
        from .models import ModelLoadError, check

        status = {}
        for name, spec in self.registry.specs.items():  # ensemble and Explain models
            if self.registry.is_loaded(name):
                status[name] = (f"loaded ({self.registry.get(name).weights.origin}); "
                                f"engine: {self.engine.backend_name(name)}")
                continue
            problem = self.registry.architecture_problem(name)
            if problem:
                status[name] = problem
                continue
            try:
                weights = resolve(spec, self.config.weights_dir, offline=True)
                check(spec, weights)
                status[name] = f"ready ({weights.origin})"
            except WeightsNotFound as err:
                downloadable = is_downloadable(spec) and not self.config.offline
                status[name] = "downloads on first use (with a progress bar)" if downloadable else str(err)
            except (ModelLoadError, ValueError) as err:  # a broken checkpoint, or a SPEC timm cannot resolve
                status[name] = str(err)
        return status
