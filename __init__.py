"""tilewise: a learned cost model and autotuner for ML programs, built on MLIR.

Import what you use from the stage packages: ``tilewise.ir`` (workloads, schedules, kernels),
``tilewise.profiling`` (targets, measurement), ``tilewise.tuner`` (search), ``tilewise.frontends``.
"""
__version__ = "0.1.0"
