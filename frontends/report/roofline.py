"""The target's roofline, measured here: peak FLOP/s and memory bandwidth, per thread count.

Nothing is looked up from a spec sheet.  Three micro-benchmarks, each the median of several runs:

``fma``     an FMA-bound loop JIT-compiled through MLIR (the same LLVM and ISA our kernels get):
            12 independent accumulators of the target's widest f32 vector, no memory traffic --
            the compute ceiling no kernel can pass.  With T threads, T copies run at once (the JIT
            call releases the GIL).
``sgemm``   numpy/OpenBLAS f32 matmul at 1024^3 with T BLAS threads: what a library attains.
``stream``  numpy copy (16 B/elem) and add (24 B/elem) on float64 arrays 4x the last-level
            cache (at least 64 MiB), split over T Python threads (numpy releases the GIL in
            ufuncs): the DRAM bandwidth ceiling.  The better of the two counts.  The same on
            arrays that fit in half the last-level cache gives the cache bandwidth: a kernel whose
            operands fit there may beat the DRAM roof, and the chart shows why.

Each figure is the best of three medians of five runs: noise from other processes on the machine
only ever slows a run down, and a ceiling is what the machine can do.

Measuring takes a few seconds; the result is cached per target key in
``$XDG_CACHE_HOME/tilewise/roofline/<key>.json`` (JSON with a schema version, like everything
persisted) and reused until ``refresh``.
"""
from __future__ import annotations

import ctypes
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from tilewise.core.paths import cache_home
from tilewise.core.target import Target

_ACCUMULATORS = 12


