"""Runners: :class:`LocalRunner` (build in worker processes, time in one pinned process) and
:class:`ReplayRunner` (recorded measurements, for tests of tuners and models).

LocalRunner's process layout::

    caller (run)  --JSON over pipes-->  build workers x build_workers   (spawned, SCHED_IDLE)
                  --JSON lines------->  timing process x 1              (pinned per candidate)

A build worker turns a candidate into a shared library in the runner's temporary directory
(:mod:`tilewise.profiling.build`); the timing process loads it with ctypes, checks it against the
float64 reference and times it (:mod:`tilewise.profiling.timer`).  Builds of later candidates
overlap the timing of earlier ones; at most ``2 * build_workers`` built libraries wait for the timer.

Faults: every candidate has a build deadline (``build_timeout_s``) and a run deadline
(``run_timeout_s``, for loading, checking and timing).  A build worker that overruns is killed and
replaced (``timeout``); one that dies mid-build (a crash in LLVM) is replaced (``compile_error``).
A kernel that kills the timing process (segfault, abort, the OOM killer) is ``runtime_error``
with the signal; one that overruns is killed (``timeout``).  The timing process is restarted on the
next candidate (~1 s) and the batch goes on.

Placement on a 2-core machine: the timer runs a T-thread candidate on ``timing_cores[:T]``, one
thread per core (core 0 for 1-thread schedules).  Builders may use every core but run at
``SCHED_IDLE``: one builder fills core 1; a second one gets core 0 only while the timer is not
running, so it adds throughput (about 520 -> 700-800 candidates/min at 512^3) without taking the
timed core.  An idle-class task still gets a rare time slice (a few ms: a lost run, which the median absorbs),
and a build on the other core shares L3, memory and clock; an OpenMP kernel waits for its slowest
thread, so while a multi-thread candidate is warmed up and timed the builders are stopped
(``pause_builds_min_threads``; the stopped time does not count against their build deadline).

What placement does to the figures (512^3 matmul, default schedule, measured 10 times in one batch
between random schedules, bench/runner_throughput.py): numpy's 16-byte-aligned buffers made the
reported median bimodal (2.8 / 4.2 ms, spread 30%): the timer keeps page-aligned buffers that
stay put (timer.Inputs).  Unpinned OpenMP threads sometimes shared a core for a runner's whole
life (2.2 instead of 1.4 ms); unpaused builds spread a 2-thread median by 65-205%.  What is left,
a 2-13% spread of 10 medians (CV 1-4%), is this machine's own drift: the same kernel timed
in-process with nothing else running spreads as much (2-14% over this session's trials), so the
<= 5% goal holds only in its quiet periods.  Pausing the builds for 1-thread candidates too did
not narrow it (5-18%), nor make two rounds of a memory-bound kernel's schedules rank more alike
(add:512x768, 20 alternating trials: Spearman 0.64 paused vs 0.67 not; bench/runner_throughput.py),
and it costs 15-23% of the throughput.

Ship the library or rebuild in the timing process?  Measured on the timing core, 512^3 f32 matmul,
12 random 1-thread schedules (bench/runner_throughput.py): loading a shipped library (dlopen,
bind) takes 0.9-1.3 ms; rebuilding it there (JIT compile, bind) 56-91 ms (medians of 5 runs);
the kernels run at the same speed (library / JIT time 1.00-1.005, per schedule 0.97-1.07).  So
builds happen only in the workers, and the timing core spends ~1 ms per candidate on loading
instead of a whole compile.
"""
from __future__ import annotations

import itertools
import math
import multiprocessing.connection as mpc
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from typing import Iterable, Mapping, Sequence

from tilewise.core.candidate import Candidate
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.profiling.ab import ab_timings, all_failed
from tilewise.profiling.base import ABTimings, Runner, RunnerConfig, register_runner
from tilewise.profiling.baseline import BaselineProcess
from tilewise.profiling.build import Builder, BuildWorker, build_shared_library
from tilewise.core.measurement import Measurement
from tilewise.profiling.measure import error_bound
from tilewise.profiling.procs import allowed_cores
from tilewise.profiling.timer import TimingProcess

