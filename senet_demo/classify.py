"""Classify one image with every ensemble member and combine their answers.

Used by the Classify tab, its API endpoint and the ``classify`` command. A
member whose weights are missing reports its message and is left out; the
others keep working. Every number a caller sends (member weights, k) is checked
to be finite and in range before any model runs. Nothing in a result depends on
other visitors' requests: whether an answer came from the shared cache is not
part of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from .config import SpecError, member_weight, result_count
from .engine import Engine
from .ensemble import Prediction, combine, top_k
from .i18n import Message
from .images import content_hash
from .models import ModelLoadError
from .weights import WeightsNotFound


class NoModelAnswered(RuntimeError):
    """Every member failed (their messages say why) or all weights are zero. ``failures``: each failed
    member's error, so a page can say it briefly and keep each full message one click away."""

    def __init__(self, message: str, failures: dict[str, Exception] | None = None):
        super().__init__(message)
        self.failures = failures or {}


@dataclass
class MemberResult:
    name: str
    weight: float
    top: list[Prediction] = field(default_factory=list)
    latency_ms: float = 0.0  # of the forward pass that produced the answer (whoever asked for it first)
    error: str | None = None  # why this member gave no answer
    in_ensemble: bool = False
    failure: Exception | None = field(default=None, repr=False, compare=False)  # the error itself, for the page


@dataclass
class ClassifyResult:
    ensemble: list[Prediction]
    members: list[MemberResult]
    tta: str
    note: str = ""  # e.g. members left out of the average

    @property
    def agree(self) -> bool | None:
        """Whether all answering members share the same top-1; None with fewer than two."""
        tops = [m.top[0].index for m in self.members if m.top]
        return None if len(tops) < 2 else len(set(tops)) == 1

    def as_dict(self) -> dict:
        return {
            "tta": self.tta,
            "ensemble": [p.as_dict() for p in self.ensemble],
            "agree": self.agree,
            "members": {
                m.name: {
                    "weight": m.weight,
                    "latency_ms": round(m.latency_ms, 1),
                    "in_ensemble": m.in_ensemble,
                    "top": [p.as_dict() for p in m.top],
                    **({"error": m.error} if m.error else {}),
                }
                for m in self.members
            },
            **({"note": self.note} if self.note else {}),
        }


def classify(
    engine: Engine,
    image: Image.Image,
    names: list[str] | None = None,
    tta: str = "none",
    weights: dict[str, float] | None = None,
    k: int = 5,
) -> ClassifyResult:
    """Top-``k`` of the ensemble and of each member for ``image``."""
    names = names or engine.registry.names
    weights = {name: member_weight(name, value) for name, value in (weights or {}).items()}
    k = result_count(k, "k (how many classes to show)")
    members, probs, labels, reference = [], {}, None, None
    notes = []
    digest = content_hash(image)
    for name in names:
        member = MemberResult(name=name, weight=float(weights.get(name, 1.0)))
        members.append(member)
        try:
            loaded = engine.registry.get(name)
            outputs = engine.run(name, image, tta, digest)
        except (WeightsNotFound, ModelLoadError, SpecError) as err:
            member.error, member.failure = str(err), err
            continue
        member.top = top_k(outputs.probs, loaded.labels, k)
        member.latency_ms = outputs.latency_ms
        if member.weight <= 0:  # shown, but neither averaged nor the reference for the classes
            continue
        if labels is None:
            labels, reference = loaded.labels, name
        if loaded.labels == labels:
            probs[name] = outputs.probs
            member.in_ensemble = True
        else:
            notes.append(Message("classify.not_averaged", name=name, reference=reference))
    if not probs:
        errors = [m.error for m in members if m.error]
        raise NoModelAnswered(" ".join(errors) or "No model could classify the image (all weights are zero).",
                              {m.name: m.failure for m in members if m.failure is not None})
    ensemble = top_k(combine(probs, weights), labels, k)
    # one note keeps its Message, so the page can show it in the visitor's language
    note = notes[0] if len(notes) == 1 else " ".join(notes)
    return ClassifyResult(ensemble=ensemble, members=members, tta=tta, note=note)
