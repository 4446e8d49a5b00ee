"""The hardware a kernel runs on, measured: the target descriptor's micro-benchmarks.

Nothing is looked up from a spec sheet.  Every figure is a rate of a small kernel run here, the
best of three medians of five runs (noise from other processes only ever slows a run down, and a
ceiling is what the machine can do):

``fma``        an FMA-bound loop JIT-compiled through MLIR (the same LLVM and ISA our kernels get):
               12 independent accumulators of one f32 vector width (128, 256 and up to the
               target's widest), no memory traffic -- the compute ceiling per width; with T
               threads, T copies run at once (the JIT call releases the GIL).
``load``       a JIT-compiled loop of vector loads summed into 4 accumulators, over a buffer of half
               each cache level's size (L1d, L2, L3) and of 4x the last level (DRAM), repeated
               until a run takes ~1 ms: the read bandwidth per level, one thread.
``stream``     numpy copy (16 B/elem) and add (24 B/elem) on float64 arrays 4x the last-level cache
               (at least 64 MiB), split over T Python threads: the DRAM copy bandwidth per thread
               count (what the report's roofline draws).
``fork_join``  a tilewise elementwise kernel on 2 rows per thread, T OpenMP threads, against the same
               kernel on one thread: what entering and leaving a parallel region costs.
``sgemm``      numpy/OpenBLAS f32 matmul at 1024^3 with T BLAS threads (the report's library line).

:func:`descriptor` measures them once per target key (a few seconds) and caches the result in
``$XDG_CACHE_HOME/tilewise/targets/<key>.json``; :func:`with_descriptor` returns the target with
the figures in its ``peaks`` (measured, so neither in its key nor in its equality).
"""
from __future__ import annotations

import ctypes
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

import numpy as np

from tilewise.core.descriptor import SCHEMA_VERSION, cached_descriptor, descriptor_path
from tilewise.core.target import Target

_ACCUMULATORS = 12
_LOAD_ACCUMULATORS = 8


def median_rate(work: float, fn: Callable[[], object], runs: int = 5, rounds: int = 3) -> float:
    """``work`` per second: the median of ``runs`` timings, best of ``rounds`` such medians (a
    ceiling is what the machine can do; another process stealing a core only ever lowers it)."""
    fn()
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return work / min(medians)


def sgemm_gflops(threads: int, n: int = 1024) -> float:
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(threads):
        return median_rate(2.0 * n ** 3, lambda: np.matmul(a, b, out=c)) / 1e9


def stream_gbs(threads: int, array_bytes: int, inner: int = 1) -> float:
    """GB/s of copy and add on float64 arrays of ``array_bytes``, each call repeated ``inner``
    times inside one timed run (small arrays: the thread pool's overhead stays out of it)."""
    n = array_bytes // 8
    a, b, c = (np.full(n, v, dtype=np.float64) for v in (0.0, 1.0, 2.0))
    bounds = np.linspace(0, n, threads + 1).astype(int)
    chunks = list(zip(bounds[:-1], bounds[1:]))
    with ThreadPoolExecutor(threads) as pool:
        def parallel(op):
            def chunk(ij):
                for _ in range(inner):
                    op(*ij)
            return lambda: list(pool.map(chunk, chunks))
        copy = median_rate(16.0 * n * inner, parallel(lambda i, j: np.copyto(a[i:j], b[i:j])))
        add = median_rate(24.0 * n * inner, parallel(lambda i, j: np.add(b[i:j], c[i:j], out=a[i:j])))
    return max(copy, add) / 1e9


def _jit(source: str):
    """(context, execution engine) of a micro-benchmark's MLIR (scf + vector + memref), at -O3."""
    from torch_mlir import execution_engine, ir, passmanager
    ctx = ir.Context()
    with ctx, ir.Location.unknown():
        module = ir.Module.parse(source)
        passmanager.PassManager.parse(
            "builtin.module(convert-scf-to-cf,expand-strided-metadata,finalize-memref-to-llvm,"
            "convert-vector-to-llvm,convert-arith-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,"
            "reconcile-unrealized-casts)").run(module.operation)
        return ctx, execution_engine.ExecutionEngine(module, opt_level=3)


