import json
import subprocess
import sys

CLI = [sys.executable, "-m", "tilewise.frontends.cli"]


def run(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=600)


def test_eval_embedded_model_json_contract():
    r = run("eval", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("model", "features", "split", "n_train_workloads", "n_test_workloads", "metrics", "baseline"):
        assert key in d
    assert set(d["metrics"]) >= {"r2", "mape", "spearman", "kendall", "pairwise", "top1", "top5"}
    assert d["baseline"]["name"] == "roofline" and d["n_test_workloads"] > 0
    assert d["metrics"]["spearman"] > d["baseline"]["metrics"]["spearman"]


def test_train_on_a_collected_store(tmp_path):
    out = tmp_path / "m.twmodel"
    r = run("train", "--model", "gbm", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_test_workloads"] > 0 and out.exists()
    again = run("eval", "--model", str(out), "--json")
    assert again.returncode == 0, again.stderr


def test_bad_model_files_and_names(tmp_path):
    bogus = tmp_path / "bogus.twmodel"
    bogus.write_text("not a model")
    r = run("eval", "--model", str(bogus))
    assert r.returncode == 2 and r.stderr.startswith("error:")
    r = run("train", "--model", "nope")
    assert r.returncode == 2 and "nope" in r.stderr
    r = run("train", "--db", str(tmp_path / "missing.db"))
    assert r.returncode == 2 and "no record store" in r.stderr
