"""What the fused group kinds share: the NotFusable signal, the epilogue as torch ops, and walking
the imported module (its one function, its ops, pass pipelines on it)."""
from __future__ import annotations

from typing import Any, Sequence

import torch


class NotFusable(Exception):
    """This group has no fused kernel (the message says why); it keeps the unfused path."""


def apply_steps(y, steps: list[dict[str, Any]], extra: Sequence[Any]):
    """The epilogue ``steps`` on ``y`` (torch ops; the FX importer turns them into generics)."""
    for st in steps:
        if st["op"] == "unary":
            if st["name"] == "gelu":
                y = torch.nn.functional.gelu(y, approximate=st.get("approximate", "none"))
            else:
                y = getattr(torch.nn.functional if st["name"] == "silu" else torch, st["name"])(y)
            continue
        other = extra[st["slot"]] if "slot" in st else st["scalar"]
        name, alpha = st.get("name", "add"), st.get("alpha", 1)
        if st["op"] == "bias" or name == "add":
            y = y + other * alpha if alpha != 1 else y + other
        elif name == "sub":
            y = y - other * alpha if alpha != 1 else y - other
        elif name == "mul":
            y = y * other
        else:
            y = y / other
    return y


def func_of(module):
    funcs = [op.operation for op in module.body.operations if op.operation.name == "func.func"]
    if len(funcs) != 1:
        raise NotFusable(f"the importer gave {len(funcs)} functions, expected one")
    return funcs[0]


def ops_of(func_op) -> list:
    return [op.operation for op in func_op.regions[0].blocks[0].operations]


def run_passes(module, pipeline: str) -> None:
    from torch_mlir import passmanager
    passmanager.PassManager.parse(pipeline, context=module.context).run(module.operation)
