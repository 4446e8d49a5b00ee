"""How many measurements does each search strategy need to find a fast schedule?

For each workload -- none of them in the embedded dataset (``datasets/data/embedded_v4.README``),
so the embedded cost model has never seen them -- and each seed, every strategy (``random``,
``optuna``, ``model``) proposes batches of ``--batch`` schedules until ``--budget`` measurements.
Per strategy it reports the best-so-far latency after 8/16/32/64 (and ``--budget``) measurements
as a fraction of the best-known speed (best-known / best-so-far: 1.00 = found it), and the
measurements needed to reach 95% of the best-known speed (latency <= best-known / 0.95; ">B" =
not within the budget, counted as B+1 in the means), then the ratio random / strategy of those.
Best-known is the fastest schedule of the workload measured by any strategy and seed in this run,
after the winner's curse is taken out: the ``--retime`` fastest distinct schedules are timed again in
``--retime-rounds`` interleaved rounds and their latency becomes the median of those rounds (their
first timing was selected for being low, so it is biased low; a 2% lucky outlier would otherwise set
a 95% goal that the schedule itself meets only by luck).  Every run's curve is read with the
re-timed values.  Random search learns nothing, so its measurements are uniform draws from the
space: besides its measured need (capped at the budget) the table gives ``1/p``, the expected draws
to the goal from the fraction ``p`` of its draws (all seeds) that met it -- the need random would
show with an unlimited budget (a lower bound ``>N`` when none of its N draws met it).

Measurements go through one ``LocalRunner`` with a per-workload memo: a (workload, schedule) is
measured once and that result is given to every strategy and seed that proposes it (fair: a
schedule always scores the same; affordable: strategies overlap).  So every ratio comes from one
run on one machine; the timing protocol is stated in the title.  Run it on a quiet machine.

    python bench/search_efficiency.py [--workloads W1;W2] [--seeds 5] [--budget 64] [--threads 1]
                                      [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.base import RunnerConfig
from tilewise.profiling.runner import LocalRunner
from tilewise.core.target import detect
from tilewise.tuner.base import available, create
from tilewise.tuner.space import SpaceOptions, space_for

#: none of these is in the embedded dataset (checked at start-up against its records)
WORKLOADS = ["matmul:384x1000x768:f32", "conv2d_nhwc:1x14x14x160,1x1x160x320:f32",
             "matmul:640x320x960:f32", "batch_matmul:8x256x192x128:f32",
             "conv2d_nhwc:1x28x28x96,3x3x96x96:f32:pad=1", "softmax:24x256x384:f32"]
STRATEGIES = ["random", "optuna", "model"]
CHECKPOINTS = (8, 16, 32, 64)
GOAL = 0.95                   # fraction of the best-known speed


class MemoRunner:
    """Measures each (workload, schedule) once; later asks get the same Measurement."""

    def __init__(self, runner: LocalRunner):
        self.runner, self.memo, self.measured_s = runner, {}, 0.0

    def run(self, w: Workload, schedules) -> list:
        missing = [s for s in dict.fromkeys(schedules) if (w, s) not in self.memo]
        if missing:
            t0 = time.perf_counter()
            for s, m in zip(missing, self.runner.run([Candidate(w, s) for s in missing])):
                self.memo[(w, s)] = m
            self.measured_s += time.perf_counter() - t0
        return [self.memo[(w, s)] for s in schedules]

    def retime(self, w: Workload, top_k: int, rounds: int) -> None:
        """Re-measure the ``top_k`` fastest schedules of ``w`` in ``rounds`` interleaved rounds
        (shuffled order each round); each one's latency becomes the median of the pooled re-timed runs."""
        ranked = sorted(((m.median_s, s) for (w2, s), m in self.memo.items() if w2 == w and m.ok),
                        key=lambda t: t[0])[:top_k]
        schedules = [s for _, s in ranked]
        if not schedules:
            return
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        timings: dict = {s: [] for s in schedules}
        for _ in range(rounds):
            order = [schedules[i] for i in rng.permutation(len(schedules))]
            for s, m in zip(order, self.runner.run([Candidate(w, s) for s in order])):
                if m.ok:
                    timings[s].extend(m.times_s)
        self.measured_s += time.perf_counter() - t0
        for s, ts in timings.items():
            if ts:
                self.memo[(w, s)] = dataclasses.replace(self.memo[(w, s)], times_s=tuple(ts))

    def latencies(self, w: Workload, schedules) -> list[float]:
        return [m.median_s if m.ok else math.inf for m in (self.memo[(w, s)] for s in schedules)]

    def best_known(self, w: Workload) -> float:
        return min((m.median_s for (w2, _), m in self.memo.items() if w2 == w and m.ok), default=math.inf)


