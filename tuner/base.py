"""Search strategies: the ask/tell contract.

A :class:`SearchStrategy` proposes schedules and is told how they measured.  It owns no device and
no clock: the tuning loop (``tilewise.tuner.tune``) measures what it proposes, so strategies are
tested on recorded measurements in milliseconds.

Contract:
- ``propose(n)`` returns at most ``n`` schedules, each legal in the strategy's space and never one
  proposed before; fewer (possibly none) when the space is exhausted.
- ``observe(schedules, measurements)`` is called once per proposed batch, in the same order;
  failed measurements (status != "ok") are results too and must not be proposed again.
- Strategies are not thread-safe; one loop drives one strategy.
- Construction: ``create(name, space, seed=0, workload=None, target=None, **options)`` calls
  ``cls.from_options(space, seed, **options)``, which is ``cls(space, seed, **options)`` unless a
  strategy with a config dataclass builds its config from the options there, once.  The tuning
  loop passes the workload and target being tuned as context; a strategy that does not need them
  accepts and ignores them (``**context``).  Unknown options raise ``TypeError``/``ValueError``.
- Built-in strategies are found by name and their module imported on first use:
  ``create("random")`` imports neither optuna nor xgboost.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from tilewise.core.schedule import Schedule
from tilewise.core.measurement import Measurement
from tilewise.core.registry import Registry

#: built-in strategies -> the module that registers them (imported when one of its names is used)
STRATEGIES = Registry("strategy", {"random": "tilewise.tuner.strategies", "grid": "tilewise.tuner.strategies",
                                   "lhs": "tilewise.tuner.strategies", "model": "tilewise.tuner.model_search",
                                   "optuna": "tilewise.tuner.optuna_search",
                                   "nsga2": "tilewise.tuner.optuna_search"})
register_strategy = STRATEGIES.register


def create(name: str, space, seed: int = 0, **kw) -> "SearchStrategy":
    """A new strategy: ``create("model", space, seed=0, workload=w, target=t)``."""
    return STRATEGIES.get(name).from_options(space, seed=seed, **kw)


def available() -> list[str]:
    return STRATEGIES.names()


class SearchStrategy(ABC):
    name = ""

    @classmethod
    def from_options(cls, space, seed: int = 0, **options) -> "SearchStrategy":
        """The strategy ``create`` builds from its keywords (module docstring, "Construction")."""
        return cls(space, seed=seed, **options)

    @abstractmethod
    def propose(self, n: int) -> list[Schedule]:
        ...

    @abstractmethod
    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        ...

    def warm_start(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        """Results measured before this run (the tuning database), given once before the first
        ``propose``.  The strategy must not propose these schedules again and may learn from them.
        Schedules outside the strategy's space (another thread cap, another precision budget) may
        be among them: they are never proposed, and learning from them is optional."""
        self.observe(schedules, measurements)
