"""A measurement farm on a Ray cluster: :class:`RayRunner` spreads a batch over the cluster's nodes.

This is the adapter module: ray is imported here (inside functions) and nowhere else in tilewise,
so ``import tilewise.profiling.ray_runner`` works without it and only using a cluster needs it.

Layout.  One *node server* per Ray node: an actor pinned to that node (``NodeAffinity``, one CPU
of the node's resources) that owns a :class:`~tilewise.profiling.runner.LocalRunner` on it (build
workers and a timing process, as on one machine) and the node's own detected :class:`Target`.
A batch is cut into chunks of ``chunk_size`` candidates; each node server is kept ``in_flight``
chunks deep (work stealing: a fast node takes more chunks), and calls on one server run one at
a time, so no two kernels are timed on a node at once.  Each answer carries the node's target, so
the caller records every measurement under the target that measured it: nodes may differ in
CPU, cores or compiler version, and nothing here assumes they are alike
(``require_target`` restricts the farm to nodes of one target, for tuning that target).

Faults.  A node that dies (or whose server stops answering for ``chunk_timeout_s``) loses only its
in-flight chunks: they are put back at the head of the queue and measured by another node; its
server is killed so a late answer cannot arrive, and answers are accepted only from calls still
pending, one per candidate, so a candidate is never answered twice.  A candidate lost with
``max_requeues + 1`` nodes in a row (a kernel that takes its machine down) is answered
``runtime_error``.  New nodes are picked up at the start of every ``run``.  The runner raises
:class:`ClusterError` only when it cannot work at all: no cluster, or no live node left.

Wire format: candidates, targets and measurements cross the cluster as their JSON (``to_json``).
Every node must have the same tilewise installed (``Target.key`` includes its version anyway).
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Sequence

from tilewise.core.candidate import Candidate
from tilewise.profiling.base import ABTimings, Runner, RunnerConfig, register_runner
from tilewise.core.measurement import Measurement
from tilewise.core.target import Target

#: how long a new node server may take to start (import the compiler) and report its target
SERVER_START_TIMEOUT_S = 180.0

_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


class ClusterError(RuntimeError):
    """The cluster cannot be used: one line for the user, no traceback."""


def parse_cluster_address(text: str) -> str:
    """``ray://HOST:PORT`` (Ray client), ``HOST:PORT`` (the head's GCS address) or ``auto`` (the
    cluster this machine belongs to, or ``$RAY_ADDRESS``) -> the address for ``ray.init``."""
    text = text.strip()
    if text == "auto" or _ADDRESS.match(text):
        return text
    raise ClusterError(f"--cluster {text!r}: use ray://HOST:PORT, HOST:PORT (the head node's address) or auto")


def _init_with_retries(ray, address: str, attempts: int = 3, backoff_s: float = 2.0) -> None:
    """``ray.init(address)``; a Ray Client (``ray://``) connection is retried: its server starts a
    process per client, which can fail to come up in time on a loaded head node."""
    for attempt in range(attempts):
        try:
            ray.init(address=address, logging_level="WARNING", log_to_driver=False, configure_logging=False)
            return
        except Exception as e:      # noqa: BLE001  (ConnectionError, ValueError, grpc errors...)
            if address.startswith("ray://") and attempt + 1 < attempts:
                with contextlib.suppress(Exception):
                    ray.shutdown()
                time.sleep(backoff_s * (attempt + 1))
                continue
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            why = lines[0] if len(lines) < 2 else f"{lines[0][:150]} ... {lines[-1][:250]}"
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {why}") from None


class _NodeServer:
    """The actor body: a LocalRunner on one node (decorated with ``ray.remote`` in :func:`_server_class`)."""

    def __init__(self, config: dict):
        import ray

        from tilewise.profiling.runner import LocalRunner
        from tilewise.core.target import detect
        self.runner = LocalRunner(RunnerConfig(**config))
        self.target = detect()
        self.node_id = ray.get_runtime_context().get_node_id()

    def describe(self) -> dict:
        return {"node_id": self.node_id, "target": self.target.to_json()}

    def measure(self, candidates: list[dict]) -> dict:
        batch = [Candidate.from_json(c) for c in candidates]
        return {"node_id": self.node_id, "target": self.target.to_json(),
                "measurements": [m.to_json() for m in self.runner.run(batch)]}

    def close(self) -> None:
        self.runner.close()


_SERVER = None


def _server_class():
    global _SERVER
    if _SERVER is None:
        import ray
        _SERVER = ray.remote(_NodeServer)
    return _SERVER


@dataclass
class _Node:
    node_id: str
    actor: object
    target: Target | None = None
    in_flight: set = field(default_factory=set)      # pending call refs
    alive: bool = True


@register_runner("ray")
class RayRunner(Runner):
    """Measures on the nodes of a Ray cluster; see the module docstring.

    ``address``: what :func:`parse_cluster_address` accepts; if this process is already connected
    to Ray (``ray.is_initialized()``) that connection is used.  ``config``: each node's
    LocalRunner config (``timing_cores``/``build_cores`` are the node's own: reset to None).
    ``on_event(kind, node_id, indices)`` (optional, for progress and tests) is called with
    ``"dispatch"``, ``"done"`` and ``"lost"`` as chunks move.
    """

    def __init__(self, address: str = "auto", config: RunnerConfig = RunnerConfig(), *,
                 chunk_size: int = 2, in_flight: int = 2, max_requeues: int = 3,
                 require_target: Target | None = None, chunk_timeout_s: float | None = None,
                 on_event=None, poll_s: float = 0.5):
        if chunk_size < 1 or in_flight < 1 or max_requeues < 0:
            raise ValueError("need chunk_size >= 1, in_flight >= 1 and max_requeues >= 0")
        try:
            import ray
        except ImportError:
            raise ClusterError("--cluster needs Ray: pip install 'tilewise[cluster]'") from None
        self._ray = ray
        self.address = parse_cluster_address(address)
        self.config = dataclasses.replace(config, timing_cores=None, build_cores=None)
        self.chunk_size, self.in_flight_per_node, self.max_requeues = chunk_size, in_flight, max_requeues
        self.require_target = require_target
        self.chunk_timeout_s = chunk_timeout_s or (
            SERVER_START_TIMEOUT_S + chunk_size * (config.build_timeout_s + config.run_timeout_s + 10))
        self.on_event = on_event
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        self._excluded: dict[str, str] = {}         # node id -> why it takes no work
        self._closed = False
        self.requeued = 0                            # candidates put back after their node was lost
        self.measured_by: Counter = Counter()        # node id -> candidates it answered
        self._own_init = not ray.is_initialized()
        if self._own_init:
            _init_with_retries(ray, self.address)

    # -- nodes -----------------------------------------------------------------------------------
    def nodes(self) -> dict[str, Target]:
        """The live nodes taking work, node id -> target (starts their servers)."""
        with self._lock:
            self._refresh()
            return {n.node_id: n.target for n in self._nodes.values() if n.alive}

    def targets(self) -> list[Target]:
        """The distinct targets of the live nodes taking work."""
        return list({t.key(): t for t in self.nodes().values()}.values())

    def excluded(self) -> dict[str, str]:
        """Nodes that take no work, node id -> why."""
        return dict(self._excluded)

    def _refresh(self) -> None:
        """Start a server on every live node with a CPU that has none; learn their targets."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        ray = self._ray
        if self._closed:
            raise RuntimeError("this runner is closed")
        started = {}
        for info in ray.nodes():
            node_id = info["NodeID"]
            if not info.get("Alive") or node_id in self._excluded:
                continue
            if node_id in self._nodes and self._nodes[node_id].alive:
                continue
            if info.get("Resources", {}).get("CPU", 0) < 1:
                self._excluded[node_id] = "no CPU resource (started with --num-cpus 0)"
                continue
            actor = _server_class().options(
                num_cpus=1, max_restarts=0, max_task_retries=0, max_concurrency=1,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(dataclasses.asdict(self.config))
            started[node_id] = (actor, actor.describe.remote())
        for node_id, (actor, ref) in started.items():
            try:
                d = ray.get(ref, timeout=SERVER_START_TIMEOUT_S)
            except Exception as e:      # noqa: BLE001  (the node died, or tilewise is not installed there)
                self._kill(actor)
                self._excluded[node_id] = f"its server did not start: {' '.join(str(e).split())[:300]}"
                continue
            target = Target.from_json(d["target"])
            if self.require_target is not None and target.key() != self.require_target.key():
                self._kill(actor)
                self._excluded[node_id] = f"another target ({target.describe()})"
                continue
            self._nodes[node_id] = _Node(node_id, actor, target)

    def _kill(self, actor) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:       # noqa: BLE001  (already gone with its node)
            pass

    def _live(self) -> list[_Node]:
        return [n for n in self._nodes.values() if n.alive]

    def _event(self, kind: str, node: _Node, indices) -> None:
        if self.on_event is not None:
            self.on_event(kind, node.node_id, list(indices))

    # -- the Runner contract ---------------------------------------------------------------------
    def run(self, candidates: Sequence[Candidate]) -> list[Measurement]:
        return [m for m, _ in self.run_with_targets(candidates)]

    def run_with_targets(self, candidates: Sequence[Candidate]) -> list[tuple[Measurement, Target]]:
        """One (measurement, target of the node that measured it) per candidate, in order."""
        candidates = list(candidates)
        with self._lock:
            self._refresh()
            if not candidates:
                return []
            return _Batch(self, candidates).run()

    def time_ab(self, workload, schedules, *, rounds: int, runs_per_round: int, threads: int = 1) -> ABTimings:
        """The re-timing happens on this machine, not on the cluster (a window of interleaved runs
        must be one machine's): a :class:`~tilewise.profiling.runner.LocalRunner` of this config."""
        from tilewise.profiling.runner import LocalRunner
        with LocalRunner(self.config) as local:
            return local.time_ab(workload, schedules, rounds=rounds, runs_per_round=runs_per_round, threads=threads)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for n in self._nodes.values():
                if n.alive:
                    try:
                        self._ray.get(n.actor.close.remote(), timeout=30)
                    except Exception:       # noqa: BLE001
                        pass
                    self._kill(n.actor)
            self._nodes.clear()
            if self._own_init and self._ray.is_initialized():
                self._ray.shutdown()


class _Batch:
    """One ``run``: chunks to nodes, answers back, lost chunks re-queued."""

    def __init__(self, runner: RayRunner, candidates: list[Candidate]):
        self.runner = runner
        self.wire = [c.to_json() for c in candidates]
        self.results: list[tuple[Measurement, Target] | None] = [None] * len(candidates)
        self.lost = [0] * len(candidates)
        n = runner.chunk_size
        self.queue: deque[list[int]] = deque(list(range(i, min(i + n, len(candidates))))
                                             for i in range(0, len(candidates), n))
        self.pending: dict = {}          # ref -> (node, indices, started)

    def run(self) -> list[tuple[Measurement, Target]]:
        ray = self.runner._ray
        try:
            while any(r is None for r in self.results):
                self._dispatch()
                if not self.pending:
                    raise ClusterError("no live Ray node takes work" + self._why())
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=self.runner.poll_s)
                for ref in ready:
                    self._on_answer(ref)
                self._check_deadlines()
        finally:
            for ref, (node, _, _) in list(self.pending.items()):     # interrupted: drop what is out
                node.in_flight.discard(ref)
        return self.results

    def _why(self) -> str:
        excluded = self.runner.excluded()
        return (": " + "; ".join(f"node {k[:8]}: {v}" for k, v in excluded.items())) if excluded else ""

    def _dispatch(self) -> None:
        runner = self.runner
        if not runner._live() and self.queue:
            runner._refresh()                # every known node died: look for new ones
        for node in runner._live():
            while self.queue and len(node.in_flight) < runner.in_flight_per_node:
                indices = self.queue.popleft()
                ref = node.actor.measure.remote([self.wire[i] for i in indices])
                node.in_flight.add(ref)
                self.pending[ref] = (node, indices, time.monotonic())
                runner._event("dispatch", node, indices)

    def _on_answer(self, ref) -> None:
        ray = self.runner._ray
        node, indices, _ = self.pending.pop(ref)
        node.in_flight.discard(ref)
        try:
            answer = ray.get(ref)
        except Exception as e:      # noqa: BLE001  (actor died with its node, node died, object lost)
            self._lose_node(node, indices, ' '.join(str(e).split())[:200])
            return
        target = Target.from_json(answer["target"])
        for i, m in zip(indices, answer["measurements"]):
            if self.results[i] is None:          # one answer per candidate
                self.results[i] = (Measurement.from_json(m), target)
        self.runner.measured_by[node.node_id] += len(indices)
        self.runner._event("done", node, indices)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for ref, (node, indices, started) in list(self.pending.items()):
            if ref in self.pending and now - started > self.runner.chunk_timeout_s:
                self.pending.pop(ref)
                node.in_flight.discard(ref)
                self._lose_node(node, indices, f"no answer after {self.runner.chunk_timeout_s:g} s")

    def _lose_node(self, node: _Node, indices: list[int], reason: str) -> None:
        """``node`` is gone: re-queue ``indices`` and everything else it had in flight."""
        runner = self.runner
        chunks = [indices]
        for ref in list(node.in_flight):
            chunks.append(self.pending.pop(ref)[1])
        node.in_flight.clear()
        if node.alive:
            node.alive = False
            runner._kill(node.actor)             # a late answer from it can no longer arrive
            runner._excluded[node.node_id] = f"lost during a batch ({reason})"
        for chunk in reversed(chunks):
            again = []
            for i in chunk:
                self.lost[i] += 1
                if self.lost[i] > runner.max_requeues:
                    self.results[i] = (Measurement("runtime_error", f"lost {self.lost[i]} times with the node "
                                                   f"measuring it (last: {reason})"), node.target)
                else:
                    again.append(i)
            if again:
                runner.requeued += len(again)
                self.queue.appendleft(again)
            runner._event("lost", node, chunk)
