"""The objects one running app (or one CLI call) shares: config, models, engine."""
from __future__ import annotations

from dataclasses import dataclass

from .config import AppConfig
from .engine import Engine
from .models import ModelLoadError, ModelRegistry
from .weights import WeightsNotFound, resolve


@dataclass
class Services:
    config: AppConfig
    registry: ModelRegistry
    engine: Engine

    @classmethod
    def create(cls, config: AppConfig) -> "Services":
        registry = ModelRegistry(config)
        return cls(config=config, registry=registry, engine=Engine(registry))

    def model_status(self) -> dict[str, str]:
        """Per model, where its weights are (or what is missing), without loading or downloading."""
        status = {}
        for name, spec in self.registry.specs.items():
            if self.registry.is_loaded(name):
                status[name] = f"loaded ({self.registry.get(name).weights.origin})"
                continue
            try:
                status[name] = f"ready ({resolve(spec, self.config.weights_dir, offline=True).origin})"
            except WeightsNotFound as err:
                status[name] = str(err) if self.config.offline else "downloads from the Hugging Face Hub on first use"
            except (ModelLoadError, ValueError) as err:
                status[name] = str(err)
        return status
