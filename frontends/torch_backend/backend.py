"""The dynamo backend: ``torch.compile(model, backend="tilewise", options={...})``.

Per graph dynamo hands over: trace it to aten ops (``make_fx``, under no_grad), find the fusion
groups (``graph.py``), give each a kernel (schedule from the database / cost model / tuning,
``kernels.py``), replace each group's nodes by one call of its runner (``runtime.py``), and return
the rewritten aten GraphModule; every op outside a group runs in eager PyTorch.

A graph with symbolic (dynamic) sizes is lowered per concrete shape when it is called
(``dynamic.py``).  Never a wrong answer: a graph that needs autograd or fails to trace runs as
dynamo gave it (eager), and an anchor whose dtype, attributes or kernel build are not
supported stays an eager op -- each with one log line (logger ``tilewise.torch_backend``).

Fusion decision: in ``"default"`` mode an anchor's elementwise consumers always join its group --
they run in place on the kernel's fresh output, which saves an allocation and a pass over memory
against eager and can never be slower than running them as separate ops.  Whether the epilogue
runs *inside* the anchor's MLIR kernel (the group through the torch-mlir FX importer, fused into
the anchor's tiles) or as in-place torch ops after it is the group's ``fuse`` knob (``fused.py``).
In ``"max-autotune"`` fused and unfused kernels are timed side by side, then the kernel against
the same ops in eager PyTorch on the example inputs, and the fastest runs (the choices are stored
with the schedule in the compile cache).
"""
from __future__ import annotations

import logging
import time
import types
from typing import Any, Sequence

import torch
import torch.fx as fx

from tilewise.frontends.torch_backend import attention, cache, dynamic, fused, kernels, profile, rowwise
from tilewise.frontends.torch_backend.graph import TRANSPOSES, VIEWS, GroupSpec, find_groups, fold_batch_norms, op_name
from tilewise.frontends.torch_backend.options import BackendOptions
from tilewise.frontends.torch_backend.runtime import GroupRunner

log = logging.getLogger("tilewise.torch_backend")
aten = torch.ops.aten
_SHAPE_OPS = {"aten.view", "aten._unsafe_view", "aten.reshape", "aten.t", "aten.transpose", "aten.permute",
              "aten.expand", "aten.clone", "aten.unsqueeze", "aten.squeeze", "aten.slice", "aten.select",
              "aten.detach", "aten.alias", "getitem"}


def backend(gm: fx.GraphModule, example_inputs: Sequence[Any], mode: str | None = None,
            options: dict[str, Any] | None = None, **kw):
    """Dynamo backend entry point (``torch_dynamo_backends`` entry point ``tilewise``)."""
    opts = BackendOptions.parse(mode, {**(options or {}), **kw})
    return compile_graph(gm, list(example_inputs), opts)


def _why_not(gm: fx.GraphModule, example_inputs: list) -> str | None:
    if torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs):
        return "training mode (autograd needs the backward pass; run under torch.no_grad() or inference_mode())"
    return None


