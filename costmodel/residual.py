"""A pretrained cost model corrected for one workload: small boosted trees on its log residuals.

A model trained on thousands of records of other workloads barely moves when a tuning session's
handful of rows is added to it (``update``: 8 new rows among ~2900).  :class:`ResidualCorrection`
instead fits a small *correction* on this workload's measurements: 30 boosted trees of depth 3 on
``log(measured / pretrained prediction)`` over the model's own features, multiplied into every
prediction (TenSet-style fine-tuning on the target workload, ~20 ms per fit).  The pretrained
model is never changed.  ``fit`` refits from scratch on everything measured so far; until the
first ``fit`` there is no correction (``fitted`` is False) and the caller ranks by the model alone.

This is an adapter module: xgboost is imported at the first ``fit``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tilewise.core.candidate import Candidate
from tilewise.core.record import Record
from tilewise.core.target import Target
from tilewise.costmodel.base import CostModel
from tilewise.features.base import create as create_features

ROUNDS = 30          # trees of the correction (on 8-64 points: depth 3, eta 0.2)
PARAMS = {"objective": "reg:squarederror", "max_depth": 3, "eta": 0.2, "min_child_weight": 2.0,
          "lambda": 1.0, "subsample": 1.0, "nthread": 1, "verbosity": 0, "seed": 0}


class ResidualCorrection:
    """``model``'s predictions times a booster fitted on its log residuals (module docstring).
    Features are the model's extractor's (analytic ones for a model without an extractor)."""

    def __init__(self, model: CostModel):
        self.model = model
        self.extractor = getattr(model, "extractor", None) or create_features("analytic")
        # one extraction serves both the model and the correction when they read the same rows
        self._shares_features = (self.extractor is getattr(model, "extractor", None)
                                 and hasattr(model, "predict_features_with_uncertainty"))
        self._booster = None

    @property
    def fitted(self) -> bool:
        return self._booster is not None

    def fit(self, records: Sequence[Record], target: Target) -> None:
        """Refit the correction on ``records`` (ok measurements of one workload on ``target``)."""
        import xgboost as xgb
        cands = [Candidate(r.workload, r.schedule) for r in records]
        X = self.extractor.extract(cands, target)
        base = np.log(self._model_prediction(cands, X, target)[0])
        resid = np.log([r.measurement.median_s for r in records]) - base
        self._booster = xgb.train(PARAMS, xgb.DMatrix(X, label=resid), ROUNDS)

    def predict_with_uncertainty(self, cands: Sequence[Candidate], target: Target) -> tuple[np.ndarray, np.ndarray]:
        """``(latency_s, std_log)``: the model's, its mean times the correction (fitted only)."""
        X = self.extractor.extract(list(cands), target)
        mean, std = self._model_prediction(cands, X, target)
        return mean * np.exp(self._booster.inplace_predict(X).astype(np.float64)), std

    def _model_prediction(self, cands: Sequence[Candidate], X: np.ndarray,
                          target: Target) -> tuple[np.ndarray, np.ndarray]:
        """The model's ``(latency_s, std_log)``; from the rows ``X`` already extracted for the
        correction when the model reads the same features (one extraction, not two)."""
        if self._shares_features:
            mean, std = self.model.predict_features_with_uncertainty(X)
        else:
            mean, std = self.model.predict_with_uncertainty(cands, target)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
