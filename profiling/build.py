"""Build workers: candidate -> kernel shared library, in processes that may crash or hang.

A *builder* is a picklable callable ``builder(candidate, library_path) -> None`` (a module-level
function or an instance of a module-level class: it is sent to spawned processes) that writes a
shared library exporting ``_mlir_ciface_kernel`` (:data:`tilewise.ir.compiler.C_INTERFACE_SYMBOL`)
at ``library_path``.  It raises ``ScheduleError`` for a schedule the op kind rejects (the runner
records ``invalid``) and anything else for a failed build (``compile_error``).  The default,
:func:`build_shared_library`, is the ir pipeline: validate, schedule, lower, JIT object,
``gcc -shared``.  Tests inject builders that hand over libraries compiled from C.

Each :class:`BuildWorker` is one spawned process with a duplex pipe carrying JSON messages:

    worker -> parent  {"ready": true}                               once, after start-up
    parent -> worker  {"candidate": {...}, "path": "..."}
    worker -> parent  {"status": "built"|"invalid"|"compile_error", "error_msg", "compile_time_s"}

``compile_time_s`` is CPU time (the worker's and its gcc's), not wall time.

The parent owns the deadline: a worker that overruns it or dies is killed and replaced.  Each
worker leads its own process group (its ``gcc`` included), which the timing process stops while
it times a multi-thread kernel (``RunnerConfig.pause_builds_min_threads``) and continues afterwards.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import resource
import signal
import time
from typing import Callable

from tilewise.ir.ops.base import ScheduleError
from tilewise.core.candidate import Candidate
from tilewise.profiling.procs import exit_reason, exit_with_parent, limit_memory, lower_to_idle_priority, pin

Builder = Callable[[Candidate, str], None]


def build_shared_library(candidate: Candidate, library_path: str) -> None:
    """The default builder: the ir pipeline, linked into a shared library."""
    from tilewise.ir.compiler import compile_to_shared_library
    compile_to_shared_library(candidate.workload, candidate.schedule, library_path)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (gcc): a build's cost, whether or not
    the worker waited (paused by the timer, or at SCHED_IDLE behind it) on the way."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _build_one(builder: Builder, msg: dict) -> dict:
    t0 = _cpu_s()
    try:
        builder(Candidate.from_json(msg["candidate"]), msg["path"])
        status, error = "built", ""
    except ScheduleError as e:
        status, error = "invalid", str(e)
    except Exception as e:      # noqa: BLE001  (a failed build is data)
        status, error = "compile_error", _one_line(e)
    return {"status": status, "error_msg": error, "compile_time_s": _cpu_s() - t0}


def _serve(conn, builder: Builder, cores, sched_idle: bool, memory_limit_bytes) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent handles Ctrl-C and reaps us
    os.setpgid(0, 0)        # a group of our own, with our gcc: the timer pauses it as one
    exit_with_parent()
    pin(cores)
    if sched_idle:
        lower_to_idle_priority()
    limit_memory(memory_limit_bytes)
    import tilewise.ir.compiler  # noqa: F401  (before "ready": no build's deadline or time pays for it)
    conn.send_bytes(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    while True:
        try:
            msg = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        conn.send_bytes(json.dumps(_build_one(builder, msg)).encode())


class BuildWorker:
    """Parent-side handle of one build process.  ``state``: starting -> idle <-> busy."""

    def __init__(self, builder: Builder, cores, *, sched_idle: bool = True,
                 memory_limit_bytes: int | None = None):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, builder, cores, sched_idle, memory_limit_bytes),
                                   daemon=True, name="tilewise-build")
        self.process.start()
        child.close()             # so that the worker's death reads as EOF here
        self.state = "starting"
        self.job: tuple[int, str] | None = None      # (candidate index, library path)
        self.deadline = math.inf

    def submit(self, index: int, candidate: Candidate, library_path: str, timeout_s: float) -> None:
        self.conn.send_bytes(json.dumps({"candidate": candidate.to_json(), "path": library_path}).encode())
        self.state, self.job, self.deadline = "busy", (index, library_path), time.monotonic() + timeout_s

    def receive(self) -> dict | None:
        """The next message, or None when the worker died."""
        try:
            return json.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            return None

    def finish(self) -> tuple[int, str]:
        job, self.job, self.state, self.deadline = self.job, None, "idle", math.inf
        return job

    def resume(self) -> None:
        """Continue the worker's process group if the timer paused it (it died before it could)."""
        try:
            os.killpg(self.process.pid, signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> str:
        """Kill the process and its group (a gcc it started); returns why the worker ended."""
        if self.process.is_alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)    # works on a stopped group too
            except (ProcessLookupError, PermissionError):
                pass
            self.process.kill()
        self.process.join(5)
        self.conn.close()
        self.state = "dead"
        return exit_reason(self.process.exitcode)
