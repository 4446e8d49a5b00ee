"""Optuna-backed strategies: ``optuna`` (TPE or CMA-ES on log latency) and ``nsga2`` (latency and
relative error, both minimised, with NSGA-II).

This is the adapter module: optuna is imported here and nowhere else in tilewise.  Each strategy
drives one in-memory study through optuna's ask-and-tell interface; the tuning loop's batches map
to asked trials, and ``observe`` tells them.

Encoding.  A knob becomes optuna parameters so that the samplers see its structure:

- numeric values (``unroll``, ``threads``) -> an :class:`~optuna.distributions.IntDistribution`
  over the index in sorted order, so TPE's kernels and CMA-ES's Gaussian see "2 is between 1 and
  4" whatever the spacing of the values;
- equal-length tuples of numbers that form a full product (``tile=(mc, nc, kc)``,
  ``reg_tile=(mr, nr)``) -> one such ordered index per component (``tile[0]``, ``tile[1]``, ...):
  every combination of components is a value of the knob, and each component is a size with an
  order;
- anything else (bools, strings such as ``precision``, permutations such as ``interchange``) ->
  a :class:`~optuna.distributions.CategoricalDistribution` over the value's position.

A knob with one value is no parameter at all.  CMA-ES samples only the numeric dimensions (the
tiles, register tiles, unroll and threads: what matters most) and leaves the categorical ones to
its independent random sampler.

Illegal and repeated asks.  The samplers know the knob ranges but not the space's joint
constraint (register budget, register tile within the cache tile), and they do not know which
schedules were already proposed.  An ask that decodes to an illegal schedule is told a *penalty*
value rather than ``FAIL``: TPE and CMA-ES only learn from completed trials, so a failed trial
would leave the illegal region as attractive as before, while a completed one with the worst
value puts it in TPE's "bad" density and in the bottom of CMA-ES's ranking.  Both samplers are
rank-based, so the penalty only has to be worse than every real result.  An ask that repeats an
observed schedule is told that schedule's known value (what it would measure); one that repeats a
schedule still in flight, or one seen without a result, is told ``FAIL`` (nothing to learn).
After ``max_retries`` misses in a row the last ask is repaired by re-drawing its knobs one at a
time until it is legal and unseen (:meth:`Space.repair`, a local move), failing that by an unseen
draw from the space; the repaired schedule is enqueued so it is still a trial the
sampler hears back about.  Spaces small enough to enumerate (:meth:`Space.legal_points`) are
enumerated once, so exhaustion is exact: ``propose`` returns fewer schedules, then none.

Failures and penalties.  A failed measurement (status != ok) is told the worst objective value
observed so far plus a margin (``log(4)`` on log latency, ``log10(4)`` on log error), so the
sampler steers away from it without distorting the scale; before any result is in, a fixed value
(an hour; a relative error of 1) stands in.  In ``nsga2`` the penalty is worse than every result
on both objectives, so a failure is dominated by every success.

Warm start is ``observe`` of schedules that were never asked: the legal ones are added as
completed trials (``study.add_trial``), the rest are only remembered as seen.  TPE learns from
them; CMA-ES and NSGA-II learn only from trials they sampled, so for them warm-started results are
just never proposed again.

Shared studies.  ``storage`` (an optuna RDB URL: ``sqlite:///study.db``, ``postgresql://...``)
and ``study_name`` put the study in a database, so several workers (processes, machines) run one
study: each asks its trials from it and tells them back, and every worker's sampler learns from
all completed trials.  Before each ``propose`` a worker reads the study: schedules another worker
has in flight count as seen (not proposed again), completed ones as observed with their values.
Two workers asking at the same moment may still draw the same schedule (optuna has no lock
around ask); the record store keeps one record of it, so at worst one measurement is spent twice.
Without ``study_name`` the name is derived from the workload, target and space, so workers
tuning the same thing meet in the same study.  ``postgresql://`` URLs are given to SQLAlchemy as
``postgresql+psycopg://`` (psycopg 3, a tilewise dependency).  Give each worker its own ``seed``.

Optuna's logger is held at WARNING only while this module calls into optuna, and restored after.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import warnings
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tilewise.core.schedule import Schedule
from tilewise.core.measurement import Measurement
from tilewise.tuner.base import SearchStrategy, register_strategy
from tilewise.tuner.pareto import UNKNOWN_REL_ERROR, pareto_front
from tilewise.tuner.space import Space

_NO_RESULT_LATENCY_S = 3600.0    # the latency penalty before any result is in
_SAMPLE_DRAWS = 200


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna at WARNING and its experimental-feature warnings off, for the duration only."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(before)


def _key(v: Any) -> tuple:
    """A lookup key that tells ``True`` from ``1`` (equal and equally hashed in Python)."""
    return (type(v), tuple(_key(x) for x in v) if isinstance(v, tuple) else v)


class _Knob:
    """One knob as optuna parameters: ordered indices for numbers and products of numbers,
    else a category over the value's position."""

    def __init__(self, space: Space, name: str):
        self.name = name
        self.values = values = space.knobs[name]
        kind = space.knob_kind(name)
        self.is_tuple = kind == "product"
        # sorted distinct values per component; None for a categorical knob
        self.levels: list[list] | None = None if kind == "category" else space.knob_levels(name)
        self.distributions: dict[str, BaseDistribution] = {}
        if self.levels is None:
            self._position = {_key(v): i for i, v in enumerate(values)}
            if len(values) > 1:
                self.distributions[name] = CategoricalDistribution(tuple(range(len(values))))
        else:
            self._index = [{_key(x): i for i, x in enumerate(lv)} for lv in self.levels]
            for j, lv in enumerate(self.levels):
                if len(lv) > 1:
                    self.distributions[self._param(j)] = IntDistribution(0, len(lv) - 1)

    def _param(self, j: int) -> str:
        return f"{self.name}[{j}]" if self.is_tuple else self.name

    def decode(self, params: Mapping[str, Any]) -> Any:
        if self.levels is None:
            return self.values[params.get(self.name, 0)]
        parts = [lv[params.get(self._param(j), 0)] for j, lv in enumerate(self.levels)]
        return tuple(parts) if self.is_tuple else parts[0]

    def encode(self, value: Any) -> dict[str, int] | None:
        """The parameters of ``value``; None if the knob has no such value."""
        if self.levels is None:
            i = self._position.get(_key(value))
            return None if i is None else {p: i for p in self.distributions}
        if self.is_tuple and not (isinstance(value, tuple) and len(value) == len(self.levels)):
            return None
        out = {}
        for j, part in enumerate(value if self.is_tuple else (value,)):
            i = self._index[j].get(_key(part))
            if i is None:
                return None
            if self._param(j) in self.distributions:
                out[self._param(j)] = i
        return out


