"""Offline training and evaluation on a record store: what ``tilewise train`` and ``eval`` run.

Both return a report in the DESIGN.md shape::

    {"model", "features", "split", "n_train_workloads", "n_test_workloads",
     "metrics": {"r2", "mape", "spearman", "kendall", "pairwise", "top1", "top5"},
     "baseline": {"name": "roofline", "metrics": {...}},
     "n_train_records", "n_test_records", "train_time_s", "out"}

``split`` is a dict: ``{"by": "workload", "test_fraction": 0.2, "seed": 0}`` for ``train``,
``{"by": "unseen-workloads"}`` for ``eval`` (the store's records of workloads the model was not
trained on; ``{"by": "all"}`` when asked to score every record).  Metrics are of ``ok`` records
only; the baseline is the roofline scored on the same records.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Iterable, Sequence

import numpy as np

from tilewise.costmodel import metrics as M
from tilewise.costmodel.base import CostModel, create, load_model
from tilewise.costmodel.data import group_names, usable_records, workload_name
from tilewise.costmodel.split import Split, split_records
from tilewise.core.record import Record
from tilewise.core.candidate import Candidate


#: ``--db embedded`` (the default of train/eval): the dataset shipped in ``datasets/data``
EMBEDDED = "embedded"
#: ``--db embedded:all``: every shipped dataset file pooled, each record with its own CPU's target
EMBEDDED_ALL = "embedded:all"


def load_records(store_path: str | os.PathLike | None) -> list[Record]:
    from tilewise.datasets.base import StoreError, open_store
    if store_path is None or os.fspath(store_path) == EMBEDDED:
        from tilewise.datasets.embedded import embedded_records
        return list(embedded_records())
    if os.fspath(store_path) == EMBEDDED_ALL:
        from tilewise.datasets.embedded import SHIPPED_DATASETS, embedded_records
        return [r for path in SHIPPED_DATASETS for r in embedded_records(path)]
    if "://" not in os.fspath(store_path) and not os.path.exists(store_path):
        raise StoreError(f"no record store at {store_path}")
    with open_store(store_path) as store:
        return list(store.iter())


def predict_records(model: CostModel, records: Sequence[Record]) -> np.ndarray:
    """The model's predicted latency for each record's candidate (one call per target)."""
    out = np.empty(len(records), dtype=np.float64)
    by_target: dict[Any, list[int]] = {}
    for i, r in enumerate(records):
        by_target.setdefault(r.target, []).append(i)
    for target, rows in by_target.items():
        out[rows] = model.predict([Candidate(records[i].workload, records[i].schedule) for i in rows], target)
    return out


def score(model: CostModel, records: Iterable[Record]) -> dict[str, float]:
    """:func:`metrics.all_metrics` of ``model`` on the ``ok`` records."""
    rs = usable_records(records)
    if not rs:
        return {k: math.nan for k in M.METRICS}
    true_s = np.array([r.measurement.median_s for r in rs])
    return M.all_metrics(true_s, predict_records(model, rs), group_names(rs))


def report(model: CostModel, split: dict[str, Any], train_workloads: set[str], test: Sequence[Record],
           **extra) -> dict[str, Any]:
    test_ok = usable_records(test)
    return {"model": model.name, "features": model.features, "split": split,
            "n_train_workloads": len(train_workloads),
            "n_test_workloads": len({workload_name(r) for r in test_ok}),
            "metrics": score(model, test_ok),
            "baseline": {"name": "roofline", "metrics": score(create("roofline"), test_ok)},
            "n_train_records": int(model.trained_on.get("n_records", 0)),
            "n_test_records": len(test_ok), **extra}


def train(store_path: str | os.PathLike | None = None, model: str = "xgb", features: str = "analytic",
          out: str | os.PathLike | None = None, split: str = "workload", records: Sequence[Record] | None = None,
          params: dict[str, Any] | None = None, **split_options) -> dict[str, Any]:
    """Split the store's records (``split_options``: ``test_fraction``, ``seed``, or for a split
    by target ``test_targets`` and ``few_shot``), fit ``model`` on the training side, score the held-out side,
    save the model to ``out`` (when given) and return the report.  ``records`` replaces the store."""
    if records is None:
        records = load_records(store_path)
    s: Split = split_records(records, split, **split_options)
    if not usable_records(s.train):
        raise ValueError(f"no record with status 'ok' to train on ({len(s.train)} records in the training split)")
    m = create(model, features=features, **(params or {}))
    start = time.perf_counter()
    m.fit(s.train)
    train_time_s = time.perf_counter() - start
    if out is not None:
        m.save(out)
    return report(m, s.describe(), s.train_workloads, s.test, train_time_s=train_time_s,
                  out=os.fspath(out) if out is not None else None)


def evaluate(model_path: str | os.PathLike, store_path: str | os.PathLike | None = None,
             records: Sequence[Record] | None = None, include_seen: bool = False) -> dict[str, Any]:
    """Score the model saved at ``model_path`` on the store's records of workloads it was not
    trained on (all records with ``include_seen``)."""
    m = load_model(model_path)
    if records is None:
        records = load_records(store_path)
    seen = set(m.trained_on.get("workloads", []))
    test = list(records) if include_seen else [r for r in records if workload_name(r) not in seen]
    return report(m, {"by": "all" if include_seen else "unseen-workloads"}, seen, test)
