"""A fusion group through the torch-mlir FX importer: one fused MLIR kernel for anchor + epilogue.

``group_program(kind, spec, input_shapes)`` (``kind``: the group's, :mod:`.group_kinds`) writes the
group's computation as a small torch module of the kernel's arguments -- the activation, the packed
weight ([K, N] for a matmul) and the epilogue's tensors -- and ``import_group`` runs it through ``torch_mlir.fx.export_and_import(...,
output_type="linalg-on-tensors")``.  ``linalg_ops`` walks the imported function: the graph of linalg
ops (``linalg.fill`` + ``linalg.matmul`` / ``linalg.batch_matmul`` + ``linalg.generic``
consumers).  ``prepare`` turns it into the kernel form the tilewise pipeline runs:

* the elementwise consumers merge into one ``linalg.generic`` (``linalg-fuse-elementwise-ops``),
  ``math.erf`` becomes the rational f32 approximation of ``ir.ops.elementwise`` (a vector
  ``math.erf`` cannot be lowered) and ``math-expand-ops`` rewrites tanh and friends into ``exp``;
* destination passing: the output is the function's last argument; the fill writes into it, the
  contraction accumulates into it and the epilogue generic updates it in place (its ``outs`` is the
  contraction's result: every element is read and written at the same index).

``fused_schedule`` applies the anchor's tuned schedule with the epilogue fused into its tiles:
``tile_using_forall`` of the epilogue over threads with the contraction and fill fused in
(``fuse_into_containing_op``), then ``structured.fuse`` of the epilogue at the cache tile (Mc, Nc)
with the contraction and fill fused into each tile, bufferize, and inside each tile the contraction
gets the rest of its schedule unchanged (k tile, B-panel promotion, register tile, vectorization,
k-unroll) while the epilogue runs over the tile, still in L1, row by row in vectors.

Conv2d groups take the same path with their own program, layout rewrite and schedule
(``mlir_conv.py``: NHWC activation, HWCF filter, ``linalg.conv_2d_nhwc_hwcf``).
"""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from typing import Any, Sequence

import torch

from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.frontends.torch_backend import mlir_conv
from tilewise.frontends.torch_backend.mlir_common import NotFusable, apply_steps, func_of, ops_of, run_passes

aten = torch.ops.aten


# --- the group as a torch program ------------------------------------------------------------------
def _anchor_out_shape(spec: dict[str, Any]) -> tuple[int, ...]:
    w = Workload.parse(spec["workload"])
    d = w.loop_dims
    return (d["b"], d["m"], d["n"]) if "b" in d else (d["m"], d["n"])


