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


def test_train_transfer_to_a_held_out_cpu_few_shot():
    """--db embedded:all pools the shipped CPUs; --split target holds one out (--few-shot: n of its
    records join training)."""
    from tilewise.datasets.embedded import SHIPPED_DATASETS, embedded_records
    sizes = [sum(1 for _ in embedded_records(p)) for p in SHIPPED_DATASETS]
    r = run("train", "--db", "embedded:all", "--model", "gbm", "--split", "target",
            "--test-target", "e40681bc", "--few-shot", "32", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["split"]["test_targets"] == ["e40681bc2f80"] and rep["split"]["few_shot"] == 32
    held = sizes[SHIPPED_DATASETS.index(next(p for p in SHIPPED_DATASETS if "zen4" in p.name))]
    assert rep["n_test_records"] == held - 32 and rep["n_train_records"] == sum(sizes) - held + 32
    r = run("train", "--few-shot", "3")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "--split target" in r.stderr
