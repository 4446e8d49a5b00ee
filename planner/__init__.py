"""Parallel training plans across devices: a Pipette-style configurator costed by measurement.

Given a model (traced to its layers: :mod:`.trace`, :mod:`.model`) and a cluster (devices and
measured links: :mod:`.cluster`, measured by :mod:`.linkprobe`), :func:`plan` costs every plan of
data x tensor x pipeline ways, micro-batches, ZeRO stage and recomputation (:mod:`.space`): per-op
compute from measurement on this machine or a roofline (:mod:`.opcost`), collectives on the links
(:mod:`.collectives`), the 1F1B critical path (:mod:`.pipeline`), and a per-device memory estimate
that rejects plans that do not fit (:mod:`.memory`); :mod:`.search` puts them together.

The planner sits above the tuner in the import order (it may use the cost model and the stores;
the CLI's ``tilewise plan`` is its frontend).
"""
from tilewise.planner.cluster import Cluster, ClusterError, load_cluster
from tilewise.planner.model import ModelError, ModelSpec, load_model
from tilewise.planner.search import Estimator, NoPlanFits, PlanEstimate, PlanResult, plan
from tilewise.planner.space import Plan, PlanError, enumerate_plans

__all__ = ["Cluster", "ClusterError", "Estimator", "ModelError", "ModelSpec", "NoPlanFits", "Plan", "PlanError",
           "PlanEstimate", "PlanResult", "enumerate_plans", "load_cluster", "load_model", "plan"]
