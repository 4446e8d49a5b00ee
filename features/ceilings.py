"""``ceilings``: a schedule's ideal times against its target's *measured* ceilings (issue 19).

``analytic`` bounds a kernel by a nominal machine (3 GHz, two FMA units per lane, 20 GB/s): two
CPUs with the same vector width get the same bound, though a double-pumped 512-bit datapath (Zen 4)
does half the FMAs per cycle of a full-width one (Zen 5).  These columns divide the same work by
what the target measured (``tilewise info``: profiling/hardware.py), so that a model that learns
``log(time) - log(bound)`` (the margin, ``log10_measured_roofline_s``) carries the level of one
CPU over to another:

- ``log10_fma_per_core``, ``log10_dram_bytes_per_s``, ``log10_l1_bytes_per_s``: the ceilings used
  (flop/s of one core at the target's widest f32 vector, DRAM copy bandwidth at the thread count
  the schedule uses, L1 load bandwidth);
- ``log10_compute_peak_s``: flops over the measured FMA rate of the cores the schedule uses;
  ``log10_compute_bound_s``: the same charged for load imbalance, unused lanes and scalar code;
- ``log10_dram_s``: the problem's bytes over the measured DRAM bandwidth; ``log10_l1_s``: over the
  L1 load bandwidth (one pass through L1 per byte, a floor for cache-resident work);
- ``log10_fork_join_s``: the measured cost of entering a parallel region (threads > 1; else 1 ns);
- ``log10_measured_roofline_s``: max(compute bound, DRAM time) + fork/join;
- ``measured``: 1 when the figures were measured for this target, 0 when the nominal machine
  stands in (a record of a CPU nobody measured; then the columns equal analytic's bounds).

The figures come from the target itself (``Target.peaks``: records carry them where they were
written with them) or this machine's cached descriptor of it (``core.descriptor``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tilewise.core.candidate import Candidate
from tilewise.core.descriptor import measured_figures
from tilewise.core.target import Target
from tilewise.features import analytic
from tilewise.features.base import FeatureExtractor, register_extractor

NAMES = ["log10_fma_per_core", "log10_dram_bytes_per_s", "log10_l1_bytes_per_s", "log10_compute_peak_s",
         "log10_compute_bound_s", "log10_dram_s", "log10_l1_s", "log10_fork_join_s",
         "log10_measured_roofline_s", "measured"]


def nominal_fma(target: Target) -> float:
    """analytic's FMA rate per core: lanes x FMA units x 2 flops x the nominal clock."""
    return target.simd_lanes() * analytic.FMA_UNITS * 2 * analytic.CLOCK_HZ


def ceilings(target: Target, threads: int) -> dict[str, float]:
    """The ceilings of ``target`` for a schedule on ``threads`` threads, and whether measured."""
    got = measured_figures(target)
    lanes = target.simd_lanes()
    fma = got.get(f"fma_f32_{target.simd_bits}b_1t_flops_per_s")
    used = min(max(threads, 1), max(target.cores, 1))
    dram = got.get(f"stream_dram_{used}t_bytes_per_s") or got.get("stream_dram_1t_bytes_per_s") \
        or got.get("load_dram_bytes_per_s")
    l1 = got.get("load_L1d_bytes_per_s")
    fork = got.get(f"omp_fork_join_{used}t_s") if used > 1 else None
    return {"fma": fma or nominal_fma(target), "dram": dram or analytic.MEMORY_BYTES_PER_S,
            "l1": l1 or lanes * 4 * 2 * analytic.CLOCK_HZ,       # two vector loads per cycle
            "fork": fork or (1e-6 if used > 1 else 1e-9), "measured": float(fma is not None)}


@register_extractor("ceilings")
class CeilingFeatures(FeatureExtractor):
    """Ideal times against the target's measured ceilings; see the module docstring."""

    def names(self) -> list[str]:
        return list(NAMES)

    def extract(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        out = np.zeros((len(candidates), len(NAMES)), dtype=np.float32)
        if not candidates:
            return out
        view, order, cols = analytic.computed(candidates, target)   # shared with analytic's extract
        threads = np.asarray(view.threads, dtype=np.float64)
        used = np.minimum(np.maximum(threads, 1), max(target.cores, 1))
        counts, row = np.unique(used, return_inverse=True)       # one ceilings lookup per thread count
        per = np.array([[c["fma"], c["dram"], c["l1"], c["fork"], c["measured"]]
                        for c in (ceilings(target, int(t)) for t in counts)])
        fma, dram, l1, fork, measured = per[row].T
        # analytic's compute bounds are flops / (used * nominal): rescale them to the measured rate
        compute_peak = cols["log10_compute_s"] + np.log10(nominal_fma(target) / fma)
        slowdown = cols["load_imbalance"] * np.where(      # analytic's charge for imbalance and lanes
            cols["vectorize"] > 0, 1.0 / np.maximum(cols["lane_use"], 2.0 ** -30), float(target.simd_lanes()))
        compute_bound = compute_peak + np.log10(slowdown)
        bytes_total = 2.0 ** cols["log2_bytes"]
        dram_s = np.log10(bytes_total / dram)
        l1_s = np.log10(bytes_total / (l1 * used))
        roof = np.log10(np.maximum(10.0 ** compute_bound, 10.0 ** dram_s) + fork * (threads > 1))
        block = np.stack([np.log10(fma), np.log10(dram), np.log10(l1), compute_peak, compute_bound, dram_s,
                          l1_s, np.log10(fork), roof, measured], axis=1)
        out[order] = block.astype(np.float32)
        return out

