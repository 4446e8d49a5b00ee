"""Cost every plan of the space and rank them: the planner's Python API.

    from tilewise.planner import load_cluster, load_model, plan
    result = plan(load_model("gpt-cpu-small"), load_cluster("cluster.json"), global_batch=16)
    result.top[0].step_s, result.top[0].memory_bytes, result.top[0].dominant

One step of a plan (:func:`evaluate`), per pipeline stage, with each collective on the slowest of
that stage's groups of its kind (a TP group that straddles two nodes runs at the inter-node link):

* forward / backward of one micro-batch = the stage's layers' op times (:mod:`.opcost`) on a
  ``tp``-way shard, plus each block's ``tp_allreduces`` all-reduces of its output in the forward
  and as many in the backward (Megatron's f and g) on the TP group; recomputation runs the forward
  (with its all-reduces) again inside the backward; ZeRO-3 all-gathers the stage's weights for
  every forward and every backward;
* the 1F1B critical path over the stages (:mod:`.pipeline`), with p2p transfers of a block's
  output (``micro_batch x out_bytes / tp``: Megatron's scatter-gather) between neighbours;
* after a stage's last backward, its gradient synchronisation over the DP group -- ZeRO 0: one
  all-reduce of the gradients; 1 and 2: reduce-scatter of the gradients and all-gather of the
  updated weights; 3: the reduce-scatter alone -- and then its optimizer step over the parameters
  it owns (``/ dp`` with ZeRO >= 1).  Nothing is overlapped with the backward (as in the gloo
  validation; DDP-style bucketing would hide part of it).

The step time is the latest stage's end.  A plan fits when every device's memory estimate
(:mod:`.memory`) is at most the device's ``memory_bytes``; plans that do not fit are reported as
rejected, never ranked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from tilewise.planner import collectives as C
from tilewise.planner.cluster import Cluster
from tilewise.planner.memory import MemoryEstimate, stage_memory, stage_params
from tilewise.planner.model import ModelSpec
from tilewise.planner.opcost import OpCosts, costs_for
from tilewise.planner.pipeline import finish_times
from tilewise.planner.space import Plan, check_plan, enumerate_plans, stage_layers


#: parallel groups of a kind checked for the slowest (all of them up to this many; past it the
#: first ones, which cover every alignment of groups to equal nodes of up to this many devices)
_GROUPS_CHECKED = 64


class NoPlanFits(ValueError):
    """Every plan of the space needs more memory than the devices have."""


@dataclass(frozen=True)
class PlanEstimate:
    plan: Plan
    step_s: float
    memory: tuple[MemoryEstimate, ...]          # per pipeline stage (the worst rank of the stage)
    breakdown: dict                             # seconds on the critical stage: compute, tp_comm, ...
    fits: bool
    samples_per_s: float
    model_flops_per_device_s: float

    @property
    def memory_bytes(self) -> float:
        return max(m.total_bytes for m in self.memory)

    @property
    def dominant(self) -> str:
        return max(self.breakdown, key=self.breakdown.get)

    def to_json(self) -> dict:
        return {"plan": self.plan.to_json(), "label": self.plan.label(), "step_s": self.step_s,
                "memory_bytes": self.memory_bytes, "memory_per_stage": [m.to_json() for m in self.memory],
                "fits": self.fits, "breakdown_s": dict(self.breakdown), "dominant": self.dominant,
                "samples_per_s": self.samples_per_s, "model_flops_per_device_s": self.model_flops_per_device_s}


@dataclass
class PlanResult:
    model: str
    cluster: str
    global_batch: int
    top: list[PlanEstimate]
    rejected: int                               # plans that did not fit
    considered: int
    all: list[PlanEstimate] = field(default_factory=list, repr=False)

    def to_json(self, top_k: int | None = None) -> dict:
        return {"model": self.model, "cluster": self.cluster, "global_batch": self.global_batch,
                "considered": self.considered, "rejected_memory": self.rejected,
                "plans": [p.to_json() for p in self.top[:top_k]]}


class Estimator:
    """Costs plans of one model on one cluster; op costs are shared (and probed once) across plans.
    Compute is costed on the cluster's first device (devices of one kind; links may differ per pair)."""

    def __init__(self, model: ModelSpec, cluster: Cluster, costs: OpCosts | None = None):
        self.model, self.cluster = model, cluster
        self.costs = costs or costs_for(cluster.devices[0])
        self.ids = [d.id for d in cluster.devices]
        # identical layers (a model's blocks) are costed once per micro-batch size and TP degree
        shapes: dict = {}
        self._kinds = [shapes.setdefault((layer.ops, layer.tp_allreduces), len(shapes)) for layer in model.layers]
        self._times: dict = {}

    def _layer_times(self, i: int, b: int, t: int) -> tuple[float, float]:
        key = (self._kinds[i], b, t)
        hit = self._times.get(key)
        if hit is None:
            hit = self._times[key] = self.costs.layer_times(self.model.layers[i], b, t, self.model.dtype_bytes)
        return hit

    def _slowest(self, groups: Sequence[Sequence[int]]) -> list[str]:
        """The group (device ids) whose ring is slowest: lowest bandwidth, then highest latency."""
        named = [[self.ids[r] for r in g] for g in groups]
        if len(named[0]) == 1:
            return named[0]
        return min(named, key=lambda g: (lambda bw_lat: (bw_lat[0], -bw_lat[1]))(C.ring(self.cluster, g)))

    def memory(self, plan: Plan) -> tuple[MemoryEstimate, ...]:
        """Per pipeline stage; cheap (no op is timed), so plans are checked for fit before costing."""
        check_plan(self.model, plan, self.cluster.size)
        return tuple(stage_memory(self.model, plan, layers, s)
                     for s, layers in enumerate(stage_layers(self.model, plan.pp)))

    def fits(self, memory: Sequence[MemoryEstimate]) -> bool:
        return max(x.total_bytes for x in memory) <= min(d.memory_bytes for d in self.cluster.devices)

    def rejected(self, plan: Plan) -> PlanEstimate:
        """A plan that does not fit, reported with its memory and no step time (it is never costed)."""
        return PlanEstimate(plan=plan, step_s=float("inf"), memory=self.memory(plan), breakdown={"memory": 0.0},
                            fits=False, samples_per_s=0.0, model_flops_per_device_s=0.0)

    def evaluate(self, plan: Plan) -> PlanEstimate:
        m, c, cl = self.model, self.costs, self.cluster
        memory = self.memory(plan)
        stages = stage_layers(m, plan.pp)
        b, t, wbytes = plan.micro_batch, plan.tp, m.dtype_bytes
        fwd, bwd, p2p, tails, parts = [], [], [], [], []
        for s, layers in enumerate(stages):
            tp_group = self._slowest([plan.tp_group(d, s) for d in range(min(plan.dp, _GROUPS_CHECKED))])
            dp_group = self._slowest([plan.dp_group(k, s) for k in range(min(plan.tp, _GROUPS_CHECKED))])
            f_comp = b_comp = tp_comm = 0.0
            for i in layers:
                f, g = self._layer_times(i, b, t)
                msg = m.layers[i].out_bytes or m.layers[i - 1].out_bytes     # the head: its input's gradient
                ar = m.layers[i].tp_allreduces * C.all_reduce_s(cl, tp_group, b * msg)
                f_comp, b_comp, tp_comm = f_comp + f, b_comp + g + (f if plan.recompute else 0.0), \
                    tp_comm + ar * (3 if plan.recompute else 2)
            P = stage_params(m, layers, t)
            gather = C.all_gather_s(cl, dp_group, P * wbytes) if plan.zero == 3 else 0.0
            tp_f = tp_comm / (3 if plan.recompute else 2)
            fwd.append(f_comp + tp_f + gather)
            bwd.append(b_comp + tp_comm - tp_f + gather)
            if s + 1 < plan.pp:
                out = b * m.layers[layers[-1]].out_bytes / t
                p2p.append(max(C.p2p_s(cl, self.ids[plan.rank(d, 0, s)], self.ids[plan.rank(d, 0, s + 1)], out)
                               for d in range(min(plan.dp, _GROUPS_CHECKED))))
            grads = P * wbytes
            if plan.zero == 0:
                sync = C.all_reduce_s(cl, dp_group, grads)
            elif plan.zero in (1, 2):
                sync = C.reduce_scatter_s(cl, dp_group, grads) + C.all_gather_s(cl, dp_group, P * wbytes)
            else:
                sync = C.reduce_scatter_s(cl, dp_group, grads)
            opt = c.optimizer_s(P / (plan.dp if plan.zero else 1))
            tails.append(sync + opt)
            parts.append({"compute": plan.micro_batches * (f_comp + b_comp), "tp_comm": plan.micro_batches * tp_comm,
                          "zero3_gather": 2 * plan.micro_batches * gather, "dp_comm": sync, "optimizer": opt})
        ends = finish_times(fwd, bwd, p2p, plan.micro_batches)
        finish = [e + tail for e, tail in zip(ends, tails)]
        step = max(finish)
        crit = max(range(plan.pp), key=lambda s: finish[s])
        busy = plan.micro_batches * (fwd[crit] + bwd[crit])
        breakdown = dict(parts[crit], p2p_and_bubble=max(ends[crit] - busy, 0.0))
        model_flops = 3 * m.flops_per_sample * plan.global_batch
        return PlanEstimate(plan=plan, step_s=step, memory=memory, breakdown=breakdown, fits=self.fits(memory),
                            samples_per_s=plan.global_batch / step,
                            model_flops_per_device_s=model_flops / step / plan.devices)

    def close(self) -> None:
        save = getattr(self.costs, "save", None)
        if save:
            save()


