"""Does the matmul search space hold kernels at OpenBLAS speed?

For each (shape, threads) this tunes with random search over the space (``--trials`` schedules)
and then re-times the finalists, the default schedule and numpy/OpenBLAS (same thread count, in
its own process) round-robin; ratios are of medians from that one interleaved run.

Goal (issue #2): >= 0.9x OpenBLAS 1-thread at 512^3 and 1024^3, >= 1.0x OpenBLAS 2-thread at 512^3.

    python bench/matmul_space.py [--trials 48] [--shapes 512,1024] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from tilewise.core.workload import Workload
from tilewise.core.target import detect
from tilewise.tuner.tune import TuneConfig, tune

GOALS = {(512, 1): 0.9, (1024, 1): 0.9, (512, 2): 1.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument("--cases", default="512:1,1024:1,512:2", help="N:threads pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    target = detect()
    console = Console(width=max(Console().width, 150))
    console.print(f"target: {target.describe()}")
    rows = []
    for case in args.cases.split(","):
        n, threads = (int(x) for x in case.split(":"))
        if threads > target.cores:
            console.print(f"skip {n}^3 with {threads} threads: only {target.cores} cores")
            continue
        w = Workload.parse(f"matmul:{n}x{n}x{n}:f32")
        r = tune(w, target, TuneConfig(trials=args.trials, max_threads=threads, seed=args.seed,
                                       top_k=4, ab_rounds=7))
        if r.best is None:
            console.print(f"{w}: no schedule passed")
            continue
        gf = lambda t: w.flops / t.median_s / 1e9  # noqa: E731
        rows.append({
            "workload": str(w), "threads": threads, "trials": len(r.trials),
            "best_gflops": gf(r.best), "default_gflops": gf(r.default) if r.default else None,
            "reference": r.reference.name, "reference_gflops": gf(r.reference),
            "ratio_vs_reference": r.ratio_to_reference(), "speedup_vs_default": r.speedup_over_default(),
            "goal": GOALS.get((n, threads)), "best_schedule": r.best.schedule.to_json(),
            "tune_wall_s": r.wall_time_s,
        })
    table = Table(title="matmul space vs OpenBLAS (medians of one interleaved run)")
    for col in ("workload", "threads", "best GFLOP/s", "default GFLOP/s", "numpy GFLOP/s",
                "best / numpy", "goal", "best / default", "tune s"):
        table.add_column(col, justify="right")
    for r in rows:
        goal = r["goal"]
        ok = "" if goal is None else (" ok" if r["ratio_vs_reference"] >= goal else " MISS")
        table.add_row(r["workload"], str(r["threads"]), f"{r['best_gflops']:.1f}",
                      f"{r['default_gflops']:.1f}" if r["default_gflops"] else "-",
                      f"{r['reference_gflops']:.1f}", f"{r['ratio_vs_reference']:.2f}x",
                      f">= {goal:.1f}x{ok}" if goal else "-", f"{r['speedup_vs_default']:.2f}x",
                      f"{r['tune_wall_s']:.0f}")
    console.print(table)
    for r in rows:
        console.print(f"{r['workload']} t={r['threads']}: {json.dumps(r['best_schedule'], sort_keys=True)}",
                      highlight=False, soft_wrap=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"target": target.to_json(), "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
