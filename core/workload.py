"""Workloads: one op with its shapes and element type.

Canonical string form (the CLI's): ``OP:SHAPES:DTYPE[:ATTRS]``

* ``SHAPES``: one or more ``x``-separated shapes, comma-separated (``1x56x56x64,3x3x64x64``);
* ``DTYPE``: ``f32 | bf16 | f16 | i8`` (what the op's inputs hold; contractions accumulate in f32,
  or i32 for i8);
* ``ATTRS``: optional ``name=int`` pairs, comma-separated (``stride=2,pad=1``); an op kind may
  give an attribute a one-letter short form written ``<letter><int>`` (its ``short_attrs``:
  ``matmul:1x4096x4096:w4a32:g128`` is ``group=128``), which is also how it prints.

An op kind may hand some dtypes to a variant of itself (``OpKind.variant``): ``matmul`` with a
weight-only dtype (``w8a32``, ``w4a32``, ...) is computed by the weight-only quantized matmul.

What each op kind's shapes mean is documented on the op kind (``tilewise.ir.ops``); for example
``matmul:MxNxK``, ``batch_matmul:BxMxNxK``, ``conv2d_nhwc:NxHxWxC,KHxKWxCxF``.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
import functools
from typing import Any, ClassVar

from tilewise.core.registry import Registry


class WorkloadError(ValueError):
    """A workload string or description that cannot name a real workload."""


#: op kinds by name (``tilewise.ir.ops``: what an op computes, its loops, knobs and MLIR); the
#: built-ins are imported on the first lookup
OP_KINDS = Registry("op", "tilewise.ir.ops", instantiate=True)


def get_op(name: str):
    """The op kind registered as ``name`` (WorkloadError naming the supported ops otherwise)."""
    kind = OP_KINDS.find(name)
    if kind is None:
        raise WorkloadError(f"unknown op {name!r}: supported ops are {', '.join(OP_KINDS.names())}")
    return kind


_DIMS_RE = re.compile(r"^[0-9]+(x[0-9]+)*$")
_ATTR_RE = re.compile(r"^([a-z_]+)=(-?[0-9]+)$")
_SHORT_ATTR_RE = re.compile(r"^([a-z])([0-9]+)$")


@dataclass(frozen=True)
class Workload:
    op: str
    shapes: tuple[tuple[int, ...], ...]
    dtype: str
    attrs: tuple[tuple[str, int], ...] = ()
    schema_version: ClassVar[int] = 1
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "shapes", tuple(tuple(int(d) for d in s) for s in self.shapes))
        object.__setattr__(self, "attrs", tuple(sorted((str(k), int(v)) for k, v in dict(self.attrs).items())))
        base = get_op(self.op)   # raises WorkloadError for an unknown op
        kind = base.variant(self.dtype)
        if self.dtype not in kind.dtypes:
            raise WorkloadError(
                f"{self.op} does not support dtype {self.dtype!r}: use one of {', '.join(base.supported_dtypes())}")
        kind.check(self)

    # -- forms -----------------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> "Workload":
        parts = text.strip().split(":")
        if len(parts) not in (3, 4) or not all(parts[:3]):
            raise WorkloadError(
                f"malformed workload {text!r}: expected OP:SHAPES:DTYPE[:ATTRS], "
                "e.g. matmul:512x512x512:f32")
        op, shapes_text, dtype_name = parts[:3]
        shapes = []
        for s in shapes_text.split(","):
            if not _DIMS_RE.match(s):
                raise WorkloadError(
                    f"malformed shape {s!r} in {text!r}: dimensions are positive integers joined by 'x'")
            shapes.append(tuple(int(d) for d in s.split("x")))
        attrs = {}
        if len(parts) == 4 and parts[3]:
            short = get_op(op).variant(dtype_name).short_attrs
            for a in parts[3].split(","):
                m, s = _ATTR_RE.match(a), _SHORT_ATTR_RE.match(a)
                if m:
                    attrs[m.group(1)] = int(m.group(2))
                elif s and s.group(1) in short:
                    attrs[short[s.group(1)]] = int(s.group(2))
                else:
                    forms = "name=integer" + "".join(f" or {k}<integer> ({v})" for k, v in short.items())
                    raise WorkloadError(f"malformed attribute {a!r} in {text!r}: expected {forms}")
        return cls(op, tuple(shapes), dtype_name, tuple(attrs.items()))

    def __str__(self) -> str:
        s = f"{self.op}:{','.join('x'.join(map(str, sh)) for sh in self.shapes)}:{self.dtype}"
        if self.attrs:
            short = {v: k for k, v in self.kind.short_attrs.items()}
            s += ":" + ",".join(f"{short[k]}{v}" if k in short else f"{k}={v}" for k, v in self.attrs)
        return s

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": self.schema_version, "op": self.op,
                "shapes": [list(s) for s in self.shapes], "dtype": self.dtype,
                "attrs": dict(self.attrs)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Workload":
        if d.get("schema_version") != cls.schema_version:
            raise WorkloadError(f"workload schema {d.get('schema_version')} is not supported "
                                f"(this tilewise reads {cls.schema_version})")
        return cls(d["op"], tuple(tuple(s) for s in d["shapes"]), d["dtype"], tuple(d["attrs"].items()))

    # -- derived ---------------------------------------------------------------------------------
    @property
    def kind(self):
        return get_op(self.op).variant(self.dtype)

    def attr(self, name: str, default: int) -> int:
        return dict(self.attrs).get(name, default)

    @property
    def loop_dims(self) -> dict[str, int]:
        """Iteration domain of the op, by dimension name (``{"m": 512, "n": 512, "k": 512}``)."""
        return self.kind.loop_dims(self)

    @property
    def flops(self) -> float:
        return self.kind.flops(self)

    def mlir(self, precision: str | None = None) -> str:
        """The canonical printed MLIR of the untransformed kernel (linalg on tensors)."""
        key = precision or self.dtype
        if key not in self._cache:
            self._cache[key] = self.kind.mlir(self, key)
        return self._cache[key]

    def key(self) -> str:
        """sha256 of the canonical printed MLIR: equal iff the computation is the same."""
        return hashlib.sha256(self.mlir().encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def workload_key(w: Workload) -> str:
    """``w.key()``, memoized by value: it prints MLIR (~10 ms), and stores and runners key thousands
    of records and candidates."""
    return w.key()


def parse_workload(text: str) -> Workload:
    return Workload.parse(text)


def dumps(w: Workload) -> str:
    return json.dumps(w.to_json(), sort_keys=True)
