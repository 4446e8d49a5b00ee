"""Records -> training arrays: which records train a model, their features, targets and groups.

A *group* is one workload on one target: latencies are comparable (rankable) only inside it, so
the ranking metrics and the ranking objective work per group.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from tilewise.core.record import Record
from tilewise.features.base import FeatureExtractor
from tilewise.core.candidate import Candidate
from tilewise.core.target import Target


def usable(record: Record) -> bool:
    """A record a regressor may learn from: status ``ok`` with a positive, finite median."""
    m = record.measurement
    return m.status == "ok" and bool(m.times_s) and 0.0 < m.median_s < math.inf


def usable_records(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if usable(r)]


def workload_name(record: Record) -> str:
    """The canonical workload string: what splits and "seen in training" go by."""
    return str(record.workload)


class _TargetKeys:
    """``Target.key()`` hashes JSON; memoise it per target value for a batch of records."""

    def __init__(self):
        self._keys: dict[Target, str] = {}

    def __call__(self, t: Target) -> str:
        if t not in self._keys:
            self._keys[t] = t.key()
        return self._keys[t]


def group_names(records: Sequence[Record]) -> list[str]:
    """``"WORKLOAD@TARGETKEY12"`` per record."""
    key = _TargetKeys()
    return [f"{r.workload}@{key(r.target)[:12]}" for r in records]


def group_codes(names: Sequence[str]) -> np.ndarray:
    """Dense int64 codes, in order of first appearance."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(n, len(codes)) for n in names], dtype=np.int64)


def featurize(records: Sequence[Record], extractor: FeatureExtractor) -> np.ndarray:
    """Feature rows for ``records`` (one extractor call per target), float32 ``(n, d)``."""
    d = len(extractor.names())
    X = np.zeros((len(records), d), dtype=np.float32)
    by_target: dict[Target, list[int]] = {}
    for i, r in enumerate(records):
        by_target.setdefault(r.target, []).append(i)
    for target, rows in by_target.items():
        cands = [Candidate(records[i].workload, records[i].schedule) for i in rows]
        X[rows] = check_features(extractor.extract(cands, target), len(rows), d, extractor)
    return X


def check_features(X: np.ndarray, n: int, d: int, extractor: FeatureExtractor) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.shape != (n, d):
        raise ValueError(f"feature extractor {extractor.name!r} returned shape {X.shape}, expected ({n}, {d})")
    return X


@dataclass
class TrainingSet:
    """Rows a model trains on: ``X`` float32 (n, d), ``y`` = log(median_s), ``groups`` int64 codes."""
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def from_records(cls, records: Iterable[Record], extractor: FeatureExtractor) -> "TrainingSet":
        rs = usable_records(records)
        X = featurize(rs, extractor)
        y = np.log(np.array([r.measurement.median_s for r in rs], dtype=np.float64))
        return cls(X, y, group_codes(group_names(rs)))

    def concat(self, other: "TrainingSet") -> "TrainingSet":
        """Both sets; ``other``'s group codes are shifted so they never collide with ours."""
        shift = int(self.groups.max()) + 1 if len(self) else 0
        return TrainingSet(np.concatenate([self.X, other.X]), np.concatenate([self.y, other.y]),
                           np.concatenate([self.groups, other.groups + shift]))

    def tail(self, n: int) -> "TrainingSet":
        """The last ``n`` rows (the newest), what a model retains for later updates."""
        if len(self) <= n:
            return self
        return TrainingSet(self.X[-n:], self.y[-n:], self.groups[-n:])
