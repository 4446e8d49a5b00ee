"""Train/test splits of records for cost-model evaluation.

``by_workload`` (the default): every record of a workload (its canonical string: op, shapes,
dtype, attrs) lands on one side, so no shape seen in training is scored.  Within each op family
(``matmul``, ``conv2d_nhwc``, ...) with at least two workloads, ``round(test_fraction * n)`` of
them (at least one, never all) are held out, so every family is trained and scored; families with
one workload train.  If that holds out nothing (every family has one workload), workloads are
drawn from all of them instead.  ``by_target``: the records of some targets are held out (the
workloads may repeat: it asks whether a model transfers to other hardware).

Both are deterministic functions of the records' workloads/targets and ``seed`` (not of the
records' order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from tilewise.costmodel.data import workload_name
from tilewise.core.record import Record

SPLITS = ("workload", "target")


@dataclass
class Split:
    by: str
    train: list[Record]
    test: list[Record]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def train_workloads(self) -> set[str]:
        return {workload_name(r) for r in self.train}

    @property
    def test_workloads(self) -> set[str]:
        return {workload_name(r) for r in self.test}

    def describe(self) -> dict[str, Any]:
        """What a report says about the split (JSON-ready)."""
        return {"by": self.by, **self.options}


def _pick(rng: np.random.Generator, names: Sequence[str], n: int) -> set[str]:
    return {names[i] for i in rng.permutation(len(names))[:n]}


def by_workload(records: Iterable[Record], test_fraction: float = 0.2, seed: int = 0) -> Split:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    records = list(records)
    families: dict[str, set[str]] = {}
    for r in records:
        families.setdefault(r.workload.op, set()).add(workload_name(r))
    rng = np.random.default_rng(seed)
    test: set[str] = set()
    for op in sorted(families):
        names = sorted(families[op])
        if len(names) >= 2:
            test |= _pick(rng, names, min(len(names) - 1, max(1, round(test_fraction * len(names)))))
    if not test:
        everything = sorted(set().union(*families.values())) if families else []
        if len(everything) >= 2:
            test = _pick(rng, everything, min(len(everything) - 1, max(1, round(test_fraction * len(everything)))))
    return Split("workload", [r for r in records if workload_name(r) not in test],
                 [r for r in records if workload_name(r) in test],
                 {"test_fraction": test_fraction, "seed": seed})


def by_target(records: Iterable[Record], test_targets: Sequence[str] | None = None, seed: int = 0,
              few_shot: int = 0) -> Split:
    """Hold out the records of ``test_targets`` (target keys, or unique prefixes of them, or CPU
    names); by default one target drawn with ``seed``.  ``few_shot``: that many records of the
    held-out targets (drawn with ``seed``) move to the training side -- what a model learns from
    the first measurements on a new CPU; 0 is zero-shot."""
    if few_shot < 0:
        raise ValueError(f"few_shot must be >= 0, got {few_shot}")
    records = list(records)
    keys = sorted({r.target_key for r in records})
    if len(keys) < 2:
        raise ValueError(f"a split by target needs records of at least two targets; these have {len(keys)}")
    if test_targets is None:
        held = {keys[int(np.random.default_rng(seed).integers(len(keys)))]}
    else:
        names = {r.target_key: r.target.name for r in records}
        held = {k for k in keys for t in test_targets if k.startswith(t) or names[k] == t}
        if not held:
            raise ValueError(f"no record is of the targets {list(test_targets)}")
        if held == set(keys):
            raise ValueError("a split by target must leave at least one target to train on")
    test = [r for r in records if r.target_key in held]
    if few_shot >= len(test):
        raise ValueError(f"few_shot {few_shot} would leave none of the held-out target's "
                         f"{len(test)} records to score")
    shots = set(np.random.default_rng(seed).permutation(len(test))[:few_shot].tolist())
    options = {"test_targets": sorted(k[:12] for k in held), "seed": seed}
    if few_shot:
        options["few_shot"] = few_shot
    return Split("target", [r for r in records if r.target_key not in held] + [test[i] for i in sorted(shots)],
                 [r for i, r in enumerate(test) if i not in shots], options)


def split_records(records: Iterable[Record], by: str = "workload", **options) -> Split:
    if by == "workload":
        return by_workload(records, **options)
    if by == "target":
        return by_target(records, **options)
    raise ValueError(f"unknown split {by!r}: use one of {', '.join(SPLITS)}")
