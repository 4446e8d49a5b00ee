"""The measurement farm (profiling/ray_runner.py) on a real two-node Ray cluster on loopback, with a
real PostgreSQL store (tests/pg_server.py): a collection across both nodes, one node killed
mid-run; every candidate must end up measured exactly once in PostgreSQL.

The worker node is started under ``taskset`` on one core, so its detected Target (1 core) differs
from the head's (every core): records show which node measured them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from tilewise.datasets import open_store
from tilewise.core.workload import Workload
from tilewise.profiling.base import RunnerConfig
from tilewise.core.measurement import STATUSES
from tilewise.profiling.procs import allowed_cores
from tilewise.core.target import detect
from tilewise.tuner.collect import CollectConfig, collect

from .ray_cluster import ENV, LocalCluster, kill_tree

ray = pytest.importorskip("ray", reason="the cluster tests need ray: pip install -e '.[test]'")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(len(allowed_cores()) < 2, reason="pins the worker node to a core of its own")]
ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ["relu:64x512:f32", "add:64x256:f32", "matmul:32x32x32:f32"]
CHEAP = RunnerConfig(build_workers=1, repeats=3, min_time_s=0.0, warmup=1, build_timeout_s=120, run_timeout_s=60)


@pytest.fixture(scope="module")
def cluster():
    cores = allowed_cores()
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)                       # the driver (this process) reads them at ray.init
    c = LocalCluster()
    try:
        c.start_head()
        worker = c.add_worker(cores=cores[-1:] if len(cores) > 1 else None)
        deadline = time.monotonic() + 120
        while True:
            try:
                ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
                break
            except Exception:               # noqa: BLE001  (the head is not up yet)
                if time.monotonic() > deadline:
                    raise RuntimeError("the Ray head did not come up: " + c.logs())
                time.sleep(1)
        c.wait_for_nodes(2)
        c.worker = worker
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def duplicates(url: str) -> list:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT workload_key, schedule_key, count(*) FROM tilewise_records "
                            "GROUP BY 1, 2 HAVING count(*) > 1").fetchall()


def test_collect_across_nodes_survives_a_node_kill(cluster, postgres_server):
    from tilewise.profiling.ray_runner import RayRunner
    url = postgres_server.new_database()
    here = detect()
    killed = threading.Event()
    events = []

    def on_event(kind, node_id, indices):
        events.append((kind, node_id, tuple(indices)))
        # once the worker node has answered a chunk, kill it right after it is handed the next:
        # that chunk is in flight on a node that dies
        worker = worker_node[0]
        if (kind == "dispatch" and node_id == worker and not killed.is_set()
                and any(k == "done" and n == worker for k, n, _ in events)):
            kill_tree(cluster.worker)
            killed.set()

    runner = RayRunner(cluster.address, CHEAP, chunk_size=1, in_flight=2, on_event=on_event)
    try:
        nodes = runner.nodes()
        assert len(nodes) == 2
        by_cores = {t.cores: node for node, t in nodes.items()}
        # the worker node detected its own (1-core) target; the head has every core
        assert len(by_cores) == 2 and 1 in by_cores and nodes[by_cores[here.cores]] == here
        worker_node = [by_cores[1]]
        samples = 6
        with open_store(url) as store:
            progress = collect([Workload.parse(w) for w in WORKLOADS], here, store, runner,
                               CollectConfig(samples=samples, batch_size=6, seed=0))
        assert killed.is_set(), "the worker node was never killed: it took no work"
        assert progress.done == progress.total == samples * len(WORKLOADS)
        # the dead node lost exactly what it had in flight (every chunk handed to it came back or
        # was lost; the one handed over just before the kill cannot have come back), and all of
        # that was re-queued and measured elsewhere
        def to_worker(kind: str) -> int:
            return sum(len(i) for k, n, i in events if k == kind and n == worker_node[0])
        assert to_worker("dispatch") - to_worker("done") == to_worker("lost") == runner.requeued >= 1
        lost = [i for k, n, i in events if k == "lost"]
        assert all(n == worker_node[0] for k, n, _ in events if k == "lost")
        assert not any(n == worker_node[0] for k, n, _ in events[events.index(("lost", worker_node[0], lost[-1])):]
                       if k == "dispatch")
        assert runner.measured_by[worker_node[0]] >= 1
    finally:
        runner.close()

    # exactly once in PostgreSQL: every candidate of every workload, one record each
    assert duplicates(url) == []
    with open_store(url) as store:
        records = list(store.iter())
        assert len(records) == samples * len(WORKLOADS) == len(store)
        for w in WORKLOADS:
            assert len({r.schedule_key for r in records if str(r.workload) == w}) == samples
        assert all(r.measurement.status in STATUSES for r in records)
        assert sum(r.measurement.ok for r in records) >= len(records) // 2
        # each record carries the target of the node that measured it
        worker_target = nodes[worker_node[0]]
        on_worker = [r for r in records if r.target == worker_target]
        assert len(on_worker) == runner.measured_by[worker_node[0]] >= 1
        assert {r.target.key() for r in records} == {worker_target.key(), here.key()}

    # a rerun on what is left of the cluster (the head) skips what is held for the head's target
    # and measures there only what the dead node had measured (another target: another record)
    runner2 = RayRunner(cluster.address, CHEAP)
    try:
        assert runner2.targets() == [here]
        with open_store(url) as store:
            again = collect([Workload.parse(w) for w in WORKLOADS], here, store, runner2,
                            CollectConfig(samples=samples, batch_size=6, seed=0))
            assert again.skipped == len(records) - len(on_worker)
            assert len(store) == len(records) + len(on_worker)
    finally:
        runner2.close()
    assert duplicates(url) != [] or not on_worker       # the same schedules, now on the head too


def test_cli_collect_and_tune_on_the_cluster(cluster, postgres_server, tmp_path):
    """``tilewise collect --cluster HOST:PORT`` and ``tilewise tune --cluster ray://HOST:PORT`` (Ray
    Client) with ``--db postgresql://...``.  After the kill only the head node is left; run alone,
    the worker node is there too and ``tune`` must leave it out (another target)."""
    url, tune_url = postgres_server.new_database(), postgres_server.new_database()
    env = dict(os.environ, **ENV)
    r = subprocess.run([sys.executable, "-m", "tilewise.frontends.cli", "collect", "-w", "relu:64x256:f32",
                        "-n", "3", "--cluster", cluster.address, "--db", url, "--json"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    summary = json.loads(r.stdout)
    assert summary["measured"] == 3 and summary["records_in_store"] == 3
    assert sum(summary["cluster"]["nodes"].values()) == 3 and summary["db"] == url
    r = subprocess.run([sys.executable, "-m", "tilewise.frontends.cli", "tune", "relu:64x256:f32",
                        "--trials", "3", "--strategy", "random", "--cluster", f"ray://127.0.0.1:{cluster.client_port}",
                        "--db", tune_url, "--json"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    result = json.loads(r.stdout)
    assert result["trials"] == 3 and result["best"] is not None
    with open_store(tune_url) as store:          # measured only on nodes of this machine's target
        assert len(store) == 3 and {r.target.key() for r in store.iter()} == {detect().key()}
