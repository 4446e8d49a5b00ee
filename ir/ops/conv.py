"""2-D convolution: ``conv2d_nhwc`` (input NHWC, filter HWCF, ``linalg.conv_2d_nhwc_hwcf``).

Shapes: ``conv2d_nhwc:NxHxWxC,KHxKWxCxF:DTYPE[:stride=S,pad=P]``; stride (default 1) applies to
both spatial dims, ``pad`` is symmetric zero padding (default 0).  The output is N x OH x OW x F
with ``OH = (H + 2P - KH) // S + 1`` (likewise OW).  Inputs f32, bf16, f16 (accumulate in f32) or
i8 (accumulate in i32).  The kernel takes (input, filter, output): it zero-pads the input into a
scratch buffer when P > 0, zero-fills the output and accumulates into it.

Knobs (loop dims n, oh, ow, f; reductions kh, kw, c):

``tile``          [OHc, OWc, Fc] cache tile over (oh, ow, f), 0 = whole dim
``reg_tile``      [owr, fr] register tile: owr output pixels x fr output channels
``c_tile``        input channels per reduction step (unrolled in registers), 1..C
``vectorize``     vectorize the register tile
``threads``       OpenMP threads; ``parallel_dim`` "n", "oh" or "f" is split across them
``precision``     f32 workloads may compute in bf16 or f16 (inputs converted, f32 accumulate)

The schedule works on tensors: tile (cache, then register, then reduction: one filter row and
tap at a time), peel partial tiles, ``decompose`` the 2-D conv into 1-D ones (which the
vectorizer handles), vectorize, then bufferize and hoist the accumulators (MLIR_NOTES, "Tensors,
fusion, bufferization").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, linalg, tensor

from tilewise.ir.dtypes import DTYPES
from tilewise.ir.ops.base import ArgSpec, OpKind, ScheduleError, check_int_list, check_rank, register
from tilewise.ir.schedule import Schedule
from tilewise.ir.workload import WorkloadError

CONV_OP = "linalg.conv_2d_nhwc_hwcf"
PARALLEL_DIMS = ("n", "oh", "f")


def _tensor(shape, dt: str) -> ir.RankedTensorType:
    return ir.RankedTensorType.get(list(shape), DTYPES[dt].mlir_type())


def _zero(dt: str):
    t = DTYPES[dt].mlir_type()
    return arith.ConstantOp(t, 0.0 if DTYPES[dt].is_float else 0).result


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@register("conv2d_nhwc")
class Conv2dNhwc(OpKind):
    dtypes = ("f32", "bf16", "f16", "i8")
    precisions = ("f32", "bf16", "f16")
    knobs = {
        "tile": "cache tile [OHc, OWc, Fc] (0 = whole dim)",
        "reg_tile": "register tile [owr, fr]",
        "c_tile": "input channels per reduction step",
        "vectorize": "vectorize the register tile",
        "threads": "OpenMP threads",
        "parallel_dim": "loop dim split across threads (n, oh or f)",
        "precision": "compute element type",
    }

    # -- geometry --------------------------------------------------------------------------------
    @staticmethod
    def geometry(w) -> dict[str, int]:
        """Every size of the problem: n h w c kh kw f stride pad oh ow."""
        (n, h, wd, c), (kh, kw, c2, f) = w.shapes
        s, p = w.attr("stride", 1), w.attr("pad", 0)
        return dict(n=n, h=h, w=wd, c=c, kh=kh, kw=kw, f=f, stride=s, pad=p,
                    oh=(h + 2 * p - kh) // s + 1, ow=(wd + 2 * p - kw) // s + 1)

    # -- what it computes ------------------------------------------------------------------------
    def check(self, w) -> None:
        check_rank(w, [4, 4], "NxHxWxC,KHxKWxCxF")
        unknown = sorted(set(dict(w.attrs)) - {"stride", "pad"})
        if unknown:
            raise WorkloadError(f"{w.op} has no attribute {unknown[0]!r}: its attributes are stride, pad")
        (n, h, wd, c), (kh, kw, c2, f) = w.shapes
        if c != c2:
            raise WorkloadError(f"{w.op}: input channels C={c} do not match the filter's C={c2} "
                                "(shapes are NxHxWxC,KHxKWxCxF)")
        s, p = w.attr("stride", 1), w.attr("pad", 0)
        if s < 1:
            raise WorkloadError(f"{w.op}: stride={s} must be >= 1")
        if p < 0:
            raise WorkloadError(f"{w.op}: pad={p} must be >= 0")
        if kh > h + 2 * p or kw > wd + 2 * p:
            raise WorkloadError(f"{w.op}: the {kh}x{kw} filter is larger than the padded "
                                f"{h + 2 * p}x{wd + 2 * p} input, so the output would be empty")

    def args(self, w, precision: str) -> list[ArgSpec]:
        g = self.geometry(w)
        return [ArgSpec((g["n"], g["h"], g["w"], g["c"]), precision),
                ArgSpec((g["kh"], g["kw"], g["c"], g["f"]), precision),
                ArgSpec((g["n"], g["oh"], g["ow"], g["f"]), DTYPES[w.dtype].accumulator, is_output=True)]

    def build(self, w, precision: str) -> None:
        g = self.geometry(w)
        x, k, o = self.args(w, precision)
        p, s = g["pad"], g["stride"]
        padded = (g["n"], g["h"] + 2 * p, g["w"] + 2 * p, g["c"])

        @func.FuncOp.from_py_func(*(_tensor(a.shape, a.dtype) for a in (x, k, o)), name="kernel")
        def kernel(inp, filt, out):
            if p:
                # zero border: fill a scratch tensor, copy the input into its interior (the
                # extract/insert pair bufferizes in place, so the copy is one pass)
                z = linalg.fill(_zero(precision), outs=[tensor.empty(list(padded), DTYPES[precision].mlir_type())])
                offsets, sizes, strides = [0, p, p, 0], list(x.shape), [1, 1, 1, 1]
                inner = tensor.extract_slice(_tensor(x.shape, precision), z, [], [], [],
                                             offsets, sizes, strides)
                copied = linalg.copy(inp, outs=[inner])
                inp = tensor.insert_slice(copied, z, [], [], [], offsets, sizes, strides)
            acc = linalg.fill(_zero(o.dtype), outs=[out])
            return linalg.conv_2d_nhwc_hwcf(inp, filt, outs=[acc], strides=[s, s], dilations=[1, 1])

    def reference(self, w, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        g = self.geometry(w)
        x, k = inputs
        p, s = g["pad"], g["stride"]
        xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        out = np.zeros((g["n"], g["oh"], g["ow"], g["f"]))
        for i in range(g["kh"]):
            for j in range(g["kw"]):
                window = xp[:, i:i + s * (g["oh"] - 1) + 1:s, j:j + s * (g["ow"] - 1) + 1:s, :]
                out += np.tensordot(window, k[i, j], axes=([3], [0]))
        return [out]

    # -- iteration space -------------------------------------------------------------------------
    def loop_dims(self, w) -> dict[str, int]:
        g = self.geometry(w)
        return {d: g[d] for d in ("n", "oh", "ow", "f", "kh", "kw", "c")}

    def flops(self, w) -> float:
        g = self.geometry(w)
        return 2.0 * g["n"] * g["oh"] * g["ow"] * g["f"] * g["kh"] * g["kw"] * g["c"]

    # -- knobs -----------------------------------------------------------------------------------
    def default_schedule(self, w, target) -> Schedule:
        """What a compiler does untuned: the MLIR_NOTES recipe (4 pixels x one vector of output
        channels, one input channel per step), no cache tiling."""
        g = self.geometry(w)
        lanes = target.simd_lanes(w.dtype)
        return Schedule(tile=[0, 0, 0, 0], reg_tile=[min(4, g["ow"]), min(lanes, g["f"])], c_tile=1,
                        vectorize=True, threads=1, parallel_dim="oh", precision=w.dtype)

    def untuned_schedule(self, w) -> Schedule:
        return Schedule(vectorize=False, threads=1)

    def validate(self, w, s: Schedule) -> None:
        super().validate(w, s)
        g = self.geometry(w)
        tile = check_int_list("tile", s.get("tile", (0, 0, 0, 0)), 4, 0,
                              (g["oh"], g["ow"], g["f"], g["c"]))
        reg = check_int_list("reg_tile", s.get("reg_tile", (1, 1)), 2, 1, (g["ow"], g["f"]))
        for i, name in ((1, "ow"), (2, "f")):
            if tile[i] and reg[i - 1] > tile[i]:
                raise ScheduleError(f"reg_tile {name}={reg[i - 1]} exceeds the cache tile {name}={tile[i]}")
        c_tile = s.get("c_tile", 1)
        if not _is_int(c_tile) or not 1 <= c_tile <= g["c"]:
            raise ScheduleError(f"c_tile={c_tile!r}: must be an integer in [1, {g['c']}] (the input channels)")
        if tile[3] and c_tile > tile[3]:
            raise ScheduleError(f"c_tile={c_tile} exceeds the cache tile c={tile[3]}")
        if not isinstance(s.get("vectorize", True), bool):
            raise ScheduleError(f"vectorize={s.get('vectorize')!r}: must be true or false")
        dim = s.get("parallel_dim", "oh")
        if dim not in PARALLEL_DIMS:
            raise ScheduleError(f"parallel_dim={dim!r}: must be one of {', '.join(PARALLEL_DIMS)}")
        threads = s.get("threads", 1)
        if threads > g[dim]:
            raise ScheduleError(f"threads={threads} exceeds parallel_dim {dim}={g[dim]}: "
                                "use fewer threads or another parallel_dim")

    # -- schedule -> script ----------------------------------------------------------------------
    def schedule(self, script, w, s: Schedule) -> None:
        if not s.get("vectorize", True) and not {"tile", "reg_tile", "c_tile"} & set(s):
            script.bufferize()     # the untuned baseline: plain loops
            return
        g = self.geometry(w)
        f = script.func()
        # elementwise helpers (zero fills, the padding copy): one row of channels at a time
        helpers = script.match(["linalg.fill", "linalg.copy"], f)
        script.tile(helpers, [1, 1, 1, 0])
        conv = script.match(CONV_OP, f)
        threads = int(s.get("threads", 1))
        if threads > 1:
            nt = [0] * 7
            nt[("n", "oh", "ow", "f").index(s.get("parallel_dim", "oh"))] = threads
            conv, _ = script.tile_forall(conv, nt)
        toh, tow, tf, tc = s.get("tile", (0, 0, 0, 0))
        if toh or tow or tf or tc:
            conv, loops = script.tile(conv, [0, toh, tow, tf, 0, 0, tc])
            script.peel(loops)
            script.canonicalize(f)
            conv = script.match(CONV_OP, f)
        owr, fr = s.get("reg_tile", (1, 1))
        conv, loops = script.tile(conv, [1, 1, owr, fr, 0, 0, 0])
        script.peel(loops[2:])
        script.canonicalize(f)
        conv = script.match(CONV_OP, f)
        conv, loops = script.tile(conv, [0, 0, 0, 0, 1, 1, int(s.get("c_tile", 1))])
        script.peel(loops[2:])
        script.canonicalize(f)
        conv = script.match(CONV_OP, f)
        script.decompose(conv)
        script.canonicalize(f)
        root = script.bufferize()
        if not s.get("vectorize", True):
            return
        fb = script.func(root)
        script.cse(fb)
        script.canonicalize(fb)
        fv = script.vectorize(fb)
        fh = script.hoist_vector_transfers(fv)
        script.lower_vectors(fh)
