"""How many candidates per minute does LocalRunner measure, and how stable is what it reports?

1. Throughput: random 1-thread schedules of ``matmul:512x512x512:f32`` (the tuner's space) through
   a warm LocalRunner with 1 and 2 build workers, builds paused or not while a kernel is timed,
   under a short timing protocol (stated in the table).  Goal (issue #3): >= 500/min, 2 workers.
   Builds pause while a kernel is timed for multi-thread candidates only (the default), or always.
2. Spread: the workload's default schedule measured ``--spread-runs`` times, interleaved with random
   schedules in one batch (so it is timed while the next builds are under way, stopped or
   running by the pause setting, as in tuning); spread =
   (max - min) / median of the reported medians, and their CV, for ``--spread-trials`` fresh
   runners; the 2-thread default with and without pausing the builds; and the 1-thread one
   measured in-process with nothing else running (the machine's floor).
   Goal: spread <= 5%.
3. Rank stability of a memory-bound kernel: every 1-thread schedule of ``add:512x768:f32`` (4.7 MB,
   L3-resident) measured in two rounds of fresh builds in one batch with 1 build worker, as
   ``tilewise collect --rounds 2`` does; Spearman of the two rounds' medians per trial, with the
   builds paused for every candidate or for multi-thread ones only (a compile on the other core
   shares L3, memory and clock with the timed kernel; the builder works only ahead of the timer).
4. Ship or rebuild: on the timing core, the cost per candidate of loading a shipped library vs
   JIT-compiling it again, and the kernels' speed either way (interleaved medians).

    python bench/runner_throughput.py [--candidates 150] [--spread-runs 10] [--spread-trials 3]
                                      [--rank-trials 10] [--ship-schedules 12] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from tilewise.ir.compiler import LibraryKernel, compile, compile_to_shared_library
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.base import RunnerConfig
from tilewise.profiling.measure import make_problem, time_runs
from tilewise.profiling.runner import LocalRunner
from tilewise.core.target import detect
from tilewise.tuner.space import SpaceOptions, space_for

WORKLOAD = "matmul:512x512x512:f32"
SHORT = dict(repeats=3, min_time_s=0.01, warmup=1)          # the throughput figure's protocol
DEFAULT = dict(repeats=10, min_time_s=0.05, warmup=2)        # RunnerConfig's


def _schedules(w, target, n, seed):
    space = space_for(w, target, SpaceOptions(max_threads=1))
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        s = space.sample(rng)
        if s not in out:
            out.append(s)
    return out


#: RunnerConfig.pause_builds_min_threads: the default (pause for 2+ threads), always, never
PAUSE = {"2+ threads": 2, "always": 1, "never": 1 << 20}


def throughput(w, schedules, workers: int, pause: str) -> dict:
    config = RunnerConfig(build_workers=workers, pause_builds_min_threads=PAUSE[pause], **SHORT)
    with LocalRunner(config) as runner:
        runner.run([Candidate(w, s) for s in schedules[:2 * workers]])      # start-up, imports
        t0 = time.perf_counter()
        results = runner.run([Candidate(w, s) for s in schedules])
        wall = time.perf_counter() - t0
    statuses: dict[str, int] = {}
    for m in results:
        statuses[m.status] = statuses.get(m.status, 0) + 1
    ok = [m for m in results if m.ok]
    return {"workers": workers, "pause": pause, "candidates": len(results), "wall_s": wall,
            "per_min": len(results) / wall * 60, "statuses": statuses,
            "build_cpu_median_s": statistics.median(m.compile_time_s for m in results),
            "kernel_median_s": statistics.median(m.median_s for m in ok) if ok else None}


def _spread_of(medians: list[float]) -> tuple[float, float]:
    mid = statistics.median(medians)
    return (max(medians) - min(medians)) / mid, statistics.stdev(medians) / statistics.fmean(medians)


def spread(w, target, fillers, runs: int, protocol: dict, pause: str, trials: int, threads: int = 1) -> dict:
    """The default schedule ``runs`` times, each followed by a different random schedule (it is
    timed while the next builds are under way, as in tuning); one fresh runner per trial."""
    default = w.kind.default_schedule(w, target).replace(threads=threads)
    batch = []
    for i in range(runs):
        batch += [Candidate(w, default), Candidate(w, fillers[i % len(fillers)])]
    out = []
    for _ in range(trials):
        config = RunnerConfig(build_workers=2, pause_builds_min_threads=PAUSE[pause], **protocol)
        with LocalRunner(config) as runner:
            runner.run(batch[:2])
            out.append([m.median_s for m in runner.run(batch)[0::2] if m.ok])
    return _spread_row(w, f"{threads}-thread default via runner, pause builds: {pause}", protocol, out)


MEMORY_BOUND = "add:512x768:f32"


def rank_stability(target, trials: int, seed: int) -> list[dict]:
    """Two rounds of every 1-thread schedule of MEMORY_BOUND (each round in its own shuffled order,
    each candidate built afresh) in one batch of a fresh 1-worker runner; per trial and pause
    setting, the Spearman of the rounds' medians.  The settings alternate trial by trial and see
    the same orders, so the machine's drift falls on both."""
    from scipy.stats import spearmanr
    w = Workload.parse(MEMORY_BOUND)
    schedules = list(space_for(w, target, SpaceOptions(max_threads=1)))
    rng = np.random.default_rng(seed)
    pauses = ("2+ threads", "always")
    rhos: dict = {p: [] for p in pauses}
    medians: dict = {p: [] for p in pauses}
    for t in range(trials):
        orders = [rng.permutation(len(schedules)) for _ in range(2)]
        batch = [Candidate(w, schedules[i]) for order in orders for i in order]
        for pause in (pauses if t % 2 else pauses[::-1]):
            config = RunnerConfig(build_workers=1, pause_builds_min_threads=PAUSE[pause])
            with LocalRunner(config) as runner:
                results = runner.run(batch)
            if not all(m.ok for m in results):
                raise RuntimeError(f"{MEMORY_BOUND}: a schedule failed: {next(m for m in results if not m.ok)}")
            n = len(schedules)
            rounds = [dict(zip(order, results[k * n:(k + 1) * n])) for k, order in enumerate(orders)]
            a, b = ([r[i].median_s for i in range(n)] for r in rounds)
            rhos[pause].append(float(spearmanr(a, b).statistic))
            medians[pause].append(statistics.median(a + b))
    return [{"pause": p, "schedules": len(schedules), "spearman": rhos[p], "median_s": statistics.median(medians[p])}
            for p in pauses]