def compile_graph(gm: fx.GraphModule, example_inputs: list, opts: BackendOptions):
    if dynamic.is_symbolic(example_inputs):
        log.info("tilewise: a graph with symbolic sizes: lowered per concrete shape when called")
        return dynamic.ShapeSpecializer(gm, opts, compile_graph)
    t0 = time.perf_counter()
    graph_id = profile.next_graph_id()
    reason = _why_not(gm, example_inputs)
    ag = None
    if reason is None:
        try:
            from torch.fx.experimental.proxy_tensor import make_fx
            # fake tensors: the model does not run (no side effect such as a BatchNorm's running
            # stats twice); outside dynamo's tracing context, so no symbolic sizes join its guards
            with torch._guards.tracing(None), torch.no_grad():
                ag = make_fx(gm, tracing_mode="fake")(*example_inputs)
        except Exception as e:   # anything the tracer rejects runs as dynamo gave it
            reason = f"tracing to aten ops failed: {type(e).__name__}: {_one_line(e)}"
    groups: list[GroupSpec] = []
    if ag is not None:
        placeholders = [n for n in ag.graph.nodes if n.op == "placeholder"]
        params = {n for n, x in zip(placeholders, example_inputs) if isinstance(x, torch.nn.Parameter)}
        if fold_batch_norms(ag.graph):      # eval-mode batch norms -> per-channel conv epilogues
            ag.graph.lint()
            ag.recompile()
        groups, skipped = find_groups(ag.graph, params)
        # scaled_dot_product_attention as tilewise kernels (attention.py)
        groups += attention.find_attention_groups(ag.graph, {n for g in groups for n in g.nodes})
        if opts.rowwise:        # chains of elementwise ops and last-dim reductions among the rest
            owned = {n for g in groups for n in g.nodes}
            groups += rowwise.specs(rowwise.find_rowwise_groups(ag.graph, owned))
        if not groups:
            reason = "no anchor op (matmul, batch matmul, 2-D conv in float32) or chain of row-wise ops to compile" + (
                f"; {_skipped_text(skipped)}" if skipped else "")
    if reason is not None:
        log.warning("tilewise: graph %d runs in eager PyTorch: %s", graph_id, reason)
        profile.record_fallback(opts, gm, graph_id, reason, time.perf_counter() - t0)
        return gm.forward
    try:
        plan_key = cache.plan_key(ag, example_inputs, opts)
        plan = cache.load_plan(opts, plan_key)
        decided = _build_groups(ag, groups, example_inputs, opts, plan)
        _rewrite(ag, decided)
        cache.save_plan(opts, plan_key, {g.name: d["plan"] for g, d in decided})
    except Exception as e:     # a bug or an environment problem: the graph still runs, eagerly
        reason = f"compiling failed: {type(e).__name__}: {_one_line(e)}"
        log.warning("tilewise: graph %d runs in eager PyTorch: %s", graph_id, reason)
        profile.record_fallback(opts, gm, graph_id, reason, time.perf_counter() - t0)
        return gm.forward
    eager_ops = [op_name(n) for n in ag.graph.nodes if n.op == "call_function"
                 and not getattr(n.target, "_tilewise_group", False) and op_name(n) not in _SHAPE_OPS]
    kernels_n = sum(1 for _, d in decided if d["runner"] is not None)
    fused_n = sum(1 for _, d in decided if d["runner"] is not None and d["plan"].get("fuse"))
    fell = [f"{g.name} ({'+'.join(g.ops)}): {d['plan']['reason']}" for g, d in decided if d["runner"] is None]
    summary = (f"tilewise: graph {graph_id}: {kernels_n} fused kernel(s) ({fused_n} with the epilogue "
               f"inside the MLIR kernel); {len(eager_ops)} op(s) in eager "
               f"PyTorch ({_counts(eager_ops) or 'none'})" + (f"; eager groups: {'; '.join(fell)}" if fell else "")
               + (f"; {_skipped_text(skipped)}" if skipped else "") + (" [cached plan]" if plan else ""))
    (log.warning if fell or skipped else log.info)(summary)
    profile.record_graph(opts, ag, example_inputs, decided, graph_id, time.perf_counter() - t0, gm)
    return ag


def _one_line(e: BaseException, limit: int = 200) -> str:
    return " ".join(str(e).split())[:limit]


def _skipped_text(skipped) -> str:
    return "; ".join(f"{op_name(n)} stays eager: {why}" for n, why in skipped)


def _counts(names: list[str]) -> str:
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in seen.items())


