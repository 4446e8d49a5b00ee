"""Element types: their MLIR type, how numpy stores them, and how to round-trip float64 values.

numpy has no bfloat16, so bf16 buffers are ``uint16`` arrays holding the upper half of the f32 bit
pattern (round-to-nearest-even on the way in).  Kernels never see the difference: a memref's
element type only matters to the code inside the kernel.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str
    storage: type             # numpy dtype of the buffer the kernel reads or writes
    bits: int
    is_float: bool
    accumulator: str          # dtype a contraction over this input accumulates in
    eps: float                # unit roundoff (0 for integers: exact)

    @property
    def nbytes(self) -> int:
        return self.bits // 8

    def mlir_type(self):
        """The MLIR element type (needs an active Context)."""
        return _mlir_types()[self.name]()


@functools.lru_cache(maxsize=1)
def _mlir_types() -> dict[str, Callable]:
    from torch_mlir import ir    # lazily: the bindings are heavy and most callers never need them
    return {
        "f64": ir.F64Type.get,
        "f32": ir.F32Type.get,
        "f16": ir.F16Type.get,
        "bf16": ir.BF16Type.get,
        "i64": lambda: ir.IntegerType.get_signless(64),
        "i32": lambda: ir.IntegerType.get_signless(32),
        "i8": lambda: ir.IntegerType.get_signless(8),
    }

DTYPES: dict[str, DType] = {
    "f64": DType("f64", np.float64, 64, True, "f64", 2.0 ** -53),
    "f32": DType("f32", np.float32, 32, True, "f32", 2.0 ** -24),
    "f16": DType("f16", np.float16, 16, True, "f32", 2.0 ** -11),
    "bf16": DType("bf16", np.uint16, 16, True, "f32", 2.0 ** -8),
    "i64": DType("i64", np.int64, 64, False, "i64", 0.0),
    "i32": DType("i32", np.int32, 32, False, "i32", 0.0),
    "i8": DType("i8", np.int8, 8, False, "i32", 0.0),
}


def dtype(name: str) -> DType:
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}: expected one of {', '.join(DTYPES)}") from None


def to_storage(values: np.ndarray, name: str) -> np.ndarray:
    """float64 (or integer) values -> the buffer a kernel of dtype ``name`` reads."""
    if name == "bf16":
        f = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
        rounded = (f + 0x7FFF + ((f >> 16) & 1)) >> 16      # round to nearest even
        return rounded.astype(np.uint16)
    dt = DTYPES[name]
    if not dt.is_float:
        info = np.iinfo(dt.storage)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.ascontiguousarray(values, dtype=dt.storage)


def from_storage(buf: np.ndarray, name: str) -> np.ndarray:
    """A kernel's buffer of dtype ``name`` -> float64 values (exact)."""
    if name == "bf16":
        return (buf.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return buf.astype(np.float64)


def round_to(values: np.ndarray, name: str) -> np.ndarray:
    """The float64 values a buffer of dtype ``name`` can actually hold."""
    return from_storage(to_storage(values, name), name)