def search(name: str, w: Workload, target, space, seed: int, budget: int, batch: int, memo: MemoRunner) -> dict:
    """One strategy run: the schedules it measured, in order (``main`` reads their latencies from
    the memo once the best ones are re-timed)."""
    strategy = create(name, space, seed=seed, workload=w, target=target)
    schedules: list = []
    ask_s = tell_s = 0.0
    while len(schedules) < budget:
        t0 = time.process_time()
        proposed = strategy.propose(min(batch, budget - len(schedules)))
        ask_s += time.process_time() - t0
        if not proposed:
            break
        results = memo.run(w, proposed)
        t0 = time.process_time()
        strategy.observe(proposed, results)
        tell_s += time.process_time() - t0
        schedules += proposed
    return {"schedules": schedules, "propose_cpu_s": ask_s, "observe_cpu_s": tell_s,
            "source": getattr(strategy, "model_source", None)}


def to_goal(latencies: list[float], best: float, budget: int) -> int:
    """Measurements until latency <= best / GOAL (budget + 1 when never)."""
    for i, t in enumerate(latencies):
        if t <= best / GOAL:
            return i + 1
    return budget + 1


def at(latencies: list[float], k: int, best: float) -> float:
    """Fraction of the best-known speed after ``k`` measurements (nan past the run's end)."""
    if len(latencies) < k:
        return math.nan
    got = min(latencies[:k])
    return best / got if math.isfinite(got) else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=";".join(WORKLOADS), help="';'-separated workloads")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=64, help="measurements per strategy run")
    ap.add_argument("--batch", type=int, default=8, help="schedules per propose (as in tune)")
    ap.add_argument("--threads", type=int, default=1, help="the space's thread cap")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per candidate (at least)")
    ap.add_argument("--min-time", type=float, default=0.05, help="and at least this many seconds")
    ap.add_argument("--retime", type=int, default=16, help="re-time this many fastest schedules per workload")
    ap.add_argument("--retime-rounds", type=int, default=3, help="interleaved rounds of that re-timing")
    ap.add_argument("--quick", action="store_true", help="2 workloads, 2 seeds, budget 24")
    ap.add_argument("--json", help="also write every run here")
    args = ap.parse_args(argv)
    if args.quick:
        args.workloads, args.seeds, args.budget = ";".join(WORKLOADS[:2]), 2, 24
    console = Console(width=max(Console().width, 150))
    target = detect()
    console.print(f"target: {target.describe()}")
    workloads = [Workload.parse(t) for t in args.workloads.split(";") if t.strip()]
    _warn_if_embedded(workloads, console)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in [s for s in strategies if s not in available()]:
        console.print(f"[yellow]skipping strategy {s!r}: not registered (available: {', '.join(available())})[/]")
    strategies = [s for s in strategies if s in available()]

    config = RunnerConfig(build_workers=1, repeats=args.repeats, min_time_s=args.min_time, seed=0)
    runs: dict[str, dict[str, list[dict]]] = {}
    t_start = time.perf_counter()
    with LocalRunner(config) as runner:
        memo = MemoRunner(runner)
        for w in workloads:
            space = space_for(w, target, SpaceOptions(max_threads=args.threads))
            runs[str(w)] = {s: [] for s in strategies}
            for seed in range(args.seeds):
                for s in strategies:
                    runs[str(w)][s].append(search(s, w, target, space, seed, args.budget, args.batch, memo))
            n_measured = sum(1 for (w2, _) in memo.memo if w2 == w)
            asked = len(strategies) * args.seeds * args.budget
            first_best = memo.best_known(w)
            memo.retime(w, args.retime, args.retime_rounds)
            for s in strategies:          # every curve read with the re-timed values
                for r in runs[str(w)][s]:
                    r["latencies"] = memo.latencies(w, r["schedules"])
                    r["schedules"] = [x.to_json() for x in r["schedules"]]
            console.print(f"{w}: {n_measured} distinct schedules measured ({asked} asked), best "
                          f"{first_best * 1e3:.3f} ms as first timed, {memo.best_known(w) * 1e3:.3f} ms re-timed")
        best = {str(w): memo.best_known(w) for w in workloads}
        measured_s = memo.measured_s
    summary = _tables(console, runs, best, args, strategies, config)
    console.print(f"wall {time.perf_counter() - t_start:.0f} s, of which measuring {measured_s:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"target": target.to_json(), "args": vars(args), "best_known_s": best,
                       "summary": summary, "runs": runs}, fh, indent=1, default=_json_default)
    return 0


def _json_default(v):
    return None if isinstance(v, float) and not math.isfinite(v) else str(v)


