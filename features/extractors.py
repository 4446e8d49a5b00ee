"""The built-in feature extractors, registered by name (``features.create("analytic,ir,target")``):

- ``analytic`` (:mod:`~tilewise.features.analytic`): closed-form tile, cache, register, thread and
  roofline features; vectorized, ~1e5 candidates/s: the scoring path;
- ``ir`` (:mod:`~tilewise.features.ir_tokens`): op/type token statistics of the transformed MLIR;
  one transform (~50 ms) per candidate: offline training only;
- ``target`` (:mod:`~tilewise.features.target`): the hardware descriptor;
- ``ceilings`` (:mod:`~tilewise.features.ceilings`): ideal times against the target's measured
  ceilings (FMA rate per core, DRAM and L1 bandwidth, fork/join), so one model spans CPUs;
- ``gpu_analytic`` (:mod:`~tilewise.features.gpu_analytic`): Triton GEMM schedules on a cuda
  target (tiles, waves, occupancy, shared memory, intensity, precision, split-K, the GPU's peaks).
"""
from tilewise.features.analytic import AnalyticFeatures  # noqa: F401
from tilewise.features.ir_tokens import IRTokenFeatures  # noqa: F401
from tilewise.features.target import TargetFeatures  # noqa: F401
from tilewise.features.ceilings import CeilingFeatures  # noqa: F401
from tilewise.features.gpu_analytic import GpuAnalyticFeatures  # noqa: F401,E402
