"""``gpu_analytic``: closed-form features of a Triton GEMM schedule on a CUDA target.

For ``matmul`` / ``batch_matmul`` candidates with the GPU knobs of
:mod:`tilewise.ir.triton_gemm` (other candidates get the problem columns and zeros for the
schedule).  Columns (``log2_`` of positive quantities, clipped at 2^-30):

- problem: ``log2_{m,n,k,batch}``, ``log2_flops``;
- knobs: ``log2_block_{m,n,k}``, ``log2_group_m``, ``log2_num_warps``, ``num_stages``,
  ``log2_split_k``, ``precision_*`` one-hot, ``elt_bytes``, ``bias``, ``act_relu``, ``act_gelu``;
- tiling: ``log2_programs`` (output tiles x batch x split-K), ``util_{m,n,k}`` (useful fraction of
  the padded tiles), ``log2_k_iters`` (k steps per program);
- occupancy: ``smem_bytes`` (log2) and ``smem_over_optin``, ``acc_regs_per_thread``,
  ``blocks_per_sm`` (the tighter of shared memory, registers and 64 warps per SM),
  ``occupancy`` (resident warps / 64), ``waves`` = ceil(programs / (SMs * blocks_per_sm)),
  ``log2_waves``, ``wave_efficiency`` (programs / slots of those waves: the tail effect);
- traffic: ``log2_ai_tile`` (flops per byte one k step loads), ``log2_global_bytes`` (A and B
  loads of all programs plus C, with split-K's atomic adds), ``log2_ai_global``, ``log2_min_bytes``;
- target: ``log2_sms``, ``log2_smem_optin``, ``log2_l2``, ``capability`` (major.minor),
  ``log10_peak_flops`` (this precision), ``log10_peak_bytes_per_s``;
- bounds: ``log10_compute_s`` (flops at the precision's peak, charged for tile padding and the
  wave tail), ``log10_memory_s`` (global bytes at DRAM bandwidth), ``log10_roofline_s`` (their max
  plus 3 us launch: the margin the learned models predict a ratio to).

Peaks come from ``target.peaks`` (measured, :mod:`tilewise.profiling.cuda_target`); a target
without them (a stand-in in tests) falls back to nominal numbers from SM count and capability.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tilewise.features.base import ROOFLINE_BOUNDS, FeatureExtractor, register_extractor
from tilewise.ir.triton_gemm import ELEMENT_BYTES
from tilewise.ir.triton_gemm import PRECISIONS as _GEMM_PRECISIONS
from tilewise.core.candidate import Candidate
from tilewise.core.target import Target

PRECISIONS = tuple(_GEMM_PRECISIONS)
#: nominal dense FLOP/s per SM per cycle (x 2 for FMA) by precision, for targets without peaks:
#: fp32 CUDA cores, then tensor cores (Ampere/Hopper-class ratios)
_NOMINAL_PER_SM_CYCLE = {"f32": 256, "tf32": 1024, "bf16": 2048, "f16": 2048, "f8e4m3": 4096}
_NOMINAL_CLOCK_HZ = 1.6e9
_LAUNCH_S = 3e-6
_TINY = 2.0 ** -30
_NAMES = (["log2_m", "log2_n", "log2_k", "log2_batch", "log2_flops",
           "log2_block_m", "log2_block_n", "log2_block_k", "log2_group_m", "log2_num_warps",
           "num_stages", "log2_split_k"]
          + [f"precision_{p}" for p in PRECISIONS]
          + ["elt_bytes", "bias", "act_relu", "act_gelu",
             "log2_programs", "util_m", "util_n", "util_k", "log2_k_iters",
             "log2_smem_bytes", "smem_over_optin", "acc_regs_per_thread", "blocks_per_sm", "occupancy",
             "waves", "log2_waves", "wave_efficiency",
             "log2_ai_tile", "log2_global_bytes", "log2_ai_global", "log2_min_bytes",
             "log2_sms", "log2_smem_optin", "log2_l2", "capability", "log10_peak_flops",
             "log10_peak_bytes_per_s", "log10_compute_s", "log10_memory_s", "log10_roofline_s"])


def _log2(x: float) -> float:
    return math.log2(max(x, _TINY))


def _log10(x: float) -> float:
    return math.log10(max(x, _TINY))


def peak_flops(target: Target, precision: str) -> float:
    measured = target.peak(f"{precision}_flops_per_s")
    if measured > 0:
        return measured
    return target.cores * _NOMINAL_PER_SM_CYCLE[precision] * _NOMINAL_CLOCK_HZ


def peak_bandwidth(target: Target) -> float:
    return target.peak("dram_bytes_per_s") or 1.0e12


def _capability(target: Target) -> float:
    try:
        cc = int(target.arch.removeprefix("sm_"))
    except ValueError:
        return 0.0
    return cc / 10.0


def candidate_row(c: Candidate, target: Target) -> list[float]:
    w, s = c.workload, c.schedule
    d = w.loop_dims
    m, n, k, batch = d.get("m", 1), d.get("n", 1), d.get("k", 1), d.get("b", 1)
    flops = 2.0 * m * n * k * batch
    caches = target.caches
    sms = max(1, target.cores)
    smem_optin = caches.get("smem_per_block_optin") or caches.get("smem_per_block", 48 * 1024)
    smem_sm = caches.get("smem_per_sm", smem_optin)
    regfile = caches.get("regfile_per_sm", 65536 * 4) // 4
    bw = peak_bandwidth(target)
    target_cols = [_log2(sms), _log2(smem_optin), _log2(caches.get("L2", 0)), _capability(target)]
    if "block_m" not in s:             # not a GPU GEMM schedule: the problem and the target only
        row = [_log2(m), _log2(n), _log2(k), _log2(batch), _log2(flops)] + [0.0] * (len(_NAMES) - 5)
        at = _NAMES.index("log2_sms")
        row[at:at + len(target_cols)] = target_cols
        return row
    bm, bn, bk = int(s["block_m"]), int(s["block_n"]), int(s["block_k"])
    gm, warps, stages = int(s.get("group_m", 8)), int(s.get("num_warps", 4)), int(s.get("num_stages", 3))
    sk, prec, epi = int(s.get("split_k", 1)), str(s.get("precision", "f32")), str(s.get("epilogue", "none"))
    elt = ELEMENT_BYTES.get(prec, 4)
    tm, tn = -(-m // bm), -(-n // bn)
    programs = tm * tn * batch * sk
    k_iters = -(-k // (bk * sk))
    util_m, util_n, util_k = m / (tm * bm), n / (tn * bn), k / (k_iters * bk * sk)
    smem = (bm * bk + bk * bn) * stages * elt
    acc_regs = bm * bn / (32 * warps)
    regs_per_thread = min(255.0, acc_regs + (bm * bk + bk * bn) * elt / 4 / (32 * warps) + 32)
    blocks = max(1, min(smem_sm // max(smem, 1), int(regfile // (regs_per_thread * 32 * warps)) or 1,
                        64 // warps, 32))
    occupancy = min(1.0, blocks * warps / 64)
    slots = sms * blocks
    waves = -(-programs // slots)
    wave_eff = programs / (waves * slots)
    ai_tile = 2.0 * bm * bn * bk / ((bm * bk + bk * bn) * elt)
    out_bytes = 4.0 * m * n * batch * (2 * sk - 1 if sk > 1 else 1)     # atomics read and write C
    global_bytes = elt * batch * (m * k * tn + k * n * tm) + out_bytes + (4.0 * n if epi != "none" else 0.0)
    min_bytes = elt * batch * (m * k + k * n) + 4.0 * m * n * batch
    compute_s = flops / (util_m * util_n * util_k) / (peak_flops(target, prec) * wave_eff)
    # L2 absorbs the re-reads GROUP_M keeps close together; DRAM sees at least min_bytes
    memory_s = max(min_bytes, global_bytes / max(1.0, min(gm, tm))) / bw
    roof = max(compute_s, memory_s) + _LAUNCH_S
    return ([_log2(m), _log2(n), _log2(k), _log2(batch), _log2(flops),
             _log2(bm), _log2(bn), _log2(bk), _log2(gm), _log2(warps), float(stages), _log2(sk)]
            + [float(prec == p) for p in PRECISIONS]
            + [float(elt), float(epi != "none"), float(epi == "bias_relu"), float(epi == "bias_gelu"),
               _log2(programs), util_m, util_n, util_k, _log2(k_iters),
               _log2(smem), smem / smem_optin, acc_regs, float(blocks), occupancy,
               float(waves), _log2(waves), wave_eff,
               _log2(ai_tile), _log2(global_bytes), _log2(flops / global_bytes), _log2(min_bytes)]
            + target_cols
            + [_log10(peak_flops(target, prec)), _log10(bw), _log10(compute_s), _log10(memory_s), _log10(roof)])


@ROOFLINE_BOUNDS.register("cuda")
def gpu_roofline_s(candidates: Sequence[Candidate], target: Target) -> np.ndarray:
    """The ``log10_roofline_s`` column in seconds: the analytic baseline on a cuda target."""
    col = _NAMES.index("log10_roofline_s")
    return np.array([10.0 ** candidate_row(c, target)[col] for c in candidates], dtype=np.float64)


@register_extractor("gpu_analytic")
class GpuAnalyticFeatures(FeatureExtractor):
    """Tiles, waves, occupancy, shared memory, intensity, precision, split-K and the GPU (module doc)."""

    def names(self) -> list[str]:
        return list(_NAMES)

    def extract(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        if not candidates:
            return np.zeros((0, len(_NAMES)), dtype=np.float32)
        return np.asarray([candidate_row(c, target) for c in candidates], dtype=np.float32)
