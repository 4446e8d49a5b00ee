"""Reductions over the last dim (``reduce_sum``, ``reduce_max``) and ``softmax``.

Shapes: ``reduce_sum:128x768:f32`` -- one input shape of rank 2 to 4; the output has the leading
dims (``shape[:-1]``).  ``softmax:128x128:f32`` -- rank 2 to 4, normalised over the last dim, the
output has the input's shape.

dtypes and what the kernels compute in:

* ``reduce_sum``: f32, bf16, f16 (accumulate in f32 and output **f32**), i8 (accumulate in i32,
  output **i32**: exact, no wrap-around);
* ``reduce_max``: f32, bf16, f16 (output **f32**: exact, the max of values an f32 holds), i8
  (output i8);
* ``softmax``: f32, bf16, f16: computed in f32, output in the input dtype.  Numerically stable:
  ``y = exp(x - max) / sum(exp(x - max))``.  The kernel is three linalg ops on tensors -- a
  max-reduce, a sum-reduce of ``exp(x - max)``, and the normalisation ``exp(x - max) / sum``
  written into the output -- so ``exp`` is evaluated twice instead of materialising it in a
  temporary tensor (bandwidth over flops).  ``exp`` is a polynomial of arith ops
  (:func:`exp_f32`), not ``math.exp``: that lowers to ``llvm.intr.exp``, which LLVM scalarizes
  into ``expf`` calls (correct, but softmax 512x1024 took 1.70 ms instead of 0.16 ms).

Loop dims are ``d0 .. d{r-1}``; the *row* dim is ``d{r-2}`` and the last dim is reduced.

Knobs of the reductions (the output is zero/-inf filled first, then accumulated into):

``tile``       rows per tile (tile size of the row dim; dims before it are tiled by 1)
``vector``     reduction chunk: elements of the last dim per step (the vector width)
``vectorize``  vectorize the ``tile x vector`` block (False: scalar loops)
``threads``    OpenMP threads: the outermost dim is split into ``threads`` chunks

Knobs of ``softmax``:

``tile``       rows per tile: an ``scf.forall`` runs over the leading dims one index at a time
               and over the row dim in tiles of ``tile`` rows (a partial last tile has dynamic
               shapes and is vectorized with masks); the three ops are fused into that
               loop, so a tile's rows stay in cache between them
``vector``     elements of the last dim per step in each of the three ops
``vectorize``  vectorize (False: scalar loops)
``threads``    OpenMP threads over the row tiles

Absent knobs are 1 (``tile``, ``vector``, ``threads``) and True (``vectorize``); the untuned
baseline (no ``tile`` or ``vector``, ``vectorize=False``) is the plain loop nest, split over
threads if asked.
"""
from __future__ import annotations

import math as pymath
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, linalg, math, tensor

from tilewise.ir.dtypes import DTYPES
from tilewise.ir.ops.base import ArgSpec, OpKind, register
from tilewise.ir.ops.elementwise import (RowwiseOp, check_knob_int, const, f32, fconst, is_untuned, narrow,
                                         parallel_generic, tensor_type, widen)
from tilewise.core.schedule import Schedule
from tilewise.core.workload import WorkloadError

#: the largest fill a schedule vectorizes in one piece (elements)
FILL_CHUNK = 256


def _check_rank(w, lo: int, hi: int) -> None:
    if len(w.shapes) != 1 or not lo <= len(w.shapes[0]) <= hi:
        raise WorkloadError(f"{w.op} expects one shape of rank {lo} to {hi} (e.g. {w.op}:128x768:f32), "
                            f"got {','.join('x'.join(map(str, s)) for s in w.shapes)}")
    if any(d <= 0 for d in w.shapes[0]):
        raise WorkloadError(f"{w.op}: every dimension must be >= 1")


def _reduce_maps(rank: int, extra_inputs: int = 0) -> list[ir.AffineMap]:
    """Maps of a last-dim reduction: the input (identity), ``extra_inputs`` row-broadcast inputs,
    then the output (the leading dims)."""
    ident = ir.AffineMap.get_identity(rank)
    rows = ir.AffineMap.get(rank, 0, [ir.AffineDimExpr.get(i) for i in range(rank - 1)])
    return [ident] + [rows] * extra_inputs + [rows]


def _reduce_iterators(rank: int) -> list:
    return [linalg.IteratorType.parallel] * (rank - 1) + [linalg.IteratorType.reduction]


def reduce_last(inputs: Sequence[ir.Value], init: ir.Value, body) -> ir.Value:
    """``linalg.generic`` reducing the last dim of ``inputs[0]`` into ``init`` (rank - 1);
    ``inputs[1:]`` are indexed by the row only.  ``body(x, *row_values, acc) -> acc``."""
    rank = ir.RankedTensorType(inputs[0].type).rank
    return parallel_generic(inputs, init, body, _reduce_maps(rank, len(inputs) - 1), _reduce_iterators(rank))


