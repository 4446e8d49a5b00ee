"""A conv2d fusion group through the torch-mlir FX importer: conv + epilogue as one MLIR kernel.

The kernel works in the backend's layouts: activation NHWC, filter HWCF (packed once), output NHWC
(the group's value is its NCHW view, as for the unfused conv kernel).  ``conv_program`` writes the
group as a torch module of those arguments -- ``conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0,
1))`` then ``permute(0, 2, 3, 1)`` and the epilogue on the NHWC value, its tensors permuted the same
way -- and the FX importer gives ``linalg.conv_2d_nchw_fchw`` between ``linalg.transpose`` ops and a
``tensor.pad`` in NCHW.

The layout problem is solved on the imported module with the MLIR Python bindings
(:func:`to_nhwc`): the ``transpose -> pad -> conv_2d_nchw_fchw <- transpose`` pattern, whose
transposes undo exactly the program's permutes, is replaced by ``linalg.conv_2d_nhwc_hwcf`` on the
function's own NHWC / HWCF arguments -- the op the tuned conv kernel (``ir/ops/conv.py``) is
scheduled for -- with the padding done as that kernel does it (zero fill of a scratch tensor, the
input copied into its interior), and the epilogue's generics reading the NHWC result directly.
The dead transposes fold away; ``mlir_group.prepare`` then merges the epilogue into one generic
that updates the conv's result in place in the output argument.

``fused_conv_schedule``: the epilogue generic is the root being tiled.  Threads: one
``structured.fuse`` with ``use_forall`` over the schedule's ``parallel_dim`` (the conv and its fill
fused into each thread's tile); cache tile: ``structured.fuse`` at (1, OHc, OWc, Fc) -- one output
row when the schedule has no cache tile -- with the conv and its fill fused into each tile, so the
epilogue reads the tile while it is still in L1.  Inside each tile the conv gets the rest of its
tuned schedule unchanged: the Cc reduction tile, the register tile [owr, fr], one filter tap and
``c_tile`` channels per step, peeling, ``decompose`` to 1-D, bufferize, vectorize, hoist and the
vector lowering.  The epilogue runs over the tile one row of channels (a vector) at a time.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from tilewise.frontends.torch_backend.mlir_common import NotFusable, apply_steps, func_of, ops_of, run_passes

CONV_NCHW = "linalg.conv_2d_nchw_fchw"
CONV_NHWC = "linalg.conv_2d_nhwc_hwcf"


def _geometry(spec: dict[str, Any]) -> dict[str, int]:
    from tilewise.core.workload import Workload
    w = Workload.parse(spec["workload"])
    return w.kind.geometry(w)


# --- the group as a torch program ------------------------------------------------------------------
def conv_program(spec: dict[str, Any], input_shapes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Like ``mlir_group.group_program`` for a conv group; every extra tensor is passed in the NHWC
    output domain: ``extra`` entries are ``(input index, kernel shape, "nchw" | "channel")`` --
    "nchw": a tensor that broadcasts into the NCHW value, permuted to NHWC; "channel": the conv's
    bias (one value per output channel)."""
    g = _geometry(spec)
    logical = (g["n"], g["f"], g["oh"], g["ow"])
    dom = (g["n"], g["oh"], g["ow"], g["f"])
    extra: list[tuple[int, tuple[int, ...], str]] = []
    steps: list[dict[str, Any]] = []
    for st in spec["epilogue"]:
        op = st["op"]
        if op == "view":
            raise NotFusable("a view inside a conv group's epilogue")
        if op == "unary" or "input" not in st:
            steps.append(dict(st))
            continue
        shape = tuple(input_shapes[st["input"]])
        if op == "bias":
            if shape != (g["f"],):
                raise NotFusable(f"a conv bias of shape {list(shape)}")
            kshape, how = (g["f"],), "channel"
        else:
            if len(shape) > 4 or torch.broadcast_shapes(shape, logical) != logical:
                raise NotFusable(f"an epilogue operand of shape {list(shape)} grows the output")
            s4 = (1,) * (4 - len(shape)) + shape
            kshape, how = (s4[0], s4[2], s4[3], s4[1]), "nchw"
        slot = next((i for i, e in enumerate(extra) if e == (st["input"], kshape, how)), None)
        if slot is None:
            extra.append((st["input"], kshape, how))
            slot = len(extra) - 1
        steps.append({**st, "slot": slot, "op": "bias" if op == "bias" else "binary",
                      "name": st.get("name", "add")})
    return {"extra": extra, "out_shape": dom, "final_shape": logical, "layout": "nhwc", "steps": steps,
            "stride": g["stride"], "pad": g["pad"]}


