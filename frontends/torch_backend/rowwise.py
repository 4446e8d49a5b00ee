"""Row-wise groups: chains of elementwise ops and last-dim reductions as one fused MLIR kernel.

What a transformer runs between its matmuls -- layer norm and RMS norm (with the residual add in
front of them), gelu_new's ``mul/pow/tanh/add`` chain, SiLU gating ``silu(a) * b``, rotary
embedding's ``mul/add``, softmax -- is a handful of aten ops that each read and write the whole
activation in eager PyTorch.  A *row-wise group* is such a chain: ops that are elementwise (with
operands that broadcast into the result) or reduce the last dim (``mean``/``sum``/``amax`` with
``keepdim``, ``native_layer_norm`` over the last dim, ``_softmax`` over the last dim), f32 on the
CPU, where every value but the last is used inside the group only.  It becomes one kernel that
reads the chain's inputs once and writes its result once:

* the group's nodes are copied into a small FX graph of their inputs (:func:`group_module`) and
  imported with the torch-mlir FX importer (linalg on tensors);
* :func:`prepare` fuses the elementwise generics (``linalg-fuse-elementwise-ops``), expands tanh
  and friends into ``exp`` (``math-expand-ops``), replaces f32 ``math.exp`` / ``math.erf`` by the
  polynomial forms of ``ir.ops`` (LLVM scalarizes ``llvm.intr.exp`` into ``expf`` calls and cannot
  lower a vector ``math.erf``) and small integer powers (``math.fpowi``) by multiplications, and
  makes the result an out argument (destination passing);
* :func:`rowwise_schedule`: one ``scf.forall`` over the rows (leading dims one index at a time,
  the row dim in tiles of ``tile`` rows; OpenMP threads when ``threads`` > 1), every producer
  fused into it in reverse order (``fuse_into_containing_op``), so a row tile's reductions and
  its elementwise work happen while the rows are in L1; inside, each op runs row by row in
  ``vector``-element steps (the partial step peeled), vectorized, then bufferized.

Never a wrong answer: the backend builds the kernel, runs it on the example inputs and compares
it with the group's aten ops in eager PyTorch (normwise relative error <= ``max_rel_error``,
default 1e-4); a group whose import, schedule, build or check fails stays eager (one log line,
the reason in the plan and the trace).  A single op is not a group: one aten op is already one
pass over memory, and a kernel call costs about as much as the op at these sizes.
"""
from __future__ import annotations

import hashlib
import json
import math as pymath
import operator
import warnings
from typing import Any, Sequence

import torch
import torch.fx as fx

from tilewise.frontends.torch_backend.mlir_common import NotFusable, func_of, ops_of, run_passes

aten = torch.ops.aten

#: elementwise aten ops a row-wise group takes (tensor or scalar operands that broadcast)
POINTWISE = {
    aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor, aten.div.Tensor, aten.neg.default,
    aten.exp.default, aten.tanh.default, aten.rsqrt.default, aten.sqrt.default, aten.reciprocal.default,
    aten.pow.Tensor_Scalar, aten.relu.default, aten.gelu.default, aten.silu.default, aten.sigmoid.default,
    aten.erf.default, aten.abs.default, aten.clamp.default,
}
#: reductions over the last dim (their ``dim`` argument is checked by :func:`_eligible`)
LAST_DIM = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten._softmax.default,
            aten._log_softmax.default, aten.native_layer_norm.default}
#: the rows' tile never exceeds this many elements (a tile's rows stay in L1 between the fused ops)
MAX_TILE_ELEMENTS = 4096


def _val(n):
    return n.meta.get("val") if isinstance(n, fx.Node) else None


def _f32(v) -> bool:
    return isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.device.type == "cpu"


def _last_dim(dims, rank: int) -> bool:
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    return len(dims) == 1 and dims[0] % rank == rank - 1


