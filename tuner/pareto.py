"""The Pareto front of measured results on (median latency, relative error), both minimised.

What ``nsga2`` optimises and what a multi-objective tune reports (``TuneResult.pareto``).  Plain
Python, no optuna: the tuning loop reads the front without importing a sampler.
"""
from __future__ import annotations

import math
from typing import Iterable

from tilewise.core.measurement import Measurement
from tilewise.core.schedule import Schedule

UNKNOWN_REL_ERROR = 1.0          # an ok measurement without rel_error counts as 100% wrong


def pareto_front(pairs: Iterable[tuple[Schedule, Measurement]]) -> list[tuple[Schedule, Measurement]]:
    """The ok results no other ok result dominates on (median latency, relative error), sorted by
    latency.  Equal results are all kept; a missing ``rel_error`` counts as ``UNKNOWN_REL_ERROR``."""
    def objectives(m: Measurement) -> tuple[float, float]:
        return m.median_s, m.rel_error if m.rel_error is not None else UNKNOWN_REL_ERROR

    ok = sorted(((s, m) for s, m in pairs if m is not None and m.ok and math.isfinite(m.median_s)),
                key=lambda p: objectives(p[1]))
    front: list[tuple[Schedule, Measurement]] = []
    best_error, last = math.inf, None
    for s, m in ok:                 # by latency, then error: kept iff it lowers the best error yet
        lat, err = objectives(m)
        if err < best_error or (lat, err) == last:
            front.append((s, m))
            best_error, last = err, (lat, err)
    return front
