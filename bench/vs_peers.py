"""Tuned tilewise vs its peers: OpenBLAS (numpy), tilewise's default schedule and TVM MetaSchedule.

For each workload and thread count T, one run:

1. tilewise: ``tilewise.tuner.tune.tune(w, target, TuneConfig(trials, strategy, max_threads=T))``
   measures ``--trials`` schedules, then re-times its finalists *interleaved* with the default
   schedule and the numpy baseline (in its own process, T BLAS threads).  tilewise, default and
   numpy GFLOP/s are the medians of that one interleaved run, so ``x numpy`` = numpy median /
   tilewise median and ``x default`` = default median / tilewise median.
2. TVM (when ``apache-tvm`` can be installed into its own environment, ``bench/.tvm-venv``, never
   the project's .venv): ``bench/tvm_matmul.py`` runs there, tunes the same matmul with
   MetaSchedule at the same trial budget (``max_trials_global = --trials``), target
   ``{"kind": "llvm", "mcpu": <host cpu>, "num-cores": T}``, checks the best schedule against numpy,
   then times three sides round-robin in one window (``--tvm-rounds`` rounds of 3 runs each):
   TVM's kernel with its time_evaluator, tilewise's own baseline process (numpy/OpenBLAS) and
   tilewise's tuned schedule, served by the same baseline code in a child process
   (``tilewise.profiling.baseline`` with a schedule: compiled there and checked against the
   reference), all pinned to the same T cores with ``TVM_NUM_THREADS=T``.

What ``x TVM`` means: TVM's median latency / tilewise's median latency from that one window, the
two kernels timed alternately, so machine drift moves both alike.  > 1 means tilewise is faster.
The JSON also keeps the older estimate through the baseline, ``x_tvm_via_numpy`` =
(tilewise vs numpy in tilewise's own A/B run) / (TVM vs numpy in TVM's window): two windows minutes
apart, which drift on this machine moved by up to 17 % (why the direct ratio replaced it).

MetaSchedule proposes ``--tvm-per-iter`` (16) candidates a round and retrains its XGBoost cost model
between rounds (its default of 64 a round would spend a 64-trial budget before learning anything).

The numpy baseline is OpenBLAS as the environment configures it: an inherited ``OPENBLAS_CORETYPE``
(e.g. ``Haswell``: AVX2 kernels on an AVX-512 CPU, about half the speed) changes the ``x numpy``
column, so the kernel OpenBLAS uses is printed; ``--openblas-coretype ""`` lets OpenBLAS detect the CPU.

Goals (from the issue): >= 1.0x OpenBLAS at 1 thread, >= 1.15x at 2 threads; >= 1.2x TVM at 64
trials.  Timings on a shared machine are indicative only.  ``bench/fma_peak.py`` measures the f32
FMA peak: where TVM's kernel runs above 1/1.2 of it, the x TVM goal asks for a kernel faster
than the peak.

    python bench/vs_peers.py [--workloads W1,W2] [--threads 1,2] [--trials 64] [--strategy model]
                             [--no-tvm] [--quick] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tilewise.core.workload import Workload
from tilewise.core.target import detect
from tilewise.tuner.base import available, create
from tilewise.tuner.space import SpaceOptions, space_for
from tilewise.tuner.tune import TuneConfig, tune

HERE = Path(__file__).resolve().parent
WORKLOADS = ["matmul:512x512x512:f32", "matmul:1024x1024x1024:f32", "matmul:384x1000x768:f32"]
QUICK = dict(workloads=[WORKLOADS[0]], threads=[1], trials=16)
#: x numpy goal per thread count; x TVM goal (at GOAL_TVM_TRIALS trials)
GOAL_NUMPY = {1: 1.0, 2: 1.15}
GOAL_TVM, GOAL_TVM_TRIALS = 1.2, 64

TVM_VENV = HERE / ".tvm-venv"
TVM_SCRIPT = HERE / "tvm_matmul.py"
#: what goes into the TVM environment.  apache-tvm 0.27.0.post1 segfaults (tvm::ffi::ToJSONGraph in
#: TuneContext initialisation) with apache-tvm-ffi 0.1.15.x, which pip picks by default: pin 0.1.14.
#: xgboost-cpu is MetaSchedule's default cost model without the 470 MB NCCL wheel of ``xgboost``.
TVM_REQUIREMENTS = ["apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1", "numpy", "xgboost-cpu",
                    "psutil", "cloudpickle"]
#: imports what tvm_matmul.py needs and fails unless the pinned versions are the installed ones
TVM_SMOKE = ("import sys, tvm, xgboost; from importlib.metadata import version; "
             "from tvm.s_tir import meta_schedule as ms; from tvm import te; "
             "pins = [r.split('==') for r in sys.argv[1:] if '==' in r]; "
             "bad = [f'{n} {version(n)} != {v}' for n, v in pins if version(n) != v]; "
             "sys.exit('version mismatch: ' + ', '.join(bad)) if bad else print(tvm.__version__)")
TVM_TIMEOUT_S = 3600

err = Console(stderr=True)


# -- the TVM environment ---------------------------------------------------------------------------
def _tail(text: str, n: int = 300) -> str:
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return (lines[-1] if lines else "")[-n:]


def ensure_tvm(venv: Path) -> tuple[str | None, str]:
    """(python of an environment with TVM, its version) or (None, the reason it cannot be had).
    Creates ``venv`` and pip-installs TVM_REQUIREMENTS into it when it is missing or broken."""
    py = venv / "bin" / "python"

    def smoke() -> subprocess.CompletedProcess:
        return subprocess.run([str(py), "-c", TVM_SMOKE, *TVM_REQUIREMENTS], capture_output=True, text=True, timeout=300)

    if py.exists():
        r = smoke()
        if r.returncode == 0:
            return str(py), r.stdout.strip()
    err.print(f"[dim]installing TVM into {venv} (own environment): pip install {' '.join(TVM_REQUIREMENTS)}[/]")
    steps = ([] if py.exists() else [["python3", "-m", "venv", str(venv)]]) + \
        [[str(py), "-m", "pip", "install", "--quiet", *TVM_REQUIREMENTS]]
    for cmd in steps:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"`{' '.join(cmd)}` failed: {e}"
        if r.returncode != 0:
            return None, f"`{' '.join(cmd)}` exited {r.returncode}: {_tail(r.stderr or r.stdout)}"
    r = smoke()
    if r.returncode != 0:
        return None, f"TVM installed but does not import: {_tail(r.stderr)}"
    return str(py), r.stdout.strip()


def run_tvm(py: str, w: Workload, threads: int, trials: int, per_iter: int, seed: int,
            tilewise_schedule: dict | None, rounds: int) -> dict:
    """bench/tvm_matmul.py in the TVM environment on the first ``threads`` cores (timing
    ``tilewise_schedule`` beside TVM's kernel when given); its JSON, or {"error": ...}."""
    m, n, k = w.shapes[0]
    cores = sorted(os.sched_getaffinity(0))[:threads]
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("PYTHONPATH", None)
    cmd = [py, str(TVM_SCRIPT), "--m", str(m), "--n", str(n), "--k", str(k), "--threads", str(threads),
           "--trials", str(trials), "--per-iter", str(per_iter), "--seed", str(seed),
           "--baseline-python", sys.executable, "--rounds", str(rounds)]
    if tilewise_schedule is not None:
        cmd += ["--tilewise-schedule", json.dumps(tilewise_schedule)]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TVM_TIMEOUT_S,
                           preexec_fn=lambda: os.sched_setaffinity(0, cores))    # = taskset -c cores
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {TVM_TIMEOUT_S} s"}
    wall = time.perf_counter() - t0
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("TVM_RESULT_JSON: "):
            out = json.loads(line[len("TVM_RESULT_JSON: "):])
            out["wall_s"] = wall
            if "error" not in out and not out.get("ok"):
                out["error"] = f"TVM result wrong: relative error {out.get('rel_error'):.3g}"
            return out
    return {"error": f"exit {r.returncode}: {_tail(r.stderr or r.stdout)}", "wall_s": wall}


