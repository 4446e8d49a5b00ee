"""Shared plumbing of the trained models: features, the log-latency target, retained rows, files.

Every learned model takes ``margin_feature`` (default ``"log10_roofline_s"``): when the feature
extractor has that column -- log10 of an analytic time estimate in seconds -- the model learns
``log(median_s) - ln(10) * column`` (how far a kernel is off its roofline) and adds the column back
when it predicts.  With the ``ceilings`` features the default margin is their
``log10_measured_roofline_s`` (the bound of the target's measured ceilings), so the level carries
over to a CPU of other ceilings.  A ratio to the roofline carries over to shapes larger than any seen in training,
where trees cannot extrapolate a raw latency: on the 101-workload dataset it cut held-out MAPE of
xgb from 0.33 to 0.23 (5 splits), the ranking metrics unchanged.  Without the column (or with
``margin_feature=None``) the target is plain log(median_s).

A :class:`LearnedModel` subclass implements five array-level hooks (``_fit``, ``_update``,
``_predict_log``, ``_predict_log_std``, ``_payloads``/``_restore``); this class turns records into
arrays, keeps the newest ``max_retained_rows`` training rows (saved with the model, so a loaded
model can still ``update``), writes the header and refuses a file trained on other features.
"""
from __future__ import annotations

import math
import os
import time
from abc import abstractmethod
from typing import Any, Iterable, Sequence

import numpy as np

from tilewise.costmodel.base import CostModel
from tilewise.costmodel.data import TrainingSet, check_features, usable_records, workload_name
from tilewise.costmodel.fileformat import ModelFileError, npz_bytes, npz_load, write_model_file
from tilewise.core.record import Record
from tilewise.features import base as features_base
from tilewise.features.base import FeatureExtractor
from tilewise.core.candidate import Candidate
from tilewise.core.target import Target

TARGET = "log(median_s)"
#: the default margin where the features include ``ceilings`` (features/ceilings.py): the bound of
#: the target's measured ceilings instead of the nominal machine's (alone, or in a concatenation)
MEASURED_MARGINS = ("log10_measured_roofline_s", "ceilings.log10_measured_roofline_s")
_TRAIN_DATA = "train_data.safetensors"


