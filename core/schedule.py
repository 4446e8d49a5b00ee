"""Schedules: the chosen value of each knob of a search space.

A schedule is a plain, hashable value (Triton's ``Config``, MetaSchedule's trace decisions): a
frozen mapping from knob name to an int, bool, str or tuple of ints.  What a knob means, and which
knobs an op kind reads, is documented on the op kind (``tilewise.ir.ops``).  Common knobs:

``tile``         cache tile per loop dim (0 = not tiled)
``interchange``  order of the cache-tile loops
``promote``      pack the B panel into a contiguous, aligned buffer
``reg_tile``     register tile (mr, nr)
``vectorize``    vectorize the register tile (False: scalar loops)
``unroll``       unroll factor of the innermost reduction loop
``threads``      OpenMP threads; ``parallel_dim`` which loop dim is split across them
``precision``    element type the kernel computes in (``f32``, ``bf16``, ``f16``)
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterator, Mapping

Value = int | bool | str | tuple


def _freeze(v: Any) -> Value:
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, (bool, int, str)):
        return v
    if hasattr(v, "item"):            # numpy scalars
        return _freeze(v.item())
    raise TypeError(f"schedule values are ints, bools, strings or lists of them, not {type(v).__name__}")


def _thaw(v: Value) -> Any:
    return [_thaw(x) for x in v] if isinstance(v, tuple) else v


class Schedule(Mapping[str, Value]):
    """Immutable knob -> value mapping; equality and hashing by content."""

    __slots__ = ("_items",)
    schema_version = 1

    def __init__(self, knobs: Mapping[str, Any] | None = None, **kw: Any):
        merged = dict(knobs or {}, **kw)
        object.__setattr__(self, "_items", tuple(sorted((str(k), _freeze(v)) for k, v in merged.items())))

    def __setattr__(self, name, value):
        raise AttributeError("Schedule is immutable: use replace()")

    def __getitem__(self, key: str) -> Value:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other) -> bool:
        return isinstance(other, Schedule) and self._items == other._items

    def __repr__(self) -> str:
        return f"Schedule({self.to_json()})"

    def replace(self, **changes: Any) -> "Schedule":
        return Schedule(dict(self._items, **changes))

    def to_json(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self._items}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Schedule":
        return cls(d)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def key(self) -> str:
        return hashlib.sha256(self.dumps().encode()).hexdigest()
