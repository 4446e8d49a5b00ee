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
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

from tilewise.ir.schedule import Schedule
from tilewise.profiling.measure import Measurement

_STRATEGIES: dict[str, type] = {}


def register_strategy(name: str):
    def deco(cls):
        _STRATEGIES[name] = cls
        cls.name = name
        return cls
    return deco


def create(name: str, space, seed: int = 0, **kw) -> "SearchStrategy":
    if not _STRATEGIES:
        import tilewise.tuner.strategies  # noqa: F401
    try:
        return _STRATEGIES[name](space, seed=seed, **kw)
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}: available are {', '.join(sorted(_STRATEGIES))}") from None


def available() -> list[str]:
    if not _STRATEGIES:
        import tilewise.tuner.strategies  # noqa: F401
    return sorted(_STRATEGIES)


class SearchStrategy(ABC):
    name = ""

    @abstractmethod
    def propose(self, n: int) -> list[Schedule]:
        ...

    @abstractmethod
    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        ...