def plan(model: ModelSpec, cluster: Cluster, global_batch: int, top_k: int = 5, plans: Iterable[Plan] | None = None,
         costs: OpCosts | None = None, **space) -> PlanResult:
    """The fastest plans that fit, best first.  NoPlanFits when none does; PlanError for a batch or
    plan the space cannot split."""
    est = Estimator(model, cluster, costs)
    try:
        candidates = list(plans) if plans is not None else \
            list(enumerate_plans(model, cluster.size, global_batch, **space))
        estimates = [est.evaluate(p) if est.fits(est.memory(p)) else est.rejected(p) for p in candidates]
    finally:
        est.close()
    fitting = sorted((e for e in estimates if e.fits), key=lambda e: e.step_s)
    if not fitting:
        least = min(estimates, key=lambda e: e.memory_bytes)
        cap = min(d.memory_bytes for d in cluster.devices)
        raise NoPlanFits(f"no plan of {model.name} fits the {cap / 2**30:.1f} GiB per device of {cluster.name}: the "
                         f"smallest ({least.plan.label()}) needs {least.memory_bytes / 2**30:.1f} GiB; add devices "
                         f"or memory, or lower the global batch")
    return PlanResult(model=model.name, cluster=cluster.name, global_batch=global_batch, top=fitting[:top_k],
                      rejected=len(estimates) - len(fitting), considered=len(estimates), all=estimates)