def group_program(kind, spec: dict[str, Any], input_shapes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """How the fused kernel of ``spec`` (a group of ``kind``, :mod:`.group_kinds`) is called:
    ``{"extra": [(input index, kernel shape)], "out_shape", "final_shape", "steps"}`` -- the
    epilogue's tensor inputs, reshaped into the anchor's output domain (its logical shape may be a
    view of it).  A conv group's program is ``mlir_conv.conv_program``'s (NHWC domain).  Raises
    NotFusable."""
    if not any(st["op"] != "view" for st in spec["epilogue"]):
        raise NotFusable("no elementwise epilogue to fuse")
    return kind.program(spec, input_shapes)


def contraction_program(spec: dict[str, Any], input_shapes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """:func:`group_program` of a matmul or batch-matmul group."""
    dom = _anchor_out_shape(spec)
    cur = dom
    extra: list[tuple[int, tuple[int, ...]]] = []
    steps: list[dict[str, Any]] = []
    for st in spec["epilogue"]:
        op = st["op"]
        if op == "view":
            cur = tuple(st["shape"])
            if math.prod(cur) != math.prod(dom) or cur[-1] != dom[-1]:
                raise NotFusable(f"a view to {list(cur)} that changes the last dim of {list(dom)}")
            continue
        if op == "unary":
            steps.append(dict(st))
            continue
        if "input" not in st:
            steps.append(dict(st))
            continue
        shape = tuple(input_shapes[st["input"]])
        if cur == dom:
            kshape = shape                    # any shape that broadcasts: the importer handles it
        elif shape == cur:
            kshape = dom                      # the full value, seen through the group's view
        elif math.prod(shape) == dom[-1] and shape and shape[-1] == dom[-1]:
            kshape = (dom[-1],)               # a row vector broadcast over the rest
        elif math.prod(shape) == 1:
            kshape = (1,)
        else:
            raise NotFusable(f"an epilogue operand of shape {list(shape)} behind a view")
        if torch.broadcast_shapes(kshape, dom) != dom:
            raise NotFusable(f"an epilogue operand of shape {list(shape)} grows the output")
        slot = next((i for i, (j, s) in enumerate(extra) if j == st["input"] and s == kshape), None)
        if slot is None:
            extra.append((st["input"], kshape))
            slot = len(extra) - 1
        steps.append({**st, "slot": slot, "op": "bias" if op == "bias" else "binary",
                      "name": st.get("name", "add")})
    return {"extra": extra, "out_shape": dom, "final_shape": cur, "steps": steps}


class ContractionProgram(torch.nn.Module):
    """``epilogue(a @ b)`` of the kernel's arguments, in the anchor's output domain."""

    def __init__(self, steps: list[dict[str, Any]], batch: bool):
        super().__init__()
        self.steps, self.batch = steps, batch

    def forward(self, a, b, *extra):
        return apply_steps(torch.bmm(a, b) if self.batch else torch.mm(a, b), self.steps, extra)


def contraction_arg_shapes(spec: dict[str, Any], prog: dict[str, Any]) -> list[tuple[int, ...]]:
    d = Workload.parse(spec["workload"]).loop_dims
    pre = (d["b"],) if "b" in d else ()
    return [pre + (d["m"], d["k"]), pre + (d["k"], d["n"])] + [s for _, s in prog["extra"]]


def import_group(kind, spec: dict[str, Any], prog: dict[str, Any]):
    """The group's program through the torch-mlir FX importer: an ``ir.Module`` of linalg on tensors."""
    from torch_mlir import fx as tfx
    example = [torch.zeros(s, dtype=torch.float32) for s in kind.arg_shapes(spec, prog)]
    module = kind.torch_program(spec, prog).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)     # torch.export's own deprecation notices
        return tfx.export_and_import(module, *example, output_type="linalg-on-tensors", func_name="kernel")


def linalg_ops(module) -> list[dict[str, Any]]:
    """The imported function's linalg ops in order: ``{"op": name, "body": [payload op names]}``."""
    out = []
    for op in ops_of(func_of(module)):
        if op.name.startswith("linalg."):
            body = []
            if op.name == "linalg.generic":
                body = [b.operation.name for b in op.regions[0].blocks[0].operations
                        if b.operation.name != "linalg.yield"]
            out.append({"op": op.name, "body": body})
    return out


# --- imported module -> kernel form ---------------------------------------------------------------
def _replace_erf(module) -> None:
    """``math.erf`` -> the rational approximation (a vector ``math.erf`` does not lower)."""
    from torch_mlir import ir
    from tilewise.ir.ops.elementwise import erf_f32
    erfs = []

    def visit(op):
        if op.name == "math.erf":
            erfs.append(op)
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
    for op in erfs:
        with ir.InsertionPoint(op), op.location:
            new = erf_f32(op.operands[0])
        op.results[0].replace_all_uses_with(new)
        op.erase()


def prepare(module, conv: dict[str, int] | None = None) -> list[str]:
    """Rewrite the imported module into the kernel form (module docstring); returns the linalg op
    names left, in order.  ``conv`` (``{"pad", "stride"}``): the group is a conv's, first rewritten
    into ``linalg.conv_2d_nhwc_hwcf`` on its NHWC/HWCF arguments (``mlir_conv.to_nhwc``), its
    padding (fill + copy) ahead of the output's fill.  Raises NotFusable when the shape is not
    fill -> contraction -> generic."""
    from torch_mlir import ir
    prefix: list[str] = []
    anchors = ("linalg.matmul", "linalg.batch_matmul")
    if conv is not None:
        prefix, anchors = mlir_conv.conv_kernel_form(module, conv["pad"], conv["stride"])
    run_passes(module, "builtin.module(func.func(linalg-fuse-elementwise-ops,canonicalize,cse))")
    run_passes(module, "builtin.module(func.func(math-expand-ops,canonicalize))")
    with module.context, ir.Location.unknown():
        _replace_erf(module)
        f = func_of(module)
        ops = [op for op in ops_of(f) if op.name.startswith("linalg.")]
        names = [op.name for op in ops]
        if len(ops) != len(prefix) + 3 or names[:len(prefix)] != prefix or names[-3] != "linalg.fill" \
                or names[-2] not in anchors or names[-1] != "linalg.generic":
            raise NotFusable(f"unexpected linalg ops after elementwise fusion: {names}")
        fill, mm, gen = ops[-3:]
        ret = next(op for op in ops_of(f) if op.name == "func.return")
        if ret.operands[0] != gen.results[0] or mm.operands[2] != fill.results[0]:
            raise NotFusable("the epilogue's result is not what the function returns")
        out_type = gen.results[0].type
        if mm.results[0].type != out_type:
            raise NotFusable("the epilogue changes the output's type")
        # the generic must not read its init, and must read the contraction's result elementwise
        maps = ir.ArrayAttr(gen.attributes["indexing_maps"])
        n_in = len(gen.operands) - 1
        body = gen.regions[0].blocks[0]
        if list(body.arguments[n_in].uses):
            raise NotFusable("the epilogue reads its output buffer")
        uses = [i for i in range(n_in) if gen.operands[i] == mm.results[0]]
        if not uses or any(not ir.AffineMapAttr(maps[i]).value.is_permutation for i in uses) or \
                any(str(maps[i]) != str(maps[n_in]) for i in uses):
            raise NotFusable("the epilogue does not read the contraction elementwise")
        # destination passing: out argument, fill -> out, generic in place on the contraction result
        entry = f.regions[0].blocks[0]
        out = entry.add_argument(out_type, ir.Location.unknown())
        fill.operands[1] = out
        _in_place(gen, mm.results[0], uses, n_in)
        ftype = ir.FunctionType(ir.TypeAttr(f.attributes["function_type"]).value)
        f.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(list(ftype.inputs) + [out_type],
                                                                            list(ftype.results)))
        f.attributes["sym_name"] = ir.StringAttr.get("kernel")
        f.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
    run_passes(module, "builtin.module(func.func(canonicalize,cse))")
    return names


