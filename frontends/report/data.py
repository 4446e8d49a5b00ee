"""Gather what the profile report shows from a record store: one plain-JSON dict.

The dict is the report's single source: the HTML and Markdown writers and ``tilewise report --json``
all read it, so every number on a chart is also in the JSON.  Shape (``schema_version`` 1)::

    {"schema_version", "generated", "store", "n_records", "n_runs",
     "targets": [{"key", "name", "description", "local", "n_records", "n_runs",
                  "roofline": Roofline.to_json() | None,
                  "workloads": [{"workload", "op", "threads", "flops", "bytes", "intensity",
                                 "n_records", "statuses", "strategies",
                                 "best": {"latency_s", "gflops", "schedule", "rel_error", "source"},
                                 "default": {...} | None, "reference": {"name", ...} | None,
                                 "speedup_vs_default", "ratio_vs_reference"}],
                  "curves": [{"workload", "strategy", "label", "threads", "best_gflops": [...],
                              "trial_gflops": [...]}],
                  "precision": [{"workload", "points": [{"precision", "latency_s", "gflops",
                                                         "rel_error", "pareto"}]}],
                  "cost_model": {...} | None}],                  (see model_quality.py)
     "model_trace": {...} | None}                                (see trace.py)

``best`` comes from the latest run's interleaved A/B timing when the store holds a run log for the
workload ("source": "ab"), else from the fastest ok record ("source": "record", no default or
reference then: only a tuning run times those).
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from tilewise.core.record import Record
from tilewise.datasets.runs import RunTiming, TuningRun
from tilewise.core.workload import Workload
from tilewise.core.target import Target

SCHEMA_VERSION = 1
UNATTRIBUTED = "records (no run log)"


#: GPU precisions (Triton schedules, ``--target cuda``) -> the dtype whose element size they store
_GPU_STORAGE = {"tf32": "f32", "f8e4m3": "i8"}


def workload_bytes(w: Workload, precision: str | None = None) -> float:
    """Compulsory traffic: every operand read once, every output written once."""
    p = precision or w.dtype
    return float(w.kind.buffer_bytes(w, _GPU_STORAGE.get(p, p)))


def _gflops(w: Workload, seconds: float | None) -> float | None:
    if seconds is None or not seconds > 0 or math.isinf(seconds):
        return None
    return w.flops / seconds / 1e9


def _precision(w: Workload, schedule: dict | Any) -> str:
    p = schedule.get("precision") if schedule is not None else None
    return str(p or w.dtype)


@dataclass
class _Group:
    """Records and runs of one workload on one target."""
    workload: Workload
    records: list[Record]
    runs: list[TuningRun]


def gather(records: Iterable[Record], runs: Iterable[TuningRun], *, store: str = "",
           local_target: Target | None = None) -> dict[str, Any]:
    """The report dict (module docstring) of ``records`` and ``runs``, without roofline, cost
    model or model trace (:func:`tilewise.frontends.report.build` adds those)."""
    targets: dict[str, Target] = {}
    groups: dict[str, OrderedDict[str, _Group]] = defaultdict(OrderedDict)
    n_records = 0
    for r in records:
        n_records += 1
        tk = r.target_key
        targets.setdefault(tk, r.target)
        g = groups[tk].setdefault(str(r.workload), _Group(r.workload, [], []))
        g.records.append(r)
    runs = list(runs)
    for run in runs:
        tk = run.target.key()
        targets.setdefault(tk, run.target)
        g = groups[tk].setdefault(str(run.workload), _Group(run.workload, [], []))
        g.runs.append(run)
    local_key = local_target.key() if local_target is not None else None
    out = []
    for tk, target in sorted(targets.items(), key=lambda kv: (kv[0] != local_key, kv[1].name)):
        gs = list(groups[tk].values())
        out.append({"key": tk, "name": target.name, "description": target.describe(),
                    "local": tk == local_key, "cores": target.cores,
                    "n_records": sum(len(g.records) for g in gs), "n_runs": sum(len(g.runs) for g in gs),
                    "roofline": None, "cost_model": None,
                    "workloads": [row for g in gs for row in _workload_rows(g)],
                    "curves": [c for g in gs for c in _curves(g)],
                    "precision": [p for g in gs if (p := _precision_points(g)) is not None]})
    return {"schema_version": SCHEMA_VERSION, "generated": time.time(), "store": store,
            "n_records": n_records, "n_runs": len(runs), "targets": out, "model_trace": None}


def _timing(w: Workload, t: RunTiming | None) -> dict[str, Any] | None:
    if t is None or not t.times_s:
        return None
    return {"name": t.name, "latency_s": t.median_s, "gflops": _gflops(w, t.median_s),
            "schedule": t.schedule, "rel_error": t.rel_error, "runs": len(t.times_s)}


def _workload_rows(g: _Group) -> list[dict[str, Any]]:
    """One row per thread cap a run used (the reference ran with that many threads), or one row
    from the records when no run logged this workload."""
    w = g.workload
    statuses: dict[str, int] = defaultdict(int)
    for r in g.records:
        statuses[r.measurement.status] += 1
    ok = [r for r in g.records if r.measurement.ok and r.measurement.times_s]
    base = {"workload": str(w), "op": w.op, "flops": w.flops, "n_records": len(g.records),
            "statuses": dict(statuses),
            "strategies": sorted({run.strategy for run in g.runs if run.searched and run.trials})}
    latest: OrderedDict[int, TuningRun] = OrderedDict()
    for run in sorted(g.runs, key=lambda r: r.finished):
        if run.best is not None:
            latest[run.max_threads] = run
    rows = []
    for threads, run in sorted(latest.items()):
        best = _timing(w, run.best)
        best["source"] = "ab"
        default, reference = _timing(w, run.default), _timing(w, run.reference)
        rows.append(_row(base, w, threads, best, default, reference))
    if not rows and ok:
        best = _from_record(w, min(ok, key=lambda r: r.measurement.median_s), "best")
        rows.append(_row(base, w, int(best["schedule"].get("threads", 1)), best, _default_record(g, ok), None))
    return rows


def _from_record(w: Workload, r: Record, name: str) -> dict[str, Any]:
    return {"name": name, "latency_s": r.measurement.median_s, "gflops": _gflops(w, r.measurement.median_s),
            "schedule": r.schedule.to_json(), "rel_error": r.measurement.rel_error,
            "runs": len(r.measurement.times_s), "source": "record"}


def _default_record(g: _Group, ok: list[Record]) -> dict[str, Any] | None:
    """The default schedule's own record, when one was measured (e.g. by ``collect``)."""
    try:
        key = g.workload.kind.default_schedule(g.workload, ok[0].target).key()
    except Exception:               # a workload whose default needs what this target lacks
        return None
    mine = [r for r in ok if r.schedule_key == key]
    return _from_record(g.workload, mine[0], "default") if mine else None


