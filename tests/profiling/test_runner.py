import math
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from tilewise.ir import Schedule, Workload
from tilewise.core.candidate import Candidate, candidate_key
from tilewise.profiling.base import RunnerConfig, create
from tilewise.profiling.build import build_shared_library
from tilewise.core.measurement import Measurement
from tilewise.profiling.runner import LocalRunner, ReplayRunner

SMALL = Workload.parse("matmul:64x48x32:f32")
GOOD = [Schedule(tile=[0, 16, 32], promote=True, reg_tile=[4, 16]), Schedule(reg_tile=[4, 16]),
        Schedule(reg_tile=[2, 8], unroll=2), Schedule(tile=[32, 16, 0], reg_tile=[8, 8])]

# Kernels that misbehave, exporting the same C interface as a compiled kernel (one memref
# descriptor pointer per argument: A, B, then the output C).
C_KERNEL = """
#include <stdlib.h>
#include <unistd.h>
typedef struct { float *allocated, *aligned; long offset, sizes[2], strides[2]; } M2;
void _mlir_ciface_kernel(M2 *a, M2 *b, M2 *c) { %s }
"""
FAULTS = {
    "segv": "*(volatile int *)0 = 0;",
    "hang": "volatile int spin = 1; while (spin) {}",
    "abort": "abort();",
    "wrong": "for (long i = 0; i < c->sizes[0] * c->sizes[1]; i++) c->aligned[c->offset + i] = 1.0f;",
    "noop": "(void)c;",
    "oom": "size_t n = 6UL << 30; volatile char *p = malloc(n); for (size_t i = 0; i < n; i += 4096) p[i] = 1;",
}
_MATMUL = """for (long i = 0; i < a->sizes[0]; i++) for (long j = 0; j < b->sizes[1]; j++) {
          float s = 0;
          for (long k = 0; k < a->sizes[1]; k++)
            s += a->aligned[a->offset + i * a->strides[0] + k * a->strides[1]]
               * b->aligned[b->offset + k * b->strides[0] + j * b->strides[1]];
          c->aligned[c->offset + i * c->strides[0] + j * c->strides[1]] = s; }"""
# right on the checked run, then a crash in the timed runs (while the builds are paused)
FAULTS["crash_timed"] = "static int calls; if (calls++) *(volatile int *)0 = 0;" + _MATMUL
FAULTS["slow"] = "usleep(20000);" + _MATMUL          # right, and 20 ms a call


class FaultBuilder:
    """Real schedules go through the ir pipeline; a schedule with a ``fault`` knob gets a library
    compiled from C, or a build that hangs or crashes its worker."""

    def __init__(self, libraries: dict):
        self.libraries = libraries

    def __call__(self, candidate: Candidate, library_path: str) -> None:
        fault = candidate.schedule.get("fault")
        if fault is None:
            return build_shared_library(candidate, library_path)
        if fault == "build_hang":
            time.sleep(3600)
        if fault == "build_crash":
            os.abort()
        if fault == "build_heartbeat":          # 3 s of timestamps every 2 ms, then a failed build
            with open(self.libraries["heartbeat"], "w") as fh:
                end = time.monotonic() + 3.0
                while time.monotonic() < end:
                    fh.write(f"{time.monotonic()}\n")
                    fh.flush()
                    time.sleep(0.002)
            raise RuntimeError("a heartbeat, not a kernel")
        shutil.copy(self.libraries[fault], library_path)


