"""Records: one measurement of one schedule of one workload on one target.

A :class:`Record` is what the tuner writes and the cost models train on.  Its JSON form is the
persisted one (SQLite rows, Parquet, golden files): explicit fields, a ``schema_version``, no
pickle.  The three keys that identify a record are derived, never stored in the JSON:

``workload_key``  sha256 of the workload's canonical printed MLIR (:meth:`Workload.key`)
``target_key``    sha256 of the target description and tool versions (:meth:`Target.key`)
``schedule_key``  sha256 of the schedule's canonical JSON (:meth:`Schedule.key`)

A store holds at most one record per (workload_key, target_key, schedule_key); because the target
key is part of it, a record measured on one CPU (or with one compiler) never answers for another.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tilewise.core.measurement import Measurement
from tilewise.core.schedule import Schedule
from tilewise.core.target import Target
from tilewise.core.workload import Workload, workload_key


class RecordError(ValueError):
    """A record (or its JSON) this tilewise cannot read."""


@contextlib.contextmanager
def parse_errors(error: type[ValueError], what: str):
    """Turn what goes wrong while building ``what`` from JSON into one ``error`` line: a missing
    field (KeyError) or a part's own schema or value check (target, measurement, ... raise
    ValueError), so a caller sees one kind of error per file kind."""
    try:
        yield
    except KeyError as e:
        raise error(f"{what} JSON lacks the field {e.args[0]!r}") from None
    except error:
        raise
    except ValueError as e:
        raise error(f"{what}: {e}") from None


def require_schema(d: Any, version: int, error: type[ValueError], what: str, hint: str = "") -> None:
    """Raise ``error`` unless ``d`` is a JSON object of schema ``version`` (``hint`` ends the message)."""
    found = d.get("schema_version") if isinstance(d, dict) else None
    if found != version:
        raise error(f"{what} schema version {found!r} is not supported: this tilewise reads "
                    f"version {version}{hint}")


@dataclass(frozen=True)
class Record:
    workload: Workload
    target: Target
    schedule: Schedule
    measurement: Measurement
    timestamp: float = field(default_factory=time.time)     # unix seconds, when it was measured
    #: (tool, version) pairs, sorted; ``None`` takes the target's (tilewise, torch-mlir) versions
    versions: tuple[tuple[str, str], ...] | None = None
    schema_version: ClassVar[int] = 1

    def __post_init__(self):
        versions = self.target.versions if self.versions is None else self.versions
        object.__setattr__(self, "versions", tuple(sorted((str(k), str(v)) for k, v in dict(versions).items())))
        object.__setattr__(self, "timestamp", float(self.timestamp))

    # -- keys ------------------------------------------------------------------------------------
    @property
    def workload_key(self) -> str:
        return workload_key(self.workload)

    @property
    def target_key(self) -> str:
        return self.target.key()

    @property
    def schedule_key(self) -> str:
        return self.schedule.key()

    @property
    def keys(self) -> tuple[str, str, str]:
        """(workload_key, target_key, schedule_key): what identifies a record in a store."""
        return self.workload_key, self.target_key, self.schedule_key

    # -- JSON ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version,
                "workload": self.workload.to_json(),
                "target": self.target.to_json(),
                "schedule": self.schedule.to_json(),
                "measurement": self.measurement.to_json(),
                "timestamp": self.timestamp,
                "versions": dict(self.versions)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Record":
        require_schema(d, cls.schema_version, RecordError, "record",
                       " (a newer tilewise wrote it, or it is not a record)")
        with parse_errors(RecordError, "record"):
            return cls(workload=Workload.from_json(d["workload"]),
                       target=Target.from_json(d["target"]),
                       schedule=Schedule.from_json(d["schedule"]),
                       measurement=Measurement.from_json(d["measurement"]),
                       timestamp=d["timestamp"],
                       versions=tuple(d["versions"].items()))

    def dumps(self) -> str:
        """Compact canonical JSON (sorted keys), one line."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> "Record":
        return cls.from_json(json.loads(text))
