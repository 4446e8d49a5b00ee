"""Tuning on a cuda target: the same loop as :func:`tilewise.tuner.tune.tune`, GPU parts swapped in.

``tune_gpu`` searches the GPU space (:mod:`tilewise.tuner.spaces.gpu_gemm`) with any registered
strategy, measuring through a :class:`~tilewise.profiling.gpu_runner.GpuRunner`; records go to
the store with the cuda target, so the tuning database and ``--retune`` behave as on the CPU.
The finalists are then re-timed with the default Triton config and ``torch.matmul`` (cuBLAS) of
the same problem, round-robin over ``ab_rounds`` rounds, and ranked by their median over all
rounds; the result is a :class:`~tilewise.tuner.tune.TuneResult`, so the CLI prints it as it
prints a CPU result.

The ``model`` strategy gets a fresh ``xgb`` on ``gpu_analytic`` features (ranking by the GPU
roofline until fitted) unless a model (instance or file trained on GPU records) is given.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable

from tilewise.datasets.base import RecordStore
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig
from tilewise.core.target import Target
from tilewise.tuner.base import SearchStrategy, create
from tilewise.tuner.space import SpaceOptions, space_for
from tilewise.tuner.spaces.gpu_gemm import default_schedule
from tilewise.tuner.tune import (Timing, Trial, TuneConfig, TuneResult, fastest, finalists, finish_result,
                                 search_with_database)



def gpu_strategy(name: str, space, workload: Workload, target: Target, seed: int = 0,
                 model=None) -> SearchStrategy:
    if name == "model":
        if model is None:
            from tilewise.costmodel.base import create as create_model
            from tilewise.costmodel.gpu_commands import GPU_FEATURES
            model = create_model("xgb", features=GPU_FEATURES)
        return create("model", space, seed=seed, workload=workload, target=target, model=model)
    return create(name, space, seed=seed, workload=workload, target=target)


def tune_gpu(workload: Workload, target: Target, config: TuneConfig = TuneConfig(), *,
             strategy: SearchStrategy | None = None, runner: GpuRunner | None = None,
             store: RecordStore | None = None, on_trial: Callable[[Trial], None] | None = None,
             model=None, runner_config: GpuRunnerConfig | None = None) -> TuneResult:
    """Tune ``workload`` on the cuda ``target`` (module docstring)."""
    if target.kind != "cuda":
        raise ValueError(f"tune_gpu needs a cuda target, not {target.kind}")
    t_start = time.perf_counter()
    config = config.with_error_budget(workload)
    precisions = ("lower",) if config.max_rel_error is not None else ()
    space = space_for(workload, target, SpaceOptions(1, precisions))
    strategy = strategy or gpu_strategy(config.strategy, space, workload, target, config.seed, model)
    own = runner is None
    # a batch compiles in parallel on the host's cores before it is timed one by one
    workers = max(1, min(config.batch_size, (os.cpu_count() or 2) - 1))
    runner = runner or GpuRunner(runner_config or GpuRunnerConfig(max_rel_error=config.max_rel_error,
                                                                  seed=config.seed, compile_workers=workers))
    try:
        prior, searched, trials = search_with_database(workload, target, space, config, strategy, runner,
                                                       store, on_trial)
        result = final_ab(workload, target, config, trials, prior, runner)
    finally:
        if own:
            runner.close()
    finish_result(result, config, strategy, store, prior, searched, trials, t_start)
    return result


def final_ab(workload: Workload, target: Target, config: TuneConfig, trials: list[Trial],
             prior: list[Trial], runner: GpuRunner) -> TuneResult:
    """Finalists, the default config and torch.matmul, re-measured round-robin."""
    chosen = finalists(trials, prior, config.top_k)
    default_s = Schedule(default_schedule(workload, target))
    named: dict[str, Schedule] = {"default": default_s}
    for i, s in enumerate(chosen, 1):
        if s != default_s:
            named[f"candidate{i}"] = s
    times: dict[str, list[float]] = {k: [] for k in [*named, "reference"]}
    errors: dict[str, float | None] = {}
    notes: list[str] = []
    for _ in range(max(1, config.ab_rounds)):
        results = runner.run([Candidate(workload, s) for s in named.values()])
        for (name, _), m in zip(named.items(), results):
            if m.ok:
                times[name].extend(m.times_s)
                errors[name] = m.rel_error
            elif name == "default" and not any("default" in n for n in notes):
                notes.append(f"default schedule failed: {m.status}: {m.error_msg}")
        ref = runner.reference(workload, workload.dtype)
        if ref.ok:
            times["reference"].extend(ref.times_s)
            errors["reference"] = ref.rel_error
        elif not any("torch.matmul" in n for n in notes):
            notes.append(f"torch.matmul reference failed: {ref.status}: {ref.error_msg}")
    timings = {k: Timing(k, named.get(k), v, errors.get(k)) for k, v in times.items() if v}
    best = fastest(timings, chosen)
    reference = timings.get("reference") or Timing("torch.matmul", None, [float("inf")])
    reference.name = "torch.matmul"
    return TuneResult(workload, target, dataclasses.replace(config), trials, best, timings.get("default"),
                      reference, notes=notes)
