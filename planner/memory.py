"""Per-device memory of a plan: weights, gradients, optimizer states, activations, workspace.

For the layers of one pipeline stage on one tensor-parallel rank, with ``P`` its parameters
(``params_split / tp + params_replicated``):

* f32 training: weights ``4P``, gradients ``4P``, Adam ``8P`` (two moments);
  mixed precision (``dtype_bytes == 2``): weights ``2P``, gradients ``2P``, optimizer ``12P`` (f32
  master weights and two moments) -- the 16 bytes per parameter of ZeRO (Rajbhandari et al. 2020);
* ZeRO shards over the ``dp`` replicas: stage 1 the optimizer states, 2 also the gradients, 3 also
  the weights (plus one layer's weights gathered at a time);
* activations: one micro-batch's saved tensors (traced: ``act_split_bytes / tp + act_replicated``
  per sample, times the micro-batch size), times the micro-batches in flight -- in 1F1B stage ``s``
  of ``p`` holds ``min(m, p - s)`` (the first stage the most); with recomputation only each layer's
  input is kept, plus one layer's full activations while it is recomputed;
* workspace: twice the largest op output of the stage (the gradient buffer and its temporary
  during backward; a vocabulary-sized logits gradient dominates a small model's head).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tilewise.planner.model import ModelSpec
from tilewise.planner.space import Plan


@dataclass(frozen=True)
class MemoryEstimate:
    weights_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    workspace_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes + \
            self.workspace_bytes

    def to_json(self) -> dict:
        return dict(asdict(self), total_bytes=self.total_bytes)


def stage_params(model: ModelSpec, layers: range, tp: int) -> float:
    return sum(model.layers[i].params_split / tp + model.layers[i].params_replicated for i in layers)


def stage_memory(model: ModelSpec, plan: Plan, layers: range, stage: int) -> MemoryEstimate:
    P = stage_params(model, layers, plan.tp)
    mixed = model.dtype_bytes == 2
    w, g, o = (2 * P, 2 * P, 12 * P) if mixed else (4 * P, 4 * P, 8 * P)
    if plan.zero >= 1:
        o /= plan.dp
    if plan.zero >= 2:
        g /= plan.dp
    if plan.zero >= 3:
        biggest = max(model.layers[i].params_split / plan.tp + model.layers[i].params_replicated for i in layers)
        w = w / plan.dp + model.dtype_bytes * biggest
    b, t = plan.micro_batch, plan.tp
    full = [b * (model.layers[i].act_split_bytes / t + model.layers[i].act_replicated_bytes) for i in layers]
    in_flight = min(plan.micro_batches, plan.pp - stage)
    if plan.recompute:
        inputs = sum(b * model.layers[i - 1].out_bytes for i in layers if i > 0)
        activations = inputs * in_flight + max(full)
    else:
        activations = sum(full) * in_flight
    # the largest op output is split where the layer splits (blocks; a vocabulary-parallel head)
    work = 2 * b * max(model.layers[i].temp_bytes / (t if model.layers[i].params_split else 1) for i in layers)
    return MemoryEstimate(w, g, o, activations, work)
