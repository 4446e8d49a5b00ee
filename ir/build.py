"""Workload -> MLIR module (linalg on tensors), built with the bindings."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

from torch_mlir import ir

if TYPE_CHECKING:
    from tilewise.core.workload import Workload

KERNEL_NAME = "kernel"


@contextlib.contextmanager
def build_module(w: "Workload", precision: str | None = None) -> Iterator[tuple[ir.Context, ir.Module]]:
    """Yield ``(context, module)`` holding ``func.func @kernel`` for ``w`` computed in ``precision``.

    The context is entered (with an unknown location) for the duration of the ``with`` block.
    """
    ctx = ir.Context()
    with ctx, ir.Location.unknown():
        module = ir.Module.create()
        with ir.InsertionPoint(module.body):
            w.kind.build(w, precision or w.dtype)
        for op in module.body.operations:
            if op.operation.name == "func.func":
                op.operation.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        yield ctx, module
