"""``ir``: token statistics of the scheduled MLIR (after the transform script, before lowering).

In the spirit of the MLIR cost-model paper (ops and types as tokens of the transformed IR): the
text of :func:`tilewise.ir.compiler.transformed_ir` is tokenized op by op -- the op name
(``vector.fma``, ``scf.for``, ``memref.alloca``) and its types with the sizes collapsed
(``vector<4x16xf32>`` -> ``vector<NxNxf32>``) -- and summarized in a fixed-length row:

- ``op_<name>``: log1p count of each op of a fixed vocabulary (``op_other``: the rest);
- ``dyn_<name>``: log1p *dynamic* count of a few hot ops: each op weighted by the trip counts of
  the loops around it (``scf.for`` with constant bounds, ``scf.forall``), i.e. roughly how many
  times it runs;
- ``elt_<type>`` / ``lanes_<bucket>`` / ``vector_rank2``: log1p counts of the element types of
  the vector and memref types on op lines, of vector types by last-dim size, and of vector types
  of rank >= 2;
- ``loop_depth``, ``innermost_ops`` (static ops at the deepest loop level), ``log1p_ops``,
  ``log1p_lines``, ``transform_failed`` (1: the schedule did not apply; the rest of the row is 0);
- ``bigram_<i>``: log1p counts of consecutive op-name pairs hashed into 64 buckets and
  ``unigram_<i>``: op-with-type tokens hashed into 32 buckets (``zlib.crc32``: stable across
  runs and platforms, unlike ``hash()``).

Cost: one transform-interpreter run per candidate (~30-100 ms, the IR is not lowered or
JIT-compiled), so this extractor is for offline training on measured records, not for the
100k-candidate scoring path (use ``analytic`` there).  Rows are memoized in a process-wide LRU
keyed by :meth:`Candidate.key` (the workload key and the schedule key); the transform is
injectable (``IRTokenFeatures(transform=...)``) for tests.
"""
from __future__ import annotations

import math
import re
import threading
import zlib
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

from tilewise.features.base import FeatureExtractor, register_extractor
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.core.target import Target

#: bumped when the tokenization changes (part of the cache key)
VERSION = 1
VOCAB = (
    "scf.for", "scf.forall", "scf.parallel", "scf.if", "scf.yield",
    "vector.fma", "vector.contract", "vector.outerproduct", "vector.load", "vector.store",
    "vector.maskedload", "vector.maskedstore", "vector.transfer_read", "vector.transfer_write",
    "vector.broadcast", "vector.extract", "vector.insert", "vector.shape_cast", "vector.reduction",
    "vector.multi_reduction", "vector.create_mask", "vector.constant_mask", "vector.splat",
    "memref.alloca", "memref.alloc", "memref.dealloc", "memref.subview", "memref.view", "memref.copy",
    "memref.load", "memref.store", "arith.constant", "arith.addf", "arith.mulf", "arith.subf",
    "arith.divf", "arith.maximumf", "arith.minimumf", "arith.addi", "arith.muli", "arith.extf",
    "arith.truncf", "arith.extsi", "arith.select", "arith.cmpi", "arith.cmpf", "arith.index_cast",
    "affine.apply", "affine.min", "affine.max", "math.fma", "math.floor", "linalg.generic",
    "linalg.fill", "linalg.copy", "linalg.matmul", "linalg.batch_matmul", "linalg.conv_2d_nhwc_hwcf",
    "ub.poison",
)
DYNAMIC = ("vector.fma", "vector.load", "vector.store", "vector.broadcast", "vector.extract",
           "vector.insert", "vector.reduction", "vector.transfer_read", "vector.transfer_write",
           "memref.load", "memref.store", "math.fma", "arith.addf", "arith.mulf", "affine.apply")
ELEMENT_TYPES = ("f32", "bf16", "f16", "i8", "i32", "i1", "index")
LANE_BUCKETS = ((1, 1), (2, 4), (5, 8), (9, 16), (17, 32), (33, 1 << 30))
BIGRAM_BUCKETS = 64
UNIGRAM_BUCKETS = 32
CACHE_SIZE = 16384

