"""``model``: cost-model-guided evolutionary search (MetaSchedule's ``EvolutionarySearch``, Ansor's
sketch policy).

Every ``propose(n)`` evolves a population *in the model*, then asks the device about the few best:

1. population: the best measured schedules (at most ``measured_ratio`` of it, as parents only),
   the unmeasured survivors of the previous call, and uniform legal draws;
2. ``generations`` rounds: children by mutation (``mutation_prob``: one to three knobs, mostly to a
   neighbouring value -- a tile component one step up or down its sorted values) or else by
   knob-wise crossover of two tournament-picked parents; illegal, duplicate and already
   proposed/measured children are dropped, the rest scored in **one** batched
   ``predict_with_uncertainty`` call per generation; the best by predicted latency survive;
3. the batch: most by predicted latency, ``uncertainty_fraction`` by an optimistic lower bound
   ``mean * exp(-kappa * std_log)`` (active learning: where the model is unsure and might be
   wrong in our favour), and ``Binomial(n, eps_greedy)`` uniform draws (insurance against a model
   that is confidently wrong).  The model's picks differ pairwise in at least ``min_distance``
   knobs while the pool allows (a batch of 8 is not spent on one tile with 8 unroll/loop-order
   variants); on a synthetic oracle this was neutral (tests/tuner/test_model_search.py's).

The model.  :func:`tilewise.costmodel.selection.resolve_model` chooses it from the ``model``
option: ``None`` takes the embedded xgb model when it was trained on a target like this one (same
kind, arch, SIMD width and vector-ISA family), else a fresh ``xgb`` on ``analytic`` features, which
ranks by the ``roofline`` model until it has ``min_train`` ok measurements; a path loads a model
file; an instance is used as given (and updated in place).  Models are held in memory: online
updates never write the file they came from.  ``model_source`` and ``model_reason`` say what was
chosen and why (for the CLI).

Online learning.  A model that arrives fitted (the embedded one, a file, a fitted instance) was
trained on thousands of records of other workloads, so ``update`` with this session's handful of
rows barely moves it.  Instead the session fits a
:class:`~tilewise.costmodel.residual.ResidualCorrection` (small boosted trees on the model's log
residuals) once ``min_train`` ok measurements of this workload exist, and refits it after every
batch.  ``session_correction=False`` calls ``update`` on the model instead.  An unfitted model (no
pretrained one fits the target) is fitted from this session's records and updated after every
batch, as the cost-model contract describes.

Failures.  A failed measurement is remembered (never proposed again) but not given to the model:
the cost-model contract learns latencies of ``ok`` records only, and a made-up "pessimistic"
latency would bend the fit (a compile timeout says nothing about how fast the kernel would have
run) and drag its roofline-relative level.  Instead the search steers away from it: a candidate
one knob away from ``k`` failed schedules has its predicted latency multiplied by
``failure_penalty ** k`` (neighbours of a failure share the combination that broke it).

Cost (matmul:256x256x512, 2 threads, on a busy 2-core machine): a default ``propose`` scores
~2560 candidates in five model calls and takes 0.12-0.16 s of CPU with the embedded model (0.7 s
for the first call after loading it: XGBoost predicts with every core until the first ``update``
retrains its boosters with ``nthread=1``); ``observe`` with the embedded model adds
``update_rounds`` trees to each of its 5 boosters (0.7-1.0 s).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import random
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tilewise.costmodel.base import CostModel, create as create_model
from tilewise.costmodel.residual import ResidualCorrection
from tilewise.costmodel.selection import resolve_model
from tilewise.core.record import Record
from tilewise.core.schedule import Schedule
from tilewise.core.candidate import Candidate
from tilewise.core.measurement import Measurement
from tilewise.core.target import Target
from tilewise.tuner.base import SearchStrategy, register_strategy
from tilewise.tuner.space import Space

Genome = tuple[int, ...]            # one value index per knob, in the space's knob order
_LOCAL_STEP = 0.75                  # chance a mutated knob moves to a neighbouring value

# resolve_model is re-exported: the torch backend asks this module which model a tune would use
__all__ = ["ModelGuidedSearch", "ModelSearchConfig", "resolve_model"]


# -- the space as integer genomes ----------------------------------------------------------------
class _Encoding:
    """Knob values <-> index genomes, and each value's neighbours (for local mutation)."""

    def __init__(self, space: Space):
        self.space = space
        self.names = list(space.knobs)
        self.values = [list(space.knobs[k]) for k in self.names]
        self.sizes = np.array([len(v) for v in self.values], dtype=np.int64)
        self.index = [{v: i for i, v in enumerate(vals)} for vals in self.values]
        self.neighbours = [_neighbours(space, k) for k in self.names]
        self.mutable = [i for i, n in enumerate(self.sizes) if n > 1]

    def encode(self, s: Schedule) -> Genome | None:
        """The genome of ``s``, or None when ``s`` is not a point of this space."""
        if set(s) != set(self.names):
            return None
        try:
            g = self.genome(s)
        except (KeyError, TypeError):
            return None
        return g if self.legal(g) else None

    def genome(self, s: Schedule) -> Genome:
        """The value indices of ``s`` (KeyError for a value the space does not have)."""
        return tuple(idx[s[k]] for idx, k in zip(self.index, self.names))

    def values_of(self, g: Genome) -> dict[str, Any]:
        return {k: vals[i] for k, vals, i in zip(self.names, self.values, g)}

    def legal(self, g: Genome) -> bool:
        return bool(self.space.constraint(self.values_of(g)))

    def schedule(self, g: Genome) -> Schedule:
        return Schedule(self.values_of(g))