class KnobEncoding:
    """Schedules of a space <-> optuna parameters (see the module docstring)."""

    def __init__(self, space: Space):
        self.space = space
        self.knobs = [_Knob(space, name) for name in space.knobs]
        self.distributions: dict[str, BaseDistribution] = {}
        for k in self.knobs:
            self.distributions.update(k.distributions)

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Knob values (always among each knob's values; not necessarily jointly legal)."""
        return {k.name: k.decode(params) for k in self.knobs}

    def encode(self, schedule: Mapping[str, Any]) -> dict[str, int] | None:
        """The parameters of ``schedule``; None if it sets other knobs or values than the space."""
        if set(schedule) != set(self.space.knobs):
            return None
        params: dict[str, int] = {}
        for k in self.knobs:
            part = k.encode(schedule[k.name])
            if part is None:
                return None
            params.update(part)
        return params


class _OptunaStrategy(SearchStrategy):
    """Ask/tell over one optuna study (``self.study``, created at the first ``propose`` so the
    sampler may depend on the batch size).  Subclasses give the directions, the sampler and the
    objective values of a successful measurement."""

    directions: tuple[str, ...] = ()
    margins: tuple[float, ...] = ()           # penalty = worst observed + margin, per objective
    no_result_penalty: tuple[float, ...] = ()

    def __init__(self, space: Space, seed: int, max_retries: int, storage: str | None = None,
                 study_name: str | None = None, workload=None, target=None):
        if int(max_retries) < 1:
            raise ValueError(f"max_retries must be at least 1, not {max_retries!r}")
        if study_name is not None and storage is None:
            raise ValueError("study_name names a study in a shared storage: give storage too")
        self.storage = storage_url(storage) if storage is not None else None
        self.study_name = study_name or (default_study_name(self.name, space, workload, target)
                                         if storage is not None else None)
        self._synced: set[int] = set()         # trial numbers of a shared study already read
        self.space = space
        self.seed = seed
        self.max_retries = int(max_retries)
        self.rng = np.random.default_rng(seed)
        self.encoding = KnobEncoding(space)
        self.seen: set[Schedule] = set()
        self._told: dict[Schedule, list[float]] = {}      # values told for each observed schedule
        self._pending: dict[Schedule, optuna.trial.Trial] = {}
        self._worst: list[float] | None = None
        self._early_trials: list = []                   # trials added before the study exists
        self.study: optuna.Study | None = None
        self._legal = space.legal_points()             # every legal schedule, for small spaces
        self._legal_set = set(self._legal or ())
        self._unseen_legal = len(self._legal_set)

    # -- subclass hooks ---------------------------------------------------------------------
    def _make_sampler(self, batch: int) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def _objectives(self, m: Measurement) -> list[float]:
        raise NotImplementedError

    # -- the contract -----------------------------------------------------------------------
    def propose(self, n: int) -> list[Schedule]:
        out: list[Schedule] = []
        if n <= 0:
            return out
        with _quiet():
            self._ensure_study(n)
            while len(out) < n and (self._legal is None or self._unseen_legal > 0):
                s = self._next()
                if s is None:
                    break
                out.append(s)
        return out

    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        pairs = list(zip(schedules, measurements))
        for _, m in pairs:              # the whole batch's results first, so penalties exceed them
            if _usable(m):
                values = self._objectives(m)
                self._worst = values if self._worst is None else [max(a, b) for a, b in zip(self._worst, values)]
        with _quiet():
            for s, m in pairs:
                values = self._score(m)
                trial = self._pending.pop(s, None)
                if trial is not None and values is None:
                    self.study.tell(trial, state=TrialState.FAIL)
                elif trial is not None:
                    self.study.tell(trial, values)
                elif values is not None and s not in self._told and self.space.is_legal(s):
                    params = self.encoding.encode(s)
                    if params is not None:
                        self._add_trial(create_trial(params=params, distributions=self.encoding.distributions,
                                                     values=values))
                if values is not None:
                    self._told[s] = values
                self._mark_seen(s)

    # warm_start: the base class's, i.e. observe(); see the module docstring.

    # -- internals --------------------------------------------------------------------------
    def _ensure_study(self, batch: int) -> None:
        if self.study is None:
            self.study = optuna.create_study(directions=list(self.directions), sampler=self._make_sampler(batch),
                                             storage=self.storage, study_name=self.study_name,
                                             load_if_exists=self.storage is not None)
            early, self._early_trials = self._early_trials, []
            # a shared study's completed trials are read once here, not once per early trial
            done = self._completed_params() if self.storage is not None else None
            for trial in early:
                self._add_trial(trial, done)
        self._sync_shared()

    def _add_trial(self, trial, done: list | None = None) -> None:
        """Tell the study a result it did not ask for; a shared study gets a warm-start result once
        (``done``: its completed trials' params when the caller already read them)."""
        if self.study is None:
            self._early_trials.append(trial)
            return
        if self.storage is not None:
            done = self._completed_params() if done is None else done
            if trial.params in done:
                return
            done.append(trial.params)
        self.study.add_trial(trial)

    def _completed_params(self) -> list:
        return [t.params for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]

    def _sync_shared(self) -> None:
        """Read the shared study: other workers' in-flight schedules are seen, their completed ones
        observed (their values are what a repeat ask is told)."""
        if self.storage is None:
            return
        ours = {t.number for t in self._pending.values()}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number in self._synced or t.number in ours:
                continue
            values = self.encoding.decode(t.params)
            if not self.space.is_legal(values):
                if t.state == TrialState.COMPLETE:
                    self._synced.add(t.number)
                continue
            s = Schedule(values)
            if t.state == TrialState.COMPLETE:
                self._synced.add(t.number)
                self._told.setdefault(s, list(t.values))
            self._mark_seen(s)

    def _score(self, m: Measurement | None) -> list[float] | None:
        """What to tell for a result: its objectives, a penalty if it failed, None if there is none."""
        if m is None:
            return None
        return self._objectives(m) if _usable(m) else self._penalty()

    def _penalty(self) -> list[float]:
        if self._worst is None:
            return list(self.no_result_penalty)
        return [w + m for w, m in zip(self._worst, self.margins)]

    def _mark_seen(self, s: Schedule) -> None:
        if s not in self.seen:
            self.seen.add(s)
            if s in self._legal_set:
                self._unseen_legal -= 1

    def _next(self) -> Schedule | None:
        """One new legal schedule from the sampler, with its trial left running; None if none."""
        values = None
        for _ in range(self.max_retries):
            trial = self.study.ask(self.encoding.distributions)
            values = self.encoding.decode(trial.params)
            s = Schedule(values)
            if not self.space.is_legal(values):
                self.study.tell(trial, self._penalty())           # completed, so it is learnt from
            elif s in self._told:
                self.study.tell(trial, self._told[s])
            elif s in self.seen:                                  # in flight, or seen without a result
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                return self._take(s, trial)
        s = self.space.repair(values, self.rng, accept=lambda s: s not in self.seen) or self._unseen_draw()
        if s is None:
            return None
        self.study.enqueue_trial(self.encoding.encode(s))
        return self._take(s, self.study.ask(self.encoding.distributions))

    def _take(self, s: Schedule, trial) -> Schedule:
        self._mark_seen(s)
        self._pending[s] = trial
        return s

    def _unseen_draw(self) -> Schedule | None:
        if self._legal is not None:
            unseen = [s for s in self._legal if s not in self.seen]
            return unseen[int(self.rng.integers(len(unseen)))] if unseen else None
        for _ in range(_SAMPLE_DRAWS):
            s = self.space.sample(self.rng)
            if s not in self.seen:
                return s
        return None


def storage_url(url: str) -> str:
    """An optuna RDB storage URL; ``postgresql://`` -> ``postgresql+psycopg://`` (SQLAlchemy's
    default PostgreSQL driver is psycopg2, which tilewise does not install)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    if "://" not in url:
        raise ValueError(f"optuna storage {url!r} is not a database URL: use sqlite:///PATH or postgresql://...")
    return url


def default_study_name(strategy: str, space: Space, workload=None, target=None) -> str:
    """``tilewise-<strategy>-<hash>`` of the workload, target and space: one study per problem."""
    text = json.dumps([str(workload), target.key() if target is not None else None,
                       {k: [repr(v) for v in vs] for k, vs in space.knobs.items()}], sort_keys=True)
    return f"tilewise-{strategy}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _usable(m: Measurement | None) -> bool:
    """An ok measurement with a positive, finite median (a result to tell as is)."""
    return m is not None and m.ok and 0 < m.median_s < math.inf


_SAMPLERS = ("tpe", "cmaes")


@register_strategy("optuna")
class OptunaSearch(_OptunaStrategy):
    """Single objective: minimise ``log(median_s)`` with TPE (``sampler="tpe"``, multivariate,
    constant liar so a batch asked before any tell spreads out) or CMA-ES with margin
    (``sampler="cmaes"``, needs the ``cmaes`` package).  ``max_retries``: asks per proposal
    before repairing the last one."""

    directions = ("minimize",)
    margins = (math.log(4),)
    no_result_penalty = (math.log(_NO_RESULT_LATENCY_S),)

    def __init__(self, space: Space, seed: int = 0, *, sampler: str = "tpe", workload=None, target=None,
                 max_retries: int = 8, storage: str | None = None, study_name: str | None = None, **context):
        if sampler not in _SAMPLERS:
            raise ValueError(f"unknown optuna sampler {sampler!r}: use one of {', '.join(_SAMPLERS)}")
        if sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
            raise ImportError("sampler 'cmaes' needs the cmaes package (pip install cmaes)")
        self.sampler = sampler
        super().__init__(space, seed, max_retries, storage, study_name, workload, target)

    def _make_sampler(self, batch: int) -> optuna.samplers.BaseSampler:
        if self.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=self.seed, multivariate=True, constant_liar=True)
        # with_margin keeps each integer dimension from collapsing onto one value (CMAwM), which
        # with few levels per knob would otherwise turn most asks into repeats
        return optuna.samplers.CmaEsSampler(seed=self.seed, with_margin=True, warn_independent_sampling=False)

    def _objectives(self, m: Measurement) -> list[float]:
        return [math.log(m.median_s)]


@register_strategy("nsga2")
class NSGA2Search(_OptunaStrategy):
    """Two objectives, both minimised: ``log(median_s)`` and ``log10(max(rel_error, 1e-12))``,
    with NSGA-II.  ``population_size`` defaults to ``min(24, max(8, first batch size))``, small
    enough that a budget of a few dozen trials sees several generations.  :meth:`pareto_front`
    gives the non-dominated ok results so far (warm-started ones in this space included)."""

    directions = ("minimize", "minimize")
    margins = (math.log(4), math.log10(4))
    no_result_penalty = (math.log(_NO_RESULT_LATENCY_S), math.log10(UNKNOWN_REL_ERROR))

    def __init__(self, space: Space, seed: int = 0, *, population_size: int | None = None, workload=None,
                 target=None, max_retries: int = 8, storage: str | None = None, study_name: str | None = None,
                 **context):
        if population_size is not None and int(population_size) < 2:
            raise ValueError(f"population_size must be at least 2, not {population_size!r}")
        self.population_size = None if population_size is None else int(population_size)
        self._results: dict[Schedule, Measurement] = {}
        super().__init__(space, seed, max_retries, storage, study_name, workload, target)

    def _make_sampler(self, batch: int) -> optuna.samplers.BaseSampler:
        size = self.population_size or min(24, max(8, batch))
        return optuna.samplers.NSGAIISampler(seed=self.seed, population_size=size)

    def _objectives(self, m: Measurement) -> list[float]:
        rel = m.rel_error if m.rel_error is not None else UNKNOWN_REL_ERROR
        return [math.log(m.median_s), math.log10(max(rel, 1e-12))]

    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        super().observe(schedules, measurements)
        for s, m in zip(schedules, measurements):
            if m is not None and self.space.is_legal(s):
                self._results[s] = m

    def pareto_front(self) -> list[tuple[Schedule, Measurement]]:
        return pareto_front(self._results.items())
