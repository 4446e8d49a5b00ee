"""``analytic``: closed-form features of a schedule on its workload and target (no compilation).

Every op kind is first mapped to one loop nest ``[p0, p1, p2, r]`` (:mod:`tilewise.features.views`
says how), so a column means the same thing for a matmul, a convolution or a softmax.  Columns
(``log2_`` / ``log10_`` are logs of positive quantities, clipped below at 2^-30):

- ``family_*``: one-hot op family; ``log2_flops_per_iter`` (2 for an FMA, 8 for gelu, ...);
- ``log2_dim_*``: the problem's extents, ``log2_cache_*`` / ``log2_reg_*``: the cache and register
  tile extents, ``log2_cache_trips_*``: cache tiles per thread along each dim,
  ``log2_reg_trips_*``: register tiles per cache tile; ``log2_iters_per_thread``: innermost
  register-tile steps one thread runs;
- ``cache_rem_*`` / ``reg_rem_*``: fraction of a thread's iterations along each dim that fall in
  peeled remainders at that level; ``rem_total``: fraction of the work outside full register
  tiles;
- ``elt_bytes``, ``out_bytes``, ``precision_*``: element sizes and the compute precision;
- ``log2_{cache,reg}_bytes_{in0,in1,out}``: bytes of one tile per operand (A, B, C for a
  contraction; input, filter, output for a conv; inputs and output otherwise);
  ``log2_cache_bytes_over_{L1d,L2,L3}``: the whole cache tile vs each cache level,
  ``log2_{in0,in1,out}_over_{L1d,L2}`` per operand; ``log2_reg_bytes_over_regfile``;
- ``log2_ai_{cache,reg,total}``: arithmetic intensity (flops per byte) of a cache tile, of one
  register-tile step (bytes loaded and stored per step: a contraction's, conv's or reduction's
  accumulators stay in registers) and of the whole problem;
- ``log2_vec_over_lanes``, ``vec_multiple``, ``lane_use``, ``vectors_per_row``: how the vectorized
  dim's register tile fills the SIMD registers;
- ``accumulators``, ``acc_over_regs``, ``regs_needed_over_regs``, ``spills``: register pressure
  (accumulators = reg rows * ceil(vector / lanes); needed adds one row of vectors and a broadcast);
- ``threads``, ``threads_over_cores``, ``load_imbalance`` (largest share / mean share),
  ``idle_threads``, ``split_p{0,1,2}``, ``log2_units_per_thread``;
- ``promote``, ``unroll``, ``vectorize``, ``interchange_*`` (contractions; conv = default order),
  ``stride``;
- memory layout, per operand (``in0``, ``in1``, ``out``) as the kernel streams it: ``log2_row_stride_*``
  (bytes between the rows it reads: B's packed panel width when promoted), ``row_align_*`` (trailing
  zero bits of that stride, capped at 14: power-of-two strides alias), ``log2_l1_sets_*`` (L1 sets the
  rows map to: an L1 indexed within a page has page / line sets per way, so rows a multiple of 4 KiB
  apart all fall in one), ``log2_rows_over_l1_*`` (rows one register tile's sweep touches -- B's Kc
  rows, the mr rows of A and C, a tile of rows -- over the lines the L1 holds for them: above 0 they
  evict each other), ``log2_pages_*`` (4 KiB pages that sweep touches, the TLB's load);
  ``log2_pack_per_fma`` (B elements copied per FMA when promoted: 1 / Mc);
- ``log2_flops``, ``log2_bytes``; ``log10_compute_s`` (flops at cores * lanes * 2 FMA units * 2
  flops * 3 GHz), ``log10_memory_s`` (bytes at 20 GB/s), ``log10_roofline_s`` (their max) and
  ``log10_schedule_bound_s`` (the compute bound charged for load imbalance, unused lanes and
  scalar code).

Extraction is vectorized with numpy per op family; what is left in Python is one pass reading each
schedule's knobs (per-workload facts are memoized).  Measured: 130k-180k candidates/s for 100k
candidates of one workload, ~55k/s for 10k candidates spread over 1000 new workloads.  Rows are
float32.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tilewise.features.base import FeatureExtractor, batch_memo, register_extractor
from tilewise.features.views import FAMILIES, INTERCHANGES, PRECISIONS, View, build_view
from tilewise.core.candidate import Candidate
from tilewise.core.target import Target

DIMS = ("p0", "p1", "p2", "r")
OPERANDS = ("in0", "in1", "out")
CACHES = ("L1d", "L2", "L3")
#: the "peak-ish" machine the ideal time bounds assume
CLOCK_HZ = 3e9
FMA_UNITS = 2
MEMORY_BYTES_PER_S = 20e9
#: bytes of a page (the TLB's unit) and of a cache line; an L1 indexed with page-offset bits has
#: PAGE / LINE sets and L1d / PAGE ways
PAGE = 4096
LINE = 64
_TINY = 2.0 ** -30


def _log2(x) -> np.ndarray:
    return np.log2(np.maximum(x, _TINY))


def _log10(x) -> np.ndarray:
    return np.log10(np.maximum(x, _TINY))


def _one_hot(index: np.ndarray, k: int) -> np.ndarray:
    return (index.astype(int)[:, None] == np.arange(k)[None, :]).astype(np.float64)


def _remainders(Dt: np.ndarray, C: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fractions of the per-thread extent in a peeled partial cache tile, and in partial register
    tiles (those of the full cache tiles plus the partial cache tile's own)."""
    Dt = np.maximum(Dt, 1)
    C, T = np.maximum(C, 1), np.maximum(T, 1)
    cache_tail = np.mod(Dt, C)
    reg_tail = np.floor(Dt / C) * np.mod(C, T) + np.mod(cache_tail, T)
    return cache_tail / Dt, reg_tail / Dt


