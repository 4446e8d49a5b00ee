"""Weight-only quantized matmul (LLM inference): ``C = A @ dequant(Wq)`` with int8 or int4 weights.

Workload strings: ``matmul:MxNxK:wBaA:gG`` -- the ``matmul`` op with a weight-only dtype:

* ``B``: weight bits, ``8`` (int8) or ``4`` (int4, two per byte);
* ``A``: activation bits, ``32`` (f32) or ``16`` (bf16);
* ``G``: the group size along K, one scale per G rows of each column: ``32``, ``64`` or ``128``
  (it must divide K).  ``:g128`` is short for the attribute ``group=128``.

``matmul:1x4096x4096:w4a32:g128`` is an LLM decode step's projection: one token, 4096 -> 4096,
4-bit weights in groups of 128.  The weight format (symmetric, f32 scales, int4 packed along K) is
:mod:`tilewise.ir.quant`'s.  Kernel arguments: ``A[M, K]`` (f32 or bf16), the stored weights
(``[K, N]`` int8, or ``[K/2, N]`` bytes for int4), ``scale[K/G, N]`` f32, then ``C[M, N]`` f32.

The kernel is two ``linalg.generic`` ops.  The first, the main loop nest, sums each group's
products with its weights dequantized in registers -- ``T[m, g, n] += a * f32(q)``, one FMA per
weight -- so the weights are unpacked as they stream, never written out as an f32 matrix, and
accumulation is f32.  The second applies the scales once per group: ``C[m, n] += T[m, g, n] *
scale[g, n]`` (K/G FMAs per output; T is partial sums, 1/G-th the size of f32 weights).  Against one
generic that multiplied every weight by its scale: matmul:1x4096x4096 w8 1.64 -> 0.94 ms, w4 1.28 ->
1.03 ms on a Zen 3, one thread.  K is split into (group, row within the group) loops so that every
indexing map is a projected permutation (the vectorizer's requirement).  An int4 step takes both
rows of a byte ``16 hi + lo``: a pre-pass over A (O(M K)) forms ``a_odd - 16 a_even``, and the body
is ``a_even * f32(x) + (a_odd - 16 a_even) * f32((x + 8) >> 4)`` for x the sign-extended byte --
a sign-extending load, an add, a shift, two converts and two FMAs per 16 weights on AVX2.  The reference is ``A @ dequantize(...)`` in float64: the error checked is the kernel's, for
the weights it was given (the quantization error against the original weights is the format's,
reported by ``bench/precision.py``).

Knobs (loop dims m, n, k; the vector runs along n, A's elements are broadcast):

``tile``          [Mc, Nc, Kc] cache tile, 0 = whole dim; Kc a multiple or a divisor of G
``interchange``   order of the cache-tile loops (m, n, k)
``reg_tile``      [mr, nr] register tile; one weight vector is dequantized once for mr rows
``vectorize``     vectorize the register tile
``unroll``        unroll factor of the loop over a group's rows (int4: over its bytes)
``threads``       OpenMP threads; ``parallel_dim`` "m" or "n" is split across them
``precision``     only the workload's own dtype (the weight format is the workload's)
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, linalg, math, tensor

from tilewise.core.schedule import Schedule
from tilewise.core.workload import WorkloadError
from tilewise.ir import quant
from tilewise.ir.dtypes import DTYPES
from tilewise.ir.ops.base import (ArgSpec, OpKind, ScheduleError, check_int_list, check_rank,
                                  check_tiles_and_interchange)

#: the unit attribute marking the partial-sums generic (the kernel's main loop nest)
PARTIAL_SUMS = "tilewise.partial_sums"
#: ... the scale generic, and int4's activation pre-pass
SCALES = "tilewise.group_scales"
ACTIVATIONS = "tilewise.nibble_activations"
#: weight-only dtypes: wBITSaBITS -> (weight bits, activation dtype)
FORMATS = {"w8a32": (8, "f32"), "w4a32": (4, "f32"), "w8a16": (8, "bf16"), "w4a16": (4, "bf16")}
_FORMAT_RE = re.compile(r"^w([0-9]+)a([0-9]+)$")


def is_weight_only(dtype: str) -> bool:
    """Whether ``dtype`` is spelled like a weight-only format (``w<bits>a<bits>``), legal or not."""
    return bool(_FORMAT_RE.match(dtype))


class WeightOnlyMatmul(OpKind):
    """The ``matmul`` op kind's weight-only variant (``Matmul.variant`` hands these dtypes here)."""

    name = "matmul"
    weight_only = True
    dtypes = tuple(FORMATS)
    precisions = ()
    short_attrs = {"g": "group"}
    knobs = {
        "tile": "cache tile [Mc, Nc, Kc] (0 = whole dim, Kc a multiple or a divisor of the group)",
        "interchange": "order of the cache-tile loops",
        "reg_tile": "register tile [mr, nr]",
        "vectorize": "vectorize the register tile",
        "unroll": "unroll factor of the loop over a group's rows",
        "threads": "OpenMP threads",
        "parallel_dim": "loop dim split across threads",
        "precision": "compute element type (the workload's own)",
    }

    # -- the format --------------------------------------------------------------------------------
    @staticmethod
    def bits(w) -> int:
        return FORMATS[w.dtype][0]

    @staticmethod
    def activation_dtype(w) -> str:
        return FORMATS[w.dtype][1]

    @staticmethod
    def group(w) -> int:
        return w.attr("group", 0)

    def mnk(self, w) -> tuple[int, int, int, int]:
        m, n, k = w.shapes[0]
        return 1, m, n, k

    def check(self, w) -> None:
        check_rank(w, [3], "MxNxK")
        unknown = sorted(set(dict(w.attrs)) - {"group"})
        if unknown:
            raise WorkloadError(f"matmul:{w.dtype} has no attribute {unknown[0]!r}: its only attribute is "
                                f"the group (e.g. :g128)")
        g, k = self.group(w), w.shapes[0][2]
        if g not in quant.GROUPS:
            named = f"group {g}" if g else "no group"
            raise WorkloadError(f"matmul:{w.dtype} needs a group size along K: {named} given, use one of "
                                f"{', '.join(f'g{x}' for x in quant.GROUPS)} (e.g. matmul:1x4096x4096:{w.dtype}:g128)")
        if k % g:
            raise WorkloadError(f"matmul:{w.dtype}: the group {g} does not divide K={k}: K must be a "
                                f"multiple of the group")

    def args(self, w, precision: str) -> list[ArgSpec]:
        _, m, n, k = self.mnk(w)
        return [ArgSpec((m, k), self.activation_dtype(w)),
                ArgSpec((quant.stored_rows(k, self.bits(w)), n), "i8"),
                ArgSpec((k // self.group(w), n), "f32"),
                ArgSpec((m, n), "f32", is_output=True)]

    # -- what it computes ----------------------------------------------------------------------------
    def sample_inputs(self, w, rng: np.random.Generator) -> list[np.ndarray]:
        """Activations in [-1, 1] and uniform [-1, 1] weights quantized in the workload's format."""
        _, m, n, k = self.mnk(w)
        stored, scale = quant.quantize(rng.uniform(-1.0, 1.0, (k, n)), self.bits(w), self.group(w))
        return [rng.uniform(-1.0, 1.0, (m, k)), stored.astype(np.float64), scale.astype(np.float64)]

    def round_inputs(self, w, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        from tilewise.ir.dtypes import round_to
        specs = [a for a in self.args(w, w.dtype) if not a.is_output]
        return [round_to(v, a.dtype) for v, a in zip(values, specs)]

    def reference(self, w, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        a, stored, scale = inputs
        return [a @ quant.dequantize(np.rint(stored).astype(np.int8), scale, self.bits(w), self.group(w))]

    def baseline(self, w, inputs):
        """numpy (OpenBLAS) f32 on the weights dequantized beforehand: what serving without a
        weight-only kernel costs."""
        a, stored, scale = inputs
        wf = quant.dequantize(np.rint(stored).astype(np.int8), scale, self.bits(w), self.group(w)).astype(np.float32)
        a = np.ascontiguousarray(a, dtype=np.float32)
        return "numpy f32 (dequantized weights)", lambda: a @ wf

    def tolerance(self, w, precision: str) -> float:
        """f32 accumulation of exactly representable products (bf16 activations are exact in f32)."""
        return 1e-4

    def loop_dims(self, w) -> dict[str, int]:
        _, m, n, k = self.mnk(w)
        return {"m": m, "n": n, "k": k}

    def flops(self, w) -> float:
        _, m, n, k = self.mnk(w)
        return 2.0 * m * n * k

    def bytes_moved(self, w) -> float:
        """A and C once, the weights at their width (K*N*bits/8) and the scales (K/G*N f32)."""
        return float(self.buffer_bytes(w))

    def build(self, w, precision: str) -> None:
        """Two generics: the partial sums of each group, ``T[m, g, n] = sum_j a * f32(q)`` (the
        inner loop: one FMA per weight, no scale), then ``C[m, n] = sum_g T * scale`` (a 1/G-th
        of the work).  T is K/G f32s per output: partial sums, not dequantized weights."""
        _, m, n, k = self.mnk(w)
        bits, g = self.bits(w), self.group(w)
        a_spec, q_spec, s_spec, c_spec = self.args(w, precision)
        types = [ir.RankedTensorType.get(list(x.shape), DTYPES[x.dtype].mlir_type())
                 for x in (a_spec, q_spec, s_spec, c_spec)]
        adt = a_spec.dtype

        @func.FuncOp.from_py_func(*types, name="kernel")
        def kernel(A, Q, S, C):
            f32 = ir.F32Type.get()
            zero = arith.ConstantOp(f32, 0.0).result
            partial = linalg.fill(zero, outs=[tensor.empty([m, k // g, n], f32)])
            if bits == 8:       # dims (m, n, g, j): k = g*G + j
                a3 = _expand(A, [m, k // g, g], adt, [[0], [1, 2]])
                q3 = _expand(Q, [k // g, g, n], "i8", [[0, 1], [2]])
                t = _generic([a3, q3], partial, ["(m, g, j)", "(g, j, n)", "(m, g, n)"], 3,
                             lambda a, q, acc: _mac(a, _int8(q), acc, adt))
            else:               # dims (m, n, g, j): k = g*G + 2j + {0: low nibble, 1: high nibble}
                a4 = _expand(A, [m, k // g, g // 2, 2], adt, [[0], [1, 2, 3]])
                a_even, a_odd = (_nibble_rows(a4, h, adt) for h in (0, 1))
                a_adj = _odd_minus_16_even(a_even, a_odd, adt)
                q3 = _expand(Q, [k // g, g // 2, n], "i8", [[0, 1], [2]])
                t = _generic([a_even, a_adj, q3], partial, ["(m, g, j)", "(m, g, j)", "(g, j, n)", "(m, g, n)"], 3,
                             lambda a0, a1, q, acc: _mac4(a0, a1, q, acc, adt))
            t.owner.attributes[PARTIAL_SUMS] = ir.UnitAttr.get()
            acc = linalg.fill(zero, outs=[C])
            out = _scale_generic(t, S, acc)
            out.owner.attributes[SCALES] = ir.UnitAttr.get()
            return out

    # -- knobs -----------------------------------------------------------------------------------------
    def default_schedule(self, w, target) -> Schedule:
        """A compiler's streaming heuristic, untuned: blocks of 16 rows of K swept across all of N
        (row-major weights are read in short strides, not down whole columns: a column strip of a
        4096-wide int8 matrix touches a new 4 KiB page per row), a 1 x (4 vectors) register tile."""
        _, m, n, k = self.mnk(w)
        lanes = target.simd_lanes("f32")
        return Schedule(tile=[0, 0, 16], interchange=[0, 2, 1], reg_tile=[1, min(4 * lanes, n)],
                        vectorize=True, unroll=1, threads=1, parallel_dim="n", precision=w.dtype)

    def validate(self, w, s: Schedule) -> None:
        super().validate(w, s)
        _, m, n, k = self.mnk(w)
        g = self.group(w)
        tile = check_int_list("tile", s.get("tile", (0, 0, 0)), 3, 0, (m, n, k))
        reg = check_int_list("reg_tile", s.get("reg_tile", (1, 1)), 2, 1, (m, n))
        rows = 2 if self.bits(w) == 4 else 1
        if tile[2] % g and (g % tile[2] or tile[2] % rows):
            raise ScheduleError(f"tile k={tile[2]} must be a multiple or a divisor of the group {g}"
                                + (" (and even: int4 rows come in byte pairs)" if rows == 2 else ""))
        check_tiles_and_interchange(tile, reg, s)
        if s.get("parallel_dim", "n") not in ("m", "n"):
            raise ScheduleError(f"parallel_dim={s.get('parallel_dim')!r}: must be one of m, n")
        unroll = s.get("unroll", 1)
        if unroll not in (1, 2, 4, 8):
            raise ScheduleError(f"unroll={unroll!r}: must be 1, 2, 4 or 8")

    # -- schedule -> script ----------------------------------------------------------------------------
    def schedule(self, script, w, s: Schedule) -> None:
        """Tiles on tensors (so that a register tile's unit reduction dims fold away and its body
        vectorizes as a plain FMA), then bufferization, vectorization and the vector lowering.
        The scale generic gets a fixed schedule (one row, 4 vectors wide, over the groups)."""
        if not s.get("vectorize", True) and "tile" not in s and "reg_tile" not in s:
            script.bufferize()
            return    # the untuned baseline: plain loops
        _, m, n, k = self.mnk(w)
        rows = [0]                                          # j: never split across threads
        f = script.func()
        partial_fill, out_fill = script.split(script.match("linalg.fill", f), 2)
        partial = script.match_marked("linalg.generic", PARTIAL_SUMS, f)
        scale = script.match_marked("linalg.generic", SCALES, f)
        if self.bits(w) == 4:       # the activation pre-pass: one vector of a group's rows per step
            script.tile(script.match_marked("linalg.generic", ACTIVATIONS, f), [1, 1, 8])
        threads = int(s.get("threads", 1))
        if threads > 1:
            split = [threads, 0] if s.get("parallel_dim", "n") == "m" else [0, threads]
            script.tile_forall(partial, split + [0] + rows)
            scale, _ = script.tile_forall(scale, split + [0])
            partial_fill, _ = script.tile_forall(partial_fill, [0, 0, threads] if split[1] else [threads, 0, 0])
            out_fill, _ = script.tile_forall(out_fill, split)
        _tile_fill(script, f, partial_fill, [1, 1, min(n, 512)])
        _tile_fill(script, f, out_fill, [1, min(n, 512)])
        _, loops = script.tile(scale, [1, min(n, 4 * 8), 1])
        script.peel(loops[1:2])
        mc, nc, kc = s.get("tile", (0, 0, 0))
        if mc or nc or kc:
            _, loops = script.tile(script.match_marked("linalg.generic", PARTIAL_SUMS, f),
                                   _cache_sizes(w, mc, nc, kc), _interchange(s.get("interchange")))
            script.peel(loops)
            script.canonicalize(f)
        mr, nr = s.get("reg_tile", (1, 1))
        _, loops = script.tile(script.match_marked("linalg.generic", PARTIAL_SUMS, f), [mr, nr, 1, 1])
        script.peel(loops[:2])
        script.canonicalize(f)
        if s.get("vectorize", True):
            script.fold_unit_dims(f)
        root = script.bufferize()
        if not s.get("vectorize", True):
            return
        fh = script.vectorize_bufferized(root)
        unroll = int(s.get("unroll", 1))
        if unroll > 1:
            script.unroll_loops_of(script.match("arith.extsi", fh), unroll)   # the row loop j


#: the one instance ``Matmul.variant`` hands weight-only dtypes to
WEIGHT_ONLY = WeightOnlyMatmul()


def _tile_fill(script, f, fill, sizes: list[int]) -> None:
    """A zero fill one row segment (one vector run) per step."""
    _, loops = script.tile(fill, sizes)
    script.peel(loops[-1:])


def _cache_sizes(w, mc: int, nc: int, kc: int) -> list[int]:
    """Tile sizes over (m, n, g, j) of the cache tile [Mc, Nc, Kc]: Kc a multiple of the group
    tiles g, a divisor of it tiles j (a group's rows; an int4 j is a byte: two rows)."""
    g = w.kind.group(w)
    rows = 2 if w.kind.bits(w) == 4 else 1
    if kc == 0:
        return [mc, nc, 0, 0]
    if kc % g == 0:
        return [mc, nc, kc // g, 0]
    return [mc, nc, 1, kc // rows]


def _interchange(ix) -> list[int] | None:
    """The (m, n, k) loop order over (m, n, g, j): k stands for g then j."""
    if not ix:
        return None
    return [d for i in ix for d in ([i] if i < 2 else [2, 3])]


# -- IR helpers ------------------------------------------------------------------------------------------
def _expand(x: ir.Value, shape: Sequence[int], dt: str, reassociation) -> ir.Value:
    t = ir.RankedTensorType.get(list(shape), DTYPES[dt].mlir_type())
    return tensor.ExpandShapeOp(t, x, reassociation, [], list(shape)).result


def _generic(inputs, out, maps: Sequence[str], parallel: int, body) -> ir.Value:
    """``linalg.generic`` over dims (m, n, g, j[, h]) (rank from the first map): the first
    ``parallel`` dims parallel, the rest reductions."""
    rank = 5 if "h" in maps[0] else 4 if "j" in maps[0] else 3
    dims = "(" + ", ".join("mngjh"[:rank]) + ")"
    affine = [ir.Attribute.parse(f"affine_map<{dims} -> {mp}>") for mp in maps]
    iters = [linalg.IteratorType.parallel] * parallel + [linalg.IteratorType.reduction] * (rank - parallel)
    op = linalg.GenericOp_(list(inputs), [out], ir.ArrayAttr.get(affine), iters)
    block = op.regions[0].blocks[0]
    with ir.InsertionPoint(block):
        linalg.YieldOp([body(*block.arguments)])
    return op.result


def _scale_generic(t: ir.Value, s: ir.Value, acc: ir.Value) -> ir.Value:
    """``C[m, n] += T[m, g, n] * scale[g, n]`` over dims (m, n, g)."""
    return _generic([t, s], acc, ["(m, g, n)", "(g, n)", "(m, n)"], 2,
                    lambda x, sc, c: math.fma(x, sc, c))


def _i32(v: int) -> ir.Value:
    return arith.ConstantOp(ir.IntegerType.get_signless(32), v).result


def _int8(q: ir.Value) -> ir.Value:
    return arith.extsi(ir.IntegerType.get_signless(32), q)


def _nibble_rows(a4: ir.Value, h: int, adt: str) -> ir.Value:
    """``A[m, g, j, h]`` for one ``h``: the activations of the even (0) or odd (1) rows of K."""
    shape = ir.RankedTensorType(a4.type).shape
    t = ir.RankedTensorType.get(shape[:3], DTYPES[adt].mlir_type())
    return tensor.ExtractSliceOp(t, a4, [], [], [], [0, 0, 0, h], shape[:3] + [1], [1, 1, 1, 1]).result


def _odd_minus_16_even(a_even: ir.Value, a_odd: ir.Value, adt: str) -> ir.Value:
    """``a_odd - 16 a_even`` (f32), the odd rows' activations for :func:`_mac4`: O(M K), once."""
    f32 = ir.F32Type.get()
    shape = ir.RankedTensorType(a_even.type).shape
    ident = ir.Attribute.parse("affine_map<(m, g, j) -> (m, g, j)>")
    op = linalg.GenericOp_([a_even, a_odd], [tensor.empty(shape, f32)], ir.ArrayAttr.get([ident] * 3),
                           [linalg.IteratorType.parallel] * 3)
    op.attributes[ACTIVATIONS] = ir.UnitAttr.get()
    block = op.regions[0].blocks[0]
    with ir.InsertionPoint(block):
        ev, od = (arith.extf(f32, x) if adt == "bf16" else x for x in block.arguments[:2])
        c16 = arith.ConstantOp(f32, 16.0).result
        linalg.YieldOp([arith.subf(od, arith.mulf(c16, ev))])
    return op.result


def _mac4(a_even: ir.Value, a_adj: ir.Value, q: ir.Value, acc: ir.Value, adt: str) -> ir.Value:
    """Both rows of byte ``q = 16 hi + lo`` (:mod:`tilewise.ir.quant`'s int4 format): ``hi = (x + 8)
    >>s 4`` of x = sext(q), and ``a_even lo + a_odd hi = a_even f32(x) + (a_odd - 16 a_even) f32(hi)``:
    no shift pair isolates ``lo`` (the largest intermediate is ~16x the products it replaces: ~1e-6
    relative error in f32, against the 1e-4 bound)."""
    f32, i32 = ir.F32Type.get(), ir.IntegerType.get_signless(32)
    a_even = arith.extf(f32, a_even) if adt == "bf16" else a_even
    x = arith.extsi(i32, q)
    hi = arith.shrsi(arith.addi(x, _i32(8)), _i32(4))
    return math.fma(a_adj, arith.sitofp(f32, hi), math.fma(a_even, arith.sitofp(f32, x), acc))


def _mac(a: ir.Value, q32: ir.Value, acc: ir.Value, adt: str) -> ir.Value:
    f32 = ir.F32Type.get()
    a = arith.extf(f32, a) if adt == "bf16" else a
    return math.fma(a, arith.sitofp(f32, q32), acc)
