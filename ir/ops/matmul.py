"""Contractions: ``matmul`` (C[m,n] = sum_k A[m,k] B[k,n]) and ``batch_matmul``.

Shapes: ``matmul:MxNxK``, ``batch_matmul:BxMxNxK``.  Inputs f32, bf16, f16 (accumulate in f32) or
i8 (accumulate in i32).  The kernel zero-fills C and accumulates into it.

Knobs (loop dims m, n, k; the batch dim is always tiled by 1):

``tile``         [Mc, Nc, Kc] cache tile, 0 = whole dim
``interchange``  permutation of the cache-tile loops (m, n, k)
``promote``      copy each Kc x Nc panel of B into an aligned stack buffer (packing)
``reg_tile``     [mr, nr] register tile; the k step is 1
``vectorize``    vectorize the register tile
``unroll``       unroll factor of the k loop
``threads``      OpenMP threads; ``parallel_dim`` "m", "n" (or "b") is split across them, or
                 "mn": a 2-D grid of tm x tn threads (``thread_grid``: tm the largest divisor of
                 threads <= sqrt(threads)), for thread counts that one dim splits unevenly or
                 into strips too thin for the register tile
``precision``    f32 workloads may compute in bf16 or f16 (inputs converted, f32 accumulate)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, linalg

from tilewise.ir.dtypes import DTYPES
from tilewise.ir.ops.base import (ArgSpec, OpKind, ScheduleError, check_int_list, check_rank,
                                  check_tiles_and_interchange, register)
from tilewise.ir.ops.weight_only import WEIGHT_ONLY, is_weight_only
from tilewise.core.schedule import Schedule

def thread_grid(threads: int) -> tuple[int, int]:
    """(tm, tn) of the "mn" split: tm * tn == threads, tm <= tn, as square as it gets."""
    tm = max(d for d in range(1, int(threads ** 0.5) + 1) if threads % d == 0)
    return tm, threads // tm


def thread_split(threads: int, parallel_dim: str) -> dict[str, int]:
    """Threads per loop dim of a contraction schedule's ``threads``/``parallel_dim`` ("b", "m", "n"
    or the "mn" grid of :func:`thread_grid`); dims not split are absent (empty for one thread)."""
    if threads <= 1:
        return {}
    if parallel_dim == "mn":
        tm, tn = thread_grid(threads)
        return {"m": tm, "n": tn}
    return {parallel_dim: threads}


#: largest B panel a schedule may promote into a stack buffer (OpenMP worker stacks are 4 MiB)
MAX_PANEL_BYTES = 512 * 1024


def _tensor(shape, dt: str) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(list(shape), DTYPES[dt].mlir_type())


def _zero(dt: str):
    t = DTYPES[dt].mlir_type()
    return arith.ConstantOp(t, 0.0 if DTYPES[dt].is_float else 0).result


class _Contraction(OpKind):
    dtypes = ("f32", "bf16", "f16", "i8")
    precisions = ("f32", "bf16", "f16")
    batch = False
    linalg_op = ""
    knobs = {
        "tile": "cache tile [Mc, Nc, Kc] (0 = whole dim)",
        "interchange": "order of the cache-tile loops",
        "promote": "pack B panels into an aligned buffer",
        "reg_tile": "register tile [mr, nr]",
        "vectorize": "vectorize the register tile",
        "unroll": "k-loop unroll factor",
        "threads": "OpenMP threads",
        "parallel_dim": "loop dim split across threads",
        "precision": "compute element type",
    }

    # -- what it computes ------------------------------------------------------------------------
    def mnk(self, w) -> tuple[int, int, int, int]:
        s = w.shapes[0]
        return (s[0], s[1], s[2], s[3]) if self.batch else (1, s[0], s[1], s[2])

    def check(self, w) -> None:
        check_rank(w, [4 if self.batch else 3], "BxMxNxK" if self.batch else "MxNxK")

    def args(self, w, precision: str) -> list[ArgSpec]:
        b, m, n, k = self.mnk(w)
        pre = (b,) if self.batch else ()
        acc = DTYPES[w.dtype].accumulator
        return [ArgSpec(pre + (m, k), precision), ArgSpec(pre + (k, n), precision),
                ArgSpec(pre + (m, n), acc, is_output=True)]

    def build(self, w, precision: str) -> None:
        a, b, c = self.args(w, precision)
        types = [_tensor(x.shape, x.dtype) for x in (a, b, c)]
        named = getattr(linalg, self.linalg_op)

        @func.FuncOp.from_py_func(*types, name="kernel")
        def kernel(A, B, C):
            z = linalg.fill(_zero(c.dtype), outs=[C])
            return named(A, B, outs=[z])

    def reference(self, w, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.matmul(inputs[0], inputs[1])]

    def loop_dims(self, w) -> dict[str, int]:
        b, m, n, k = self.mnk(w)
        return ({"b": b} if self.batch else {}) | {"m": m, "n": n, "k": k}

    def flops(self, w) -> float:
        b, m, n, k = self.mnk(w)
        return 2.0 * b * m * n * k

    # -- knobs -----------------------------------------------------------------------------------
    def default_schedule(self, w, target) -> Schedule:
        """What a compiler does untuned: 64x64 cache tiles, a 4 x (2 vectors) register tile."""
        _, m, n, k = self.mnk(w)
        lanes = target.simd_lanes(w.dtype)
        return Schedule(tile=[min(64, m), min(64, n), 0], reg_tile=[min(4, m), min(lanes, n)],
                        promote=False, vectorize=True, unroll=1, threads=1,
                        parallel_dim="n", precision=w.dtype)

    def untuned_schedule(self, w) -> Schedule:
        return Schedule(vectorize=False, threads=1)

    def validate(self, w, s: Schedule) -> None:
        super().validate(w, s)
        _, m, n, k = self.mnk(w)
        tile = check_int_list("tile", s.get("tile", (0, 0, 0)), 3, 0, (m, n, k))
        reg = check_int_list("reg_tile", s.get("reg_tile", (1, 1)), 2, 1, (m, n))
        check_tiles_and_interchange(tile, reg, s)
        unroll = s.get("unroll", 1)
        if not isinstance(unroll, int) or isinstance(unroll, bool) or not 1 <= unroll <= 8:
            raise ScheduleError(f"unroll={unroll!r}: must be an integer in [1, 8]")
        dims = ("b", "m", "n", "mn") if self.batch else ("m", "n", "mn")
        if s.get("parallel_dim", "n") not in dims:
            raise ScheduleError(f"parallel_dim={s.get('parallel_dim')!r}: must be one of {', '.join(dims)}")
        if s.get("promote", False):
            if not (tile[1] and tile[2]):
                raise ScheduleError("promote needs a cache tile on n and k (tile[1] > 0 and tile[2] > 0)")
            panel = tile[1] * tile[2] * DTYPES[s.get("precision", w.dtype)].nbytes
            if panel > MAX_PANEL_BYTES:
                raise ScheduleError(f"promoted B panel of {panel} bytes exceeds {MAX_PANEL_BYTES}: "
                                    "use smaller tile[1] * tile[2]")

    # -- schedule -> script ----------------------------------------------------------------------
    def schedule(self, script, w, s: Schedule) -> None:
        _, m, n, k = self.mnk(w)
        pre = [1] if self.batch else []
        script.bufferize()
        f = script.func()
        fill = script.match("linalg.fill", f)
        mm = script.match(f"linalg.{self.linalg_op}", f)
        if not s.get("vectorize", True) and "tile" not in s and "reg_tile" not in s:
            return   # the untuned baseline: plain loops
        threads = int(s.get("threads", 1))
        rank = len(pre) + 2
        if threads > 1:
            split = thread_split(threads, s.get("parallel_dim", "n"))
            dims = (["b"] if self.batch else []) + ["m", "n"]
            mm, rest = even_thread_part(script, mm, split, dict(zip("bmn", self.mnk(w))), dims)
            mm, _ = script.tile_forall(mm, [split.get(d, 0) for d in dims] + [0])
            if rest:
                mm = script.merge([mm, *rest])
            fill, _ = script.tile_forall(fill, [threads] + [0] * (rank - 1))
        # zero-fill row by row: one vector per row segment
        fill_t, fill_loops = script.tile(fill, [1] * (rank - 1) + [min(n, 512)])
        script.peel(fill_loops[-1:])

        tile = list(s.get("tile", (0, 0, 0)))
        if any(tile):
            ix = s.get("interchange")
            ix = ([0] + [i + 1 for i in ix] if self.batch else list(ix)) if ix else None
            mm, loops = script.tile(mm, pre + tile, ix)
            if s.get("promote", False):
                mm = script.promote(mm, [1])
                copies = script.match("linalg.copy", f)
                script.tile(copies, [1] * len(pre) + [1, 0])
            script.peel(loops)
            script.canonicalize(f)
            mm = script.match(f"linalg.{self.linalg_op}", f)
        register_tile_and_vectorize(script, f, mm, pre, s, w.dtype)



def even_thread_part(script, mm, split: dict[str, int], extents: dict[str, int], dims: list[str]):
    """(the part of ``mm`` that the threads divide evenly, [the rest]): each dim ``d`` split over
    ``split[d]`` threads whose extent they do not divide is cut at ``split[d] * (extent // split[d])``
    (``structured.split``); the rest -- fewer than ``split[d]`` rows or columns -- runs on one thread.

    Without the cut each thread's ``scf.forall`` tile has a dynamic size (the last one is shorter),
    the tiles inside it lose their static shapes and the kernel its vectorized main loops: the GPT-2
    LM head ``matmul:128x50257x512`` took 199 ms on 2 threads against 94 ms on 1 (Zen 3), where
    ``128x50256x512`` scales."""
    rest = []
    for d in dims:
        t = split.get(d, 1)
        extent = extents[d]
        if t <= 1 or extent % t == 0 or extent < t:
            continue
        parts = script.split(script.split_op(mm, dims.index(d), t * (extent // t)), 2)
        mm, tail = parts
        rest.append(tail)
    return mm, rest


def register_tile_and_vectorize(script, f, mm, pre: list[int], s, dtype: str) -> None:
    """The inner end of a contraction schedule, shared with the fused kernels of the torch backend:
    the ``reg_tile`` (mr, nr) register tile with its remainders peeled, promoted buffers hoisted,
    then vectorization, hoisted transfers, the vector lowering and the ``unroll`` of the k loop."""
    mr, nr = s.get("reg_tile", (1, 1))
    mm, loops = script.tile(mm, pre + [mr, nr, 1])
    script.peel(loops[len(pre):len(pre) + 2])
    script.canonicalize(f)
    if s.get("promote", False):
        script.hoist_buffers(f)
    if not s.get("vectorize", True):
        return
    fv = script.vectorize(f)
    fh = script.hoist_vector_transfers(fv)
    script.lower_vectors(fh)
    unroll = int(s.get("unroll", 1))
    if unroll > 1 and DTYPES[dtype].is_float:
        script.unroll_loops_of(script.match("vector.fma", fh), unroll)

@register("matmul")
class Matmul(_Contraction):
    """``matmul:MxNxK:DTYPE``; a weight-only dtype (``w4a32:g128``, ...) is computed by
    :class:`~tilewise.ir.ops.weight_only.WeightOnlyMatmul`, whose docstring has that grammar."""
    linalg_op = "matmul"

    def variant(self, dtype: str):
        return WEIGHT_ONLY if is_weight_only(dtype) else self

    def supported_dtypes(self) -> tuple[str, ...]:
        return self.dtypes + WEIGHT_ONLY.dtypes


@register("batch_matmul")
class BatchMatmul(_Contraction):
    batch = True
    linalg_op = "batch_matmul"