class _Columns(dict):
    """Column name -> values, in insertion (= column) order."""

    def put(self, prefix: str, values: np.ndarray, suffixes: Sequence[str]) -> None:
        for j, s in enumerate(suffixes):
            self[f"{prefix}{s}"] = values[:, j]


def compute(v: View, target: Target) -> dict[str, np.ndarray]:
    """Every analytic column of the candidates in ``v``, by name, in column order."""
    out = _Columns()
    out.put("family_", _one_hot(v.family, len(FAMILIES)), FAMILIES)
    out["log2_flops_per_iter"] = _log2(v.flops_per_iter)
    _extents(v, out)
    cache_total = _tile_bytes(v, target, out)
    _intensity(v, out, cache_total)
    lane_use = _vectors(v, target, out)
    used, imbalance = _threads(v, target, out)
    _knobs(v, out)
    _layout(v, target, out)
    _totals(v, target, out, used, imbalance, lane_use)
    return dict(out)


def _extents(v: View, out: _Columns) -> None:
    """Extents, trips and remainders per loop dim."""
    n = v.n
    scale = np.stack([v.m0, np.ones(n), np.ones(n), v.rm], axis=1)
    scale_t = np.stack([v.m0t, np.ones(n), np.ones(n), v.rm], axis=1)
    out.put("log2_dim_", _log2(v.D * scale), DIMS)
    out["log2_filter_taps"] = _log2(v.rm)
    out.put("log2_cache_", _log2(v.C * scale_t), DIMS)
    out.put("log2_reg_", _log2(v.T), DIMS)
    cache_trips = np.ceil(v.Dt / np.maximum(v.C, 1))
    reg_trips = np.ceil(v.C / np.maximum(v.T, 1))
    out.put("log2_cache_trips_", _log2(cache_trips), DIMS)
    out.put("log2_reg_trips_", _log2(reg_trips), DIMS)
    out["log2_iters_per_thread"] = _log2(v.m0t * v.rm * np.prod(cache_trips * reg_trips, axis=1))
    cache_rem, reg_rem = _remainders(v.Dt, v.C, v.T)
    out.put("cache_rem_", cache_rem, DIMS)
    out.put("reg_rem_", reg_rem, DIMS)
    out["rem_total"] = 1.0 - np.prod(1.0 - reg_rem, axis=1)


