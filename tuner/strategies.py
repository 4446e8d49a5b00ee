"""Built-in strategies: ``random``, ``grid`` and ``lhs`` (Latin hypercube, for datasets)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tilewise.core.schedule import Schedule
from tilewise.core.measurement import Measurement
from tilewise.tuner.base import SearchStrategy, register_strategy
from tilewise.tuner.space import Space


@register_strategy("random")
class RandomSearch(SearchStrategy):
    """Uniform draws from the constrained space, without repeats."""

    def __init__(self, space: Space, seed: int = 0, max_draws: int = 200, **context):
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

    def __init__(self, space: Space, seed: int = 0, **context):
        self._it = iter(space)
        self.seen: set[Schedule] = set()

    def propose(self, n: int) -> list[Schedule]:
        out = []
        for s in self._it:
            if s in self.seen:
                continue
            self.seen.add(s)
            out.append(s)
            if len(out) == n:
                break
        return out

    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        self.seen.update(schedules)


@register_strategy("lhs")
class LatinHypercube(SearchStrategy):
    """Latin-hypercube draws over the knobs: in every block of ``n`` proposals each knob's values
    appear equally often (up to rounding), so a small dataset still covers every value of every
    knob.  A combination the space's constraint rejects is repaired by re-drawing its knobs one at
    a time (:meth:`Space.repair`); failing that, by a uniform legal draw."""

    def __init__(self, space: Space, seed: int = 0, block: int = 64, **context):
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.block = block
        self.seen: set[Schedule] = set()
        self._queue: list[dict] = []

    def _fill(self) -> None:
        n = self.block
        columns = {}
        for name, values in self.space.knobs.items():
            reps = -(-n // len(values))
            idx = np.tile(np.arange(len(values)), reps)[:n]
            columns[name] = [values[i] for i in self.rng.permutation(idx)]
        self._queue = [{k: columns[k][i] for k in columns} for i in range(n)]

    def propose(self, n: int) -> list[Schedule]:
        out: list[Schedule] = []
        misses = 0
        while len(out) < n and misses < 100 * max(n, 1):
            if not self._queue:
                self._fill()
            s = self.space.repair(self._queue.pop(), self.rng) or self.space.sample(self.rng)
            if s in self.seen:
                misses += 1
                continue
            self.seen.add(s)
            out.append(s)
        return out

    def observe(self, schedules: Sequence[Schedule], measurements: Sequence[Measurement]) -> None:
        self.seen.update(schedules)
