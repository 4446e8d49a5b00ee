"""Minimal measurement: check a kernel against the float64 reference, then time it.

Protocol (this machine is noisy, MLIR_NOTES "Compile time and measurement"): outputs are poisoned
(NaN, or a sentinel for integers) before the checked run so a kernel that writes nothing cannot
pass; warm-up runs; then at least ``repeats`` timed runs and at least ``min_time_s`` of them; we
report min, median and quartiles.  Errors are data: a compile failure or a wrong result is a
:class:`Measurement` with a status, never an exception.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from tilewise.ir.ops.base import ScheduleError
from tilewise.ir.dtypes import DTYPES, from_storage, round_to, to_storage
from tilewise.core.measurement import Measurement
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.profiling.memory import check_buffers_fit

if TYPE_CHECKING:
    from tilewise.ir.compiler import Kernel


@dataclass
class Problem:
    """Inputs for one workload in one precision, the float64 reference and output buffers."""
    workload: Workload
    precision: str
    inputs: list[np.ndarray]          # kernel-ready buffers
    expected: list[np.ndarray]        # float64 reference results
    outputs: list[np.ndarray]         # kernel output buffers (poisoned before a checked run)
    output_dtypes: list[str]

    @property
    def arrays(self) -> list[np.ndarray]:
        return self.inputs + self.outputs

    def poison(self) -> None:
        for out, dt in zip(self.outputs, self.output_dtypes):
            if dt == "bf16":
                out.fill(0x7FC0)                     # bf16 quiet NaN
            elif DTYPES[dt].is_float:
                out.fill(np.nan)
            else:
                out.fill(np.iinfo(out.dtype).min)    # a value no test input produces

    def rel_error(self) -> float:
        """Normwise relative error of the outputs: max|out - ref| / max|ref|."""
        return max((rel_error(from_storage(out, dt), ref)
                    for out, dt, ref in zip(self.outputs, self.output_dtypes, self.expected)), default=0.0)


def rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    """Normwise relative error: max|got - ref| / max|ref| (inf when ``got`` is not all finite)."""
    if not np.all(np.isfinite(got)):
        return float("inf")
    if not ref.size:
        return 0.0
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    return float(np.max(np.abs(got - ref))) / scale


def page_aligned_empty(shape, dtype) -> np.ndarray:
    """An uninitialised array on fresh, page-aligned memory of its own (an anonymous mmap).

    numpy places a large array at a 16-byte boundary that varies per allocation; a 512^3 matmul
    whose B is not 64-byte aligned splits every vector load across two cache lines (4.2 instead
    of 2.8 ms, same kernel), so kernel buffers are always page-aligned."""
    import mmap
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(mmap.mmap(-1, max(1, count * dtype.itemsize)), np.uint8)
    return raw[:count * dtype.itemsize].view(dtype).reshape(shape)


def _aligned_copy(a: np.ndarray) -> np.ndarray:
    out = page_aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def make_problem(w: Workload, precision: str | None = None, seed: int = 0) -> Problem:
    """Fresh random inputs for ``w`` (computed in ``precision``) and their float64 reference.

    The reference sees the inputs as the *workload's* dtype holds them, so a lower ``precision``
    is charged for the rounding of its inputs, as an error budget should be.
    """
    precision = precision or w.dtype
    check_buffers_fit(w, precision)         # one line BuffersTooLarge, not numpy's MemoryError
    kind = w.kind
    rng = np.random.default_rng(seed)
    values = kind.round_inputs(w, kind.sample_inputs(w, rng))
    expected = kind.reference(w, values)
    specs = kind.args(w, precision)
    ins = [a for a in specs if not a.is_output]
    outs = [a for a in specs if a.is_output]
    inputs = [_aligned_copy(to_storage(v, a.dtype)) for v, a in zip(values, ins)]
    outputs = [page_aligned_empty(a.shape, DTYPES[a.dtype].storage) for a in outs]
    expected = [round_to(e, a.dtype) if not DTYPES[a.dtype].is_float else e for e, a in zip(expected, outs)]
    return Problem(w, precision, inputs, expected, outputs, [a.dtype for a in outs])


def check(kernel: Kernel, problem: Problem) -> float:
    """Poison outputs, run once, return the relative error against the reference."""
    problem.poison()
    kernel(*problem.arrays)
    return problem.rel_error()


def time_runs(fn: Callable[[], object], *, repeats: int = 10, min_time_s: float = 0.2,
              warmup: int = 2, max_repeats: int = 1000) -> list[float]:
    """Warm up, then time ``fn`` at least ``repeats`` times and for at least ``min_time_s``."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time_s and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def error_bound(w: Workload, max_rel_error: float | None) -> float:
    """The largest relative error a result of ``w`` may have: the budget given, else the op's
    tolerance for the workload's own dtype (a lower precision must earn its way in)."""
    return max_rel_error if max_rel_error is not None else w.kind.tolerance(w, w.dtype)


def measure(w: Workload, s: Schedule, *, max_rel_error: float | None = None, repeats: int = 10,
            min_time_s: float = 0.2, seed: int = 0, problem: Problem | None = None) -> Measurement:
    """Compile ``s``, check it against the reference, time it.  Never raises for a bad schedule."""
    from tilewise.ir.compiler import CompileError, compile     # the JIT, only where one compiles
    precision = s.get("precision", w.dtype)
    try:
        kernel = compile(w, s)
    except ScheduleError as e:
        return Measurement("invalid", str(e))
    except CompileError as e:
        return Measurement("compile_error", str(e))
    problem = problem if problem is not None and problem.precision == precision else make_problem(w, precision, seed)
    bound = error_bound(w, max_rel_error)
    rel = check(kernel, problem)
    if not rel <= bound:
        return Measurement("wrong_result", f"relative error {rel:.3g} exceeds {bound:.3g}",
                           rel_error=rel, compile_time_s=kernel.compile_time_s)
    times = time_runs(kernel.bind(problem.arrays), repeats=repeats, min_time_s=min_time_s)
    if min(times) <= 0:
        return Measurement("runtime_error", "non-positive timing: the clock or the kernel is broken",
                           rel_error=rel, compile_time_s=kernel.compile_time_s)
    return Measurement("ok", "", tuple(times), rel, kernel.compile_time_s)


def gflops(w: Workload, seconds: float) -> float:
    return w.flops / seconds / 1e9 if seconds > 0 else 0.0