class FmaLoop:
    """``fma_loop(n, out)``: n iterations of 12 independent ``vector.fma`` on vector<Wxf32>."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        self._ctx, self._engine = _jit(_fma_source(lanes))

    def _run(self, iterations: int) -> None:
        from tilewise.ir.compiler import _descriptor
        out = np.zeros(self.lanes, dtype=np.float32)
        desc = _descriptor(out)
        n = ctypes.c_longlong(iterations)
        self._engine.invoke("fma_loop", ctypes.pointer(n), ctypes.pointer(ctypes.pointer(desc)))
        if not abs(float(out[0]) - _ACCUMULATORS * _fixed_point(iterations)) < 1e-2:
            raise RuntimeError(f"FMA loop computed {out[0]}, not {_ACCUMULATORS * _fixed_point(iterations)}")

    def gflops(self, threads: int, iterations: int = 10_000_000) -> float:
        flops = 2.0 * self.lanes * _ACCUMULATORS * iterations * threads
        self._run(1000)
        with ThreadPoolExecutor(threads) as pool:
            return median_rate(flops, lambda: list(pool.map(self._run, [iterations] * threads))) / 1e9


def _fixed_point(iterations: int) -> float:
    """acc <- acc * 0.999 + 0.001 from 0: 1 - 0.999^n (in f32 it settles at ~1)."""
    return 1.0 - 0.999 ** min(iterations, 100_000)


def _fma_source(lanes: int) -> str:
    v = f"vector<{lanes}xf32>"
    names = [f"%a{i}" for i in range(_ACCUMULATORS)]
    results = [f"%r{i}" for i in range(_ACCUMULATORS)]
    body = "\n".join(f"    %n{i} = vector.fma {a}, %x, %y : {v}" for i, a in enumerate(names))
    total, sums = results[0], []
    for i, r in enumerate(results[1:], 1):
        sums.append(f"  %s{i} = arith.addf {total}, {r} : {v}")
        total = f"%s{i}"
    return f"""
