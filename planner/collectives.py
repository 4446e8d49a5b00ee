"""Collective costs on measured links: the alpha-beta model of ring algorithms.

A group is a list of device ids in ring order.  A ring runs at its slowest hop: bandwidth ``B`` is
the minimum over consecutive pairs (the last back to the first), latency ``a`` the maximum.  For a
message of ``S`` bytes over ``n`` devices (Thakur, Rabenseifner and Gropp 2005; what NCCL and gloo's
ring algorithms do):

* all-reduce      ``2 (n-1)/n * S/B + 2 (n-1) a``   (a reduce-scatter then an all-gather)
* all-gather      ``(n-1)/n * S/B + (n-1) a``       (``S`` the gathered output)
* reduce-scatter  ``(n-1)/n * S/B + (n-1) a``       (``S`` the input); on a backend without one
                  (gloo) the planner charges the all-reduce it is replaced by
* p2p             ``S/B + a`` with the link's point-to-point figures

One device costs nothing.
"""
from __future__ import annotations

from typing import Sequence

from tilewise.planner.cluster import Cluster


def ring(cluster: Cluster, group: Sequence[str]) -> tuple[float, float]:
    """(bandwidth_bytes_per_s, latency_s) of the ring through ``group``."""
    links = [cluster.link(group[i], group[(i + 1) % len(group)]) for i in range(len(group))]
    return min(ln.bandwidth_bytes_per_s for ln in links), max(ln.latency_s for ln in links)


def all_reduce_s(cluster: Cluster, group: Sequence[str], nbytes: float) -> float:
    n = len(group)
    if n == 1 or nbytes <= 0:
        return 0.0
    bw, lat = ring(cluster, group)
    return 2 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * lat


def all_gather_s(cluster: Cluster, group: Sequence[str], nbytes: float) -> float:
    n = len(group)
    if n == 1 or nbytes <= 0:
        return 0.0
    bw, lat = ring(cluster, group)
    return (n - 1) / n * nbytes / bw + (n - 1) * lat


def reduce_scatter_s(cluster: Cluster, group: Sequence[str], nbytes: float) -> float:
    if not cluster.supports("reduce_scatter"):
        return all_reduce_s(cluster, group, nbytes)
    return all_gather_s(cluster, group, nbytes)


def p2p_s(cluster: Cluster, a: str, b: str, nbytes: float) -> float:
    if a == b or nbytes <= 0:
        return 0.0
    bw, lat = cluster.link(a, b).p2p
    return nbytes / bw + lat
