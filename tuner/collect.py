"""Dataset collection: measure N schedules per workload and append them to a record store.

Resumable by construction: the schedules of a workload are drawn from a strategy seeded by
(seed, workload key), so a rerun proposes the same sequence, and every schedule the store already
holds for this target is skipped.  Each measured batch is appended in one transaction, so a kill
loses at most the batch in flight.

On a cluster (``profiling.ray_runner.RayRunner``) each record carries the target of the node
that measured it (:func:`measure`), and "already held" means held for any of the cluster's
targets: a schedule is measured once per collection, on whichever node took it.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tilewise.ir.workload import Workload
from tilewise.profiling.base import Candidate, Runner
from tilewise.profiling.target import Target
from tilewise.tuner.base import create
from tilewise.tuner.space import SpaceOptions, space_for


@dataclass(frozen=True)
class CollectConfig:
    samples: int = 50
    strategy: str = "random"         # random | lhs
    max_threads: int = 1
    batch_size: int = 8
    seed: int = 0


@dataclass
class CollectProgress:
    """Counts for a progress display; ``on_progress`` gets this after every batch."""
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    workload: str = ""
    by_status: dict[str, int] = field(default_factory=dict)


def measure(runner: Runner, candidates: list[Candidate], target: Target) -> list[tuple]:
    """``(measurement, target it was measured on)`` per candidate: a runner that spreads candidates
    over machines says which target measured which (``run_with_targets``); any other runner
    measures on ``target``, this machine."""
    with_targets = getattr(runner, "run_with_targets", None)
    if with_targets is None:
        return [(m, target) for m in runner.run(candidates)]
    return with_targets(candidates)


def runner_targets(runner: Runner, target: Target) -> list[Target]:
    """The targets ``runner`` measures on: a cluster's nodes' (``targets()``), else ``target``."""
    targets = getattr(runner, "targets", None)
    return list(targets()) if targets is not None else [target]


def _stream_seed(seed: int, w: Workload) -> int:
    return int(hashlib.sha256(f"{seed}:{w.key()}".encode()).hexdigest()[:15], 16)


def collect(workloads: Sequence[Workload], target: Target, store, runner: Runner,
            config: CollectConfig = CollectConfig(),
            on_progress: Callable[[CollectProgress], None] | None = None) -> CollectProgress:
    from tilewise.datasets.record import Record

    progress = CollectProgress(total=config.samples * len(workloads))
    targets = runner_targets(runner, target)
    for w in workloads:
        progress.workload = str(w)
        space = space_for(w, target, SpaceOptions(max_threads=config.max_threads))
        strategy = create(config.strategy, space, seed=_stream_seed(config.seed, w))
        held = set().union(*(store.keys(w, t) for t in targets))
        wanted = config.samples
        while wanted > 0:
            batch = strategy.propose(min(config.batch_size, wanted))
            if not batch:
                break                      # the space is exhausted
            fresh = [s for s in batch if s.key() not in held]
            skipped = len(batch) - len(fresh)
            wanted -= len(batch)
            progress.skipped += skipped
            progress.done += skipped
            if fresh:
                measured = measure(runner, [Candidate(w, s) for s in fresh], target)
                measurements = [m for m, _ in measured]
                now = time.time()
                records = [Record(w, t, s, m, now) for s, (m, t) in zip(fresh, measured)]
                store.append(records)
                held.update(s.key() for s in fresh)
                for m in measurements:
                    progress.by_status[m.status] = progress.by_status.get(m.status, 0) + 1
                    progress.failed += not m.ok
                progress.done += len(fresh)
            strategy.observe(batch, [])
            if on_progress:
                on_progress(progress)
        if wanted > 0:        # exhausted space: the rest of this workload's share is not coming
            progress.total -= wanted
    return progress
