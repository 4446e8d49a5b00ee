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
                  help="tilewise: learned cost models and autotuning for ML kernels on MLIR.",
                  epilog="Start with: tilewise info; tilewise tune matmul:512x512x512:f32 --trials 24 --db my.db; "
                         "tilewise report --db my.db --out report.html.  Every command takes --json; "
                         "'tilewise COMMAND --help' shows its examples.")
out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _spinner(message: str):
    """A spinner on stderr for a step that takes more than a second (stdout stays clean for --json;
    rich draws nothing when stderr is not a terminal, e.g. in CI logs)."""
    return err.status(message, spinner="dots")


def _existing_store(db: str, hint: str) -> str:
    """``db`` when it names a store that exists (or a server URL); else one actionable error line."""
    import os
    if "://" not in db and db != "embedded" and not os.path.exists(db):
        fail(f"no record store at {db}: {hint}")
    return db


def _workloads(spec: str):
    from tilewise.frontends.mlir_file import MlirFileError, workloads_from_mlir
    from tilewise.core.workload import Workload, WorkloadError
    try:
        if spec.endswith(".mlir"):
            return workloads_from_mlir(spec)
        return [Workload.parse(spec)]
    except (WorkloadError, MlirFileError) as e:
        fail(str(e))


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="print the target as JSON")):
    """Print the detected target (CPU model, ISA, cores, caches) and its key.

    Examples:

      tilewise info

      tilewise info --json
    """
    from tilewise.core.target import detect
    from tilewise.profiling.cuda_target import describe_cuda
    t = detect()
    gpu = describe_cuda() if _torch_sees_gpu() else None
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


def _target_kind(kind: str) -> str:
    from tilewise.tuner.targets import TARGET_KINDS
    if TARGET_KINDS.find(kind) is None:
        fail(f"--target {kind!r}: use {' or '.join(TARGET_KINDS.names())}")
    return kind


def _detect(kind: str):
    """The target of ``kind`` this process runs on (a GPU's peaks measured once and cached), or
    one error line and exit 2."""
    from tilewise.profiling.cuda_target import CudaUnavailable
    from tilewise.tuner.targets import TARGET_KINDS
    try:
        return TARGET_KINDS.get(kind).detect()
    except CudaUnavailable as e:
        fail(str(e))


def _cuda_target():
    return _detect("cuda")


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


def _cluster_runner(cluster: str, config, require_target=None):
    """A RayRunner on the cluster at ``cluster`` (ray://HOST:PORT, HOST:PORT or auto)."""
    from tilewise.profiling.ray_runner import ClusterError, RayRunner
    try:
        runner = RayRunner(cluster, config, require_target=require_target)
        if not runner.nodes():
            why = "; ".join(f"node {k[:8]}: {v}" for k, v in runner.excluded().items())
            runner.close()
            fail(f"no node of the Ray cluster at {cluster} takes work" + (f" ({why})" if why else ""))
        return runner
    except ClusterError as e:
        fail(str(e))