def _in_place(gen, acc, uses: list[int], n_in: int) -> None:
    """Replace ``gen`` by the same generic that reads ``acc`` through its ``outs`` (in place): its
    other inputs stay, the payload reads the accumulator from the output block argument.  (Reading
    it as an input *and* writing it as the init would make tile-and-fuse fuse the contraction once
    per operand.)"""
    from torch_mlir import ir
    from torch_mlir.dialects import linalg
    maps = list(ir.ArrayAttr(gen.attributes["indexing_maps"]))
    keep = [i for i in range(n_in) if i not in uses]
    old = gen.regions[0].blocks[0]
    with ir.InsertionPoint(gen), gen.location:
        new = linalg.GenericOp([gen.results[0].type], [gen.operands[i] for i in keep], [acc],
                               ir.ArrayAttr.get([maps[i] for i in keep] + [maps[n_in]]),
                               gen.attributes["iterator_types"])
        block = new.regions[0].blocks.append(*[old.arguments[i].type for i in keep + [n_in]])
    mapping = {old.arguments[i]: block.arguments[j] for j, i in enumerate(keep)}
    for i in uses:
        mapping[old.arguments[i]] = block.arguments[len(keep)]
    with ir.InsertionPoint(block):
        for op in old.operations:
            c = op.operation.clone()
            for j, v in enumerate(c.operands):
                if v in mapping:
                    c.operands[j] = mapping[v]
            for r_old, r_new in zip(op.operation.results, c.results):
                mapping[r_old] = r_new
    gen.results[0].replace_all_uses_with(new.results[0])
    gen.erase()


