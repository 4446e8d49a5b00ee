"""Per-op compute time on a device: measured on this machine (``probe``) or a roofline (``roofline``).

``OpCosts.layer_times(layer, b, t) -> (forward_s, backward_s)`` of one layer at micro-batch ``b`` on a
``t``-way tensor-parallel shard.  Sources are registered by name (``COMPUTE_SOURCES``); a cluster
device names its own (:mod:`tilewise.planner.cluster`).

* ``probe`` (``kind: cpu``): every distinct GEMM / attention / batched GEMM of the plan space is run
  once here with torch at the device's thread count, forward alone and forward + backward through
  autograd (median of repeats; backward = the difference), exactly the kernels training calls.
  Pointwise ops are costed from two measured constants: streaming bandwidth (``x + y`` on tensors
  far larger than the caches) and the per-op overhead (a tiny add); backward moves twice the
  forward's bytes and runs as many ops again.  Results are cached per target key, torch version and
  thread count in ``$XDG_CACHE_HOME/tilewise/planner/`` (plain JSON with a ``schema_version``).
* ``tilewise`` (``kind: cpu``): GEMMs as tilewise kernels of this CPU -- the record store's best
  verified record, else the cost model's prediction (:class:`TilewiseCosts`); nothing is run.
* ``roofline`` (any other kind; no such device here): ``max(flops / (peak_flops x gemm_efficiency),
  bytes / memory_bandwidth)`` per op, backward twice the forward's GEMM work (attention's 2.5x:
  fused attention recomputes its scores), pointwise ops at the memory bandwidth.  ``gemm_efficiency``
  comes from the cluster file (default 1.0: the peak itself, an upper bound on throughput).
"""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Callable

from tilewise.core.registry import Registry
from tilewise.planner.cluster import Device
from tilewise.planner.model import Layer, Op

PROBE_SCHEMA_VERSION = 1
COMPUTE_SOURCES = Registry("compute source", "tilewise.planner.opcost", name_attr=None)


