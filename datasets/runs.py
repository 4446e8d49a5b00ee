"""Tuning runs: what one ``tune`` call did, beside the records of the trials it measured.

A record says what one schedule measured; it does not say which strategy proposed it, in which
order, nor how the untuned default schedule and the library baseline did in the run's final
interleaved (A/B) timing.  The profile report needs all three (tuning curves per strategy, the
best-vs-default-vs-reference bars), so ``tune`` appends one :class:`TuningRun` per call to stores
that keep them (:meth:`RecordStore.append_run`; SQLite: a side table, see ``sqlite_store``).

Persisted as JSON with a ``schema_version``, like records.  A store without runs (written by an
older tilewise, or by ``collect``) still reports: its records then make an unattributed curve.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tilewise.core.record import parse_errors, require_schema
from tilewise.core.workload import Workload
from tilewise.core.target import Target


class RunError(ValueError):
    """A tuning-run JSON this tilewise cannot read."""


@dataclass(frozen=True)
class RunTiming:
    """One kernel of the final A/B timing: ``best``, ``default`` or the library ``reference``."""
    name: str                                   # "best", "default", or the baseline's ("numpy")
    times_s: tuple[float, ...]
    schedule: dict[str, Any] | None = None      # Schedule.to_json(); None for the reference
    rel_error: float | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s) if self.times_s else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "times_s": list(self.times_s), "schedule": self.schedule,
                "rel_error": self.rel_error}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "RunTiming | None":
        if d is None:
            return None
        return cls(str(d["name"]), tuple(float(t) for t in d["times_s"]), d.get("schedule"), d.get("rel_error"))


@dataclass(frozen=True)
class TrialEntry:
    """One measured trial, in the order the run measured it (the records hold the detail)."""
    schedule_key: str
    status: str
    median_s: float | None
    rel_error: float | None = None
    precision: str | None = None

    def to_json(self) -> list:
        return [self.schedule_key, self.status, self.median_s, self.rel_error, self.precision]

    @classmethod
    def from_json(cls, row: list) -> "TrialEntry":
        return cls(*row)


@dataclass(frozen=True)
class TuningRun:
    workload: Workload
    target: Target
    strategy: str
    started: float                              # unix seconds
    finished: float
    searched: bool                              # False: answered from the store, no trial
    config: dict[str, Any] = field(default_factory=dict)   # trials, max_threads, max_rel_error, objectives, seed
    trials: tuple[TrialEntry, ...] = ()
    best: RunTiming | None = None
    default: RunTiming | None = None
    reference: RunTiming | None = None
    schema_version: ClassVar[int] = 1

    @property
    def max_threads(self) -> int:
        return int(self.config.get("max_threads", 1))

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "workload": self.workload.to_json(),
                "target": self.target.to_json(), "strategy": self.strategy, "started": self.started,
                "finished": self.finished, "searched": self.searched, "config": self.config,
                "trials": [t.to_json() for t in self.trials],
                "best": self.best.to_json() if self.best else None,
                "default": self.default.to_json() if self.default else None,
                "reference": self.reference.to_json() if self.reference else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TuningRun":
        require_schema(d, cls.schema_version, RunError, "tuning run")
        with parse_errors(RunError, "tuning run"):
            return cls(workload=Workload.from_json(d["workload"]), target=Target.from_json(d["target"]),
                       strategy=str(d["strategy"]), started=float(d["started"]), finished=float(d["finished"]),
                       searched=bool(d["searched"]), config=dict(d.get("config") or {}),
                       trials=tuple(TrialEntry.from_json(t) for t in d.get("trials", ())),
                       best=RunTiming.from_json(d.get("best")), default=RunTiming.from_json(d.get("default")),
                       reference=RunTiming.from_json(d.get("reference")))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> "TuningRun":
        return cls.from_json(json.loads(text))
