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

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar


from tilewise.core.paths import cache_home
from tilewise.core.target import Target
from tilewise.profiling.hardware import FmaLoop, sgemm_gflops, stream_gbs


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
        loop = FmaLoop(max(4, target.simd_bits // 32))
        fma = {t: loop.gflops(t) for t in threads}
    except Exception as e:      # no JIT here: SGEMM stands in for the compute ceiling
        notes.append(f"FMA loop not measured ({str(e).splitlines()[0][:160]}); SGEMM is the compute ceiling")
    step("SGEMM")
    sgemm = {t: sgemm_gflops(t) for t in threads}
    step("memory bandwidth")
    llc = max(dict(target.cache_bytes).values(), default=32 << 20)
    bw = {t: stream_gbs(t, max(4 * llc, 64 << 20)) for t in threads}
    cache_bw = {t: stream_gbs(t, llc // 6, inner=20) for t in threads}
    return Roofline(target.key(), fma, sgemm, bw, cache_bw, notes=tuple(notes))
