"""Measurements: what timing one candidate gave, as data (a failure is a status, never a crash).

``status`` is one of :data:`STATUSES`; ``times_s`` holds every timed run (medians and quantiles are
derived, never stored alone: one noisy timing is never the answer).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

STATUSES = ("ok", "compile_error", "runtime_error", "timeout", "wrong_result", "invalid")


@dataclass(frozen=True)
class Measurement:
    status: str
    error_msg: str = ""
    times_s: tuple[float, ...] = ()
    rel_error: float | None = None
    compile_time_s: float = 0.0
    schema_version: int = field(default=1, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s) if self.times_s else float("inf")

    @property
    def min_s(self) -> float:
        return min(self.times_s) if self.times_s else float("inf")

    def quantiles_s(self) -> tuple[float, float]:
        if len(self.times_s) < 4:
            return self.min_s, self.median_s
        q = statistics.quantiles(self.times_s, n=4)
        return q[0], q[2]

    @property
    def cv(self) -> float:
        """Coefficient of variation of the timed runs (stdev / mean)."""
        if len(self.times_s) < 2:
            return 0.0
        return statistics.stdev(self.times_s) / statistics.fmean(self.times_s)

    def to_json(self) -> dict:
        return {"schema_version": self.schema_version, "status": self.status, "error_msg": self.error_msg,
                "times_s": list(self.times_s), "median_s": self.median_s if self.times_s else None,
                "rel_error": self.rel_error, "compile_time_s": self.compile_time_s}

    @classmethod
    def from_json(cls, d: dict) -> "Measurement":
        if d.get("schema_version") != 1:
            raise ValueError(f"measurement schema {d.get('schema_version')} is not supported (this tilewise reads 1)")
        if d["status"] not in STATUSES:
            raise ValueError(f"unknown measurement status {d['status']!r}")
        return cls(d["status"], d.get("error_msg", ""), tuple(d.get("times_s", ())), d.get("rel_error"),
                   d.get("compile_time_s", 0.0))


def pool_measurements(measurements: list) -> Measurement:
    """One measurement of a schedule from several measurements of it (rounds of one collection, or
    independent collections): the first failure if any failed (a schedule that fails once is not a
    schedule to ship), else ``ok`` with every timing, the largest error seen and the first build's
    compile time."""
    bad = [m for m in measurements if not m.ok]
    if bad:
        return bad[0]
    times = tuple(t for m in measurements for t in m.times_s)
    errors = [m.rel_error for m in measurements if m.rel_error is not None]
    return Measurement("ok", "", times, max(errors) if errors else None, measurements[0].compile_time_s)
