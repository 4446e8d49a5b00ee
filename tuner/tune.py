"""The tuning loop: propose -> measure -> observe, then an A/B re-measurement of the finalists.

With a record store, ``tune`` is also the tuning database (MetaSchedule's Database, Inductor's
autotune cache): every measured trial is appended after its batch, and what the store already
holds for this (workload, target) is used first.  A workload with a verified record that fits the
run's limits (thread cap, error budget) is not searched again unless ``retune`` is set: its best
known schedules go straight to the A/B finalists.  With ``retune`` the search starts from them:
the strategy is warm-started with every prior record and never re-measures one.

Single timings on this machine are off by +-25% back to back, so the winner is not the fastest
single measurement: the top-k schedules are re-timed *interleaved* with the default schedule and
the library baseline, round-robin, and ranked by their median over all rounds.  The speedup and
the ratio to the baseline come from that same interleaved run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from tilewise.datasets.base import RecordStore
from tilewise.core.record import Record
from tilewise.datasets.runs import RunTiming, TrialEntry, TuningRun
from tilewise.ir.compiler import compile
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.base import Runner, RunnerConfig
from tilewise.profiling.baseline import BaselineProcess
from tilewise.core.measurement import Measurement
from tilewise.profiling.measure import Problem, check, error_bound, make_problem, page_aligned_empty, time_runs
from tilewise.profiling.runner import LocalRunner
from tilewise.core.target import Target
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
    retune: bool = False                    # search even when the store holds a fitting record
    objectives: tuple[str, ...] = ("latency",)   # ("latency", "error"): multi-objective, Pareto front
    #: extra options of the strategy, as (name, value) pairs: e.g. (("storage", "postgresql://..."),
    #: ("study_name", "mm512")) for a shared optuna study
    strategy_options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives or self.objectives[0] != "latency":
            raise ValueError(f"objectives {','.join(self.objectives)!r}: use 'latency' or 'latency,error'")

    @property
    def multi_objective(self) -> bool:
        return "error" in self.objectives

    def error_budget(self, workload: Workload) -> float | None:
        """The error bound results are checked against: ``max_rel_error``; with the error
        objective and no explicit budget, the loosest tolerance among the precisions the op
        offers (every variant is measured and checked; the front shows what each costs)."""
        if self.max_rel_error is not None or not self.multi_objective:
            return self.max_rel_error
        kind = workload.kind
        return max(kind.tolerance(workload, p) for p in (workload.dtype, *kind.precisions_for(workload)))

    def with_error_budget(self, workload: Workload) -> "TuneConfig":
        """This config with :meth:`error_budget` as ``max_rel_error`` (itself when it already is)."""
        if self.multi_objective and self.max_rel_error is None:
            return dataclasses.replace(self, max_rel_error=self.error_budget(workload))
        return self


def finalists(trials: list, prior: list, top_k: int) -> list[Schedule]:
    """The ``top_k`` fastest distinct schedules measured ok, this run's and the database's."""
    ok = sorted((t for t in [*trials, *prior] if t.measurement.ok), key=lambda t: t.measurement.median_s)
    return list(dict.fromkeys(t.schedule for t in ok))[:top_k]


def fastest(timings: dict, finalists: list) -> "Timing | None":
    """The fastest of the A/B timings other than the reference (None without finalists)."""
    ranked = sorted((t for k, t in timings.items() if k != "reference"), key=lambda t: t.median_s)
    return ranked[0] if ranked and finalists else None


OBJECTIVES = ("latency", "error")


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
    prior: list[Trial] = field(default_factory=list)   # fitting ok records the store held before
    searched: bool = True          # False: the store answered (tuned before, no --retune)
    store: str | None = None       # where the trials were recorded
    strategy: str = ""
    pareto: list[Trial] = field(default_factory=list)   # with the error objective: the front

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
            "searched": self.searched,
            "prior_records": len(self.prior),
            "store": self.store,
            "wall_time_s": self.wall_time_s,
            **({"pareto": [{"schedule": t.schedule.to_json(), "latency_s": t.measurement.median_s,
                            "gflops": self.workload.flops / t.measurement.median_s / 1e9,
                            "rel_error": t.measurement.rel_error} for t in self.pareto]}
               if self.config.multi_objective else {}),
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


def fits(workload: Workload, space, m: Measurement, max_rel_error: float | None, schedule: Schedule) -> bool:
    """Whether a stored result answers for this run: ok, legal in this run's space (thread cap,
    admitted precisions) and within its error budget."""
    if not m.ok or not space.is_legal(schedule):
        return False
    return m.rel_error is None or m.rel_error <= error_bound(workload, max_rel_error)


def tune(workload: Workload, target: Target, config: TuneConfig = TuneConfig(), *,
         strategy: SearchStrategy | None = None, runner: Runner | None = None,
         store: RecordStore | None = None,
         on_trial: Callable[[Trial], None] | None = None) -> TuneResult:
    """Tune ``workload`` on ``target``: ``config.trials`` schedules measured by ``runner`` (default:
    a LocalRunner, so a crashing or hanging candidate is a failed trial, not a crash), then the
    finalists A/B-timed in this process against the default schedule and the baseline.

    ``store``: the tuning database (see the module docstring); trials are appended to it, each
    under the target that measured it: a cluster runner (``RayRunner(..., require_target=target)``,
    ``tilewise tune --cluster``) measures on the cluster's nodes of this target and says which."""
    t_start = time.perf_counter()
    config = config.with_error_budget(workload)
    precisions = ()
    if config.max_rel_error is not None:
        precisions = tuple(p for p in workload.kind.precisions_for(workload))
    space = space_for(workload, target, SpaceOptions(config.max_threads, precisions))
    strategy = strategy or create(config.strategy, space, seed=config.seed, workload=workload, target=target,
                                  **dict(config.strategy_options))
    problems: dict[str, Problem] = {}

    def problem(precision: str) -> Problem:
        if precision not in problems:
            problems[precision] = make_problem(workload, precision, seed=config.seed)
        return problems[precision]

    prior, searched, trials = search_with_database(workload, target, space, config, strategy, runner,
                                                   store, on_trial)
    with pinned(config.max_threads), blas_threads(config.max_threads):
        result = _final_ab(workload, target, config, trials, prior, problem)
    finish_result(result, config, strategy, store, prior, searched, trials, t_start)
    if store is not None:
        store.append_run(run_log(result, time.time() - result.wall_time_s))
    return result


