"""Dataset collection: measure N schedules per workload and append them to a record store.

Resumable by construction: the schedules of a workload are drawn from a strategy seeded by
(seed, workload key), so a rerun proposes the same sequence, and every schedule the store already
holds for this target is skipped.  Each measured batch is appended in one transaction, so a kill
loses at most the batch in flight.

``rounds > 1`` (``tilewise collect --rounds R``) measures each workload's schedules R times, in R
interleaved rounds of a fresh shuffled order, and stores one record per schedule whose timings
are those of every round pooled.  Each round builds and loads the kernel anew.  A memory-bound
kernel of tens of microseconds moves from one round to the next by as much as its schedules
differ: one round of the 20 schedules of ``add:512x768`` ranked them with Spearman -0.1 to 0.97
against the next (mean 0.64-0.67 over 20 trials, with the builds stopped while it was timed or
not: bench/runner_throughput.py), and a round runs 20-30% slow now and then (the clock, the
neighbours of this virtual machine), while a kernel kept loaded ranked 0.95+ round after round.
Pooling rounds averages that out: over the 84 elementwise, reduction and softmax workloads of the
shipped dataset, two independent 5-round collections rank each workload's schedules alike at a
mean Spearman of 0.70-0.83 (datasets/data/embedded_v4.README).  A workload is appended when all
its rounds are done (a kill loses that workload's rounds in flight).

``schedules`` (``tilewise collect --schedules-of STORE``) measures the schedules another collection
holds for each workload, in its order, instead of drawing new ones: the same schedules on a second
CPU, whose space may differ (an AVX2 CPU offers 8-lane vectors that a 512-bit one does not), so
that two CPUs' records pair up schedule by schedule (datasets/data/*.README).

On a cluster (``profiling.ray_runner.RayRunner``) each record carries the target of the node
that measured it (:func:`measure`), and "already held" means held for any of the cluster's
targets: a schedule is measured once per collection, on whichever node took it.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.base import Runner
from tilewise.core.measurement import pool_measurements
from tilewise.core.target import Target
from tilewise.tuner.base import create
from tilewise.tuner.space import SpaceOptions, space_for


@dataclass(frozen=True)
class CollectConfig:
    samples: int = 50
    strategy: str = "random"         # random | lhs
    max_threads: int = 1
    batch_size: int = 8
    seed: int = 0
    rounds: int = 1                  # interleaved measurement rounds per schedule (pooled)

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")


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


class _Listed:
    """A strategy that proposes a fixed list of schedules in order (``collect(schedules=...)``)."""

    def __init__(self, schedules: Sequence):
        self.pending = list(schedules)

    def propose(self, n: int) -> list:
        batch, self.pending = self.pending[:n], self.pending[n:]
        return batch

    def observe(self, schedules, measurements) -> None:
        pass


def schedules_by_workload(records) -> dict[str, list]:
    """Each workload's distinct schedules in ``records``, in record order (``collect(schedules=)``)."""
    out: dict[str, list] = {}
    seen: set = set()
    for r in records:
        key = (str(r.workload), r.schedule.key())
        if key not in seen:
            seen.add(key)
            out.setdefault(str(r.workload), []).append(r.schedule)
    return out


def collect(workloads: Sequence[Workload], target: Target, store, runner: Runner,
            config: CollectConfig = CollectConfig(),
            on_progress: Callable[[CollectProgress], None] | None = None,
            schedules: Mapping[str, Sequence] | None = None) -> CollectProgress:
    """Measure ``config.samples`` schedules of each workload into ``store``: drawn from the
    workload's space, or the first ``samples`` of ``schedules[str(workload)]`` when given."""
    if schedules is not None:
        listed = {str(w): list(schedules.get(str(w), ()))[:config.samples] for w in workloads}
        progress = CollectProgress(total=sum(map(len, listed.values())))
    else:
        progress = CollectProgress(total=config.samples * len(workloads))
    targets = runner_targets(runner, target)
    if config.rounds > 1 and len(targets) > 1:
        raise ValueError("--rounds pools a schedule's timings from one machine; a cluster measures each "
                         "round wherever it lands: collect with --rounds 1 on a cluster")
    for w in workloads:
        progress.workload = str(w)
        space = space_for(w, target, SpaceOptions(max_threads=config.max_threads))
        if schedules is not None:
            strategy, wanted = _Listed(listed[str(w)]), len(listed[str(w)])
        else:
            strategy, wanted = create(config.strategy, space, seed=_stream_seed(config.seed, w)), config.samples
        held = set().union(*(store.keys(w, t) for t in targets))
        pending: list = []                 # fresh schedules waiting for their rounds
        while wanted > 0:
            batch = strategy.propose(min(config.batch_size, wanted))
            if not batch:
                break                      # the space is exhausted
            fresh = [s for s in batch if s.key() not in held]
            skipped = len(batch) - len(fresh)
            wanted -= len(batch)
            progress.skipped += skipped
            progress.done += skipped
            if fresh and config.rounds == 1:
                measured = measure(runner, [Candidate(w, s) for s in fresh], target)
                _store(store, w, fresh, measured, progress)
            elif fresh:
                pending.extend(fresh)
            held.update(s.key() for s in fresh)
            strategy.observe(batch, [])
            if on_progress:
                on_progress(progress)
        if pending:
            measured = _measure_in_rounds(runner, w, pending, target, config, progress, on_progress)
            _store(store, w, pending, measured, progress)
            if on_progress:
                on_progress(progress)
        if wanted > 0:        # exhausted space: the rest of this workload's share is not coming
            progress.total -= wanted
    return progress


def _store(store, w: Workload, schedules, measured, progress: CollectProgress) -> None:
    from tilewise.core.record import Record
    now = time.time()
    store.append([Record(w, t, s, m, now) for s, (m, t) in zip(schedules, measured)])
    for m, _ in measured:
        progress.by_status[m.status] = progress.by_status.get(m.status, 0) + 1
        progress.failed += not m.ok
    progress.done += len(schedules)


def _measure_in_rounds(runner: Runner, w: Workload, schedules: list, target: Target, config: CollectConfig,
                       progress: CollectProgress, on_progress) -> list[tuple]:
    """Measure ``schedules`` ``config.rounds`` times, each round in its own shuffled order (batches
    of ``batch_size``), and pool each schedule's rounds (:func:`pool_measurements`).  A schedule
    that failed (a crash, a timeout, a wrong result) is not measured again in later rounds."""
    import random
    rng = random.Random(_stream_seed(config.seed + 1, w))
    per_schedule: list[list] = [[] for _ in schedules]
    for r in range(config.rounds):
        order = [i for i in range(len(schedules)) if all(m.ok for m in per_schedule[i])]
        rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            for i, (m, _) in zip(idx, measure(runner, [Candidate(w, schedules[i]) for i in idx], target)):
                per_schedule[i].append(m)
            if on_progress:
                progress.workload = f"{w} (round {r + 1}/{config.rounds})"
                on_progress(progress)
    return [(pool_measurements(ms), target) for ms in per_schedule]
