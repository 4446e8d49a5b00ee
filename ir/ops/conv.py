"""2-D convolution: ``conv2d_nhwc`` (input NHWC, filter HWCF, ``linalg.conv_2d_nhwc_hwcf``).

Shapes: ``conv2d_nhwc:NxHxWxC,KHxKWxCxF:DTYPE[:stride=S,pad=P]``; stride (default 1) applies to
both spatial dims, ``pad`` is symmetric zero padding (default 0).  The output is N x OH x OW x F
with ``OH = (H + 2P - KH) // S + 1`` (likewise OW).  Inputs f32, bf16, f16 (accumulate in f32) or
i8 (accumulate in i32).  The kernel takes (input, filter, output): it zero-pads the input into a
scratch buffer when P > 0, zero-fills the output and accumulates into it.

Knobs (loop dims n, oh, ow, f; reductions kh, kw, c):

``tile``          [OHc, OWc, Fc, Cc] cache tile over (oh, ow, f, c), 0 = whole dim; the loops
                  run in that order, so Fc, Cc keep a filter block in cache (C, F >= 256)
``reg_tile``      [owr, fr] register tile: owr output pixels (one row) x fr output channels
``c_tile``        input channels per reduction step (unrolled in registers), 1..C (<= Cc)
``vectorize``     vectorize the register tile
``threads``       OpenMP threads; ``parallel_dim`` "n", "oh" or "f" is split across them
``precision``     f32 workloads may compute in bf16 or f16 (inputs converted, f32 accumulate)

Partial tiles (any size that does not divide its dim) are peeled, so every tile but a
remainder's has static sizes and all of them vectorize.

The schedule tiles on tensors (threads, cache, register, then the reduction one filter tap and
``c_tile`` channels at a time), peels, and ``decompose``s each 2-D tile (oh = kh = 1) into a 1-D
conv; then bufferizes, and vectorizes on buffers: vectorizing on tensors would also turn the
padding's ``insert_slice`` into one whole-image vector (thousands of ops, seconds of compile).
CSE after bufferization makes that ``insert_slice``'s copy a self-copy that folds away.
Accumulators are hoisted into registers across the kh, kw, c loops (MLIR_NOTES, "Tensors,
fusion, bufferization" and "The best single-core matmul schedule").
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from torch_mlir import ir
from torch_mlir.dialects import arith, func, linalg, tensor

from tilewise.ir.dtypes import DTYPES
from tilewise.ir.ops.base import ArgSpec, OpKind, ScheduleError, check_int_list, check_rank, register
from tilewise.core.schedule import Schedule
from tilewise.core.workload import WorkloadError

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
        "tile": "cache tile [OHc, OWc, Fc, Cc] (0 = whole dim)",
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
                scratch = tensor.empty(list(padded), DTYPES[precision].mlir_type())
                z = linalg.fill(_zero(precision), outs=[scratch])
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

    def baseline(self, w, inputs: Sequence[np.ndarray]):
        """PyTorch's CPU convolution (oneDNN) on channels-last tensors: the same memory layout as
        ours, so neither side pays a transpose.  Its thread count comes from OMP_NUM_THREADS."""
        import torch
        g = self.geometry(w)
        x = torch.from_numpy(np.ascontiguousarray(inputs[0])).permute(0, 3, 1, 2)      # NCHW view, NHWC memory
        k = torch.from_numpy(np.ascontiguousarray(inputs[1])).permute(3, 2, 0, 1).contiguous(
            memory_format=torch.channels_last)

        def run():
            with torch.no_grad():
                return torch.nn.functional.conv2d(x, k, stride=g["stride"], padding=g["pad"])
        return "torch", run

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
            raise ScheduleError(f"c_tile={c_tile!r}: must be an integer in [1, {g['c']}] "
                                "(the input channels)")
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
        f = script.func()
        # zero fills and the padding copy: one row of channels (one vector) per step
        script.tile(script.match(["linalg.fill", "linalg.copy"], f), [1, 1, 1, 0])
        conv = script.match(CONV_OP, f)
        threads = int(s.get("threads", 1))
        if threads > 1:
            num_threads = [0] * 7
            num_threads[("n", "oh", "ow", "f").index(s.get("parallel_dim", "oh"))] = threads
            script.tile_forall(conv, num_threads)
        toh, tow, tf, tc = s.get("tile", (0, 0, 0, 0))
        if toh or tow or tf or tc:
            tile_and_peel(script, f, [0, toh, tow, tf, 0, 0, tc], peel_from=0)
        owr, fr = s.get("reg_tile", (1, 1))
        tile_and_peel(script, f, [1, 1, owr, fr, 0, 0, 0], peel_from=2)        # ow, f
        tile_and_peel(script, f, [0, 0, 0, 0, 1, 1, int(s.get("c_tile", 1))], peel_from=2)
        script.decompose(script.match(CONV_OP, f))
        script.canonicalize(f)
        root = script.bufferize()
        if s.get("vectorize", True):
            script.vectorize_bufferized(root)


def tile_and_peel(script, f, sizes: list[int], peel_from: int) -> None:
    """Tile every conv (peeling made copies) by ``sizes``; peel the loops from ``peel_from`` on
    (the others have step 1 or divide their dim) so full tiles get static shapes.  Also the fused
    conv kernels' (``frontends.torch_backend.mlir_conv``)."""
    _, loops = script.tile(script.match(CONV_OP, f), sizes)
    script.peel(loops[peel_from:])
    script.canonicalize(f)
