"""Timing fusion groups (max-autotune's kernel-or-eager choice, the ``profile`` option) and writing
the model trace (``options={"trace": PATH}``, schema in ``tilewise.frontends.model_trace``).

A trace gathers every graph compiled with the same trace path in this process (graph breaks give
several), one :class:`KernelTrace` per fusion group or eager op in execution order, and is rewritten
after each graph.
"""
from __future__ import annotations

import itertools
import math
import statistics
import time
from typing import Any, Callable

import torch
import torch.fx as fx

from tilewise.frontends.torch_backend.graph import op_name

_GRAPH_IDS = itertools.count()
_TRACES: dict[str, dict[str, Any]] = {}
_SKIP = {"aten.view", "aten._unsafe_view", "aten.reshape", "aten.t", "aten.transpose", "aten.permute",
         "aten.expand", "aten.unsqueeze", "aten.squeeze", "aten.detach", "aten.alias", "getitem"}


def next_graph_id() -> int:
    return next(_GRAPH_IDS)


def median_time_s(fn: Callable[[], object], min_runs: int = 5, max_runs: int = 50, budget_s: float = 0.1) -> tuple[float, int]:
    """Median seconds per call of ``fn`` after two warm-up calls, and how many calls were timed."""
    from tilewise.profiling.measure import time_runs     # not at import: it loads the MLIR stack
    times = time_runs(fn, repeats=min_runs, min_time_s=budget_s, warmup=2, max_repeats=max_runs)
    return statistics.median(times), len(times)


def interleaved_s(a: Callable[[], object], b: Callable[[], object], rounds: int = 9) -> tuple[float, float]:
    """Seconds per call of ``a`` and ``b`` timed side by side: rounds alternate between them, a
    round keeps the fastest of three calls (a preempted call is noise, not the kernel), and each
    gets the median over rounds -- on a shared machine back-to-back blocks differ by 2x and more."""
    a(), b(), a(), b()
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        for f, out in ((a, ta), (b, tb)):
            best = math.inf
            for _ in range(3):
                t = time.perf_counter()
                f()
                best = min(best, time.perf_counter() - t)
            out.append(best)
    return statistics.median(ta), statistics.median(tb)


def node_values(gm: fx.GraphModule, example_inputs) -> dict[fx.Node, Any]:
    """Every node's value when ``gm`` runs on ``example_inputs`` (no grad).  Inputs the graph mutates
    (a BatchNorm's running stats; not every such op says so in its schema) are restored after, so
    this extra run leaves no trace in the model."""
    env: dict[fx.Node, Any] = {}

    class _Recorder(fx.Interpreter):
        def run_node(self, n):
            env[n] = super().run_node(n)
            return env[n]

    with torch.no_grad():
        saved = [(x, x.clone()) for x in example_inputs if isinstance(x, torch.Tensor)]
        try:
            _Recorder(gm).run(*example_inputs)
        finally:
            for x, old in saved:
                if not torch.equal(x, old):
                    x.copy_(old)
    return env


def eager_chain(nodes: list[fx.Node], env: dict) -> Callable[[], object]:
    def run():
        local = dict(env)
        for n in nodes:
            args = fx.node.map_arg(n.args, lambda a: local[a])
            kwargs = fx.node.map_arg(n.kwargs, lambda a: local[a])
            local[n] = n.target(*args, **kwargs)
        return local[nodes[-1]]
    return run


def check_and_time(runner, spec, env: dict, opts, plan: dict[str, Any], what: str) -> bool:
    """Whether ``runner`` should replace ``spec``'s nodes: it matches their eager values on the example
    inputs (normwise relative error <= ``max_rel_error``, default 1e-4) and times faster than them
    (:func:`interleaved_s`).  ``plan`` gets the measured ``kernel_s``, ``eager_s``, ``rel_error``, or
    the ``reason`` it stays eager (``schedule`` None when the kernel is wrong or fails to run)."""
    from tilewise.frontends.torch_backend.fused import rel_error
    ins = [env[i] for i in spec.inputs]
    bound = opts.max_rel_error if opts.max_rel_error is not None else 1e-4
    with torch.no_grad():
        try:
            ref = eager_chain(spec.nodes, env)()
            got = runner(*ins)
            err = rel_error(got, ref) if got.shape == ref.shape else math.inf
        except Exception as e:
            plan.update(schedule=None, reason=f"{what} failed its check: {type(e).__name__}: "
                                              f"{' '.join(str(e).split())[:200]}")
            return False
        if not err <= bound:
            plan.update(schedule=None, reason=f"{what} differ{'' if what.endswith('s') else 's'} from eager "
                                              f"(rel. error {err:.2e} > {bound:.0e})")
            return False
        kernel_s, eager_s = interleaved_s(lambda: runner(*ins), eager_chain(spec.nodes, env))
    plan.update(kernel_s=kernel_s, eager_s=eager_s, rel_error=err)
    if eager_s < kernel_s:
        plan.update(use_kernel=False, reason=f"eager measured faster ({eager_s * 1e6:.1f} us vs "
                                             f"{kernel_s * 1e6:.1f} us for the {what})")
        return False
    return True