def _tables(console, runs, best, args, strategies, config) -> dict:
    checkpoints = sorted({k for k in CHECKPOINTS if k <= args.budget} | {args.budget})
    table = Table(title=f"best-so-far as a fraction of the best-known speed (median of {args.seeds} seeds) and "
                        f"measurements to {GOAL:.0%} of it (mean, '>B' = missed); threads <= {args.threads}, "
                        f"batch {args.batch}, timing >= {config.repeats} runs and >= {config.min_time_s} s "
                        f"per candidate")
    for col in ["workload", "strategy"] + [f"@{k}" for k in checkpoints] + [f"to {GOAL:.0%}", "hits",
                                                                           "propose cpu s", "random/this", "random 1/p /this"]:
        table.add_column(col, justify="left" if col in ("workload", "strategy") else "right")
    summary: dict = {}
    for w, by_strategy in runs.items():
        summary[w] = {}
        for s, rs in by_strategy.items():
            need = [to_goal(r["latencies"], best[w], args.budget) for r in rs]
            summary[w][s] = {"curve": {k: float(np.nanmedian([at(r["latencies"], k, best[w]) for r in rs]))
                                       for k in checkpoints},
                             "to_goal_mean": float(np.mean(need)), "hits": sum(n <= args.budget for n in need),
                             "propose_cpu_s": float(np.mean([r["propose_cpu_s"] for r in rs]))
                             / max(1, math.ceil(args.budget / args.batch))}
        rnd = summary[w].get("random", {}).get("to_goal_mean")
        draws = [t for r in by_strategy.get("random", []) for t in r["latencies"]]
        p_goal = float(np.mean([t <= best[w] / GOAL for t in draws])) if draws else 0.0
        rnd_est = 1.0 / p_goal if p_goal > 0 else None         # None: no draw met the goal
        if "random" in summary[w]:
            summary[w]["random"]["need_1_over_p"] = rnd_est
            summary[w]["random"]["draws"] = len(draws)
        for s, row in summary[w].items():
            row["random_over_this"] = rnd / row["to_goal_mean"] if rnd else None
            row["random_1_over_p_over_this"] = (rnd_est / row["to_goal_mean"] if rnd_est
                                               else (len(draws) / row["to_goal_mean"] if draws else None))
            mean = row["to_goal_mean"]
            table.add_row(w if s == strategies[0] else "", s, *[f"{row['curve'][k]:.2f}" for k in checkpoints],
                          f">{args.budget}" if row["hits"] == 0 else f"{mean:.1f}", f"{row['hits']}/{len(runs[w][s])}",
                          f"{row['propose_cpu_s']:.2f}",
                          "" if s == "random" or row["random_over_this"] is None else f"{row['random_over_this']:.2f}x",
                          (f"1/p={rnd_est:.0f}" if rnd_est else f"1/p>{len(draws)}") if s == "random"
                          else ("" if row["random_1_over_p_over_this"] is None else
                                f"{'>' if rnd_est is None else ''}{row['random_1_over_p_over_this']:.2f}x"))
    console.print(table)
    overall = Table(title=f"measurements to {GOAL:.0%}: random / strategy, geomean of {len(runs)} workloads")
    overall.add_column("strategy")
    overall.add_column("random (capped at the budget) / strategy", justify="right")
    overall.add_column("random 1/p / strategy", justify="right")
    overall.add_column(f"workloads to {GOAL:.0%} in <= 32 (mean)", justify="right")
    geomeans, geomeans_p = {}, {}
    for s in strategies:
        if s == "random":
            continue
        ratios = [summary[w][s]["random_over_this"] for w in runs if summary[w][s]["random_over_this"]]
        ratios_p = [summary[w][s]["random_1_over_p_over_this"] for w in runs
                    if summary[w][s]["random_1_over_p_over_this"]]
        geomeans[s] = float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan
        geomeans_p[s] = float(np.exp(np.mean(np.log(ratios_p)))) if ratios_p else math.nan
        within = sum(summary[w][s]["to_goal_mean"] <= 32 for w in runs)
        overall.add_row(s, f"{geomeans[s]:.2f}x", f"{geomeans_p[s]:.2f}x", f"{within}/{len(runs)}")
    console.print(overall)
    return {"per_workload": summary, "random_over_strategy_geomean": geomeans,
            "random_1_over_p_over_strategy_geomean": geomeans_p}


def _warn_if_embedded(workloads, console) -> None:
    from tilewise.datasets.embedded import embedded_records
    seen = {str(r.workload) for r in embedded_records()}
    for w in workloads:
        if str(w) in seen:
            console.print(f"[yellow]{w} is in the embedded dataset: the model strategy has seen it[/]")


if __name__ == "__main__":
    sys.exit(main())
