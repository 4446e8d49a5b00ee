"""Cost-model metrics, as TenSet (Zheng et al., NeurIPS 2021) defines them.

All take true and predicted latencies in seconds; the ranking metrics also take ``groups`` (one
label per row: the workload on its target) because latencies are only comparable within one.

``r2``        coefficient of determination on latency (seconds, not log): 1 - SS_res / SS_tot.
``mape``      mean of |pred - true| / true.
``spearman``  Spearman's rho between true and predicted latency within each group, averaged over
              groups.  ``kendall``: the same with Kendall's tau-b.
``pairwise``  within each group, over the pairs whose true latencies differ, the fraction the
              model orders like the truth (a tie in the prediction counts one half); averaged.
``top_k``     within each group, best true latency / best true latency among the k candidates the
              model predicts fastest (1 = the model's top-k holds the best); averaged.

Groups with fewer than two rows, or (for the rank correlations and ``pairwise``) whose true
latencies are all equal, carry no ranking information and are skipped; a model that predicts the
same latency for every candidate of a group scores 0 correlation there (scipy says NaN).  A
metric with no group to average is NaN.
"""
from __future__ import annotations

import math
from typing import Callable, Hashable, Sequence

import numpy as np

METRICS = ("r2", "mape", "spearman", "kendall", "pairwise", "top1", "top5")


def _arrays(true_s, pred_s) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(true_s, dtype=np.float64), np.asarray(pred_s, dtype=np.float64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"true and predicted latencies must be 1-d arrays of one length, got {t.shape} and {p.shape}")
    return t, p


def r2(true_s, pred_s) -> float:
    t, p = _arrays(true_s, pred_s)
    ss_tot = float(np.sum((t - t.mean()) ** 2)) if len(t) else 0.0
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def mape(true_s, pred_s) -> float:
    t, p = _arrays(true_s, pred_s)
    return float(np.mean(np.abs(p - t) / t)) if len(t) else math.nan


def group_indices(groups: Sequence[Hashable]) -> list[np.ndarray]:
    """Row indices of each group with at least two rows, in order of first appearance."""
    rows: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        rows.setdefault(g, []).append(i)
    return [np.array(ix) for ix in rows.values() if len(ix) >= 2]


def _per_group(true_s, pred_s, groups, score: Callable[[np.ndarray, np.ndarray], float],
               need_spread: bool) -> float:
    t, p = _arrays(true_s, pred_s)
    if len(groups) != len(t):
        raise ValueError(f"{len(groups)} group labels for {len(t)} rows")
    values = []
    for ix in group_indices(groups):
        gt, gp = t[ix], p[ix]
        if need_spread and np.all(gt == gt[0]):
            continue
        values.append(score(gt, gp))
    return float(np.mean(values)) if values else math.nan


def _correlation(fn) -> Callable[[np.ndarray, np.ndarray], float]:
    def score(t: np.ndarray, p: np.ndarray) -> float:
        if np.all(p == p[0]):
            return 0.0
        return float(fn(t, p).statistic)
    return score


def spearman(true_s, pred_s, groups) -> float:
    from scipy.stats import spearmanr
    return _per_group(true_s, pred_s, groups, _correlation(spearmanr), need_spread=True)


def kendall(true_s, pred_s, groups) -> float:
    from scipy.stats import kendalltau
    return _per_group(true_s, pred_s, groups, _correlation(kendalltau), need_spread=True)


def _pairwise_one(t: np.ndarray, p: np.ndarray) -> float:
    dt = np.sign(t[:, None] - t[None, :])
    dp = np.sign(p[:, None] - p[None, :])
    upper = np.triu(np.ones_like(dt, dtype=bool), k=1) & (dt != 0)
    credit = np.where(dp == dt, 1.0, np.where(dp == 0, 0.5, 0.0))
    return float(credit[upper].mean())


def pairwise(true_s, pred_s, groups) -> float:
    return _per_group(true_s, pred_s, groups, _pairwise_one, need_spread=True)


def top_k(true_s, pred_s, groups, k: int) -> float:
    """Ties in the prediction go to the earlier row (a stable sort)."""
    if k < 1:
        raise ValueError("k must be >= 1")

    def score(t: np.ndarray, p: np.ndarray) -> float:
        picks = np.argsort(p, kind="stable")[:k]
        return float(t.min() / t[picks].min())
    return _per_group(true_s, pred_s, groups, score, need_spread=False)


def all_metrics(true_s, pred_s, groups) -> dict[str, float]:
    """Every metric of :data:`METRICS`, by name."""
    return {"r2": r2(true_s, pred_s), "mape": mape(true_s, pred_s),
            "spearman": spearman(true_s, pred_s, groups), "kendall": kendall(true_s, pred_s, groups),
            "pairwise": pairwise(true_s, pred_s, groups),
            "top1": top_k(true_s, pred_s, groups, 1), "top5": top_k(true_s, pred_s, groups, 5)}
