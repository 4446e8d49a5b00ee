"""``tilewise plan --measure-links``: measure the links between ranks with torch.distributed.

Every rank is one device.  For each pair of ranks (one pair at a time, the others waiting at a
barrier), at several message sizes (median of repeats):

* a send/recv ping-pong gives one-way times ``rtt / 2``; a least-squares line through (bytes,
  seconds) gives the pair's p2p latency (intercept) and bandwidth (1 / slope);
* an all-reduce over just the two ranks gives the ring step's rate: a two-rank ring all-reduce
  of ``S`` bytes costs ``S / B + 2 a`` (:mod:`tilewise.planner.collectives`), so the fitted line gives
  the link's collective bandwidth ``B`` and latency ``a``.

The two differ on gloo (its send/recv sets up a pair of buffers per message, which the ring's
steady state does not), so a link holds both: ``bandwidth_bytes_per_s``/``latency_s`` for the
collectives and ``p2p_bandwidth_bytes_per_s``/``p2p_latency_s`` for pipeline transfers.  An all-reduce over
all ranks at the same sizes is timed as well and stored under ``collectives`` with the ring
formula's prediction from the measured links, so a file shows how well the model fits its own
machine.

Ranks are either local processes spawned here (``ranks``; the gloo backend over loopback, each
process limited to ``threads`` threads) or, when launched by ``torchrun`` on several nodes
(``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set), the processes of that launch; rank 0 writes the file.
A device's compute figures are measured by each rank (one torch GEMM and a streaming add at its
thread count); its memory is the node's physical memory divided by the ranks on the node.
"""
from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from typing import Sequence

from tilewise.planner.cluster import SCHEMA_VERSION, Cluster

DEFAULT_SIZES = (1 << 12, 1 << 16, 1 << 20, 1 << 23)


def _fit(sizes: Sequence[int], times: Sequence[float]) -> tuple[float, float]:
    """(bandwidth_bytes_per_s, latency_s) of the line time = latency + size / bandwidth, fitted by
    least squares in relative error (weights 1 / time^2), so the small messages that fix the
    latency count as much as the large ones that fix the bandwidth."""
    w = [1.0 / max(t, 1e-9) ** 2 for t in times]
    sw = sum(w)
    mx = sum(wi * x for wi, x in zip(w, sizes)) / sw
    my = sum(wi * y for wi, y in zip(w, times)) / sw
    sxx = sum(wi * (x - mx) ** 2 for wi, x in zip(w, sizes))
    slope = sum(wi * (x - mx) * (y - my) for wi, x, y in zip(w, sizes, times)) / sxx if sxx else 0.0
    if slope <= 0:
        slope = max(times) / max(sizes)
        return 1.0 / slope, 0.0
    return 1.0 / slope, max(my - slope * mx, 0.0)


def _device_figures(threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    x, y = torch.randn(1 << 22), torch.randn(1 << 22)

    def med(fn, k=7):
        fn()
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)
    gemm = med(lambda: a @ b)
    stream = med(lambda: x + y)
    return {"peak_flops": 2 * 512 ** 3 / gemm, "memory_bandwidth_bytes_per_s": 3 * x.numel() * 4 / stream}


