"""The timing process: loads one kernel library at a time, checks it, times it.

One persistent child (``python -m tilewise.profiling.timer RUNNER_DIR MEMORY_LIMIT_BYTES``) so
that a kernel that segfaults, aborts, hangs or exhausts memory takes down only this process; the
parent records the candidate and starts another (if the parent dies, the child removes RUNNER_DIR
and exits).  Its BLAS runs one thread (a spinning OpenBLAS pool would share the timed
core), and the kernel's own stdout goes to the log so it cannot corrupt the protocol.

Protocol, JSON lines (as :mod:`tilewise.profiling.baseline`): first line out ``{"ready": true}``;
then per request one line in::

    {"path", "workload", "precision", "seed", "cores", "max_rel_error",
     "repeats", "min_time_s", "warmup", "max_repeats", "pause_groups"}

and one line out: ``{"status": ok|wrong_result|runtime_error, "error_msg", "times_s",
"rel_error", "paused_s"}``.  Per request: place the threads on ``cores`` (one per core, see
:func:`_place_threads`), load the library, take the inputs for (workload, precision, seed) (fresh
random values and their float64 reference, cached for the next candidates with that seed, copied
into buffers that stay put: see :class:`Inputs`), poison the outputs, run once and compare; then
stop the ``pause_groups`` (build workers), warm up and time (``measure.time_runs``), continue them.

A request with ``"kind": "ab"`` is the tuner's final re-timing of its finalists against the library
baseline instead (:func:`tilewise.profiling.ab.serve_ab`; its answer is one line as well).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections import OrderedDict

from tilewise.profiling.ab import serve_ab
from tilewise.profiling.procs import ask_to_exit, exit_reason, kill_child, tail

#: environment of the timing process: single-threaded BLAS for the references
_ENV = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


class TimingProcess:
    """Parent-side handle of the timing child; started on first use and after every death."""

    def __init__(self, log_dir: str, memory_limit_bytes: int | None = None, start_timeout_s: float = 120.0):
        self._log_dir = log_dir
        self._memory_limit_bytes = memory_limit_bytes
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._log_path = ""
        self._starts = 0
        self.deadline = math.inf
        self.job = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def fileno(self) -> int:
        return self._proc.stdout.fileno()

    def _start(self) -> None:
        self._starts += 1
        self._log_path = os.path.join(self._log_dir, f"timer-{self._starts}.log")
        cmd = [sys.executable, "-m", "tilewise.profiling.timer", self._log_dir, str(self._memory_limit_bytes or 0)]
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                          text=True, env=dict(os.environ, **_ENV), start_new_session=True)
        ready, _, _ = select.select([self._proc.stdout], [], [], self._start_timeout_s)
        hello = self._proc.stdout.readline() if ready else ""
        if not hello:
            reason = self.kill()
            raise RuntimeError(f"the timing process did not start ({reason}): {tail(self._log_path)}")

    def submit(self, job, request: dict, timeout_s: float) -> None:
        line = json.dumps(request) + "\n"
        for attempt in range(2):
            if self._proc is not None and self._proc.poll() is not None:
                self.kill()                  # died between candidates (the OOM killer, a signal)
            if self._proc is None:
                self._start()
            try:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
                break
            except (BrokenPipeError, OSError):
                if attempt:
                    raise
                self.kill()
        self.job, self.deadline = job, time.monotonic() + timeout_s

    def receive(self) -> dict | None:
        """The reply to the current request, or None when the process died."""
        line = self._proc.stdout.readline()
        return json.loads(line) if line else None

    def finish(self):
        job, self.job, self.deadline = self.job, None, math.inf
        return job

    def kill(self) -> str:
        """Kill the process (if alive); returns why it ended, with the last lines of its log."""
        if self._proc is None:
            return "not running"
        proc, self._proc = self._proc, None
        kill_child(proc, 5)
        log = tail(self._log_path)
        return exit_reason(proc.returncode) + (f"; log: {log}" if log else "")

    def close(self) -> None:
        ask_to_exit(self._proc, 5)
        self.kill()


# --- the child ---------------------------------------------------------------------------------
class Inputs:
    """The kernel buffers of the timing process, and the random values that go in them.

    Where a buffer lies changes the kernel's speed: numpy puts a 1 MiB array at a 16-byte boundary
    that varies per allocation, and a 512^3 matmul whose B is not 64-byte aligned splits every
    vector load across two cache lines (4.2 instead of 2.8 ms, same kernel); among page-aligned
    allocations the physical pages (L2 set conflicts) still moved one array set 8% off the others.
    So each (workload, precision) gets its buffers once, page-aligned, and every candidate's fresh
    values are copied into those same buffers: every candidate sees the same placement.
    """

    def __init__(self, max_entries: int = 4):
        self._values: OrderedDict = OrderedDict()     # (workload, precision, seed) -> Problem
        self._buffers: OrderedDict = OrderedDict()    # (workload, precision) -> [arrays]
        self._max = max_entries

    def _lookup(self, cache: OrderedDict, key, make):
        if key not in cache:
            cache[key] = make()
            while len(cache) > self._max:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def problem(self, workload_json: dict, precision: str, seed: int):
        """A Problem with fresh values for ``seed``, in the persistent buffers."""
        import dataclasses

        from tilewise.core.workload import Workload
        from tilewise.profiling.measure import make_problem, page_aligned_empty
        wkey = json.dumps(workload_json, sort_keys=True)
        values = self._lookup(self._values, (wkey, precision, seed),
                              lambda: make_problem(Workload.from_json(workload_json), precision, seed))
        buffers = self._lookup(self._buffers, (wkey, precision),
                               lambda: [page_aligned_empty(a.shape, a.dtype) for a in values.arrays])
        n_in = len(values.inputs)
        for buf, a in zip(buffers[:n_in], values.inputs):
            buf[...] = a
        return dataclasses.replace(values, inputs=buffers[:n_in], outputs=buffers[n_in:])


@contextlib.contextmanager
def _paused(groups):
    """Stop the build workers' process groups for the duration (if this process dies meanwhile,
    the parent continues them)."""
    stopped = []
    try:
        for g in groups:
            try:
                os.killpg(g, signal.SIGSTOP)
                stopped.append(g)
            except (ProcessLookupError, PermissionError):
                pass
        yield
    finally:
        for g in stopped:
            try:
                os.killpg(g, signal.SIGCONT)
            except (ProcessLookupError, PermissionError):
                pass


#: native ids of this process's own helper threads, which stay with the main thread
_HELPERS: set[int] = set()


def _place_threads(cores: list[int]) -> None:
    """This (main) thread on ``cores[0]``; every other thread of the process (OpenMP's workers,
    kept from earlier candidates) on one of ``cores[1:]``, round-robin.  Left to the scheduler,
    a 2-thread kernel sometimes had both threads on one core for a whole runner's life (512^3
    matmul: 2.2 instead of 1.4 ms, every candidate)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    import threading
    main = threading.get_native_id()
    os.sched_setaffinity(main, {cores[0]})
    rest = cores[1:] or cores
    try:
        tids = sorted(int(t) for t in os.listdir("/proc/self/task"))
        tids = [t for t in tids if t != main and t not in _HELPERS]
    except OSError:
        return
    for i, tid in enumerate(tids):
        try:
            os.sched_setaffinity(tid, {rest[i % len(rest)]})
        except OSError:
            pass        # a thread that just ended


