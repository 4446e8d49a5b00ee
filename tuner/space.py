"""Search spaces: knobs with their legal values, derived from the workload and the target.

A :class:`Space` is a product of per-knob value lists cut by a joint constraint (register budget,
register tile within the cache tile, ...), so a strategy that draws from it never proposes a
schedule the op kind would reject.  Per-op space builders register by op name::

    @register_space("matmul", "batch_matmul")
    def contraction_space(w, target, options: SpaceOptions) -> Space: ...
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np

from tilewise.core.registry import Registry
from tilewise.core.schedule import Schedule

if TYPE_CHECKING:
    from tilewise.core.workload import Workload
    from tilewise.core.target import Target

Constraint = Callable[[Mapping[str, Any]], bool]
#: spaces with at most this many raw combinations are small enough to enumerate (``legal_points``)
MAX_ENUMERATED = 20_000
#: knob re-draws ``Space.repair`` tries before it gives up
REPAIR_STEPS = 50


@dataclass
class Space:
    knobs: dict[str, list[Any]]
    constraint: Constraint = field(default=lambda s: True)

    def __post_init__(self):
        empty = [k for k, v in self.knobs.items() if not v]
        if empty:
            raise ValueError(f"knob {empty[0]!r} has no legal value")

    @property
    def raw_size(self) -> int:
        return math.prod(len(v) for v in self.knobs.values())

    def is_legal(self, values: Mapping[str, Any]) -> bool:
        return all(values.get(k) in v for k, v in self.knobs.items()) and self.constraint(values)

    def sample(self, rng: np.random.Generator, max_tries: int = 10_000) -> Schedule:
        """One legal schedule, uniform over the constrained product (rejection sampling)."""
        names = list(self.knobs)
        for _ in range(max_tries):
            values = {k: self.knobs[k][int(rng.integers(len(self.knobs[k])))] for k in names}
            if self.constraint(values):
                return Schedule(values)
        raise RuntimeError("could not draw a legal schedule: the space's constraint rejects almost everything")

    def __iter__(self) -> Iterator[Schedule]:
        """Every legal schedule (for grid search over small spaces)."""
        names = list(self.knobs)
        for combo in itertools.product(*(self.knobs[k] for k in names)):
            values = dict(zip(names, combo))
            if self.constraint(values):
                yield Schedule(values)

    def legal_points(self) -> list[Schedule] | None:
        """Every legal schedule, in iteration order, when the space is small enough to enumerate
        (``raw_size <= MAX_ENUMERATED``: then a strategy knows exactly when it is exhausted); None
        for a larger space, which is only ever sampled."""
        return list(self) if self.raw_size <= MAX_ENUMERATED else None

    def repair(self, values: Mapping[str, Any], rng: np.random.Generator,
               accept: Callable[[Schedule], bool] = lambda s: True, steps: int = REPAIR_STEPS) -> Schedule | None:
        """``values`` made legal by a local move: ``values`` itself when it is legal and ``accept``-ed,
        else its knobs re-drawn one at a time (a uniform knob, then a uniform value of it; up to
        ``steps`` draws) until the schedule is legal and ``accept``-ed.  None if no draw was."""
        s = Schedule(values)
        if self.is_legal(values) and accept(s):
            return s
        names = list(self.knobs)
        for _ in range(steps):
            k = names[int(rng.integers(len(names)))]
            opts = self.knobs[k]
            values = {**values, k: opts[int(rng.integers(len(opts)))]}
            if self.is_legal(values):
                s = Schedule(values)
                if accept(s):
                    return s
        return None

    def knob_kind(self, name: str) -> str:
        """How a knob's values are structured, for strategies that move along them:

        - ``"number"``: every value an int or float (not a bool): ``unroll``, ``threads``;
        - ``"product"``: equal-length tuples of numbers forming the full product of their components'
          values: ``tile=(mc, nc, kc)``, ``reg_tile=(mr, nr)`` -- each component a size with an order;
        - ``"category"``: anything else (bools, strings, permutations such as ``interchange``)."""
        values = self.knobs[name]
        if all(_is_number(v) for v in values):
            return "number"
        width = len(values[0]) if isinstance(values[0], tuple) else 0
        if width and all(isinstance(v, tuple) and len(v) == width and all(_is_number(x) for x in v)
                         for v in values):
            if len(set(values)) == math.prod(len(c) for c in self.knob_levels(name)):
                return "product"
        return "category"

    def knob_levels(self, name: str) -> list[list]:
        """The sorted distinct values of a ``"number"`` knob (one list), or of each component of a
        tuple knob (one list per component; meaningful for a ``"product"`` knob)."""
        values = self.knobs[name]
        if not isinstance(values[0], tuple):
            return [sorted(set(values))]
        return [sorted({v[j] for v in values}) for j in range(len(values[0]))]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class SpaceOptions:
    """What the user allows: a thread cap, and the precisions an error budget admits (the
    workload's own dtype is always in)."""
    max_threads: int = 1
    precisions: tuple[str, ...] = ()


SpaceBuilder = Callable[["Workload", "Target", SpaceOptions], Space]
#: space builders by op name (``@register_space("matmul", "batch_matmul")``): cpu targets'
SPACES = Registry("search space", "tilewise.tuner.spaces", name_attr=None)
#: spaces of GPU targets (the cuda target kind's): Triton kernels, other knobs
GPU_SPACES = Registry("GPU search space", "tilewise.tuner.spaces", name_attr=None)

register_space = SPACES.register
register_gpu_space = GPU_SPACES.register


def space_for(w: "Workload", target: "Target", options: SpaceOptions | None = None) -> Space:
    """The search space of ``w`` on ``target`` within ``options`` (from the spaces of the target's
    kind: :mod:`tilewise.tuner.targets`)."""
    from tilewise.tuner.targets import target_kind      # it reads this module's registries
    spaces = target_kind(target).spaces
    builder = spaces.find(w.op)
    if builder is None:
        raise ValueError(f"no {spaces.kind} for op {w.op!r}")
    return builder(w, target, options or SpaceOptions())


def precisions(w: "Workload", options: SpaceOptions) -> list[str]:
    """The workload's dtype, then every lower precision the op kind offers and the user allows."""
    return [w.dtype] + [p for p in w.kind.precisions_for(w) if p in options.precisions]


def divisors_up_to(n: int, cap: int, include_zero: bool = False) -> list[int]:
    """Tile-size candidates for a dim of size ``n``: powers of two and divisors of n up to cap."""
    vals = {d for d in range(1, min(n, cap) + 1) if n % d == 0 and (d & (d - 1) == 0 or d % 8 == 0)}
    vals |= {1 << i for i in range(0, 12) if (1 << i) <= min(n, cap)}
    out = sorted(vals)
    return ([0] if include_zero else []) + out


def thread_counts(max_threads: int) -> list[int]:
    return sorted({t for t in (1, 2, 4, 8, 16, 32, 64) if t <= max_threads} | {max_threads})
