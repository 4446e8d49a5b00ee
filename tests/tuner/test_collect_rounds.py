"""``collect --rounds R``: every schedule measured in R interleaved rounds of a fresh shuffled
order, one record per schedule with the rounds' timings pooled (a fake runner stands in for the
timing process, so the test sees exactly what was asked of it)."""
import pytest

from tilewise.datasets import open_store
from tilewise.core.workload import Workload
from tilewise.profiling.base import Runner
from tilewise.core.measurement import Measurement, pool_measurements
from tilewise.core.target import detect
from tilewise.tuner.collect import CollectConfig, collect


class Recording(Runner):
    """Answers every candidate with a distinct timing and remembers the order it was asked in;
    ``fail`` = (schedule key, call number) pairs that come back as a runtime error."""

    def __init__(self, fail=()):
        self.asked: list[str] = []
        self.fail = set(fail)

    def run(self, candidates):
        out = []
        for c in candidates:
            self.asked.append(c.schedule.key())
            n = len(self.asked)
            if (c.schedule.key(), self.asked.count(c.schedule.key())) in self.fail:
                out.append(Measurement("runtime_error", "killed by SIGSEGV"))
            else:
                out.append(Measurement("ok", "", (n * 1e-6, n * 1e-6 + 1e-7), 1e-7 * n, 0.5))
        return out


def test_rounds_interleave_and_pool(tmp_path):
    w = Workload.parse("relu:64x512:f32")
    runner = Recording()
    with open_store(tmp_path / "r.db") as store:
        p = collect([w], detect(), store, runner, CollectConfig(samples=6, batch_size=4, rounds=3))
        records = store.query(w, detect(), status=None)
    assert p.done == 6 and len(records) == 6 and p.by_status == {"ok": 6}
    first, second, third = runner.asked[:6], runner.asked[6:12], runner.asked[12:]
    assert len(runner.asked) == 18
    assert set(first) == set(second) == set(third) == {r.schedule_key for r in records}
    assert not first == second == third, "every round takes its own shuffled order"
    for r in records:
        calls = [i + 1 for i, k in enumerate(runner.asked) if k == r.schedule_key]
        want = sorted(t for n in calls for t in (n * 1e-6, n * 1e-6 + 1e-7))
        assert sorted(r.measurement.times_s) == pytest.approx(want)
        assert r.measurement.rel_error == pytest.approx(1e-7 * calls[-1])      # the worst round's


def test_a_schedule_failing_in_any_round_is_recorded_as_failed(tmp_path):
    w = Workload.parse("relu:64x512:f32")
    probe = Recording()
    with open_store(tmp_path / "probe.db") as store:
        collect([w], detect(), store, probe, CollectConfig(samples=4, rounds=1))
    victim = probe.asked[2]
    runner = Recording(fail={(victim, 2)})                   # fails in its second round only
    with open_store(tmp_path / "r.db") as store:
        p = collect([w], detect(), store, runner, CollectConfig(samples=4, rounds=3))
        by_key = {r.schedule_key: r.measurement for r in store.query(w, detect(), status=None)}
    assert p.failed == 1 and by_key[victim].status == "runtime_error"
    assert sum(m.ok for m in by_key.values()) == 3
    assert runner.asked.count(victim) == 2, "a failed schedule is not measured again in later rounds"
    assert len(runner.asked) == 3 * 3 + 2


def test_pool_rounds_and_bad_rounds():
    a = Measurement("ok", "", (1.0, 2.0), 1e-6, 0.3)
    b = Measurement("ok", "", (3.0,), 2e-6, 0.4)
    pooled = pool_measurements([a, b])
    assert pooled.ok and pooled.times_s == (1.0, 2.0, 3.0) and pooled.rel_error == 2e-6
    assert pooled.compile_time_s == 0.3 and pooled.median_s == 2.0
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        CollectConfig(rounds=0)


def test_schedules_of_another_collection_are_measured_in_order(tmp_path, fixed_target):
    """``collect --schedules-of``: the schedules another CPU's collection holds (drawn from that
    CPU's space), in its order, capped at ``samples``; a rerun measures nothing new."""
    from tilewise.tuner.collect import schedules_by_workload
    from tilewise.tuner.space import SpaceOptions, space_for
    import numpy as np
    w, other = Workload.parse("relu:64x512:f32"), Workload.parse("add:64x512:f32")
    space = space_for(w, fixed_target, SpaceOptions(max_threads=1))
    rng = np.random.default_rng(4)
    drawn = list(dict.fromkeys(space.sample(rng) for _ in range(12)))[:5]
    listed = {str(w): drawn, str(other): drawn[:2]}
    runner = Recording()
    with open_store(tmp_path / "r.db") as store:
        p = collect([w, other], detect(), store, runner, CollectConfig(samples=4, batch_size=3), schedules=listed)
        assert runner.asked == [s.key() for s in drawn[:4]] + [s.key() for s in drawn[:2]]
        assert p.total == p.done == 6 and p.skipped == 0
        again = collect([w, other], detect(), store, runner, CollectConfig(samples=4), schedules=listed)
        assert again.skipped == 6 and len(runner.asked) == 6
        held = schedules_by_workload(store.iter())
    assert held == {str(w): drawn[:4], str(other): drawn[:2]}
