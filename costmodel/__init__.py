"""Cost models: predict the latency of a (workload, schedule) candidate on a target.

``create("xgb" | "rf" | "gbm" | "mlp" | "roofline", features="analytic", **params)`` builds one,
``load_model(path)`` reads a saved one back; the contract is :class:`CostModel`'s
(:mod:`tilewise.costmodel.base`).  Metrics are in :mod:`~tilewise.costmodel.metrics`, splits in
:mod:`~tilewise.costmodel.split`, the offline train/eval API in :mod:`~tilewise.costmodel.training`;
which model a tuner starts from in :mod:`~tilewise.costmodel.selection`, its per-session correction in
:mod:`~tilewise.costmodel.residual`.
"""
from tilewise.costmodel.base import (CostModel, ModelFileError, available_models, create, load_model,
                                     register_model)

__all__ = ["CostModel", "ModelFileError", "available_models", "create", "load_model", "register_model"]