def _study_options(strategy: str, storage: Optional[str], study_name: Optional[str]) -> tuple:
    """(name, value) options of a shared optuna study (--study-storage, --study-name)."""
    if storage is None and study_name is None:
        return ()
    if strategy not in ("optuna", "nsga2"):
        fail(f"--study-storage/--study-name need --strategy optuna or nsga2, not {strategy}")
    if storage is None:
        fail("--study-name needs --study-storage (sqlite:///PATH or postgresql://...)")
    if "://" not in storage:
        fail(f"--study-storage {storage!r} is not a database URL: use sqlite:///PATH or postgresql://...")
    return (("storage", storage),) + ((("study_name", study_name),) if study_name else ())


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
    cluster: Optional[str] = typer.Option(None, "--cluster", help="measure on the nodes of this machine's target "
                                          "in a Ray cluster: ray://HOST:PORT, HOST:PORT or auto"),
    study_storage: Optional[str] = typer.Option(None, "--study-storage", help="optuna/nsga2: share the study "
                                                "through this database (sqlite:///PATH or postgresql://...)"),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="name of the shared study (default: "
                                             "derived from the workload, target and space)"),
    target_kind: str = typer.Option("cpu", "--target", help="cpu, or cuda: Triton kernels on the GPU torch sees"),
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
    target = _detect(_target_kind(target_kind))
    if target.kind == "cpu" and threads > target.cores:
        fail(f"--threads {threads} exceeds the {target.cores} cores this process may use")
    if cluster is not None and target.kind != "cpu":
        fail("--cluster measures CPU kernels; drop --target cuda or --cluster")
    options = _study_options(strategy, study_storage, study_name)
    wls = _workloads(workload)
    store = _open_db(db, no_db)
    results = []
    runner = None
    from tilewise.profiling.ray_runner import ClusterError
    from tilewise.tuner.targets import runner_config
    try:
        for w in wls:
            config = TuneConfig(trials=trials, strategy=strategy, max_threads=threads,
                                max_rel_error=max_rel_error, seed=seed, retune=retune, objectives=goals,
                                strategy_options=options)
            if cluster is not None and runner is None:
                runner = _cluster_runner(cluster, runner_config(config), require_target=target)
            results.append(_tune_one(w, target, config, run_tune, store, quiet=as_json, runner=runner))
    except ClusterError as e:
        fail(str(e))
    finally:
        if runner is not None:
            runner.close()
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


