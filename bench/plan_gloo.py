"""The planner against real training: gloo ranks on this machine, predicted vs measured.

Issue 21, deliverable 2.  A GPT-style model (``gpt-cpu-small`` of :mod:`tilewise.planner.gpt`:
4 blocks, hidden 256, 4 heads, vocabulary 4096, sequence 128; 5.3 M parameters) is trained for a
few steps with torch.distributed's gloo backend over two local processes (one torch thread each:
one core is one device) under several plans -- data parallel (DP=2, also with gradient accumulation,
ZeRO-1 and recomputation), Megatron tensor parallel (TP=2: column/row split of QKV/output and
fc1/fc2 with the f/g all-reduces), 1F1B pipeline parallel (PP=2 at several micro-batch counts) --
plus the planner's own best plan of the whole space.  Each plan runs in a fresh pair of processes,
``--rounds`` times round-robin over the plans; per step every rank times barrier-to-end (warm-up
steps dropped); a round's step time is the median over its steps of the slowest rank, and a plan's
the lowest of its rounds' -- other agents' work on this 2-core machine (not all of it under the
CPU lock) doubled whole rounds of step times in trial runs, and a burst lands in one round of a
plan, not all of them (every round's median is kept in the JSON).  Peak memory per rank is tensor memory, what the estimator
predicts (the CPU analogue of ``torch.cuda.max_memory_allocated``): the buffers that live between
steps (flat parameters and gradients, Adam's moments) plus the highest running total of the
allocator's allocations and frees over one more step recorded by ``torch.profiler``
(``profile_memory``).  ``ru_maxrss`` growth is kept in the JSON too: it adds the library code pages
a first step touches and what the C allocator keeps after a free.

The planner is calibrated from measurement only, inside the same run: ``--measure-links`` (gloo
all-reduce and send/recv between the two ranks) for the links, and its op probe (the model's
GEMM / attention shapes timed here at one thread) for compute.  Nothing is fitted to the training
runs.  Printed: predicted vs measured step time and memory per plan (ratios), Spearman rank
correlation over the plans, and whether the planner's best is the measured best.

Run it under the shared CPU lock (it times things):

    flock /work/notes/cpu.lock .venv/bin/python bench/plan_gloo.py [--steps 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

GLOBAL_BATCH = 16
MODEL = "gpt-cpu-small"


def _plans():
    from tilewise.planner import Plan
    return [Plan(2, 1, 1, 8, 1), Plan(2, 1, 1, 4, 2), Plan(2, 1, 1, 8, 1, zero=1), Plan(2, 1, 1, 8, 1, recompute=True),
            Plan(1, 2, 1, 16, 1), Plan(1, 2, 1, 8, 2), Plan(1, 2, 1, 16, 1, recompute=True),
            Plan(1, 1, 2, 4, 4), Plan(1, 1, 2, 2, 8), Plan(1, 1, 2, 8, 2)]


# -- one rank ----------------------------------------------------------------------------------------
def _rss_bytes() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tp_ops(group):
    import torch
    import torch.distributed as dist

    class Enter(torch.autograd.Function):          # Megatron's f: identity forward, all-reduce backward
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            g = g.contiguous()
            dist.all_reduce(g, group=group)
            return g

    class Exit(torch.autograd.Function):           # g: all-reduce forward, identity backward
        @staticmethod
        def forward(ctx, x):
            x = x.contiguous()
            dist.all_reduce(x, group=group)
            return x

        @staticmethod
        def backward(ctx, g):
            return g
    return Enter.apply, Exit.apply


class _Stage:
    """This rank's layers of the model (one pipeline stage of one TP shard) over flat buffers."""

    def __init__(self, config, plan, stage: int, tp_group):
        import torch
        from torch import nn
        from tilewise.planner import gpt
        from tilewise.planner.space import stage_layers
        torch.manual_seed(0)
        enter, exit_ = _tp_ops(tp_group) if plan.tp > 1 else (gpt._identity, gpt._identity)
        model = gpt.GPT(config, tp=plan.tp, tp_enter=enter, tp_exit=exit_)
        layers = stage_layers(_spec(), plan.pp)[stage]
        n = config.layers
        self.embed = model.embed if 0 in layers else None
        self.head = model.head if n + 1 in layers else None
        self.blocks = nn.ModuleList(model.blocks[i - 1] for i in layers if 1 <= i <= n)
        self.recompute = plan.recompute
        params = [p for m in (self.embed, self.blocks, self.head) if m is not None for p in m.parameters()]
        total = sum(p.numel() for p in params)
        self.flat_p, self.flat_g = torch.zeros(total), torch.zeros(total)
        off = 0
        for p in params:                       # contiguous parameter and gradient buffers (Megatron's)
            k = p.numel()
            self.flat_p[off:off + k].copy_(p.data.flatten())
            p.data = self.flat_p[off:off + k].view_as(p)
            p.grad = self.flat_g[off:off + k].view_as(p)
            off += k

    def forward(self, x, targets):
        from torch.utils.checkpoint import checkpoint
        if self.embed is not None:
            x = self.embed(x)
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.recompute else block(x)
        return self.head(x, targets) if self.head is not None else x


