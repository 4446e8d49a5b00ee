"""Clusters: the devices a plan runs on and the measured links between them (schema version 1).

A cluster file is plain JSON, the one persisted form the planner reads besides probe caches::

    {"schema_version": 1,
     "name": "local-gloo",
     "backend": "gloo",                      # which collectives exist (gloo has no reduce_scatter)
     "devices": [{"id": "n0/0", "node": "n0", "kind": "cpu", "memory_bytes": 4e9,
                  "peak_flops": 5e10, "memory_bandwidth_bytes_per_s": 2e10, "threads": 1}],
     "nodes":   [{"name": "dgx", "count": 192, "devices_per_node": 8,
                  "device": {"kind": "a100-80gb", "memory_bytes": 8e10, "peak_flops": 3.12e14, ...}}],
     "links":   [{"a": "n0/0", "b": "n0/1", "bandwidth_bytes_per_s": 1.6e9, "latency_s": 4e-5,
                  "measured": true},
                 {"scope": "intra_node", "bandwidth_bytes_per_s": 3e11, "latency_s": 3e-6},
                 {"scope": "inter_node", "bandwidth_bytes_per_s": 2.5e10, "latency_s": 6e-6}],
     "collectives": [...]}                   # optional: measured collective times (measure-links)

``devices`` lists devices one by one (what ``tilewise plan --measure-links`` writes); ``nodes`` is the
compact form of many identical nodes (``dgx0/0`` .. ``dgx191/7``); a file may use both.  A link is
either one pair of devices (``a``/``b``, symmetric; a measured pair wins over a scope) or a
``scope`` covering every pair inside one node (``intra_node``) or across two (``inter_node``).  The
bandwidth of a pair is what one device can push to the other while every device does the same
(a ring collective's per-step rate); latency is the per-step start-up cost (the alpha of the
alpha-beta model).  Optional ``p2p_bandwidth_bytes_per_s`` / ``p2p_latency_s`` give a pair's
point-to-point figures where they differ from the collective ones (gloo's send/recv);
``--measure-links`` writes both.  Every pair of devices must be covered: a missing link is an error at load time,
not a silent default, because a configurator that guesses links picks plans that are slow (Pipette).

A device's ``compute`` says where per-op compute costs come from: ``probe`` (timed on this machine:
only for ``kind: cpu``, the default there), ``tilewise`` (``kind: cpu``: GEMMs as tilewise kernels,
from the record store or the cost model) or ``roofline`` (from ``peak_flops`` and
``memory_bandwidth_bytes_per_s`` times ``gemm_efficiency``, default 1.0; the default for every
other kind, for which this machine cannot measure).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
SCOPES = ("intra_node", "inter_node")
#: collectives a backend offers natively; the planner composes the others from these
BACKEND_COLLECTIVES = {
    "gloo": ("all_reduce", "all_gather", "broadcast", "p2p"),
    "nccl": ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "p2p"),
}


class ClusterError(ValueError):
    """A cluster file the planner cannot use; the message names the problem and the fix."""


@dataclass(frozen=True)
class Device:
    id: str
    node: str
    kind: str
    memory_bytes: float
    peak_flops: float
    memory_bandwidth_bytes_per_s: float
    threads: int = 1
    compute: str = ""                   # "probe" | "tilewise" | "roofline"; "" = the kind's default
    gemm_efficiency: float = 1.0

    @property
    def compute_source(self) -> str:
        return self.compute or ("probe" if self.kind == "cpu" else "roofline")

    def to_json(self) -> dict[str, Any]:
        d = {"id": self.id, "node": self.node, "kind": self.kind, "memory_bytes": self.memory_bytes,
             "peak_flops": self.peak_flops, "memory_bandwidth_bytes_per_s": self.memory_bandwidth_bytes_per_s,
             "threads": self.threads, "gemm_efficiency": self.gemm_efficiency}
        if self.compute:
            d["compute"] = self.compute
        return d


@dataclass(frozen=True)
class Link:
    bandwidth_bytes_per_s: float
    latency_s: float
    a: str = ""
    b: str = ""
    scope: str = ""
    measured: bool = False
    p2p_bandwidth_bytes_per_s: float = 0.0    # 0: the same as the collective figures
    p2p_latency_s: float = -1.0

    @property
    def p2p(self) -> tuple[float, float]:
        """(bandwidth, latency) of one point-to-point message."""
        return (self.p2p_bandwidth_bytes_per_s or self.bandwidth_bytes_per_s,
                self.p2p_latency_s if self.p2p_latency_s >= 0 else self.latency_s)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = ({"scope": self.scope} if self.scope else {"a": self.a, "b": self.b})
        d.update(bandwidth_bytes_per_s=self.bandwidth_bytes_per_s, latency_s=self.latency_s)
        if self.p2p_bandwidth_bytes_per_s:
            d["p2p_bandwidth_bytes_per_s"] = self.p2p_bandwidth_bytes_per_s
        if self.p2p_latency_s >= 0:
            d["p2p_latency_s"] = self.p2p_latency_s
        if self.measured:
            d["measured"] = True
        return d


@dataclass(frozen=True)
class Cluster:
    name: str
    devices: tuple[Device, ...]
    links: tuple[Link, ...]
    backend: str = "nccl"
    nodes: tuple[dict, ...] = ()        # the compact node groups as given (kept for to_json)
    collectives: tuple[dict, ...] = ()  # measured collective times, informational
    n_listed: int = -1                  # devices[:n_listed] came from "devices" (-1: all)
    _pairs: dict = field(default_factory=dict, compare=False, repr=False)

    # -- lookups ---------------------------------------------------------------------------------
    def link(self, a: str, b: str) -> Link:
        """The link from device ``a`` to device ``b`` (a measured pair first, then the scope)."""
        if not self._pairs:
            for ln in self.links:
                if not ln.scope:
                    self._pairs[(ln.a, ln.b)] = self._pairs[(ln.b, ln.a)] = ln
            for ln in self.links:
                if ln.scope:
                    self._pairs[ln.scope] = ln
            self._pairs["_node"] = {d.id: d.node for d in self.devices}
        hit = self._pairs.get((a, b))
        if hit is not None:
            return hit
        nodes = self._pairs["_node"]
        scope = "intra_node" if nodes[a] == nodes[b] else "inter_node"
        hit = self._pairs.get(scope)
        if hit is None:
            raise ClusterError(f"cluster {self.name!r} has no link between {a} and {b}: add a links entry "
                               f"for the pair (tilewise plan --measure-links measures them) or a "
                               f"{{\"scope\": \"{scope}\"}} link")
        return hit

    def supports(self, collective: str) -> bool:
        return collective in BACKEND_COLLECTIVES.get(self.backend, BACKEND_COLLECTIVES["nccl"])

    @property
    def size(self) -> int:
        return len(self.devices)

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        n = len(self.devices) if self.n_listed < 0 else self.n_listed
        listed = [d.to_json() for d in self.devices[:n]]
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "name": self.name, "backend": self.backend}
        if listed:
            out["devices"] = listed
        if self.nodes:
            out["nodes"] = [dict(g) for g in self.nodes]
        out["links"] = [ln.to_json() for ln in self.links]
        if self.collectives:
            out["collectives"] = [dict(c) for c in self.collectives]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "cluster") -> "Cluster":
        return _parse(d, source)

    def save(self, path: str | os.PathLike) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)


def load_cluster(path: str | os.PathLike) -> Cluster:
    """Read and check a cluster file; ClusterError names what is wrong."""
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ClusterError(f"no cluster file at {path}: write one (schema in tilewise.planner.cluster) or "
                           f"measure this machine with tilewise plan --measure-links --out {path}") from None
    except json.JSONDecodeError as e:
        raise ClusterError(f"cluster file {path} is not JSON ({e.msg} at line {e.lineno})") from None
    return _parse(d, str(path))


# -- parsing ---------------------------------------------------------------------------------------
_DEVICE_NUMBERS = ("memory_bytes", "peak_flops", "memory_bandwidth_bytes_per_s")


def _device(d: dict, dev_id: str, node: str, source: str) -> Device:
    missing = [k for k in ("kind", *_DEVICE_NUMBERS) if k not in d]
    if missing:
        raise ClusterError(f"{source}: device {dev_id} lacks {', '.join(missing)}")
    numbers = {k: float(d[k]) for k in _DEVICE_NUMBERS}
    bad = [k for k, v in numbers.items() if not v > 0]
    if bad:
        raise ClusterError(f"{source}: device {dev_id} has a non-positive {', '.join(bad)}")
    compute = str(d.get("compute", ""))
    if compute not in ("", "probe", "roofline", "tilewise"):
        raise ClusterError(f"{source}: device {dev_id} compute {compute!r}: use probe, tilewise or roofline")
    if compute in ("probe", "tilewise") and d["kind"] != "cpu":
        raise ClusterError(f"{source}: device {dev_id} of kind {d['kind']!r} cannot use compute: {compute} "
                           f"(it costs this machine's CPU); use compute: roofline")
    return Device(id=dev_id, node=node, kind=str(d["kind"]), threads=int(d.get("threads", 1)), compute=compute,
                  gemm_efficiency=float(d.get("gemm_efficiency", 1.0)), **numbers)


def _link(d: dict, source: str) -> Link:
    for k in ("bandwidth_bytes_per_s", "latency_s"):
        if k not in d:
            raise ClusterError(f"{source}: link {d} lacks {k}")
    bw, lat = float(d["bandwidth_bytes_per_s"]), float(d["latency_s"])
    if not bw > 0 or lat < 0:
        raise ClusterError(f"{source}: link {d} needs a positive bandwidth and a non-negative latency")
    scope = str(d.get("scope", ""))
    if scope and scope not in SCOPES:
        raise ClusterError(f"{source}: link scope {scope!r}: use {' or '.join(SCOPES)}")
    if not scope and not (d.get("a") and d.get("b")):
        raise ClusterError(f"{source}: link {d} needs a and b (device ids) or a scope")
    return Link(bandwidth_bytes_per_s=bw, latency_s=lat, a=str(d.get("a", "")), b=str(d.get("b", "")),
                scope=scope, measured=bool(d.get("measured", False)),
                p2p_bandwidth_bytes_per_s=float(d.get("p2p_bandwidth_bytes_per_s", 0.0)),
                p2p_latency_s=float(d.get("p2p_latency_s", -1.0)))


def _parse(d: dict[str, Any], source: str) -> Cluster:
    if not isinstance(d, dict):
        raise ClusterError(f"{source}: a cluster file holds one JSON object")
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ClusterError(f"{source}: schema_version {version!r}; this tilewise reads version {SCHEMA_VERSION}")
    devices = []
    for i, dd in enumerate(d.get("devices", [])):
        dev_id = str(dd.get("id", f"d{i}"))
        devices.append(_device(dd, dev_id, str(dd.get("node", dev_id)), source))
    for g in d.get("nodes", []):
        if "name" not in g:
            raise ClusterError(f"{source}: a nodes entry needs a name (device ids are NAME<i>/<k>)")
        for n in range(int(g.get("count", 1))):
            node = f"{g['name']}{n}"
            for k in range(int(g.get("devices_per_node", 1))):
                devices.append(_device(g.get("device", {}), f"{node}/{k}", node, source))
    if not devices:
        raise ClusterError(f"{source}: no devices (give devices or nodes)")
    n_listed = len(devices) - sum(int(g.get("count", 1)) * int(g.get("devices_per_node", 1))
                                  for g in d.get("nodes", []))
    ids = [x.id for x in devices]
    if len(set(ids)) != len(ids):
        raise ClusterError(f"{source}: device ids repeat")
    links = tuple(_link(ln, source) for ln in d.get("links", []))
    known = set(ids)
    for ln in links:
        for end in (ln.a, ln.b):
            if end and end not in known:
                raise ClusterError(f"{source}: link names device {end!r}, which the cluster does not have")
    backend = str(d.get("backend", "nccl"))
    if backend not in BACKEND_COLLECTIVES:
        raise ClusterError(f"{source}: backend {backend!r}: use {' or '.join(BACKEND_COLLECTIVES)}")
    cluster = Cluster(name=str(d.get("name", os.path.basename(source))), devices=tuple(devices), links=links,
                      backend=backend, nodes=tuple(d.get("nodes", ())), collectives=tuple(d.get("collectives", ())),
                      n_listed=n_listed)
    _check_links(cluster)
    return cluster


def _check_links(c: Cluster) -> None:
    """Every pair covered; with both scopes present every pair is, so only look at the pair list."""
    scopes = {ln.scope for ln in c.links if ln.scope}
    if set(SCOPES) <= scopes:
        return
    by_node: dict[str, list[str]] = {}
    for dev in c.devices:
        by_node.setdefault(dev.node, []).append(dev.id)
    if len(c.devices) > 4096:
        raise ClusterError(f"{c.name}: {len(c.devices)} devices need scope links (intra_node, inter_node)")
    ids = [dev.id for dev in c.devices]
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            c.link(a, b)