def _tune_one(w, target, config, run_tune, store, quiet: bool, runner=None):
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

        cluster = {"runner": runner} if runner is not None else {}
        return run_tune(w, target, config, store=store, on_trial=on_trial, **cluster)


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
    from tilewise.core.target import detect
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
    from tilewise.core.schedule import Schedule
    from tilewise.profiling.measure import measure as run_measure
    from tilewise.core.target import detect
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
    with _spinner(f"measuring {w}: compile, check against float64, time"):
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
    db: str = typer.Option("tilewise.db", "--db", help="record store: SQLite path or postgresql://USER@HOST/DB"),
    strategy: str = typer.Option("random", "--strategy", help="random | lhs (Latin hypercube)"),
    threads: int = typer.Option(1, "--threads", "-t", min=1, help="most threads a schedule may use"),
    build_workers: int = typer.Option(1, "--build-workers", min=1, help="compile processes (per node)"),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="measure on every node of a Ray cluster: "
                                          "ray://HOST:PORT, HOST:PORT or auto; records carry each node's target"),
    seed: int = typer.Option(0, "--seed"),
    rounds: int = typer.Option(1, "--rounds", min=1, help="measure each schedule in R interleaved rounds "
                               "(fresh shuffled order, kernel rebuilt and reloaded) and pool them: "
                               "reproducible ranks for memory-bound kernels"),
    target_kind: str = typer.Option("cpu", "--target", help="cpu, or cuda: Triton kernels on the GPU torch sees"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Measure SAMPLES schedules per workload into a record store; resumes where it stopped.

    Examples:

      tilewise collect --workloads suite:bert-base --samples 50 --db bert.db

      tilewise collect --workloads matmul:512x512x512:f32,relu:1024x1024:f32 --samples 20 --strategy lhs
    """
    from tilewise.datasets.suites import SUITES, expand
    from tilewise.core.workload import Workload, WorkloadError
    from tilewise.profiling.base import RunnerConfig
    from tilewise.profiling.runner import LocalRunner
    from tilewise.core.target import detect
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
    if rounds > 1 and cluster:      # before the cluster runner connects
        fail("--rounds pools one machine's timings of a schedule; drop --rounds or --cluster")
    if _target_kind(target_kind) == "cuda":
        if cluster:
            fail("--cluster measures CPU kernels; drop --target cuda or --cluster")
        from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig
        target = _cuda_target()
        runner = GpuRunner(GpuRunnerConfig(compile_workers=build_workers))
    else:
        target = detect()
        if threads > target.cores:
            fail(f"--threads {threads} exceeds the {target.cores} cores this process may use")
        runner = (_cluster_runner(cluster, RunnerConfig(build_workers=build_workers)) if cluster
                  else LocalRunner(RunnerConfig(build_workers=build_workers)))
    store = _open_db(db)
    config = CollectConfig(samples=samples, strategy=strategy, max_threads=threads, seed=seed, rounds=rounds)
    columns = [TextColumn("{task.fields[workload]}"), BarColumn(bar_width=16), MofNCompleteColumn(),
               TextColumn("failed {task.fields[failed]}"), TextColumn("skipped {task.fields[skipped]}"),
               TextColumn("ETA"), TimeRemainingColumn()]
    with store, runner, Progress(*columns, console=err, disable=as_json) as progress:
        task = progress.add_task("collect", total=samples * len(wls), workload="", failed=0, skipped=0)

        def on_progress(p):
            progress.update(task, completed=p.done, total=p.total, workload=p.workload[:28],
                            failed=p.failed, skipped=p.skipped)
        from tilewise.profiling.ray_runner import ClusterError
        try:
            result = run_collect(wls, target, store, runner, config, on_progress=on_progress)
        except ClusterError as e:
            fail(str(e))
        stored = len(store)
    db = getattr(store, "path", db)           # a database URL without its password
    summary = {"db": db, "workloads": len(wls), "measured": result.done - result.skipped,
               "skipped": result.skipped, "failed": result.failed, "by_status": result.by_status,
               "records_in_store": stored}
    if cluster:
        summary["cluster"] = {"address": cluster, "nodes": {k: n for k, n in runner.measured_by.items()},
                              "requeued": runner.requeued}
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
    as_json: bool = typer.Option(False, "--json", help='print {"db", "out", "records"} as JSON'),
):
    """Export every record of a store (e.g. for pandas: pd.read_parquet(PATH)).

    Example: tilewise dataset export --db bert.db --format parquet --out bert.parquet
    """
    from tilewise.datasets.base import StoreError, open_store
    from tilewise.datasets.parquet import export_parquet
    if fmt != "parquet":
        fail(f"unknown format {fmt!r}: use parquet")
    _existing_store(db, "pass the store to export with --db PATH (written by tilewise collect or tune)")
    try:
        with open_store(db) as store, _spinner(f"exporting {db}"):
            n = export_parquet(store, out_path)
    except (StoreError, OSError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps({"db": db, "out": out_path, "records": n}, indent=2))
    else:
        out.print(f"wrote {n} records to {out_path}")


@dataset_app.command("import")
def dataset_import(
    in_path: str = typer.Argument(..., help="Parquet file written by 'tilewise dataset export'"),
    db: str = typer.Option("tilewise.db", "--db", help="record store to append to"),
    as_json: bool = typer.Option(False, "--json", help='print {"db", "in", "imported"} as JSON'),
):
    """Append the records of a Parquet export to a store (duplicates are skipped).

    Example: tilewise dataset import bert.parquet --db mine.db
    """
    import os
    from tilewise.datasets.base import StoreError, open_store
    from tilewise.datasets.parquet import import_parquet
    if not os.path.exists(in_path):
        fail(f"no file {in_path}: write one with tilewise dataset export --db STORE --out {in_path}")
    try:
        with open_store(db) as store, _spinner(f"importing {in_path}"):
            n = import_parquet(in_path, store)
    except (StoreError, OSError, ValueError) as e:
        fail(str(e))
    if as_json:
        print(json.dumps({"db": db, "in": in_path, "imported": n}, indent=2))
    else:
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
    target_kind: str = typer.Option("cpu", "--target", help="cpu, or cuda: train on the store's GPU "
                                    "records (gpu_analytic features; needs no GPU)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train a cost model; print its metrics on held-out workloads next to the roofline baseline.

    Example: tilewise train --db bert.db --model xgb --features analytic,target --out bert.xgb
    """
    from tilewise.costmodel.cli_commands import train_command
    if _target_kind(target_kind) == "cuda":
        from tilewise.costmodel.gpu_commands import train_cuda_command as train_command  # noqa: F811
    _existing_store(db, "collect a dataset first (tilewise collect --workloads suite:small --db PATH) "
                        "or use --db embedded")
    try:
        with _spinner(f"training {model} on {db}"):
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
    _existing_store(db, "pass a store of measurements (tilewise collect ... --db PATH) or --db embedded")
    try:
        with _spinner(f"scoring {model or 'the embedded model'} on {db}"):
            rep, table = eval_command(model or str(EMBEDDED_MODEL), db, include_seen=include_seen)
    except ValueError as e:
        fail(str(e))
    _print_report(rep, table, as_json)


def _print_report(rep: dict, table, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rep, indent=2, default=float))
    else:
        out.print(table)