def inprocess_spread(w, target, fillers, runs: int, protocol: dict, trials: int) -> dict:
    """The noise floor: the same measurement in this process, pinned, nothing else running (buffers
    placed as the timer places them); between two timings of the default, one of a filler."""
    from tilewise.profiling.timer import Inputs
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    problem = Inputs().problem(w.to_json(), w.dtype, 0)
    default = compile(w, w.kind.default_schedule(w, target)).bind(problem.arrays)
    others = [compile(w, s).bind(problem.arrays) for s in fillers[:runs]]
    out = []
    for _ in range(trials):
        medians = []
        for i in range(runs):
            medians.append(statistics.median(time_runs(default, **protocol)))
            time_runs(others[i % len(others)], **protocol)
        out.append(medians)
    return _spread_row(w, "1-thread default in-process, no builds (the floor)", protocol, out)


def _spread_row(w, name, protocol, trials_medians) -> dict:
    spreads = [_spread_of(m) for m in trials_medians]
    mid = statistics.median(x for m in trials_medians for x in m)
    return {"setup": name, "protocol": protocol, "runs": len(trials_medians[0]), "trials": len(trials_medians),
            "median_s": mid, "gflops": w.flops / mid / 1e9,
            "spread": [s for s, _ in spreads], "cv": [c for _, c in spreads], "medians_s": trials_medians}


