"""``tilewise plan``: parallel training plans (dp x tp x pp, micro-batches, ZeRO, recompute) of a
model on a cluster, costed on the cluster's measured links (:mod:`tilewise.planner`); and
``tilewise plan --measure-links``, which measures those links with torch.distributed."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from tilewise.frontends.cli.context import err, fail, fmt_time, out, print_json, spinner


def _size(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def plan(model: Optional[str] = typer.Argument(
             None, help="a built-in size (gpt-cpu-small, gpt3-175b), hf:FAMILY[:KEY=VALUE,...] or pkg.mod:Class"),
         cluster: Optional[str] = typer.Option(None, "--cluster", help="cluster file (JSON, schema version 1)"),
         global_batch: Optional[int] = typer.Option(None, "--global-batch", "-b",
                                                    help="samples per step (default: 8 per device)"),
         seq_len: Optional[int] = typer.Option(None, "--seq-len",
                                               help="sequence length to trace at (default: the model's)"),
         top: int = typer.Option(5, "--top", help="plans to show"),
         dp: Optional[int] = typer.Option(None, "--dp", help="pin the data-parallel ways"),
         tp: Optional[int] = typer.Option(None, "--tp", help="pin the tensor-parallel ways"),
         pp: Optional[int] = typer.Option(None, "--pp", help="pin the pipeline stages"),
         micro_batch: Optional[int] = typer.Option(None, "--micro-batch", help="pin the micro-batch size"),
         measure: bool = typer.Option(False, "--measure-links",
                                      help="measure links between local gloo ranks (or a torchrun launch) and write --out"),
         out_path: Optional[str] = typer.Option(None, "--out", help="where --measure-links writes the cluster file"),
         ranks: int = typer.Option(2, "--ranks", help="--measure-links: local processes to spawn"),
         threads: int = typer.Option(1, "--threads", help="--measure-links: torch threads per rank (one device)"),
         as_json: bool = typer.Option(False, "--json", help="print the plans as JSON")):
    """Rank parallel training plans of MODEL on a cluster: step time, memory per device, what dominates.

    Every plan of dp x tp x pp ways, micro-batch size and count, ZeRO stage 0-3 and activation
    recomputation is costed: per-op compute measured here (CPU devices) or a roofline from the
    cluster's peaks, collectives and pipeline transfers on the file's measured links, the 1F1B
    critical path; plans that need more memory than a device has are rejected.

    Examples:

      tilewise plan --measure-links --out cluster.json

      tilewise plan gpt-cpu-small --cluster cluster.json --global-batch 16

      tilewise plan hf:gpt2:n_layer=4,n_embd=256 --cluster cluster.json --json
    """
    if measure:
        return _measure(out_path, ranks, threads, as_json)
    if model is None:
        fail("give a MODEL (e.g. gpt-cpu-small) or --measure-links --out CLUSTER.json")
    if cluster is None:
        fail("--cluster CLUSTER.json is required (tilewise plan --measure-links --out CLUSTER.json measures one)")
    from tilewise.planner import ClusterError, ModelError, NoPlanFits, PlanError, load_cluster, load_model
    from tilewise.planner import plan as make_plan
    try:
        c = load_cluster(cluster)
        with spinner(f"tracing {model}"):
            spec = load_model(model, seq_len=seq_len)
        batch = global_batch if global_batch is not None else 8 * c.size
        with spinner("costing plans (probing op times on first use)"):
            result = make_plan(spec, c, batch, top_k=top, dp=dp, tp=tp, pp=pp, micro_batch=micro_batch)
    except (ClusterError, ModelError, PlanError, NoPlanFits) as e:
        fail(str(e))
    if as_json:
        print_json(result.to_json())
        return
    table = Table(title=Text(f"{result.model} on {result.cluster}: global batch {result.global_batch}"))
    for col in ("#", "plan", "step", "samples/s", "memory/device", "dominant"):
        table.add_column(col)
    for i, e in enumerate(result.top, 1):
        table.add_row(str(i), e.plan.label(), fmt_time(e.step_s), f"{e.samples_per_s:.2f}", _size(e.memory_bytes),
                      f"{e.dominant} {e.breakdown[e.dominant] / e.step_s:.0%}")
    table.caption = f"{result.considered} plans costed, {result.rejected} rejected for memory"
    out.print(table)


def _measure(out_path: Optional[str], ranks: int, threads: int, as_json: bool) -> None:
    if out_path is None:
        fail("--measure-links needs --out CLUSTER.json")
    if ranks < 2:
        fail(f"--ranks {ranks}: a link needs two ranks")
    from tilewise.planner.linkprobe import measure_links
    with spinner(f"measuring links between {ranks} gloo ranks"):
        try:
            d = measure_links(ranks, threads=threads)
        except (RuntimeError, TimeoutError, OSError) as e:
            fail(f"the link probe failed: {e}")
    if not d:                       # a torchrun member other than rank 0
        return
    with open(out_path, "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")
    if as_json:
        print_json(d)
        return
    table = Table(title=f"measured links -> {out_path}")
    for col in ("a", "b", "collective GB/s", "latency", "p2p GB/s", "p2p latency"):
        table.add_column(col)
    for ln in d["links"]:
        table.add_row(ln["a"], ln["b"], f"{ln['bandwidth_bytes_per_s'] / 1e9:.2f}", fmt_time(ln["latency_s"]),
                      f"{ln['p2p_bandwidth_bytes_per_s'] / 1e9:.2f}", fmt_time(ln["p2p_latency_s"]))
    out.print(table)
    for c in d.get("collectives", []):
        err.print(f"all-reduce {c['bytes']} B over {c['ranks']} ranks: measured {fmt_time(c['measured_s'])}, "
                  f"ring model {fmt_time(c['ring_model_s'])}", highlight=False)
