"""``tilewise train`` and ``tilewise eval`` without the CLI framework: each returns the JSON
report (DESIGN.md's shape, see :mod:`tilewise.costmodel.training`) and a rich table of it.

Errors meant for the user are ``ValueError`` subclasses with a one-line message
(:class:`~tilewise.costmodel.fileformat.ModelFileError`, ``datasets.StoreError``, a bad split or
model name); the CLI prints them as ``error: ...`` and exits 2.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from rich.table import Table

from tilewise.costmodel.metrics import METRICS
from tilewise.costmodel.training import evaluate, train

_LABELS = {"r2": "R² (latency)", "mape": "MAPE", "spearman": "Spearman ρ", "kendall": "Kendall τ",
           "pairwise": "pairwise acc.", "top1": "top-1 score", "top5": "top-5 score"}
_HIGHER_IS_BETTER = {"r2", "spearman", "kendall", "pairwise", "top1", "top5"}


def train_command(db: str, model: str = "xgb", out: str | None = None, features: str = "analytic",
                  split: str = "workload", test_fraction: float = 0.2, seed: int = 0,
                  test_targets: Sequence[str] | None = None, few_shot: int = 0,
                  params: dict[str, Any] | None = None, records: Sequence | None = None,
                  scope: str = "") -> tuple[dict[str, Any], Table]:
    """``params``: the model's hyperparameters (``create(model, **params)``; unknown ones raise).
    ``records`` (with ``scope`` for the title, e.g. " (cuda records)"): train on these instead of
    the store's."""
    options: dict[str, Any] = {"seed": seed}
    if split == "target":
        options["test_targets"] = list(test_targets) if test_targets else None
        options["few_shot"] = few_shot
    else:
        options["test_fraction"] = test_fraction
    rep = train(db, model=model, features=features, out=out, split=split, params=params, records=records, **options)
    return rep, report_table(rep, (f"{model} on held-out workloads" if split == "workload"
                                   else f"{model} on held-out targets") + scope)


def eval_command(model_path: str, db: str, include_seen: bool = False) -> tuple[dict[str, Any], Table]:
    rep = evaluate(model_path, db, include_seen=include_seen)
    return rep, report_table(rep, f"{rep['model']} ({model_path}) on "
                             + ("all records" if include_seen else "workloads unseen in training"))


def _fmt(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def report_table(rep: dict[str, Any], title: str) -> Table:
    """Metric rows; a column for the model and one for the roofline baseline."""
    base = rep["baseline"]["metrics"]
    table = Table(title=title, caption=(
        f"features {rep['features']}; {rep['n_train_workloads']} training workloads, "
        f"{rep['n_test_workloads']} scored ({rep.get('n_test_records', '?')} records); split "
        + ", ".join(f"{k} {v}" for k, v in rep["split"].items())))
    table.add_column("metric")
    table.add_column(rep["model"], justify="right")
    table.add_column(rep["baseline"]["name"], justify="right")
    for k in METRICS:
        mine, theirs = rep["metrics"][k], base[k]
        better = (mine > theirs) if k in _HIGHER_IS_BETTER else (mine < theirs)
        cell = _fmt(mine)
        if not (math.isnan(mine) or math.isnan(theirs)) and better:
            cell = f"[bold green]{cell}[/]"
        table.add_row(_LABELS[k], cell, _fmt(theirs))
    return table
