"""Workloads, schedules, MLIR construction and compilation.

``build(workload)`` -> MLIR text of the untransformed kernel; ``compile(workload, schedule)`` ->
a :class:`Kernel` callable on numpy arrays.  Failures raise ScheduleError/CompileError (or come back
as data from ``try_compile``).

The compiler (the MLIR pass manager and JIT) is imported on first use of one of its names, so
that importing an op kind -- which every ``Workload`` does -- does not load the JIT.
"""
from tilewise.core.schedule import Schedule  # noqa: F401
from tilewise.core.workload import Workload, WorkloadError, parse_workload  # noqa: F401

_COMPILER_NAMES = ("CompileError", "Kernel", "compile", "transformed_ir", "try_compile")
_OPS_NAMES = ("ScheduleError", "all_ops", "get_op")


def __getattr__(name: str):
    if name in _COMPILER_NAMES:
        from tilewise.ir import compiler
        return getattr(compiler, name)
    if name in _OPS_NAMES:
        from tilewise.ir import ops
        return getattr(ops, name)
    raise AttributeError(f"module 'tilewise.ir' has no attribute {name!r}")


def build(workload: Workload, precision: str | None = None) -> str:
    """The canonical MLIR (linalg on tensors) of ``workload``."""
    return workload.mlir(precision)
