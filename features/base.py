"""Feature extractors: (candidates, target) -> fixed-length float vectors.

Contract:
- ``extract(candidates, target)`` returns a float32 array of shape ``(len(candidates), len(names()))``;
  row i describes candidate i.  The length and meaning of the columns do not depend on the op kind
  or the batch, so one model can score matmuls and convolutions side by side.
- ``names()`` are stable, human-readable column names (used for feature importances and to refuse a
  model trained on other features).
- Extraction is pure (no measurement, no compilation unless the extractor says so in its docs) and
  deterministic.
- Extractors register by name; ``create("analytic,ir,target")`` concatenates several.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from tilewise.core.candidate import Candidate
from tilewise.core.target import Target
from tilewise.core.registry import Registry

EXTRACTORS = Registry("feature extractor", "tilewise.features.extractors")
register_extractor = EXTRACTORS.register
#: a target kind's own roofline bound, ``fn(candidates, target) -> seconds``, registered by the
#: module that models that kind (``cuda``: gpu_analytic); a kind without one has the CPU roofline
ROOFLINE_BOUNDS = Registry("roofline bound", {"cuda": "tilewise.features.gpu_analytic"}, name_attr=None)


class FeatureExtractor(ABC):
    name = ""

    @abstractmethod
    def names(self) -> list[str]:
        ...

    @abstractmethod
    def extract(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        ...


class Concat(FeatureExtractor):
    """Several extractors side by side; column names are prefixed with the extractor's name."""

    def __init__(self, parts: Sequence[FeatureExtractor]):
        self.parts = list(parts)
        self.name = ",".join(p.name for p in self.parts)

    def names(self) -> list[str]:
        return [f"{p.name}.{n}" for p in self.parts for n in p.names()]

    def extract(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        _BATCH.memo = {}          # parts may share work on this one batch (batch_memo), then it goes
        try:
            return np.concatenate([p.extract(candidates, target) for p in self.parts], axis=1)
        finally:
            _BATCH.memo = None


_BATCH = threading.local()


def batch_memo(name: str, compute):
    """``compute()``, shared by the parts of one :class:`Concat` extraction (``analytic`` and
    ``ceilings`` read the same view of the batch); outside a Concat it is simply called."""
    memo = getattr(_BATCH, "memo", None)
    if memo is None:
        return compute()
    if name not in memo:
        memo[name] = compute()
    return memo[name]


def create(spec: str) -> FeatureExtractor:
    """``"analytic"`` or ``"analytic,ir,target"``."""
    parts = [EXTRACTORS.get(name)() for name in [s.strip() for s in spec.split(",") if s.strip()]]
    if not parts:
        raise ValueError("no feature extractor named")
    return parts[0] if len(parts) == 1 else Concat(parts)
