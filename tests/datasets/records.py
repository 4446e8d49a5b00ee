"""Records for the dataset tests, built without compiling anything (no JIT, no measurement)."""
from __future__ import annotations

import random

from tilewise.core.record import Record
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.measurement import Measurement
from tilewise.core.target import Target

MATMUL = "matmul:64x64x64:f32"
RELU = "relu:64x512:f32"
T0 = 1767225600.0            # 2026-01-01T00:00:00Z


def schedule(i: int) -> Schedule:
    """A distinct schedule for every ``i`` (never compiled: legality does not matter here)."""
    return Schedule(tile=[8 * (1 + i % 8), 16 * (1 + i // 8), 32], reg_tile=[4, 16], unroll=2, vectorize=True)


def measurement(i: int, status: str = "ok") -> Measurement:
    if status != "ok":
        return Measurement(status, f"{status} for schedule {i}", compile_time_s=0.01 * (i % 5))
    rng = random.Random(i)
    base = 1e-4 * (1 + rng.random())
    return Measurement("ok", "", tuple(base * (1 + 0.05 * rng.random()) for _ in range(5)), 1e-7, 0.1)


def make_record(i: int, workload: str | Workload = MATMUL, target: Target | None = None,
                status: str = "ok") -> Record:
    from tilewise.core.target import detect
    w = Workload.parse(workload) if isinstance(workload, str) else workload
    return Record(w, target or detect(), schedule(i), measurement(i, status), T0 + i)


GOLDEN_TARGET = Target(kind="cpu", name="Golden Test CPU @ 2.00GHz", arch="x86_64", isa=("avx", "avx2", "fma"),
                       cores=4, simd_bits=256,
                       cache_bytes=(("L1d", 32768), ("L2", 1048576), ("L3", 33554432)),
                       versions=(("tilewise", "0.1.0"), ("torch-mlir", "20261001")))


def golden_records_v1() -> list[Record]:
    """What ``golden/records_v1.jsonl`` and ``golden/store_v1.sqlite`` hold, as Python values.

    The files were written once from this list (``golden/make_golden.py``) and are data now: if a
    change to the record types makes them load differently, the golden test fails.
    """
    t = GOLDEN_TARGET
    mm = Workload.parse("matmul:64x64x64:f32")
    return [
        Record(mm, t, Schedule(tile=[32, 64, 32], reg_tile=[4, 16], interchange=[0, 2, 1], promote=True,
                               vectorize=True, unroll=2, threads=1),
               Measurement("ok", "", (3.1e-05, 2.9e-05, 3.0e-05, 3.2e-05, 3.0e-05), 2.5e-07, 0.21), T0),
        Record(mm, t, Schedule(tile=[0, 0, 0], vectorize=False),
               Measurement("ok", "", (4.0e-04, 4.2e-04, 4.1e-04), 1.1e-07, 0.12), T0 + 1),
        Record(mm, t, Schedule(tile=[64, 64, 64], reg_tile=[8, 32]),
               Measurement("compile_error", "LLVM ERROR: ran out of registers", compile_time_s=0.5), T0 + 2),
        Record(Workload.parse("relu:64x512:f32"), t, Schedule(tile=[8, 64], vectorize=True),
               Measurement("ok", "", (2.0e-06, 2.1e-06, 1.9e-06, 2.0e-06), 0.0, 0.05), T0 + 3),
        Record(Workload.parse("conv2d_nhwc:1x8x8x16,3x3x16x16:f32:pad=1,stride=2"), t,
               Schedule(tile=[1, 2, 4, 16], precision="bf16"),
               Measurement("wrong_result", "relative error 0.5 exceeds 1e-05", rel_error=0.5,
                           compile_time_s=0.3), T0 + 4),
        Record(Workload.parse("softmax:4x40:f32"), t, Schedule(tile=[1, 40], threads=2),
               Measurement("timeout", "no result after 10 s"), T0 + 5, versions=(("tilewise", "0.0.9"),)),
        Record(Workload.parse("batch_matmul:2x16x16x16:bf16"), t, Schedule(reg_tile=[4, 0]),
               Measurement("invalid", "reg_tile: sizes must be positive"), T0 + 6),
    ]