def _measure(req: dict, inputs: Inputs) -> dict:
    from tilewise.ir.compiler import LibraryKernel
    from tilewise.profiling.measure import check, time_runs

    _place_threads(req["cores"])
    problem = inputs.problem(req["workload"], req["precision"], req["seed"])
    w = problem.workload
    try:
        kernel = LibraryKernel(req["path"], w.kind.args(w, req["precision"]))
    except (OSError, AttributeError) as e:
        return {"status": "runtime_error", "error_msg": f"cannot load the kernel library: {e}"}
    try:
        rel = check(kernel, problem)
        bound = req["max_rel_error"]
        if not rel <= bound:
            return {"status": "wrong_result", "error_msg": f"relative error {rel:.3g} exceeds {bound:.3g}",
                    "rel_error": rel}
        _place_threads(req["cores"])        # the check run may have started OpenMP's threads
        run = kernel.bind(problem.arrays)
        t0 = time.monotonic()
        with _paused(req.get("pause_groups", ())):
            times = time_runs(run, repeats=req["repeats"], min_time_s=req["min_time_s"],
                              warmup=req["warmup"], max_repeats=req["max_repeats"])
        paused_s = time.monotonic() - t0 if req.get("pause_groups") else 0.0
        if min(times) <= 0:
            return {"status": "runtime_error", "error_msg": "non-positive timing: the clock or the kernel is broken",
                    "rel_error": rel, "paused_s": paused_s}
        return {"status": "ok", "error_msg": "", "times_s": times, "rel_error": rel, "paused_s": paused_s}
    finally:
        kernel.close()


def _serve() -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                      # whatever a kernel prints lands in the log
    sys.stdout = sys.stderr
    from tilewise.profiling.procs import exit_with_parent, limit_memory
    runner_dir, memory_limit_bytes = sys.argv[1], int(sys.argv[2])
    _HELPERS.add(exit_with_parent(remove_dir=runner_dir))      # the runner's files, if it was killed
    limit_memory(memory_limit_bytes or None)
    import tilewise.profiling.measure  # noqa: F401  (import before the first deadline starts)
    inputs = Inputs()
    protocol.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    protocol.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            reply = serve_ab(req, _place_threads) if req.get("kind") == "ab" else _measure(req, inputs)
        except Exception as e:          # noqa: BLE001  (a bug here is reported, not a hang)
            reply = {"status": "runtime_error", "error_msg": f"timing process error: {type(e).__name__}: {e}"}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


if __name__ == "__main__":
    _serve()
