"""The cost-model stage: records in, a model that predicts the latency of unmeasured candidates.

Contract of :class:`CostModel` (every registered model passes ``tests/costmodel/test_models.py``):

* ``fit(records)`` trains from scratch on the records whose measurement status is ``ok`` (and whose
  median is positive and finite); other records are ignored, never an error.  The regression target
  is ``log(median_s)``: latencies span six decades, and a ratio error is what matters when ranking.
  Fitting on no usable record raises ``ValueError``.  Returns ``self``.
* ``update(records)`` is the online step a tuner calls after each measured batch: it keeps what the
  model learnt and adds the new records (boosted trees add trees, forests and networks refit or
  fine-tune on the retained training rows plus the new ones).  On an unfitted model it is ``fit``.
* ``predict(candidates, target)`` returns a float64 array of predicted latencies in **seconds**, one
  per candidate, same order.  Lower is better; the tuner only needs the order within a workload,
  the metrics also score the level.  Pure: it changes nothing.
* ``predict_with_uncertainty(candidates, target)`` returns ``(mean_s, std_log)``: ``mean_s`` as
  ``predict`` (the same values), ``std_log`` the standard deviation of the prediction **in natural-
  log space** (0.1 ~ "within 10 %"), from an ensemble's spread or a quantile pair; 0 where a model
  has no notion of it (roofline).
* ``save(path)`` writes one file (:mod:`tilewise.costmodel.fileformat`: a JSON header and native
  payloads, no pickle); :func:`load_model` reads it back into an equal model (same predictions) or
  raises :class:`ModelFileError` with one line: not a model file, damaged, another schema version,
  or trained on features this tilewise does not extract the same way.
* Thread safety: ``predict`` may run concurrently with itself; ``fit``/``update`` must not run
  concurrently with anything on the same model.  A model owns the arrays it keeps.

Models register by name (``@register_model("xgb")``) and are created with
``create("xgb", features="analytic", **params)``; unknown params raise ``ValueError``.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, Iterable, Sequence

import numpy as np

from tilewise.costmodel.fileformat import ModelFileError, read_model_file
from tilewise.core.record import Record
from tilewise.core.candidate import Candidate
from tilewise.core.registry import Registry
from tilewise.core.target import Target

__all__ = ["CostModel", "ModelFileError", "create", "load_model", "register_model", "available_models"]

#: built-in models -> module that registers them (imported on first use: no xgboost for roofline)
MODELS = Registry("cost model", {"xgb": "tilewise.costmodel.xgb", "rf": "tilewise.costmodel.sklearn_models",
                                 "gbm": "tilewise.costmodel.sklearn_models", "mlp": "tilewise.costmodel.mlp",
                                 "roofline": "tilewise.costmodel.roofline"})


class CostModel(ABC):
    """Predicts candidate latencies; see the module docstring for the contract."""

    name = ""
    #: the feature spec the model reads (``features.create`` syntax); ``"none"`` for roofline
    features = "none"

    @abstractmethod
    def fit(self, records: Iterable[Record]) -> "CostModel":
        """Train from scratch on the ``ok`` records."""

    @abstractmethod
    def update(self, records: Iterable[Record]) -> "CostModel":
        """Add ``records`` to what the model knows (online); ``fit`` if unfitted."""

    @abstractmethod
    def predict(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        """Predicted latency in seconds per candidate (float64, same order)."""

    def predict_with_uncertainty(self, candidates: Sequence[Candidate],
                                 target: Target) -> tuple[np.ndarray, np.ndarray]:
        """``(mean_s, std_log)``; the default knows no uncertainty (std 0)."""
        mean = self.predict(candidates, target)
        return mean, np.zeros_like(mean)

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the model to ``path`` (one file, replaced atomically)."""

    @classmethod
    def load(cls, path: str | os.PathLike, features: str | None = None) -> "CostModel":
        """:func:`load_model`, refusing a file that holds another kind of model."""
        model = load_model(path, features)
        if cls is not CostModel and not isinstance(model, cls):
            raise ModelFileError(f"{path} holds a {model.name!r} cost model, not {cls.name!r}")
        return model

    # -- what ``save`` writes and ``load_model`` dispatches on ----------------------------------
    @classmethod
    @abstractmethod
    def from_file(cls, header: dict[str, Any], payloads: dict[str, bytes], path: str) -> "CostModel":
        """Rebuild the model from a verified header and payloads (raise ModelFileError)."""


register_model = MODELS.register
available_models = MODELS.names


def create(name: str, features: str = "analytic", **params) -> CostModel:
    """A new, unfitted model: ``create("xgb", features="analytic", n_estimators=200)``."""
    return MODELS.get(name)(features=features, **params)


def load_model(path: str | os.PathLike, features: str | None = None) -> CostModel:
    """The model saved at ``path``, whatever its kind (dispatch on the header's ``model``).

    ``features``, when given, is the spec the caller will feed; a model trained on another one is
    refused.  Every failure is a :class:`ModelFileError` with a one-line message."""
    path = os.fspath(path)
    header, payloads = read_model_file(path)
    name = header.get("model")
    cls = MODELS.find(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(f"{path}: unknown cost model kind {name!r} (this tilewise has "
                             f"{', '.join(available_models())})")
    if features is not None and header.get("features") != features:
        raise ModelFileError(f"{path}: the model was trained on features {header.get('features')!r}, "
                             f"not {features!r}: retrain it with --features {features}")
    return cls.from_file(header, payloads, path)
