"""Can I trust the model?  A cost model scored on the store's own measurements, per target.

Predicted vs measured latency of every ok record (up to ``max_records``, an even sample beyond),
TenSet's metrics (:mod:`tilewise.costmodel.metrics`: R², Spearman per workload, top-k), the
roofline baseline's metrics on the same records, and the model's feature importances when it has
them.  Records of workloads the model was trained on are flagged: scores on them flatter it.

The cost model is imported here, not at module level: ``profiling`` sits below ``costmodel`` in the
dependency order, and a report without ``--model`` work must not pay for xgboost.
"""
from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np

from tilewise.core.record import Record

MAX_POINTS = 2000


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def load(path: str | os.PathLike | None):
    """The model at ``path`` (default: the embedded one) and the path used."""
    from tilewise.costmodel.base import load_model
    if path is None:
        from tilewise.costmodel.embedded import EMBEDDED_MODEL
        path = EMBEDDED_MODEL
    return load_model(path), os.fspath(path)


def evaluate(model, model_path: str, records: Sequence[Record], *, max_records: int = 5000) -> dict[str, Any] | None:
    """The ``cost_model`` section of one target (data.py's docstring), or None without ok records."""
    from tilewise.costmodel import metrics as M
    from tilewise.costmodel.base import create
    from tilewise.costmodel.data import group_names, usable_records
    from tilewise.costmodel.training import predict_records
    rs = usable_records(records)
    if len(rs) > max_records:
        rs = [rs[i] for i in np.linspace(0, len(rs) - 1, max_records).astype(int)]
    if not rs:
        return None
    true_s = np.array([r.measurement.median_s for r in rs])
    groups = group_names(rs)
    pred_s = predict_records(model, rs)
    metrics = {k: _finite(v) for k, v in M.all_metrics(true_s, pred_s, groups).items()}
    base = {k: _finite(v) for k, v in M.all_metrics(true_s, predict_records(create("roofline"), rs), groups).items()}
    seen = set(getattr(model, "trained_on", {}).get("workloads", ()) or ())
    importances = []
    if callable(getattr(model, "feature_importances", None)):
        importances = [[k, float(v)] for k, v in list(model.feature_importances().items())[:15]]
    step = max(1, len(rs) // MAX_POINTS)
    points = [[float(true_s[i]), float(pred_s[i]), str(rs[i].workload), str(rs[i].workload) in seen]
              for i in range(0, len(rs), step)]
    return {"model": getattr(model, "name", "?"), "features": getattr(model, "features", ""), "path": model_path,
            "n_records": len(rs), "n_workloads": len(set(groups)),
            "n_seen_workloads": len({str(r.workload) for r in rs} & seen),
            "metrics": metrics, "baseline": {"name": "roofline", "metrics": base},
            "log_r2": _finite(M.r2(np.log(true_s), np.log(pred_s))),
            "importances": importances, "points": points}