# -- exp as arith ops ---------------------------------------------------------------------------------
#: Cephes ``expf``: e^r on |r| <= ln2/2 as 1 + r + r^2 P(r); ~1 ulp in f32
_EXP_P = (5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3, 1.3981999507e-3, 1.9875691500e-4)


def exp_f32(x: ir.Value) -> ir.Value:
    """e^x in f32: x = n ln2 + r, e^r by polynomial, 2^n built in the exponent bits.  Inputs are
    clamped to [-87, 88] (results below ~1.6e-38 flush to e^-87, which is harmless where it is
    used: softmax arguments are <= 0 and the sum is >= 1)."""
    i32 = ir.IntegerType.get_signless(32)
    x = arith.minimumf(arith.maximumf(x, fconst(-87.0)), fconst(88.0))
    n = math.floor(math.fma(x, fconst(1.0 / pymath.log(2.0)), fconst(0.5)))
    r = math.fma(n, fconst(-0.693359375), x)            # ln2 split in two for an exact first step
    r = math.fma(n, fconst(2.12194440e-4), r)
    p = fconst(_EXP_P[-1])
    for c in reversed(_EXP_P[:-1]):
        p = math.fma(p, r, fconst(c))
    er = arith.addf(math.fma(arith.mulf(r, r), p, r), fconst(1.0))
    bits = arith.shli(arith.addi(arith.fptosi(i32, n), arith.ConstantOp(i32, 127).result),
                      arith.ConstantOp(i32, 23).result)
    return arith.mulf(er, arith.bitcast(f32(), bits))


# -- reductions ------------------------------------------------------------------------------------------
class _Reduction(RowwiseOp):
    dtypes = ("f32", "bf16", "f16", "i8")
    precisions = ()
    knobs = {
        "tile": "rows per tile (tile size of the row dim)",
        "vector": "reduction chunk along the last dim (vector width)",
        "vectorize": "vectorize the tile",
        "threads": "OpenMP threads (outermost dim split)",
    }

    def check(self, w) -> None:
        _check_rank(w, 2, 4)

    def out_dtype(self, dt: str) -> str:
        raise NotImplementedError

    def args(self, w, precision: str) -> list[ArgSpec]:
        shape = w.shapes[0]
        return [ArgSpec(shape, w.dtype), ArgSpec(shape[:-1], self.out_dtype(w.dtype), is_output=True)]

    def build(self, w, precision: str) -> None:
        x, y = self.args(w, precision)
        dt, acc = x.dtype, y.dtype

        @func.FuncOp.from_py_func(tensor_type(x.shape, dt), tensor_type(y.shape, acc), name="kernel")
        def kernel(X, Y):
            init = linalg.fill(const(self.identity(dt), acc), outs=[Y])
            return reduce_last([X], init, lambda v, a: self.combine(dt, v, a))

    def identity(self, dt: str):
        raise NotImplementedError

    def combine(self, dt: str, v: ir.Value, acc: ir.Value) -> ir.Value:
        raise NotImplementedError

    def tolerance(self, w, precision: str) -> float:
        """Float outputs are f32 accumulations of exactly held inputs: the f32 bound for every
        float dtype (rounding bf16/f16 *inputs* is not charged; the reference sees the rounded
        values)."""
        return 0.0 if not DTYPES[w.dtype].is_float else 1e-4

    def flops(self, w) -> float:
        return float(np.prod(w.shapes[0]))

    def schedule(self, script, w, s: Schedule) -> None:
        shape = w.shapes[0]
        rank = len(shape)
        script.bufferize()
        f = script.func()
        fill = script.match("linalg.fill", f)
        red = script.match("linalg.generic", f)
        threads = int(s.get("threads", 1))
        if threads > 1:
            red, _ = script.tile_forall(red, [threads] + [0] * (rank - 1))
            fill, _ = script.tile_forall(fill, [threads] + [0] * (rank - 2))
        if is_untuned(s):
            return
        _, fill_loops = script.tile(fill, [1] * (rank - 2) + [FILL_CHUNK])
        script.peel(fill_loops[-1:])
        tile, vector = int(s.get("tile", 1)), int(s.get("vector", 1))
        red, loops = script.tile(red, [1] * (rank - 2) + [tile, vector])
        script.peel(loops[-2:])
        script.canonicalize(f)
        if s.get("vectorize", True):
            fv = script.vectorize(f)
            fh = script.hoist_vector_transfers(fv)
            script.lower_vectors(fh)


