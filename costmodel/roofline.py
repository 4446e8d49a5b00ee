"""The analytic roofline: no training, the baseline every learned model must beat.

    latency = max(flops / peak, bytes / bandwidth) + call overhead (+ fork/join when threaded)

* ``peak`` = threads x lanes x 2 (an FMA is two flops) x ``fma_units`` x ``freq_hz`` x kernel
  efficiency, where threads = ``min(schedule threads, target cores)``, lanes = the target's f32
  SIMD lanes, or 1 when the schedule does not vectorize.  ``peak_flops_per_core`` (a measured
  vectorized FLOP/s of one core) replaces ``lanes x 2 x fma_units x freq_hz`` when given.
* *kernel efficiency* is what the schedule's innermost vector tile lets the core reach, the
  usual analytic micro-kernel model (Low et al., "Analytical modeling is enough for
  high-performance BLIS", 2016).  A register tile of ``rows x width`` (matmul ``reg_tile``
  [mr, nr], conv [owr, fr]) holds ``acc = rows * ceil(width / lanes)`` accumulators and per
  reduction step loads ``rows`` broadcasts and ``ceil(width / lanes)`` vectors, so a step takes
  ``max(acc / fma_units, loads / load_ports, fma_latency)`` cycles for ``acc / fma_units`` of
  useful FMA issue; lanes a partial vector leaves empty are lost (``width / (vectors * lanes)``);
  a tile that needs more vector registers than the target has spills (``spill_penalty``).  Ops
  without a register tile (elementwise, reductions, softmax) only lose the empty lanes of their
  ``vector`` knob.
* ``bandwidth`` follows where the working set (the op's inputs and outputs, ``bytes_moved``)
  lives while a kernel is timed again and again: in the threads' L2 (``l2_bytes_per_cycle`` per
  core), in L3 (``l3_bytes_per_cycle`` per core), or in DRAM (``dram_bytes_per_s``, shared).
* On a cuda target the estimate is :func:`tilewise.features.gpu_analytic.gpu_roofline_s`
  (the precision's measured peak charged for tile padding and the wave tail, DRAM bytes at the
  measured bandwidth, plus a launch).
* Cache tiling, loop order, packing and unrolling are not modelled: telling a good cache tiling
  from a bad one is what the learned models are for.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from tilewise.costmodel.base import CostModel, register_model
from tilewise.costmodel.fileformat import ModelFileError, write_model_file
from tilewise.core.record import Record
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.core.target import Target
from tilewise.features.base import ROOFLINE_BOUNDS

#: op -> the loop dims its ``reg_tile`` [rows, width] tiles
_REG_TILE_DIMS = {"matmul": ("m", "n"), "batch_matmul": ("m", "n"), "conv2d_nhwc": ("ow", "f")}


@dataclass(frozen=True)
class RooflineConfig:
    freq_hz: float = 3.0e9
    fma_units: int = 2
    fma_latency_cycles: int = 4
    load_ports: int = 2
    spill_penalty: float = 0.5
    peak_flops_per_core: float | None = None
    dram_bytes_per_s: float = 20e9
    l3_bytes_per_cycle: float = 16.0
    l2_bytes_per_cycle: float = 32.0
    call_overhead_s: float = 1e-6
    fork_join_s: float = 5e-6


def kernel_efficiency(w: Workload, s: Schedule, lanes: int, vector_registers: int, c: RooflineConfig) -> float:
    """Fraction of ``lanes``-wide FMA peak the schedule's innermost tile can reach (module doc)."""
    dims = _REG_TILE_DIMS.get(w.op)
    if dims is None:
        width = int(s.get("vector", lanes))
        width = max(1, min(width, w.shapes[0][-1]))
        return width / (math.ceil(width / lanes) * lanes)
    loop = w.loop_dims
    rows, width = (int(x) for x in s.get("reg_tile", (1, 1)))
    rows, width = max(1, min(rows, loop[dims[0]])), max(1, min(width, loop[dims[1]]))
    vectors = math.ceil(width / lanes)
    acc = rows * vectors
    issue = acc / c.fma_units
    cycles = max(issue, (rows + vectors) / c.load_ports, c.fma_latency_cycles)
    eff = issue / cycles * width / (vectors * lanes)
    if acc + vectors + 1 > vector_registers:
        eff *= c.spill_penalty
    return eff


@register_model("roofline")
class RooflineModel(CostModel):
    features = "none"

    def __init__(self, features: Any = None, **params):
        try:
            self.config = RooflineConfig(**params)
        except TypeError:
            known = ", ".join(f.name for f in dataclasses.fields(RooflineConfig))
            raise ValueError(f"cost model 'roofline' takes the parameters {known}, not {sorted(params)}") from None
        self.params = dataclasses.asdict(self.config)
        self.feature_names: list[str] = []
        self.trained_on: dict[str, Any] = {"n_records": 0, "workloads": [], "targets": []}
        self.train_time_s = 0.0

    def fit(self, records: Iterable[Record]) -> "RooflineModel":
        return self

    def update(self, records: Iterable[Record]) -> "RooflineModel":
        return self

    def predict(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        kind_bound = ROOFLINE_BOUNDS.find(target.kind)      # Triton GEMMs on a GPU: gpu_analytic's
        if kind_bound is not None:
            return kind_bound(candidates, target)
        c = self.config
        caches = target.caches
        l2, l3 = caches.get("L2", 1 << 20), caches.get("L3", 0)
        sizes: dict[Workload, tuple[float, float]] = {}
        out = np.empty(len(candidates), dtype=np.float64)
        for i, cand in enumerate(candidates):
            w, s = cand.workload, cand.schedule
            if w not in sizes:
                sizes[w] = (w.flops, w.kind.bytes_moved(w))
            flops, nbytes = sizes[w]
            threads = max(1, min(int(s.get("threads", 1)), target.cores))
            lanes = target.simd_lanes(w.dtype) if s.get("vectorize", True) else 1
            per_core = (c.peak_flops_per_core * lanes / target.simd_lanes(w.dtype) if c.peak_flops_per_core
                        else lanes * 2 * c.fma_units * c.freq_hz)
            per_core *= kernel_efficiency(w, s, lanes, target.vector_registers, c)
            if nbytes <= l2 * threads:
                bandwidth = c.l2_bytes_per_cycle * c.freq_hz * threads
            elif nbytes <= l3:
                bandwidth = c.l3_bytes_per_cycle * c.freq_hz * threads
            else:
                bandwidth = c.dram_bytes_per_s
            overhead = c.call_overhead_s + (c.fork_join_s if threads > 1 else 0.0)
            out[i] = max(flops / (per_core * threads), nbytes / bandwidth) + overhead
        return out

    def save(self, path: str | os.PathLike) -> None:
        write_model_file(path, {"model": self.name, "features": self.features, "feature_names": [],
                                "target": "log(median_s)", "params": self.params,
                                "trained_on": self.trained_on}, {})

    @classmethod
    def from_file(cls, header: dict[str, Any], payloads: dict[str, bytes], path: str) -> "RooflineModel":
        try:
            return cls(**dict(header.get("params") or {}))
        except ValueError as e:
            raise ModelFileError(f"{path}: {e}") from None