_OP_RE = re.compile(r'^\s*(?:%[^=]*=\s*)?"?([a-z_]\w*\.[\w.]+|return)\b')
_CONST_RE = re.compile(r"^\s*(%[\w]+)\s*=\s*arith\.constant\s+(-?\d+)\s*:\s*index")
_FOR_RE = re.compile(r"scf\.for\s+%\w+\s*=\s*(%?[\w]+)\s+to\s+(%?[\w]+)\s+step\s+(%?[\w]+)")
_FORALL_RE = re.compile(r"scf\.forall\s*\([^)]*\)\s*in\s*\(([^)]*)\)")
_TYPE_RE = re.compile(r"\b(vector|memref)<([^<>]*(?:<[^<>]*(?:<[^<>]*>)?[^<>]*>)?[^<>]*)>")
_SHAPE_RE = re.compile(r"^((?:[\d?]+x)*)(\w+)")

_VOCAB_INDEX = {op: i for i, op in enumerate(VOCAB)}
_DYN_INDEX = {op: i for i, op in enumerate(DYNAMIC)}
_ELT_INDEX = {t: i for i, t in enumerate(ELEMENT_TYPES)}


def _names() -> list[str]:
    return ([f"op_{op.replace('.', '_')}" for op in VOCAB] + ["op_other"]
            + [f"dyn_{op.replace('.', '_')}" for op in DYNAMIC] + ["dyn_all"]
            + [f"elt_{t}" for t in ELEMENT_TYPES]
            + [f"lanes_{lo}_{hi}" if hi < 1 << 30 else f"lanes_{lo}_up" for lo, hi in LANE_BUCKETS]
            + ["vector_rank2", "loop_depth", "innermost_ops", "log1p_ops", "log1p_lines", "transform_failed"]
            + [f"bigram_{i}" for i in range(BIGRAM_BUCKETS)]
            + [f"unigram_{i}" for i in range(UNIGRAM_BUCKETS)])


NAMES = _names()
_N_VOCAB = len(VOCAB) + 1
_DYN0 = _N_VOCAB
_ELT0 = _DYN0 + len(DYNAMIC) + 1
_LANE0 = _ELT0 + len(ELEMENT_TYPES)
_MISC0 = _LANE0 + len(LANE_BUCKETS)
_BI0 = _MISC0 + 6
_UNI0 = _BI0 + BIGRAM_BUCKETS


def _bucket(token: str, n: int) -> int:
    return zlib.crc32(token.encode()) % n


def _collapse(kind: str, body: str) -> tuple[str, str, int, int]:
    """``vector``/``memref`` type body -> (collapsed token, element type, last-dim size, rank)."""
    m = _SHAPE_RE.match(body.replace(" ", ""))
    if not m:
        return f"{kind}<?>", "", 0, 0
    dims = [d for d in m.group(1).split("x") if d]
    elt = m.group(2)
    layout = ",strided" if "strided" in body else ""
    last = int(dims[-1]) if dims and dims[-1].isdigit() else 0
    return f"{kind}<{'N' * len(dims)}{elt}{layout}>", elt, last, len(dims)