def search_with_database(workload: Workload, target: Target, space, config: TuneConfig, strategy: SearchStrategy,
                         runner, store: RecordStore | None, on_trial) -> tuple[list[Trial], bool, list[Trial]]:
    """The tuning database's part of a tune (CPU and GPU alike): ``(prior, searched, trials)``.

    ``prior`` are the store's records of this (workload, target) that fit the space and the error
    budget; the search runs only when there are none or ``config.retune``, warm-started with every
    record the store holds (failures included, so they are not proposed again)."""
    known = store.query(workload, target, status=None) if store is not None else []
    prior = [Trial(r.schedule, r.measurement) for r in known
             if fits(workload, space, r.measurement, config.max_rel_error, r.schedule)]
    searched = config.retune or not prior
    trials: list[Trial] = []
    if searched:
        if known:
            strategy.warm_start([r.schedule for r in known], [r.measurement for r in known])
        trials = _search(workload, target, config, strategy, runner, store, on_trial)
    return prior, searched, trials


def finish_result(result: TuneResult, config: TuneConfig, strategy: SearchStrategy, store: RecordStore | None,
                  prior: list[Trial], searched: bool, trials: list[Trial], t_start: float) -> None:
    """Fill in what every tune reports besides the A/B: prior, strategy, Pareto front, store, time."""
    result.prior, result.searched, result.strategy = prior, searched, getattr(strategy, "name", "")
    if config.multi_objective:
        from tilewise.tuner.pareto import pareto_front
        front = pareto_front((t.schedule, t.measurement) for t in [*trials, *prior])
        result.pareto = [Trial(s, m) for s, m in front]
    result.store = getattr(store, "path", None) or (str(store) if store is not None else None)
    if not searched:
        result.notes.append(f"tuned before: the store holds {len(prior)} verified schedules for this "
                            "workload and target; none searched (pass --retune to search again)")
    result.wall_time_s = time.perf_counter() - t_start


def run_log(result: TuneResult, started: float) -> TuningRun:
    """What the profile report needs of a run that its records do not say: the strategy, the
    trial order, and the final A/B timings of the best, the default schedule and the baseline."""
    def timing(t: Timing | None, name: str) -> RunTiming | None:
        if t is None:
            return None
        return RunTiming(name, tuple(t.times_s), t.schedule.to_json() if t.schedule is not None else None,
                         t.rel_error)
    c = result.config
    return TuningRun(
        workload=result.workload, target=result.target, strategy=result.strategy, started=started,
        finished=started + result.wall_time_s, searched=result.searched,
        config={"trials": c.trials, "max_threads": c.max_threads, "max_rel_error": c.max_rel_error,
                "objectives": list(c.objectives), "seed": c.seed, "prior_records": len(result.prior)},
        trials=tuple(TrialEntry(t.schedule.key(), t.measurement.status,
                                t.measurement.median_s if t.measurement.times_s else None,
                                t.measurement.rel_error, t.schedule.get("precision"))
                     for t in result.trials),
        best=timing(result.best, "best"), default=timing(result.default, "default"),
        reference=timing(result.reference, result.reference.name))


def runner_config(config: TuneConfig) -> RunnerConfig:
    """The runner settings of a tuning run (the default LocalRunner's, and each cluster node's)."""
    return RunnerConfig(build_workers=1, repeats=config.repeats, min_time_s=config.min_time_s,
                        max_rel_error=config.max_rel_error, seed=config.seed)


def _search(workload, target, config, strategy, runner, store, on_trial) -> list[Trial]:
    from tilewise.tuner.collect import measure
    trials: list[Trial] = []
    own_runner = runner is None
    if own_runner:
        runner = LocalRunner(runner_config(config))
    try:
        while len(trials) < config.trials:
            batch = strategy.propose(min(config.batch_size, config.trials - len(trials)))
            if not batch:
                break
            measured = measure(runner, [Candidate(workload, s) for s in batch], target)
            results = [m for m, _ in measured]
            if store is not None:     # under the target that measured each (a cluster node's)
                store.append([Record(workload, t, s, m) for s, (m, t) in zip(batch, measured)])
            for s, m in zip(batch, results):
                trial = Trial(s, m)
                trials.append(trial)
                if on_trial:
                    on_trial(trial)
            strategy.observe(batch, results)
    finally:
        if own_runner:
            runner.close()
    return trials


def _final_ab(workload, target, config, trials, prior, problem) -> TuneResult:
    chosen = finalists(trials, prior, config.top_k)
    default_s = workload.kind.default_schedule(workload, target)
    runs: dict[str, Callable[[], object]] = {}
    errors: dict[str, float] = {}
    schedules: dict[str, Schedule] = {}
    notes: list[str] = []
    for i, s in enumerate([default_s] + chosen):
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
    best = fastest(timings, chosen)
    reference = timings["reference"]
    reference.name = ref_name
    return TuneResult(workload, target, config, trials, best, timings.get("default"), reference, notes=notes)
