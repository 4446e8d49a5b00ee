"""``tilewise collect`` and ``tilewise dataset export|import``: measurements into record stores,
and record stores to and from Parquet."""
from __future__ import annotations

from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tilewise.frontends.cli.context import (check_buffers_fit, check_cluster_kind, check_threads, checked_target_kind,
                                            err, existing_store, fail, measuring_runner, open_db, out, print_json,
                                            spinner, target_for)


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
    schedules_of: Optional[str] = typer.Option(None, "--schedules-of", help="measure the schedules this "
                                               "record store holds for each workload (embedded: the shipped "
                                               "dataset), not new ones: paired records of another CPU"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Measure SAMPLES schedules per workload into a record store; resumes where it stopped.

    Examples:

      tilewise collect --workloads suite:bert-base --samples 50 --db bert.db

      tilewise collect --workloads matmul:512x512x512:f32,relu:1024x1024:f32 --samples 20 --strategy lhs

      tilewise collect --workloads matmul:128x768x768:f32 --schedules-of embedded --db mine.db
    """
    from tilewise.tuner.collect import CollectConfig
    cluster = cluster or None                # --cluster "" is no cluster
    if strategy not in ("random", "lhs"):
        fail(f"unknown strategy {strategy!r} for collect: use random or lhs")
    wls = _collect_workloads(workloads)
    if rounds > 1 and cluster:      # before the cluster runner connects
        fail("--rounds pools one machine's timings of a schedule; drop --rounds or --cluster")
    kind = checked_target_kind(target_kind)
    check_cluster_kind(cluster, kind)
    target = target_for(kind)
    check_threads(threads, target)
    runner = measuring_runner(kind, cluster, build_workers)
    listed = _listed_schedules(schedules_of, wls)
    store = open_db(db)
    config = CollectConfig(samples=samples, strategy=strategy, max_threads=threads, seed=seed, rounds=rounds)
    result, stored = _run_collect(wls, target, store, runner, config, quiet=as_json, schedules=listed)
    db = getattr(store, "path", db)           # a database URL without its password
    summary = {"db": db, "workloads": len(wls), "measured": result.done - result.skipped,
               "skipped": result.skipped, "failed": result.failed, "by_status": result.by_status,
               "records_in_store": stored}
    if cluster:
        summary["cluster"] = {"address": cluster, "nodes": {k: n for k, n in runner.measured_by.items()},
                              "requeued": runner.requeued}
    if as_json:
        print_json(summary)
    else:
        out.print(f"collected {summary['measured']} new measurements over {len(wls)} workloads "
                  f"({result.skipped} already held, {result.failed} failed); {db} holds {stored} records")


def _collect_workloads(spec: str) -> list:
    """``--workloads``: workload strings and suites, each of whose buffers fit; or one error line."""
    from tilewise.core.workload import Workload, WorkloadError
    from tilewise.datasets.suites import SUITES, expand
    try:
        wls = [Workload.parse(t) for t in expand(spec)]
    except (ValueError, WorkloadError) as e:
        fail(f"{e} (suites: {', '.join(sorted(SUITES))})")
    if not wls:
        fail("--workloads names no workload")
    check_buffers_fit(wls)
    return wls


def _listed_schedules(source: Optional[str], wls: list) -> Optional[dict]:
    """``--schedules-of``: each workload's schedules in that store, or one error line when it
    holds none for one of ``wls``."""
    if source is None:
        return None
    from tilewise.costmodel.training import load_records
    from tilewise.datasets.base import StoreError
    from tilewise.tuner.collect import schedules_by_workload
    try:
        listed = schedules_by_workload(load_records(existing_store(source, "pass a record store to copy the "
                                                                   "schedules of, or embedded")))
    except StoreError as e:
        fail(str(e))
    missing = [str(w) for w in wls if str(w) not in listed]
    if missing:
        fail(f"{source} holds no schedule of {missing[0]}" + (f" (nor of {len(missing) - 1} more)" if len(missing) > 1
                                                             else "") + ": collect without --schedules-of")
    return listed


def _run_collect(wls, target, store, runner, config, quiet: bool, schedules: Optional[dict] = None) -> tuple:
    """``(CollectResult, records in the store)``, with a progress bar on stderr unless ``quiet``;
    the store and the runner are closed however it ends."""
    from tilewise.profiling.ray_runner import ClusterError
    from tilewise.tuner.collect import collect as run_collect
    columns = [TextColumn("{task.fields[workload]}"), BarColumn(bar_width=16), MofNCompleteColumn(),
               TextColumn("failed {task.fields[failed]}"), TextColumn("skipped {task.fields[skipped]}"),
               TextColumn("ETA"), TimeRemainingColumn()]
    with store, runner, Progress(*columns, console=err, disable=quiet) as progress:
        task = progress.add_task("collect", total=config.samples * len(wls), workload="", failed=0, skipped=0)

        def on_progress(p):
            progress.update(task, completed=p.done, total=p.total, workload=p.workload[:28],
                            failed=p.failed, skipped=p.skipped)
        try:
            result = run_collect(wls, target, store, runner, config, on_progress=on_progress, schedules=schedules)
        except ClusterError as e:
            fail(str(e))
        return result, len(store)


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
    existing_store(db, "pass the store to export with --db PATH (written by tilewise collect or tune)")
    try:
        with open_store(db) as store, spinner(f"exporting {db}"):
            n = export_parquet(store, out_path)
    except (StoreError, OSError) as e:
        fail(str(e))
    if as_json:
        print_json({"db": db, "out": out_path, "records": n})
    else:
        out.print(f"wrote {n} records to {out_path}")


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
        with open_store(db) as store, spinner(f"importing {in_path}"):
            n = import_parquet(in_path, store)
    except (StoreError, OSError, ValueError) as e:
        fail(str(e))
    if as_json:
        print_json({"db": db, "in": in_path, "imported": n})
    else:
        out.print(f"imported {n} new records into {db}")