#: how long a fresh build worker may take to import the compiler before the runner gives up
WORKER_START_TIMEOUT_S = 120.0


def _shut_down(workers: list, timer: TimingProcess, directory: str) -> None:
    for w in workers:
        w.kill()
    workers.clear()
    timer.close()
    shutil.rmtree(directory, ignore_errors=True)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


@register_runner("local")
class LocalRunner(Runner):
    """Builds in worker processes, times in one pinned process; see the module docstring.

    ``builder`` (default: the ir pipeline) is injectable, so tests hand the runner libraries that
    crash, hang or compute the wrong thing.  Start-up (~1 s per process) happens on the first
    ``run``; processes persist until ``close()``.  Build workers are spawned (they re-import the
    main module), so a script that runs a LocalRunner needs the ``if __name__ == "__main__":``
    guard; the builder must be picklable (a module-level function or class instance).
    """

    def __init__(self, config: RunnerConfig = RunnerConfig(), *, builder: Builder = build_shared_library):
        self.config = config
        self.builder = builder
        cores = allowed_cores()
        self.timing_cores = list(config.timing_cores or cores)
        self.build_cores = list(config.build_cores or cores)
        self._dir = tempfile.mkdtemp(prefix="tilewise-runner-")
        self._workers: list[BuildWorker] = []
        self._timer = TimingProcess(self._dir, config.memory_limit_bytes)
        self._lock = threading.Lock()
        self._names = itertools.count()
        self._n_timed = 0
        self._finalizer = weakref.finalize(self, _shut_down, self._workers, self._timer, self._dir)

    def run(self, candidates: Sequence[Candidate]) -> list[Measurement]:
        candidates = list(candidates)
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("this runner is closed")
            if not candidates:
                return []
            while len(self._workers) < self.config.build_workers:
                self._workers.append(self._new_worker())
            return _Batch(self, candidates).run()

    def time_ab(self, workload: Workload, schedules: Mapping[str, Schedule], *, rounds: int,
                runs_per_round: int, threads: int = 1) -> ABTimings:
        """The re-timing of the contract (:mod:`tilewise.profiling.ab`): the schedules built by the
        build workers, then loaded, checked and timed round-robin with the library baseline by the
        timing process, on the first ``threads`` timing cores (BLAS capped at ``threads``)."""
        names = list(schedules)
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("this runner is closed")
            if self.builder is build_shared_library and not any(w.state != "dead" for w in self._workers):
                # a cold runner (the store answered the tune): the timing process compiles the few
                # finalists itself with the ir pipeline (what the default builder runs) -- one
                # process start instead of a build worker's and its own
                request = self._ab_request(workload, schedules, names, rounds, runs_per_round, threads)
                request["schedules"] = {k: schedules[k].to_json() for k in names}
                return self._ask_timer(request, names, (len(names) + 1) * self.config.run_timeout_s
                                       + len(names) * self.config.build_timeout_s)
            while len(self._workers) < self.config.build_workers:
                self._workers.append(self._new_worker())
            builds = _BuildBatch(self, [Candidate(workload, schedules[k]) for k in names])
            failed = {names[i]: m for i, m in enumerate(builds.run()) if i not in builds.libraries}
            libraries = {names[i]: path for i, path in builds.libraries.items()}
            try:
                request = self._ab_request(workload, schedules, list(libraries), rounds, runs_per_round, threads)
                request["libraries"] = libraries
                ab = self._ask_timer(request, names, (len(libraries) + 1) * self.config.run_timeout_s)
            finally:
                for path in libraries.values():
                    _remove(path)
        return ABTimings({k: failed.get(k) or ab.measurements[k] for k in names}, ab.reference, ab.reference_name)

    def _ab_request(self, workload, schedules, names, rounds, runs_per_round, threads) -> dict:
        return {"kind": "ab", "workload": workload.to_json(),
                "precisions": {k: schedules[k].get("precision", workload.dtype) for k in names},
                "rounds": rounds, "runs_per_round": runs_per_round, "threads": threads,
                "seed": self.config.seed, "cores": self._cores(threads)}

    def _ask_timer(self, request: dict, names: list[str], timeout_s: float) -> ABTimings:
        """One A/B request to the timing process, waited for; a crash or an overrun is data."""
        timer = self._timer
        try:
            timer.submit("ab", request, timeout_s)
        except RuntimeError as e:               # it did not start
            return all_failed(names, "runtime_error", str(e))
        ready = mpc.wait([timer], max(0.0, timer.deadline - time.monotonic()))
        timer.finish()
        if not ready:
            self._kill_timer()
            return all_failed(names, "timeout", f"the A/B re-timing exceeded {timeout_s:g} s")
        answer = timer.receive()
        if answer is None:
            why = self._kill_timer()
            return all_failed(names, "runtime_error",
                              f"a kernel crashed the timing process in the A/B re-timing: {why}")
        if "measurements" not in answer:
            return all_failed(names, answer.get("status", "runtime_error"), answer.get("error_msg", ""))
        return ab_timings(answer)

    def reference(self, workload: Workload, threads: int = 1) -> Measurement:
        """The library baseline (:class:`~tilewise.profiling.baseline.BaselineProcess`), ``repeats`` runs."""
        try:
            with BaselineProcess(str(workload), threads, self.config.seed) as baseline:
                return Measurement("ok", "", tuple(baseline.time(self.config.repeats)))
        except RuntimeError as e:
            return Measurement("runtime_error", str(e))

    def close(self) -> None:
        with self._lock:
            self._finalizer()

    # -- used by _Batch --------------------------------------------------------------------------
    def _new_worker(self) -> BuildWorker:
        w = BuildWorker(self.builder, self.build_cores, sched_idle=self.config.build_sched_idle,
                        memory_limit_bytes=self.config.memory_limit_bytes)
        w.deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        return w

    def _library_path(self) -> str:
        return os.path.join(self._dir, f"k{next(self._names)}.so")

    def _timing_request(self, c: Candidate, path: str) -> dict:
        cfg, w = self.config, c.workload
        seed = cfg.seed + self._n_timed // cfg.fresh_inputs_every
        self._n_timed += 1
        threads = c.threads
        cores = self._cores(threads)
        bound = error_bound(w, cfg.max_rel_error)
        pause = threads >= cfg.pause_builds_min_threads
        groups = [wk.process.pid for wk in self._workers if wk.state != "dead"] if pause else []
        return {"path": path, "workload": w.to_json(), "precision": c.schedule.get("precision", w.dtype),
                "seed": seed, "cores": cores, "max_rel_error": bound, "repeats": cfg.repeats,
                "min_time_s": cfg.min_time_s, "warmup": cfg.warmup, "max_repeats": cfg.max_repeats,
                "pause_groups": groups}

    def _cores(self, threads: int) -> list[int]:
        return self.timing_cores[:threads] if threads <= len(self.timing_cores) else self.timing_cores

    def _kill_timer(self) -> str:
        """Kill the timing process; continue any build worker it had paused."""
        reason = self._timer.kill()
        for w in self._workers:
            w.resume()
        return reason