def _neighbours(space: Space, name: str) -> list[tuple[int, ...]]:
    """Per value index, the indices one step away (:meth:`Space.knob_kind`): the adjacent sorted
    value of a number knob; for a product knob (a tile) one component moved one step up or down its
    sorted values; every other value for a categorical knob."""
    values, kind = space.knobs[name], space.knob_kind(name)
    n = len(values)
    if kind == "number":
        order = sorted(range(n), key=lambda i: values[i])
        rank = {i: r for r, i in enumerate(order)}
        return [tuple(order[r] for r in (rank[i] - 1, rank[i] + 1) if 0 <= r < n) for i in range(n)]
    if kind == "category":
        return [tuple(j for j in range(n) if j != i) for i in range(n)]
    comps = space.knob_levels(name)
    at = {v: i for i, v in enumerate(values)}
    out = []
    for v in values:
        near = []
        for c, axis in enumerate(comps):
            r = axis.index(v[c])
            for r2 in (r - 1, r + 1):
                if 0 <= r2 < len(axis):
                    near.append(at[v[:c] + (axis[r2],) + v[c + 1:]])
        out.append(tuple(near))
    return out


# -- the strategy --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSearchConfig:
    """The ``model`` strategy's settings (module docstring).  ``ModelGuidedSearch(space, config=...)``
    takes one; ``create("model", space, population=96, ...)`` builds one from the options."""
    population: int = 512
    generations: int = 4
    mutation_prob: float = 0.75         # else crossover
    eps_greedy: float = 0.1
    uncertainty_fraction: float = 0.25
    kappa: float = 1.0                  # lower bound = mean * exp(-kappa * std_log)
    measured_ratio: float = 0.2         # at most this share of the population are measured parents
    min_train: int = 8                  # ok measurements before an unfitted model replaces the roofline
    failure_penalty: float = 2.0
    min_distance: int = 2               # knobs in which two model picks of one batch differ (if possible)
    session_correction: bool = True     # pretrained model: per-session correction, not update()

    def __post_init__(self):
        for name in ("mutation_prob", "eps_greedy", "uncertainty_fraction", "measured_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {getattr(self, name)!r}")
        if self.population < 2 or self.generations < 0 or self.min_train < 1:
            raise ValueError("need population >= 2, generations >= 0 and min_train >= 1")
        if self.kappa < 0 or self.failure_penalty < 1 or self.min_distance < 1:
            raise ValueError("need kappa >= 0, failure_penalty >= 1 and min_distance >= 1")


