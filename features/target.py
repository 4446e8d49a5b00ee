"""``target``: the hardware descriptor as features, so one model can serve several targets.

The same row for every candidate of a batch (a batch is measured on one target).  Columns:
``cores``, ``simd_bits``, ``simd_lanes`` (f32), ``vector_registers``, ``log2_{L1d,L2,L3}_bytes``
(0 where the target has no such cache: a CUDA target reports L2 only), ISA flags and a one-hot
of the target kind.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tilewise.features.base import FeatureExtractor, register_extractor
from tilewise.core.candidate import Candidate
from tilewise.core.target import Target

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
#: the one-hot columns, a fixed list (not the tuner's registered kinds, which features cannot
#: import): a trained model's columns must not move when a kind is registered
KINDS = ("cpu", "cuda")
CACHES = ("L1d", "L2", "L3")


def target_row(target: Target) -> list[float]:
    caches = target.caches
    isa = set(target.isa)
    return ([float(target.cores), float(target.simd_bits), float(target.simd_lanes()),
             float(target.vector_registers)]
            + [math.log2(caches[c]) if caches.get(c, 0) > 0 else 0.0 for c in CACHES]
            + [float(f in isa) for f in ISA_FLAGS]
            + [float(target.kind == k) for k in KINDS])


@register_extractor("target")
class TargetFeatures(FeatureExtractor):
    """The target's descriptor, repeated on every row."""

    def names(self) -> list[str]:
        return (["cores", "simd_bits", "simd_lanes", "vector_registers"]
                + [f"log2_{c}_bytes" for c in CACHES]
                + [f"isa_{f}" for f in ISA_FLAGS]
                + [f"kind_{k}" for k in KINDS])

    def extract(self, candidates: Sequence[Candidate], target: Target) -> np.ndarray:
        row = np.asarray(target_row(target), dtype=np.float32)
        return np.repeat(row[None, :], len(candidates), axis=0)
