"""A record store for the report tests, built without compiling anything: schedules sampled from
the real search spaces, latencies a deterministic function of the schedule, two tuning runs with
their A/B timings, records without a run log, a precision search, and a second (foreign) target."""
from __future__ import annotations

import hashlib

import numpy as np

from tilewise.core.record import Record
from tilewise.datasets.runs import RunTiming, TrialEntry, TuningRun
from tilewise.datasets.sqlite_store import SQLiteStore
from tilewise.core.workload import Workload
from tilewise.core.measurement import Measurement
from tilewise.frontends.model_trace import KernelTrace, ModelTrace
from tilewise.frontends.report.roofline import Roofline, save
from tilewise.core.target import Target
from tilewise.tuner.space import SpaceOptions, space_for

T0 = 1767225600.0
TUNED = "matmul:256x256x256:f32"
COLLECTED = "relu:512x1024:f32"
PRECISION = "matmul:128x256x128:f32"
FOREIGN = Target(kind="cpu", name="Other Test CPU", arch="x86_64", isa=("avx", "avx2", "fma"), cores=4,
                 simd_bits=256, cache_bytes=(("L1d", 32768), ("L2", 1048576), ("L3", 33554432)),
                 versions=(("tilewise", "0.1.0"), ("torch-mlir", "20261001")))


def latency_s(w: Workload, schedule, scale: float = 1.0) -> float:
    """Deterministic, schedule-dependent: 40..100% of 2x the 100-GFLOP/s time, bf16 faster."""
    h = int(hashlib.sha256(schedule.dumps().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    fast = 0.6 if schedule.get("precision") == "bf16" else 1.0
    return scale * fast * (0.4 + 0.6 * h) * 2 * w.flops / 100e9


def _measure(w, s, status="ok", scale=1.0) -> Measurement:
    if status != "ok":
        return Measurement(status, f"{status} (test)")
    t = latency_s(w, s, scale)
    err = {"bf16": 3e-3, "f16": 4e-4}.get(s.get("precision"), 2e-7)
    return Measurement("ok", "", tuple(t * (1 + 0.01 * i) for i in range(5)), err, 0.2)


def _samples(w: Workload, target: Target, n: int, seed: int, precisions=()) -> list:
    space = space_for(w, target, SpaceOptions(1, precisions))
    rng = np.random.default_rng(seed)
    out: list = []
    while len(out) < n:
        s = space.sample(rng)
        if s not in out:
            out.append(s)
    return out


def _run(w, target, strategy, schedules, measurements, started, prior=0) -> TuningRun:
    best_i = min((i for i, m in enumerate(measurements) if m.ok), key=lambda i: measurements[i].median_s)
    best_t = measurements[best_i].median_s
    default = w.kind.default_schedule(w, target)
    return TuningRun(
        workload=w, target=target, strategy=strategy, started=started, finished=started + 30, searched=True,
        config={"trials": len(schedules), "max_threads": 1, "max_rel_error": None, "objectives": ["latency"],
                "seed": 0, "prior_records": prior},
        trials=tuple(TrialEntry(s.key(), m.status, m.median_s if m.times_s else None, m.rel_error,
                                s.get("precision")) for s, m in zip(schedules, measurements)),
        best=RunTiming("best", (best_t,) * 5, schedules[best_i].to_json(), 1e-7),
        default=RunTiming("default", (best_t * 1.8,) * 5, default.to_json(), 1e-7),
        reference=RunTiming("numpy", (best_t * 1.25,) * 5, None, None))


def build_store(path, target: Target) -> SQLiteStore:
    store = SQLiteStore(path)
    w = Workload.parse(TUNED)
    ss = _samples(w, target, 24, seed=1)
    for k, (strategy, part, start) in enumerate((("model", ss[:12], T0), ("random", ss[12:], T0 + 100))):
        ms = [_measure(w, s, "compile_error" if i == 3 else "ok") for i, s in enumerate(part)]
        store.append([Record(w, target, s, m, start + i) for i, (s, m) in enumerate(zip(part, ms))])
        store.append_run(_run(w, target, strategy, part, ms, start, prior=12 * k))
    r = Workload.parse(COLLECTED)                      # collected: records, no run log
    store.append([Record(r, target, s, _measure(r, s), T0 + 200 + i)
                  for i, s in enumerate(_samples(r, target, 10, seed=2))])
    p = Workload.parse(PRECISION)                      # searched over precisions
    ps = _samples(p, target, 30, seed=3, precisions=("bf16", "f16"))
    store.append([Record(p, target, s, _measure(p, s), T0 + 300 + i) for i, s in enumerate(ps)])
    f = Workload.parse("matmul:64x64x64:f32")          # measured on another machine
    store.append([Record(f, FOREIGN, s, _measure(f, s, scale=3.0), T0 + 400 + i)
                  for i, s in enumerate(_samples(f, FOREIGN, 6, seed=4))])
    return store


def fake_roofline(target: Target, folder) -> Roofline:
    """A cached roofline for ``target`` so tests do not measure one (test_roofline does)."""
    r = Roofline(target.key(), {1: 200.0, 2: 380.0}, {1: 100.0, 2: 190.0}, {1: 20.0, 2: 30.0}, {1: 80.0, 2: 140.0})
    save(r, str(folder))
    return r


def model_trace(target: Target) -> ModelTrace:
    return ModelTrace(model="TinyMLP", target=target.to_json(), mode="default", compile_s=3.5,
                      fallbacks=("graph1: data-dependent control flow",),
                      kernels=(KernelTrace("graph0/group0", "kernel", ("matmul", "add", "gelu"), 2.0e-4, 50,
                                           2 * 64 * 256 * 512, "matmul:64x512x256:f32", {"reg_tile": [6, 16]}),
                               KernelTrace("graph0/group1", "eager", ("layer_norm",), 5.0e-5, 50,
                                           reason="layer_norm has no tilewise op"),
                               KernelTrace("graph0/group2", "kernel", ("matmul",), 1.2e-4, 50,
                                           2 * 64 * 512 * 256, "matmul:64x256x512:f32"),
                               KernelTrace("graph0/group3", "eager", ("softmax",), None, 0, reason="not timed")))