def _tile_bytes(v: View, target: Target, out: _Columns) -> np.ndarray:
    """Element sizes, bytes per tile vs the memory hierarchy; returns the cache tile's bytes."""
    caches = target.caches
    out["elt_bytes"] = v.elt_bytes
    out["out_bytes"] = v.out_bytes
    out.put("precision_", _one_hot(v.precision, len(PRECISIONS)), PRECISIONS)
    out.put("log2_cache_bytes_", _log2(v.cache_bytes), OPERANDS)
    out.put("log2_reg_bytes_", _log2(v.reg_bytes), OPERANDS)
    cache_total = v.cache_bytes.sum(axis=1)
    for level in CACHES:
        out[f"log2_cache_bytes_over_{level}"] = _log2(cache_total) - _log2(caches.get(level, 0))
    for j, op in enumerate(OPERANDS):
        for level in CACHES[:2]:
            out[f"log2_{op}_over_{level}"] = _log2(v.cache_bytes[:, j]) - _log2(caches.get(level, 0))
    regfile_bytes = float(target.vector_registers) * target.simd_bits / 8
    out["log2_reg_bytes_over_regfile"] = _log2(v.reg_bytes.sum(axis=1)) - _log2(regfile_bytes)
    return cache_total


def _intensity(v: View, out: _Columns, cache_total: np.ndarray) -> None:
    """Arithmetic intensity of a cache tile, of one register-tile step and of the whole problem."""
    cache_flops = v.flops_per_iter * v.m0t * v.rm * np.prod(v.C, axis=1)
    reg_flops = v.flops_per_iter * np.prod(v.T, axis=1)
    out["log2_ai_cache"] = _log2(cache_flops) - _log2(cache_total)
    accumulates = np.isin(v.family, (0, 1, 3))          # the output tile stays in registers across r
    reg_traffic = v.reg_bytes[:, 0] + v.reg_bytes[:, 1] + np.where(accumulates, 0.0, v.reg_bytes[:, 2])
    out["log2_ai_reg"] = _log2(reg_flops) - _log2(reg_traffic)
    out["log2_ai_total"] = _log2(v.flops) - _log2(v.bytes_total)


def _vectors(v: View, target: Target, out: _Columns) -> np.ndarray:
    """How the vectorized dim fills the SIMD registers, and register pressure; returns lane use."""
    lanes = float(target.simd_lanes())
    regs = float(target.vector_registers)
    vec = v.T[np.arange(v.n), v.vec_axis.astype(int)]
    vectors = np.ceil(vec / lanes)
    lane_use = vec / (vectors * lanes)
    out["log2_vec_over_lanes"] = _log2(vec) - np.log2(lanes)
    out["vec_multiple"] = (np.mod(vec, lanes) == 0).astype(np.float64)
    out["lane_use"] = lane_use
    out["vectors_per_row"] = vectors
    acc = v.T[:, 1] * vectors
    needed = acc + vectors + 1
    out["accumulators"] = acc
    out["acc_over_regs"] = acc / regs
    out["regs_needed_over_regs"] = needed / regs
    out["spills"] = (needed > regs).astype(np.float64)
    return lane_use