def _pingpong(dist, torch, me: int, a: int, b: int, size: int, repeats: int) -> float:
    buf = torch.zeros(size // 4)
    times = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        if me == a:
            dist.send(buf, b)
            dist.recv(buf, b)
        else:
            dist.recv(buf, a)
            dist.send(buf, a)
        if k:
            times.append((time.perf_counter() - t0) / 2)
    return statistics.median(times)


def _allreduce(dist, torch, size: int, repeats: int, group=None) -> float:
    buf = torch.zeros(size // 4)
    times = []
    for k in range(repeats + 1):
        dist.barrier(group=group)
        t0 = time.perf_counter()
        dist.all_reduce(buf, group=group)
        if k:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _member(rank: int, world: int, sizes: Sequence[int], repeats: int, threads: int) -> dict | None:
    """What one rank measures; rank 0 returns the cluster JSON."""
    import torch
    import torch.distributed as dist
    figures = _device_figures(threads)
    host = socket.gethostname()
    info: list = [None] * world
    dist.all_gather_object(info, {"host": host, "figures": figures})
    links = []
    for a in range(world):
        for b in range(a + 1, world):
            pair = dist.new_group([a, b]) if world > 2 else None      # every rank creates every group
            dist.barrier()
            if rank in (a, b):
                one_way = [_pingpong(dist, torch, rank, a, b, s, repeats) for s in sizes]
                # a two-rank ring all-reduce of S bytes takes S / B + 2 a (collectives.all_reduce_s)
                ring = [_allreduce(dist, torch, s, repeats, pair) for s in sizes]
                if rank == a:
                    p2p_bw, p2p_lat = _fit(sizes, one_way)
                    bw, twice_lat = _fit(sizes, ring)
                    links.append({"a": a, "b": b, "bandwidth_bytes_per_s": bw, "latency_s": twice_lat / 2,
                                  "p2p_bandwidth_bytes_per_s": p2p_bw, "p2p_latency_s": p2p_lat,
                                  "one_way_s": dict(zip(map(str, sizes), one_way)),
                                  "pair_all_reduce_s": dict(zip(map(str, sizes), ring))})
    gathered: list = [None] * world
    dist.all_gather_object(gathered, links)
    allreduce = [_allreduce(dist, torch, s, repeats) for s in sizes]
    dist.barrier()
    if rank:
        return None
    names = _device_ids(info)
    devices = []
    for r, entry in enumerate(info):
        on_node = sum(1 for e in info if e["host"] == entry["host"])
        devices.append({"id": names[r], "node": entry["host"], "kind": "cpu", "threads": threads,
                        "memory_bytes": _physical_memory() / on_node, **entry["figures"]})
    pairs = [dict(ln, a=names[ln["a"]], b=names[ln["b"]], measured=True) for lst in gathered for ln in lst]
    raw = ("one_way_s", "pair_all_reduce_s")
    out = {"schema_version": SCHEMA_VERSION, "name": f"measured-{world}x{info[0]['host']}",
           "backend": dist.get_backend(), "devices": devices,
           "links": [{k: v for k, v in p.items() if k not in raw} for p in pairs]}
    cluster = Cluster.from_json(out, "measured")
    from tilewise.planner.collectives import all_reduce_s
    group = [d.id for d in cluster.devices]
    out["collectives"] = [{"op": "all_reduce", "ranks": world, "bytes": s, "measured_s": t,
                           "ring_model_s": all_reduce_s(cluster, group, s)} for s, t in zip(sizes, allreduce)]
    out["pairs"] = [{"a": p["a"], "b": p["b"], "one_way_s": p["one_way_s"], "all_reduce_s": p["pair_all_reduce_s"]}
                    for p in pairs]
    return out


def _device_ids(info: list) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for entry in info:
        k = seen.get(entry["host"], 0)
        seen[entry["host"]] = k + 1
        ids.append(f"{entry['host']}/{k}")
    return ids


def _physical_memory() -> float:
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _spawned(rank: int, world: int, init: str, sizes, repeats, threads, result_path: str) -> None:
    import json
    import torch.distributed as dist
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        out = _member(rank, world, sizes, repeats, threads)
        if out is not None:
            with open(result_path, "w") as f:
                json.dump(out, f)
    finally:
        dist.destroy_process_group()


def measure_links(ranks: int = 2, sizes: Sequence[int] = DEFAULT_SIZES, repeats: int = 5, threads: int = 1,
                  timeout_s: float = 300) -> dict:
    """The measured cluster JSON (``schema_version`` 1) of ``ranks`` local gloo processes, or of the
    torchrun launch this process belongs to (then only rank 0 returns it; the others get {})."""
    import json
    import torch.multiprocessing as mp
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
        import torch.distributed as dist
        dist.init_process_group("gloo")
        try:
            return _member(dist.get_rank(), dist.get_world_size(), sizes, repeats, threads) or {}
        finally:
            dist.destroy_process_group()
    if ranks < 2:
        raise ValueError(f"--ranks {ranks}: a link needs two ranks")
    with tempfile.TemporaryDirectory(prefix="tilewise-links-") as tmp:
        init, result = f"file://{tmp}/rendezvous", os.path.join(tmp, "cluster.json")
        ctx = mp.start_processes(_spawned, args=(ranks, init, tuple(sizes), repeats, threads, result), nprocs=ranks,
                                 join=False, start_method="spawn")
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=max(deadline - time.monotonic(), 0.1)):
            if time.monotonic() > deadline:
                for p in ctx.processes:
                    p.kill()
                raise TimeoutError(f"the link probe did not finish within {timeout_s:.0f} s")
        with open(result) as f:
            return json.load(f)
