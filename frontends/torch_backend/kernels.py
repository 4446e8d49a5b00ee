"""Schedules and compiled kernels for the anchors of fusion groups.

``choose_schedule``: the tuning database's best verified record for the workload on this target
(``threads`` or fewer), else -- in ``"default"`` mode -- the cost model's best prediction among a
candidate set (the space sampled plus the known-good packing recipe of MLIR_NOTES), else -- in
``"max-autotune"`` -- :func:`tilewise.tuner.tune.tune` with the ``model`` strategy, which measures
and records into the database.

``load_kernel``: a shared library per (workload, schedule, target), built once with
:func:`tilewise.ir.compiler.compile_to_shared_library` into the compile cache and loaded with
ctypes; a second process finds the library and skips MLIR entirely.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import threading

import numpy as np

from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload

log = logging.getLogger("tilewise.torch_backend")
_LOCK = threading.Lock()

# Kernels run on torch's own OpenMP team (ir.compiler.openmp_runtime: the libgomp adapter).  Where
# that adapter cannot be built they run on libiomp5's threads, eager ops on torch's pool: with the
# default 200 ms spin after each parallel region the two pools fight over the cores (2-5x slower
# end to end on 2 cores).  Idle libiomp5 threads then sleep at once; read when libiomp5 initialises.
os.environ.setdefault("KMP_BLOCKTIME", "0")


@functools.lru_cache(maxsize=1)
def warn_if_torch_threads_spin(threads: int) -> None:
    """Only where kernels run on libiomp5 (no libgomp adapter): torch's bundled libgomp spins its
    idle threads after every eager op (it reads ``OMP_WAIT_POLICY`` once, when ``import torch``
    loads it), and a multi-threaded kernel that follows an eager op shares the cores with them.
    Measured on 2 cores (bench/torch_backend.py): transformer block (4x128x512) 22.0 -> 14.4 ms and
    MLP 64x512 2.68 -> 1.42 ms with ``OMP_WAIT_POLICY=PASSIVE``.  One log line, once per process."""
    from tilewise.ir.compiler import openmp_runtime
    if threads > 1 and "libiomp5" in os.path.basename(openmp_runtime()) \
            and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        log.warning("tilewise kernels run on %d threads while torch's OpenMP threads spin between eager ops; "
                    "start Python with OMP_WAIT_POLICY=PASSIVE for the multi-threaded kernels to get the "
                    "cores (up to 1.9x faster end to end on 2 cores)", threads)


@functools.lru_cache(maxsize=1)
def target():
    from tilewise.core.target import detect
    return detect()


def open_db(db: str | None):
    from tilewise.datasets.base import default_location, open_store
    location = db or default_location()
    if "://" not in location:
        os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    return open_store(location)


def database_schedule(store, w: Workload, threads: int, max_rel_error: float | None) -> Schedule | None:
    """The best verified schedule the store holds for ``w`` on this target, within the budget."""
    from tilewise.profiling.measure import error_bound
    bound = error_bound(w, max_rel_error)
    for r in store.query(w, target()):
        if int(r.schedule.get("threads", 1)) > threads:
            continue
        if r.measurement.rel_error is not None and r.measurement.rel_error > bound:
            continue
        return r.schedule
    return None


def recipe_schedules(w: Workload, threads: int) -> list[Schedule]:
    """Hand schedules known to be good on CPUs (MLIR_NOTES: B-panel packing, 6x16 / 4x16 register
    tiles, threads over n); they join the cost model's candidates and guard against an empty space."""
    dims = w.loop_dims
    out = []
    if w.op in ("matmul", "batch_matmul"):
        m, n, k = dims["m"], dims["n"], dims["k"]
        lanes = target().simd_lanes(w.dtype)
        pdim = "b" if "b" in dims and dims["b"] >= threads > 1 else "n"
        for mr, nr in ((6, 2 * lanes), (4, 2 * lanes), (4, lanes)):
            nr = min(nr, n)
            kc = min(k, 512)
            base = dict(reg_tile=(min(mr, m), nr), vectorize=True, unroll=1, threads=threads,
                        parallel_dim=pdim, precision=w.dtype, interchange=(0, 1, 2))
            if n >= nr:     # a last partial panel is peeled (GPT-2's 50257-column LM head)
                out.append(Schedule(tile=(0, nr, kc), promote=True, **base))
            out.append(Schedule(tile=(0, min(64, n) // nr * nr or nr, 0), promote=False, **base))
    elif w.op == "conv2d_nhwc":
        # what 24 tuned trials found for conv2d_nhwc:1x16x16x64,3x3x64x128 on a Zen 3 (468 us, 1.16x
        # torch; the cost model's first pick ran 1044 us): 4-row cache tiles, up to 128 filters,
        # a (pixels x 2 vectors) register tile, 4 channels per reduction step
        d = w.loop_dims
        lanes = target().simd_lanes(w.dtype)
        for owr in (5, 4, 6):
            out.append(Schedule(tile=[min(4, d["oh"]), 0, min(128, d["f"]), 0], c_tile=min(4, d["c"]),
                                reg_tile=[min(owr, d["ow"]), min(2 * lanes, d["f"])], vectorize=True,
                                threads=threads, parallel_dim="oh", precision=w.dtype))
        out.append(w.kind.default_schedule(w, target()).replace(threads=threads))
    else:
        out.append(w.kind.default_schedule(w, target()).replace(threads=threads))
    legal = []
    for s in out:
        try:
            w.kind.validate(w, s)
            legal.append(s)
        except ValueError:
            continue
    return legal


def model_schedule(w: Workload, threads: int, n_samples: int = 256, seed: int = 0) -> list[Schedule]:
    """Candidates ranked by the cost model's predicted latency (best first), nothing measured."""
    from tilewise.core.candidate import Candidate
    from tilewise.tuner.space import SpaceOptions, space_for
    cands = recipe_schedules(w, threads)
    try:
        space = space_for(w, target(), SpaceOptions(max_threads=threads))
        rng = np.random.default_rng(seed)
        seen = set(cands)
        for _ in range(n_samples):
            s = space.sample(rng)
            if int(s.get("threads", 1)) == threads and s not in seen:
                seen.add(s)
                cands.append(s)
    except (ValueError, RuntimeError) as e:
        log.info("tilewise: no search space for %s (%s); using the recipe schedules", w, e)
    if len(cands) <= 1:
        return cands
    model, _, _ = _cost_model()
    if getattr(model, "fitted", True) is False:
        return cands
    pred = model.predict([Candidate(w, s) for s in cands], target())
    return [cands[i] for i in np.argsort(pred, kind="stable")]


#: op kinds whose default-mode schedule is the fastest of the cost model's top three, timed at
#: compile time: on a Zen 3 the model's first conv pick ran 2.2x slower than 24 tuned trials
#: (conv2d_nhwc:1x16x16x64,3x3x64x128: 1044 vs 468 us) where its matmul picks match tuning
MEASURED_PICK = ("conv2d_nhwc",)


def measured_pick(w: Workload, candidates: list[Schedule], cache_dir: str | None, top: int = 3):
    """``(schedule, kernel)``: the fastest of the first ``top`` candidates that build, each checked
    against the float64 reference and timed on random inputs (median of a few runs; a build or a
    wrong result drops that candidate).  Raises RuntimeError when none qualifies."""
    import statistics
    from tilewise.profiling.measure import check, make_problem, time_runs
    problem = make_problem(w, w.dtype, seed=0)
    bound = w.kind.tolerance(w, w.dtype)
    best, errors = None, []
    for s in candidates[:top]:
        try:
            k = load_kernel(w, s, cache_dir)
            err = check(k, problem)
            if not err <= bound:
                errors.append(f"{s.dumps()}: rel. error {err:.2e}")
                continue
            call = k.bind(problem.arrays)
            t = statistics.median(time_runs(call, repeats=5, min_time_s=0.02, warmup=1, max_repeats=50))
        except Exception as e:
            errors.append(str(e)[:160])
            continue
        if best is None or t < best[0]:
            best = (t, s, k)
    if best is None:
        raise RuntimeError("no candidate qualified: " + "; ".join(errors[:2]))
    return best[1], best[2]


@functools.lru_cache(maxsize=1)
def _cost_model():
    from tilewise.tuner.model_search import resolve_model
    return resolve_model(None, target())


def tuned_schedule(w: Workload, threads: int, trials: int, max_rel_error: float | None, store) -> Schedule | None:
    """max-autotune: measure ``trials`` schedules (model-guided), recorded into ``store``."""
    from tilewise.tuner.tune import TuneConfig, tune
    config = TuneConfig(trials=trials, strategy="model", max_threads=threads, max_rel_error=max_rel_error,
                        top_k=2, ab_rounds=3)
    result = tune(w, target(), config, store=store)
    return result.best.schedule if result.best is not None else None


# --- the compile cache of kernel libraries ----------------------------------------------------
def kernel_key(w: Workload, s: Schedule) -> str:
    from tilewise import __version__ as tw_version
    text = "\n".join([w.key(), s.dumps(), target().key(), str(tw_version)])
    return hashlib.sha256(text.encode()).hexdigest()


def load_kernel(w: Workload, s: Schedule, cache_dir: str | None):
    """A LibraryKernel for ``w`` under ``s`` (C-interface entry point, which the group runners
    call), from the compile cache or, without one, from this process's scratch folder.

    Raises ScheduleError / CompileError when the schedule does not build."""
    from tilewise.ir.compiler import LibraryKernel, compile_to_shared_library
    path = cached_library(cache_dir, kernel_key(w, s) + ".so", lambda tmp: compile_to_shared_library(w, s, tmp))
    return LibraryKernel(path, w.kind.args(w, s.get("precision", w.dtype)))


@functools.lru_cache(maxsize=1)
def scratch_dir() -> str:
    """Where kernels go without a compile cache: one folder per process, removed at exit."""
    import atexit
    import shutil
    folder = tempfile.mkdtemp(prefix="tilewise-kernels-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def cached_library(cache_dir: str | None, name: str, build) -> str:
    """``<cache_dir>/kernels/<name>`` (``cache_dir`` None: :func:`scratch_dir`), built by
    ``build(path)`` when missing: into a temporary file renamed into place (a crash or a concurrent
    process never sees half a library); builds serialized."""
    folder = os.path.join(cache_dir if cache_dir is not None else scratch_dir(), "kernels")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".build-", suffix=".so")
        os.close(fd)
        try:
            with _LOCK:
                build(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path
