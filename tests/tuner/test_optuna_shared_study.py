"""Several workers running one optuna study through a shared storage (SQLite file, PostgreSQL)."""
import numpy as np
import optuna
import pytest

from tilewise.ir import Workload
from tilewise.core.schedule import Schedule
from tilewise.tuner.base import create
from tilewise.tuner.optuna_search import default_study_name, storage_url
from tilewise.tuner.space import SpaceOptions, space_for

from .test_optuna_search import ok, synthetic_latency, tiny_space


def make_storage(kind, request, tmp_path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    return make_storage(request.param, request, tmp_path)


@pytest.mark.parametrize("name,kind", [("optuna", "sqlite"), ("optuna", "postgresql"), ("nsga2", "postgresql")])
def test_two_workers_exhaust_a_space_together(name, kind, request, tmp_path):
    storage = make_storage(kind, request, tmp_path)
    space = tiny_space()                      # 18 legal schedules
    a = create(name, space, seed=1, storage=storage, study_name="shared")
    b = create(name, space, seed=2, storage=storage, study_name="shared")
    rng = np.random.default_rng(0)
    proposed = {a: [], b: []}
    for _ in range(6):
        batches = {w: w.propose(3) for w in (a, b)}         # both ask before either tells
        for w, batch in batches.items():
            w.observe(batch, [ok(1e-3 * (1 + rng.random())) for _ in batch])
            proposed[w] += batch
    together = proposed[a] + proposed[b]
    assert len(together) == len(set(together)) == 18 and set(together) == set(space)
    assert proposed[a] and proposed[b]
    assert a.propose(3) == [] and b.propose(3) == []
    study = optuna.load_study(study_name="shared", storage=storage_url(storage))
    told = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            if space.is_legal(a.encoding.decode(t.params))]
    assert len({tuple(sorted(t.params.items())) for t in told}) == 18


def test_a_worker_learns_the_others_results(storage, target):
    space = space_for(Workload.parse("matmul:256x256x256:f32"), target, SpaceOptions(2, ()))
    latency = synthetic_latency(space)
    rng = np.random.default_rng(0)
    a = create("optuna", space, seed=1, storage=storage, study_name="learn")
    batch = a.propose(4)
    measured = {s: latency(s, rng) for s in batch}
    a.observe(batch, [ok(measured[s]) for s in batch])
    b = create("optuna", space, seed=2, storage=storage, study_name="learn")
    mine = b.propose(4)
    assert not set(mine) & set(batch)              # never re-proposes what A measured
    assert set(b.seen) >= set(batch)
    for s in batch:                                # and holds A's values (what TPE learns from)
        assert b._told[s] == pytest.approx([np.log(measured[s])])
    study = optuna.load_study(study_name="learn", storage=storage_url(storage))
    assert len(study.get_trials(states=(optuna.trial.TrialState.RUNNING,))) == 4   # B's, in flight


def test_warm_start_is_added_once_to_a_shared_study(tmp_path):
    space, storage = tiny_space(), f"sqlite:///{tmp_path / 'study.db'}"
    known = list(space)[:5]
    results = [ok(1e-3 * (i + 1)) for i in range(5)]

    def completed():
        study = optuna.load_study(study_name="warm", storage=storage)
        return [Schedule(space_encoding.decode(t.params))
                for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]
    first = create("optuna", space, seed=1, storage=storage, study_name="warm")
    space_encoding = first.encoding
    first.warm_start(known, results)
    first._ensure_study(2)
    assert sorted(s.key() for s in completed()) == sorted(s.key() for s in known)
    second = create("optuna", space, seed=2, storage=storage, study_name="warm")
    second.warm_start(known, results)
    second._ensure_study(2)                   # opens the study and flushes its warm start: no new trial
    assert len(completed()) == 5
    assert not set(second.propose(4)) & set(known)


def test_storage_options(target):
    space = tiny_space()
    assert storage_url("postgresql://u@h:5/db") == "postgresql+psycopg://u@h:5/db"
    assert storage_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert storage_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="not a database URL"):
        create("optuna", space, storage="study.db")
    with pytest.raises(ValueError, match="give storage too"):
        create("optuna", space, study_name="x")
    w = Workload.parse("relu:64x512:f32")
    name = default_study_name("optuna", space, w, target)
    assert name.startswith("tilewise-optuna-") and name == default_study_name("optuna", space, w, target)
    assert name != default_study_name("optuna", space, Workload.parse("relu:64x256:f32"), target)