def _spec():
    from tilewise.planner import load_model
    return load_model(MODEL)


def _train(rank: int, world: int, init: str, plan_json: dict, steps: int, warmup: int, out_dir: str) -> None:
    import torch
    import torch.distributed as dist
    from tilewise.planner import Plan
    from tilewise.planner.gpt import SIZES
    from tilewise.planner.pipeline import order
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    plan = Plan.from_json(plan_json)
    tp_i, dp_i, pp_i = rank % plan.tp, (rank // plan.tp) % plan.dp, rank // (plan.tp * plan.dp)
    tp_groups = [dist.new_group(plan.tp_group(d, p)) for p in range(plan.pp) for d in range(plan.dp)]
    dp_groups = [dist.new_group(plan.dp_group(t, p)) for p in range(plan.pp) for t in range(plan.tp)]
    tp_group, dp_group = tp_groups[pp_i * plan.dp + dp_i], dp_groups[pp_i * plan.tp + tp_i]
    config = SIZES[MODEL]
    baseline = _rss_bytes()
    stage = _Stage(config, plan, pp_i, tp_group)
    shard = stage.flat_p.numel() // plan.dp if plan.zero else stage.flat_p.numel()
    lo = dp_i * shard if plan.zero else 0
    opt_param = torch.nn.Parameter(stage.flat_p[lo:lo + shard])
    opt_param.grad = stage.flat_g[lo:lo + shard]
    opt = torch.optim.Adam([opt_param], lr=1e-4)
    gen = torch.Generator().manual_seed(dp_i)
    b, m, s = plan.micro_batch, plan.micro_batches, config.seq_len
    prev, nxt = plan.rank(dp_i, tp_i, pp_i - 1), plan.rank(dp_i, tp_i, pp_i + 1)
    first, last = pp_i == 0, pp_i == plan.pp - 1
    def one_step(tokens):
        saved, sends = {}, []
        for kind, i in order(pp_i, plan.pp, m):
            if kind == "F":
                if first:
                    x = tokens[i]
                else:
                    x = torch.empty(b, s, config.hidden)
                    dist.recv(x, prev)
                    x.requires_grad_()
                y = stage.forward(x, tokens[i])
                if last:
                    y = y / m
                else:
                    sends.append(dist.isend(y.detach(), nxt))
                saved[i] = (x, y)
            else:
                x, y = saved.pop(i)
                if last:
                    y.backward()
                else:
                    g = torch.empty_like(y)
                    dist.recv(g, nxt)
                    y.backward(g)
                if not first:
                    sends.append(dist.isend(x.grad, prev))
        for w in sends:
            w.wait()
        if plan.dp > 1:
            dist.all_reduce(stage.flat_g, group=dp_group)
            stage.flat_g.div_(plan.dp)
        opt.step()
        if plan.zero:
            mine = stage.flat_p[lo:lo + shard].clone()
            dist.all_gather(list(stage.flat_p.split(shard)), mine, group=dp_group)
        stage.flat_g.zero_()

    times = []
    for step in range(warmup + steps):
        tokens = torch.randint(0, config.vocab, (m, b, s), generator=gen)
        dist.barrier()
        t0 = time.perf_counter()
        one_step(tokens)
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0 - baseline
    # peak tensor memory: what lives between steps (the flat buffers, Adam's moments) plus the
    # highest running total of the allocator's allocations and frees during one more (untimed) step
    static = sum(t.numel() * t.element_size() for t in (stage.flat_p, stage.flat_g))
    static += sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
                  if isinstance(v, torch.Tensor))
    tokens = torch.randint(0, config.vocab, (m, b, s), generator=gen)
    dist.barrier()
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        one_step(tokens)
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = high = 0
    for _, nbytes in events:
        live += nbytes
        high = max(high, live)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"times_s": times, "peak_bytes": static + high, "rss_peak_bytes": rss_peak, "stage": pp_i}, f)
    dist.barrier()
    dist.destroy_process_group()


def run_plan(plan, steps: int, warmup: int) -> dict:
    """Train ``plan`` on two local gloo ranks; its step time (median over steps of the slowest rank)
    and per-rank peak memory."""
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory(prefix="plan-gloo-") as tmp:
        mp.start_processes(_train, args=(plan.devices, f"file://{tmp}/rv", plan.to_json(), steps, warmup, tmp),
                           nprocs=plan.devices, start_method="spawn")
        ranks = [json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(plan.devices)]
    per_step = [max(r["times_s"][k] for r in ranks) for k in range(steps)]
    return {"step_s": statistics.median(per_step), "steps_s": per_step,
            "peak_bytes": [r["peak_bytes"] for r in ranks], "rss_peak_bytes": [r["rss_peak_bytes"] for r in ranks],
            "stage": [r["stage"] for r in ranks]}