def ship_vs_rebuild(w, schedules) -> dict:
    """On one pinned core: load a built library vs rebuild with the JIT; then the kernels' speed."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    problem = make_problem(w)
    specs = w.kind.args(w, w.dtype)
    load_s, rebuild_s, ratios = [], [], []
    with tempfile.TemporaryDirectory() as d:
        for i, s in enumerate(schedules):
            path = os.path.join(d, f"k{i}.so")
            compile_to_shared_library(w, s, path)
            t0 = time.perf_counter()
            lib = LibraryKernel(path, specs)
            run_lib = lib.bind(problem.arrays)
            load_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jit = compile(w, s)
            run_jit = jit.bind(problem.arrays)
            rebuild_s.append(time.perf_counter() - t0)
            t_lib, t_jit = [], []
            for _ in range(5):                           # interleaved: the clock drifts
                t_lib += time_runs(run_lib, repeats=3, min_time_s=0, warmup=1)
                t_jit += time_runs(run_jit, repeats=3, min_time_s=0, warmup=1)
            ratios.append(statistics.median(t_lib) / statistics.median(t_jit))
            lib.close()
    return {"schedules": len(schedules), "load_median_s": statistics.median(load_s),
            "rebuild_median_s": statistics.median(rebuild_s),
            "speed_ratio_median": statistics.median(ratios), "speed_ratio_min": min(ratios),
            "speed_ratio_max": max(ratios)}


def _proto(p: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in p.items())


def _pause_label(pause: str) -> str:
    return pause + (" (default)" if PAUSE[pause] == RunnerConfig().pause_builds_min_threads else "")


def _print(console, rows, spreads, ranks, ship) -> None:
    t = Table(title=f"LocalRunner throughput, {WORKLOAD}, random 1-thread schedules (timing: {_proto(SHORT)})")
    for col in ("build workers", "pause builds while timing", "candidates", "wall s", "candidates/min", "goal",
                "median build CPU s", "median kernel ms", "statuses"):
        t.add_column(col, justify="right")
    for r in rows:
        goal = ">= 500" + (" ok" if r["per_min"] >= 500 else " MISS") if r["workers"] == 2 else "-"
        t.add_row(str(r["workers"]), _pause_label(r["pause"]), str(r["candidates"]), f"{r['wall_s']:.1f}",
                  f"{r['per_min']:.0f}", goal, f"{r['build_cpu_median_s']:.3f}",
                  f"{r['kernel_median_s'] * 1e3:.2f}" if r["kernel_median_s"] else "-",
                  " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items())))
    console.print(t)
    t = Table(title="Same schedule (the default) measured N times: spread of the reported median, per trial")
    for col in ("setup", "timing protocol", "runs x trials", "median ms", "GFLOP/s",
                "spread (max-min)/median per trial", "goal <= 5%", "CV per trial"):
        t.add_column(col, justify="right")
    for s in spreads:
        hit = sum(x <= 0.05 for x in s["spread"])
        t.add_row(s["setup"], _proto(s["protocol"]), f"{s['runs']} x {s['trials']}", f"{s['median_s'] * 1e3:.3f}",
                  f"{s['gflops']:.1f}", " ".join(f"{x * 100:.1f}%" for x in s["spread"]),
                  f"{hit}/{len(s['spread'])} trials", " ".join(f"{x * 100:.1f}%" for x in s["cv"]))
    console.print(t)
    if ranks:
        t = Table(title=f"{MEMORY_BOUND}: every 1-thread schedule in two rounds of fresh builds, 1 build worker "
                        "(as collect --rounds 2), the pause settings alternating: how alike the rounds rank them")
        for col in ("pause builds while timing", "schedules", "median us", "Spearman round 1 vs 2, per trial", "mean", "median"):
            t.add_column(col, justify="right")
        for r in ranks:
            t.add_row(_pause_label(r["pause"]), str(r["schedules"]), f"{r['median_s'] * 1e6:.1f}", " ".join(f"{x:.2f}" for x in r["spearman"]),
                      f"{statistics.fmean(r['spearman']):.2f}", f"{statistics.median(r['spearman']):.2f}")
        console.print(t)
    if ship:
        t = Table(title="Ship the library or rebuild in the timing process (per candidate, on the timing core)")
        for col in ("schedules", "load .so (dlopen, bind) ms", "rebuild (JIT compile, bind) ms",
                    "kernel time .so / JIT (median, min-max)"):
            t.add_column(col, justify="right")
        t.add_row(str(ship["schedules"]), f"{ship['load_median_s'] * 1e3:.3f}",
                  f"{ship['rebuild_median_s'] * 1e3:.1f}",
                  f"{ship['speed_ratio_median']:.3f} ({ship['speed_ratio_min']:.3f}-{ship['speed_ratio_max']:.3f})")
        console.print(t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=150)
    ap.add_argument("--spread-runs", type=int, default=10)
    ap.add_argument("--spread-trials", type=int, default=3)
    ap.add_argument("--rank-trials", type=int, default=10, help="0 skips the memory-bound rank part")
    ap.add_argument("--ship-schedules", type=int, default=12, help="0 skips the ship-vs-rebuild part")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)
    target = detect()
    console = Console(width=max(Console().width, 150))
    console.print(f"target: {target.describe()}")
    w = Workload.parse(WORKLOAD)
    schedules = _schedules(w, target, args.candidates, args.seed)
    rows = [throughput(w, schedules, n, pause) for pause in ("2+ threads", "always") for n in (1, 2)]
    fillers = schedules[: args.spread_runs]
    runs, trials = args.spread_runs, args.spread_trials
    spreads = [spread(w, target, fillers, runs, SHORT, "2+ threads", trials),
               spread(w, target, fillers, runs, DEFAULT, "2+ threads", trials),
               spread(w, target, fillers, runs, DEFAULT, "always", trials)]
    if len(os.sched_getaffinity(0)) >= 2:
        spreads += [spread(w, target, fillers, runs, DEFAULT, "2+ threads", trials, threads=2),
                    spread(w, target, fillers, runs, DEFAULT, "never", trials, threads=2)]
    ranks = rank_stability(target, args.rank_trials, args.seed) if args.rank_trials else []
    ship = ship_vs_rebuild(w, schedules[: args.ship_schedules]) if args.ship_schedules else None
    # last: these pin this process to the timing core
    spreads.append(inprocess_spread(w, target, fillers, runs, DEFAULT, trials))
    _print(console, rows, spreads, ranks, ship)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"target": target.to_json(), "throughput": rows, "spread": spreads, "rank_stability": ranks,
                       "ship_vs_rebuild": ship},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
