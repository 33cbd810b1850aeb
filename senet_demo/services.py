"""The objects one running app (or one CLI call) shares: config, models, engine, gallery features and search.

Also what the app knows about each model's weights before anyone asks for one (``model_states``): on disk,
damaged, or missing, and for a missing model whether it can still be downloaded. Whether the Hub answers is
checked once, in a background thread with a short timeout (``start_model_check``), so a start is never slowed
by the network and a page can say what will not work before anyone clicks.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .config import AppConfig, ModelSpec
from .engine import Engine
from .built_index import BuiltIndex, is_index_folder
from .gallery import FeatureStore, GalleryItem, scan
from .i18n import Message, message_of
from .models import ModelRegistry
from .weights import NOT_ON_HUB, REACHABLE, UNREACHABLE, WeightsNotFound, find_local, hub_offline, is_downloadable, probe_download

if TYPE_CHECKING:
    from .search import GallerySearch

log = logging.getLogger(__name__)

# What a model's weights are known to be, before anyone asks for them (ModelState.kind):
LOADED = "loaded"  # in memory
READY = "ready"  # on disk, and their header matches the architecture
DOWNLOAD = "download"  # not on disk; the Hub answers, so the first use downloads them
CHECKING = "checking"  # not on disk; whether the Hub answers is being checked
OFFLINE = "offline"  # not on disk, and the app was started with --offline
HUB_OFFLINE = "hub-offline"  # not on disk, and HF_HUB_OFFLINE=1 is set
UNREACHABLE_HUB = "unreachable"  # not on disk, and the Hub did not answer
NOT_FOUND = "not-found"  # a local SOURCE that is not there, or a Hub repo that does not exist
BROKEN = "broken"  # on disk but unusable: damaged, the wrong architecture, not safetensors
UNUSABLE = (OFFLINE, HUB_OFFLINE, UNREACHABLE_HUB, NOT_FOUND, BROKEN)


@dataclass(frozen=True)
class ModelState:
    """One model's weights as the app knows them: ``kind`` (one of the constants above) and ``detail``,
    the full sentence with its fix, for the Models panel and the details of the page's notice."""

    kind: str
    detail: str

    @property
    def usable(self) -> bool:
        return self.kind not in UNUSABLE


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
    # spec -> REACHABLE / UNREACHABLE / NOT_ON_HUB; a test passes its own, so nothing touches the network
    probe: Callable[[ModelSpec], str] = field(default=probe_download, repr=False)
    _reachability: dict[str, str] = field(default_factory=dict, repr=False)
    _check_thread: threading.Thread | None = field(default=None, repr=False)
    _check_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _checked: threading.Event = field(default_factory=threading.Event, repr=False)
    _states: dict[str, ModelState] | None = field(default=None, repr=False)  # what the check found

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
        request, which shows the progress or the problem. Also starts the check of the missing ones."""
        self.start_model_check()

        def load_all():
            for name, spec in self.registry.specs.items():
                if name not in self.registry.names:
                    continue  # Explain-only models load when a visitor picks them
                try:
                    if find_local(spec, self.config.weights_dir) is None:
                        continue  # the model check says what happens to it, for the way the app was started
                    self.engine.backend(name)
                    log.info("%s: ready (%s)", name, self.engine.backend_name(name))
                except Exception as err:  # reported with its fix in the Models panel and on first use
                    log.warning("%s: not preloaded: %s", name, err)

        thread = threading.Thread(target=load_all, name="preload-models", daemon=True)
        thread.start()
        return thread

    @property
    def offline_mode(self) -> str | None:
        """Why nothing can be downloaded: OFFLINE (--offline), HUB_OFFLINE (HF_HUB_OFFLINE=1), or None."""
        if self.config.offline:
            return OFFLINE
        return HUB_OFFLINE if hub_offline() else None

    def start_model_check(self) -> threading.Thread:
        """Check, once and in the background, whether the models missing from disk can be downloaded, and log
        what a missing model means for the way the app was started. Never waits for the network itself."""
        with self._check_lock:
            if self._check_thread is None:
                self._check_thread = threading.Thread(target=self._check_models, name="check-models", daemon=True)
                self._check_thread.start()
            return self._check_thread

    def _check_models(self) -> None:
        from .weights import release_url_for

        try:
            hub_down = False  # once the Hub has not answered for one model, the others are not tried again
            for name, spec in self.registry.specs.items():
                try:
                    if find_local(spec, self.config.weights_dir) is not None or not is_downloadable(spec):
                        continue
                except Exception:  # a SPEC timm cannot resolve, a bad local SOURCE: model_state names it
                    continue
                if self.offline_mode is None:
                    from_hub = release_url_for(spec) is None
                    result = UNREACHABLE if from_hub and hub_down else self.probe(spec)
                    hub_down = hub_down or (from_hub and result == UNREACHABLE)
                    self._reachability[name] = result
                state = self.model_state(name)
                if state.usable:
                    log.info("%s: not on this machine yet; its first use downloads it.", name)
                else:
                    log.warning("%s", state.detail)
            # read once here, not on every page load: a check builds each architecture on the meta device
            self._states = {name: self.model_state(name) for name in self.registry.specs}
        except Exception:  # the check only informs: the app serves whatever it finds
            log.exception("The model check failed")
        finally:
            self._checked.set()

    def model_states(self, wait: float = 0.0) -> dict[str, ModelState] | None:
        """Every model's ``ModelState`` (ensemble and Explain models), once the check has run; None while it
        still runs after waiting up to ``wait`` seconds. Reads metadata only, never loads or downloads."""
        self.start_model_check()
        if not self._checked.wait(wait):
            return None
        if self._states is None:  # the check failed: read them now
            return {name: self.model_state(name) for name in self.registry.specs}
        # a model loaded since (or whose download succeeded) is read again: that is cheap
        return {name: self.model_state(name) if self.registry.is_loaded(name) else state
                for name, state in self._states.items()}

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
        return {name: self.model_state(name).detail for name in self.registry.specs}

    def model_state(self, name: str) -> ModelState:
        """One model's ``ModelState``; a missing model's reachability is what the model check found so far."""
        from .models import ModelLoadError, check

        spec = self.registry.specs[name]
        if self.registry.is_loaded(name):
            return ModelState(LOADED, Message("status.loaded", origin=self.registry.get(name).weights.origin,
                                              engine=self.engine.backend_name(name)))
        problem = self.registry.architecture_problem(name)
        if problem:
            return ModelState(BROKEN, problem)
        try:
            weights = find_local(spec, self.config.weights_dir)
            if weights is not None:
                check(spec, weights)
                return ModelState(READY, Message("status.ready", origin=weights.origin))
            downloadable = is_downloadable(spec)
        except WeightsNotFound as err:  # a local SOURCE that is missing or not safetensors
            return ModelState(NOT_FOUND if err.reason == "missing" else BROKEN, message_of(err) or str(err))
        except (ModelLoadError, ValueError) as err:  # a broken checkpoint, or a SPEC timm cannot resolve
            return ModelState(BROKEN, message_of(err) or str(err))
        if not downloadable:
            return ModelState(NOT_FOUND, Message("status.no_weights", name=name))
        return self._missing_state(name, spec)

    def _missing_state(self, name: str, spec: ModelSpec) -> ModelState:
        """A downloadable model that is not on disk: what happens at its first use."""
        command = f"`python -m senet_demo download {name}`"
        mode = self.offline_mode
        if mode == OFFLINE:
            return ModelState(OFFLINE, Message("status.offline", name=name, command=command))
        if mode == HUB_OFFLINE:
            return ModelState(HUB_OFFLINE, Message("status.hub_offline", name=name, command=command))
        reachability = self._reachability.get(name)
        if reachability == REACHABLE:
            return ModelState(DOWNLOAD, Message("status.download"))
        if reachability == UNREACHABLE:
            return ModelState(UNREACHABLE_HUB, Message("status.unreachable", name=name, command=command))
        if reachability == NOT_ON_HUB:
            return ModelState(NOT_FOUND, Message("status.not_on_hub", name=name))
        return ModelState(CHECKING, Message("status.checking"))