@pytest.fixture(scope="module")
def fault_libraries(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    out = {}
    for name, body in FAULTS.items():
        src = d / f"{name}.c"
        src.write_text(C_KERNEL % body)
        out[name] = str(d / f"{name}.so")
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", out[name], str(src)], check=True)
    return out


def _fault(name: str, **knobs) -> Candidate:
    return Candidate(Workload.parse("matmul:16x16x16:f32"), Schedule(fault=name, **knobs))


@pytest.mark.jit
@pytest.mark.slow
def test_faulty_candidates_are_recorded_and_the_batch_goes_on(fault_libraries):
    config = RunnerConfig(build_workers=2, build_timeout_s=5, run_timeout_s=2, repeats=5, min_time_s=0.005,
                          memory_limit_bytes=5 << 30)     # below the "oom" kernel's 6 GiB
    good = [Candidate(SMALL, s) for s in GOOD[:3]]
    batch = [good[0], _fault("segv"), _fault("build_hang"), good[1], _fault("hang"), _fault("wrong"),
             _fault("crash_timed", threads=2), _fault("abort"), _fault("build_crash"), _fault("noop"),
             _fault("oom"), good[2]]
    expected = ["ok", "runtime_error", "timeout", "ok", "timeout", "wrong_result", "runtime_error",
                "runtime_error", "compile_error", "wrong_result", "runtime_error", "ok"]
    t0 = time.monotonic()
    with LocalRunner(config, builder=FaultBuilder(fault_libraries)) as runner:
        results = runner.run(batch)
        assert [m.status for m in results] == expected, [(m.status, m.error_msg) for m in results]
        by_fault = {c.schedule.get("fault"): m for c, m in zip(batch, results)}
        assert "SIGSEGV" in by_fault["segv"].error_msg
        assert "SIGABRT" in by_fault["abort"].error_msg
        assert "SIGABRT" in by_fault["build_crash"].error_msg
        assert "killed by" in by_fault["oom"].error_msg      # malloc failed under the cap: a crash
        assert "build exceeded" in by_fault["build_hang"].error_msg
        assert "run exceeded" in by_fault["hang"].error_msg
        assert by_fault["wrong"].rel_error > 0.1 and by_fault["noop"].rel_error == float("inf")
        assert "SIGSEGV" in by_fault["crash_timed"].error_msg
        for m in (results[0], results[3], results[11]):
            assert len(m.times_s) >= 5 and 0 < m.min_s <= m.median_s < 0.01 and m.rel_error < 1e-5
        # the restarted processes serve the next batch normally
        again = runner.run(good)
        assert [m.status for m in again] == ["ok"] * 3
    assert time.monotonic() - t0 < 40


HANGING_CALLER = """
import shutil, sys
from tilewise.ir import Schedule, Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.base import RunnerConfig
from tilewise.profiling.runner import LocalRunner

class CopyBuilder:
    def __init__(self, path):
        self.path = path

    def __call__(self, candidate, library_path):
        shutil.copy(self.path, library_path)

if __name__ == "__main__":
    runner = LocalRunner(RunnerConfig(build_workers=1, run_timeout_s=600), builder=CopyBuilder(sys.argv[1]))
    print("running", flush=True)
    runner.run([Candidate(Workload.parse("matmul:16x16x16:f32"), Schedule(fault="hang"))])
"""


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
        except OSError:
            pass
    return out


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_caller(fault_libraries, tmp_path):
    script = tmp_path / "caller.py"
    script.write_text(HANGING_CALLER)
    env = dict(os.environ, TMPDIR=str(tmp_path))      # where the runner keeps its libraries
    caller = subprocess.Popen([sys.executable, str(script), fault_libraries["hang"]], stdout=subprocess.PIPE,
                              text=True, env=env)
    assert caller.stdout.readline().strip() == "running"
    time.sleep(4)                      # the timing process is spinning in the kernel by now
    children = _children(caller.pid)
    assert len(children) >= 2          # a build worker and the timing process
    caller.kill()
    caller.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{c}") for c in children):
        time.sleep(0.2)
    for c in children:                 # reaped by init, or a zombie at worst: not running
        assert not os.path.exists(f"/proc/{c}") or open(f"/proc/{c}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    assert not list(tmp_path.glob("tilewise-runner-*"))      # the timing process removed them


@pytest.mark.parametrize("min_threads, paused", [(1, True), (None, False)])
def test_builds_stop_while_a_one_thread_candidate_is_timed(fault_libraries, tmp_path, min_threads, paused):
    """One worker builds for 3 s, writing a timestamp every 2 ms, while the timer times a 1-thread
    kernel for >= 0.3 s: with pause_builds_min_threads=1 the builder is stopped meanwhile, and its
    timestamps have a gap that long; by default (2: 1-thread kernels time while builds go on) it
    runs on."""
    libraries = dict(fault_libraries, heartbeat=str(tmp_path / "heartbeat"))
    pause = {} if min_threads is None else {"pause_builds_min_threads": min_threads}
    config = RunnerConfig(build_workers=2, repeats=10, min_time_s=0.3, warmup=1, **pause)
    with LocalRunner(config, builder=FaultBuilder(libraries)) as runner:
        runner.run([_fault("noop")])             # start-up: the timer and a worker ready (3 s covers the other)
        results = runner.run([_fault("build_heartbeat"), _fault("slow")])
    assert [m.status for m in results] == ["compile_error", "ok"], [m.error_msg for m in results]
    timed_s = sum(results[1].times_s)
    assert timed_s >= 0.25
    stamps = [float(x) for x in open(libraries["heartbeat"]).read().split()]
    gap = max(b - a for a, b in zip(stamps, stamps[1:]))
    if paused:
        assert gap >= 0.8 * timed_s, (gap, timed_s)
    else:
        assert gap < 0.5 * timed_s, (gap, timed_s)


@pytest.mark.jit
def test_real_candidates_are_checked_and_timed():
    config = RunnerConfig(build_workers=2, repeats=10, min_time_s=0.01)
    batch = [Candidate(SMALL, s) for s in GOOD] + [Candidate(SMALL, Schedule(reg_tile=[4, 0]))]
    if len(os.sched_getaffinity(0)) >= 2:
        batch.append(Candidate(SMALL, Schedule(reg_tile=[4, 16], threads=2)))
    with create("local", config) as runner:
        results = runner.run(batch)
    for m in results[:4] + results[5:]:
        assert m.status == "ok", m.error_msg
        assert len(m.times_s) >= 10 and all(t > 0 for t in m.times_s)
        assert m.min_s <= m.median_s and m.rel_error < 1e-5
        # recorded, not bounded: one preempted run among a microsecond kernel's 1000 lifts it above 10
        assert math.isfinite(m.cv) and m.cv >= 0 and m.compile_time_s > 0
        q1, q3 = m.quantiles_s()
        assert m.min_s <= q1 <= m.median_s <= q3
    assert results[4].status == "invalid" and "reg_tile" in results[4].error_msg


@pytest.mark.jit
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_the_ab_retimes_round_robin_with_the_baseline_in_a_process_of_its_own(target, warm):
    """Timed by the timing process, the baseline in its own process; built by the build workers
    when they run (warm: after a search), else compiled by the timing process itself (cold)."""
    schedules = {"default": SMALL.kind.default_schedule(SMALL, target), "candidate1": GOOD[1],
                 "broken": Schedule(reg_tile=[4, 0])}
    with LocalRunner(RunnerConfig(build_workers=1)) as runner:
        if warm:
            assert runner.run([Candidate(SMALL, GOOD[2])])[0].ok
        ab = runner.time_ab(SMALL, schedules, rounds=2, runs_per_round=3, threads=1)
    assert set(ab.measurements) == set(schedules)
    for name in ("default", "candidate1"):
        m = ab.measurements[name]
        assert m.ok and len(m.times_s) == 2 * 3 and all(t > 0 for t in m.times_s) and m.rel_error < 1e-5
    assert ab.measurements["broken"].status == "invalid"
    assert ab.reference.ok and len(ab.reference.times_s) == 2 * 3 and ab.reference_name == "numpy"


@pytest.mark.jit
def test_an_ab_that_overruns_or_crashes_is_data_not_a_crash(fault_libraries):
    """The A/B runs in the runner's timing process: a finalist that hangs or crashes it makes every
    entry a timeout / runtime_error; the runner starts a fresh timing process and goes on."""
    config = RunnerConfig(build_workers=1, run_timeout_s=0.5)
    with LocalRunner(config, builder=FaultBuilder(fault_libraries)) as runner:
        tiny = Workload.parse("matmul:16x16x16:f32")
        ab = runner.time_ab(tiny, {"default": GOOD[1], "hang": Schedule(fault="hang")}, rounds=1, runs_per_round=1)
        assert {m.status for m in ab.measurements.values()} == {"timeout"} and ab.reference.status == "timeout"
        assert "exceeded" in ab.measurements["default"].error_msg
        ab = runner.time_ab(tiny, {"default": GOOD[1], "crash": Schedule(fault="crash_timed")}, rounds=2,
                            runs_per_round=1)
        assert {m.status for m in ab.measurements.values()} == {"runtime_error"}
        assert "SIGSEGV" in ab.measurements["default"].error_msg
        ab = runner.time_ab(tiny, {"default": GOOD[1], "broken": Schedule(fault="build_crash")}, rounds=1,
                            runs_per_round=2)
        assert ab.measurements["default"].ok and len(ab.measurements["default"].times_s) == 2
        assert ab.measurements["broken"].status == "compile_error" and ab.reference.ok
    with pytest.raises(RuntimeError, match="closed"):
        runner.time_ab(SMALL, {"default": GOOD[0]}, rounds=1, runs_per_round=1)


def test_a_closed_runner_refuses_work():
    runner = LocalRunner(RunnerConfig(build_workers=1))
    assert runner.run([]) == []
    runner.close()
    runner.close()
    with pytest.raises(RuntimeError, match="closed"):
        runner.run([Candidate(SMALL, GOOD[0])])


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        RunnerConfig(build_workers=0)
    with pytest.raises(ValueError):
        RunnerConfig(repeats=10, max_repeats=5)


# --- ReplayRunner --------------------------------------------------------------------------------
def _ok(median_s: float) -> Measurement:
    return Measurement("ok", times_s=(median_s,) * 3, rel_error=0.0)


def test_replay_serves_recorded_measurements_in_order():
    a, b = Candidate(SMALL, GOOD[0]), Candidate(SMALL, GOOD[1])
    runner = ReplayRunner({a.key(): _ok(1e-3), b.key(): _ok(2e-3)})
    assert [m.median_s for m in runner.run([b, a, b])] == [2e-3, 1e-3, 2e-3]
    assert runner.served == 3 and runner.missed == 0 and len(runner) == 2


def test_replay_accepts_records_and_pairs():
    a, b = Candidate(SMALL, GOOD[0]), Candidate(SMALL, GOOD[1])
    record = SimpleNamespace(workload=SMALL, schedule=GOOD[0], measurement=_ok(1e-3))   # a datasets.Record's shape
    runner = create("replay", [record, (b, Measurement("wrong_result", "off", rel_error=0.5))])
    assert [m.status for m in runner.run([a, b])] == ["ok", "wrong_result"]


def test_replay_answers_an_unknown_candidate_with_invalid():
    runner = ReplayRunner([(Candidate(SMALL, GOOD[0]), _ok(1e-3))])
    [m] = runner.run([Candidate(SMALL, GOOD[2])])
    assert m.status == "invalid" and "no recorded measurement" in m.error_msg and runner.missed == 1


def test_candidate_key_is_explicit_and_stable():
    c = Candidate(SMALL, GOOD[0])
    assert c.key() == candidate_key(SMALL.key(), GOOD[0]) and len(c.key()) == 64
    assert c.key() != Candidate(SMALL, GOOD[1]).key()
    assert Candidate.from_json(c.to_json()) == c


def test_replay_ab_pools_the_rounds_and_serves_its_reference():
    a, b = Candidate(SMALL, GOOD[0]), Candidate(SMALL, GOOD[1])
    ref = Measurement("ok", times_s=(5e-4,) * 2)
    runner = ReplayRunner([(a, _ok(1e-3))], reference=ref, reference_name="numpy")
    ab = runner.time_ab(SMALL, {"default": a.schedule, "candidate1": b.schedule}, rounds=3, runs_per_round=2)
    assert ab.measurements["default"].ok and len(ab.measurements["default"].times_s) == 3 * 3
    assert ab.measurements["candidate1"].status == "invalid"
    assert ab.reference.times_s == (5e-4,) * 6 and ab.reference_name == "numpy"
    plain = ReplayRunner([(a, _ok(1e-3))]).time_ab(SMALL, {"default": a.schedule}, rounds=1, runs_per_round=1)
    assert plain.reference.status == "invalid" and plain.reference_name == ""