def shard(op: Op, t: int) -> Op:
    """The op one of ``t`` tensor-parallel ranks runs."""
    if t == 1 or op.split == "none":
        return op
    if op.kind == "linear":
        return Op("linear", op.split, tokens=op.tokens, k=op.k // t if op.split == "row" else op.k,
                  n=op.n // t if op.split == "column" else op.n)
    if op.kind == "attention":
        return Op("attention", op.split, tokens=op.tokens, k=op.k, batch=max(1, op.batch // t), causal=op.causal)
    if op.kind == "bmm":
        return Op("bmm", op.split, batch=max(1, op.batch // t), m=op.m, k=op.k, n=op.n)
    return Op("pointwise", op.split, bytes=op.bytes / t, count=op.count)


class OpCosts:
    """Forward and backward seconds of ops and layers on one device."""

    def op_times(self, op: Op, b: int, dtype_bytes: int) -> tuple[float, float]:
        raise NotImplementedError

    def optimizer_s(self, params: float) -> float:
        """One Adam step over ``params`` parameters of this device (f32 state)."""
        raise NotImplementedError

    def layer_times(self, layer: Layer, b: int, t: int, dtype_bytes: int) -> tuple[float, float]:
        fwd = bwd = 0.0
        for op in layer.ops:
            f, g = self.op_times(shard(op, t), b, dtype_bytes)
            fwd, bwd = fwd + f, bwd + g
        return fwd, bwd


# -- roofline --------------------------------------------------------------------------------------
@COMPUTE_SOURCES.register("roofline")
class RooflineCosts(OpCosts):
    def __init__(self, device: Device):
        self.flops_per_s = device.peak_flops * device.gemm_efficiency
        self.bytes_per_s = device.memory_bandwidth_bytes_per_s

    def _gemm(self, flops: float, nbytes: float) -> float:
        return max(flops / self.flops_per_s, nbytes / self.bytes_per_s)

    def op_times(self, op: Op, b: int, dtype_bytes: int) -> tuple[float, float]:
        if op.kind == "linear":
            m = b * op.tokens
            f = self._gemm(2.0 * m * op.k * op.n, dtype_bytes * (m * op.k + op.k * op.n + m * op.n))
            return f, 2 * f
        if op.kind == "bmm":
            f = self._gemm(2.0 * b * op.batch * op.m * op.k * op.n,
                           dtype_bytes * b * op.batch * (op.m * op.k + op.k * op.n + op.m * op.n))
            return f, 2 * f
        if op.kind == "attention":
            f = self._gemm(b * op.flops, dtype_bytes * 4 * b * op.batch * op.tokens * op.k)
            return f, 2.5 * f
        f = b * op.bytes / self.bytes_per_s
        return f, 2 * f

    def optimizer_s(self, params: float) -> float:
        return 28.0 * params / self.bytes_per_s       # Adam: read p, g, m, v; write p, m, v (f32)


# -- probe -----------------------------------------------------------------------------------------
def _median_s(fn: Callable[[], None], repeats: int, min_s: float = 0.02) -> float:
    fn()
    times = []
    t_end = time.perf_counter() + min_s
    while len(times) < repeats or (time.perf_counter() < t_end and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _probe_key(threads: int) -> str:
    import torch
    from tilewise.core.target import detect
    return f"{detect().key()[:16]}-torch{torch.__version__}-t{threads}"


@COMPUTE_SOURCES.register("probe")
class ProbeCosts(OpCosts):
    """Measured here; ``cache`` is a JSON file path (None: the default cache file, "" : no file)."""

    def __init__(self, device: Device, cache: str | None = None, repeats: int = 5):
        if device.kind != "cpu":
            raise ValueError(f"device {device.id} of kind {device.kind!r} cannot be probed on this CPU")
        self.threads = device.threads
        self.repeats = repeats
        key = _probe_key(self.threads)
        if cache is None:
            from tilewise.core.paths import cache_home
            cache = cache_home("planner", f"probe-{key}.json")
        self.path = cache
        self.table: dict[str, list[float]] = {}
        if cache and os.path.exists(cache):
            with open(cache) as f:
                d = json.load(f)
            if d.get("schema_version") == PROBE_SCHEMA_VERSION and d.get("key") == key:
                self.table = d["times"]
        self.key = key
        self._dirty = False

    def save(self) -> None:
        if not self.path or not self._dirty:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"schema_version": PROBE_SCHEMA_VERSION, "key": self.key, "times": self.table}, f)
        os.replace(tmp, self.path)
        self._dirty = False

    def _measured(self, name: str, run: Callable[[], list[float]]) -> list[float]:
        hit = self.table.get(name)
        if hit is None:
            import torch
            old = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                hit = self.table[name] = run()
            finally:
                torch.set_num_threads(old)
            self._dirty = True
        return hit

    def _fwd_bwd(self, make: Callable[[], tuple], call: Callable) -> list[float]:
        import torch
        inputs = make()
        grad = torch.randn_like(call(*inputs))

        def fwd():
            with torch.no_grad():
                call(*inputs)

        def both():
            call(*inputs).backward(grad)
            for x in inputs:
                x.grad = None
        f = _median_s(fwd, self.repeats)
        fb = _median_s(both, self.repeats)
        return [f, max(fb - f, 0.0)]

    def op_times(self, op: Op, b: int, dtype_bytes: int) -> tuple[float, float]:
        import torch
        from torch.nn import functional as F
        dtype = {4: torch.float32, 2: torch.bfloat16}[dtype_bytes]

        def rand(*shape):
            return torch.randn(*shape, dtype=dtype, requires_grad=True)
        if op.kind == "linear":
            m = b * op.tokens
            f, g = self._measured(f"linear:{m}x{op.k}x{op.n}:{dtype_bytes}",
                                  lambda: self._fwd_bwd(lambda: (rand(m, op.k), rand(op.n, op.k)), F.linear))
        elif op.kind == "attention":
            def qkv():
                return tuple(rand(b, op.batch, op.tokens, op.k) for _ in "qkv")

            def attend(q, k, v):
                return F.scaled_dot_product_attention(q, k, v, is_causal=op.causal)
            f, g = self._measured(f"attention:{b}x{op.batch}x{op.tokens}x{op.k}:{int(op.causal)}:{dtype_bytes}",
                                  lambda: self._fwd_bwd(qkv, attend))
        elif op.kind == "bmm":
            n = b * op.batch
            f, g = self._measured(f"bmm:{n}x{op.m}x{op.k}x{op.n}:{dtype_bytes}",
                                  lambda: self._fwd_bwd(lambda: (rand(n, op.m, op.k), rand(n, op.k, op.n)), torch.bmm))
        else:
            bw, overhead = self._measured("pointwise", self._pointwise_constants)
            f = b * op.bytes / bw + op.count * overhead
            return f, 2 * b * op.bytes / bw + op.count * overhead
        return f, g

    def _pointwise_constants(self) -> list[float]:
        import torch
        x, y = torch.randn(1 << 23), torch.randn(1 << 23)
        out = torch.empty_like(x)
        stream = _median_s(lambda: torch.add(x, y, out=out), self.repeats)
        a, c = torch.randn(8), torch.randn(8)
        tiny = _median_s(lambda: a + c, 50)
        return [3 * x.numel() * 4 / stream, tiny]

    def optimizer_s(self, params: float) -> float:
        n = int(params)

        def run() -> list[float]:
            import torch
            p = torch.nn.Parameter(torch.randn(max(n, 1)))
            p.grad = torch.randn_like(p)
            opt = torch.optim.Adam([p], lr=1e-4, foreach=False)
            return [_median_s(opt.step, 3)]
        return self._measured(f"adam:{n}", run)[0]


# -- tilewise's own records and cost model ---------------------------------------------------------
@COMPUTE_SOURCES.register("tilewise")
class TilewiseCosts(RooflineCosts):
    """GEMMs (linear, bmm and attention's two batched GEMMs; backward: the data- and weight-gradient
    GEMMs of the same sizes) costed as tilewise kernels of this CPU: the tuning store's best verified
    record of the workload (``db``: the default record store), else the cost model's best predicted
    latency over the workload's search space (the model ``tilewise tune`` would use on this target:
    ``costmodel.selection``; where that is a fresh model, the roofline it ranks by until fitted), at
    the device's thread count.  Pointwise ops and the optimizer use the
    roofline of the device's figures.  Nothing is run: plans for kernels tilewise would compile."""

    def __init__(self, device: Device, db: str | None = None, samples: int = 64):
        if device.kind != "cpu":
            raise ValueError(f"device {device.id} of kind {device.kind!r}: the tilewise source costs this CPU's kernels")
        super().__init__(device)
        from tilewise.core.target import detect
        from tilewise.costmodel.selection import resolve_model
        self.threads, self.samples, self.db = device.threads, samples, db
        self.target = detect()
        self.model = resolve_model(None, self.target)[0]
        if getattr(self.model, "fitted", True) is False:     # no model for this CPU yet: its roofline
            from tilewise.costmodel.base import create
            self.model = create("roofline")
        self._memo: dict[str, float] = {}

    def _latency(self, text: str) -> float:
        if text not in self._memo:
            import numpy as np
            from tilewise.core.candidate import Candidate
            from tilewise.core.workload import Workload
            from tilewise.datasets.base import default_location, open_store
            from tilewise.tuner.space import SpaceOptions, space_for
            w = Workload.parse(text)
            store = open_store(self.db or default_location())
            try:
                best = next((r.measurement.median_s for r in store.query(w, self.target)
                             if int(r.schedule.get("threads", 1)) <= self.threads and r.measurement.median_s), None)
            finally:
                store.close()
            if best is None:
                space = space_for(w, self.target, SpaceOptions(max_threads=self.threads))
                rng = np.random.default_rng(0)
                cands = [w.kind.default_schedule(w, self.target).replace(threads=self.threads)]
                cands += [space.sample(rng) for _ in range(self.samples)]
                best = float(np.min(self.model.predict([Candidate(w, c) for c in cands], self.target)))
            self._memo[text] = best
        return self._memo[text]

    def _mm(self, batch: int, m: int, n: int, k: int) -> float:
        m, n, k = max(1, m), max(1, n), max(1, k)
        if batch > 1:
            return self._latency(f"batch_matmul:{batch}x{m}x{n}x{k}:f32")
        return self._latency(f"matmul:{m}x{n}x{k}:f32")

    def op_times(self, op: Op, b: int, dtype_bytes: int) -> tuple[float, float]:
        if op.kind == "linear":
            m = b * op.tokens
            return self._mm(1, m, op.n, op.k), self._mm(1, m, op.k, op.n) + self._mm(1, op.k, op.n, m)
        if op.kind == "bmm":
            bt = b * op.batch
            return self._mm(bt, op.m, op.n, op.k), self._mm(bt, op.m, op.k, op.n) + self._mm(bt, op.k, op.n, op.m)
        if op.kind == "attention":
            bt, s, d = b * op.batch, op.tokens, op.k
            f = self._mm(bt, s, s, d) + self._mm(bt, s, d, s)     # QK^T, PV
            return f, 2.5 * f                                     # as the roofline: scores recomputed
        return super().op_times(op, b, dtype_bytes)


def costs_for(device: Device, **options) -> OpCosts:
    return COMPUTE_SOURCES.get(device.compute_source)(device, **options) if device.compute_source == "probe" \
        else COMPUTE_SOURCES.get(device.compute_source)(device)