@dataclass(frozen=True)
class Roofline:
    """Measured ceilings of one target, keyed by thread count (as strings in JSON)."""
    target_key: str
    fma_gflops: dict[int, float]                 # FMA-loop peak, GFLOP/s
    sgemm_gflops: dict[int, float]               # numpy/OpenBLAS f32 matmul, GFLOP/s
    bandwidth_gbs: dict[int, float]              # best of copy/add on DRAM-sized arrays, GB/s
    cache_bandwidth_gbs: dict[int, float] = field(default_factory=dict)   # the same, last-level-cache-sized
    measured_at: float = field(default_factory=time.time)
    notes: tuple[str, ...] = ()
    schema_version: ClassVar[int] = 1

    @property
    def threads(self) -> list[int]:
        return sorted(self.bandwidth_gbs)

    def peak_gflops(self, threads: int) -> float:
        """The compute ceiling for ``threads``: the FMA loop when it ran, else SGEMM."""
        t = self._nearest(threads)
        return self.fma_gflops.get(t) or self.sgemm_gflops[t]

    def bandwidth(self, threads: int) -> float:
        return self.bandwidth_gbs[self._nearest(threads)]

    def _nearest(self, threads: int) -> int:
        known = self.threads
        return max((t for t in known if t <= threads), default=known[0])

    def to_json(self) -> dict[str, Any]:
        def d(x: dict[int, float]) -> dict[str, float]:
            return {str(k): v for k, v in sorted(x.items())}
        return {"schema_version": self.schema_version, "target_key": self.target_key,
                "fma_gflops": d(self.fma_gflops), "sgemm_gflops": d(self.sgemm_gflops),
                "bandwidth_gbs": d(self.bandwidth_gbs), "cache_bandwidth_gbs": d(self.cache_bandwidth_gbs),
                "measured_at": self.measured_at,
                "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Roofline":
        if data.get("schema_version") != cls.schema_version:
            raise ValueError(f"roofline schema {data.get('schema_version')!r}; this tilewise reads {cls.schema_version}")

        def d(x: dict[str, float]) -> dict[int, float]:
            return {int(k): float(v) for k, v in x.items()}
        return cls(str(data["target_key"]), d(data["fma_gflops"]), d(data["sgemm_gflops"]),
                   d(data["bandwidth_gbs"]), d(data.get("cache_bandwidth_gbs", {})), float(data["measured_at"]),
                   tuple(data.get("notes", ())))


def cache_dir() -> str:
    return cache_home("roofline")


def cached(target: Target, folder: str | None = None) -> Roofline | None:
    path = os.path.join(folder or cache_dir(), f"{target.key()}.json")
    try:
        with open(path) as f:
            return Roofline.from_json(json.load(f))
    except (OSError, ValueError, KeyError):
        return None


def roofline(target: Target, *, refresh: bool = False, folder: str | None = None,
             on_step: Callable[[str], None] | None = None) -> Roofline:
    """The cached roofline of ``target`` (the machine this runs on), measuring it when absent."""
    if not refresh:
        hit = cached(target, folder)
        if hit is not None:
            return hit
    result = measure(target, on_step=on_step)
    save(result, folder)
    return result


def save(result: Roofline, folder: str | None = None) -> str:
    """Cache ``result`` for its target (atomically: temp file + rename); return the path."""
    folder = folder or cache_dir()
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".roofline-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(result.to_json(), f, indent=1)
    path = os.path.join(folder, f"{result.target_key}.json")
    os.replace(tmp, path)
    return path


def measure(target: Target, *, on_step: Callable[[str], None] | None = None) -> Roofline:
    step = on_step or (lambda _: None)
    threads = sorted({1, max(1, target.cores)})
    fma: dict[int, float] = {}
    notes: list[str] = []
    step("FMA loop")
    try:
        loop = _FmaLoop(max(4, target.simd_bits // 32))
        fma = {t: loop.gflops(t) for t in threads}
    except Exception as e:      # no JIT here: SGEMM stands in for the compute ceiling
        notes.append(f"FMA loop not measured ({str(e).splitlines()[0][:160]}); SGEMM is the compute ceiling")
    step("SGEMM")
    sgemm = {t: _sgemm_gflops(t) for t in threads}
    step("memory bandwidth")
    llc = max(dict(target.cache_bytes).values(), default=32 << 20)
    bw = {t: _stream_gbs(t, max(4 * llc, 64 << 20)) for t in threads}
    cache_bw = {t: _stream_gbs(t, llc // 6, inner=20) for t in threads}
    return Roofline(target.key(), fma, sgemm, bw, cache_bw, notes=tuple(notes))


def _median_rate(work: float, fn: Callable[[], object], runs: int = 5, rounds: int = 3) -> float:
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


def _sgemm_gflops(threads: int, n: int = 1024) -> float:
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(threads):
        return _median_rate(2.0 * n ** 3, lambda: np.matmul(a, b, out=c)) / 1e9


def _stream_gbs(threads: int, array_bytes: int, inner: int = 1) -> float:
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
        copy = _median_rate(16.0 * n * inner, parallel(lambda i, j: np.copyto(a[i:j], b[i:j])))
        add = _median_rate(24.0 * n * inner, parallel(lambda i, j: np.add(b[i:j], c[i:j], out=a[i:j])))
    return max(copy, add) / 1e9


class _FmaLoop:
    """``fma_loop(n, out)``: n iterations of 12 independent ``vector.fma`` on vector<Wxf32>."""

    def __init__(self, lanes: int):
        from torch_mlir import execution_engine, ir, passmanager
        self.lanes = lanes
        self._ctx = ir.Context()
        with self._ctx, ir.Location.unknown():
            module = ir.Module.parse(_fma_source(lanes))
            passmanager.PassManager.parse(
                "builtin.module(convert-scf-to-cf,expand-strided-metadata,finalize-memref-to-llvm,"
                "convert-vector-to-llvm,convert-arith-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,"
                "reconcile-unrealized-casts)").run(module.operation)
            self._engine = execution_engine.ExecutionEngine(module, opt_level=3)

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
            return _median_rate(flops, lambda: list(pool.map(self._run, [iterations] * threads))) / 1e9


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
