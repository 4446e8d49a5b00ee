"""Damaged, foreign and mismatched model files are refused with one clear line, never parsed.

(XGBoost, handed a truncated UBJ buffer, allocates until the machine runs out of memory: the
checksums must stop a damaged payload before any native loader sees it.)
"""
import json
import zipfile

import pytest

from tilewise.costmodel import ModelFileError, create, load_model
from tilewise.costmodel.sklearn_models import HistGradientBoostingModel, RandomForestModel, load_estimator
from tilewise.costmodel.xgb import XGBModel

from .conftest import TOY, synthetic_records


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One small saved model of each kind."""
    rs = synthetic_records(per_workload=6)
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for name, kw in {"xgb": {"n_estimators": 10, "members": 2}, "rf": {"n_estimators": 5},
                     "mlp": {"epochs": 3, "members": 2}, "roofline": {}}.items():
        paths[name] = root / f"{name}.twcm"
        create(name, features=TOY, **kw).fit(rs).save(paths[name])
    return paths


def rewrite(src, dst, header=None, entries=None, drop=()):
    """Copy a model archive, changing the header (a function of it) or entries (name -> bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if info.filename == "header.json" and header is not None:
                data = json.dumps(header(json.loads(data))).encode()
            elif entries and info.filename in entries:
                data = entries[info.filename]
            zout.writestr(info.filename, data)
    return dst


def refused(path, match, **kw):
    with pytest.raises(ModelFileError, match=match) as e:
        load_model(path, **kw)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("name", ["xgb", "rf", "mlp"])
def test_flipped_bytes_are_refused(saved, name, tmp_path):
    data = bytearray(saved[name].read_bytes())
    for offset in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        bad = data.copy()
        bad[offset] ^= 0xFF
        path = tmp_path / f"bad{offset}.twcm"
        path.write_bytes(bytes(bad))
        refused(path, "damaged|not a tilewise")


@pytest.mark.parametrize("name", ["xgb", "rf", "mlp"])
def test_truncated_files_are_refused(saved, name, tmp_path):
    data = saved[name].read_bytes()
    for keep in (0, 10, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{keep}.twcm"
        path.write_bytes(data[:keep])
        refused(path, "not a tilewise cost-model file, or it is damaged")


def test_a_payload_that_does_not_match_its_checksum_is_refused(saved, tmp_path):
    booster = zipfile.ZipFile(saved["xgb"]).read("main.ubj")
    path = rewrite(saved["xgb"], tmp_path / "swapped.twcm", entries={"main.ubj": booster[: len(booster) // 2]})
    refused(path, "payload 'main.ubj' does not match its checksum")
    path = rewrite(saved["xgb"], tmp_path / "missing.twcm", drop=("main.ubj",))
    refused(path, "payload 'main.ubj' is missing")


def test_foreign_files_are_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    refused(tmp_path / "notes.txt", "not a tilewise cost-model file")
    (tmp_path / "model.json").write_text(json.dumps({"learner": {}, "version": [3, 0, 0]}))
    refused(tmp_path / "model.json", "not a tilewise cost-model file")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("data.csv", "a,b\n1,2\n")
    refused(tmp_path / "other.zip", "has no header.json")
    with zipfile.ZipFile(tmp_path / "other2.zip", "w") as zf:
        zf.writestr("header.json", json.dumps({"format": "someone-else", "schema_version": 1}))
    refused(tmp_path / "other2.zip", "not a tilewise cost-model file")
    refused(tmp_path / "absent.twcm", "no cost-model file at")
    refused(tmp_path, "is a directory")


def test_another_schema_version_is_refused(saved, tmp_path):
    path = rewrite(saved["rf"], tmp_path / "v2.twcm", header=lambda h: dict(h, schema_version=2))
    refused(path, "schema version 2 is not supported")


def test_other_features_are_refused(saved, tmp_path):
    def renamed(h):
        return dict(h, feature_names=h["feature_names"][:-1] + ["log2_cache_bytes"])
    msg = refused(rewrite(saved["xgb"], tmp_path / "f.twcm", header=renamed), "retrain the model")
    assert "trained on features 'toy_test' with 7 columns" in msg and "column 6 was 'log2_cache_bytes'" in msg
    msg = refused(rewrite(saved["rf"], tmp_path / "g.twcm",
                          header=lambda h: dict(h, feature_names=h["feature_names"] + ["extra"])), "8 columns")
    refused(saved["rf"], "trained on features 'toy_test', not 'analytic'", features="analytic")
    refused(rewrite(saved["mlp"], tmp_path / "h.twcm", header=lambda h: dict(h, features="no_such_extractor")),
            "cannot rebuild the 'mlp' model: unknown feature extractor")


def test_another_kind_or_an_unknown_kind_is_refused(saved, tmp_path):
    with pytest.raises(ModelFileError, match="holds a 'rf' cost model, not 'xgb'"):
        XGBModel.load(saved["rf"])
    assert RandomForestModel.load(saved["rf"]).name == "rf"
    with pytest.raises(ModelFileError, match="not 'gbm'"):
        HistGradientBoostingModel.load(saved["roofline"])
    refused(rewrite(saved["rf"], tmp_path / "k.twcm", header=lambda h: dict(h, model="svm")),
            "unknown cost model kind 'svm'")


def test_skops_payloads_may_hold_only_tree_types():
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer
    with pytest.raises(ModelFileError, match="types this tilewise does not trust: builtins.eval"):
        load_estimator(sio.dumps(FunctionTransformer(eval)), "x.skops")
    with pytest.raises(ModelFileError, match="not a readable skops file"):
        load_estimator(b"PK not really", "x.skops")


def test_a_saved_file_is_a_zip_with_a_readable_header(saved):
    with zipfile.ZipFile(saved["xgb"]) as zf:
        header = json.loads(zf.read("header.json"))
    assert header["format"] == "tilewise-costmodel" and header["schema_version"] == 1
    assert header["model"] == "xgb" and header["features"] == TOY and header["target"] == "log(median_s)"
    assert set(header["payloads"]) == {"main.ubj", "member0.ubj", "member1.ubj", "train_data.safetensors"}