@app.command()
def report(
    db: Optional[str] = typer.Option(None, "--db", help="record store to report on; default $TILEWISE_DB or "
                                     "~/.cache/tilewise/records.db"),
    out_path: Optional[str] = typer.Option(None, "--out", "-o", help="file to write (default: "
                                           "tilewise-report.html; with --format md: print to stdout)"),
    fmt: str = typer.Option("html", "--format", "-f", help="html (charts, self-contained) | md (Markdown tables)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="cost model file to score (default: the embedded model)"),
    no_model: bool = typer.Option(False, "--no-model", help="leave out the cost-model section"),
    model_trace: Optional[str] = typer.Option(None, "--model-trace", help="a compiled torch model's trace "
                                              "(JSON the torch.compile backend writes with options={'trace': PATH})"),
    no_roofline: bool = typer.Option(False, "--no-roofline", help="do not measure this machine's roofline"),
    refresh_roofline: bool = typer.Option(False, "--refresh-roofline",
                                          help="measure the roofline again instead of using the cached one"),
    as_json: bool = typer.Option(False, "--json", help="print the report's data as JSON (the HTML is still written)"),
):
    """Write the profile report of a tuning database: tuning curves per workload and strategy, the
    measured roofline with every default and best kernel on it, best vs default vs OpenBLAS, the cost
    model's quality, precision trade-offs, and a compiled model's time per kernel.

    Examples:

      tilewise report --db demo.db --out report.html

      tilewise report --db demo.db --format md            (Markdown tables on stdout, e.g. in CI logs)

      tilewise report --db demo.db --model bert.twmodel --model-trace trace.json --json
    """
    import os
    from tilewise.frontends.report import ReportOptions, build
    if fmt not in ("html", "md"):
        fail(f"unknown --format {fmt!r}: use html or md")
    location = db or __import__("tilewise.datasets.base", fromlist=["default_location"]).default_location()
    if "://" not in location and not os.path.exists(location):
        fail(f"no record store at {location}: tune something into it first "
             f"(tilewise tune matmul:256x256x256:f32 --db {location}) or pass --db PATH")
    if model_trace and not os.path.exists(model_trace):
        fail(f"no model trace at {model_trace}: compile with torch.compile(model, backend='tilewise', "
             "options={'trace': PATH}) to write one")
    options = ReportOptions(model_path=model, cost_model=not no_model, roofline=not no_roofline,
                            refresh_roofline=refresh_roofline, model_trace=model_trace)
    store = _open_db(location)
    try:
        with store, err.status("report: starting", spinner="dots") as status:
            data = build(store, options, on_step=lambda step: status.update(f"report: {step}"))
            if fmt == "html":
                from tilewise.frontends.report import html as report_html
                status.update("report: rendering HTML")
                data["out"] = report_html.write(data, out_path or "tilewise-report.html")
    except (ValueError, OSError) as e:      # ModelFileError, TraceError, StoreError: one line each
        fail(str(e))
    if as_json:
        print(json.dumps(data, indent=1, default=str))
    elif fmt == "md":
        from tilewise.frontends.report import markdown
        text = markdown.render(data)
        if out_path:
            with open(out_path, "w", encoding="utf-8") as f:
                f.write(text)
            out.print(f"wrote {out_path}", highlight=False)
        else:
            print(text)
    else:
        n_targets, n_runs = len(data["targets"]), data["n_runs"]
        out.print(f"report: {data['out']}  ({data['n_records']} records, {n_runs} tuning run{'s' * (n_runs != 1)}, "
                  f"{n_targets} target{'s' * (n_targets != 1)})", highlight=False, soft_wrap=True)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
