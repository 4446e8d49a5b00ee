"""The tuning loop: propose -> measure -> observe, then an A/B re-measurement of the finalists,
one loop for every target kind (:mod:`tilewise.tuner.targets` supplies the kind's space, runner,
default schedule and cost model: MLIR kernels on the CPU, Triton GEMMs on a cuda target).

With a record store, ``tune`` is also the tuning database (MetaSchedule's Database, Inductor's
autotune cache): every measured trial is appended after its batch, and what the store already
holds for this (workload, target) is used first.  A workload with a verified record that fits the
run's limits (thread cap, error budget) is not searched again unless ``retune`` is set: its best
known schedules go straight to the A/B finalists.  With ``retune`` the search starts from them:
the strategy is warm-started with every prior record and never re-measures one.

Single timings on this machine are off by +-25% back to back, so the winner is not the fastest
single measurement: the top-k schedules are re-timed *interleaved* with the default schedule and
the library baseline, round-robin, and ranked by their median over all rounds.  The speedup and
the ratio to the baseline come from that same interleaved run, which the runner times
(``Runner.time_ab``: in a process of its own on the CPU, so a crashing finalist is data), so the
loop is tested on a ``ReplayRunner`` without the JIT.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from tilewise.datasets.base import RecordStore
from tilewise.core.record import Record
from tilewise.datasets.runs import RunTiming, TrialEntry, TuningRun
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.base import ABTimings, Runner
from tilewise.core.measurement import Measurement
from tilewise.core.target import Target
from tilewise.profiling.measure import error_bound
from tilewise.profiling.memory import check_buffers_fit
from tilewise.tuner.base import SearchStrategy
from tilewise.tuner.space import space_for
from tilewise.tuner.targets import TargetKind, make_strategy, target_kind


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


def fits(workload: Workload, space, m: Measurement, max_rel_error: float | None, schedule: Schedule) -> bool:
    """Whether a stored result answers for this run: ok, legal in this run's space (thread cap,
    admitted precisions) and within its error budget."""
    if not m.ok or not space.is_legal(schedule):
        return False
    return m.rel_error is None or m.rel_error <= error_bound(workload, max_rel_error)


def tune(workload: Workload, target: Target, config: TuneConfig = TuneConfig(), *,
         strategy: SearchStrategy | None = None, runner: Runner | None = None,
         store: RecordStore | None = None, on_trial: Callable[[Trial], None] | None = None,
         model=None) -> TuneResult:
    """Tune ``workload`` on ``target``: ``config.trials`` schedules measured by ``runner`` (default:
    the target kind's, a LocalRunner or a GpuRunner, so a crashing or hanging candidate is a failed
    trial, not a crash), then the finalists re-timed by the runner (``Runner.time_ab``) against
    the default schedule and the library reference.  ``model``: the ``model`` strategy's cost
    model (default: the target kind's).

    ``store``: the tuning database (see the module docstring); trials are appended to it, each
    under the target that measured it: a cluster runner (``RayRunner(..., require_target=target)``,
    ``tilewise tune --cluster``) measures on the cluster's nodes of this target and says which
    (and re-times the finalists on this machine); the run log is appended after the A/B.

    A workload whose buffers do not fit in this machine's available memory is refused before any
    search (:class:`~tilewise.profiling.memory.BuffersTooLarge`, a ValueError)."""
    check_buffers_fit(workload)
    t_start = time.perf_counter()
    kind = target_kind(target)
    config = config.with_error_budget(workload)
    space = space_for(workload, target, kind.space_options(workload, config))
    strategy = strategy or make_strategy(config.strategy, space, workload, target, config.seed, model,
                                         config.strategy_options)
    own_runner = runner is None
    runner = runner or kind.runner(config)
    try:
        prior, searched, trials = search_with_database(workload, target, space, config, strategy, runner,
                                                       store, on_trial)
        result = final_ab(workload, target, config, trials, prior, runner)
    finally:
        if own_runner:
            runner.close()
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


def _search(workload, target, config, strategy, runner, store, on_trial) -> list[Trial]:
    from tilewise.tuner.collect import measure
    trials: list[Trial] = []
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
    return trials


def final_ab(workload: Workload, target: Target, config: TuneConfig, trials: list[Trial], prior: list[Trial],
             runner: Runner) -> TuneResult:
    """The finalists, the default schedule and the library reference, re-timed by ``runner``."""
    kind = target_kind(target)
    chosen = finalists(trials, prior, config.top_k)
    default_s = kind.default_schedule(workload, target)
    named: dict[str, Schedule] = {"default": default_s}
    for i, s in enumerate(chosen, 1):
        if s != default_s:
            named[f"candidate{i}"] = s
    ab = runner.time_ab(workload, named, rounds=config.ab_rounds, runs_per_round=config.ab_runs_per_round,
                        threads=config.max_threads)
    timings = {k: Timing(k, named[k], list(m.times_s), m.rel_error) for k, m in ab.measurements.items() if m.ok}
    return TuneResult(workload, target, config, trials, fastest(timings, chosen), timings.get("default"),
                      _reference(ab, kind), notes=_ab_notes(ab, kind))


def _reference(ab: ABTimings, kind: TargetKind) -> Timing:
    ref = ab.reference
    return Timing(ab.reference_name or kind.reference_name, None, list(ref.times_s) if ref.ok else [float("inf")],
                  ref.rel_error)


def _ab_notes(ab: ABTimings, kind: TargetKind) -> list[str]:
    """The A/B's failures are worth saying (the default's above all), not fatal."""
    notes = [f"{name} schedule failed: {m.status}: {m.error_msg}" for name, m in ab.measurements.items() if not m.ok]
    if not ab.reference.ok:
        notes.append(f"{ab.reference_name or kind.reference_name} reference failed: "
                     f"{ab.reference.status}: {ab.reference.error_msg}")
    return notes
