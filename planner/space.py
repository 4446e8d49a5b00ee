"""The plan space: data x tensor x pipeline ways, micro-batching, ZeRO stage, recomputation.

A :class:`Plan` is a plain hashable value.  :func:`enumerate_plans` lists every plan that uses all
devices (``dp * tp * pp == devices``) and whose ways divide what they split: ``tp`` divides the
attention heads and the hidden and FFN sizes, ``pp`` is at most the number of blocks, ``dp`` and the
micro-batch size divide the global batch (``global = dp * micro_batch * micro_batches``).  ZeRO
stages above 0 only with ``dp > 1`` (there is nothing to shard over one replica).

Ranks are placed Megatron's way: tensor-parallel ranks adjacent (one node's fast links), then data,
then pipeline ways outermost: rank ``r = tp_i + tp * (dp_i + dp * pp_i)`` runs on the cluster's
``r``-th device.  Stages get equal numbers of blocks (the first ``blocks % pp`` one more), the first
also the embedding, the last the head -- the partition ``bench/plan_gloo.py`` runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

from tilewise.planner.model import ModelSpec


class PlanError(ValueError):
    """A plan request the space cannot serve (the message says which way does not divide what)."""


@dataclass(frozen=True)
class Plan:
    dp: int
    tp: int
    pp: int
    micro_batch: int
    micro_batches: int
    zero: int = 0
    recompute: bool = False

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def global_batch(self) -> int:
        return self.dp * self.micro_batch * self.micro_batches

    def label(self) -> str:
        parts = [f"dp{self.dp}", f"tp{self.tp}", f"pp{self.pp}", f"mb{self.micro_batch}x{self.micro_batches}"]
        if self.zero:
            parts.append(f"zero{self.zero}")
        if self.recompute:
            parts.append("recompute")
        return " ".join(parts)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Plan":
        return cls(**d)

    # -- placement -------------------------------------------------------------------------------
    def rank(self, dp_i: int, tp_i: int, pp_i: int) -> int:
        return tp_i + self.tp * (dp_i + self.dp * pp_i)

    def tp_group(self, dp_i: int, pp_i: int) -> list[int]:
        return [self.rank(dp_i, t, pp_i) for t in range(self.tp)]

    def dp_group(self, tp_i: int, pp_i: int) -> list[int]:
        return [self.rank(d, tp_i, pp_i) for d in range(self.dp)]


def stage_layers(model: ModelSpec, pp: int) -> list[range]:
    """Layer index ranges of the ``pp`` stages (layers: embedding, blocks..., head)."""
    blocks = len(model.layers) - 2
    if not 1 <= pp <= blocks:
        raise PlanError(f"pp {pp}: the model has {blocks} blocks to cut into stages")
    sizes = [blocks // pp + (1 if s < blocks % pp else 0) for s in range(pp)]
    out, start = [], 1
    for s, size in enumerate(sizes):
        lo = 0 if s == 0 else start
        hi = start + size + (1 if s == pp - 1 else 0)
        out.append(range(lo, hi))
        start += size
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_plan(model: ModelSpec, plan: Plan, devices: int) -> None:
    """PlanError naming the first way that does not divide what it splits."""
    ffn = max((op.n for layer in model.layers for op in layer.ops if op.kind == "linear" and op.split == "column"),
              default=model.hidden)
    if plan.devices != devices:
        raise PlanError(f"dp {plan.dp} x tp {plan.tp} x pp {plan.pp} = {plan.devices} ways; the cluster has "
                        f"{devices} devices")
    for what, size in (("attention heads", model.heads), ("hidden size", model.hidden), ("ffn size", ffn)):
        if size % plan.tp:
            raise PlanError(f"tp {plan.tp} does not divide the {what} ({size})")
    stage_layers(model, plan.pp)
    if plan.zero not in (0, 1, 2, 3) or (plan.zero and plan.dp == 1):
        raise PlanError(f"zero {plan.zero}: use 0-3, and above 0 only with dp > 1")


def _check_pins(devices: int, global_batch: int, dp, tp, pp, micro_batch) -> None:
    """One PlanError for pinned ways that cannot split the batch or the devices."""
    if global_batch < 1:
        raise PlanError(f"global batch {global_batch}: use a positive number of samples")
    for name, way in (("dp", dp), ("tp", tp), ("pp", pp)):
        if way is not None and (way < 1 or devices % way):
            raise PlanError(f"--{name} {way} does not divide the cluster's {devices} devices")
    if dp is None and tp is not None and pp is not None:
        dp = devices // (tp * pp) if devices % (tp * pp) == 0 else None
        if dp is None:
            raise PlanError(f"tp {tp} x pp {pp} does not divide the cluster's {devices} devices")
    if dp is not None and global_batch % dp:
        raise PlanError(f"global batch {global_batch} is not divisible by {dp} data-parallel ways; "
                        f"use a multiple of {dp}")
    if dp is not None and micro_batch is not None and (global_batch // dp) % micro_batch:
        raise PlanError(f"the {global_batch // dp} samples per data-parallel replica are not divisible by micro-batch "
                        f"{micro_batch}")


def enumerate_plans(model: ModelSpec, devices: int, global_batch: int, zero_stages=(0, 1, 2, 3),
                    recompute=(False, True), dp: int | None = None, tp: int | None = None, pp: int | None = None,
                    micro_batch: int | None = None) -> Iterator[Plan]:
    """Every legal plan for ``global_batch`` samples on ``devices`` devices (``dp``/``tp``/``pp``/
    ``micro_batch`` pin a dimension).  PlanError when none is legal, naming why."""
    _check_pins(devices, global_batch, dp, tp, pp, micro_batch)
    found = False
    why = "no combination of ways divides the model and the batch"
    for t in _divisors(devices):
        for p in _divisors(devices // t):
            d = devices // (t * p)
            if any(pin is not None and pin != way for pin, way in ((dp, d), (tp, t), (pp, p))):
                continue
            if global_batch % d:
                why = f"global batch {global_batch} is not divisible by dp {d}"
                continue
            for mb in _divisors(global_batch // d):
                if micro_batch is not None and mb != micro_batch:
                    continue
                for zero in zero_stages:
                    for rc in recompute:
                        plan = Plan(d, t, p, mb, global_batch // (d * mb), zero, rc)
                        try:
                            check_plan(model, plan, devices)
                        except PlanError as e:
                            why = str(e)
                            continue
                        found = True
                        yield plan
    if not found:
        raise PlanError(f"no plan of {model.name} on {devices} devices: {why}")
