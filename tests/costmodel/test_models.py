"""The CostModel contract, run over every registered model (small hyperparameters: seconds)."""
import numpy as np
import pytest

from tilewise.costmodel import CostModel, available_models, create, load_model
from tilewise.costmodel.data import usable_records
from tilewise.costmodel.split import by_workload
from tilewise.costmodel.training import score
from tilewise.core.candidate import Candidate

from .conftest import MATMULS, TARGET, TOY, TOY_BOUND, synthetic_records

SMALL = {"xgb": {"n_estimators": 30, "members": 2}, "rf": {"n_estimators": 20}, "gbm": {"max_iter": 30},
         "mlp": {"epochs": 30, "members": 2}, "roofline": {}}
LEARNED = ["xgb", "rf", "gbm", "mlp"]


def candidates(records):
    return [Candidate(r.workload, r.schedule) for r in records]


def test_every_model_is_covered():
    assert set(available_models()) == set(SMALL)


@pytest.fixture(scope="module")
def split(records):
    return by_workload(records, test_fraction=0.25, seed=0)


@pytest.fixture(scope="module", params=sorted(SMALL))
def fitted(request, split):
    return create(request.param, features=TOY, **SMALL[request.param]).fit(split.train)


def test_predict_is_seconds_per_candidate(fitted, split):
    pred = fitted.predict(candidates(split.test), TARGET)
    assert pred.shape == (len(split.test),) and pred.dtype == np.float64
    assert np.all(np.isfinite(pred)) and np.all(pred > 0)
    true = np.array([r.measurement.median_s for r in usable_records(split.test)])
    assert 1e-3 < np.median(pred) / np.median(true) < 1e3      # the level, roughly


def test_uncertainty_is_a_log_space_std(fitted, split):
    cands = candidates(split.test)
    mean, std = fitted.predict_with_uncertainty(cands, TARGET)
    np.testing.assert_array_equal(mean, fitted.predict(cands, TARGET))
    assert std.shape == mean.shape and np.all(std >= 0)
    if fitted.name != "roofline":
        assert np.any(std > 0) and np.median(std) < 3.0


def test_save_load_round_trip(fitted, split, tmp_path):
    path = tmp_path / f"{fitted.name}.twcm"
    fitted.save(path)
    loaded = load_model(path)
    assert type(loaded) is type(fitted) and loaded.params == fitted.params
    assert loaded.features == fitted.features and loaded.trained_on == fitted.trained_on
    cands = candidates(split.test)
    np.testing.assert_array_equal(loaded.predict(cands, TARGET), fitted.predict(cands, TARGET))
    for a, b in zip(loaded.predict_with_uncertainty(cands, TARGET), fitted.predict_with_uncertainty(cands, TARGET)):
        np.testing.assert_array_equal(a, b)
    assert type(fitted).load(path).name == fitted.name and CostModel.load(path).name == fitted.name


@pytest.mark.parametrize("name", LEARNED)
def test_update_learns_online_and_after_load(name, split, tmp_path):
    model = create(name, features=TOY, **SMALL[name]).fit(split.train)
    cands = candidates(split.test)
    before = model.predict(cands, TARGET)
    model.save(tmp_path / "m.twcm")
    model.update(split.test)
    after = model.predict(cands, TARGET)
    assert not np.array_equal(before, after) and np.all(np.isfinite(after))
    assert set(model.trained_on["workloads"]) == split.train_workloads | split.test_workloads
    loaded = load_model(tmp_path / "m.twcm").update(split.test)     # retained rows travel with the file
    assert np.all(np.isfinite(loaded.predict(cands, TARGET)))


def test_only_ok_records_train(records):
    ok = usable_records(records)
    assert len(ok) < len(records)
    a = create("xgb", features=TOY, **SMALL["xgb"]).fit(records)
    b = create("xgb", features=TOY, **SMALL["xgb"]).fit(ok)
    cands = candidates(records[:20])
    np.testing.assert_array_equal(a.predict(cands, TARGET), b.predict(cands, TARGET))
    assert a.trained_on["n_records"] == len(ok)
    failed = [r for r in records if r.measurement.status != "ok"]
    with pytest.raises(ValueError, match="no record with status 'ok'"):
        create("rf", features=TOY).fit(failed)


def test_learned_models_rank_held_out_workloads(split):
    got = score(create("xgb", features=TOY, **SMALL["xgb"]).fit(split.train), split.test)
    assert got["spearman"] > 0.4 and got["top5"] > 0.9


@pytest.mark.parametrize("features", [TOY, TOY_BOUND])
def test_xgb_rank_objective_round_trips(features, split, tmp_path):
    model = create("xgb", features=features, margin_feature="log10_bound_s", objective="rank", n_estimators=30,
                   rank_rounds=20, members=2)
    model.fit(split.train)
    model.save(tmp_path / "rank.twcm")
    cands = candidates(split.test)
    np.testing.assert_array_equal(load_model(tmp_path / "rank.twcm").predict(cands, TARGET),
                                  model.predict(cands, TARGET))
    assert score(model, split.test)["spearman"] > 0.3


def test_feature_importances_name_features(split):
    imp = create("xgb", features=TOY, **SMALL["xgb"]).fit(split.train).feature_importances()
    assert set(imp) <= set(create("xgb", features=TOY).feature_names)
    assert sum(imp.values()) == pytest.approx(1.0)


def test_bad_parameters_and_names_are_refused():
    with pytest.raises(ValueError, match="has no parameter 'depth'"):
        create("xgb", features=TOY, depth=3)
    with pytest.raises(ValueError, match="unknown cost model 'svm'"):
        create("svm")
    with pytest.raises(ValueError, match="objective"):
        create("xgb", features=TOY, objective="poisson")
    with pytest.raises(ValueError, match="roofline"):
        create("roofline", freq=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        create("rf", features=TOY).predict(candidates(synthetic_records(per_workload=1)[:1]), TARGET)


@pytest.mark.parametrize("name", ["rf", "xgb"])
def test_a_margin_feature_lets_trees_extrapolate_to_larger_shapes(name, tmp_path):
    small = synthetic_records(MATMULS[:3], per_workload=24)
    big = synthetic_records(["matmul:1024x1024x512:f32"], per_workload=8, seed=5)
    true = np.array([r.measurement.median_s for r in big])
    err = {}
    for margin in (None, "log10_bound_s"):
        m = create(name, features=TOY_BOUND, margin_feature=margin, **SMALL[name]).fit(small)
        err[margin] = float(np.median(np.abs(np.log(m.predict(candidates(big), TARGET) / true))))
    assert err["log10_bound_s"] < 0.2 < err[None]
    m.save(tmp_path / "m.twcm")
    np.testing.assert_array_equal(load_model(tmp_path / "m.twcm").predict(candidates(big), TARGET),
                                  m.predict(candidates(big), TARGET))
