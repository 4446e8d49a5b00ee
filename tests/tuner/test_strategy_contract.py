"""Every registered strategy through ``tune()`` on a ReplayRunner with a record store: the tuning
loop's contract, in seconds and without the JIT (synthetic timings of every legal schedule)."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from tilewise.core.candidate import Candidate
from tilewise.core.measurement import Measurement
from tilewise.core.workload import Workload
from tilewise.datasets.base import open_store
from tilewise.profiling.runner import ReplayRunner
from tilewise.tuner.base import available
from tilewise.tuner.space import SpaceOptions, space_for
from tilewise.tuner.targets import target_kind
from tilewise.tuner.tune import TuneConfig, finalists, tune

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
W = Workload.parse("matmul:16x16x16:f32")           # 1248 legal 1-thread schedules
CONFIG = TuneConfig(trials=12, batch_size=4, top_k=3, ab_rounds=2, ab_runs_per_round=2)
REFERENCE = Measurement("ok", "", (4e-6, 5e-6, 6e-6), None)


def synthetic(schedule) -> Measurement:
    """A deterministic latency per schedule, 10-20 us, three runs around it."""
    t = 1e-5 * (1 + int(hashlib.sha256(schedule.key().encode()).hexdigest()[:8], 16) / 16 ** 8)
    return Measurement("ok", "", (t * 0.99, t, t * 1.02), 1e-7)


class SpyReplay(ReplayRunner):
    """Keeps what it is asked: the search's schedules, the A/B's calls and its ``run`` batches."""

    def __init__(self, records, **kw):
        super().__init__(records, **kw)
        self.searched, self.ab_calls, self.ab_batches = [], [], 0

    def run(self, candidates):
        if self.ab_calls:
            self.ab_batches += 1
        else:
            self.searched += [c.schedule for c in candidates]
        return super().run(candidates)

    def time_ab(self, workload, schedules, **kw):
        self.ab_calls.append((dict(schedules), kw))
        return super().time_ab(workload, schedules, **kw)


def replay_runner(target) -> tuple[SpyReplay, dict]:
    table = {s: synthetic(s) for s in space_for(W, target, SpaceOptions(1))}
    table[target_kind(target).default_schedule(W, target)] = Measurement("ok", "", (1e-3,) * 3, 0.0)
    runner = SpyReplay([(Candidate(W, s), m) for s, m in table.items()], reference=REFERENCE,
                       reference_name="numpy")
    return runner, table


#: every registered strategy, and optuna's CMA-ES sampler (``create("optuna", space, sampler="cmaes")``)
STRATEGIES = [pytest.param(s, (), id=s) for s in available()] + \
    [pytest.param("optuna", (("sampler", "cmaes"),), id="cmaes")]


@pytest.mark.parametrize("strategy,options", STRATEGIES)
def test_every_strategy_keeps_the_tuning_contract(strategy, options, target, tmp_path):
    runner, table = replay_runner(target)
    config = TuneConfig(**{**CONFIG.__dict__, "strategy": strategy, "strategy_options": options})
    space = space_for(W, target, SpaceOptions(1))
    with open_store(str(tmp_path / "t.db")) as store:
        r = tune(W, target, config, runner=runner, store=store)
        records, runs = list(store.iter()), store.runs()
    assert len(r.trials) == config.trials and r.n_ok == config.trials and r.searched
    assert all(space.is_legal(t.schedule) for t in r.trials)
    assert runner.searched == [t.schedule for t in r.trials] and len(set(runner.searched)) == config.trials
    # every trial recorded once, under this target
    assert sorted(rec.schedule.key() for rec in records) == sorted(t.schedule.key() for t in r.trials)
    assert all(rec.target == target for rec in records)
    # the run log
    assert len(runs) == 1 and runs[0].strategy == r.strategy == strategy
    assert [e.schedule_key for e in runs[0].trials] == [t.schedule.key() for t in r.trials]
    assert runs[0].best.times_s == tuple(r.best.times_s) and runs[0].reference.name == "numpy"
    # the A/B: through the runner once, the default and the finalists; best is its fastest
    (named, kw), = runner.ab_calls
    chosen = finalists(r.trials, [], config.top_k)
    assert list(named.values())[1:] == chosen and named["default"] == r.default.schedule
    assert kw == {"rounds": 2, "runs_per_round": 2, "threads": 1}
    assert r.best.schedule == min(chosen, key=lambda s: table[s].median_s)
    assert len(r.best.times_s) == 2 * 3 and r.best.median_s == table[r.best.schedule].median_s
    assert r.reference.name == "numpy" and r.reference.median_s == 5e-6 and r.notes == []
    assert runner.ab_batches == config.ab_rounds and runner.missed == 0
    assert json.loads(json.dumps(r.to_json()))["best"]["schedule"] == r.best.schedule.to_json()


def test_a_tuned_workload_is_answered_from_the_store_through_the_runners_ab(target, tmp_path):
    runner, _ = replay_runner(target)
    with open_store(str(tmp_path / "t.db")) as store:
        tune(W, target, CONFIG, runner=runner, store=store)
        again_runner, _ = replay_runner(target)
        again = tune(W, target, CONFIG, runner=again_runner, store=store)
        assert len(store.runs()) == 2 and len(store) == CONFIG.trials
    assert not again.searched and again_runner.searched == [] and len(again_runner.ab_calls) == 1
    assert again_runner.ab_batches == CONFIG.ab_rounds


def test_a_failing_ab_entry_is_a_note_not_a_crash(target):
    runner, _ = replay_runner(target)
    runner._reference = Measurement("runtime_error", "the library is missing")
    r = tune(W, target, TuneConfig(**{**CONFIG.__dict__, "strategy": "random"}), runner=runner)
    assert r.best is not None and r.reference.median_s == float("inf")
    assert any("reference failed: runtime_error" in n for n in r.notes)


def test_no_strategy_needs_the_jit():
    """The loop, the spaces, every strategy and the replay's A/B import no compiler."""
    code = ("import sys; from tilewise.core.target import detect; "
            "from tests.tuner.test_strategy_contract import W, CONFIG, available, replay_runner, tune; "
            "t = detect(); "
            "[tune(W, t, CONFIG.__class__(**{**CONFIG.__dict__, 'strategy': s}), runner=replay_runner(t)[0]) "
            "for s in available()]; "
            "print('tilewise.ir.compiler' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_workload_too_big_for_memory_is_refused_before_any_search(target):
    from tilewise.profiling.memory import BuffersTooLarge
    runner, _ = replay_runner(target)
    with pytest.raises(BuffersTooLarge, match="needs .* of buffers"):
        tune(Workload.parse("matmul:99999999x99999x9999:f32"), target, CONFIG, runner=runner)
    assert runner.searched == [] and runner.ab_calls == []