class LearnedModel(CostModel):
    #: hyperparameters and their defaults; ``create(name, **params)`` accepts exactly these
    default_params: dict[str, Any] = {}
    #: parameters every learned model takes (module docstring)
    common_params: dict[str, Any] = {"margin_feature": "log10_roofline_s"}
    #: the distribution whose native format the payloads are in (recorded in the header)
    library = ""
    max_retained_rows = 50_000

    def __init__(self, features: str | FeatureExtractor = "analytic", **params):
        known = {**self.common_params, **self.default_params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"cost model {self.name!r} has no parameter {unknown[0]!r}: "
                             f"its parameters are {', '.join(sorted(known))}")
        if isinstance(features, str):
            self.extractor = features_base.create(features)
            self.features = features
        else:
            self.extractor, self.features = features, features.name
        self.feature_names = list(self.extractor.names())
        self.params = {**known, **params}
        col = self.params["margin_feature"]
        if col == self.common_params["margin_feature"]:     # the default: the measured ceilings' bound
            col = next((c for c in MEASURED_MARGINS if c in self.feature_names), col)
        self._margin_column = self.feature_names.index(col) if col in self.feature_names else None
        self._data: TrainingSet | None = None
        self.trained_on: dict[str, Any] = {"n_records": 0, "workloads": [], "targets": []}
        self.train_time_s = 0.0

    @property
    def fitted(self) -> bool:
        return self._data is not None

    # -- CostModel -------------------------------------------------------------------------------
    def fit(self, records: Iterable[Record]) -> "LearnedModel":
        records = usable_records(records)
        data = TrainingSet.from_records(records, self.extractor)
        if not len(data):
            raise ValueError(f"cannot fit {self.name!r}: no record with status 'ok' and a timing")
        start = time.perf_counter()
        self._fit(self._residual(data))
        self.train_time_s = time.perf_counter() - start
        self._data = data.tail(self.max_retained_rows)
        self.trained_on = {"n_records": 0, "workloads": [], "targets": []}
        self._note(records)
        return self

    def update(self, records: Iterable[Record]) -> "LearnedModel":
        if not self.fitted:
            return self.fit(records)
        records = usable_records(records)
        new = TrainingSet.from_records(records, self.extractor)
        if not len(new):
            return self
        merged = self._data.concat(new)
        self._update(self._residual(merged), self._residual(new))
        self._data = merged.tail(self.max_retained_rows)
        self._note(records)
        return self

    def predict(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        return self.predict_features(self._features(candidates, target))

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """``predict`` from rows the model's extractor already produced (a tuner that keeps
        features of its candidates scores them again without extracting)."""
        return np.exp(self._predict_log(X) + self._margin(X))

    def predict_with_uncertainty(self, candidates: Sequence[Candidate],
                                 target: Target) -> tuple[np.ndarray, np.ndarray]:
        return self.predict_features_with_uncertainty(self._features(candidates, target))

    def predict_features_with_uncertainty(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``predict_with_uncertainty`` from rows the model's extractor already produced."""
        mean_log, std_log = self._predict_log_std(X)
        return np.exp(mean_log + self._margin(X)), std_log

    def _margin(self, X: np.ndarray) -> np.ndarray:
        """ln of the analytic estimate the model predicts a ratio to (0 without one)."""
        if self._margin_column is None:
            return np.zeros(len(X))
        return X[:, self._margin_column].astype(np.float64) * math.log(10.0)

    def _residual(self, data: TrainingSet) -> TrainingSet:
        """``data`` with y = log(median_s) minus the margin: what the hooks fit."""
        if self._margin_column is None:
            return data
        return TrainingSet(data.X, data.y - self._margin(data.X), data.groups)

    def _features(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError(f"cost model {self.name!r} is not fitted: call fit(records) first")
        X = self.extractor.extract(list(candidates), target)
        return check_features(X, len(candidates), len(self.feature_names), self.extractor)

    def _note(self, records: list[Record]) -> None:
        t = self.trained_on
        t["n_records"] += len(records)
        t["workloads"] = sorted(set(t["workloads"]) | {workload_name(r) for r in records})
        t["targets"] = sorted(set(t["targets"]) | {r.target_key for r in records})

    # -- files -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        if not self.fitted:
            raise RuntimeError(f"cost model {self.name!r} is not fitted: nothing to save")
        header = {"model": self.name, "features": self.features, "feature_names": self.feature_names,
                  "target": TARGET, "params": self.params, "trained_on": self.trained_on,
                  "versions": _versions(self.library)}
        d = self._data
        payloads = dict(self._payloads())
        payloads[_TRAIN_DATA] = npz_bytes({"X": d.X, "y": d.y, "groups": d.groups})
        write_model_file(path, header, payloads)

    @classmethod
    def from_file(cls, header: dict[str, Any], payloads: dict[str, bytes], path: str) -> "LearnedModel":
        spec, names = header.get("features"), header.get("feature_names")
        if header.get("target") != TARGET or not isinstance(spec, str) or not isinstance(names, list):
            raise ModelFileError(f"{path}: the model header lacks its features or target: the file is damaged")
        try:
            model = cls(features=spec, **dict(header.get("params") or {}))
        except ValueError as e:
            raise ModelFileError(f"{path}: cannot rebuild the {cls.name!r} model: {e}") from None
        if model.feature_names != names:
            diff = _first_difference(names, model.feature_names)
            raise ModelFileError(
                f"{path}: the model was trained on features {spec!r} with {len(names)} columns, but this "
                f"tilewise's {spec!r} extractor has {len(model.feature_names)} ({diff}): retrain the model")
        try:
            arrays = npz_load(payloads[_TRAIN_DATA], f"{path}: {_TRAIN_DATA}")
            model._data = TrainingSet(arrays["X"], arrays["y"], arrays["groups"])
            model._restore(payloads)
        except ModelFileError:
            raise
        except Exception as e:      # a native loader's own error: the payloads do not fit together
            raise ModelFileError(f"{path}: cannot load the {cls.name!r} payload: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        model.trained_on = dict(header.get("trained_on") or {})
        return model

    # -- hooks -----------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, data: TrainingSet) -> None:
        """Train from scratch on ``data`` (y is log seconds minus the margin)."""

    def _update(self, merged: TrainingSet, new: TrainingSet) -> None:
        """Online step; the default refits on the retained rows plus the new ones."""
        self._fit(merged)

    @abstractmethod
    def _predict_log(self, X: np.ndarray) -> np.ndarray:
        """Predicted log(seconds) minus the margin, float64 (n,)."""

    @abstractmethod
    def _predict_log_std(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean_log, std_log)``; ``mean_log`` equals ``_predict_log(X)``."""

    @abstractmethod
    def _payloads(self) -> dict[str, bytes]:
        """Native payloads to save, by file name."""

    @abstractmethod
    def _restore(self, payloads: dict[str, bytes]) -> None:
        """Inverse of ``_payloads`` (checksums already verified)."""


def _versions(library: str) -> dict[str, str]:
    from importlib import metadata
    out = {}
    for dist in ("tilewise", library):
        if dist:
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "unknown"
    return out


def _first_difference(saved: list[str], now: list[str]) -> str:
    for i, (a, b) in enumerate(zip(saved, now)):
        if a != b:
            return f"column {i} was {a!r}, is {b!r}"
    return f"saved {len(saved)} columns, extracts {len(now)}"