def _eligible(n: fx.Node) -> bool:
    """Whether ``n`` can join a row-wise group (its own shape and arguments only)."""
    if n.op != "call_function" or (n.target not in POINTWISE and n.target not in LAST_DIM):
        return False
    v = _val(n)
    if n.target == aten.native_layer_norm.default:
        x, shape = n.args[0], n.args[1]
        return _f32(_val(x)) and len(shape) == 1 and 2 <= _val(x).dim() <= 4
    if not _f32(v) or not 2 <= v.dim() <= 4 or v.numel() == 0:
        return False
    for a in list(n.args) + list(n.kwargs.values()):
        if isinstance(a, fx.Node):
            av = _val(a)
            if not isinstance(av, torch.Tensor):
                return False
            if not _f32(av):
                return False
    if n.target in (aten.mean.dim, aten.sum.dim_IntList, aten.amax.default):
        x = _val(n.args[0])
        keep = n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)
        return bool(keep) and _last_dim(n.args[1], x.dim()) and not n.kwargs.get("dtype")
    if n.target in (aten._softmax.default, aten._log_softmax.default):
        return _last_dim(n.args[1], v.dim()) and not n.args[2]
    return True


def _output_node(n: fx.Node) -> fx.Node | None:
    """The value of ``n`` that flows on: itself, or the normalized output of a layer norm (its
    ``getitem(., 0)``; the mean and rstd outputs must be unused)."""
    if n.target != aten.native_layer_norm.default:
        return n
    items = [u for u in n.users if u.target is operator.getitem]
    if len(items) != len(n.users) or any(u.args[1] != 0 for u in items if u.users) or \
            sum(1 for u in items if u.users and u.args[1] == 0) != 1:
        return None
    return next(u for u in items if u.args[1] == 0 and u.users)


def _with_items(n: fx.Node) -> list[fx.Node]:
    """``n`` and, for a layer norm, its ``getitem`` users (the unused mean/rstd ones too: they go
    with the group)."""
    if n.target != aten.native_layer_norm.default:
        return [n]
    return [n] + sorted(n.users, key=lambda u: u.args[1])


def _shape(n: fx.Node) -> tuple[int, ...] | None:
    v = _val(_output_node(n) or n)
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


def _domain(n: fx.Node) -> tuple[int, ...] | None:
    """The full row shape ``n`` works in: its input's for a ``keepdim`` reduction, else its own."""
    if n.target in (aten.mean.dim, aten.sum.dim_IntList, aten.amax.default):
        return tuple(_val(n.args[0]).shape)
    return _shape(n)


def _fits(n: fx.Node, domain: tuple[int, ...]) -> bool:
    """Whether ``n`` computes over ``domain``'s rows: its value is the full rows or one per row (a
    reduction: of rows of ``domain``)."""
    if _shape(n) not in (domain, domain[:-1] + (1,)):
        return False
    return n.target not in (aten.mean.dim, aten.sum.dim_IntList, aten.amax.default) or _domain(n) == domain


def find_rowwise_groups(g: fx.Graph, taken: set[fx.Node]) -> list[dict[str, Any]]:
    """Row-wise groups of ``g`` among the nodes no kernel group owns: ``{"nodes", "inputs",
    "shape"}`` each (nodes in graph order, the last one's value the group's result, ``shape``)."""
    groups = []
    own: set[fx.Node] = set(taken)
    for n in list(g.nodes):
        if n in own or not _eligible(n) or _domain(n) is None or _output_node(n) is None:
            continue
        domain = _domain(n)
        nodes = _with_items(n)
        cur = _output_node(n)
        # follow the chain while the value has one user that is eligible and works on the same rows
        while len(cur.users) == 1:
            c = next(iter(cur.users))
            if c in own or not _eligible(c) or _output_node(c) is None or not _fits(c, domain):
                break
            nodes += _with_items(c)
            cur = _output_node(c)
        _absorb_producers(nodes, own, domain)
        if sum(1 for x in nodes if x.target is not operator.getitem) < 2:
            continue
        members = set(nodes)
        # graph order, the result last (a layer norm's unused mean/rstd items may come after it)
        nodes = [x for x in g.nodes if x in members and x is not cur] + [cur]
        inputs: list[fx.Node] = []
        for x in nodes:
            for a in x.all_input_nodes:
                if a not in members and a not in inputs:
                    inputs.append(a)
        own.update(nodes)
        groups.append({"nodes": nodes, "inputs": inputs, "shape": tuple(_val(nodes[-1]).shape)})
    return groups


def _absorb_producers(nodes: list[fx.Node], own: set[fx.Node], domain) -> None:
    """Pull in eligible producers on the same rows whose every user is in the group (gelu_new's
    ``0.5 * x`` beside its ``pow`` chain, RMS norm's ``pow`` before its ``mean``), repeatedly."""
    members = set(nodes)
    changed = True
    while changed:
        changed = False
        for x in list(nodes):
            for p in x.all_input_nodes:
                if p in members or p in own or not _eligible(p) or p.target == aten.native_layer_norm.default:
                    continue
                if _fits(p, domain) and all(u in members for u in p.users):
                    nodes.append(p)
                    members.add(p)
                    changed = True