def _threads(v: View, target: Target, out: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """Thread split and balance; returns (threads that get a core, load imbalance)."""
    used = np.minimum(v.threads, target.cores)
    share = np.ceil(v.split_units / np.maximum(v.threads, 1))
    imbalance = share * v.threads / np.maximum(v.split_units, 1)
    out["threads"] = v.threads
    out["threads_over_cores"] = v.threads / max(target.cores, 1)
    out["load_imbalance"] = imbalance
    out["idle_threads"] = np.maximum(0.0, v.threads - v.split_units) / np.maximum(v.threads, 1)
    split = _one_hot(v.split_axis, 3)
    split[v.split_axis == 3, 1:3] = 1.0                    # "mn": a 2-D grid over p1 and p2
    out.put("split_", split * (v.threads > 1)[:, None], DIMS[:3])
    out["log2_units_per_thread"] = _log2(share)
    return used, imbalance


def _knobs(v: View, out: _Columns) -> None:
    out["promote"] = v.promote
    out["unroll"] = v.unroll
    out["vectorize"] = v.vectorize
    out.put("interchange_", _one_hot(v.interchange, len(INTERCHANGES)),
            ["".join("mnk"[i] for i in p) for p in INTERCHANGES])
    out["stride"] = v.stride


def _layout(v: View, target: Target, out: _Columns) -> None:
    """Memory layout of the streams: row strides, their alignment, L1 sets, pages, packing."""
    ways = max(target.caches.get("L1d", 8 * PAGE) // PAGE, 1)
    stride = np.maximum(np.rint(v.row_stride), 1).astype(np.int64)
    groups = PAGE // LINE
    sets = np.where(stride % LINE == 0, groups // np.gcd(stride // LINE, groups), groups)
    low_bit = stride & -stride
    rows_ = v.sweep_rows
    pages = np.where(stride >= PAGE, rows_, np.maximum(rows_ * stride / PAGE, np.minimum(rows_, 1)))
    out.put("log2_row_stride_", _log2(stride), OPERANDS)
    out.put("row_align_", np.minimum(np.log2(low_bit), 14.0), OPERANDS)
    out.put("log2_l1_sets_", _log2(sets), OPERANDS)
    out.put("log2_rows_over_l1_", _log2(rows_) - _log2(sets * ways), OPERANDS)
    out.put("log2_pages_", _log2(pages), OPERANDS)
    out["log2_pack_per_fma"] = _log2(v.promote / np.maximum(v.C[:, 1], 1))


def _totals(v: View, target: Target, out: _Columns, used: np.ndarray, imbalance: np.ndarray,
            lane_use: np.ndarray) -> None:
    """Totals and ideal times."""
    lanes = float(target.simd_lanes())
    compute_s = v.flops / (used * lanes * FMA_UNITS * 2 * CLOCK_HZ)
    memory_s = v.bytes_total / MEMORY_BYTES_PER_S
    slowdown = imbalance * np.where(v.vectorize > 0, 1.0 / np.maximum(lane_use, _TINY), lanes)
    out["log2_flops"] = _log2(v.flops)
    out["log2_bytes"] = _log2(v.bytes_total)
    out["log10_compute_s"] = _log10(compute_s)
    out["log10_memory_s"] = _log10(memory_s)
    out["log10_roofline_s"] = _log10(np.maximum(compute_s, memory_s))
    out["log10_schedule_bound_s"] = _log10(np.maximum(compute_s * slowdown, memory_s))


def computed(candidates: Sequence[Candidate], target: Target):
    """``(view, order, compute(view, target))`` of ``candidates``: computed once per Concat
    extraction (``ceilings`` beside ``analytic`` reads the same; the view is most of the cost)."""
    def run():
        view, order = build_view([(c.workload, c.schedule) for c in candidates])
        return view, order, compute(view, target)
    return batch_memo("analytic.computed", run)


def _reference_target() -> Target:
    return Target(kind="cpu", name="reference", arch="x86_64", isa=(), cores=1, simd_bits=256,
                  cache_bytes=(("L1d", 32768), ("L2", 1 << 20), ("L3", 1 << 25)))


_NAMES = list(compute(View.empty(), _reference_target()))


@register_extractor("analytic")
class AnalyticFeatures(FeatureExtractor):
    """Closed-form schedule features; see the module docstring for the columns.  Pure, cheap
    (no compilation), the extractor for the 100k-candidate scoring path.  A candidate whose op
    kind the views do not know raises ValueError."""

    def names(self) -> list[str]:
        return list(_NAMES)

    def extract(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        view, order, cols = computed(candidates, target)
        block = np.empty((len(candidates), len(_NAMES)), dtype=np.float32)
        block[order] = np.stack([cols[name] for name in _NAMES], axis=1) if len(order) else 0
        return block