def openblas_info() -> str:
    """The BLAS the baseline processes will load (they inherit this environment), as threadpoolctl
    sees it in a fresh child: an inherited ``OPENBLAS_CORETYPE`` forces its kernels."""
    code = ("import numpy, threadpoolctl; i = [x for x in threadpoolctl.threadpool_info() "
            "if x.get('user_api') == 'blas']; i = i[0] if i else {}; "
            "print(f\"numpy {numpy.__version__}, {i.get('internal_api', '?')} {i.get('version', '?')}, "
            "core {i.get('architecture', '?')}\")")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        out = r.stdout.strip() or _tail(r.stderr)
    except (OSError, subprocess.TimeoutExpired) as e:
        out = f"unknown ({e})"
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return out + (f" (forced by OPENBLAS_CORETYPE={forced} in the environment)" if forced else " (auto-detected)")


# -- tilewise ----------------------------------------------------------------------------------------
def pick_strategy(wanted: str, w: Workload, target, threads: int) -> tuple[str, str | None]:
    """``wanted`` if it is registered and constructs, else "random" and the note saying why."""
    if wanted not in available():
        return "random", f"strategy {wanted!r} is not registered (have {', '.join(available())}): using random"
    try:
        create(wanted, space_for(w, target, SpaceOptions(threads)), seed=0, workload=w, target=target)
    except Exception as e:      # being written concurrently: a broken strategy is a note, not a crash
        return "random", f"strategy {wanted!r} fails to construct ({type(e).__name__}: {e}): using random"
    return wanted, None


