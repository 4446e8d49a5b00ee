"""The runner stage: candidates in, measurements out.

A :class:`Candidate` is one (workload, schedule) pair to measure.  A :class:`Runner` turns a batch
of candidates into a batch of :class:`~tilewise.core.measurement.Measurement` (MetaSchedule's
builder/runner pair behind one call; kernel_tuner's simulation runner is :class:`ReplayRunner`).

Contract of ``Runner.run(candidates) -> list[Measurement]``:

- one measurement per candidate, in the same order; duplicates are measured (or served) each time;
- it never raises because of a candidate: a schedule the op kind rejects is ``invalid``; a failed
  or crashed or hung build is ``compile_error`` or ``timeout``; a kernel that crashes, hangs or
  runs out of memory is ``runtime_error`` or ``timeout``; a result off the reference is
  ``wrong_result``.  It raises only when the runner itself cannot work (a worker process that
  cannot start, a closed runner);
- ownership: candidates are read, never kept or changed; the returned measurements are new frozen
  values owned by the caller.  A runner owns its processes and temporary files until ``close()``
  (also a context manager); using it after ``close()`` raises;
- thread safety: ``run`` may be called from any thread, but calls on one runner are serialised
  (one batch at a time); to measure concurrently use one runner per device;
- the timing protocol and the limits are the runner's :class:`RunnerConfig`, not the caller's.

The final re-timing is the runner's too (single timings on a busy machine are off by +-25% back to
back, so a tuner ranks its finalists in one interleaved window):

- ``time_ab(workload, schedules, rounds=, runs_per_round=, threads=) -> ABTimings``: every named
  schedule (``{"default": s0, "candidate1": s1, ...}``) and the library reference, timed
  round-robin: each round times every schedule, then the reference, ``runs_per_round`` runs each
  (where the runner's device decides how many runs a timing takes, it does).  Each schedule is
  checked against the reference result before it is timed, with its own output buffers.  One
  :class:`Measurement` per name, ok with every run of every round and the checked error, or the
  failure (never raises because of a schedule; a crash takes the re-timing's process down, not
  the caller's);
- ``reference(workload, threads=1) -> Measurement``: the library baseline's timings alone (numpy or
  OpenBLAS on a CPU, ``torch.matmul`` on CUDA).

The default ``time_ab`` is that round-robin over ``run`` batches and ``reference`` (the device's
own timing per call); the default ``reference`` is ``invalid`` (a runner with no library).

Implementations register by name: ``create("local", config)``, ``create("replay", records)``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from tilewise.core.candidate import Candidate
from tilewise.core.measurement import Measurement, pool_measurements
from tilewise.core.registry import Registry

if TYPE_CHECKING:
    from tilewise.core.schedule import Schedule
    from tilewise.core.workload import Workload


@dataclass(frozen=True)
class RunnerConfig:
    """Limits, placement and timing protocol of a runner (MLIR_NOTES, "Compile time and measurement").

    Timing: ``warmup`` untimed runs, then at least ``repeats`` timed runs and at least
    ``min_time_s`` of them (at most ``max_repeats``).  Inputs are random, drawn afresh every
    ``fresh_inputs_every`` candidates from ``seed`` (1: every candidate gets its own).  A result is
    ``wrong_result`` above ``max_rel_error`` (None: the op's tolerance for the workload's dtype).

    Placement: the timing process runs a T-thread candidate on ``timing_cores[:T]`` (None: the
    first cores this process may use).  Builders run on ``build_cores`` (None: every core this
    process may use) at ``SCHED_IDLE`` priority when ``build_sched_idle``, so a build does not take
    a core from the timer.  While a candidate of at least ``pause_builds_min_threads`` threads is
    warmed up and timed, the builders are stopped (SIGSTOP/SIGCONT): an OpenMP kernel waits for its
    slowest thread, and a builder's time slice on either core made a 2-thread 512^3 matmul's
    reported median spread by 65-205% (3-16% paused: the machine's own drift).  A 1-thread kernel
    on its own core still shares L3, memory bandwidth and clock with the other core: in-process,
    ``add:512x768`` (4.7 MB, L3-resident) ran its best schedule at 43 us with the other core idle
    and at 52 us beside a loop of compiles.  Through the runner, though, whose one builder works
    only ahead of the timer and at ``SCHED_IDLE``, stopping the builds for 1-thread candidates too
    (1) changed neither that kernel's median (46.2 vs 46.5 us) nor how alike two rounds of its 20
    schedules rank (Spearman 0.64 vs 0.67, 20 alternating trials; matmul 128x768x768: 0.98 both),
    and it costs throughput (512^3, short protocol: 755 instead of 920 candidates/min with 2
    workers, 510 instead of 660 with 1; bench/runner_throughput.py), so the default (2) lets
    1-thread candidates time while builds go on.
    ``memory_limit_bytes`` caps every worker's address space.
    """
    build_workers: int = 2
    build_timeout_s: float = 60.0
    run_timeout_s: float = 60.0
    repeats: int = 10
    min_time_s: float = 0.05
    warmup: int = 2
    max_repeats: int = 1000
    max_rel_error: float | None = None
    seed: int = 0
    fresh_inputs_every: int = 1
    timing_cores: tuple[int, ...] | None = None
    build_cores: tuple[int, ...] | None = None
    build_sched_idle: bool = True
    pause_builds_min_threads: int = 2
    memory_limit_bytes: int | None = None

    def __post_init__(self):
        if self.build_workers < 1:
            raise ValueError("build_workers must be >= 1")
        if self.build_timeout_s <= 0 or self.run_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.repeats < 1 or self.warmup < 0 or self.max_repeats < self.repeats:
            raise ValueError("need repeats >= 1, warmup >= 0 and max_repeats >= repeats")
        if self.fresh_inputs_every < 1 or self.pause_builds_min_threads < 1:
            raise ValueError("fresh_inputs_every and pause_builds_min_threads must be >= 1")


#: the reference's entry while the default ``time_ab`` pools the rounds
REFERENCE = "reference"


@dataclass(frozen=True)
class ABTimings:
    """What ``time_ab`` measured: one measurement per schedule name, the reference's, and the
    reference's name (``numpy``, ``torch``, ``torch.matmul``; empty where none answered)."""
    measurements: Mapping[str, Measurement]
    reference: Measurement
    reference_name: str = ""


class Runner(ABC):
    """Measures candidates; see the module docstring for the contract."""

    name = ""

    @abstractmethod
    def run(self, candidates: Sequence[Candidate]) -> list[Measurement]:
        """One measurement per candidate, same order; never raises for a bad candidate."""

    def time_ab(self, workload: "Workload", schedules: Mapping[str, "Schedule"], *, rounds: int,
                runs_per_round: int, threads: int = 1) -> ABTimings:
        """The schedules and the reference re-timed round-robin (module docstring); here over
        ``run`` batches, at least one round."""
        ok: dict[str, list[Measurement]] = {k: [] for k in [*schedules, REFERENCE]}
        failed: dict[str, Measurement] = {}
        for _ in range(max(1, rounds)):
            got = self.run([Candidate(workload, s) for s in schedules.values()])
            for name, m in [*zip(schedules, got), (REFERENCE, self.reference(workload, threads=threads))]:
                if m.ok:
                    ok[name].append(m)
                else:
                    failed.setdefault(name, m)
        out = {k: pool_measurements(ms) if ms else failed[k] for k, ms in ok.items()}
        reference = out.pop(REFERENCE)
        return ABTimings(out, reference, self.reference_name(workload) if reference.ok else "")

    def reference(self, workload: "Workload", threads: int = 1) -> Measurement:
        """The library baseline's timings of ``workload`` (module docstring)."""
        return Measurement("invalid", f"the {self.name or type(self).__name__} runner has no library reference")

    def reference_name(self, workload: "Workload") -> str:
        """What :meth:`reference` times, for the default ``time_ab``."""
        return ""

    def close(self) -> None:
        """Release processes and files; idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


RUNNERS = Registry("runner", "tilewise.profiling.runner")
register_runner = RUNNERS.register


def create(name: str, *args, **kw) -> Runner:
    return RUNNERS.get(name)(*args, **kw)
