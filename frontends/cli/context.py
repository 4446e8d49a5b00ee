"""What every command of the CLI shares: the consoles, ``fail()``, JSON printing and spinners;
parsing workloads; which target kind (``--target``) and its checks; opening record stores;
creating runners (``--cluster``).

Commands read parse -> call -> render: a check that fails prints one line ``error: ...`` to
stderr and exits with 2 (:data:`EXIT_BAD_INPUT`).  Kind-specific dispatch (CPU vs CUDA) lives in
the "which target kind" section below and nowhere else.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def spinner(message: str):
    """A spinner on stderr for a step that takes more than a second (stdout stays clean for --json;
    rich draws nothing when stderr is not a terminal, e.g. in CI logs)."""
    return err.status(message, spinner="dots")


def print_json(payload, indent: int = 2, default=None) -> None:
    """The ``--json`` object on stdout (plain print: no rich markup or wrapping)."""
    print(json.dumps(payload, indent=indent, default=default))


def print_json_per_workload(payload: list) -> None:
    """One object for one workload (a WORKLOAD string), a list for several (a FILE.mlir)."""
    print_json(payload[0] if len(payload) == 1 else payload)


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


# -- workloads -------------------------------------------------------------------------------------
def workloads(spec: str):
    """The workloads of a WORKLOAD string or a FILE.mlir, or one error line."""
    from tilewise.frontends.mlir_file import MlirFileError, workloads_from_mlir
    from tilewise.core.workload import Workload, WorkloadError
    try:
        if spec.endswith(".mlir"):
            return workloads_from_mlir(spec)
        return [Workload.parse(spec)]
    except (WorkloadError, MlirFileError) as e:
        fail(str(e))


def check_buffers_fit(wls) -> None:
    """Refuse, before anything is allocated, a workload whose buffers exceed this machine's memory."""
    from tilewise.profiling.memory import BuffersTooLarge
    from tilewise.profiling.memory import check_buffers_fit as check
    try:
        for w in wls:
            check(w)
    except BuffersTooLarge as e:
        fail(str(e))


# -- which target kind (--target) ------------------------------------------------------------------
def torch_sees_gpu() -> bool:
    """Cheap check before importing torch: a CUDA driver must be present."""
    return os.path.exists("/proc/driver/nvidia/version") or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def checked_target_kind(kind: str) -> str:
    """``--target`` checked against the registered target kinds (cpu, cuda)."""
    from tilewise.tuner.targets import TARGET_KINDS
    if TARGET_KINDS.find(kind) is None:
        fail(f"--target {kind!r}: use {' or '.join(TARGET_KINDS.names())}")
    return kind


def target_for(kind: str):
    """The target of a checked ``--target`` kind this process runs on (a GPU's peaks measured once
    and cached), or one error line and exit 2."""
    from tilewise.profiling.cuda_target import CudaUnavailable
    from tilewise.tuner.targets import TARGET_KINDS
    try:
        return TARGET_KINDS.get(kind).detect()
    except CudaUnavailable as e:
        fail(str(e))


def train_function(kind: str):
    """``train_command(db, model=..., ...) -> (report, table)`` of a checked ``--target`` kind."""
    if kind == "cuda":
        from tilewise.costmodel.gpu_commands import train_cuda_command
        return train_cuda_command
    from tilewise.costmodel.cli_commands import train_command
    return train_command


def check_threads(threads: int, target) -> None:
    if target.kind == "cpu" and threads > target.cores:
        fail(f"--threads {threads} exceeds the {target.cores} cores this process may use")


def check_cluster_kind(cluster: Optional[str], kind: str) -> None:
    """``--cluster`` measures CPU kernels only."""
    if cluster is not None and kind != "cpu":
        fail("--cluster measures CPU kernels; drop --target cuda or --cluster")


# -- runners ---------------------------------------------------------------------------------------
def cluster_runner(cluster: str, config, require_target=None):
    """A RayRunner on the cluster at ``cluster`` (ray://HOST:PORT, HOST:PORT or auto)."""
    from tilewise.profiling.ray_runner import ClusterError, RayRunner
    try:
        runner = RayRunner(cluster, config, require_target=require_target)
        if not runner.nodes():
            why = "; ".join(f"node {k[:8]}: {v}" for k, v in runner.excluded().items())
            runner.close()
            fail(f"no node of the Ray cluster at {cluster} takes work" + (f" ({why})" if why else ""))
        return runner
    except ClusterError as e:
        fail(str(e))


def measuring_runner(kind: str, cluster: Optional[str], build_workers: int):
    """The runner ``collect`` measures with: the GPU's, the Ray cluster's, or local worker processes."""
    if kind == "cuda":
        from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig
        return GpuRunner(GpuRunnerConfig(compile_workers=build_workers))
    from tilewise.profiling.base import RunnerConfig
    from tilewise.profiling.runner import LocalRunner
    if cluster is not None:
        return cluster_runner(cluster, RunnerConfig(build_workers=build_workers))
    return LocalRunner(RunnerConfig(build_workers=build_workers))


# -- record stores ---------------------------------------------------------------------------------
def existing_store(db: str, hint: str) -> str:
    """``db`` when it names a store that exists (or a server URL); else one actionable error line."""
    if "://" not in db and db not in ("embedded", "embedded:all") and not os.path.exists(db):
        fail(f"no record store at {db}: {hint}")
    return db


def open_db(db: Optional[str], no_db: bool = False):
    """The record store a command reads and writes: ``--db``, else the default tuning database."""
    from tilewise.datasets.base import StoreError, default_location, open_store
    if no_db:
        return None
    location = db or default_location()
    if db is None and "://" not in location:
        os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    try:
        return open_store(location)
    except StoreError as e:
        fail(str(e))