def _build_groups(ag, groups: list[GroupSpec], example_inputs, opts: BackendOptions, plan: dict | None):
    """[(group, {"runner": GroupRunner | None, "plan": json entry})] -- schedules chosen, kernels loaded."""
    from tilewise.core.workload import Workload
    threads = opts.resolved_threads()
    kernels.warn_if_torch_threads_spin(threads)
    store = None
    decided = []
    rows = [g for g in groups if g.anchor in ("rowwise", "attention")]
    groups = [g for g in groups if g.anchor not in ("rowwise", "attention")]
    try:
        for g in groups:
            entry = (plan or {}).get(g.name)
            if entry is not None and entry.get("workload") != g.workload:
                entry = None
            k = None                            # the kernel _decide built to check the schedule
            if entry is None:
                if store is None:
                    store = kernels.open_db(opts.db)
                try:
                    entry, k = _decide(g, threads, opts, store)
                except Exception as e:  # a bug or an environment problem costs this group, not the graph
                    entry = {"workload": g.workload, "schedule": None,
                             "reason": f"choosing a schedule failed: {type(e).__name__}: {_one_line(e)}"}
            runner = None
            if entry.get("schedule") is not None and entry.get("use_kernel", True):
                from tilewise.core.schedule import Schedule
                try:
                    if k is None:
                        k = kernels.load_kernel(Workload.parse(g.workload), Schedule.from_json(entry["schedule"]),
                                                opts.cache_dir())
                    out_shape = g.kind.kernel_out_shape(g.nodes[0].meta["val"].shape)
                    runner = GroupRunner(g.to_json(), k, out_shape, g.kind, reuse_output=not _escapes(g.nodes[-1]))
                except Exception as e:
                    entry = {**entry, "schedule": None, "reason": f"kernel build failed: {_one_line(e)}"}
            decided.append((g, {"runner": runner, "plan": entry}))
    finally:
        if store is not None:
            store.close()
    # the graph's values on the example inputs (state restored): run once, when first needed, for
    # both the fuse decision and max-autotune's kernel-vs-eager timing (neither changes them)
    values: list[dict] = []

    def env() -> dict:
        if not values:
            values.append(profile.node_values(ag, example_inputs))
        return values[0]
    # the fuse knob: the epilogue inside the kernel (torch-mlir FX importer) or as torch ops
    decided = fused.decide(env, decided, opts, lambda g: not _escapes(g.nodes[-1]))
    if opts.mode == "max-autotune" and plan is None:
        decided = profile.choose_faster(env(), decided)
    # built, checked and timed against eager here (rowwise.decide, attention.decide); an attention
    # group's three kernels get their schedules like any group's (_decide)
    store = kernels.open_db(opts.db) if any(g.anchor == "attention" for g in rows) else None

    def pick(workload: str):
        e, k = _decide(types.SimpleNamespace(workload=workload), threads, opts, store)
        if e["schedule"] is None:
            raise RuntimeError(f"{workload}: {e['reason']}")
        return e["schedule"], k
    try:
        for g in rows:
            entry = (plan or {}).get(g.name)
            if entry is not None and entry.get("workload") != g.workload:
                entry = None
            reuse = not _escapes(g.nodes[-1])
            if g.anchor == "rowwise":
                runner, entry = rowwise.decide(g, entry, env, opts, threads, reuse_output=reuse)
            else:
                runner, entry = attention.decide(g, entry, env, opts, threads, pick, reuse_output=reuse)
            decided.append((g, {"runner": runner, "plan": entry}))
    finally:
        if store is not None:
            store.close()
    return decided


def _decide(g: GroupSpec, threads: int, opts: BackendOptions, store) -> tuple[dict[str, Any], Any]:
    """The plan entry of a group -- its schedule (and where it came from) or why it stays eager --
    and the kernel built to check that schedule (None when none built)."""
    from tilewise.core.workload import Workload
    try:
        w = Workload.parse(g.workload)
    except ValueError as e:
        return {"workload": g.workload, "schedule": None, "reason": f"not a tilewise workload: {e}"}, None
    s = kernels.database_schedule(store, w, threads, opts.max_rel_error)
    source = "database"
    if s is None and opts.mode == "max-autotune":
        try:
            s, source = kernels.tuned_schedule(w, threads, opts.trials, opts.max_rel_error, store), "tuned"
        except Exception as e:   # tuning is an optimisation: its failure costs speed, not the compile
            log.warning("tilewise: tuning %s failed (%s); using the cost model's schedule", w,
                        _one_line(e))
    candidates = [s] if s is not None else []
    if s is None:
        candidates, source = kernels.model_schedule(w, threads), "cost model"
    errors = []
    if source == "cost model" and w.op in kernels.MEASURED_PICK:
        try:
            recipes = kernels.recipe_schedules(w, threads)
            picks = recipes + [c for c in candidates if c not in recipes][:2]
            s, k = kernels.measured_pick(w, picks, opts.cache_dir(), top=len(picks))
            return {"workload": g.workload, "schedule": s.to_json(), "source": "recipes and cost model's top 2, timed",
                    "use_kernel": True, "reason": None}, k
        except Exception as e:       # none of the top three built: the loop below tries the rest
            errors.append(str(e)[:160])
    for s in candidates[:8]:
        try:
            k = kernels.load_kernel(w, s, opts.cache_dir())
            return {"workload": g.workload, "schedule": s.to_json(), "source": source, "use_kernel": True,
                    "reason": None}, k
        except Exception as e:
            errors.append(str(e)[:160])
    return {"workload": g.workload, "schedule": None,
            "reason": "no schedule built: " + ("; ".join(errors[:2]) or "no candidate")}, None