def _row(base, w, threads, best, default, reference) -> dict[str, Any]:
    nbytes = workload_bytes(w, _precision(w, best["schedule"]))
    return {**base, "threads": threads, "bytes": nbytes, "intensity": w.flops / nbytes,
            "best": best, "default": default, "reference": reference,
            "speedup_vs_default": default["latency_s"] / best["latency_s"] if default else None,
            "ratio_vs_reference": reference["latency_s"] / best["latency_s"] if reference else None}


def _best_so_far(gflops: list[float | None]) -> list[float | None]:
    out, best = [], None
    for g in gflops:
        if g is not None and (best is None or g > best):
            best = g
        out.append(best)
    return out


def _curves(g: _Group) -> list[dict[str, Any]]:
    """Best-so-far GFLOP/s vs measurements: one curve per searching run, in trial order, and one
    for the records no run log accounts for (e.g. written by ``collect``), in insertion order."""
    w = g.workload
    curves, seen = [], set()
    count: dict[str, int] = defaultdict(int)
    for run in sorted(g.runs, key=lambda r: r.started):
        if not run.trials:
            continue
        count[run.strategy] += 1
        trial = [_gflops(w, t.median_s) if t.status == "ok" else None for t in run.trials]
        seen.update(t.schedule_key for t in run.trials)
        label = f"{run.strategy or 'unknown'} #{count[run.strategy]}" + (
            f" (warm start, {run.config['prior_records']} prior)" if run.config.get("prior_records") else "")
        curves.append({"workload": str(w), "strategy": run.strategy or "unknown", "label": label,
                       "threads": run.max_threads, "started": run.started,
                       "trial_gflops": trial, "best_gflops": _best_so_far(trial)})
    rest = [r for r in g.records if r.schedule_key not in seen]
    if rest and len(rest) >= 2:
        trial = [_gflops(w, r.measurement.median_s) if r.measurement.ok and r.measurement.times_s else None
                 for r in rest]
        curves.append({"workload": str(w), "strategy": UNATTRIBUTED, "label": UNATTRIBUTED,
                       "threads": None, "started": rest[0].timestamp,
                       "trial_gflops": trial, "best_gflops": _best_so_far(trial)})
    return curves


def _precision_points(g: _Group) -> dict[str, Any] | None:
    """Latency vs error of every ok record, when more than one precision was measured."""
    w = g.workload
    ok = [r for r in g.records if r.measurement.ok and r.measurement.times_s and r.measurement.rel_error is not None]
    if len({_precision(w, r.schedule) for r in ok}) < 2:
        return None
    points = sorted(({"precision": _precision(w, r.schedule), "latency_s": r.measurement.median_s,
                      "gflops": _gflops(w, r.measurement.median_s), "rel_error": r.measurement.rel_error,
                      "schedule": r.schedule.to_json(), "pareto": False} for r in ok),
                    key=lambda p: (p["latency_s"], p["rel_error"]))
    lowest = math.inf
    for p in points:                 # fastest first: a point is on the front if no faster one is as accurate
        if p["rel_error"] < lowest:
            p["pareto"], lowest = True, p["rel_error"]
    by_precision: dict[str, dict[str, Any]] = {}
    for p in points:
        s = by_precision.setdefault(p["precision"], {"precision": p["precision"], "n": 0, "best_latency_s": p["latency_s"],
                                                       "best_gflops": p["gflops"], "min_rel_error": p["rel_error"]})
        s["n"] += 1
        s["min_rel_error"] = min(s["min_rel_error"], p["rel_error"])
    return {"workload": str(w), "points": points, "summary": list(by_precision.values())}
