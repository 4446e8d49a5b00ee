"""Workloads, schedules, MLIR construction and compilation.

``build(workload)`` -> MLIR text of the untransformed kernel; ``compile(workload, schedule)`` ->
a :class:`Kernel` callable on numpy arrays.  Failures raise ScheduleError/CompileError (or come back
as data from ``try_compile``).
"""
from tilewise.ir.compiler import CompileError, Kernel, compile, transformed_ir, try_compile  # noqa: F401
from tilewise.ir.ops import ScheduleError, all_ops, get_op  # noqa: F401
from tilewise.ir.schedule import Schedule  # noqa: F401
from tilewise.ir.workload import Workload, WorkloadError, parse_workload  # noqa: F401


def build(workload: Workload, precision: str | None = None) -> str:
    """The canonical MLIR (linalg on tensors) of ``workload``."""
    return workload.mlir(precision)
