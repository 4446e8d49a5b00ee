"""The contract every op kind implements, and the registry that names them.

An op kind knows four things about its workloads:

1. *what it computes*: the kernel built with the MLIR bindings (:meth:`OpKind.build`, linalg on
   tensors, destination-passing: output buffers are the last arguments) and a float64 numpy
   reference (:meth:`OpKind.reference`) it is checked against;
2. *its iteration space*: loop dims and their sizes, FLOPs;
3. *its knobs*: which schedule knobs it reads, which values are legal (:meth:`OpKind.validate`
   raises :class:`ScheduleError` with a message naming the knob), the default schedule a compiler
   would pick untuned, and the untuned baseline (no tiling, no vectorization);
4. *how a schedule becomes a transform script* (:meth:`OpKind.schedule`).

Implementations register with ``@register("name")`` and are looked up with :func:`get_op`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from tilewise.ir.dtypes import DTYPES, round_to, to_storage
from tilewise.core.schedule import Schedule
from tilewise.core.workload import OP_KINDS, WorkloadError, get_op

if TYPE_CHECKING:
    from tilewise.ir.script import Script
    from tilewise.core.workload import Workload
    from tilewise.core.target import Target


class ScheduleError(ValueError):
    """A schedule that is not legal for its workload (names the knob and what is allowed)."""


@dataclass(frozen=True)
class ArgSpec:
    shape: tuple[int, ...]
    dtype: str
    is_output: bool = False


#: ``@register("matmul")`` files one instance of the decorated OpKind under that name
register = OP_KINDS.register


def all_ops() -> dict[str, "OpKind"]:
    return OP_KINDS.entries()


class OpKind(ABC):
    name: str = ""
    dtypes: tuple[str, ...] = ("f32",)
    #: knob -> short description; ``validate`` rejects knobs not listed here.
    knobs: dict[str, str] = {}
    #: precisions an f32 workload may be computed in (the ``precision`` knob)
    precisions: tuple[str, ...] = ()
    #: one-letter short forms of attributes in workload strings (``{"g": "group"}``: ``:g128``)
    short_attrs: dict[str, str] = {}

    def variant(self, dtype: str) -> "OpKind":
        """The op kind that computes this op in ``dtype`` (itself, unless a variant takes the dtype:
        ``matmul``'s weight-only formats)."""
        return self

    def supported_dtypes(self) -> tuple[str, ...]:
        """Every dtype a workload of this op may name, its variants' included."""
        return self.dtypes

    # -- what it computes ------------------------------------------------------------------------
    def mlir(self, w: "Workload", precision: str) -> str:
        """The printed MLIR of the untransformed kernel of ``w`` in ``precision`` (linalg on tensors)."""
        from tilewise.ir.build import build_module
        with build_module(w, precision) as (_, module):
            return str(module)

    @abstractmethod
    def check(self, w: "Workload") -> None:
        """Raise WorkloadError if the shapes/attrs do not describe a valid instance."""

    @abstractmethod
    def args(self, w: "Workload", precision: str) -> list[ArgSpec]:
        """Kernel arguments in call order (inputs, then outputs)."""

    @abstractmethod
    def build(self, w: "Workload", precision: str) -> None:
        """Emit ``func.func @kernel`` at the current insertion point (inside a Context)."""

    @abstractmethod
    def reference(self, w: "Workload", inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """float64 results from float64 inputs (the values the kernel's inputs hold)."""

    def sample_inputs(self, w: "Workload", rng: np.random.Generator) -> list[np.ndarray]:
        """float64 input values (before rounding to the kernel's dtype)."""
        out = []
        for a in self.args(w, w.dtype):
            if a.is_output:
                continue
            if DTYPES[a.dtype].is_float:
                out.append(rng.uniform(-1.0, 1.0, a.shape))
            else:
                out.append(rng.integers(-100, 101, a.shape).astype(np.float64))
        return out

    def round_inputs(self, w: "Workload", values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The values the workload's inputs can hold: ``sample_inputs`` rounded to its dtype (the
        reference sees these, so a lower compute precision is charged for its own rounding)."""
        return [round_to(v, w.dtype) for v in values]

    def baseline(self, w: "Workload", inputs: Sequence[np.ndarray]) -> tuple[str, Callable[[], object]]:
        """A well-tuned library implementation to compare against: ``(name, run)``.

        ``inputs`` are float32 arrays of the input values.  The default runs the numpy reference
        on them (OpenBLAS for contractions); the caller limits BLAS threads."""
        return "numpy", lambda: self.reference(w, inputs)

    def tolerance(self, w: "Workload", precision: str) -> float:
        """Largest acceptable normwise relative error vs the float64 reference."""
        if not DTYPES[w.dtype].is_float:
            return 0.0
        return {"f32": 1e-4, "f16": 4e-3, "bf16": 3e-2}[precision]

    # -- iteration space -------------------------------------------------------------------------
    @abstractmethod
    def loop_dims(self, w: "Workload") -> dict[str, int]:
        ...

    @abstractmethod
    def flops(self, w: "Workload") -> float:
        ...

    def buffer_bytes(self, w: "Workload", precision: str | None = None) -> int:
        """Bytes of the kernel's argument buffers (every input read once, every output written once)
        in ``precision`` (default: the workload's dtype); exact integers, so an absurd shape is
        measured, not wrapped past int64."""
        return sum(math.prod(a.shape) * DTYPES[a.dtype].nbytes for a in self.args(w, precision or w.dtype))

    def bytes_moved(self, w: "Workload") -> float:
        """Compulsory traffic in the workload's dtype (the roofline's and the features' bytes)."""
        return float(self.buffer_bytes(w))

    # -- knobs -----------------------------------------------------------------------------------
    @abstractmethod
    def default_schedule(self, w: "Workload", target: "Target") -> Schedule:
        ...

    def untuned_schedule(self, w: "Workload") -> Schedule:
        return Schedule(vectorize=False, threads=1)

    def validate(self, w: "Workload", s: Schedule) -> None:
        unknown = sorted(set(s) - set(self.knobs))
        if unknown:
            raise ScheduleError(f"{self.name} has no knob {unknown[0]!r}: its knobs are {', '.join(self.knobs)}")
        threads = s.get("threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ScheduleError(f"threads={threads!r}: must be an integer >= 1")
        precision = s.get("precision", w.dtype)
        if precision != w.dtype and precision not in self.precisions_for(w):
            allowed = ", ".join((w.dtype,) + self.precisions_for(w))
            raise ScheduleError(f"precision={precision!r} is not available for {w}: use one of {allowed}")

    def precisions_for(self, w: "Workload") -> tuple[str, ...]:
        return tuple(p for p in self.precisions if p != w.dtype) if w.dtype == "f32" else ()

    # -- schedule -> transform script -------------------------------------------------------------
    @abstractmethod
    def schedule(self, script: "Script", w: "Workload", s: Schedule) -> None:
        """Emit the transform ops that realise ``s``; the script bufferizes before it returns."""

    # -- helpers for implementations --------------------------------------------------------------
    @staticmethod
    def storage_inputs(w: "Workload", values: Sequence[np.ndarray], precision: str,
                       specs: Sequence[ArgSpec]) -> list[np.ndarray]:
        ins = [a for a in specs if not a.is_output]
        return [to_storage(v, a.dtype) for v, a in zip(values, ins)]


def check_rank(w: "Workload", ranks: Sequence[int], meaning: str) -> None:
    if len(w.shapes) != len(ranks) or any(len(s) != r for s, r in zip(w.shapes, ranks)):
        raise WorkloadError(f"{w.op} expects shapes {meaning}, got {','.join('x'.join(map(str, s)) for s in w.shapes)}")
    if any(d <= 0 for s in w.shapes for d in s):
        raise WorkloadError(f"{w.op}: every dimension must be >= 1")


def check_int_list(name: str, value, length: int, lo: int, his: Sequence[int]) -> tuple[int, ...]:
    """Validate a knob holding ``length`` integers, the i-th in [lo, his[i]]."""
    if not isinstance(value, tuple) or len(value) != length or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ScheduleError(f"{name}={list(value) if isinstance(value, tuple) else value!r}: "
                            f"expected a list of {length} integers")
    for i, (v, hi) in enumerate(zip(value, his)):
        if v < lo or v > hi:
            raise ScheduleError(f"{name}[{i}]={v} is out of range: must be in [{lo}, {hi}]")
    return value


def check_tiles_and_interchange(tile: Sequence[int], reg: Sequence[int], s: Schedule) -> None:
    """A contraction schedule's register tile fits its cache tile (m, n) and its ``interchange`` is a
    permutation of the three cache-tile loops (ScheduleError otherwise)."""
    for i, name in enumerate("mn"):
        if tile[i] and reg[i] > tile[i]:
            raise ScheduleError(f"reg_tile {name}={reg[i]} exceeds the cache tile {name}={tile[i]}")
    ix = s.get("interchange")
    if ix is not None and sorted(ix) != [0, 1, 2]:
        raise ScheduleError(f"interchange={list(ix)}: must be a permutation of [0, 1, 2]")