def extra_operand(t: torch.Tensor, kshape: Sequence[int], how: str) -> torch.Tensor:
    """An epilogue tensor of the group as the fused conv kernel reads it (NHWC domain)."""
    if how == "channel":
        return t.contiguous().reshape(tuple(kshape))
    s4 = (1,) * (4 - t.dim()) + tuple(t.shape)
    return t.reshape(s4).permute(0, 2, 3, 1).contiguous()


class ConvProgram(torch.nn.Module):
    """``epilogue(conv2d(x, w))`` of the kernel's arguments, in NHWC."""

    def __init__(self, steps: list[dict[str, Any]], stride: int, pad: int):
        super().__init__()
        self.steps, self.stride, self.pad = steps, stride, pad

    def forward(self, x, w, *extra):
        y = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2), w.permute(3, 2, 0, 1),
                                       stride=self.stride, padding=self.pad)
        return apply_steps(y.permute(0, 2, 3, 1), self.steps, extra)


def conv_arg_shapes(spec: dict[str, Any], prog: dict[str, Any]) -> list[tuple[int, ...]]:
    g = _geometry(spec)
    return [(g["n"], g["h"], g["w"], g["c"]), (g["kh"], g["kw"], g["c"], g["f"])] + \
        [tuple(e[1]) for e in prog["extra"]]


# --- imported module -> conv_2d_nhwc_hwcf ----------------------------------------------------------
def _defining(v):
    """The op that defines ``v`` (None for a block argument)."""
    from torch_mlir import ir
    return None if isinstance(v.owner, ir.Block) else v.owner


def _transpose_of(v, perm: list[int]):
    """``v``'s source when ``v = linalg.transpose(source, perm)``, else None."""
    op = _defining(v)
    if op is None or op.name != "linalg.transpose":
        return None
    got = [int(x) for x in op.attributes["permutation"]]
    return op.operands[0] if got == perm else None


def to_nhwc(module, pad: int, stride: int) -> None:
    """Replace the imported NCHW conv (module docstring) by ``linalg.conv_2d_nhwc_hwcf`` on the
    function's NHWC input and HWCF filter.  Raises NotFusable when the pattern is not found."""
    from torch_mlir import ir
    from torch_mlir.dialects import arith, linalg, tensor
    f = func_of(module)
    convs = [op for op in ops_of(f) if op.name == CONV_NCHW]
    if len(convs) != 1:
        raise NotFusable(f"the importer gave {len(convs)} {CONV_NCHW} ops, expected one")
    conv = convs[0]
    if any(int(d) != 1 for d in conv.attributes["dilations"]) or \
            any(int(s) != stride for s in conv.attributes["strides"]):
        raise NotFusable("the imported conv's strides or dilations differ from the group's")
    entry = f.regions[0].blocks[0]
    x_arg, w_arg = entry.arguments[0], entry.arguments[1]
    inp = conv.operands[0]
    if pad:
        pad_op = _defining(inp)
        if pad_op is None or pad_op.name != "tensor.pad" or \
                [int(v) for v in pad_op.attributes["static_low"]] != [0, 0, pad, pad] or \
                [int(v) for v in pad_op.attributes["static_high"]] != [0, 0, pad, pad]:
            raise NotFusable(f"the conv's input is not its NCHW input padded by {pad}")
        inp = pad_op.operands[0]
    if _transpose_of(inp, [0, 3, 1, 2]) != x_arg or _transpose_of(conv.operands[1], [3, 2, 0, 1]) != w_arg:
        raise NotFusable("the conv's operands are not the NHWC input and HWCF filter transposed")
    users = [u.owner for u in conv.results[0].uses]
    if len(users) != 1 or users[0].name != "linalg.transpose" or \
            [int(x) for x in users[0].attributes["permutation"]] != [0, 2, 3, 1]:
        raise NotFusable("the conv's result is not transposed back to NHWC")
    back = users[0]
    x_type = ir.RankedTensorType(x_arg.type)
    out_type = ir.RankedTensorType(back.results[0].type)
    f32 = x_type.element_type
    with ir.InsertionPoint(conv), conv.location:
        zero = arith.ConstantOp(f32, 0.0).result
        src = x_arg
        if pad:
            # the tuned conv kernel's padding: zero a scratch tensor, copy the input into its interior
            n, h, w, c = x_type.shape
            scratch = tensor.empty([n, h + 2 * pad, w + 2 * pad, c], f32)
            z = linalg.fill(zero, outs=[scratch])
            offsets, sizes, strides = [0, pad, pad, 0], list(x_type.shape), [1, 1, 1, 1]
            inner = tensor.extract_slice(x_type, z, [], [], [], offsets, sizes, strides)
            copied = linalg.copy(x_arg, outs=[inner])
            src = tensor.insert_slice(copied, z, [], [], [], offsets, sizes, strides)
        acc = linalg.fill(zero, outs=[tensor.empty(list(out_type.shape), f32)])
        new = linalg.conv_2d_nhwc_hwcf(src, w_arg, outs=[acc], strides=[stride, stride], dilations=[1, 1])
    back.results[0].replace_all_uses_with(new)
    back.erase()
    conv.erase()


