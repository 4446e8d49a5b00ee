"""Elementwise ops on an N-D tensor (rank 1 to 4): ``add``, ``mul`` (two inputs), ``relu``, ``gelu``.

Shapes: ``add:64x512:f32`` (one shape, inputs and the output all have it).  dtypes: f32, bf16, f16
and i8 (``gelu``: floats only).  bf16/f16 values are widened to f32 inside the body, computed and
rounded back, so the output has the input's dtype.  i8 ``add``/``mul`` wrap around (two's
complement, like torch int8); i8 ``relu`` is ``max(x, 0)``.  ``gelu`` is the exact (erf) form
``0.5 * x * (1 + erf(x / sqrt(2)))``.

Each kernel is one ``linalg.generic`` (parallel iterators, identity maps) writing into the output
argument.  Loop dims are ``d0 .. d{r-1}``; the *row* dim is ``d{r-2}`` (rank >= 2) and the
*vector* dim is the last one.

Knobs:

``tile``       rows per tile: the tile size of the row dim (dims before it are tiled by 1); must
               be 1 for rank-1 shapes.  The body of one iteration is a ``tile x vector`` block.
``vector``     tile size of the last dim, in elements (the vector width when vectorized)
``vectorize``  vectorize the tile (False: scalar loops)
``threads``    OpenMP threads: the outermost dim is split into ``threads`` chunks (forall)

Full tiles are peeled from partial ones so that they have static shapes.  Absent knobs are 1
(``tile``, ``vector``, ``threads``) and True (``vectorize``); the untuned baseline (no ``tile``
or ``vector``, ``vectorize=False``) is the plain loop nest, split over threads if asked.
"""
from __future__ import annotations

import math as pymath
from typing import Sequence

import numpy as np
from scipy import special
from torch_mlir import ir
from torch_mlir.dialects import arith, func, linalg, math

from tilewise.ir.dtypes import DTYPES
from tilewise.ir.ops.base import ArgSpec, OpKind, ScheduleError, register
from tilewise.core.schedule import Schedule
from tilewise.core.workload import WorkloadError

#: largest ``tile * vector`` block (elements): bounds the unrolled code of one iteration
MAX_BLOCK_ELEMENTS = 1024


# -- IR helpers shared with the reduction and softmax kernels ---------------------------------------
def tensor_type(shape: Sequence[int], dt: str) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(list(shape), DTYPES[dt].mlir_type())


def f32() -> ir.Type:
    return ir.F32Type.get()


def const(value: float | int, dt: str) -> ir.Value:
    return arith.ConstantOp(DTYPES[dt].mlir_type(), value).result


def fconst(value: float) -> ir.Value:
    return arith.ConstantOp(f32(), float(value)).result


def parallel_generic(inputs: Sequence[ir.Value], out: ir.Value, body, maps=None, iterators=None) -> ir.Value:
    """``linalg.generic`` over the output's iteration space (identity maps, parallel iterators
    unless given).  ``body(*block_args) -> value`` emits the scalar computation; returns the
    result tensor."""
    rank = ir.RankedTensorType(out.type).rank
    ident = ir.AffineMap.get_identity(rank)
    maps = maps or [ident] * (len(inputs) + 1)
    iterators = iterators or [linalg.IteratorType.parallel] * rank
    op = linalg.GenericOp_(list(inputs), [out], ir.ArrayAttr.get([ir.AffineMapAttr.get(m) for m in maps]),
                           list(iterators))
    block = op.regions[0].blocks[0]
    with ir.InsertionPoint(block):
        linalg.YieldOp([body(*block.arguments)])
    return op.result


def widen(x: ir.Value, dt: str) -> ir.Value:
    """bf16/f16 -> f32 (no-op for f32 and integers)."""
    return arith.extf(f32(), x) if dt in ("bf16", "f16") else x


def narrow(x: ir.Value, dt: str) -> ir.Value:
    return arith.truncf(DTYPES[dt].mlir_type(), x) if dt in ("bf16", "f16") else x


#: erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (+-1 beyond, in f32), the coefficients of Eigen's and
#: XLA's f32 erf; max abs error 4.2e-7 against scipy on a 2e5-point grid over [-6, 6], far inside
#: the 1e-4 f32 tolerance.
_ERF_P = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04, -5.69250639462346e-05,
          -2.10102402082508e-06, 2.77068142495902e-08, -2.72614225801306e-10)
