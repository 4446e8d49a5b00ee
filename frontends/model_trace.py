"""Model traces: what a compiled torch model ran, kernel by kernel, and what fell back to eager.

The ``torch.compile`` backend writes one (``options={"trace": PATH}``); ``tilewise report
--model-trace PATH`` reads it.  Plain JSON with a ``schema_version``, like every persisted form.

A trace holds one :class:`KernelTrace` per fusion group or eager fallback of every compiled
(sub)graph, in execution order: its ops, whether it ran as a tilewise kernel or fell back to eager
PyTorch (and why), the schedule it ran with, and its median time per call.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, ClassVar


class TraceError(ValueError):
    """A model trace file this tilewise cannot read."""


@dataclass(frozen=True)
class KernelTrace:
    name: str                       # "graph0/group3" — unique within the trace
    kind: str                       # "kernel" (tilewise) | "eager" (fell back to PyTorch)
    ops: tuple[str, ...]            # the graph's ops it covers, e.g. ("matmul", "add", "gelu")
    median_s: float | None = None   # median time per call; None when it was not timed
    calls: int = 0                  # calls timed
    flops: float | None = None      # useful FLOPs per call, when known
    workload: str | None = None     # canonical workload string of its anchor, when it has one
    schedule: dict[str, Any] | None = None
    reason: str | None = None       # why it fell back (kind == "eager")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "ops": list(self.ops), "median_s": self.median_s,
                "calls": self.calls, "flops": self.flops, "workload": self.workload,
                "schedule": self.schedule, "reason": self.reason}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "KernelTrace":
        if d.get("kind") not in ("kernel", "eager"):
            raise TraceError(f"kernel entry {d.get('name')!r} has kind {d.get('kind')!r}; expected 'kernel' or 'eager'")
        return cls(name=str(d["name"]), kind=d["kind"], ops=tuple(d.get("ops", ())), median_s=d.get("median_s"),
                   calls=int(d.get("calls", 0)), flops=d.get("flops"), workload=d.get("workload"),
                   schedule=d.get("schedule"), reason=d.get("reason"))


@dataclass(frozen=True)
class ModelTrace:
    model: str                              # the model's class name (or what the user called it)
    target: dict[str, Any]                  # Target.to_json() of where it ran
    kernels: tuple[KernelTrace, ...] = ()
    mode: str = "default"                   # the backend's mode: "default" | "max-autotune"
    compile_s: float | None = None          # wall time of the backend's compile (all graphs)
    fallbacks: tuple[str, ...] = field(default=())   # one line per whole-graph fallback and why
    schema_version: ClassVar[int] = 1

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "model": self.model, "target": self.target,
                "mode": self.mode, "compile_s": self.compile_s, "fallbacks": list(self.fallbacks),
                "kernels": [k.to_json() for k in self.kernels]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelTrace":
        version = d.get("schema_version")
        if version != cls.schema_version:
            raise TraceError(f"model trace schema_version {version!r}; this tilewise reads {cls.schema_version}")
        return cls(model=str(d["model"]), target=dict(d["target"]), mode=d.get("mode", "default"),
                   compile_s=d.get("compile_s"), fallbacks=tuple(d.get("fallbacks", ())),
                   kernels=tuple(KernelTrace.from_json(k) for k in d.get("kernels", ())))

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename): a reader never sees half a trace."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".trace-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelTrace":
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise TraceError(f"no model trace at {os.fspath(path)}: compile with "
                             "options={'trace': PATH} to write one") from None
        except json.JSONDecodeError as e:
            raise TraceError(f"{os.fspath(path)} is not a model trace (bad JSON: {e})") from None
        if not isinstance(data, dict):
            raise TraceError(f"{os.fspath(path)} is not a model trace (expected a JSON object)")
        try:
            return cls.from_json(data)
        except KeyError as e:
            raise TraceError(f"{os.fspath(path)} is not a model trace (missing {e})") from None