class _Batch:
    """One ``run``: an event loop over the build workers' pipes and the timer's stdout."""

    def __init__(self, runner: LocalRunner, candidates: list[Candidate]):
        self.runner = runner
        self.config = runner.config
        self.candidates = candidates
        self.results: list[Measurement | None] = [None] * len(candidates)
        self.left = len(candidates)
        self.to_build = deque(range(len(candidates)))
        self.built: deque[tuple[int, str, float]] = deque()     # (index, library, compile_time_s)

    def run(self) -> list[Measurement]:
        try:
            while self.left:
                self._dispatch()
                if self.left:
                    self._wait()
        finally:
            if self.left:
                self._abandon()
            for _, path, _ in self.built:
                _remove(path)
        return self.results

    def _abandon(self) -> None:
        """Interrupted (Ctrl-C, a worker that cannot start): drop the work in flight, so the
        next ``run`` starts from idle processes."""
        workers, timer = self.runner._workers, self.runner._timer
        for w in [w for w in workers if w.state != "idle"]:
            w.kill()
            workers.remove(w)
        if timer.busy:
            timer.finish()
            self.runner._kill_timer()

    def _record(self, i: int, m: Measurement) -> None:
        self.results[i] = m
        self.left -= 1

    def _dispatch_builds(self) -> None:
        workers = self.runner._workers
        for w in workers:
            if w.state == "idle" and self.to_build and len(self.built) < 2 * len(workers):
                i = self.to_build.popleft()
                w.submit(i, self.candidates[i], self.runner._library_path(), self.config.build_timeout_s)

    def _dispatch(self) -> None:
        self._dispatch_builds()
        timer = self.runner._timer
        if not timer.busy and self.built:
            i, path, compile_s = self.built.popleft()
            request = self.runner._timing_request(self.candidates[i], path)
            timer.submit((i, path, compile_s), request, self.config.run_timeout_s)

    def _wait(self) -> None:
        workers, timer = self.runner._workers, self.runner._timer
        waiting = [w.conn for w in workers if w.state in ("starting", "busy")] + ([timer] if timer.busy else [])
        if not waiting:
            raise RuntimeError("runner stalled: nothing to build or time, but results are missing")
        deadline = min([w.deadline for w in workers] + [timer.deadline])
        timeout = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
        ready = mpc.wait(waiting, timeout)
        for w in list(workers):
            if w.conn in ready:
                self._on_build(w)
        if timer in ready:
            self._on_timed()
        now = time.monotonic()
        for w in list(workers):
            if w.state in ("starting", "busy") and now >= w.deadline:
                self._on_build_timeout(w)
        if timer.busy and now >= timer.deadline:
            i, path, compile_s = timer.finish()
            self.runner._kill_timer()
            _remove(path)
            self._record(i, Measurement("timeout", f"run exceeded {self.config.run_timeout_s:g} s "
                                                   "(load, check and timed runs)", compile_time_s=compile_s))

    def _replace(self, w: BuildWorker) -> None:
        workers = self.runner._workers
        workers[workers.index(w)] = self.runner._new_worker()

    def _on_build(self, w: BuildWorker) -> None:
        msg = w.receive()
        if w.state == "starting":
            if msg is None:
                raise RuntimeError(f"a build worker did not start ({w.kill()}); workers are spawned, so a "
                                   "script that runs a LocalRunner needs the `if __name__ == \"__main__\":` guard")
            w.state, w.deadline = "idle", math.inf
            return
        i, path = w.finish()
        if msg is None:
            reason = w.kill()
            self._replace(w)
            _remove(path)
            self._record(i, Measurement("compile_error", f"the build crashed its worker process: {reason}"))
        elif msg["status"] != "built":
            _remove(path)
            self._record(i, Measurement(msg["status"], msg["error_msg"], compile_time_s=msg["compile_time_s"]))
        elif not os.path.exists(path):
            self._record(i, Measurement("compile_error", "the builder reported success but wrote no library",
                                        compile_time_s=msg["compile_time_s"]))
        else:
            self.built.append((i, path, msg["compile_time_s"]))

    def _on_build_timeout(self, w: BuildWorker) -> None:
        if w.state == "starting":
            raise RuntimeError(f"a build worker did not start within {WORKER_START_TIMEOUT_S:g} s")
        i, path = w.finish()
        w.kill()
        self._replace(w)
        _remove(path)
        self._record(i, Measurement("timeout", f"build exceeded {self.config.build_timeout_s:g} s",
                                    compile_time_s=self.config.build_timeout_s))

    def _on_timed(self) -> None:
        timer = self.runner._timer
        msg = timer.receive()
        i, path, compile_s = timer.finish()
        _remove(path)
        if msg is None:
            reason = self.runner._kill_timer()
            self._record(i, Measurement("runtime_error", f"the kernel crashed the timing process: {reason}",
                                        compile_time_s=compile_s))
            return
        for w in self.runner._workers:          # time spent paused does not count against a build
            w.deadline += msg.get("paused_s", 0.0)
        self._record(i, Measurement(msg["status"], msg.get("error_msg", ""), tuple(msg.get("times_s", ())),
                                    msg.get("rel_error"), compile_s))


