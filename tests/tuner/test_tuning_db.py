"""The tuning database: tune records every trial, answers a tuned workload from the store, and
with ``retune`` searches on from what the store holds without re-measuring any of it."""
import json
import subprocess
import sys

import pytest

from tilewise.datasets.base import open_store
from tilewise.ir import Schedule, Workload
from tilewise.profiling.measure import measure
from tilewise.profiling.runner import LocalRunner
from tilewise.tuner.tune import TuneConfig, tune

W = Workload.parse("matmul:32x40x24:f32")
FAST = dict(repeats=2, min_time_s=0.0, ab_rounds=1, ab_runs_per_round=1, top_k=2, batch_size=2)


class InProcessRunner(LocalRunner):
    """Real compile + check + timing of the search, in this process (small kernels; the fault
    isolation of the LocalRunner is tested in tests/profiling); the final A/B is the LocalRunner's
    (``measured`` lists what the search measured)."""

    def __init__(self):
        super().__init__()
        self.measured: list[Schedule] = []

    def run(self, candidates):
        self.measured += [c.schedule for c in candidates]
        return [measure(c.workload, c.schedule, repeats=2, min_time_s=0.0) for c in candidates]


pytestmark = pytest.mark.jit


def test_second_run_is_answered_from_the_store_then_retune_searches_on(tmp_path, target):
    config = TuneConfig(trials=4, strategy="random", max_threads=1, **FAST)
    with open_store(tmp_path / "t.db") as store:
        first = tune(W, target, config, runner=InProcessRunner(), store=store)
        assert first.searched and len(first.trials) == 4 and len(store) == 4
        assert first.best is not None and first.best.rel_error <= 1e-4

        runner = InProcessRunner()
        second = tune(W, target, config, runner=runner, store=store)
        assert not second.searched and runner.measured == [] and len(store) == 4
        assert len(second.prior) == 4 and second.best is not None
        stored = {r.schedule for r in store.query(W, target)}
        assert second.best.schedule in stored | {W.kind.default_schedule(W, target)}
        assert any("--retune" in n for n in second.notes)

        runner = InProcessRunner()
        third = tune(W, target, TuneConfig(trials=4, strategy="random", max_threads=1, retune=True, **FAST),
                     runner=runner, store=store)
        assert third.searched and len(runner.measured) == 4
        assert not set(runner.measured) & stored          # nothing measured twice
        assert len(store) == 8


def test_records_outside_the_runs_limits_do_not_answer_it(tmp_path, target):
    """A 2-thread record cannot answer a 1-thread run: the run searches."""
    with open_store(tmp_path / "t.db") as store:
        s = Schedule(reg_tile=(4, 16), threads=2, parallel_dim="n", vectorize=True)
        from tilewise.core.record import Record
        store.append([Record(W, target, s, measure(W, s, repeats=2, min_time_s=0.0))])
        r = tune(W, target, TuneConfig(trials=2, strategy="random", max_threads=1, **FAST),
                 runner=InProcessRunner(), store=store)
        assert r.searched and r.prior == [] and len(store) == 3


def cli(*args):
    return subprocess.run([sys.executable, "-m", "tilewise.frontends.cli", *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_tune_records_and_best_reads_back(tmp_path):
    db = str(tmp_path / "cli.db")
    missing = cli("best", str(W), "--db", db)
    assert missing.returncode == 1 and "no verified schedule" in missing.stdout
    r = cli("tune", str(W), "--trials", "4", "--strategy", "random", "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    tuned = json.loads(r.stdout)
    assert tuned["searched"] and tuned["store"] == db
    b = cli("best", str(W), "--db", db, "--json")
    assert b.returncode == 0, b.stderr
    best = json.loads(b.stdout)
    assert best["records"] == 4 and best["best"]["rel_error"] <= 1e-4 and best["best"]["gflops"] > 0
    again = cli("tune", str(W), "--trials", "4", "--strategy", "random", "--db", db)
    assert again.returncode == 0, again.stderr
    assert "answered from the database" in again.stdout and "--retune" in again.stdout


def test_latency_error_objectives_measure_lower_precisions_and_keep_a_front(target):
    config = TuneConfig(trials=8, strategy="nsga2", max_threads=1, objectives=("latency", "error"), **FAST)
    r = tune(W, target, config, runner=InProcessRunner())
    assert r.config.max_rel_error == 3e-2                  # the loosest tolerance the op offers (bf16)
    precisions = {t.schedule.get("precision") for t in r.trials}
    assert precisions - {"f32"}, precisions                 # lower precisions were searched, not assumed
    front = [(t.measurement.median_s, t.measurement.rel_error) for t in r.pareto]
    assert front and all(m.ok for m in (t.measurement for t in r.pareto))
    for lat, err in front:                                  # nothing in the front is dominated
        assert not any(l2 <= lat and e2 <= err and (l2, e2) != (lat, err)
                       for l2, e2 in ((t.measurement.median_s, t.measurement.rel_error) for t in r.trials
                                      if t.measurement.ok))
    assert "pareto" in r.to_json() and len(r.to_json()["pareto"]) == len(front)


def test_objectives_are_checked():
    with pytest.raises(ValueError, match="latency,error"):
        TuneConfig(objectives=("error",))