func.func @fma_loop(%n: index, %out: memref<{lanes}xf32>) attributes {{llvm.emit_c_interface}} {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %z = arith.constant dense<0.0> : {v}
  %x = arith.constant dense<0.999> : {v}
  %y = arith.constant dense<0.001> : {v}
  {", ".join(results)} = scf.for %i = %c0 to %n step %c1 iter_args({", ".join(f"{a} = %z" for a in names)}) -> ({", ".join([v] * _ACCUMULATORS)}) {{
{body}
    scf.yield {", ".join(f"%n{i}" for i in range(_ACCUMULATORS))} : {", ".join([v] * _ACCUMULATORS)}
  }}
{chr(10).join(sums)}
  vector.store {total}, %out[%c0] : memref<{lanes}xf32>, {v}
  return
}}
"""


class LoadLoop:
    """``load_loop(reps, buf, out)``: ``reps`` passes of vector loads over ``buf``, summed into
    ``_LOAD_ACCUMULATORS`` accumulators of vector<Wxf32> (enough to cover the add latency at two
    loads a cycle; stored to ``out``, so nothing is dead code)."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        self._ctx, self._engine = _jit(_load_source(lanes))

    def bytes_per_s(self, nbytes: int) -> float:
        """Read bandwidth over a buffer of ``nbytes`` (rounded to whole 4-vector steps), one thread."""
        from tilewise.ir.compiler import _descriptor
        step = _LOAD_ACCUMULATORS * self.lanes
        n = max(step, (nbytes // 4) // step * step)
        buf = np.ones(n, dtype=np.float32)
        out = np.zeros(self.lanes, dtype=np.float32)
        reps = max(1, int(16e6 // n))                # >= 64 MB a run: the call's overhead stays out
        args = [ctypes.pointer(ctypes.c_longlong(reps)), ctypes.pointer(ctypes.pointer(_descriptor(buf))),
                ctypes.pointer(ctypes.pointer(_descriptor(out)))]
        rate = median_rate(4.0 * n * reps, lambda: self._engine.invoke("load_loop", *args))
        if not float(out.sum()) > 0:
            raise RuntimeError(f"the load loop summed {out.sum()} over a buffer of ones")
        return rate


def _load_source(lanes: int) -> str:
    v, k = f"vector<{lanes}xf32>", _LOAD_ACCUMULATORS
    acc = ", ".join([v] * k)
    loads = "\n".join(
        f"      %o{i} = arith.addi %i, %c{i * lanes} : index\n"
        f"      %v{i} = vector.load %buf[%o{i}] : memref<?xf32>, {v}\n"
        f"      %n{i} = arith.addf %b{i}, %v{i} : {v}" for i in range(k))
    offsets = "\n".join(f"  %c{i * lanes} = arith.constant {i * lanes} : index" for i in range(1, k))
    a_init = ", ".join(f"%a{i} = %z" for i in range(k))
    b_init = ", ".join(f"%b{i} = %a{i}" for i in range(k))
    total, sums = "%r#0", []
    for i in range(1, k):
        sums.append(f"  %t{i} = arith.addf {total}, %r#{i} : {v}")
        total = f"%t{i}"
    sums_text = "\n".join(sums)
    return f"""
func.func @load_loop(%reps: index, %buf: memref<?xf32>, %out: memref<{lanes}xf32>) attributes {{llvm.emit_c_interface}} {{
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
{offsets}
  %step = arith.constant {k * lanes} : index
  %n = memref.dim %buf, %c0 : memref<?xf32>
  %z = arith.constant dense<0.0> : {v}
  %r:{k} = scf.for %rep = %c0 to %reps step %c1 iter_args({a_init}) -> ({acc}) {{
    %s:{k} = scf.for %i = %c0 to %n step %step iter_args({b_init}) -> ({acc}) {{
{loads}
      scf.yield {", ".join(f"%n{i}" for i in range(k))} : {acc}
    }}
    scf.yield {", ".join(f"%s#{i}" for i in range(k))} : {acc}
  }}
{sums_text}
  vector.store {total}, %out[%c0] : memref<{lanes}xf32>, {v}
  return
}}
"""


def fork_join_s(threads: int, cores: int) -> float:
    """Seconds a parallel region on ``threads`` OpenMP threads adds to a tiny tilewise kernel
    (``add`` on 2 rows per thread) over the same kernel on one thread: median of 200 calls each."""
    from tilewise.core.schedule import Schedule
    from tilewise.core.workload import Workload
    from tilewise.ir.compiler import compile
    from tilewise.profiling.measure import time_runs
    w = Workload.parse(f"add:{2 * max(threads, cores)}x64:f32")
    x = [np.ones((2 * max(threads, cores), 64), dtype=np.float32) for _ in range(3)]
    medians = []
    for t in (1, threads):
        run = compile(w, Schedule(threads=t, tile=1, vector=16, vectorize=True)).bind(x)
        medians.append(statistics.median(time_runs(run, repeats=200, min_time_s=0.0, warmup=20, max_repeats=200)))
    return max(0.0, medians[1] - medians[0])


def measure_descriptor(target: Target, on_step: Callable[[str], None] | None = None) -> dict[str, float]:
    """Every figure of the module docstring for ``target`` (the machine this runs on), by name."""
    step = on_step or (lambda _: None)
    threads = sorted({1, max(1, target.cores)})
    out: dict[str, float] = {}
    step("FMA per vector width")
    for bits in sorted({128, 256, target.simd_bits}):
        if bits <= target.simd_bits:
            loop = FmaLoop(bits // 32)
            for t in threads:
                out[f"fma_f32_{bits}b_{t}t_flops_per_s"] = loop.gflops(t, iterations=2_000_000) * 1e9
    step("load bandwidth per cache level")
    loads = LoadLoop(max(4, target.simd_bits // 32))
    caches = target.caches
    for level in ("L1d", "L2", "L3"):
        if level in caches:
            out[f"load_{level}_bytes_per_s"] = loads.bytes_per_s(caches[level] // 2)
    llc = max(caches.values(), default=32 << 20)
    out["load_dram_bytes_per_s"] = loads.bytes_per_s(max(4 * llc, 64 << 20))
    step("DRAM copy bandwidth")
    for t in threads:
        out[f"stream_dram_{t}t_bytes_per_s"] = stream_gbs(t, max(4 * llc, 64 << 20)) * 1e9
    step("OpenMP fork/join")
    for t in threads:
        if t > 1:
            out[f"omp_fork_join_{t}t_s"] = fork_join_s(t, target.cores)
    return out


def descriptor(target: Target, *, refresh: bool = False, folder: str | None = None,
               on_step: Callable[[str], None] | None = None) -> dict[str, float]:
    """The measured figures of ``target``: from the cache, or measured now (and cached, atomically)."""
    if not refresh:
        hit = cached_descriptor(target, folder)
        if hit is not None:
            return hit
    measured = measure_descriptor(target, on_step)
    path = descriptor_path(target, folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".target-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"schema_version": SCHEMA_VERSION, "target_key": target.key(), "name": target.name,
                   "measured_at": time.time(), "measured": measured}, f, indent=1)
    os.replace(tmp, path)
    return measured


def with_descriptor(target: Target, measured: dict[str, float]) -> Target:
    """``target`` holding ``measured`` in its ``peaks`` (neither its key nor its equality changes)."""
    return replace(target, peaks=tuple(sorted((k, float(v)) for k, v in measured.items())))