def run_tilewise(w: Workload, target, threads: int, trials: int, strategy: str, seed: int) -> dict:
    config = TuneConfig(trials=trials, strategy=strategy, max_threads=threads, seed=seed)
    r = tune(w, target, config)          # no store: every run searches
    gf = lambda s: w.flops / s / 1e9      # noqa: E731
    out = {"strategy": strategy, "trials": len(r.trials), "n_ok": r.n_ok, "wall_s": r.wall_time_s,
           "status": r.status_counts(), "notes": list(r.notes),
           "baseline": r.reference.name, "baseline_latency_s": r.reference.median_s,
           "baseline_gflops": gf(r.reference.median_s)}
    if r.default is not None:
        out.update(default_latency_s=r.default.median_s, default_gflops=gf(r.default.median_s))
    if r.best is not None:
        out.update(latency_s=r.best.median_s, gflops=gf(r.best.median_s),
                   schedule=r.best.schedule.to_json() if r.best.schedule is not None else None,
                   x_numpy=r.ratio_to_reference(), x_default=r.speedup_over_default())
    return out


# -- the table ----------------------------------------------------------------------------------------
def goals(row: dict, trials: int) -> tuple[bool | None, str]:
    """(all goals met, what was missed) for one row."""
    t, tw = row["threads"], row["tilewise"]
    missed, judged = [], False
    goal = GOAL_NUMPY.get(t)
    if goal is not None and tw.get("x_numpy") is not None:
        judged = True
        if tw["x_numpy"] < goal:
            missed.append(f"x numpy {tw['x_numpy']:.2f} < {goal}")
    if row.get("x_tvm") is not None and trials == GOAL_TVM_TRIALS:
        judged = True
        if row["x_tvm"] < GOAL_TVM:
            missed.append(f"x TVM {row['x_tvm']:.2f} < {GOAL_TVM}")
    if tw.get("x_numpy") is None:
        return False, "no tilewise schedule"
    return (not missed) if judged else None, "; ".join(missed)


