"""Synthetic records and a stand-in feature extractor: the cost-model tests never compile or time.

Latencies follow a hidden formula of the knobs the ``toy_test`` extractor exposes (flops, bytes,
tile sizes, vectorize, threads) times a little seeded noise, so a model that learns anything
beats chance on held-out workloads, and every test runs in milliseconds to seconds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tilewise.core.record import Record
from tilewise.features import base as features_base
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.measurement import Measurement
from tilewise.core.target import Target

TOY = "toy_test"
TOY_BOUND = "toy_bound_test"
TARGET = Target(kind="cpu", name="Test CPU @ 3.00GHz", arch="x86_64", isa=("avx", "avx2", "fma"), cores=2,
                simd_bits=256, cache_bytes=(("L1d", 32768), ("L2", 1048576), ("L3", 33554432)),
                versions=(("tilewise", "0.1.0"), ("torch-mlir", "20261001")))
OTHER_TARGET = Target(kind="cpu", name="Other CPU @ 2.00GHz", arch="x86_64", isa=("avx", "avx2", "fma"), cores=4,
                      simd_bits=256, cache_bytes=(("L1d", 32768), ("L2", 524288), ("L3", 16777216)),
                      versions=(("tilewise", "0.1.0"), ("torch-mlir", "20261001")))
MATMULS = ["matmul:64x64x64:f32", "matmul:128x128x128:f32", "matmul:256x64x128:f32", "matmul:96x200x64:f32",
           "matmul:128x256x64:f32", "matmul:32x512x256:f32", "matmul:200x96x128:f32", "matmul:160x160x160:f32"]
ELEMENTWISE = ["relu:64x512:f32", "relu:256x1024:f32", "add:128x768:f32", "add:512x256:f32"]
TILES = (8, 16, 32, 64)


def _tile_efficiency(tile) -> float:
    return 1.0 / (1.0 + 0.5 * abs(math.log2(tile[0] / 32)) + 0.3 * abs(math.log2(tile[1] / 16))
                  + 0.2 * abs(math.log2(tile[2] / 32)))


def toy_latency(w: Workload, s: Schedule) -> float:
    lanes = 8 if s["vectorize"] else 1
    compute = w.flops / (2e9 * lanes * s["threads"] * _tile_efficiency(s["tile"]))
    memory = w.kind.bytes_moved(w) / 2e10
    return max(compute, memory) + 2e-6


class ToyExtractor(features_base.FeatureExtractor):
    """Seven columns straight from the knobs and the op's sizes."""
    name = TOY

    def names(self):
        return ["log2_flops", "log2_bytes", "threads", "vectorize", "tile0", "tile1", "tile2"]

    def extract(self, candidates, target):
        rows = []
        for c in candidates:
            w, s = c.workload, c.schedule
            t = list(s.get("tile", (0, 0, 0)))
            rows.append([math.log2(w.flops), math.log2(w.kind.bytes_moved(w)), s.get("threads", 1),
                         float(s.get("vectorize", True)), *t])
        return np.asarray(rows, dtype=np.float32).reshape(len(candidates), 7)


def synthetic_records(workloads=MATMULS + ELEMENTWISE, per_workload: int = 16, target: Target = TARGET,
                      seed: int = 0, failed_every: int = 0) -> list[Record]:
    """``per_workload`` schedules of each workload; every ``failed_every``-th is a compile error."""
    rng = np.random.default_rng(seed)
    out = []
    for w_text in workloads:
        w = Workload.parse(w_text)
        for j in range(per_workload):
            s = Schedule(tile=[int(rng.choice(TILES)) for _ in range(3)], vectorize=bool(rng.random() < 0.7),
                         threads=int(rng.integers(1, 3)), unroll=j)   # unroll=j keeps schedules distinct
            i = len(out)
            if failed_every and i % failed_every == failed_every - 1:
                m = Measurement("compile_error", "synthetic failure")
            else:
                t = toy_latency(w, s) * float(np.exp(rng.normal(0.0, 0.05)))
                m = Measurement("ok", "", (t * 0.99, t, t * 1.02), 1e-7, 0.1)
            out.append(Record(w, target, s, m, 1767225600.0 + i))
    return out


@pytest.fixture(scope="session")
def records():
    return synthetic_records(failed_every=10)


class ToyBoundExtractor(ToyExtractor):
    """The toy columns plus ``log10_bound_s``: log10 of the noise-free latency formula."""
    name = TOY_BOUND

    def names(self):
        return super().names() + ["log10_bound_s"]

    def extract(self, candidates, target):
        bound = [[math.log10(toy_latency(c.workload, c.schedule))] for c in candidates]
        return np.concatenate([super().extract(candidates, target), np.asarray(bound, np.float32).reshape(-1, 1)],
                              axis=1)


@pytest.fixture(scope="package", autouse=True)
def toy_extractors():
    """``features.create("toy_test")`` works while this package's tests run, and only then."""
    toys = {TOY: ToyExtractor, TOY_BOUND: ToyBoundExtractor}
    for name, cls in toys.items():
        features_base.register_extractor(name)(cls)
    yield
    for name in toys:
        features_base.EXTRACTORS.unregister(name)
