"""Every op kind seen as one loop nest: the common view the analytic features are computed on.

A candidate becomes four loop dims ``[p0, p1, p2, r]`` -- up to three parallel dims and one
reduction dim -- with a cache tile and a register tile on each:

================  ==================  ==============  ===============  =====================
family            p0                  p1              p2 (vector)      r
================  ==================  ==============  ===============  =====================
contraction       b (1 for matmul)    m: Mc, mr       n: Nc, nr        k: Kc, unroll
conv              n*oh: n*OHc, 1      ow: OWc, owr    f: Fc, fr        kh*kw*c: kh*kw*Cc, c_tile
elementwise       leading dims        rows: tile      cols: vector     (1)
reduction         leading dims        rows: tile      (1)              cols: vector
softmax           leading dims        rows: tile, 1   (1)              cols: cols, vector
================  ==================  ==============  ===============  =====================

(the vectorized dim is p2, or r for reductions and softmax).  ``p0`` carries a multiplier
``m0`` (conv's batch n, never tiled at the cache level) and ``r`` one ``rm`` (conv's kh*kw
filter taps, one at a time in registers), so ``D`` holds oh and c and the extents the features
report are ``m0 * D[0]`` and ``rm * D[3]``.

Threads split one dim before any tiling (``scf.forall``), so the cache tile, the trip counts and
the remainders are those of one thread's share: ``Dt`` (the largest share; ``m0t`` for conv's
n).  A knob a schedule leaves out takes the value the op kind's ``schedule()`` reads in its
absence (tile 0 = whole dim, reg_tile 1, vectorize True, unroll 1, threads 1, ...).

Each family turns a batch of (workload, schedule) pairs into a :class:`View` of numpy arrays with
one Python pass over the knobs (per-workload facts are memoized) and numpy for the rest.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np

from tilewise.ir.dtypes import DTYPES
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload

FAMILIES = ("contraction", "conv", "elementwise", "reduction", "softmax")
PRECISIONS = ("f32", "bf16", "f16", "i8")
#: cache-tile loop orders of a contraction, (m, n, k) = (0, 1, 2) the default
INTERCHANGES = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
_PREC = {p: i for i, p in enumerate(PRECISIONS)}
_IX = {p: i for i, p in enumerate(INTERCHANGES)}
_ELT_BYTES = np.array([DTYPES[p].nbytes for p in PRECISIONS], dtype=np.float64)
_FAMILY_OF_OP = {"matmul": 0, "batch_matmul": 0, "conv2d_nhwc": 1, "add": 2, "mul": 2, "relu": 2,
                 "gelu": 2, "reduce_sum": 3, "reduce_max": 3, "softmax": 4}


@dataclass
class View:
    """Per-candidate arrays (length n; ``(n, 4)`` for per-dim, ``(n, 3)`` for per-operand)."""
    family: np.ndarray        # index into FAMILIES
    D: np.ndarray             # (n, 4) whole-problem extents [p0, p1, p2, r] (without m0, rm)
    Dt: np.ndarray            # (n, 4) one thread's share
    m0: np.ndarray            # multiplier of p0 (conv: n)
    m0t: np.ndarray           # its per-thread share
    rm: np.ndarray            # multiplier of r (conv: kh * kw)
    C: np.ndarray             # (n, 4) cache tile extents (within Dt; without m0, rm)
    T: np.ndarray             # (n, 4) register tile extents (within C)
    vec_axis: np.ndarray      # 2 or 3: the vectorized dim
    cache_bytes: np.ndarray   # (n, 3) bytes of one cache tile per operand: in0, in1, out
    reg_bytes: np.ndarray     # (n, 3) the same for one register tile (one k step / tap)
    flops_per_iter: np.ndarray
    threads: np.ndarray
    split_axis: np.ndarray    # 0..2 (-1: none); the dim threads split
    split_units: np.ndarray   # what is divided among the threads (rows, channels, row tiles)
    promote: np.ndarray
    unroll: np.ndarray
    vectorize: np.ndarray
    interchange: np.ndarray   # index into INTERCHANGES, -1 for ops without cache-level loops
    precision: np.ndarray     # index into PRECISIONS
    elt_bytes: np.ndarray     # bytes of an input element in the compute precision (weight-only: of a weight + its scale share)
    out_bytes: np.ndarray     # bytes of an output element
    flops: np.ndarray
    bytes_total: np.ndarray   # every argument once, inputs in the compute precision
    stride: np.ndarray
    row_stride: np.ndarray    # (n, 3) bytes between consecutive rows of each operand as the kernel reads it
    sweep_rows: np.ndarray    # (n, 3) rows of each operand one register tile's sweep touches

    @property
    def n(self) -> int:
        return len(self.family)

    @classmethod
    def concat(cls, views: Sequence["View"]) -> "View":
        return cls(**{f.name: np.concatenate([getattr(v, f.name) for v in views]) for f in fields(cls)})

    @classmethod
    def empty(cls) -> "View":
        def z(*shape):
            return np.zeros((0,) + shape)
        kw = {f.name: z() for f in fields(cls)}
        kw.update(D=z(4), Dt=z(4), C=z(4), T=z(4), cache_bytes=z(3), reg_bytes=z(3), row_stride=z(3),
                  sweep_rows=z(3))
        return cls(**kw)


def family_of(w: Workload) -> int:
    try:
        return _FAMILY_OF_OP[w.op]
    except KeyError:
        raise ValueError(f"the analytic features do not know op {w.op!r}: "
                         f"known are {', '.join(sorted(_FAMILY_OF_OP))}") from None


def _ceil_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.ceil(a / np.maximum(b, 1))


def _tile(knob: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Cache tile extent: 0 means the whole (per-thread) dim; never more than the dim."""
    return np.where(knob <= 0, extent, np.minimum(knob, extent))