class _BuildBatch(_Batch):
    """Build only (for ``time_ab``): ``libraries[i]`` is candidate i's library, which the caller
    removes; a failed build's Measurement is in ``run()``'s list as in a batch."""

    def __init__(self, runner: LocalRunner, candidates: list[Candidate]):
        super().__init__(runner, candidates)
        self.libraries: dict[int, str] = {}

    def run(self) -> list[Measurement]:
        try:
            return super().run()
        except BaseException:
            for path in self.libraries.values():
                _remove(path)
            raise

    def _dispatch(self) -> None:
        self._dispatch_builds()
        while self.built:
            i, path, compile_s = self.built.popleft()
            self.libraries[i] = path
            self._record(i, Measurement("ok", "built, not timed", compile_time_s=compile_s))


@register_runner("replay")
class ReplayRunner(Runner):
    """Serves recorded measurements (kernel_tuner's simulation runner): tuners and cost models are
    tested on it in milliseconds.

    ``records``: a mapping ``Candidate.key() -> Measurement``; or an iterable of records (objects
    with ``workload``, ``schedule`` and ``measurement``, e.g. ``datasets.Record``) or of
    ``(Candidate, Measurement)`` pairs; a later entry for the same candidate wins.  Give it the
    records of one target.  A candidate with no record comes back ``invalid`` (never raises).
    ``reference`` (named ``reference_name``) is what :meth:`reference` serves; ``time_ab`` is the
    contract's default round-robin over ``run``, so a tuner's final A/B is served too (no JIT).
    The table is read-only after construction, so threads may share a runner; ``served`` and
    ``missed`` count the candidates answered with and without a record (approximate under
    concurrent calls).
    """

    def __init__(self, records: Mapping[str, Measurement] | Iterable = (), *,
                 reference: Measurement | None = None, reference_name: str = "numpy"):
        self._reference = reference or Measurement("invalid", "the replay runner was given no reference timing")
        self._reference_name = reference_name
        if isinstance(records, Mapping):
            self._table = dict(records)
        else:
            self._table = {}
            for r in records:
                if isinstance(r, tuple):
                    candidate, m = r
                else:
                    candidate, m = Candidate(r.workload, r.schedule), r.measurement
                self._table[candidate.key()] = m
        self.served = 0
        self.missed = 0

    def __len__(self) -> int:
        return len(self._table)

    def run(self, candidates: Sequence[Candidate]) -> list[Measurement]:
        out = []
        for c in candidates:
            m = self._table.get(c.key())
            if m is None:
                self.missed += 1
                m = Measurement("invalid", f"no recorded measurement for {c.workload} with schedule "
                                           f"{c.schedule.dumps()}: the replay runner serves only the "
                                           f"{len(self._table)} candidates it was given")
            else:
                self.served += 1
            out.append(m)
        return out

    def reference(self, workload: Workload, threads: int = 1) -> Measurement:
        return self._reference

    def reference_name(self, workload: Workload) -> str:
        return self._reference_name