def render(rows: list[dict], args, tvm_info: str) -> Table:
    title = (f"tuned tilewise vs peers: {args.trials} trials, strategy {rows[0]['tilewise']['strategy'] if rows else '?'}"
             f"; TVM: {tvm_info}")
    t = Table(title=title, title_justify="left")
    for col in ("workload", "threads", "tilewise GFLOP/s", "default", "numpy", "TVM", "x numpy", "x default",
                "x TVM", "goal met?"):
        t.add_column(col, justify="left" if col in ("workload", "goal met?") else "right")
    f = lambda v, fmt: "-" if v is None else format(v, fmt)   # noqa: E731
    for row in rows:
        tw, tvm = row["tilewise"], row.get("tvm")
        tvm_cell = "-" if tvm is None else ("failed" if "error" in tvm else f(tvm.get("gflops"), ".1f"))
        if tvm is not None and tvm.get("tilewise_gflops") is not None:
            tvm_cell += f" (tilewise {tvm['tilewise_gflops']:.1f} beside it)"
        goal_numpy = GOAL_NUMPY.get(row["threads"])
        ok, why = goals(row, args.trials)
        verdict = "-" if ok is None else ("[green]yes[/]" if ok else f"[red]no[/]: {why}")
        if row.get("x_tvm") is not None and args.trials != GOAL_TVM_TRIALS:
            verdict += f" (x TVM goal is at {GOAL_TVM_TRIALS} trials)"
        t.add_row(row["workload"], str(row["threads"]), f(tw.get("gflops"), ".1f"), f(tw.get("default_gflops"), ".1f"),
                  f(tw.get("baseline_gflops"), ".1f"), tvm_cell,
                  f(tw.get("x_numpy"), ".2f") + (f" (>= {goal_numpy})" if goal_numpy else ""),
                  f(tw.get("x_default"), ".2f"),
                  f(row.get("x_tvm"), ".2f") + (f" (>= {GOAL_TVM})" if row.get("x_tvm") is not None else ""),
                  verdict)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated workload strings")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--trials", type=int, default=64, help="trial budget, the same for tilewise and TVM")
    ap.add_argument("--strategy", default="model", help="tilewise search strategy (falls back to random)")
    ap.add_argument("--no-tvm", action="store_true", help="skip the TVM column")
    ap.add_argument("--tvm-venv", default=str(TVM_VENV), help="TVM's own environment (created if missing)")
    ap.add_argument("--tvm-per-iter", type=int, default=16,
                    help="MetaSchedule num_trials_per_iter (candidates per round; its cost model retrains between)")
    ap.add_argument("--tvm-rounds", type=int, default=15,
                    help="round-robin timing rounds of TVM, numpy and tilewise in TVM's window (3 runs each)")
    ap.add_argument("--quick", action="store_true", help="one workload, 1 thread, 16 trials")
    ap.add_argument("--openblas-coretype", default=None, metavar="NAME",
                    help="set OPENBLAS_CORETYPE for the numpy baselines (\"\" = unset: OpenBLAS detects the CPU); "
                    "default: the environment's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args(argv)

    workloads = [s.strip() for s in args.workloads.split(",") if s.strip()]
    threads = [int(s) for s in args.threads.split(",") if s.strip()]
    if args.quick:
        workloads, threads, args.trials = QUICK["workloads"], QUICK["threads"], QUICK["trials"]
    if args.openblas_coretype is not None:      # the baseline processes inherit os.environ
        if args.openblas_coretype:
            os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
        else:
            os.environ.pop("OPENBLAS_CORETYPE", None)
    target = detect()
    console = Console(width=max(Console().width, 160))
    console.print(f"[bold]machine[/]: {target.describe()}")
    blas = openblas_info()
    console.print(f"[bold]baseline[/]: {blas}")

    tvm_py, tvm_info = None, "skipped (--no-tvm)"
    if not args.no_tvm:
        tvm_py, tvm_info = ensure_tvm(Path(args.tvm_venv))
        if tvm_py is None:
            tvm_info = f"skipped: {tvm_info}"
            console.print(f"TVM column skipped: {tvm_info[len('skipped: '):]}")
        else:
            tvm_info = f"apache-tvm {tvm_info}, MetaSchedule, {args.trials} trials ({args.tvm_per_iter}/round)"

    rows: list[dict] = []
    notes: list[str] = []
    for ws in workloads:
        w = Workload.parse(ws)
        for t in threads:
            if t > target.cores:
                notes.append(f"{ws} at {t} threads skipped: only {target.cores} cores")
                continue
            strategy, note = pick_strategy(args.strategy, w, target, t)
            if note and note not in notes:
                notes.append(note)
                console.print(f"note: {note}")
            err.print(f"[dim]{ws}, {t} thread(s): tilewise ({strategy}, {args.trials} trials)...[/]")
            row = {"workload": ws, "threads": t, "tilewise": run_tilewise(w, target, t, args.trials, strategy, args.seed)}
            if tvm_py is not None:
                if w.op != "matmul" or w.dtype != "f32":
                    row["tvm"] = {"error": "bench/tvm_matmul.py does f32 matmul only"}
                else:
                    err.print(f"[dim]{ws}, {t} thread(s): TVM MetaSchedule ({args.trials} trials)...[/]")
                    row["tvm"] = run_tvm(tvm_py, w, t, args.trials, args.tvm_per_iter, args.seed,
                                         row["tilewise"].get("schedule"), args.tvm_rounds)
                tvm = row["tvm"]
                if "error" in tvm:
                    console.print(f"TVM failed on {ws}, {t} thread(s): {tvm['error']}")
                elif row["tilewise"].get("x_numpy") is not None:
                    if "tilewise_latency_s" in tvm:
                        row["x_tvm"] = tvm["latency_s"] / tvm["tilewise_latency_s"]
                    row["x_tvm_via_numpy"] = row["tilewise"]["x_numpy"] / tvm["ratio_to_baseline"]
                    row["tvm_over_tilewise_raw"] = tvm["latency_s"] / row["tilewise"]["latency_s"]
            rows.append(row)
            tvm = row.get("tvm") or {}
            err.print(f"[dim]  tilewise {row['tilewise'].get('gflops', 0):.1f} GFLOP/s in {row['tilewise']['wall_s']:.0f} s"
                      + (f"; TVM {tvm['gflops']:.1f} GFLOP/s, tuned in {tvm['tune_s']:.0f} s" if 'gflops' in tvm else "")
                      + "[/]")

    console.print(render(rows, args, tvm_info))
    console.print("x numpy, x default: medians of tilewise's interleaved A/B run.  x TVM = TVM latency / tilewise "
                  "latency, both kernels (and numpy) timed round-robin in one window after TVM's tuning.")
    for n in notes:
        console.print(f"note: {n}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"target": target.to_json(), "baseline_blas": blas, "trials": args.trials, "tvm": tvm_info, "notes": notes,
                       "rows": rows}, fh, indent=2, default=str)
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