@functools.lru_cache(maxsize=8192)
def _arg_elements(w: Workload) -> tuple[float, float, int]:
    """(input elements, output elements, output element bytes) of ``w``'s kernel."""
    specs = w.kind.args(w, w.dtype)
    ins = sum(float(np.prod(a.shape)) for a in specs if not a.is_output)
    outs = sum(float(np.prod(a.shape)) for a in specs if a.is_output)
    return ins, outs, DTYPES[specs[-1].dtype].nbytes


# -- contraction -----------------------------------------------------------------------------------
#: parallel_dim -> split axis; "mn" (axis 3) is a 2-D grid over p1 and p2 (``thread_grid``)
_SPLITS = ("b", "m", "n", "mn")


def _grid(threads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from tilewise.ir.ops.matmul import thread_grid
    tm = np.array([thread_grid(int(t))[0] for t in threads], dtype=np.float64)
    return tm, threads / tm


@functools.lru_cache(maxsize=8192)
def _contraction_info(w: Workload) -> tuple:
    """Shapes and sizes; ``a_bytes, b_bytes`` are -1 where the compute precision sets the operands'
    element width, and a weight-only matmul's own widths where it does not (A's dtype; B's bits / 8
    plus its f32 scale per group: 4.5 / 8 bytes a w4 weight at g128)."""
    b, m, n, k = w.kind.mnk(w)
    ins, outs, ob = _arg_elements(w)
    a_bytes = b_bytes = -1.0
    if getattr(w.kind, "weight_only", False):
        a_bytes = float(DTYPES[w.kind.activation_dtype(w)].nbytes)
        b_bytes = w.kind.bits(w) / 8 + DTYPES["f32"].nbytes / w.kind.group(w)
        ins = m * k + k * n       # elements of A and of the weights (the scales are in b_bytes)
    return b, m, n, k, ins, outs, ob, w.flops, a_bytes, b_bytes


def _precision_index(w: Workload, s: Schedule) -> int:
    """The compute precision: a weight-only matmul computes in its activations' dtype."""
    p = s.get("precision", w.dtype)
    return _PREC[w.kind.activation_dtype(w)] if getattr(w.kind, "weight_only", False) else _PREC[p]


def _contraction_row(w: Workload, s: Schedule) -> tuple:
    mc, nc, kc = s.get("tile", (0, 0, 0))
    mr, nr = s.get("reg_tile", (1, 1))
    return _contraction_info(w) + (
        mc, nc, kc, mr, nr, _IX.get(tuple(s.get("interchange", (0, 1, 2))), 0), bool(s.get("promote", False)),
        bool(s.get("vectorize", True)), int(s.get("unroll", 1)), int(s.get("threads", 1)),
        _SPLITS.index(s.get("parallel_dim", "n")), _precision_index(w, s))


def _contraction_view(a: np.ndarray) -> View:
    (b, m, n, k, ins, outs, ob, flops, a_bytes, b_bytes, mc, nc, kc, mr, nr, ix, promote, vec, unroll,
     threads, pdim, prec) = a.T
    n_rows = len(a)
    one = np.ones(n_rows)
    D = np.stack([b, m, n, k], axis=1)
    split = pdim.astype(int)                               # b -> p0, m -> p1, n -> p2, mn -> 3
    grid = split == 3
    axis = np.where(grid, 1, split)
    units = D[np.arange(n_rows), axis]
    Dt = D.copy()
    Dt[np.arange(n_rows), axis] = _ceil_div(units, threads)
    if grid.any():                                         # tm x tn threads over m and n
        tm, tn = _grid(threads[grid])
        Dt[grid, 1] = _ceil_div(D[grid, 1], tm)
        Dt[grid, 2] = _ceil_div(D[grid, 2], tn)
        units = np.where(grid, D[:, 1] * D[:, 2], units)
    C = np.stack([one, _tile(mc, Dt[:, 1]), _tile(nc, Dt[:, 2]), _tile(kc, Dt[:, 3])], axis=1)
    T = np.stack([one, np.minimum(mr, C[:, 1]), np.minimum(nr, C[:, 2]), np.minimum(unroll, C[:, 3])], axis=1)
    compute_bytes = _ELT_BYTES[prec.astype(int)]
    ea = np.where(a_bytes > 0, a_bytes, compute_bytes)
    eb = np.where(b_bytes > 0, b_bytes, compute_bytes)      # B: the streamed weights' width
    cache_bytes = np.stack([C[:, 1] * C[:, 3] * ea, C[:, 3] * C[:, 2] * eb, C[:, 1] * C[:, 2] * ob], axis=1)
    reg_bytes = np.stack([T[:, 1] * T[:, 3] * ea, T[:, 3] * T[:, 2] * eb, T[:, 1] * T[:, 2] * ob], axis=1)
    # A is read along its rows (k); B row by row down k, from the packed Kc x Nc panel if promoted; C
    # row by row (mr rows of it live in registers)
    row_stride = np.stack([k * ea, np.where(promote > 0, C[:, 2], n) * eb, n * ob], axis=1)
    in_bytes = np.where(b_bytes > 0, m * k * ea + k * n * eb, ins * eb)
    sweep_rows = np.stack([T[:, 1], C[:, 3], T[:, 1]], axis=1)
    return View(family=0 * one, D=D, Dt=Dt, m0=one, m0t=one, rm=one, C=C, T=T, vec_axis=2 * one,
                cache_bytes=cache_bytes, reg_bytes=reg_bytes, flops_per_iter=2 * one, threads=threads,
                split_axis=split.astype(float), split_units=units, promote=promote, unroll=unroll,
                vectorize=vec, interchange=ix, precision=prec, elt_bytes=eb, out_bytes=ob, flops=flops,
                bytes_total=in_bytes + outs * ob, stride=one, row_stride=row_stride, sweep_rows=sweep_rows)


# -- conv ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8192)
def _conv_info(w: Workload) -> tuple:
    g = w.kind.geometry(w)
    ins, outs, ob = _arg_elements(w)
    return (g["n"], g["oh"], g["ow"], g["f"], g["c"], g["kh"], g["kw"], g["stride"], ins, outs, ob, w.flops)


def _conv_row(w: Workload, s: Schedule) -> tuple:
    toh, tow, tf, tc = s.get("tile", (0, 0, 0, 0))
    owr, fr = s.get("reg_tile", (1, 1))
    return _conv_info(w) + (
        toh, tow, tf, tc, owr, fr, int(s.get("c_tile", 1)), bool(s.get("vectorize", True)),
        int(s.get("threads", 1)), ("n", "oh", "f").index(s.get("parallel_dim", "oh")),
        _PREC[s.get("precision", w.dtype)])


def _conv_view(a: np.ndarray) -> View:
    (nb, oh, ow, f, c, kh, kw, stride, ins, outs, ob, flops, toh, tow, tf, tc, owr, fr, c_tile, vec,
     threads, pdim, prec) = a.T
    one = np.ones(len(a))
    D = np.stack([oh, ow, f, c], axis=1)
    by_n, by_oh, by_f = pdim == 0, pdim == 1, pdim == 2
    units = np.where(by_n, nb, np.where(by_oh, oh, f))
    share = _ceil_div(units, threads)
    m0t = np.where(by_n, share, nb)
    Dt = np.stack([np.where(by_oh, share, oh), ow, np.where(by_f, share, f), c], axis=1)
    C = np.stack([_tile(toh, Dt[:, 0]), _tile(tow, Dt[:, 1]), _tile(tf, Dt[:, 2]), _tile(tc, Dt[:, 3])], axis=1)
    T = np.stack([one, np.minimum(owr, C[:, 1]), np.minimum(fr, C[:, 2]), np.minimum(c_tile, C[:, 3])], axis=1)
    eb = _ELT_BYTES[prec.astype(int)]
    in_rows = (C[:, 0] - 1) * stride + kh
    in_cols = (C[:, 1] - 1) * stride + kw
    cache_bytes = np.stack([m0t * in_rows * in_cols * C[:, 3] * eb, kh * kw * C[:, 3] * C[:, 2] * eb,
                            m0t * C[:, 0] * C[:, 1] * C[:, 2] * ob], axis=1)
    reg_bytes = np.stack([((T[:, 1] - 1) * stride + 1) * T[:, 3] * eb, T[:, 3] * T[:, 2] * eb,
                          T[:, 1] * T[:, 2] * ob], axis=1)
    split = np.where(by_f, 2, 0).astype(float)             # n and oh both live in p0
    # the input is read pixel by pixel (stride * C apart) along a row of owr outputs, the filter
    # channel row by channel row (F apart) over a c_tile step, the output pixel by pixel
    row_stride = np.stack([stride * c * eb, f * eb, f * ob], axis=1)
    sweep_rows = np.stack([T[:, 1], T[:, 3], T[:, 1]], axis=1)
    return View(family=one, D=D, Dt=Dt, m0=nb, m0t=m0t, rm=kh * kw, C=C, T=T, vec_axis=2 * one,
                cache_bytes=cache_bytes, reg_bytes=reg_bytes, flops_per_iter=2 * one, threads=threads,
                split_axis=split, split_units=units, promote=0 * one, unroll=one, vectorize=vec,
                interchange=0 * one, precision=prec, elt_bytes=eb, out_bytes=ob, flops=flops,
                bytes_total=ins * eb + outs * ob, stride=stride, row_stride=row_stride, sweep_rows=sweep_rows)


# -- row-wise: elementwise, reductions, softmax -----------------------------------------------------
@functools.lru_cache(maxsize=8192)
def _rowwise_info(w: Workload) -> tuple:
    shape = w.shapes[0]
    rank = len(shape)
    lead = float(np.prod(shape[:-2])) if rank > 2 else 1.0
    rows = shape[-2] if rank >= 2 else 1
    ins, outs, ob = _arg_elements(w)
    arity = len([a for a in w.kind.args(w, w.dtype) if not a.is_output])
    return (family_of(w), lead, rows, shape[-1], shape[0], rank, arity, ins, outs, ob, w.flops,
            _PREC[w.dtype])


def _rowwise_row(w: Workload, s: Schedule) -> tuple:
    return _rowwise_info(w) + (int(s.get("tile", 1)), int(s.get("vector", 1)), bool(s.get("vectorize", True)),
                               int(s.get("threads", 1)))


def _rowwise_view(a: np.ndarray) -> View:
    (fam, lead, rows, cols, dim0, rank, arity, ins, outs, ob, flops, prec, tile, vector, vec,
     threads) = a.T
    one = np.ones(len(a))
    ew, red, smax = fam == 2, fam == 3, fam == 4
    p2 = np.where(ew, cols, 1)
    r = np.where(ew, 1, cols)
    D = np.stack([lead, rows, p2, r], axis=1)
    # threads split dim 0 of the shape (elementwise, reductions); softmax's forall runs over the
    # leading dims x row tiles, which OpenMP shares out
    row_tiles = np.maximum(1, np.floor(rows / np.maximum(tile, 1)))
    units = np.where(smax, lead * row_tiles, dim0)
    split = np.where(rank >= 3, 0, np.where(rank == 2, 1, 2))
    split = np.where(smax & (lead == 1), 1, np.where(smax, 0, split))
    share = _ceil_div(units, threads)
    share_extent = np.where(smax & (lead == 1), np.ceil(rows / row_tiles) * _ceil_div(row_tiles, threads),
                            np.where(smax, share, share * D[np.arange(len(a)), split] / np.maximum(dim0, 1)))
    Dt = D.copy()
    Dt[np.arange(len(a)), split] = np.minimum(share_extent, D[np.arange(len(a)), split])
    t_rows = np.minimum(tile, Dt[:, 1])
    vec_axis = np.where(ew, 2, 3)
    t_vec = np.minimum(vector, np.where(ew, Dt[:, 2], Dt[:, 3]))
    T = np.stack([one, np.where(smax, 1, t_rows), np.where(ew, t_vec, 1), np.where(ew, 1, t_vec)], axis=1)
    C = T.copy()                      # one level: the tile x vector block is the loop body
    C[:, 1] = t_rows
    C[:, 3] = np.where(smax, Dt[:, 3], C[:, 3])        # softmax: a tile of whole rows stays in cache
    eb = _ELT_BYTES[prec.astype(int)]

    def operand_bytes(ext: np.ndarray) -> np.ndarray:
        block = ext[:, 1] * ext[:, 2] * ext[:, 3]
        out = np.where(red, ext[:, 1] * ob, block * ob)
        return np.stack([block * eb, np.where(arity >= 2, block * eb, 0), out], axis=1)

    fpi = flops / np.maximum(lead * rows * cols, 1)
    # every operand is read (written) a tile of rows at a time, rows a row length apart; a tile of
    # whole rows is one run of memory
    row_stride = np.stack([cols * eb, cols * eb, np.where(red, ob, cols * ob)], axis=1)
    sweep = np.where(t_vec >= np.where(ew, Dt[:, 2], Dt[:, 3]), 1, T[:, 1])
    sweep_rows = np.stack([sweep, np.where(arity >= 2, sweep, 0), np.where(red, 1, sweep)], axis=1)
    return View(family=fam, D=D, Dt=Dt, m0=one, m0t=one, rm=one, C=C, T=T, vec_axis=vec_axis.astype(float),
                cache_bytes=operand_bytes(C), reg_bytes=operand_bytes(T), flops_per_iter=fpi,
                threads=threads, split_axis=split.astype(float), split_units=units, promote=0 * one,
                unroll=one, vectorize=vec, interchange=-one, precision=prec, elt_bytes=eb, out_bytes=ob,
                flops=flops, bytes_total=ins * eb + outs * ob, stride=one, row_stride=row_stride,
                sweep_rows=sweep_rows)


_ROWS: dict[int, tuple[Callable, Callable]] = {
    0: (_contraction_row, _contraction_view),
    1: (_conv_row, _conv_view),
    2: (_rowwise_row, _rowwise_view),
}
_GROUP = {0: 0, 1: 1, 2: 2, 3: 2, 4: 2}


def build_view(pairs: Sequence[tuple[Workload, Schedule]]) -> tuple[View, np.ndarray]:
    """The view of every pair, grouped by family; returns it and ``order``, the index of each of
    the view's rows in ``pairs``."""
    groups: dict[int, list[int]] = {}
    for i, (w, _) in enumerate(pairs):
        groups.setdefault(_GROUP[family_of(w)], []).append(i)
    views, order = [], []
    for g in sorted(groups):
        row, view = _ROWS[g]
        idx = groups[g]
        views.append(view(np.array([row(*pairs[i]) for i in idx], dtype=np.float64)))
        order.extend(idx)
    if not views:
        return View.empty(), np.zeros(0, dtype=int)
    return View.concat(views), np.array(order, dtype=int)
