"""The CPU A/B re-timing, in the runner's timing process: :meth:`LocalRunner.time_ab
<tilewise.profiling.runner.LocalRunner.time_ab>`.

The finalists are built by the runner's build workers into shared libraries, like any candidate
(when no build worker runs yet -- a tune the store answered -- the timing process JIT-compiles them
itself rather than start a worker for a few kernels); the timing process
(:mod:`tilewise.profiling.timer`, already started and warm from the search) serves one
``{"kind": "ab", ...}`` request (:func:`serve_ab`): on the timing cores ``cores`` it loads every
library (or compiles every schedule), checks it against the float64 reference (the error is
reported, the kernel still timed), gives each kernel its own output buffers so the interleaved runs
do not alias, then times round-robin: every kernel ``runs_per_round`` runs after one warm-up run,
then the library baseline in its own process (:class:`~tilewise.profiling.baseline.BaselineProcess`,
BLAS at ``threads``), ``rounds`` times.  A schedule the op kind rejects is ``invalid``, one that
does not build a ``compile_error`` (from the build workers, or the timing process on a cold
runner); a crash, a hang or the baseline's death ends the timing process (the runner starts another
on its next use) and makes every entry a ``runtime_error`` (``timeout``), as for any candidate.

Why not a process of its own per re-timing (as until 2026-12): a fresh child paid the Python and
MLIR imports and JIT-compiled every finalist again, ~0.5-1 s per ``tune()`` of a small workload
(2-trial ``tune`` of matmul:64x48x32: 3.4 s, of which 1.1 s was that child), while the timing
process and the build workers already run with everything imported.  A library and a JIT-compiled
kernel of one schedule run at the same speed (``runner``'s docstring: 1.00-1.005).
"""
from __future__ import annotations

from tilewise.core.measurement import Measurement
from tilewise.profiling.base import ABTimings


def ab_timings(answer: dict) -> ABTimings:
    """The timing process's answer to an A/B request as :class:`ABTimings`."""
    return ABTimings({k: Measurement.from_json(v) for k, v in answer["measurements"].items()},
                     Measurement.from_json(answer["reference"]), answer["reference_name"])


def all_failed(names, status: str, why: str) -> ABTimings:
    """Every entry and the reference ``status`` with ``why`` (a crash, a hang: nothing was timed)."""
    return ABTimings({k: Measurement(status, why) for k in names}, Measurement(status, why))


def _kernels(workload, req: dict) -> tuple[dict, dict]:
    """name -> (bound run, rel_error, kernel) of every library that loads and every schedule that
    compiles; name -> failure of the rest."""
    from tilewise.core.schedule import Schedule
    from tilewise.profiling.measure import check, make_problem, page_aligned_empty
    problems: dict = {}
    runs, failed = {}, {}
    sources = [(k, path, None) for k, path in req.get("libraries", {}).items()]
    sources += [(k, None, Schedule.from_json(js)) for k, js in req.get("schedules", {}).items()]
    for name, path, schedule in sources:
        precision = req["precisions"][name]
        if precision not in problems:
            problems[precision] = make_problem(workload, precision, seed=req["seed"])
        p = problems[precision]
        kernel = _load(workload, precision, path) if path else _compile(workload, schedule)
        if isinstance(kernel, Measurement):
            failed[name] = kernel
            continue
        rel = check(kernel, p)
        arrays = p.inputs + [page_aligned_empty(o.shape, o.dtype) for o in p.outputs]
        runs[name] = (kernel.bind(arrays), rel, kernel)
    return runs, failed


def _load(workload, precision: str, path: str):
    from tilewise.ir.compiler import LibraryKernel
    try:
        return LibraryKernel(path, workload.kind.args(workload, precision))
    except (OSError, AttributeError) as e:
        return Measurement("runtime_error", f"cannot load the kernel library: {e}")


def _compile(workload, schedule):
    """JIT-compiled here: a runner with no build worker running yet (a tune the store answered)
    would otherwise start one only for this."""
    from tilewise.ir.compiler import compile
    from tilewise.ir.ops.base import ScheduleError
    try:
        return compile(workload, schedule)
    except Exception as e:          # noqa: BLE001  (the op kind or the pipeline rejected it: data)
        return Measurement("invalid" if isinstance(e, ScheduleError) else "compile_error", str(e))


def _interleaved(runs: dict, baseline, rounds: int, per_round: int) -> tuple[dict[str, list[float]], list[float]]:
    """Round-robin: every kernel, then the baseline (in its own process), ``rounds`` times."""
    from tilewise.profiling.measure import time_runs
    times: dict[str, list[float]] = {k: [] for k in runs}
    reference: list[float] = []
    for _ in range(rounds):
        for name, (fn, _, _) in runs.items():
            times[name].extend(time_runs(fn, repeats=per_round, min_time_s=0.0, warmup=1))
        reference.extend(baseline.time(per_round))
    return times, reference


def serve_ab(req: dict, place_threads) -> dict:
    """In the timing process.  ``req``: ``{"kind": "ab", "workload", "libraries": {name: path},
    "schedules": {name: schedule JSON} (compiled here), "precisions": {name: precision}, "rounds",
    "runs_per_round", "threads", "seed", "cores"}`` ->
    ``{"measurements": {name: ...}, "reference", "reference_name"}`` (``measurements`` holds the
    loaded libraries' entries; the runner adds the builds that failed)."""
    from tilewise.core.workload import Workload
    from tilewise.profiling.baseline import BaselineProcess
    place_threads(req["cores"])
    w = Workload.from_json(req["workload"])
    runs, failed = _kernels(w, req)
    try:
        place_threads(req["cores"])          # the check runs may have started OpenMP's threads
        with BaselineProcess(str(w), req["threads"], req["seed"]) as baseline:
            times, ref_times = _interleaved(runs, baseline, req["rounds"], req["runs_per_round"])
            name = baseline.name
    finally:
        for _, _, kernel in runs.values():
            if hasattr(kernel, "close"):     # a loaded library is unloaded; a JIT kernel has nothing to
                kernel.close()               # unload
    out = {k: Measurement("ok", "", tuple(times[k]), rel) for k, (_, rel, _) in runs.items()}
    out.update(failed)
    return {"measurements": {k: m.to_json() for k, m in out.items()},
            "reference": Measurement("ok", "", tuple(ref_times)).to_json(), "reference_name": name}
