"""The ``model`` strategy on fabricated measurements: nothing is compiled or timed.

The search-efficiency test times schedules with a synthetic oracle: the roofline model's latency
(register tile, vector width, threads) times a hidden smooth factor of the knobs the roofline
ignores (cache tile, loop order, packing, unroll) -- the part a tuner is for.  The strategy runs
with a fresh xgb model, so it starts from the roofline (which knows the oracle's first factor:
the same head start the real roofline gives it on a CPU) and must learn the hidden factor from
what it measures.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import zipfile

import numpy as np
import pytest

from tilewise.costmodel import ModelFileError, create as create_model
from tilewise.costmodel.embedded import EMBEDDED_MODEL
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.core.measurement import Measurement
from tilewise.tuner.base import create
from tilewise.costmodel.selection import embedded_model_fits, embedded_training_targets
from tilewise.tuner.model_search import ModelGuidedSearch, ModelSearchConfig
from tilewise.tuner.space import SpaceOptions, space_for

MATMUL = Workload.parse("matmul:256x256x512:f32")
FAST = dict(population=96, generations=2)        # search settings for tests that check bookkeeping
SMALL_XGB = dict(n_estimators=40, members=2, update_rounds=10)


@pytest.fixture(scope="module")
def space(target):
    return space_for(MATMUL, target, SpaceOptions(2, ()))


def hidden_factor(s: Schedule) -> float:
    m, n, k = 256, 256, 512
    mc, nc, kc = (d or full for d, full in zip(s["tile"], (m, n, k)))
    f = (0.35 * abs(math.log2(mc / 64)) + 0.5 * abs(math.log2(nc / 128)) + 0.4 * abs(math.log2(kc / 256))
         + 0.3 * (s["interchange"] != (0, 1, 2)) + 0.25 * (not s["promote"]) + 0.1 * (s["unroll"] == 1)
         + 0.1 * (s["parallel_dim"] == "m"))
    return math.exp(f)


class Oracle:
    """Synthetic "true" latency of a matmul schedule (module docstring)."""

    def __init__(self, target):
        self.target, self.roofline = target, create_model("roofline")

    def latency(self, schedules) -> np.ndarray:
        base = self.roofline.predict([Candidate(MATMUL, s) for s in schedules], self.target)
        return base * np.array([hidden_factor(s) for s in schedules])

    def measure(self, schedules, fail_every: int = 0) -> list[Measurement]:
        out = []
        for s, t in zip(schedules, self.latency(schedules)):
            if fail_every and int(s.key()[:8], 16) % fail_every == 0:
                out.append(Measurement("compile_error", "synthetic failure"))
            else:
                out.append(Measurement("ok", "", (t * 0.99, t, t * 1.02), 1e-7, 0.1))
        return out


def run(strategy, oracle, rounds: int, batch: int = 8, fail_every: int = 0) -> list[Schedule]:
    proposed = []
    for _ in range(rounds):
        b = strategy.propose(batch)
        strategy.observe(b, oracle.measure(b, fail_every))
        proposed += b
    return proposed


def test_needs_the_workload_and_the_target(space, target):
    with pytest.raises(ValueError, match="needs the workload and the target"):
        create("model", space, seed=0, target=target)
    with pytest.raises(ValueError, match="needs the workload and the target"):
        create("model", space, seed=0, workload=MATMUL)
    with pytest.raises(ValueError, match="eps_greedy"):
        create("model", space, workload=MATMUL, target=target, model=create_model("roofline"), eps_greedy=2)


def test_options_build_the_config_once(space, target):
    roofline = create_model("roofline")
    strategy = create("model", space, workload=MATMUL, target=target, model=roofline, failure_penalty=3.0, **FAST)
    assert strategy.config == ModelSearchConfig(population=96, generations=2, failure_penalty=3.0)
    given = ModelSearchConfig(population=64, min_distance=1)
    assert create("model", space, workload=MATMUL, target=target, model=roofline, config=given).config is given
    on_top = create("model", space, workload=MATMUL, target=target, model=roofline, config=given, generations=1)
    assert on_top.config == dataclasses.replace(given, generations=1)


def test_legal_and_never_repeated_after_warm_start_and_failures(space, target):
    oracle = Oracle(target)
    rng = np.random.default_rng(1)
    prior = []
    while len(prior) < 12:
        s = space.sample(rng)
        if s not in prior:
            prior.append(s)
    outside = prior[0].replace(threads=64)                      # another thread cap: learning only
    strategy = create("model", space, seed=3, workload=MATMUL, target=target,
                      model=create_model("xgb", **SMALL_XGB), **FAST)
    strategy.warm_start(prior + [outside], oracle.measure(prior + [outside], fail_every=3))
    assert len(strategy.records) == 13
    proposed = run(strategy, oracle, rounds=10, fail_every=4)
    assert len(proposed) == 80
    assert len(set(proposed)) == 80 and not set(proposed) & set(prior + [outside])
    for s in proposed:
        assert space.is_legal(s)
        MATMUL.kind.validate(MATMUL, s)
    assert strategy.ranker is strategy.model                   # fitted once it had enough ok results


def test_exhausts_a_tiny_space(fixed_target):
    w = Workload.parse("softmax:4x16:f32")
    tiny = space_for(w, fixed_target, SpaceOptions(2, ()))
    everything = set(tiny)
    strategy = create("model", tiny, seed=0, workload=w, target=fixed_target, model=create_model("roofline"), **FAST)
    proposed = []
    for _ in range(6):
        b = strategy.propose(5)
        strategy.observe(b, [Measurement("ok", "", (1e-5,))] * len(b))
        proposed += b
    assert len(proposed) == len(set(proposed)) == len(everything) == 12
    assert set(proposed) == everything
    assert strategy.propose(5) == []


def test_same_seed_same_proposals(space, target):
    oracle = Oracle(target)

    def proposals(seed):
        s = create("model", space, seed=seed, workload=MATMUL, target=target,
                   model=create_model("xgb", **SMALL_XGB), **FAST)
        return run(s, oracle, rounds=3)
    first = proposals(5)
    assert proposals(5) == first
    assert proposals(6) != first


def _measurements_to_reach(latencies, threshold) -> int:
    hits = np.nonzero(np.minimum.accumulate(latencies) <= threshold)[0]
    return int(hits[0]) + 1 if len(hits) else len(latencies) + 1


def test_finds_a_near_best_schedule_in_fewer_measurements_than_random(space, target):
    oracle = Oracle(target)
    rng = np.random.default_rng(123)
    threshold = np.quantile(oracle.latency([space.sample(rng) for _ in range(3000)]), 0.005)  # top 0.5%
    budget, counts = 48, {"model": [], "random": []}
    for seed in range(3):
        for name in counts:
            extra = dict(model=create_model("xgb", **SMALL_XGB), population=160, generations=3) \
                if name == "model" else {}
            strategy = create(name, space, seed=seed, workload=MATMUL, target=target, **extra)
            lat = oracle.latency(run(strategy, oracle, rounds=budget // 8))
            counts[name].append(_measurements_to_reach(lat, threshold))
    assert max(counts["model"]) <= budget, counts             # model gets there every time
    assert np.mean(counts["model"]) < np.mean(counts["random"]), counts


def test_online_update_changes_predictions(space, target):
    oracle = Oracle(target)
    rng = np.random.default_rng(0)
    probe = [Candidate(MATMUL, space.sample(rng)) for _ in range(50)]
    first = [space.sample(rng) for _ in range(12)]
    model = create_model("xgb", **SMALL_XGB)
    strategy = create("model", space, seed=0, workload=MATMUL, target=target, model=model, **FAST)
    assert strategy.model_source == "instance:xgb" and strategy.ranker.name == "roofline"
    strategy.observe(first, oracle.measure(first))
    assert strategy.ranker is model
    before = model.predict(probe, target)
    run(strategy, oracle, rounds=1)
    assert not np.allclose(model.predict(probe, target), before)


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_default_model_is_a_private_copy_of_the_embedded_one_or_a_fresh_xgb(space, target):
    fits, reason = embedded_model_fits(target)
    strategy = create("model", space, seed=0, workload=MATMUL, target=target, **FAST)
    if fits:
        assert strategy.model_source == "embedded" and strategy.ranker is strategy.model
    else:
        assert strategy.model_source.startswith("roofline→xgb (embedded model trained on")
    assert reason in strategy.model_reason
    sha = _sha(EMBEDDED_MODEL)
    rng = np.random.default_rng(0)
    probe = [space.sample(rng) for _ in range(20)]
    before = strategy.predict_with_uncertainty(probe)[0]
    run(strategy, Oracle(target), rounds=1)
    assert not np.allclose(strategy.predict_with_uncertainty(probe)[0], before)   # learnt online
    assert _sha(EMBEDDED_MODEL) == sha


def test_model_from_a_file_and_a_file_with_other_features_is_refused(space, target, tmp_path):
    oracle = Oracle(target)
    rng = np.random.default_rng(0)
    train = [space.sample(rng) for _ in range(16)]
    from tilewise.core.record import Record
    model = create_model("xgb", **SMALL_XGB).fit(
        [Record(MATMUL, target, s, m) for s, m in zip(train, oracle.measure(train))])
    path = tmp_path / "m.twcm"
    model.save(path)
    sha = _sha(path)
    strategy = create("model", space, seed=0, workload=MATMUL, target=target, model=str(path), **FAST)
    assert strategy.model_source == f"file:{path}"
    run(strategy, oracle, rounds=1)
    assert _sha(path) == sha                                    # online updates stay in memory

    other = tmp_path / "other.twcm"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(other, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "header.json":
                header = json.loads(data)
                header["feature_names"] = header["feature_names"][:-1]
                data = json.dumps(header).encode()
            zout.writestr(info.filename, data)
    with pytest.raises(ModelFileError, match="trained on features 'analytic' with .* columns, but this"):
        create("model", space, workload=MATMUL, target=target, model=other)
    with pytest.raises(TypeError, match="model must be"):
        create("model", space, workload=MATMUL, target=target, model=3)


def test_a_foreign_target_starts_from_the_roofline(target):
    home = embedded_training_targets()[0]
    foreign = dataclasses.replace(home, name="Other CPU", isa=("avx", "avx2", "fma", "sse4_2"), simd_bits=256)
    sp = space_for(MATMUL, foreign, SpaceOptions(2, ()))
    strategy = ModelGuidedSearch(sp, seed=0, workload=MATMUL, target=foreign, config=ModelSearchConfig(**FAST))
    assert strategy.model_source == (f"roofline→xgb (embedded model trained on {home.name} (x86_64, avx512, "
                                     f"512-bit SIMD), this is Other CPU (x86_64, avx2+fma, 256-bit SIMD))")
    assert strategy.ranker.name == "roofline" and not strategy.model.fitted
    oracle = Oracle(foreign)
    run(strategy, oracle, rounds=1)
    assert strategy.ranker.name == "xgb" and strategy.model.fitted


def test_failures_are_remembered_and_their_neighbours_penalised(space, target):
    strategy = create("model", space, seed=0, workload=MATMUL, target=target, model=create_model("roofline"),
                      failure_penalty=4.0, **FAST)
    failed = strategy.propose(1)[0]
    strategy.observe([failed], [Measurement("compile_error", "synthetic failure")])
    assert strategy.records[0].measurement.status == "compile_error"
    enc = strategy.enc
    g = enc.encode(failed)
    near = next(h for h in (g[:i] + (j,) + g[i + 1:] for i in enc.mutable for j in enc.neighbours[i][g[i]])
                if enc.legal(h))
    rng = np.random.default_rng(1)
    far = next(h for h in (enc.encode(space.sample(rng)) for _ in range(100)) if sum(a != b for a, b in zip(h, g)) > 1)
    assert list(strategy._failure_factor([g, near, far])) == [4.0, 4.0, 1.0]
    assert failed not in run(strategy, Oracle(target), rounds=4)


def test_session_correction_learns_what_the_pretrained_model_gets_wrong(space, target):
    """A pretrained model that misses a systematic effect of this workload (the hidden factor) is
    corrected by the session model: after a few batches the search's predictions rank unseen
    schedules closer to the truth than the pretrained model alone."""
    from scipy.stats import spearmanr
    oracle = Oracle(target)
    rng = np.random.default_rng(5)
    pretrained = create_model("roofline")
    strategy = create("model", space, seed=0, workload=MATMUL, target=target,
                      model=create_model("xgb", **SMALL_XGB).fit(
                          [__import__("tilewise.core.record", fromlist=["Record"]).Record(MATMUL, target, s, m)
                           for s, m in zip(*(lambda ss: (ss, [Measurement("ok", "", (t,) * 3, 1e-7, 0.1) for t in
                                                               pretrained.predict([Candidate(MATMUL, s) for s in ss], target)]))(
                               [space.sample(rng) for _ in range(64)]))]), **FAST)
    assert strategy._pretrained
    probe = []
    while len(probe) < 200:
        s = space.sample(rng)
        if s not in probe:
            probe.append(s)
    truth = oracle.latency(probe)
    before = spearmanr(strategy.predict_with_uncertainty(probe)[0], truth)[0]
    base_before = strategy.model.predict([Candidate(MATMUL, s) for s in probe], target)
    measured = run(strategy, oracle, rounds=4)
    after = spearmanr(strategy.predict_with_uncertainty(probe)[0], truth)[0]
    assert after > before, (before, after)
    # where it measured, the session model has learnt the hidden factor the pretrained one misses
    err = lambda pred: float(np.mean(np.abs(np.log(pred / oracle.latency(measured)))))
    corrected = err(strategy.predict_with_uncertainty(measured)[0])
    pretrained_only = err(strategy.model.predict([Candidate(MATMUL, s) for s in measured], target))
    assert corrected < 0.5 * pretrained_only, (corrected, pretrained_only)
    assert np.allclose(strategy.model.predict([Candidate(MATMUL, s) for s in probe], target), base_before)