def group_ops(nodes: Sequence[fx.Node]) -> list[str]:
    from tilewise.frontends.torch_backend.graph import op_name
    return [op_name(x) for x in nodes if x.target is not operator.getitem]


# --- the group as a program --------------------------------------------------------------------
def group_module(nodes: Sequence[fx.Node], inputs: Sequence[fx.Node]) -> fx.GraphModule:
    """The group's nodes as a GraphModule of its inputs (in order).  A layer norm is written out in
    f32 ops (mean, centred mean square, rsqrt, scale, shift): the importer's decomposition of
    ``native_layer_norm`` computes the variance in f64 (an f64 copy of the rows; the fused kernel
    ran 0.77x eager's time-wise), where eager PyTorch accumulates in f32 too."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for i, x in enumerate(inputs):
        env[x] = graph.placeholder(f"in{i}")
        env[x].meta["val"] = _val(x)
    for x in nodes:
        if x.target == aten.native_layer_norm.default:
            env[x] = _layer_norm_f32(graph, *fx.node.map_arg(x.args, lambda a: env[a]))
        elif x.target is operator.getitem and x.args[0].target == aten.native_layer_norm.default:
            env[x] = env[x.args[0]]
        else:
            env[x] = graph.node_copy(x, lambda a: env[a])
    graph.output(env[nodes[-1]])
    return fx.GraphModule(torch.nn.Module(), graph)


def _layer_norm_f32(graph: fx.Graph, x, shape, weight=None, bias=None, eps=1e-5) -> fx.Node:
    call = graph.call_function
    mean = call(aten.mean.dim, (x, [-1], True))
    centred = call(aten.sub.Tensor, (x, mean))
    var = call(aten.mean.dim, (call(aten.mul.Tensor, (centred, centred)), [-1], True))
    y = call(aten.mul.Tensor, (centred, call(aten.rsqrt.default, (call(aten.add.Tensor, (var, float(eps))),))))
    if weight is not None:
        y = call(aten.mul.Tensor, (y, weight))
    if bias is not None:
        y = call(aten.add.Tensor, (y, bias))
    return y


def group_text(nodes: Sequence[fx.Node], inputs: Sequence[fx.Node]) -> str:
    """A canonical text of the group (ops, constant arguments, input shapes): its cache key part."""
    index = {x: f"in{i}" for i, x in enumerate(inputs)}
    index.update({x: f"v{i}" for i, x in enumerate(nodes)})
    lines = [",".join(f"{tuple(_val(x).shape)}:{_val(x).dtype}" for x in inputs)]
    for x in nodes:
        args = fx.node.map_arg((x.args, x.kwargs), lambda a: index[a])
        lines.append(f"{x.target}{args}")
    return "\n".join(lines)


def import_module(gm: fx.GraphModule, inputs: Sequence[fx.Node]):
    from torch_mlir import fx as tfx
    example = [torch.zeros(tuple(_val(x).shape), dtype=_val(x).dtype) for x in inputs]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return tfx.export_and_import(gm, *example, output_type="linalg-on-tensors", func_name="kernel")


def _replace_math(module) -> None:
    """f32 ``math.exp`` / ``math.erf`` -> the polynomial forms; ``math.fpowi`` by a constant
    0 <= n <= 8 -> multiplications (module docstring)."""
    from torch_mlir import ir
    from torch_mlir.dialects import arith
    from tilewise.ir.ops.elementwise import erf_f32
    from tilewise.ir.ops.reduction import exp_f32
    found = []

    def visit(op):
        if op.name in ("math.exp", "math.erf", "math.fpowi"):
            found.append(op)
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
    f32 = ir.F32Type.get()
    for op in found:
        x = op.operands[0]
        if x.type != f32:
            continue
        with ir.InsertionPoint(op), op.location:
            if op.name == "math.exp":
                new = exp_f32(x)
            elif op.name == "math.erf":
                new = erf_f32(x)
            else:
                owner = op.operands[1].owner
                if getattr(owner, "name", "") != "arith.constant":
                    continue
                n = ir.IntegerAttr(owner.attributes["value"]).value
                if not 0 <= n <= 8:
                    continue
                new = arith.ConstantOp(f32, 1.0).result
                for _ in range(n):
                    new = arith.mulf(new, x)
        op.results[0].replace_all_uses_with(new)
        op.erase()


def prepare(module) -> tuple[tuple[int, ...], list[tuple[str, int]]]:
    """The imported module in kernel form (module docstring): ``(the kernel's output shape, [(linalg
    op name, loop count)] in order)``.  Unit dims are folded away first (``keepdim`` reductions
    write ``[rows, 1]`` through a constant index, which tile-and-fuse cannot slice): the kernel
    works on the collapsed shapes, its arguments are collapsed views of the group's tensors and its
    out argument has the collapsed output shape."""
    from torch_mlir import ir
    run_passes(module, "builtin.module(func.func(linalg-fuse-elementwise-ops,linalg-fold-unit-extent-dims,"
                       "canonicalize,cse))")
    run_passes(module, "builtin.module(func.func(math-expand-ops,canonicalize))")
    with module.context, ir.Location.unknown():
        _replace_math(module)
        f = func_of(module)
        ret = next(op for op in ops_of(f) if op.name == "func.return")
        if len(ret.operands) != 1:
            raise NotFusable(f"the group returns {len(ret.operands)} values")
        value = ret.operands[0]
        last = value.owner
        if getattr(last, "name", "") == "tensor.expand_shape":      # the folded unit dims, back
            value = last.operands[0]
            last = value.owner
        if getattr(last, "name", "") != "linalg.generic":
            raise NotFusable(f"the group's result comes from {getattr(last, 'name', '?')}, not a linalg.generic")
        n_in = len(last.operands) - 1
        if getattr(last.operands[n_in].owner, "name", "") != "tensor.empty":
            raise NotFusable("the last op accumulates into its output")
        if list(last.regions[0].blocks[0].arguments[n_in].uses):
            raise NotFusable("the last op reads its output")
        out_type = last.results[0].type
        out = f.regions[0].blocks[0].add_argument(out_type, ir.Location.unknown())
        last.operands[n_in] = out
        ret.operands[0] = last.results[0]
        ftype = ir.FunctionType(ir.TypeAttr(f.attributes["function_type"]).value)
        f.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(list(ftype.inputs) + [out_type],
                                                                            [out_type]))
        f.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        out_shape = tuple(ir.RankedTensorType(out_type).shape)
    run_passes(module, "builtin.module(func.func(canonicalize,cse))")
    ops = [(op.name, len(ir.ArrayAttr(op.attributes["iterator_types"])) if op.name == "linalg.generic" else 0)
           for op in ops_of(func_of(module)) if op.name.startswith("linalg.")]
    bad = [n for n, _ in ops if n not in ("linalg.generic", "linalg.fill")]
    if bad:
        raise NotFusable(f"linalg ops the row-wise schedule does not tile: {', '.join(sorted(set(bad)))}")
    if not 1 <= len(out_shape) <= 4:
        raise NotFusable(f"a rank-{len(out_shape)} result")
    return out_shape, ops


# --- the schedule --------------------------------------------------------------------------------
def default_schedule(shape: Sequence[int], threads: int, lanes: int = 8) -> dict[str, Any]:
    """Rows per tile: the most rows that keep a tile within MAX_TILE_ELEMENTS and divide the row dim
    (at least ``threads`` tiles); one SIMD register per step.  ``shape``: the kernel's (folded)."""
    shape = tuple(shape) if len(shape) >= 2 else (1, *shape)
    rows, width = shape[-2], shape[-1]
    lead = pymath.prod(shape[:-2])
    tile = 1
    for t in range(1, rows + 1):
        if rows % t == 0 and t * width <= MAX_TILE_ELEMENTS and lead * (rows // t) >= threads:
            tile = t
    return {"tile": tile, "vector": max(1, min(lanes, width)), "threads": threads, "vectorize": True}


def rowwise_schedule(script, shape: Sequence[int], ops: Sequence[tuple[str, int]], s: dict[str, Any]) -> None:
    """``structured.fuse`` of the last op over row tiles (one ``scf.forall``), its producers fused into
    each tile (copies of a producer two ops read are merged by CSE); inside, every generic row by
    row in ``vector`` steps; vectorize, bufferize, lower."""
    rank = len(shape)
    tile, vector = int(s["tile"]), int(s["vector"])
    ranks = {r for n, r in ops if n == "linalg.generic"}
    if ranks != {rank}:
        raise NotFusable(f"generics of {sorted(ranks)} loops over a rank-{rank} result")
    f = script.func()
    if rank >= 2:
        if shape[-2] % tile:
            raise NotFusable(f"tile={tile} does not divide the {shape[-2]} rows")
        last = script.split(script.match("linalg.generic", f), sum(1 for n, _ in ops if n == "linalg.generic"))[-1]
        script.fuse(last, [1] * (rank - 2) + [tile, 0], use_forall=True)
        script.canonicalize(f)         # the unfused originals are dead now
        script.cse(f)
    script.rows_in_vectors([script.match("linalg.generic", f)], rank, vector, f, s.get("vectorize", True))


def kernel_key(text: str, s: dict[str, Any]) -> str:
    from tilewise import __version__ as tw_version
    from tilewise.frontends.torch_backend import kernels
    body = "\n".join(["rowwise-v1", text, json.dumps(s, sort_keys=True), kernels.target().key(),
                      str(tw_version), torch.__version__])
    return hashlib.sha256(body.encode()).hexdigest()


def build(gm: fx.GraphModule, inputs: Sequence[fx.Node], s: dict[str, Any], library_path: str) -> None:
    """Import, prepare, schedule, lower, JIT and link the group's kernel into ``library_path``."""
    from torch_mlir import ir
    from tilewise.ir.compiler import apply_schedule, jit_engine, write_shared_library
    module = import_module(gm, inputs)
    shape, ops = prepare(module)
    if tuple(shape) != tuple(s["out"]):
        raise NotFusable(f"the kernel's output is {list(shape)}, expected {list(s['out'])}")
    threads = int(s.get("threads", 1))
    with module.context, ir.Location.unknown():
        apply_schedule(module, lambda script: rowwise_schedule(script, shape, ops, s), what="row-wise script",
                       passthrough=(NotFusable,))
        write_shared_library(jit_engine(module, threads, lookup=True), library_path, threads)


def kernel_signature(inputs: Sequence[fx.Node], shape: Sequence[int]) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """(the kernel's argument shapes, its output shape): the inputs as they are, the output with its
    unit dims folded away (what ``prepare`` leaves; ``build`` checks it)."""
    return [tuple(_val(x).shape) for x in inputs], tuple(d for d in shape if d != 1) or (1,)


def load(nodes, inputs, s: dict[str, Any], cache_dir: str | None):
    """A LibraryKernel for the group (built once per key into the compile cache)."""
    from tilewise.frontends.torch_backend.kernels import cached_library
    from tilewise.ir.compiler import LibraryKernel
    from tilewise.ir.ops.base import ArgSpec
    gm = group_module(nodes, inputs)
    path = cached_library(cache_dir, "rowwise-" + kernel_key(group_text(nodes, inputs), s) + ".so",
                          lambda tmp: build(gm, inputs, s, tmp))
    args, out = s["args"], s["out"]
    specs = [ArgSpec(tuple(a), "f32") for a in args] + [ArgSpec(tuple(out), "f32", True)]
    return LibraryKernel(path, specs)


class RowwiseRunner:
    """Callable: the group's inputs in (contiguous, seen in the kernel's folded shapes), its result
    out (a fresh tensor, or one buffer reused across calls when the result cannot escape the
    graph's call)."""

    def __init__(self, kernel, shape: Sequence[int], args: Sequence[Sequence[int]], out: Sequence[int],
                 reuse_output: bool = False):
        from tilewise.frontends.torch_backend.runtime import BoundCall
        self.kernel, self.shape = kernel, tuple(shape)
        self.args, self.out = [tuple(a) for a in args], tuple(out)
        self._call = BoundCall(kernel._fn, [*self.args, self.out])
        self._buffer = torch.empty(self.shape, dtype=torch.float32) if reuse_output else None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self._buffer if self._buffer is not None else torch.empty(self.shape, dtype=torch.float32)
        self._call(*[x.contiguous() for x in inputs], out)   # same data, the kernel's folded shapes
        return out


# --- the backend's side ----------------------------------------------------------------------------
def variants(s: dict[str, Any]) -> list[dict[str, Any]]:
    """max-autotune's schedules of a row-wise group: the default, one row per tile, and 2x / 4x
    longer vector steps (those the row's width allows)."""
    width = s["out"][-1]
    out = [s, {**s, "tile": 1}] + [{**s, "vector": v} for v in (2 * s["vector"], 4 * s["vector"]) if v <= width]
    return [v for i, v in enumerate(out) if v not in out[:i]]


def _tuned(spec, s: dict[str, Any], shape, env: dict, opts, reuse_output: bool):
    """``(schedule, runner)``: the fastest of :func:`variants` that builds (each timed alone on the
    example inputs; the check against eager follows in the caller)."""
    from tilewise.frontends.torch_backend import profile
    ins = [env[i] for i in spec.inputs]
    best, errors = None, []
    for v in variants(s):
        try:
            runner = RowwiseRunner(load(spec.nodes, spec.inputs, v, opts.cache_dir()), shape, v["args"], v["out"],
                                   reuse_output=reuse_output)
            t, _ = profile.median_time_s(lambda: runner(*ins), budget_s=0.02)
        except Exception as e:      # a variant that does not build is skipped
            errors.append(f"{type(e).__name__}: {' '.join(str(e).split())[:120]}")
            continue
        if best is None or t < best[0]:
            best = (t, v, runner)
    if best is None:
        raise NotFusable("no variant built: " + "; ".join(errors[:2]))
    return best[1], best[2]


class RowwiseKind:
    """The group kind of a row-wise group (``GroupSpec.kind``): its kernel works in the graph's own
    row-major layout."""
    channels_last = False


ROWWISE = RowwiseKind()


def specs(groups: list[dict[str, Any]]):
    """GroupSpecs of :func:`find_rowwise_groups`' groups (``anchor`` "rowwise"; the workload is a
    digest of the group's text: what the plan cache matches on)."""
    from tilewise.frontends.torch_backend.graph import GroupSpec
    out = []
    for i, g in enumerate(groups):
        digest = hashlib.sha256(group_text(g["nodes"], g["inputs"]).encode()).hexdigest()[:16]
        out.append(GroupSpec(name=f"rowwise{i}", anchor="rowwise", workload=f"rowwise:{digest}",
                             ops=group_ops(g["nodes"]), operands={}, epilogue=[], nodes=list(g["nodes"]),
                             inputs=list(g["inputs"]), kind=ROWWISE))
    return out


def decide(spec, entry: dict[str, Any] | None, env, opts, threads: int, reuse_output: bool):
    """``(runner or None, plan entry)`` of a row-wise group.  A cached entry is followed (its schedule
    built again, or eager with its reason); else the default schedule is built, checked against the
    group's aten ops in eager PyTorch on the example inputs and timed against them (interleaved
    medians): the faster runs, and the plan says why."""
    from tilewise.frontends.torch_backend import profile
    shape = tuple(_val(spec.nodes[-1]).shape)
    if entry is not None and entry.get("schedule") is None:
        return None, entry
    if entry is not None and entry.get("use_kernel") is False:
        return None, entry
    args, out = kernel_signature(spec.inputs, shape)
    s = entry["schedule"] if entry is not None else {**default_schedule(out, threads), "args": args, "out": out}
    plan = {"workload": spec.workload, "schedule": s, "source": "row-wise default", "use_kernel": True,
            "reason": None, **({k: v for k, v in entry.items() if k in ("kernel_s", "eager_s")} if entry else {})}
    try:
        if entry is None and opts.mode == "max-autotune":
            s, runner = _tuned(spec, s, shape, env(), opts, reuse_output)
            plan.update(schedule=s, source="row-wise, max-autotune (tile x vector timed)")
        else:
            runner = RowwiseRunner(load(spec.nodes, spec.inputs, s, opts.cache_dir()), shape, s["args"], s["out"],
                                   reuse_output=reuse_output)
    except NotFusable as e:
        return None, {**plan, "schedule": None, "reason": f"no row-wise kernel: {e}"}
    except Exception as e:       # the importer, the transform, the JIT or the link rejected it
        return None, {**plan, "schedule": None,
                      "reason": f"row-wise kernel failed to build: {type(e).__name__}: {' '.join(str(e).split())[:200]}"}
    if entry is not None:
        return runner, plan
    return (runner if profile.check_and_time(runner, spec, env(), opts, plan, "row-wise kernel") else None), plan