def _trips(lo: str, hi: str, step: str, consts: dict[str, int]) -> float:
    def value(tok: str) -> int | None:
        return consts.get(tok) if tok.startswith("%") else (int(tok) if tok.lstrip("-").isdigit() else None)
    a, b, s = value(lo), value(hi), value(step)
    if a is None or b is None or s is None or s <= 0:
        return 1.0      # a dynamic bound (a peeled remainder): counted once
    return float(max(0, -(-(b - a) // s)))


def ir_features(text: str) -> np.ndarray:
    """The feature row (float64, ``len(NAMES)``) of one scheduled module's text."""
    row = np.zeros(len(NAMES))
    consts: dict[str, int] = {}
    stack: list[tuple[float, bool]] = [(1.0, False)]      # (trip weight, is a loop) per open region
    weight = 1.0
    prev = "<s>"
    per_depth: dict[int, int] = {}
    n_ops = 0
    lines = text.splitlines()
    for raw in lines:
        line = raw.strip()
        while line.startswith("}"):
            if len(stack) > 1:
                stack.pop()
            line = line[1:].lstrip()
        weight = math.prod(w for w, _ in stack)
        m = _OP_RE.match(line)
        loop_trips = 1.0
        if m:
            op = "func.return" if m.group(1) == "return" else m.group(1)
            n_ops += 1
            c = _CONST_RE.match(line)
            if c:
                consts[c.group(1)] = int(c.group(2))
            if op == "scf.for":
                f = _FOR_RE.search(line)
                loop_trips = _trips(*f.groups(), consts) if f else 1.0
            elif op == "scf.forall":
                f = _FORALL_RE.search(line)
                if f:
                    loop_trips = float(math.prod(int(x) for x in re.findall(r"\d+", f.group(1))) or 1)
            row[_VOCAB_INDEX.get(op, len(VOCAB))] += 1
            if op in _DYN_INDEX:
                row[_DYN0 + _DYN_INDEX[op]] += weight
            row[_DYN0 + len(DYNAMIC)] += weight
            depth = sum(1 for _, is_loop in stack if is_loop)
            per_depth[depth] = per_depth.get(depth, 0) + 1
            type_token = ""
            for kind, body in _TYPE_RE.findall(line):
                token, elt, last, rank = _collapse(kind, body)
                type_token = token
                if elt in _ELT_INDEX:
                    row[_ELT0 + _ELT_INDEX[elt]] += 1
                if kind == "vector":
                    row[_MISC0] += rank >= 2
                    for j, (lo, hi) in enumerate(LANE_BUCKETS):
                        if lo <= last <= hi:
                            row[_LANE0 + j] += 1
            row[_BI0 + _bucket(f"{prev}|{op}", BIGRAM_BUCKETS)] += 1
            row[_UNI0 + _bucket(f"{op}:{type_token}", UNIGRAM_BUCKETS)] += 1
            prev = op
        opens = line.count("{") - line.count("}")
        for k in range(max(0, opens)):
            is_loop = k == 0 and m is not None and m.group(1) in ("scf.for", "scf.forall", "scf.parallel")
            stack.append((loop_trips if is_loop else 1.0, is_loop))
        for _ in range(max(0, -opens)):
            if len(stack) > 1:
                stack.pop()
    max_depth = max(per_depth) if per_depth else 0
    row[:_MISC0 + 1] = np.log1p(row[:_MISC0 + 1])
    row[_MISC0 + 1] = max_depth
    row[_MISC0 + 2] = math.log1p(per_depth.get(max_depth, 0))
    row[_MISC0 + 3] = math.log1p(n_ops)
    row[_MISC0 + 4] = math.log1p(len(lines))
    row[_BI0:] = np.log1p(row[_BI0:])
    return row


def _default_transform(w: Workload, s: Schedule) -> str:
    from tilewise.ir.compiler import transformed_ir     # the MLIR bindings: only when asked
    return transformed_ir(w, s)


def _failure_row() -> np.ndarray:
    row = np.zeros(len(NAMES))
    row[_MISC0 + 5] = 1.0
    return row


_CACHE: "OrderedDict[str, np.ndarray]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


@register_extractor("ir")
class IRTokenFeatures(FeatureExtractor):
    """Token statistics of the transformed MLIR; see the module docstring.  Costs one transform
    (~50 ms) per candidate not already in the process-wide cache: for offline training, not for
    scoring large candidate batches.  A schedule that fails to apply is data: its row has
    ``transform_failed`` = 1 and zeros elsewhere."""

    def __init__(self, transform: Callable[[Workload, Schedule], str] | None = None):
        self.transform = transform or _default_transform
        self._shared_cache = transform is None     # an injected transform gets its own cache
        self._own: "OrderedDict[str, np.ndarray]" = OrderedDict()

    def names(self) -> list[str]:
        return list(NAMES)

    def extract(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        out = np.empty((len(candidates), len(NAMES)), dtype=np.float32)
        for i, c in enumerate(candidates):
            out[i] = self._row(c)
        return out

    def _row(self, c: Candidate) -> np.ndarray:
        key = f"v{VERSION}:{c.key()}"
        cache = _CACHE if self._shared_cache else self._own
        with _CACHE_LOCK:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
        try:
            row = ir_features(self.transform(c.workload, c.schedule))
        except (ValueError, RuntimeError):      # ScheduleError / CompileError: the schedule is data
            row = _failure_row()
        with _CACHE_LOCK:
            cache[key] = row
            while len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
        return row
