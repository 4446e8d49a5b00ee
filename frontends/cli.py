"""The ``tilewise`` command line.

Every command takes ``--json`` for machine output.  Bad input (a malformed workload, an illegal
schedule, an unreadable .mlir file) prints one line ``error: ...`` to stderr and exits with 2.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tilewise: learned cost models and autotuning for ML kernels on MLIR.")
out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _workloads(spec: str):
    from tilewise.frontends.mlir_file import MlirFileError, workloads_from_mlir
    from tilewise.ir.workload import Workload, WorkloadError
    try:
        if spec.endswith(".mlir"):
            return workloads_from_mlir(spec)
        return [Workload.parse(spec)]
    except (WorkloadError, MlirFileError) as e:
        fail(str(e))


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="print the target as JSON")):
    """Print the detected target (CPU model, ISA, cores, caches) and its key."""
    from tilewise.profiling.target import detect, detect_cuda
    t = detect()
    gpu = detect_cuda() if _torch_sees_gpu() else None
    if as_json:
        d = dict(t.to_json(), key=t.key())
        if gpu is not None:
            d["gpus"] = [dict(gpu.to_json(), key=gpu.key())]
        print(json.dumps(d, indent=2))
        return
    table = Table(title="tilewise target", show_header=False)
    table.add_row("cpu", t.name)
    table.add_row("arch", t.arch)
    table.add_row("cores", str(t.cores))
    table.add_row("simd", f"{t.simd_bits}-bit ({t.simd_lanes()} f32 lanes)")
    table.add_row("isa", " ".join(t.isa))
    table.add_row("caches", ", ".join(f"{k} {v // 1024} KiB" for k, v in t.caches.items()))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in t.versions))
    table.add_row("key", t.key()[:16])
    if gpu is not None:
        table.add_row("gpu", f"{gpu.name} ({gpu.arch}, {gpu.cores} SMs)")
    out.print(table)


def _torch_sees_gpu() -> bool:
    """Cheap check before importing torch: a CUDA driver must be present."""
    import os
    return os.path.exists("/proc/driver/nvidia/version") or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def _open_db(db: Optional[str], no_db: bool = False):
    """The record store a command reads and writes: ``--db``, else the default tuning database."""
    import os
    from tilewise.datasets.base import StoreError, default_location, open_store
    if no_db:
        return None
    location = db or default_location()
    if db is None and "://" not in location:
        os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
    try:
        return open_store(location)
    except StoreError as e:
        fail(str(e))


@app.command()
def tune(
    workload: str = typer.Argument(..., help="WORKLOAD string (matmul:512x512x512:f32) or FILE.mlir"),
    trials: int = typer.Option(32, "--trials", "-n", min=1, help="schedules to measure"),
    strategy: Optional[str] = typer.Option(
        None, "--strategy", help="search strategy: model (default) | random | optuna | grid | lhs | "
        "nsga2 (default with --objectives latency,error)"),
    objectives: str = typer.Option("latency", "--objectives",
                                   help="latency, or latency,error: also search lower precisions and "
                                   "print the Pareto front of latency vs error"),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="most threads a schedule may use"),
    max_rel_error: Optional[float] = typer.Option(
        None, "--max-rel-error", help="error budget vs float64; admits lower precisions within it"),
    db: Optional[str] = typer.Option(None, "--db", help="tuning database (record store); default "
                                     "$TILEWISE_DB or ~/.cache/tilewise/records.db"),
    no_db: bool = typer.Option(False, "--no-db", help="neither read nor write a tuning database"),
    retune: bool = typer.Option(False, "--retune", help="search even if the database holds a schedule"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="print the result object as JSON"),
):
    """Tune a workload: measure TRIALS schedules, re-measure the best side by side with the default
    schedule and the library baseline, and report the winner.  Every trial goes to the tuning
    database; a workload tuned before is answered from it unless --retune.

    Examples:

      tilewise tune matmul:512x512x512:f32 --trials 32 --threads 1

      tilewise tune matmul:1024x1024x1024:f32 --trials 64 --threads 2 --json

      tilewise tune model.mlir --trials 16

      tilewise tune matmul:256x256x256:f32 --objectives latency,error --trials 32
    """
    from tilewise.profiling.target import detect
    from tilewise.tuner.base import available
    from tilewise.tuner.tune import TuneConfig
    from tilewise.tuner.tune import tune as run_tune
    goals = tuple(o.strip() for o in objectives.split(",") if o.strip())
    if goals not in (("latency",), ("latency", "error")):
        fail(f"--objectives {objectives!r}: use latency or latency,error")
    if strategy is None:
        strategy = "nsga2" if "error" in goals else "model"
    if strategy not in available():
        fail(f"unknown strategy {strategy!r}: use one of {', '.join(available())}")
    if max_rel_error is not None and not max_rel_error > 0:
        fail("--max-rel-error must be a positive number")
    target = detect()
    if threads > target.cores:
        fail(f"--threads {threads} exceeds the {target.cores} cores this process may use")
    wls = _workloads(workload)
    store = _open_db(db, no_db)
    results = []
    try:
        for w in wls:
            config = TuneConfig(trials=trials, strategy=strategy, max_threads=threads,
                                max_rel_error=max_rel_error, seed=seed, retune=retune, objectives=goals)
            results.append(_tune_one(w, target, config, run_tune, store, quiet=as_json))
    finally:
        if store is not None:
            store.close()
    if as_json:
        payload = [r.to_json() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        for r in results:
            _print_result(r)
    if any(r.best is None for r in results):
        raise typer.Exit(1)


def _tune_one(w, target, config, run_tune, store, quiet: bool):
    columns = [TextColumn(f"[bold]{w}[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[best]}"), TextColumn("failed {task.fields[failed]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    state = {"best": None, "failed": 0}
    with Progress(*columns, console=err, transient=True, disable=quiet) as progress:
        task = progress.add_task("tune", total=config.trials, best="", failed=0)

        def on_trial(trial):
            m = trial.measurement
            if m.ok and (state["best"] is None or m.median_s < state["best"]):
                state["best"] = m.median_s
            state["failed"] += not m.ok
            best = f"best {w.flops / state['best'] / 1e9:.1f} GFLOP/s" if state["best"] else ""
            progress.update(task, advance=1, best=best, failed=state["failed"])

        return run_tune(w, target, config, store=store, on_trial=on_trial)


def _print_result(r) -> None:
    """A summary a person reads in five seconds, then the detail table."""
    title = f"tilewise tune {r.workload}  ({r.target.name}, threads <= {r.config.max_threads})"
    if r.best is None:
        out.print(f"[bold]{title}[/]")
        out.print("[bold red]no schedule passed the reference check[/]")
    else:
        gflops = r.workload.flops / r.best.median_s / 1e9
        summary = Table(title=title, show_header=False, title_justify="left")
        summary.add_column(style="bold")
        summary.add_column()
        summary.add_row("best", f"[bold green]{gflops:.1f} GFLOP/s[/]  ({_fmt_time(r.best.median_s)})")
        summary.add_row(f"vs {r.reference.name}", f"[bold]{r.ratio_to_reference():.2f}x[/]")
        if r.speedup_over_default() is not None:
            summary.add_row("vs default", f"[bold]{r.speedup_over_default():.2f}x[/]")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.status_counts().items()))
        searched = (f"{len(r.trials)} trials ({counts}) with {r.strategy}" if r.searched
                    else "no search: answered from the database (--retune to search)")
        summary.add_row("time spent", f"{r.wall_time_s:.1f} s; {searched}")
        summary.add_row("record", f"{r.store} ({len(r.prior)} fitting records before this run)"
                        if r.store else "not recorded (--no-db)")
        out.print(summary)
    table = Table()
    table.add_column("kernel")
    table.add_column("median", justify="right")
    table.add_column("GFLOP/s", justify="right")
    table.add_column("vs best", justify="right")
    table.add_column("rel. error", justify="right")
    rows = [("best (tuned)", r.best), ("default schedule", r.default), (f"{r.reference.name} (reference)", r.reference)]
    for label, t in rows:
        if t is None:
            table.add_row(label, "-", "-", "-", "-")
            continue
        rel = f"{t.rel_error:.1e}" if t.rel_error is not None else "-"
        ratio = f"{t.median_s / r.best.median_s:.2f}x" if r.best else "-"
        table.add_row(label, _fmt_time(t.median_s), f"{r.workload.flops / t.median_s / 1e9:.1f}", ratio, rel)
    out.print(table)
    if r.best is not None:
        out.print(f"best schedule: {r.best.schedule.dumps()}", highlight=False, soft_wrap=True)
    if r.config.multi_objective:
        front = Table(title=f"Pareto front: latency vs error (error budget {r.config.error_budget(r.workload):.0e})")
        for c in ("precision", "median", "GFLOP/s", "rel. error", "schedule"):
            front.add_column(c, justify="left" if c in ("precision", "schedule") else "right")
        for t in r.pareto:
            m = t.measurement
            front.add_row(str(t.schedule.get("precision", r.workload.dtype)), _fmt_time(m.median_s),
                          f"{r.workload.flops / m.median_s / 1e9:.1f}",
                          f"{m.rel_error:.1e}" if m.rel_error is not None else "-", t.schedule.dumps())
        out.print(front)
        tried = sorted({str(t.schedule.get("precision", r.workload.dtype)) for t in r.trials})
        out.print(f"precisions measured: {', '.join(tried)}", highlight=False)
    for note in r.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)


@app.command()
def best(
    workload: str = typer.Argument(..., help="WORKLOAD string (matmul:512x512x512:f32) or FILE.mlir"),
    db: Optional[str] = typer.Option(None, "--db", help="tuning database; default $TILEWISE_DB or "
                                     "~/.cache/tilewise/records.db"),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1,
                                          help="only schedules using at most this many threads"),
    as_json: bool = typer.Option(False, "--json"),
):
    """The best verified schedule the database holds for WORKLOAD on this machine.

    Example: tilewise best matmul:512x512x512:f32 --json
    """
    from tilewise.profiling.target import detect
    wls = _workloads(workload)
    target = detect()
    store = _open_db(db)
    found = []
    with store:
        for w in wls:
            records = [r for r in store.query(w, target)
                       if threads is None or int(r.schedule.get("threads", 1)) <= threads]
            found.append((w, records[0] if records else None, len(records)))
    if as_json:
        payload = [{"workload": str(w), "target_key": target.key(), "records": n,
                    "best": None if r is None else {
                        "schedule": r.schedule.to_json(), "latency_s": r.measurement.median_s,
                        "gflops": w.flops / r.measurement.median_s / 1e9,
                        "rel_error": r.measurement.rel_error, "measured_at": r.timestamp}}
                   for w, r, n in found]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        import time
        for w, r, n in found:
            if r is None:
                out.print(f"{w}: no verified schedule in {getattr(store, 'path', store)} for this target "
                          f"(run: tilewise tune {w})", highlight=False)
                continue
            m = r.measurement
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.timestamp))
            rel = f"{m.rel_error:.1e}" if m.rel_error is not None else "-"
            out.print(f"[bold]{w}[/]: {w.flops / m.median_s / 1e9:.1f} GFLOP/s ({_fmt_time(m.median_s)}, "
                      f"rel. error {rel}), best of {n} verified records, measured {when}",
                      highlight=False)
            out.print(f"  schedule: {r.schedule.dumps()}", highlight=False, soft_wrap=True)
    if any(r is None for _, r, _ in found):
        raise typer.Exit(1)


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


@app.command()
def measure(
    workload: str = typer.Argument(..., help="WORKLOAD string, e.g. matmul:512x512x512:f32"),
    schedule: str = typer.Option(..., "--schedule", "-s",
                                 help='schedule as JSON, e.g. \'{"tile":[0,16,512],"reg_tile":[6,16]}\'; '
                                      '"default" or "untuned" for the built-in ones'),
    max_rel_error: Optional[float] = typer.Option(None, "--max-rel-error"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Compile one schedule, check it against the float64 reference and time it.

    Example: tilewise measure matmul:256x256x256:f32 --schedule '{"tile":[0,16,256],"reg_tile":[6,16],"promote":true}'
    """
    from tilewise.ir.ops.base import ScheduleError
    from tilewise.ir.schedule import Schedule
    from tilewise.profiling.measure import measure as run_measure
    from tilewise.profiling.target import detect
    (w,) = _workloads(workload)[:1]
    if schedule == "default":
        s = w.kind.default_schedule(w, detect())
    elif schedule == "untuned":
        s = w.kind.untuned_schedule(w)
    else:
        try:
            data = json.loads(schedule)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            s = Schedule(data)
        except (ValueError, TypeError) as e:
            fail(f"--schedule is not a JSON object of knobs ({e}): e.g. '{{\"reg_tile\": [4, 16]}}'")
    try:
        w.kind.validate(w, s)
    except ScheduleError as e:
        fail(f"illegal schedule for {w}: {e}")
    m = run_measure(w, s, max_rel_error=max_rel_error)
    if as_json:
        print(json.dumps({"workload": str(w), "schedule": s.to_json(), "measurement": m.to_json(),
                          "gflops": w.flops / m.median_s / 1e9 if m.ok else None}, indent=2))
    elif m.ok:
        out.print(f"{w}: median {_fmt_time(m.median_s)}, {w.flops / m.median_s / 1e9:.1f} GFLOP/s, "
                  f"rel. error {m.rel_error:.1e}, compile {m.compile_time_s * 1e3:.0f} ms")
    else:
        out.print(f"{w}: {m.status}: {m.error_msg}")
    if not m.ok:
        raise typer.Exit(1)


