"""The tuning loop: propose -> measure -> observe, then an A/B re-measurement of the finalists.

Single timings on this machine are off by +-25% back to back, so the winner is not the fastest
single measurement: the top-k schedules are re-timed *interleaved* with the default schedule and
the library baseline, round-robin, and ranked by their median over all rounds.  The speedup and
the ratio to the baseline come from that same interleaved run.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from tilewise.ir.compiler import compile
from tilewise.ir.schedule import Schedule
from tilewise.ir.workload import Workload
from tilewise.profiling.base import Candidate, Runner, RunnerConfig
from tilewise.profiling.baseline import BaselineProcess
from tilewise.profiling.measure import Measurement, Problem, check, make_problem, page_aligned_empty, time_runs
from tilewise.profiling.runner import LocalRunner
from tilewise.profiling.target import Target
from tilewise.tuner.base import SearchStrategy, create
from tilewise.tuner.space import SpaceOptions, space_for


@dataclass(frozen=True)
class TuneConfig:
    trials: int = 32
    strategy: str = "random"
    max_threads: int = 1
    max_rel_error: float | None = None     # None: the op's own tolerance for its dtype
    batch_size: int = 8
    seed: int = 0
    repeats: int = 10                       # timed runs per candidate (at least)
    min_time_s: float = 0.05                # and at least this long
    top_k: int = 3                          # finalists re-measured side by side
    ab_rounds: int = 5
    ab_runs_per_round: int = 3


@dataclass
class Trial:
    schedule: Schedule
    measurement: Measurement


@dataclass
class Timing:
    name: str
    schedule: Schedule | None
    times_s: list[float]
    rel_error: float | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s) if self.times_s else float("inf")


@dataclass
class TuneResult:
    workload: Workload
    target: Target
    config: TuneConfig
    trials: list[Trial]
    best: Timing | None
    default: Timing | None
    reference: Timing
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def n_ok(self) -> int:
        return sum(t.measurement.ok for t in self.trials)

    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.measurement.status] = out.get(t.measurement.status, 0) + 1
        return out

    def _entry(self, t: Timing | None) -> dict | None:
        if t is None:
            return None
        return {"schedule": t.schedule.to_json() if t.schedule is not None else None,
                "latency_s": t.median_s, "gflops": self.workload.flops / t.median_s / 1e9,
                "rel_error": t.rel_error}

    def speedup_over_default(self) -> float | None:
        if self.best is None or self.default is None:
            return None
        return self.default.median_s / self.best.median_s

    def ratio_to_reference(self) -> float | None:
        return None if self.best is None else self.reference.median_s / self.best.median_s

    def to_json(self) -> dict:
        """The object of DESIGN.md's CLI contract for ``tilewise tune --json``."""
        return {
            "workload": str(self.workload),
            "target": dict(self.target.to_json(), key=self.target.key()),
            "trials": len(self.trials),
            "best": self._entry(self.best),
            "default": self._entry(self.default),
            "reference": {"name": self.reference.name, "latency_s": self.reference.median_s,
                          "gflops": self.workload.flops / self.reference.median_s / 1e9},
        }


@contextlib.contextmanager
def pinned(n_cores: int) -> Iterator[None]:
    """Run on the first ``n_cores`` cores this process may use (fewer migrations, less noise)."""
    try:
        before = os.sched_getaffinity(0)
    except AttributeError:
        yield
        return
    cores = sorted(before)[:max(1, n_cores)]
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n):
        yield


def _interleaved(runs: dict[str, Callable[[], object]], baseline: BaselineProcess, rounds: int,
                 per_round: int) -> dict[str, list[float]]:
    """Round-robin: every kernel, then the baseline (in its own process), ``rounds`` times."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    times["reference"] = []
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].extend(time_runs(fn, repeats=per_round, min_time_s=0.0, warmup=1))
        times["reference"].extend(baseline.time(per_round))
    return times


def tune(workload: Workload, target: Target, config: TuneConfig = TuneConfig(), *,
         strategy: SearchStrategy | None = None, runner: Runner | None = None,
         on_trial: Callable[[Trial], None] | None = None) -> TuneResult:
    """Tune ``workload`` on ``target``: ``config.trials`` schedules measured by ``runner`` (default:
    a LocalRunner, so a crashing or hanging candidate is a failed trial, not a crash), then the
    finalists A/B-timed in this process against the default schedule and the baseline."""
    t_start = time.perf_counter()
    precisions = ()
    if config.max_rel_error is not None:
        precisions = tuple(p for p in workload.kind.precisions_for(workload))
    space = space_for(workload, target, SpaceOptions(config.max_threads, precisions))
    strategy = strategy or create(config.strategy, space, seed=config.seed, workload=workload, target=target)
    problems: dict[str, Problem] = {}

    def problem(precision: str) -> Problem:
        if precision not in problems:
            problems[precision] = make_problem(workload, precision, seed=config.seed)
        return problems[precision]

    trials: list[Trial] = []
    own_runner = runner is None
    if own_runner:
        runner = LocalRunner(RunnerConfig(build_workers=1, repeats=config.repeats, min_time_s=config.min_time_s,
                                          max_rel_error=config.max_rel_error, seed=config.seed))
    try:
        while len(trials) < config.trials:
            batch = strategy.propose(min(config.batch_size, config.trials - len(trials)))
            if not batch:
                break
            results = runner.run([Candidate(workload, s) for s in batch])
            for s, m in zip(batch, results):
                trial = Trial(s, m)
                trials.append(trial)
                if on_trial:
                    on_trial(trial)
            strategy.observe(batch, results)
    finally:
        if own_runner:
            runner.close()
    with pinned(config.max_threads), blas_threads(config.max_threads):
        result = _final_ab(workload, target, config, trials, problem)
    result.wall_time_s = time.perf_counter() - t_start
    return result


def _final_ab(workload, target, config, trials, problem) -> TuneResult:
    ok = sorted((t for t in trials if t.measurement.ok), key=lambda t: t.measurement.median_s)
    finalists = [t.schedule for t in ok[:config.top_k]]
    default_s = workload.kind.default_schedule(workload, target)
    runs: dict[str, Callable[[], object]] = {}
    errors: dict[str, float] = {}
    schedules: dict[str, Schedule] = {}
    notes: list[str] = []
    for i, s in enumerate([default_s] + finalists):
        name = "default" if i == 0 else f"candidate{i}"
        if i and s == default_s:
            continue
        p = problem(s.get("precision", workload.dtype))
        try:
            kernel = compile(workload, s)
        except Exception as e:          # the default failing is worth saying, not fatal
            notes.append(f"{name} schedule failed to compile: {e}")
            continue
        errors[name] = check(kernel, p)
        # each kernel gets its own output buffers so the interleaved runs do not alias
        arrays = p.inputs + [page_aligned_empty(o.shape, o.dtype) for o in p.outputs]
        runs[name] = kernel.bind(arrays)
        schedules[name] = s
    with BaselineProcess(str(workload), config.max_threads, config.seed) as baseline:
        times = _interleaved(runs, baseline, config.ab_rounds, config.ab_runs_per_round)
        ref_name = baseline.name
    timings = {k: Timing(k, schedules.get(k), v, errors.get(k)) for k, v in times.items()}
    ranked = sorted((t for k, t in timings.items() if k != "reference"), key=lambda t: t.median_s)
    best = ranked[0] if ranked and finalists else None
    reference = timings["reference"]
    reference.name = ref_name
    return TuneResult(workload, target, config, trials, best, timings.get("default"), reference, notes=notes)
