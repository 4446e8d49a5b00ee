"""The offline train/eval API and the CLI-facing commands, on a small SQLite store."""
import io
import json

import pytest
from rich.console import Console

from tilewise.costmodel.cli_commands import eval_command, train_command
from tilewise.costmodel.metrics import METRICS
from tilewise.costmodel.training import evaluate, train
from tilewise.datasets import open_store
from tilewise.datasets.base import StoreError

from .conftest import MATMULS, OTHER_TARGET, TOY, synthetic_records

DESIGN_KEYS = {"model", "features", "split", "n_train_workloads", "n_test_workloads", "metrics", "baseline"}


@pytest.fixture(scope="module")
def db(records, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "records.db"
    with open_store(path) as s:
        s.append(records)
    return str(path)


def test_train_reports_held_out_workloads_and_saves(db, tmp_path):
    out = tmp_path / "rf.twcm"
    rep = train(db, model="rf", features=TOY, out=out, params={"n_estimators": 20}, test_fraction=0.25)
    assert DESIGN_KEYS <= set(rep) and set(rep["metrics"]) == set(METRICS)
    assert rep["baseline"]["name"] == "roofline" and set(rep["baseline"]["metrics"]) == set(METRICS)
    assert rep["split"] == {"by": "workload", "test_fraction": 0.25, "seed": 0}
    assert (rep["n_train_workloads"], rep["n_test_workloads"]) == (8, 4)
    assert rep["model"] == "rf" and rep["features"] == TOY and out.exists()
    json.dumps(rep)                                          # the --json output
    again = evaluate(out, db)                                 # scores exactly the unseen workloads
    assert again["split"] == {"by": "unseen-workloads"}
    assert again["n_test_workloads"] == 4 and again["n_test_records"] == rep["n_test_records"]
    assert again["metrics"] == rep["metrics"]
    assert evaluate(out, db, include_seen=True)["n_test_workloads"] == 12


def test_commands_return_the_report_and_a_table(db, tmp_path):
    out = str(tmp_path / "roofline.twcm")
    rep, table = train_command(db, "roofline", out=out, features=TOY, seed=1)
    text = io.StringIO()
    Console(file=text, width=120).print(table)
    assert "Spearman" in text.getvalue() and "top-5 score" in text.getvalue()
    rep2, table2 = eval_command(out, db)
    assert rep2["model"] == "roofline" and rep2["n_test_workloads"] == 12      # roofline saw nothing
    rep3, _ = train_command(db, "xgb", features=TOY, params={"n_estimators": 10, "members": 0})
    assert rep3["out"] is None and rep3["metrics"]["top5"] > 0.5


def test_split_by_target(tmp_path):
    path = tmp_path / "two.db"
    with open_store(path) as s:
        s.append(synthetic_records(MATMULS[:4], per_workload=8)
                 + synthetic_records(MATMULS[:4], per_workload=8, target=OTHER_TARGET, seed=1))
    rep, _ = train_command(str(path), "rf", features=TOY, split="target", test_targets=[OTHER_TARGET.name],
                           params={"n_estimators": 10})
    assert rep["split"]["by"] == "target" and rep["n_test_records"] == 32


def test_user_errors_are_value_errors_with_one_line(tmp_path, db):
    with pytest.raises(StoreError, match="no record store at"):
        train(tmp_path / "absent.db", model="rf", features=TOY)
    with pytest.raises(ValueError, match="unknown cost model"):
        train(db, model="svm", features=TOY)
    with pytest.raises(ValueError, match="unknown split"):
        train_command(db, "rf", features=TOY, split="shape")
