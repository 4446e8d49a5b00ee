"""The cluster plumbing without a cluster: addresses, lazy imports, and how collect/tune record the
target a multi-machine runner reports for each measurement (a fake runner stands in for Ray)."""
import dataclasses
import subprocess
import sys

import pytest

from tilewise.datasets import open_store
from tilewise.core.workload import Workload
from tilewise.core.measurement import Measurement
from tilewise.profiling.ray_runner import ClusterError, parse_cluster_address
from tilewise.core.target import detect
from tilewise.tuner.collect import CollectConfig, collect


def test_cluster_addresses():
    for ok in ("auto", "ray://head:10001", "10.0.0.5:6379", "ray://127.0.0.1:1", "head.example.org:6379"):
        assert parse_cluster_address(ok) == ok
    for bad in ("", "head", "http://head:80", "ray://head", "head:port", "ray://head:10001/x"):
        with pytest.raises(ClusterError, match="use ray://HOST:PORT"):
            parse_cluster_address(bad)


def test_adapters_import_their_drivers_lazily():
    code = ("import sys, tilewise.profiling.ray_runner, tilewise.datasets, tilewise.tuner.collect, "
            "tilewise.frontends.cli\n"
            "print(sorted(m for m in ('ray', 'psycopg') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


class TwoMachines:
    """Answers like a RayRunner: candidates alternate between two targets."""

    def __init__(self, targets):
        self._targets = targets
        self.calls = 0

    def targets(self):
        return list(self._targets)

    def run(self, candidates):
        return [m for m, _ in self.run_with_targets(candidates)]

    def run_with_targets(self, candidates):
        out = []
        for c in candidates:
            out.append((Measurement("ok", "", (1e-4, 1.1e-4, 1.2e-4), 0.0, 0.1), self._targets[self.calls % 2]))
            self.calls += 1
        return out


def test_collect_records_each_measurement_under_its_machine(tmp_path):
    here = detect()
    other = dataclasses.replace(here, name="Another CPU", cores=64)
    runner = TwoMachines([here, other])
    w = Workload.parse("relu:64x512:f32")
    with open_store(tmp_path / "r.db") as store:
        p = collect([w], here, store, runner, CollectConfig(samples=8, batch_size=3))
        assert p.done == 8 and runner.calls == 8
        mine, theirs = store.query(w, here), store.query(w, other)
        assert len(mine) == len(theirs) == 4
        assert not {r.schedule_key for r in mine} & {r.schedule_key for r in theirs}
        # a rerun holds what either machine measured: nothing is measured again
        again = collect([w], here, store, TwoMachines([here, other]), CollectConfig(samples=8, batch_size=3))
        assert again.skipped == 8 and len(store) == 8
        # with only this machine left, what the other measured is measured here
        alone = collect([w], here, store, TwoMachines([here, here]), CollectConfig(samples=8, batch_size=3))
        assert alone.skipped == 4 and len(store.query(w, here)) == 8
