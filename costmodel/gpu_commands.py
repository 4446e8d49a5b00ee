"""``tilewise train --target cuda``: train on the store's records measured on cuda targets.

Training needs no GPU (records carry their target); only records of kind ``cuda`` are used, on
``gpu_analytic`` features unless others are named (the CPU ``analytic`` features describe CPU
schedules' knobs, which a Triton schedule does not have).
"""
from __future__ import annotations

from typing import Any

from rich.table import Table

from tilewise.costmodel.cli_commands import train_command
from tilewise.costmodel.training import load_records

GPU_FEATURES = "gpu_analytic"


def cuda_records(db: str) -> list:
    return [r for r in load_records(db) if r.target.kind == "cuda"]     # the records of one kind: the right test


def train_cuda_command(db: str, model: str = "xgb", out: str | None = None, features: str = GPU_FEATURES,
                       split: str = "workload", test_fraction: float = 0.2, seed: int = 0,
                       params: dict[str, Any] | None = None) -> tuple[dict[str, Any], Table]:
    """As :func:`~tilewise.costmodel.cli_commands.train_command`, on the cuda records only."""
    records = cuda_records(db)
    if not records:
        raise ValueError(f"{db} holds no record measured on a cuda target: collect some first "
                         "(tilewise collect --target cuda ... on a machine with an NVIDIA GPU)")
    if features == "analytic":
        features = GPU_FEATURES
    return train_command(db, model=model, out=out, features=features, split=split, test_fraction=test_fraction,
                         seed=seed, params=params, records=records, scope=" (cuda records)")
