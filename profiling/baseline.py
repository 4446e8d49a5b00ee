"""Time the library baseline (numpy/OpenBLAS, ...) in its own process.

Two threading runtimes in one process (OpenBLAS's pool and the OpenMP pool our kernels use) spin
after their parallel regions and starve each other on a 2-core machine: interleaving numpy with a
2-thread kernel in-process measured numpy at 11 GFLOP/s instead of ~195 (512^3).  So the baseline
runs in a child process that owns its own pool, and each side lets the other's spinning threads
go to sleep (``settle_s``) before it times anything.

Protocol on the child's stdin/stdout: one line in (``{"runs": N}``), one JSON line out
(``{"times_s": [...]}``).

Given a schedule (``BaselineProcess(..., schedule=s)``, ``python -m tilewise.profiling.baseline
WORKLOAD THREADS SEED SCHEDULE_JSON``) the child times that tilewise kernel instead of the library:
compiled there, checked against the float64 reference (a wrong kernel ends the child with the
error), then served with the same protocol.  That is how a peer's kernel in another runtime (TVM,
bench/tvm_matmul.py) is timed side by side with tilewise's: both in one interleaved window.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tilewise.profiling.procs import ask_to_exit

#: longer than the OpenMP (KMP_BLOCKTIME, 200 ms) and OpenBLAS spin-wait periods
SETTLE_S = 0.3


class BaselineProcess:
    def __init__(self, workload: str, threads: int, seed: int = 0, schedule=None):
        self.threads = threads
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        extra = [json.dumps(schedule.to_json())] if schedule is not None else []
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tilewise.profiling.baseline", workload, str(threads), str(seed), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        hello = self._read()
        self.name = hello["name"]

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            lines = [ln for ln in self._proc.stderr.read().splitlines() if ln.strip()]
            raise RuntimeError(f"baseline process died: {lines[-1][-300:] if lines else 'no message'}")
        return json.loads(line)

    def time(self, runs: int) -> list[float]:
        if self.threads > 1:
            time.sleep(SETTLE_S)      # let our own OpenMP workers go to sleep first
        self._proc.stdin.write(json.dumps({"runs": runs}) + "\n")
        self._proc.stdin.flush()
        return self._read()["times_s"]

    def close(self) -> None:
        ask_to_exit(self._proc, 5)
        if self._proc.poll() is None:
            self._proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _tilewise_kernel(w, schedule_json: str, seed: int):
    """(name, run) of the tilewise kernel for ``schedule_json``, checked against the reference."""
    from tilewise.ir.compiler import CompileError, compile
    from tilewise.ir.ops.base import ScheduleError
    from tilewise.core.schedule import Schedule
    from tilewise.profiling.measure import check, error_bound, make_problem

    s = Schedule.from_json(json.loads(schedule_json))
    problem = make_problem(w, s.get("precision", w.dtype), seed=seed)
    try:
        kernel = compile(w, s)
    except (ScheduleError, CompileError) as e:
        raise SystemExit(f"the tilewise schedule does not build: {str(e).splitlines()[0]}")
    rel, bound = check(kernel, problem), error_bound(w, None)
    if not rel <= bound:
        raise SystemExit(f"the tilewise kernel is wrong: relative error {rel:.3g} exceeds {bound:.3g}")
    return f"tilewise {s.key()[:12]}", kernel.bind(problem.arrays)


def _serve(workload: str, threads: int, seed: int, schedule_json: str | None = None) -> None:
    import numpy as np

    from tilewise.ir.dtypes import from_storage
    from tilewise.core.workload import Workload
    from tilewise.profiling.measure import make_problem, time_runs

    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:
        pass
    w = Workload.parse(workload)
    if schedule_json:
        name, run = _tilewise_kernel(w, schedule_json, seed)
    else:
        problem = make_problem(w, w.dtype, seed=seed)
        specs = [a for a in w.kind.args(w, w.dtype) if not a.is_output]
        inputs32 = [from_storage(x, a.dtype).astype(np.float32) for x, a in zip(problem.inputs, specs)]
        name, run = w.kind.baseline(w, inputs32)
    print(json.dumps({"name": name}), flush=True)
    for line in sys.stdin:
        runs = int(json.loads(line)["runs"])
        times = time_runs(run, repeats=runs, min_time_s=0.0, warmup=2)
        if threads > 1:
            time.sleep(SETTLE_S)      # our pool's threads stop spinning before the parent times
        print(json.dumps({"times_s": times}), flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
