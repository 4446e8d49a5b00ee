"""The CPU A/B re-timing, in a process of its own: :meth:`LocalRunner.time_ab
<tilewise.profiling.runner.LocalRunner.time_ab>`.

One child per re-timing (``python -m tilewise.profiling.ab``, the request as one JSON line on
stdin, the answer as one JSON line on stdout; whatever a kernel prints goes to stderr), so a
finalist that crashes or hangs ends this child, not the tuner.  The child runs on the timing cores
``cores`` (the baseline process it starts inherits them) with its BLAS capped at ``threads``;
it JIT-compiles every schedule, checks it against the float64 reference (the error is reported,
the kernel still timed), gives each kernel its own output buffers so the interleaved runs do not
alias, then times round-robin: every kernel ``runs_per_round`` runs after one warm-up run, then
the library baseline in its own process (:class:`~tilewise.profiling.baseline.BaselineProcess`),
``rounds`` times.  A schedule that does not compile is ``invalid`` (the op kind rejects it) or a
``compile_error``; a crash, a hang or the baseline's death ends the child and makes every entry a
``runtime_error`` (``timeout``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tilewise.core.measurement import Measurement
from tilewise.profiling.base import ABTimings
from tilewise.profiling.procs import exit_reason


def time_ab_in_child(request: dict, timeout_s: float) -> ABTimings:
    """Run the re-timing ``request`` (see :func:`_serve`) in a child; failures come back as data."""
    names = list(request["schedules"])
    try:
        proc = subprocess.run([sys.executable, "-m", "tilewise.profiling.ab"], input=json.dumps(request) + "\n",
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return _all_failed(names, "timeout", f"the A/B re-timing exceeded {timeout_s:g} s")
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines:
        why = " ".join((proc.stderr or "").split()[-40:])
        return _all_failed(names, "runtime_error", f"the A/B re-timing process {exit_reason(proc.returncode)}: {why}")
    answer = json.loads(lines[-1])
    return ABTimings({k: Measurement.from_json(v) for k, v in answer["measurements"].items()},
                     Measurement.from_json(answer["reference"]), answer["reference_name"])


def _all_failed(names: list[str], status: str, why: str) -> ABTimings:
    return ABTimings({k: Measurement(status, why) for k in names}, Measurement(status, why))


def _kernels(workload, schedules: dict, seed: int) -> tuple[dict, dict]:
    """name -> (bound run, rel_error) of every schedule that compiles; name -> failure of the rest."""
    from tilewise.core.schedule import Schedule
    from tilewise.ir.compiler import compile
    from tilewise.ir.ops.base import ScheduleError
    from tilewise.profiling.measure import check, make_problem, page_aligned_empty
    problems: dict = {}
    runs, failed = {}, {}
    for name, js in schedules.items():
        s = Schedule.from_json(js)
        precision = s.get("precision", workload.dtype)
        if precision not in problems:
            problems[precision] = make_problem(workload, precision, seed=seed)
        p = problems[precision]
        try:
            kernel = compile(workload, s)
        except Exception as e:          # noqa: BLE001  (the default failing is worth saying, not fatal)
            failed[name] = Measurement("invalid" if isinstance(e, ScheduleError) else "compile_error", str(e))
            continue
        rel = check(kernel, p)
        arrays = p.inputs + [page_aligned_empty(o.shape, o.dtype) for o in p.outputs]
        runs[name] = (kernel.bind(arrays), rel)
    return runs, failed


def _interleaved(runs: dict, baseline, rounds: int, per_round: int) -> tuple[dict[str, list[float]], list[float]]:
    """Round-robin: every kernel, then the baseline (in its own process), ``rounds`` times."""
    from tilewise.profiling.measure import time_runs
    times: dict[str, list[float]] = {k: [] for k in runs}
    reference: list[float] = []
    for _ in range(rounds):
        for name, (fn, _) in runs.items():
            times[name].extend(time_runs(fn, repeats=per_round, min_time_s=0.0, warmup=1))
        reference.extend(baseline.time(per_round))
    return times, reference


def _serve(req: dict) -> dict:
    """``req``: ``{"workload", "schedules": {name: schedule JSON}, "rounds", "runs_per_round",
    "threads", "seed", "cores"}`` -> ``{"measurements": {name: ...}, "reference", "reference_name"}``."""
    from tilewise.core.workload import Workload
    from tilewise.profiling.baseline import BaselineProcess
    from tilewise.profiling.procs import pin
    pin(req["cores"])
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=req["threads"])
    except ImportError:
        pass
    w = Workload.from_json(req["workload"])
    runs, failed = _kernels(w, req["schedules"], req["seed"])
    with BaselineProcess(str(w), req["threads"], req["seed"]) as baseline:
        times, ref_times = _interleaved(runs, baseline, req["rounds"], req["runs_per_round"])
        name = baseline.name
    reference = Measurement("ok", "", tuple(ref_times))
    out = {k: Measurement("ok", "", tuple(times[k]), rel) for k, (_, rel) in runs.items()}
    out.update(failed)
    return {"measurements": {k: out[k].to_json() for k in req["schedules"]}, "reference": reference.to_json(),
            "reference_name": name}


if __name__ == "__main__":
    _protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                      # whatever a kernel prints lands on stderr
    sys.stdout = sys.stderr
    _protocol.write(json.dumps(_serve(json.loads(sys.stdin.readline()))) + "\n")
    _protocol.flush()