# -- the comparison ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="times each plan is run, round-robin over the plans")
    ap.add_argument("--cluster", help="a measured cluster file to use instead of measuring links now")
    ap.add_argument("--json", help="write the table as JSON here")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table
    from scipy.stats import spearmanr
    from tilewise.planner import Cluster, Estimator, load_cluster, plan as make_plan
    from tilewise.planner.linkprobe import measure_links
    from tilewise.planner.opcost import ProbeCosts
    console = Console()
    t_start = time.time()
    if args.cluster:
        cluster = load_cluster(args.cluster)
    else:
        console.print("measuring links (tilewise plan --measure-links, 2 gloo ranks) ...")
        cluster = Cluster.from_json(measure_links(2), "measured")
    link = cluster.links[0]
    console.print(f"load average before: {os.getloadavg()[0]:.2f}")
    console.print(f"link {link.a}-{link.b}: collective {link.bandwidth_bytes_per_s / 1e9:.2f} GB/s + "
                  f"{link.latency_s * 1e6:.0f} us, p2p {link.p2p[0] / 1e9:.2f} GB/s + {link.p2p[1] * 1e6:.0f} us")
    spec = _spec()
    costs = ProbeCosts(cluster.devices[0], cache="")          # probed now, in this run's window
    console.print("probing op times and ranking the whole plan space ...")
    result = make_plan(spec, cluster, GLOBAL_BATCH, top_k=1, costs=costs)
    best = result.top[0].plan
    plans = _plans()
    if best not in plans:
        plans.append(best)
    est = Estimator(spec, cluster, costs)
    estimates = {p: est.evaluate(p) for p in plans}
    runs: dict = {p: [] for p in plans}
    for k in range(args.rounds):                # round-robin: a burst of other load hits one round of a plan
        for p in plans:
            console.print(f"round {k + 1}/{args.rounds}: training {p.label()} ...")
            runs[p].append(run_plan(p, args.steps, args.warmup))
    rows = []
    for p in plans:
        e, first = estimates[p], runs[p][0]
        steps_s = [t for r in runs[p] for t in r["steps_s"]]
        measured = min(r["step_s"] for r in runs[p])            # the least disturbed round's median
        pred_mem = [e.memory[st].total_bytes for st in first["stage"]]
        peak = [max(r["peak_bytes"][i] for r in runs[p]) for i in range(p.devices)]
        rows.append({"plan": p.label(), "predicted_s": e.step_s, "measured_s": measured,
                     "ratio": e.step_s / measured, "dominant": e.dominant,
                     "predicted_mem_bytes": pred_mem, "measured_mem_bytes": peak,
                     "mem_ratio": [a / b for a, b in zip(pred_mem, peak)],
                     "rss_peak_bytes": first["rss_peak_bytes"], "round_medians_s": [r["step_s"] for r in runs[p]],
                     "steps_s": steps_s, "planner_best": p == best})
    table = Table(title=f"{MODEL}, global batch {GLOBAL_BATCH}, 2 gloo ranks x 1 thread: predicted vs measured")
    for col in ("plan", "predicted", "measured", "pred/meas", "dominant", "mem pred (MiB/rank)", "mem meas (MiB/rank)",
                "mem pred/meas"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["plan"] + (" *" if r["planner_best"] else ""), f"{r['predicted_s'] * 1e3:.0f} ms",
                      f"{r['measured_s'] * 1e3:.0f} ms", f"{r['ratio']:.2f}", r["dominant"],
                      " / ".join(f"{x / 2**20:.0f}" for x in r["predicted_mem_bytes"]),
                      " / ".join(f"{x / 2**20:.0f}" for x in r["measured_mem_bytes"]),
                      " / ".join(f"{x:.2f}" for x in r["mem_ratio"]))
    console.print(table)
    rho = spearmanr([r["predicted_s"] for r in rows], [r["measured_s"] for r in rows]).statistic
    measured_best = min(rows, key=lambda r: r["measured_s"])
    predicted_best = min(rows, key=lambda r: r["predicted_s"])
    worst_time = max(abs(r["ratio"] - 1) for r in rows)
    worst_mem = max(abs(x - 1) for r in rows for x in r["mem_ratio"])
    summary = {"spearman": rho, "measured_best": measured_best["plan"], "planner_best": predicted_best["plan"],
               "planner_best_vs_measured_best": predicted_best["measured_s"] / measured_best["measured_s"],
               "worst_step_error": worst_time, "worst_memory_error": worst_mem, "wall_s": time.time() - t_start,
               "load_average_after": os.getloadavg()[0]}
    console.print(f"* the planner's best plan of the whole space ({result.considered} plans)")
    console.print(f"Spearman rank correlation (predicted vs measured step time, {len(rows)} plans): {rho:.3f}")
    console.print(f"measured best: {measured_best['plan']}; planner's pick among these: {predicted_best['plan']} "
                  f"(measured {summary['planner_best_vs_measured_best']:.3f}x the measured best)")
    console.print(f"worst step-time error {worst_time:.1%} (goal <= 25%), worst memory error {worst_mem:.1%} "
                  f"(goal <= 15%)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cluster": cluster.to_json(), "rows": rows, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