class _Pool:
    """Every genome scored in one ``propose``: its schedule, penalised mean and std (log)."""

    def __init__(self):
        self.row: dict[Genome, int] = {}
        self.genomes: list[Genome] = []
        self.schedules: list[Schedule] = []
        self.mean = np.empty(0)
        self.std = np.empty(0)

    def add(self, genomes, schedules, mean, std) -> None:
        for g, s in zip(genomes, schedules):
            self.row[g] = len(self.genomes)
            self.genomes.append(g)
            self.schedules.append(s)
        self.mean = np.concatenate([self.mean, mean])
        self.std = np.concatenate([self.std, std])

    def best(self, k: int, skip) -> list[int]:
        """Rows of the ``k`` lowest means whose genome ``skip`` does not hold (ties: first added)."""
        out = []
        for r in np.argsort(self.mean, kind="stable"):
            if self.genomes[r] not in skip:
                out.append(int(r))
                if len(out) == k:
                    break
        return out


@register_strategy("model")
class ModelGuidedSearch(SearchStrategy):
    """Evolutionary search scored by a cost model, updated online (module docstring)."""

    def __init__(self, space: Space, seed: int = 0, *, workload=None, target: Target | None = None,
                 model: CostModel | str | os.PathLike | None = None, config: ModelSearchConfig | None = None,
                 **context):
        if workload is None or target is None:
            raise ValueError("the 'model' strategy needs the workload and the target it tunes "
                             "(create('model', space, workload=w, target=t))")
        self.config = config or ModelSearchConfig()
        self.space, self.workload, self.target = space, workload, target
        self.rng = np.random.default_rng(seed)
        self._rnd = random.Random(seed)          # scalar draws in the evolution's inner loops
        self.enc = _Encoding(space)
        self.model, self.model_source, self.model_reason = resolve_model(model, target)
        # a model that arrives fitted is corrected per session, not retrained (module docstring)
        self._pretrained = bool(getattr(self.model, "fitted", False))
        self._correction = (ResidualCorrection(self.model) if self._pretrained and self.config.session_correction
                            else None)
        self._roofline = create_model("roofline")
        self.records: list[Record] = []             # everything observed or warm-started
        self._pending: list[Record] = []            # ok records an unfitted model has not seen
        self._seen: set[Genome] = set()             # proposed, measured or warm-started
        self._measured: list[tuple[float, Genome]] = []
        self._failed: list[Genome] = []
        self._survivors: list[Genome] = []

    @classmethod
    def from_options(cls, space: Space, seed: int = 0, *, config: ModelSearchConfig | None = None,
                     **options) -> "ModelGuidedSearch":
        """``create("model", space, ..., population=96)``: the options that name config fields
        build the config, once (on top of ``config`` when given as well)."""
        fields = {f.name for f in dataclasses.fields(ModelSearchConfig)}
        overrides = {k: options.pop(k) for k in list(options) if k in fields}
        if overrides or config is None:
            config = dataclasses.replace(config or ModelSearchConfig(), **overrides)
        return cls(space, seed, config=config, **options)

    # -- ask / tell ------------------------------------------------------------------------------
    @property
    def ranker(self) -> CostModel:
        """What scores candidates now: the model, or the roofline while the model is unfitted."""
        return self.model if getattr(self.model, "fitted", True) else self._roofline

    def propose(self, n: int) -> list[Schedule]:
        if n <= 0:
            return []
        pool = _Pool()
        seeds = self._seeds()
        self._score_into(pool, seeds + self._initial(len(seeds)))
        for _ in range(self.config.generations):
            parents = self._population(pool, seeds)
            if not parents:
                break
            children = self._children(parents, pool)
            if not children:
                break
            self._score_into(pool, children)
        self._survivors = [pool.genomes[r] for r in pool.best(self.config.population, self._seen)]
        batch = self._pick(n, pool)
        self._seen.update(batch)
        return [pool.schedules[pool.row[g]] if g in pool.row else self.enc.schedule(g) for g in batch]

    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        ok: list[Record] = []
        for s, m in zip(schedules, measurements):
            g = self.enc.encode(s)
            if g is not None:
                self._seen.add(g)
            if m is None:
                continue
            record = Record(self.workload, self.target, s, m)
            self.records.append(record)
            usable = m.ok and 0.0 < m.median_s < math.inf
            if usable:
                ok.append(record)
            if g is not None:
                (self._measured.append((m.median_s, g)) if usable else self._failed.append(g))
        self._learn(ok)

    def warm_start(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        """Prior results: never proposed again; every ok one teaches the model, those in this space
        also seed the population."""
        self.observe(schedules, measurements)

    def _learn(self, ok: list[Record]) -> None:
        if self._correction is not None:
            self._fit_correction()
            return
        if getattr(self.model, "fitted", True):
            if ok:
                self.model.update(ok)
            return
        self._pending.extend(ok)
        if len(self._pending) >= self.config.min_train:
            self.model.fit(self._pending)
            self._pending = []

    # -- the evolution ---------------------------------------------------------------------------
    def _seeds(self) -> list[Genome]:
        """The best measured schedules of this space: parents, never proposed."""
        k = int(self.config.measured_ratio * self.config.population)
        return [g for _, g in sorted(self._measured)[:k]]

    def _initial(self, n_seeds: int) -> list[Genome]:
        want = self.config.population - n_seeds
        carried = [g for g in self._survivors if g not in self._seen][: want // 2]
        return carried + self._random(want - len(carried), set(carried))

    def _population(self, pool: _Pool, seeds: list[Genome]) -> list[Genome]:
        rows = pool.best(self.config.population - len(seeds), self._seen)
        return [pool.genomes[r] for r in rows] + [g for g in seeds if g in pool.row]

    def _children(self, parents: list[Genome], pool: _Pool) -> list[Genome]:
        """Up to ``population`` new legal, unseen, unscored children of ``parents``."""
        cfg, rnd = self.config, self._rnd
        score = pool.mean[[pool.row[g] for g in parents]].tolist()

        def pick() -> Genome:                 # binary tournament on predicted latency
            i, j = rnd.randrange(len(parents)), rnd.randrange(len(parents))
            return parents[i if score[i] <= score[j] else j]

        out: dict[Genome, None] = {}
        for _ in range(3 * cfg.population):
            if len(out) >= cfg.population:
                break
            if rnd.random() < cfg.mutation_prob:
                child = self._mutate(pick())
            else:
                a, b = pick(), pick()
                child = tuple(x if rnd.random() < 0.5 else y for x, y in zip(a, b))
            if child in out or child in pool.row or child in self._seen or not self.enc.legal(child):
                continue
            out[child] = None
        return list(out)

    def _mutate(self, g: Genome) -> Genome:
        mutable, rnd = self.enc.mutable, self._rnd
        if not mutable:
            return g
        child = list(g)
        k = min(len(mutable), 1 + (rnd.random() < 0.4) + (rnd.random() < 0.1))
        for knob in rnd.sample(mutable, k):
            near = self.enc.neighbours[knob][child[knob]]
            if near and rnd.random() < _LOCAL_STEP:
                child[knob] = rnd.choice(near)
            else:
                other = rnd.randrange(int(self.enc.sizes[knob]) - 1)
                child[knob] = other + (other >= child[knob])
        return tuple(child)

    def _random(self, k: int, exclude: set[Genome]) -> list[Genome]:
        """Up to ``k`` uniform legal genomes, none seen or in ``exclude``."""
        if k <= 0:
            return []
        if self._legal is not None:
            free = [g for g in self._legal if g not in self._seen and g not in exclude]
            return [free[i] for i in self.rng.permutation(len(free))[:k]]
        out: dict[Genome, None] = {}
        for _ in range(20):
            for row in self.rng.integers(0, self.enc.sizes, size=(max(4 * k, 64), len(self.enc.sizes))):
                g = tuple(int(x) for x in row)
                if g in out or g in exclude or g in self._seen or not self.enc.legal(g):
                    continue
                out[g] = None
                if len(out) == k:
                    return list(out)
        return list(out)

    @functools.cached_property
    def _legal(self) -> list[Genome] | None:
        """The whole legal set as genomes, for a space small enough to enumerate."""
        points = self.space.legal_points()
        return None if points is None else [self.enc.genome(s) for s in points]

    def _fit_correction(self) -> None:
        """Refit the session correction on this workload's ok measurements, once there are
        ``min_train`` (module docstring, "Online learning")."""
        ok = [r for r in self.records if r.workload == self.workload and r.measurement.ok
              and 0.0 < r.measurement.median_s < math.inf]
        if len(ok) >= self.config.min_train:
            self._correction.fit(ok, self.target)

    def predict_with_uncertainty(self, schedules: Sequence[Schedule]) -> tuple[np.ndarray, np.ndarray]:
        """What the search believes now: ``(latency_s, std_log)`` of ``schedules`` of this workload
        (the ranker, times the session correction once there is one)."""
        cands = [Candidate(self.workload, s) for s in schedules]
        if self._correction is not None and self._correction.fitted:
            return self._correction.predict_with_uncertainty(cands, self.target)
        mean, std = self.ranker.predict_with_uncertainty(cands, self.target)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    def _score_into(self, pool: _Pool, genomes: list[Genome]) -> None:
        """Score ``genomes`` in one model call (failure neighbours penalised) and add them."""
        if not genomes:
            return
        schedules = [self.enc.schedule(g) for g in genomes]
        mean, std = self.predict_with_uncertainty(schedules)
        mean = mean * self._failure_factor(genomes)
        pool.add(genomes, schedules, mean, np.asarray(std, dtype=np.float64))

    def _failure_factor(self, genomes: list[Genome]) -> np.ndarray:
        if not self._failed or self.config.failure_penalty == 1.0:
            return np.ones(len(genomes))
        failed = np.asarray(self._failed[-256:], dtype=np.int64)
        G = np.asarray(genomes, dtype=np.int64)
        near = np.zeros(len(G))
        for lo in range(0, len(G), 2048):
            diff = (G[lo:lo + 2048, None, :] != failed[None, :, :]).sum(axis=2)
            near[lo:lo + 2048] = (diff <= 1).sum(axis=1)
        return self.config.failure_penalty ** near

    def _pick(self, n: int, pool: _Pool) -> list[Genome]:
        """Most by predicted latency, some by the optimistic bound, some uniform (module doc);
        model picks at least ``min_distance`` knobs apart from each other while the pool allows."""
        cfg = self.config
        n_random = int(self.rng.binomial(n, cfg.eps_greedy)) if cfg.eps_greedy > 0 else 0
        n_bound = int(round(cfg.uncertainty_fraction * (n - n_random)))
        free = np.array([g not in self._seen for g in pool.genomes], dtype=bool)
        G = np.asarray(pool.genomes, dtype=np.int64).reshape(len(pool.genomes), len(self.enc.names))
        taken: list[int] = []
        for score, quota in ((pool.mean, n - n_random - n_bound),
                             (pool.mean * np.exp(-cfg.kappa * pool.std), n - n_random)):
            order = np.argsort(score, kind="stable")
            for distance in (cfg.min_distance, 1):
                for r in order:
                    if len(taken) >= quota:
                        break
                    if free[r] and (not taken or (G[taken] != G[r]).sum(axis=1).min() >= distance):
                        taken.append(int(r))
                        free[r] = False
        picked = [pool.genomes[r] for r in taken]
        picked += self._random(n - len(picked), set(picked))
        if len(picked) < n:          # the random draw came up short: the rest by predicted latency
            picked += [pool.genomes[r] for r in np.argsort(pool.mean, kind="stable") if free[r]][: n - len(picked)]
        return picked
