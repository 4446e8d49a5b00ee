"""Workloads from a ``.mlir`` file: every supported linalg op found in it."""
from __future__ import annotations

from pathlib import Path

from tilewise.core.workload import Workload, WorkloadError

_ELEMENT = {"f32": "f32", "bf16": "bf16", "f16": "f16", "i8": "i8"}


class MlirFileError(ValueError):
    pass


def _shape_dtype(value) -> tuple[tuple[int, ...], str]:
    from torch_mlir import ir
    t = ir.ShapedType(value.type)
    if not t.has_static_shape:
        raise MlirFileError(f"dynamic shape {t} is not supported: give static shapes")
    return tuple(t.shape), _ELEMENT.get(str(t.element_type), str(t.element_type))


def _workload(op) -> Workload | None:
    name = op.name
    ins = [v for v in op.operands]
    if name == "linalg.matmul":
        (m, k), dt = _shape_dtype(ins[0])
        (_, n), _ = _shape_dtype(ins[1])
        return Workload("matmul", ((m, n, k),), dt)
    if name == "linalg.batch_matmul":
        (b, m, k), dt = _shape_dtype(ins[0])
        (_, _, n), _ = _shape_dtype(ins[1])
        return Workload("batch_matmul", ((b, m, n, k),), dt)
    if name == "linalg.conv_2d_nhwc_hwcf":
        x, dt = _shape_dtype(ins[0])
        f, _ = _shape_dtype(ins[1])
        strides = [int(v) for v in op.attributes["strides"]] if "strides" in op.attributes else [1, 1]
        if len(set(strides)) != 1:
            raise MlirFileError(f"conv with unequal strides {strides} is not supported")
        attrs = (("stride", strides[0]),) if strides[0] != 1 else ()
        return Workload("conv2d_nhwc", (x, f), dt, attrs)
    return None


def workloads_from_mlir(path: str | Path) -> list[Workload]:
    """Parse ``path`` and return one workload per supported linalg op, in program order.

    Raises MlirFileError with a one-line message for unreadable or invalid MLIR, or a file with no
    supported op."""
    from torch_mlir import ir
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise MlirFileError(f"cannot read {path}: {e.strerror}") from None
    with ir.Context() as ctx:
        ctx.allow_unregistered_dialects = False
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as e:
            first = " ".join(str(e).split())[:300]
            raise MlirFileError(f"{path} is not valid MLIR: {first}") from None
        found: list[Workload] = []
        unsupported: set[str] = set()

        def visit(op):
            name = op.operation.name
            if name.startswith("linalg."):
                try:
                    w = _workload(op.operation)
                except (WorkloadError, ValueError) as e:
                    raise MlirFileError(f"{name} in {path}: {e}") from None
                if w is None:
                    unsupported.add(name)
                else:
                    found.append(w)
            return ir.WalkResult.ADVANCE

        module.operation.walk(visit)
    if not found:
        extra = f" (found {', '.join(sorted(unsupported))})" if unsupported else ""
        raise MlirFileError(f"{path} holds no supported linalg op{extra}: tilewise tunes "
                            "linalg.matmul, linalg.batch_matmul and linalg.conv_2d_nhwc_hwcf")
    return found
