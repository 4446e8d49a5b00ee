"""Dataset collection: measure N schedules per workload and append them to a record store.

Resumable by construction: the schedules of a workload are drawn from a strategy seeded by
(seed, workload key), so a rerun proposes the same sequence, and every schedule the store already
holds for this target is skipped.  Each measured batch is appended in one transaction, so a kill
loses at most the batch in flight.
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


def _stream_seed(seed: int, w: Workload) -> int:
    return int(hashlib.sha256(f"{seed}:{w.key()}".encode()).hexdigest()[:15], 16)


def collect(workloads: Sequence[Workload], target: Target, store, runner: Runner,
            config: CollectConfig = CollectConfig(),
            on_progress: Callable[[CollectProgress], None] | None = None) -> CollectProgress:
    from tilewise.datasets.record import Record

    progress = CollectProgress(total=config.samples * len(workloads))
    for w in workloads:
        progress.workload = str(w)
        space = space_for(w, target, SpaceOptions(max_threads=config.max_threads))
        strategy = create(config.strategy, space, seed=_stream_seed(config.seed, w))
        held = store.keys(w, target)
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
                measurements = runner.run([Candidate(w, s) for s in fresh])
                now = time.time()
                records = [Record(w, target, s, m, now) for s, m in zip(fresh, measurements)]
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
