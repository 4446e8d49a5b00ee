"""Built-in strategies: ``random`` and ``grid``."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tilewise.ir.schedule import Schedule
from tilewise.profiling.measure import Measurement
from tilewise.tuner.base import SearchStrategy, register_strategy
from tilewise.tuner.space import Space


@register_strategy("random")
class RandomSearch(SearchStrategy):
    """Uniform draws from the constrained space, without repeats."""

    def __init__(self, space: Space, seed: int = 0, max_draws: int = 200):
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.seen: set[Schedule] = set()
        self.max_draws = max_draws

    def propose(self, n: int) -> list[Schedule]:
        out: list[Schedule] = []
        draws = 0
        while len(out) < n and draws < self.max_draws * max(n, 1):
            s = self.space.sample(self.rng)
            draws += 1
            if s not in self.seen:
                self.seen.add(s)
                out.append(s)
        return out

    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        self.seen.update(schedules)


@register_strategy("grid")
class GridSearch(SearchStrategy):
    """Every legal schedule in a fixed order (for small spaces)."""

    def __init__(self, space: Space, seed: int = 0):
        self._it = iter(space)

    def propose(self, n: int) -> list[Schedule]:
        out = []
        for s in self._it:
            out.append(s)
            if len(out) == n:
                break
        return out

    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        pass