# --- the fused schedule ------------------------------------------------------------------------------
def fusion_tiles(w, s: Schedule) -> tuple[list[int], int]:
    """(tile sizes of the epilogue's loops at the cache tile, the tile's n extent); raises NotFusable when
    the schedule's tiles do not divide the output (fused tiles must be static)."""
    from tilewise.ir.ops.matmul import thread_split
    d = w.loop_dims
    m, n = d["m"], d["n"]
    split = thread_split(int(s.get("threads", 1)), s.get("parallel_dim", "n"))
    tm, tn = split.get("m", 1), split.get("n", 1)
    # a thread's tile; where the threads do not divide a dim its tiles differ in size (dynamic):
    # that dim is then not tiled further (below)
    ragged_m, ragged_n = m % tm != 0, n % tn != 0
    pm, pn = -(-m // tm), -(-n // tn)
    tile = list(s.get("tile", (0, 0, 0)))
    mr, nr = s.get("reg_tile", (1, 1))
    mc = min(tile[0] or pm, pm)
    if pm % mc:                       # the m cache tile matters little (MLIR_NOTES): drop it
        mc = pm
    nc = min(tile[1] or pn, pn)
    if nc == pn and mc == pm:         # no cache tile: fuse at column panels of a few register tiles
        nc = min(pn, 64)
    if pn % nc:                       # the largest multiple of the register tile that divides
        nc = next((c for c in range(nc // nr * nr, 0, -nr) if pn % c == 0), pn)
    if s.get("promote", False):
        from tilewise.ir.ops.matmul import MAX_PANEL_BYTES
        kc = tile[2] or d["k"]
        if nc * kc * 4 > MAX_PANEL_BYTES:
            raise NotFusable(f"a fused {nc}-column B panel of {kc} rows exceeds the promotion buffer")
    if ragged_m:
        mc = pm
    if ragged_n:
        mc, nc = pm, pn
    pre = [1] if "b" in d else []
    # inside a thread's tile: 0 = the whole extent (no loop); the loops run m then n, k inside
    return pre + [0 if mc == pm else mc, 0 if nc == pn else nc], nc


def fused_schedule(script, w, s: Schedule) -> None:
    """The anchor's schedule with the epilogue as the root being tiled (module docstring)."""
    from tilewise.ir.ops.matmul import register_tile_and_vectorize, thread_split
    batch = "b" in w.loop_dims
    pre = [1] if batch else []
    rank = len(pre) + 2
    d = w.loop_dims
    k = d["k"]
    sizes, nc = fusion_tiles(w, s)
    op_name = "linalg.batch_matmul" if batch else "linalg.matmul"
    f = script.func()
    root = script.match("linalg.generic", f)
    threads = int(s.get("threads", 1))
    if threads > 1:
        split = thread_split(threads, s.get("parallel_dim", "n"))
        dims = (["b"] if batch else []) + ["m", "n"]
        root, forall = script.tile_forall(root, [split.get(d, 0) for d in dims])
        for producer in (op_name, "linalg.fill"):
            _, forall = script.fuse_into(script.match(producer, f), forall)
    script.fuse(root, sizes)                        # the contraction and its fill into each tile
    script.canonicalize(f)          # the unfused originals are dead now
    script.bufferize()
    f = script.func()
    script.canonicalize(f)
    fill = script.match("linalg.fill", f)
    mm = script.match(op_name, f)
    gen = script.match("linalg.generic", f)
    _, fill_loops = script.tile(fill, [1] * (rank - 1) + [min(nc, 512)])
    script.peel(fill_loops[-1:])
    _, gen_loops = script.tile(gen, [1] * (rank - 1) + [min(nc, 512)])
    script.peel(gen_loops[-1:])
    # the k cache tile (also when it is the whole k: promotion copies a slice of B, not B itself)
    kc = list(s.get("tile", (0, 0, 0)))[2] or (k if s.get("promote", False) else 0)
    loops = []
    if kc:
        mm, loops = script.tile(mm, [0] * rank + [kc])
    if s.get("promote", False):
        mm = script.promote(mm, [1])
        script.tile(script.match("linalg.copy", f), [1] * len(pre) + [1, 0])
    script.peel(loops)
    script.canonicalize(f)
    mm = script.match(op_name, f)
    register_tile_and_vectorize(script, f, mm, pre, s, w.dtype)


# --- build and load ----------------------------------------------------------------------------------
def fused_key(spec: dict[str, Any], prog: dict[str, Any], s: Schedule) -> str:
    import json
    from tilewise import __version__ as tw_version
    from tilewise.frontends.torch_backend import kernels
    text = "\n".join(["fused-v1", spec["anchor"], spec["workload"],
                      json.dumps(prog["steps"], sort_keys=True), json.dumps(prog["extra"]), s.dumps(),
                      kernels.target().key(), str(tw_version), torch.__version__])
    return hashlib.sha256(text.encode()).hexdigest()


def build_fused(kind, spec: dict[str, Any], prog: dict[str, Any], s: Schedule, library_path: str) -> list[str]:
    """Import, prepare, schedule, lower, JIT and link the fused kernel into ``library_path``;
    returns the imported linalg op names.  Raises NotFusable, CompileError or ScheduleError."""
    from torch_mlir import ir
    from tilewise.ir.compiler import apply_schedule, jit_engine, write_shared_library
    w = Workload.parse(spec["workload"])
    w.kind.validate(w, s)
    if s.get("precision", w.dtype) != w.dtype:
        raise NotFusable("a reduced-precision schedule is not fused")
    module = import_group(kind, spec, prog)
    imported = [o["op"] for o in linalg_ops(module)]
    prepare(module, kind.rewrite(prog))
    threads = int(s.get("threads", 1))
    with module.context, ir.Location.unknown():
        apply_schedule(module, lambda script: kind.schedule(script, w, s), what="fused script",
                       passthrough=(NotFusable,))
        write_shared_library(jit_engine(module, threads, lookup=True), library_path, threads)
    return imported


def load_fused(kind, spec: dict[str, Any], prog: dict[str, Any], s: Schedule, cache_dir: str | None):
    """A LibraryKernel for the fused group (built once per key into the compile cache)."""
    from tilewise.ir.compiler import LibraryKernel
    from tilewise.ir.ops.base import ArgSpec
    shapes = kind.arg_shapes(spec, prog)
    specs = [ArgSpec(tuple(x), "f32") for x in shapes] + [ArgSpec(tuple(prog["out_shape"]), "f32", True)]
    from tilewise.frontends.torch_backend.kernels import cached_library
    path = cached_library(cache_dir, "fused-" + fused_key(spec, prog, s) + ".so",
                          lambda tmp: build_fused(kind, spec, prog, s, tmp))
    return LibraryKernel(path, specs)
