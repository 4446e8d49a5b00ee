"""Candidates: one (workload, schedule) pair to build, check and time."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload, workload_key

def candidate_key(workload_key: str, schedule: Schedule) -> str:
    """sha256 of the workload key and the schedule key: what identifies a candidate."""
    return hashlib.sha256(f"{workload_key}:{schedule.key()}".encode()).hexdigest()


@dataclass(frozen=True)
class Candidate:
    workload: Workload
    schedule: Schedule

    def key(self) -> str:
        """:func:`candidate_key` of the workload's key and the schedule (target not included:
        a runner measures on one target)."""
        return candidate_key(workload_key(self.workload), self.schedule)

    @property
    def threads(self) -> int:
        return int(self.schedule.get("threads", 1))

    def to_json(self) -> dict[str, Any]:
        return {"workload": self.workload.to_json(), "schedule": self.schedule.to_json()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Candidate":
        return cls(Workload.from_json(d["workload"]), Schedule.from_json(d["schedule"]))