_ERF_Q = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03, -2.13374055278905e-04,
          -1.45660718464996e-05)


def _horner(x: ir.Value, coeffs: Sequence[float]) -> ir.Value:
    acc = fconst(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = math.fma(acc, x, fconst(c))
    return acc


def erf_f32(x: ir.Value) -> ir.Value:
    """erf(x) in f32 as a rational function of arith ops.

    Not ``math.erf``: LLVM has no erf intrinsic, so only convert-math-to-libm lowers it, and on a
    vector it does so by unrolling into ``vector.extract``/``insert`` around scalar ``erff`` calls
    -- after convert-vector-to-llvm has run in the compiler's pipeline, so those vector ops are
    never lowered and the JIT fails ("LLVM Translation failed").  Scalar ``math.erf`` works but
    would forbid vectorizing gelu, and a libm call per element is slow anyway."""
    x = arith.minimumf(arith.maximumf(x, fconst(-4.0)), fconst(4.0))
    x2 = arith.mulf(x, x)
    return arith.divf(arith.mulf(x, _horner(x2, _ERF_P)), _horner(x2, _ERF_Q))


def wrap_i8(v: np.ndarray) -> np.ndarray:
    """Exact integer results wrapped to int8 (two's complement), as float64."""
    return ((np.rint(v).astype(np.int64) + 128) % 256 - 128).astype(np.float64)


# -- schedule helpers ----------------------------------------------------------------------------------
def check_knob_int(name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ScheduleError(f"{name}={value!r}: must be an integer in [{lo}, {hi}]")
    return value


class RowwiseOp(OpKind):
    """Ops over one N-D shape scheduled by rows (``tile``) and last-dim chunks (``vector``):
    the elementwise ops, the reductions and softmax share these knobs and their defaults."""

    def loop_dims(self, w) -> dict[str, int]:
        return {f"d{i}": d for i, d in enumerate(w.shapes[0])}

    def default_schedule(self, w, target) -> Schedule:
        """One row at a time, one SIMD register of the compute type per step."""
        lanes = target.simd_lanes(w.dtype)
        return Schedule(tile=1, vector=min(lanes, w.shapes[0][-1]), vectorize=True, threads=1)

    def untuned_schedule(self, w) -> Schedule:
        return Schedule(vectorize=False, threads=1)

    def validate(self, w, s: Schedule) -> None:
        super().validate(w, s)
        validate_block(w.shapes[0], s)


class _Elementwise(RowwiseOp):
    """One-output elementwise op; subclasses give ``arity``, the MLIR body and the reference."""
    dtypes = ("f32", "bf16", "f16", "i8")
    precisions = ()
    arity = 1
    flops_per_element = 1.0
    knobs = {
        "tile": "rows per tile (tile size of the row dim)",
        "vector": "tile size of the last dim (vector width)",
        "vectorize": "vectorize the tile",
        "threads": "OpenMP threads (outermost dim split)",
    }

    # -- what it computes ------------------------------------------------------------------------
    def check(self, w) -> None:
        if len(w.shapes) != 1 or not 1 <= len(w.shapes[0]) <= 4:
            raise WorkloadError(f"{w.op} expects one shape of rank 1 to 4 (e.g. {w.op}:64x512:f32), "
                                f"got {','.join('x'.join(map(str, s)) for s in w.shapes)}")
        if any(d <= 0 for d in w.shapes[0]):
            raise WorkloadError(f"{w.op}: every dimension must be >= 1")

    def args(self, w, precision: str) -> list[ArgSpec]:
        shape = w.shapes[0]
        return [ArgSpec(shape, w.dtype) for _ in range(self.arity)] + [ArgSpec(shape, w.dtype, is_output=True)]

    def build(self, w, precision: str) -> None:
        specs = self.args(w, precision)
        types = [tensor_type(a.shape, a.dtype) for a in specs]
        dt = w.dtype

        @func.FuncOp.from_py_func(*types, name="kernel")
        def kernel(*args):
            *ins, out = args
            return parallel_generic(ins, out, lambda *xs: self.body(dt, *xs[:-1]))

    def body(self, dt: str, *xs: ir.Value) -> ir.Value:
        raise NotImplementedError

    def flops(self, w) -> float:
        return float(np.prod(w.shapes[0])) * self.flops_per_element

    # -- schedule -> script ----------------------------------------------------------------------
    def schedule(self, script, w, s: Schedule) -> None:
        script.bufferize()
        f = script.func()
        op = script.match("linalg.generic", f)
        schedule_parallel(script, f, op, w.shapes[0], s)


def validate_block(shape: Sequence[int], s: Schedule) -> None:
    """The ``tile``/``vector`` knobs of an op whose row dim is ``shape[-2]`` and vector dim
    ``shape[-1]``."""
    rows = shape[-2] if len(shape) >= 2 else 1
    tile = check_knob_int("tile", s.get("tile", 1), 1, rows)
    vector = check_knob_int("vector", s.get("vector", 1), 1, shape[-1])
    if tile * vector > MAX_BLOCK_ELEMENTS:
        raise ScheduleError(f"tile * vector = {tile * vector} elements exceeds {MAX_BLOCK_ELEMENTS}: "
                            "use a smaller tile or vector")


def is_untuned(s: Schedule) -> bool:
    """No block knobs and no vectorization: the plain loop nest (possibly split over threads)."""
    return not s.get("vectorize", True) and "tile" not in s and "vector" not in s


def schedule_parallel(script, f, op, shape: Sequence[int], s: Schedule) -> None:
    """Thread split, ``[1.., tile, vector]`` tiling with peeling, then vectorization (memrefs)."""
    rank = len(shape)
    threads = int(s.get("threads", 1))
    if threads > 1:
        op, _ = script.tile_forall(op, [threads] + [0] * (rank - 1))
    if is_untuned(s):
        return
    tile, vector = int(s.get("tile", 1)), int(s.get("vector", 1))
    sizes = [1] * (rank - 2) + [tile, vector] if rank >= 2 else [vector]
    op, loops = script.tile(op, sizes)
    script.peel(loops[-2:])
    script.canonicalize(f)
    if s.get("vectorize", True):
        fv = script.vectorize(f)
        fh = script.hoist_vector_transfers(fv)
        script.lower_vectors(fh)


class _Binary(_Elementwise):
    arity = 2


@register("add")
class Add(_Binary):
    def body(self, dt, a, b):
        if not DTYPES[dt].is_float:
            return arith.addi(a, b)
        return narrow(arith.addf(widen(a, dt), widen(b, dt)), dt)

    def reference(self, w, inputs):
        r = inputs[0] + inputs[1]
        return [wrap_i8(r) if w.dtype == "i8" else r]


@register("mul")
class Mul(_Binary):
    def body(self, dt, a, b):
        if not DTYPES[dt].is_float:
            return arith.muli(a, b)
        return narrow(arith.mulf(widen(a, dt), widen(b, dt)), dt)

    def reference(self, w, inputs):
        r = inputs[0] * inputs[1]
        return [wrap_i8(r) if w.dtype == "i8" else r]


@register("relu")
class Relu(_Elementwise):
    def body(self, dt, x):
        if not DTYPES[dt].is_float:
            return arith.maxsi(x, const(0, dt))
        return arith.maximumf(x, const(0.0, dt))     # exact in any float type: no widening

    def reference(self, w, inputs):
        return [np.maximum(inputs[0], 0.0)]


@register("gelu")
class Gelu(_Elementwise):
    dtypes = ("f32", "bf16", "f16")
    flops_per_element = 8.0     # erf counted as a few flops; a convention, not a measurement

    def body(self, dt, x):
        x = widen(x, dt)
        e = erf_f32(arith.mulf(x, fconst(1.0 / pymath.sqrt(2.0))))
        y = arith.mulf(arith.mulf(fconst(0.5), x), arith.addf(fconst(1.0), e))
        return narrow(y, dt)

    def sample_inputs(self, w, rng):
        return [rng.uniform(-4.0, 4.0, w.shapes[0])]    # cover both tails of erf

    def reference(self, w, inputs):
        x = inputs[0]
        return [0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0)))]
