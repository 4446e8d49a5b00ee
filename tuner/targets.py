"""Target kinds: what tuning on one kind of target (``Target.kind``: ``cpu``, ``cuda``) needs.

A :class:`TargetKind` is registered by the kind's name in :data:`TARGET_KINDS`; the tuning loop,
``space_for`` and the CLI look a target's kind up there instead of comparing strings.  Contract
(an instance, stateless, shared):

- ``spaces``: the registry of search-space builders by op name for this kind;
- ``detect()``: the target of this kind this process runs on (raises where there is none);
- ``space_options(workload, config)``: the :class:`SpaceOptions` a :class:`TuneConfig` allows;
- ``runner(config)``: a new runner with the settings a tuning run uses (the caller closes it);
- ``default_schedule(workload, target)``: the untuned schedule a result's speedup is measured from;
- ``strategy_options(strategy, model)``: what the kind adds to a strategy's options (the ``model``
  strategy's cost model: ``model`` if given, else the kind's default);
- ``reference_name``: what the library reference is called where the runner could not time it.

A new kind decorates its class with ``@TARGET_KINDS.register("rocm")`` in its own module; the
registry keeps one instance of it.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from tilewise.core.registry import Registry
from tilewise.core.schedule import Schedule
from tilewise.core.target import Target, detect
from tilewise.core.workload import Workload
from tilewise.profiling.base import Runner, RunnerConfig
from tilewise.tuner.base import SearchStrategy, create
from tilewise.tuner.space import GPU_SPACES, SPACES, SpaceOptions

if TYPE_CHECKING:
    from tilewise.tuner.tune import TuneConfig

TARGET_KINDS = Registry("target kind", "tilewise.tuner.targets", instantiate=True)


class TargetKind(ABC):
    """One kind of target; see the module docstring for the contract."""

    name = ""
    reference_name = ""
    spaces: Registry

    @abstractmethod
    def detect(self) -> Target:
        ...

    @abstractmethod
    def space_options(self, workload: Workload, config: "TuneConfig") -> SpaceOptions:
        ...

    @abstractmethod
    def runner(self, config: "TuneConfig") -> Runner:
        ...

    @abstractmethod
    def default_schedule(self, workload: Workload, target: Target) -> Schedule:
        ...

    def strategy_options(self, strategy: str, model: Any = None) -> dict[str, Any]:
        return {"model": model} if strategy == "model" and model is not None else {}


def target_kind(target: Target) -> TargetKind:
    """The registered kind of ``target`` (ValueError naming the known kinds otherwise)."""
    return TARGET_KINDS.get(target.kind)


def make_strategy(name: str, space, workload: Workload, target: Target, seed: int = 0, model: Any = None,
                  options: tuple[tuple[str, object], ...] = ()) -> SearchStrategy:
    """The strategy ``name`` over ``space`` with what ``target``'s kind adds (its cost model)."""
    return create(name, space, seed=seed, workload=workload, target=target,
                  **target_kind(target).strategy_options(name, model), **dict(options))


def runner_config(config: "TuneConfig") -> RunnerConfig:
    """The runner settings of a tuning run (the default LocalRunner's, and each cluster node's)."""
    return RunnerConfig(build_workers=1, repeats=config.repeats, min_time_s=config.min_time_s,
                        max_rel_error=config.max_rel_error, seed=config.seed)


@TARGET_KINDS.register("cpu")
class CpuKind(TargetKind):
    """MLIR-compiled kernels on this machine's cores; numpy/OpenBLAS (torch for conv) as reference."""

    reference_name = "numpy"
    spaces = SPACES

    def detect(self) -> Target:
        return detect()

    def space_options(self, workload: Workload, config: "TuneConfig") -> SpaceOptions:
        precisions = tuple(workload.kind.precisions_for(workload)) if config.max_rel_error is not None else ()
        return SpaceOptions(config.max_threads, precisions)

    def runner(self, config: "TuneConfig") -> Runner:
        from tilewise.profiling.runner import LocalRunner
        return LocalRunner(runner_config(config))

    def default_schedule(self, workload: Workload, target: Target) -> Schedule:
        return workload.kind.default_schedule(workload, target)


@TARGET_KINDS.register("cuda")
class CudaKind(TargetKind):
    """Triton GEMMs on the GPU torch sees; ``torch.matmul`` (cuBLAS) as reference.  The ``model``
    strategy gets a fresh ``xgb`` on ``gpu_analytic`` features (ranking by the GPU roofline until
    fitted) unless a model trained on GPU records is given."""

    reference_name = "torch.matmul"
    spaces = GPU_SPACES

    def detect(self) -> Target:
        from tilewise.profiling.cuda_target import detect_cuda_target
        return detect_cuda_target()

    def space_options(self, workload: Workload, config: "TuneConfig") -> SpaceOptions:
        return SpaceOptions(1, ("lower",) if config.max_rel_error is not None else ())

    def runner(self, config: "TuneConfig") -> Runner:
        from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig
        # a batch compiles in parallel on the host's cores before it is timed one by one
        workers = max(1, min(config.batch_size, (os.cpu_count() or 2) - 1))
        return GpuRunner(GpuRunnerConfig(max_rel_error=config.max_rel_error, seed=config.seed,
                                         compile_workers=workers))

    def default_schedule(self, workload: Workload, target: Target) -> Schedule:
        from tilewise.tuner.spaces.gpu_gemm import default_schedule
        return Schedule(default_schedule(workload, target))

    def strategy_options(self, strategy: str, model: Any = None) -> dict[str, Any]:
        if strategy == "model" and model is None:
            from tilewise.costmodel.base import create as create_model
            from tilewise.costmodel.gpu_commands import GPU_FEATURES
            model = create_model("xgb", features=GPU_FEATURES)
        return super().strategy_options(strategy, model)