def choose_faster(env: dict, decided: list) -> list:
    """max-autotune: time each kernel group against its ops in eager PyTorch (``env``: the graph's
    node values, :func:`node_values`); keep the faster."""
    out = []
    with torch.no_grad():
        for g, d in decided:
            if d["runner"] is None:
                out.append((g, d))
                continue
            args = [env[i] for i in g.inputs]
            kernel_s, eager_s = interleaved_s(lambda: d["runner"](*args), eager_chain(g.nodes, env))
            plan = {**d["plan"], "kernel_s": kernel_s, "eager_s": eager_s}
            if eager_s < kernel_s:
                plan.update(use_kernel=False, reason=f"eager measured faster ({eager_s * 1e3:.3f} ms vs "
                                                     f"{kernel_s * 1e3:.3f} ms for the kernel)")
                d = {"runner": None, "plan": plan}
            else:
                d = {**d, "plan": plan}
            out.append((g, d))
    return out


# --- the model trace ---------------------------------------------------------------------------
def _state(opts, gm) -> dict[str, Any]:
    return _TRACES.setdefault(opts.trace, {"kernels": [], "fallbacks": [], "compile_s": 0.0,
                                           "model": opts_model_name(gm)})


def opts_model_name(gm) -> str:
    return getattr(gm, "_tilewise_model_name", None) or "torch model"


def _save(opts, state) -> None:
    from tilewise.frontends.torch_backend import kernels
    from tilewise.frontends.model_trace import ModelTrace
    ModelTrace(model=state["model"], target=kernels.target().to_json(), kernels=tuple(state["kernels"]),
               mode=opts.mode, compile_s=state["compile_s"], fallbacks=tuple(state["fallbacks"])).save(opts.trace)


def record_fallback(opts, gm, graph_id: int, reason: str, compile_s: float) -> None:
    if not opts.trace:
        return
    from tilewise.frontends.model_trace import KernelTrace
    state = _state(opts, gm)
    ops = tuple(str(n.target) if n.op != "call_function" else op_name(n)
                for n in gm.graph.nodes if n.op in ("call_function", "call_method", "call_module"))
    state["fallbacks"].append(f"graph{graph_id}: {reason}")
    state["kernels"].append(KernelTrace(name=f"graph{graph_id}/eager", kind="eager", ops=ops, reason=reason))
    state["compile_s"] += compile_s
    _save(opts, state)


def record_graph(opts, ag: fx.GraphModule, example_inputs, decided: list, graph_id: int,
                 compile_s: float, gm) -> None:
    """Append this graph's groups and eager ops (timed when profiling) to the trace."""
    if not opts.trace:
        return
    from tilewise.core.workload import Workload
    from tilewise.frontends.model_trace import KernelTrace
    state = _state(opts, gm)
    timed = opts.profile or opts.mode == "max-autotune"
    env = node_values(ag, example_inputs) if timed else {}
    by_name = {f"tilewise_{g.name}": (g, d) for g, d in decided}
    eager_reason = {g.nodes[0]: d["plan"].get("reason") for g, d in decided if d["runner"] is None}
    for i, n in enumerate(ag.graph.nodes):
        if n.op != "call_function":
            continue
        median_s, calls = None, 0
        if timed:
            with torch.no_grad():
                args = fx.node.map_arg(n.args, lambda a: env[a])
                kwargs = fx.node.map_arg(n.kwargs, lambda a: env[a])
                median_s, calls = median_time_s(lambda: n.target(*args, **kwargs), budget_s=0.05)
        group = by_name.get(getattr(n.target, "__name__", ""))
        if group is not None:
            g, d = group
            if g.anchor == "rowwise":
                flops = None
            elif g.anchor == "attention":
                b, h, _, sq, sk, d = g.attention["dims"]
                flops = 4.0 * b * h * sq * sk * d
            else:
                flops = Workload.parse(g.workload).flops
            state["kernels"].append(KernelTrace(
                name=f"graph{graph_id}/{g.name}", kind="kernel", ops=tuple(g.ops), median_s=median_s,
                calls=calls, flops=flops, workload=g.workload,
                schedule={**(d["plan"].get("schedule") or {}), "fuse": bool(d["plan"].get("fuse"))}))
            continue
        name = op_name(n)
        if name in _SKIP:
            continue
        reason = eager_reason.get(n) or f"no tilewise kernel for {name}"
        state["kernels"].append(KernelTrace(name=f"graph{graph_id}/op{i}", kind="eager", ops=(name,),
                                            median_s=median_s, calls=calls, reason=reason))
    state["compile_s"] += compile_s
    _save(opts, state)