@app.command()
def collect(
    workloads: str = typer.Option(..., "--workloads", "-w",
                                  help="workload strings and/or suite:NAME, comma- or space-separated"),
    samples: int = typer.Option(50, "--samples", "-n", min=1, help="schedules per workload"),
    db: str = typer.Option("tilewise.db", "--db", help="record store (SQLite path)"),
    strategy: str = typer.Option("random", "--strategy", help="random | lhs (Latin hypercube)"),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="most threads a schedule may use"),
    build_workers: int = typer.Option(1, "--build-workers", min=1, help="compile processes"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Measure SAMPLES schedules per workload into a record store; resumes where it stopped.

    Examples:

      tilewise collect --workloads suite:bert-base --samples 50 --db bert.db

      tilewise collect --workloads matmul:512x512x512:f32,relu:1024x1024:f32 --samples 20 --strategy lhs
    """
    from tilewise.datasets.suites import SUITES, expand
    from tilewise.ir.workload import Workload, WorkloadError
    from tilewise.profiling.base import RunnerConfig
    from tilewise.profiling.runner import LocalRunner
    from tilewise.profiling.target import detect
    from tilewise.tuner.collect import CollectConfig
    from tilewise.tuner.collect import collect as run_collect
    if strategy not in ("random", "lhs"):
        fail(f"unknown strategy {strategy!r} for collect: use random or lhs")
    try:
        wls = [Workload.parse(t) for t in expand(workloads)]
    except (ValueError, WorkloadError) as e:
        fail(f"{e} (suites: {', '.join(sorted(SUITES))})")
    if not wls:
        fail("--workloads names no workload")
    target = detect()
    if threads > target.cores:
        fail(f"--threads {threads} exceeds the {target.cores} cores this process may use")
    store = _open_db(db)
    config = CollectConfig(samples=samples, strategy=strategy, max_threads=threads, seed=seed)
    columns = [TextColumn("{task.fields[workload]}"), BarColumn(bar_width=16), MofNCompleteColumn(),
               TextColumn("failed {task.fields[failed]}"), TextColumn("skipped {task.fields[skipped]}"),
               TextColumn("ETA"), TimeRemainingColumn()]
    with store, LocalRunner(RunnerConfig(build_workers=build_workers)) as runner, \
            Progress(*columns, console=err, disable=as_json) as progress:
        task = progress.add_task("collect", total=samples * len(wls), workload="", failed=0, skipped=0)

        def on_progress(p):
            progress.update(task, completed=p.done, total=p.total, workload=p.workload[:28],
                            failed=p.failed, skipped=p.skipped)
        result = run_collect(wls, target, store, runner, config, on_progress=on_progress)
        stored = len(store)
    summary = {"db": db, "workloads": len(wls), "measured": result.done - result.skipped,
               "skipped": result.skipped, "failed": result.failed, "by_status": result.by_status,
               "records_in_store": stored}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        out.print(f"collected {summary['measured']} new measurements over {len(wls)} workloads "
                  f"({result.skipped} already held, {result.failed} failed); {db} holds {stored} records")


dataset_app = typer.Typer(help="Record-store datasets: export and import.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("export")
def dataset_export(
    db: str = typer.Option("tilewise.db", "--db", help="record store to read"),
    out_path: str = typer.Option(..., "--out", "-o", help="file to write"),
    fmt: str = typer.Option("parquet", "--format", help="parquet"),
):
    """Export every record of a store (e.g. for pandas: pd.read_parquet(PATH)).

    Example: tilewise dataset export --db bert.db --format parquet --out bert.parquet
    """
    from tilewise.datasets.base import StoreError, open_store
    from tilewise.datasets.parquet import export_parquet
    if fmt != "parquet":
        fail(f"unknown format {fmt!r}: use parquet")
    try:
        with open_store(db) as store:
            n = export_parquet(store, out_path)
    except StoreError as e:
        fail(str(e))
    out.print(f"wrote {n} records to {out_path}")


@dataset_app.command("import")
def dataset_import(
    in_path: str = typer.Argument(..., help="Parquet file written by 'tilewise dataset export'"),
    db: str = typer.Option("tilewise.db", "--db", help="record store to append to"),
):
    """Append the records of a Parquet export to a store (duplicates are skipped)."""
    from tilewise.datasets.base import StoreError, open_store
    from tilewise.datasets.parquet import import_parquet
    try:
        with open_store(db) as store:
            n = import_parquet(in_path, store)
    except (StoreError, OSError, ValueError) as e:
        fail(str(e))
    out.print(f"imported {n} new records into {db}")


@app.command()
def train(
    db: str = typer.Option("embedded", "--db", help="record store to learn from ('embedded': the shipped dataset)"),
    model: str = typer.Option("xgb", "--model", "-m", help="xgb | rf | gbm | mlp | roofline"),
    features: str = typer.Option("analytic", "--features", help="extractors, e.g. analytic,target (ir is slow)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="where to save the trained model"),
    split: str = typer.Option("workload", "--split", help="hold out by workload (default) or target"),
    test_fraction: float = typer.Option(0.2, "--test-fraction"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train a cost model; print its metrics on held-out workloads next to the roofline baseline.

    Example: tilewise train --db bert.db --model xgb --features analytic,target --out bert.xgb
    """
    from tilewise.costmodel.cli_commands import train_command
    try:
        rep, table = train_command(db, model=model, out=out, features=features, split=split,
                                   test_fraction=test_fraction, seed=seed)
    except ValueError as e:
        fail(str(e))
    _print_report(rep, table, as_json)


@app.command(name="eval")
def eval_(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model file (default: the embedded model)"),
    db: str = typer.Option("embedded", "--db", help="record store ('embedded': the shipped dataset)"),
    include_seen: bool = typer.Option(False, "--include-seen", help="also score workloads seen in training"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Evaluate a cost model on the workloads it was not trained on: R², MAPE, Spearman, Kendall,
    pairwise accuracy, top-1/top-5 score, next to the roofline baseline.

    Example: tilewise eval --json   (the embedded model on the shipped dataset's held-out workloads)
    """
    from tilewise.costmodel.cli_commands import eval_command
    from tilewise.costmodel.embedded import EMBEDDED_MODEL
    try:
        rep, table = eval_command(model or str(EMBEDDED_MODEL), db, include_seen=include_seen)
    except ValueError as e:
        fail(str(e))
    _print_report(rep, table, as_json)


def _print_report(rep: dict, table, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rep, indent=2, default=float))
    else:
        out.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