@register("reduce_sum")
class ReduceSum(_Reduction):
    def out_dtype(self, dt):
        return "i32" if dt == "i8" else "f32"

    def identity(self, dt):
        return 0 if dt == "i8" else 0.0

    def combine(self, dt, v, acc):
        if dt == "i8":
            return arith.addi(arith.extsi(ir.IntegerType.get_signless(32), v), acc)
        return arith.addf(widen(v, dt), acc)

    def reference(self, w, inputs):
        return [np.sum(inputs[0], axis=-1)]


@register("reduce_max")
class ReduceMax(_Reduction):
    def out_dtype(self, dt):
        return "i8" if dt == "i8" else "f32"

    def identity(self, dt):
        return -128 if dt == "i8" else float("-inf")

    def combine(self, dt, v, acc):
        if dt == "i8":
            return arith.maxsi(v, acc)
        return arith.maximumf(widen(v, dt), acc)

    def reference(self, w, inputs):
        return [np.max(inputs[0], axis=-1)]


# -- softmax ---------------------------------------------------------------------------------------------
@register("softmax")
class Softmax(RowwiseOp):
    dtypes = ("f32", "bf16", "f16")
    precisions = ()
    knobs = {
        "tile": "rows per tile of the fused row loop",
        "vector": "elements of the last dim per step (vector width)",
        "vectorize": "vectorize",
        "threads": "OpenMP threads over the row tiles",
    }

    def check(self, w) -> None:
        _check_rank(w, 2, 4)

    def args(self, w, precision: str) -> list[ArgSpec]:
        shape = w.shapes[0]
        return [ArgSpec(shape, w.dtype), ArgSpec(shape, w.dtype, is_output=True)]

    def build(self, w, precision: str) -> None:
        shape, dt = w.shapes[0], w.dtype
        rank = len(shape)
        t = tensor_type(shape, dt)

        @func.FuncOp.from_py_func(t, t, name="kernel")
        def kernel(X, Y):
            def row_init(value):
                return linalg.fill(fconst(value), outs=[tensor.EmptyOp(list(shape[:-1]), f32()).result])

            mx = reduce_last([X], row_init(float("-inf")), lambda v, a: arith.maximumf(widen(v, dt), a))
            sm = reduce_last([X, mx], row_init(0.0),
                             lambda v, m, a: arith.addf(exp_f32(arith.subf(widen(v, dt), m)), a))
            maps = _reduce_maps(rank, 2)[:-1] + [ir.AffineMap.get_identity(rank)]

            def normalise(v, m, s, _):
                return narrow(arith.divf(exp_f32(arith.subf(widen(v, dt), m)), s), dt)
            return parallel_generic([X, mx, sm], Y, normalise, maps)

    def reference(self, w, inputs):
        x = inputs[0]
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return [e / e.sum(axis=-1, keepdims=True)]

    def sample_inputs(self, w, rng):
        return [rng.uniform(-8.0, 8.0, w.shapes[0])]    # a wide range: exp spans ~7 decades

    def flops(self, w) -> float:
        return 5.0 * float(np.prod(w.shapes[0]))        # max, sub, exp, add, div (exp counted once)

    def validate(self, w, s: Schedule) -> None:
        """Like the other row-wise ops, without the block cap: softmax's rows are three fused
        passes, not one unrolled block."""
        OpKind.validate(self, w, s)
        shape = w.shapes[0]
        check_knob_int("tile", s.get("tile", 1), 1, shape[-2])
        check_knob_int("vector", s.get("vector", 1), 1, shape[-1])

    def schedule(self, script, w, s: Schedule) -> None:
        shape = w.shapes[0]
        rank = len(shape)
        f = script.func()
        fill_m, fill_s = script.split(script.match("linalg.fill", f), 2)
        red_m, red_s, norm = script.split(script.match("linalg.generic", f), 3)
        threads = int(s.get("threads", 1))
        if is_untuned(s) and threads == 1:
            script.bufferize()
            return     # the untuned baseline: plain loops
        tile, vector = int(s.get("tile", 1)), int(s.get("vector", 1))
        # leading dims one at a time, the row dim in tiles of ``tile`` rows; producers fused in
        norm, loop = script.tile_forall(norm, list(shape[:-2]) + [shape[-2] // tile, 0])
        red_s, loop = script.fuse_into(red_s, loop)
        _, loop = script.fuse_into(fill_s, loop)
        script.cse(f)      # one slice of the row max for both its users, or it is fused twice
        red_m, loop = script.fuse_into(red_m, loop)
        script.fuse_into(fill_m, loop)
        if is_untuned(s):
            script.bufferize()
            return     # the untuned baseline split over threads
        # inside the tile: row by row, ``vector`` elements per step; peel the partial chunk
        script.rows_in_vectors((red_m, red_s, norm), rank, vector, f, s.get("vectorize", True))