# --- the fused schedule ------------------------------------------------------------------------------
def conv_kernel_form(module, pad: int, stride: int) -> tuple[list[str], tuple[str, ...]]:
    """Rewrite the imported conv group into ``linalg.conv_2d_nhwc_hwcf`` (:func:`to_nhwc`); returns
    the linalg ops expected ahead of the output's fill (the padding's fill + copy) and the anchor."""
    from torch_mlir import ir
    with module.context, ir.Location.unknown():
        to_nhwc(module, pad, stride)
    run_passes(module, "builtin.module(func.func(canonicalize,cse))")
    return (["linalg.fill", "linalg.copy"] if pad else []), (CONV_NHWC,)


def _divisor_or(t: int, extent: int, fallback: int) -> int:
    """``t`` when it is a tile that divides ``extent`` (fused tiles must be static), else ``fallback``."""
    return t if t and t < extent and extent % t == 0 else fallback


def conv_fusion_tiles(w, s) -> tuple[list[int] | None, list[int]]:
    """(tile sizes of the epilogue's (n, oh, ow, f) loops for the threads' ``forall`` or None, the
    sizes of the cache tiles inside a thread's tile); 0 = the whole extent."""
    g = w.kind.geometry(w)
    threads = int(s.get("threads", 1))
    ext = {"n": g["n"], "oh": g["oh"], "ow": g["ow"], "f": g["f"]}
    forall = None
    pdim = s.get("parallel_dim", "oh")
    if threads > 1:
        forall = [0, 0, 0, 0]
        i = ("n", "oh", "ow", "f").index(pdim)
        forall[i] = -(-ext[pdim] // threads)
        ragged = ext[pdim] % forall[i] != 0
        ext[pdim] = forall[i]
        if ragged and pdim == "f":
            ext["f"] = 0        # a dynamic extent: not tiled further (the register tile peels it)
    toh, tow, tf, _ = s.get("tile", (0, 0, 0, 0))
    owr, fr = s.get("reg_tile", (1, 1))
    cache = [1 if ext["n"] > 1 else 0,
             _divisor_or(toh, ext["oh"], 1) if ext["oh"] > 1 else 0,
             _divisor_or(tow, ext["ow"], 0) if ext["ow"] else 0,
             _divisor_or(tf, ext["f"], 0) if ext["f"] else 0]
    # the register tile must fit the fused tile (it does when the cache tile was kept)
    if cache[2] and owr > cache[2]:
        cache[2] = 0
    if cache[3] and fr > cache[3]:
        cache[3] = 0
    return forall, cache


def fused_conv_schedule(script, w, s) -> None:
    """The conv's tuned schedule with the epilogue as the root being tiled (module docstring)."""
    from tilewise.ir.ops.conv import tile_and_peel
    f = script.func()
    root = script.match("linalg.generic", f)
    forall, cache = conv_fusion_tiles(w, s)
    if forall is not None:
        root = script.fuse(root, forall, use_forall=True)
    if any(cache):
        script.fuse(root, cache)
    script.canonicalize(f)          # the unfused originals are dead now
    _, _, _, tc = s.get("tile", (0, 0, 0, 0))
    if tc:
        tile_and_peel(script, f, [0, 0, 0, 0, 0, 0, tc], peel_from=0)
    owr, fr = s.get("reg_tile", (1, 1))
    tile_and_peel(script, f, [1, 1, owr, fr, 0, 0, 0], peel_from=2)        # ow, f
    tile_and_peel(script, f, [0, 0, 0, 0, 1, 1, int(s.get("c_tile", 1))], peel_from=2)
    script.decompose(script.match(CONV_NHWC, f))
    script.canonicalize(f)
    root = script.bufferize()
    fb = script.func(root)
    script.cse(fb)
    script.canonicalize(fb)
    # zero fills, the padding copy and the epilogue: one row of channels (one vector) per step
    script.tile(script.match(["linalg.fill", "linalg.copy", "linalg.generic"], fb), [1, 1, 1, 0])
    if not s.get("vectorize", True):
        return
    fh = script.hoist_vector_transfers(script.vectorize(fb))
    script.lower_vectors(fh)

