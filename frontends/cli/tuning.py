"""``tilewise tune``, ``best`` and ``measure``: tune a workload, look up the best stored schedule,
time one schedule."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tilewise.frontends.cli.context import (check_buffers_fit, check_cluster_kind, check_threads, checked_target_kind,
                                            cluster_runner, err, fail, fmt_time, open_db, out, print_json,
                                            print_json_per_workload, spinner, target_for, workloads)


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
    from tilewise.tuner.tune import TuneConfig
    goals, strategy = _objectives_and_strategy(objectives, strategy)
    if max_rel_error is not None and not max_rel_error > 0:
        fail("--max-rel-error must be a positive number")
    kind = checked_target_kind(target_kind)
    target = target_for(kind)
    check_threads(threads, target)
    check_cluster_kind(cluster, target.kind)
    options = _study_options(strategy, study_storage, study_name)
    wls = workloads(workload)
    check_buffers_fit(wls)
    config = TuneConfig(trials=trials, strategy=strategy, max_threads=threads, max_rel_error=max_rel_error,
                        seed=seed, retune=retune, objectives=goals, strategy_options=options)
    store = open_db(db, no_db)
    results = _tune_all(wls, target, config, store, cluster, quiet=as_json)
    if as_json:
        print_json_per_workload([r.to_json() for r in results])
    else:
        for r in results:
            print_result(r)
    if any(r.best is None for r in results):
        raise typer.Exit(1)


def _objectives_and_strategy(objectives: str, strategy: Optional[str]) -> tuple[tuple, str]:
    """``--objectives`` as a tuple and ``--strategy`` (its default follows the objectives), checked."""
    from tilewise.tuner.base import available
    goals = tuple(o.strip() for o in objectives.split(",") if o.strip())
    if goals not in (("latency",), ("latency", "error")):
        fail(f"--objectives {objectives!r}: use latency or latency,error")
    if strategy is None:
        strategy = "nsga2" if "error" in goals else "model"
    if strategy not in available():
        fail(f"unknown strategy {strategy!r}: use one of {', '.join(available())}")
    return goals, strategy


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


def _tune_all(wls, target, config, store, cluster: Optional[str], quiet: bool) -> list:
    """Tune each workload in turn (on the Ray cluster at ``cluster`` if given, connected once);
    the runner and the store are closed however it ends."""
    from tilewise.profiling.ray_runner import ClusterError
    from tilewise.tuner.targets import runner_config
    results = []
    runner = None
    try:
        for w in wls:
            if cluster is not None and runner is None:
                runner = cluster_runner(cluster, runner_config(config), require_target=target)
            results.append(_tune_one(w, target, config, store, quiet=quiet, runner=runner))
    except ClusterError as e:
        fail(str(e))
    finally:
        if runner is not None:
            runner.close()
        if store is not None:
            store.close()
    return results


def _tune_one(w, target, config, store, quiet: bool, runner=None):
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
        from tilewise.tuner.tune import tune
        return tune(w, target, config, store=store, on_trial=on_trial, **cluster)


def print_result(r) -> None:
    """A summary a person reads in five seconds, then the detail table."""
    title = f"tilewise tune {r.workload}  ({r.target.name}, threads <= {r.config.max_threads})"
    if r.best is None:
        out.print(f"[bold]{title}[/]")
        out.print("[bold red]no schedule passed the reference check[/]")
    else:
        out.print(_summary(r, title))
    out.print(_kernels(r))
    if r.best is not None:
        out.print(f"best schedule: {r.best.schedule.dumps()}", highlight=False, soft_wrap=True)
    if r.config.multi_objective:
        out.print(_pareto_front(r))
        tried = sorted({str(t.schedule.get("precision", r.workload.dtype)) for t in r.trials})
        out.print(f"precisions measured: {', '.join(tried)}", highlight=False)
    for note in r.notes:
        out.print(f"note: {note}", highlight=False, soft_wrap=True)


def _summary(r, title: str) -> Table:
    gflops = r.workload.flops / r.best.median_s / 1e9
    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("best", f"[bold green]{gflops:.1f} GFLOP/s[/]  ({fmt_time(r.best.median_s)})")
    summary.add_row(f"vs {r.reference.name}", f"[bold]{r.ratio_to_reference():.2f}x[/]")
    if r.speedup_over_default() is not None:
        summary.add_row("vs default", f"[bold]{r.speedup_over_default():.2f}x[/]")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(r.status_counts().items()))
    searched = (f"{len(r.trials)} trials ({counts}) with {r.strategy}" if r.searched
                else "no search: answered from the database (--retune to search)")
    summary.add_row("time spent", f"{r.wall_time_s:.1f} s; {searched}")
    summary.add_row("record", f"{r.store} ({len(r.prior)} fitting records before this run)"
                    if r.store else "not recorded (--no-db)")
    return summary


def _kernels(r) -> Table:
    """Best, default and reference side by side."""
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
        table.add_row(label, fmt_time(t.median_s), f"{r.workload.flops / t.median_s / 1e9:.1f}", ratio, rel)
    return table


def _pareto_front(r) -> Table:
    front = Table(title=f"Pareto front: latency vs error (error budget {r.config.error_budget(r.workload):.0e})")
    for c in ("precision", "median", "GFLOP/s", "rel. error", "schedule"):
        front.add_column(c, justify="left" if c in ("precision", "schedule") else "right")
    for t in r.pareto:
        m = t.measurement
        front.add_row(str(t.schedule.get("precision", r.workload.dtype)), fmt_time(m.median_s),
                      f"{r.workload.flops / m.median_s / 1e9:.1f}",
                      f"{m.rel_error:.1e}" if m.rel_error is not None else "-", t.schedule.dumps())
    return front


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
    wls = workloads(workload)
    target = detect()
    store = open_db(db)
    found = []
    with store:
        for w in wls:
            records = [r for r in store.query(w, target)
                       if threads is None or int(r.schedule.get("threads", 1)) <= threads]
            found.append((w, records[0] if records else None, len(records)))
    if as_json:
        print_json_per_workload([_best_json(w, r, n, target) for w, r, n in found])
    else:
        for w, r, n in found:
            _print_best(w, r, n, store)
    if any(r is None for _, r, _ in found):
        raise typer.Exit(1)


def _best_json(w, r, n: int, target) -> dict:
    return {"workload": str(w), "target_key": target.key(), "records": n,
            "best": None if r is None else {
                "schedule": r.schedule.to_json(), "latency_s": r.measurement.median_s,
                "gflops": w.flops / r.measurement.median_s / 1e9,
                "rel_error": r.measurement.rel_error, "measured_at": r.timestamp}}


def _print_best(w, r, n: int, store) -> None:
    import time
    if r is None:
        out.print(f"{w}: no verified schedule in {getattr(store, 'path', store)} for this target "
                  f"(run: tilewise tune {w})", highlight=False)
        return
    m = r.measurement
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.timestamp))
    rel = f"{m.rel_error:.1e}" if m.rel_error is not None else "-"
    out.print(f"[bold]{w}[/]: {w.flops / m.median_s / 1e9:.1f} GFLOP/s ({fmt_time(m.median_s)}, "
              f"rel. error {rel}), best of {n} verified records, measured {when}",
              highlight=False)
    out.print(f"  schedule: {r.schedule.dumps()}", highlight=False, soft_wrap=True)


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
    from tilewise.profiling.measure import measure as run_measure
    (w,) = workloads(workload)[:1]
    check_buffers_fit([w])
    s = _schedule(w, schedule)
    with spinner(f"measuring {w}: compile, check against float64, time"):
        m = run_measure(w, s, max_rel_error=max_rel_error)
    if as_json:
        print_json({"workload": str(w), "schedule": s.to_json(), "measurement": m.to_json(),
                    "gflops": w.flops / m.median_s / 1e9 if m.ok else None})
    elif m.ok:
        out.print(f"{w}: median {fmt_time(m.median_s)}, {w.flops / m.median_s / 1e9:.1f} GFLOP/s, "
                  f"rel. error {m.rel_error:.1e}, compile {m.compile_time_s * 1e3:.0f} ms")
    else:
        out.print(f"{w}: {m.status}: {m.error_msg}")
    if not m.ok:
        raise typer.Exit(1)


def _schedule(w, schedule: str):
    """``--schedule``: default, untuned or a JSON object of knobs, legal for ``w``; or one error line."""
    from tilewise.core.schedule import Schedule
    from tilewise.core.target import detect
    from tilewise.ir.ops.base import ScheduleError
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
    return s