def _rewrite(ag: fx.GraphModule, decided) -> None:
    """Replace each kernel group's nodes by one call of its runner."""
    g = ag.graph
    channels_last = False
    replaced: dict[fx.Node, fx.Node] = {}
    erased: set[fx.Node] = set()
    for spec, d in decided:
        runner = d["runner"]
        if runner is None:
            continue
        why = _cannot_replace(spec, erased)
        if why is not None:             # this group runs in eager PyTorch, the others as kernels
            log.warning("tilewise: %s (%s) stays eager: %s", spec.name, "+".join(spec.ops), why)
            d["runner"], d["plan"] = None, {**d["plan"], "schedule": None, "reason": why}
            continue
        last = spec.nodes[-1]
        # a conv group's output is a channels-last view; a row-wise or attention group's is row-major where eager's
        # value may keep a permuted input's layout (TensorIterator): later views may not apply to it
        val = last.meta.get("val")
        channels_last |= spec.kind.channels_last or (
            spec.anchor in ("rowwise", "attention") and isinstance(val, torch.Tensor) and not val.is_contiguous())

        def call(*args, _runner=runner):
            return _runner(*args)
        call.__name__ = call.__qualname__ = f"tilewise_{spec.name}"
        call._tilewise_group = True
        with g.inserting_before(last):
            new = g.call_function(call, tuple(replaced.get(i, i) for i in spec.inputs))
        new.meta["val"] = last.meta.get("val")
        replaced[last] = new
        last.replace_all_uses_with(new)
        for n in reversed(spec.nodes):
            g.erase_node(n)
        erased.update(spec.nodes)
    if channels_last:
        # a conv group returns a (channels-last) permuted view: views of it must be reshapes
        for n in g.nodes:
            if n.op == "call_function" and n.target in VIEWS:
                n.target = aten.reshape.default
    out = next(n for n in g.nodes if n.op == "output")
    new_args = []
    for a in out.args[0]:
        v = a.meta.get("val") if isinstance(a, fx.Node) else None
        if isinstance(a, fx.Node) and isinstance(v, torch.Tensor) and v.is_contiguous() and _from_group(a):
            with g.inserting_before(out):
                a = g.call_method("contiguous", (a,))
        new_args.append(a)
    out.args = (type(out.args[0])(new_args),) if isinstance(out.args[0], (tuple, list)) else (new_args[0],)
    g.eliminate_dead_code()
    g.lint()
    ag.recompile()


def _cannot_replace(spec: GroupSpec, erased: set[fx.Node]) -> str | None:
    """Why ``spec``'s nodes cannot become one call (None: they can): each node belongs to this
    group only, and only the last one's value is used outside it."""
    members = set(spec.nodes)
    for n in spec.nodes:
        if n in erased:
            return f"{n.name} is in another group too"
    for n in spec.nodes[:-1]:
        outside = [u.name for u in n.users if u not in members]
        if outside:
            return f"{n.name} is used outside the group (by {', '.join(outside[:3])})"
    return None


def _from_group(n: fx.Node) -> bool:
    """Whether ``n``'s layout may differ from eager's (produced by a kernel group, maybe via views)."""
    while n.op == "call_function":
        if getattr(n.target, "_tilewise_group", False):
            return True
        if n.target in VIEWS or n.target in TRANSPOSES:
            n = n.args[0]
            continue
        return False
    return False


def _escapes(n: fx.Node) -> bool:
    """Whether ``n``'s value (or a view/alias of it) may reach the graph's outputs."""
    todo, seen = [n], set()
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        for u in cur.users:
            if u.op == "output":
                return True
            if u.op != "call_function":
                return True
            schema = getattr(u.target, "_schema", None)
            if schema is None:
                if u.target.__name__ == "getitem":
                    todo.append(u)
                    continue
                return True     # an unknown callable may return an alias
            if any(r.alias_info is not None for r in schema.returns):
                todo.append(u)  # views and in-place ops return (part of) their input
    return False
