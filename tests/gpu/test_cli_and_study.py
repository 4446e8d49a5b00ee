"""--target cuda in the CLI, and the GPU study script's dry run."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tilewise.costmodel.base import create as create_model
from tilewise.datasets.base import open_store
from tilewise.core.record import Record
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.cuda_target import cuda_problem
from tilewise.core.measurement import Measurement
from tilewise.tuner.space import SpaceOptions, space_for

CLI = [sys.executable, "-m", "tilewise.frontends.cli"]
STUDY = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "gpu_study.py")
NO_GPU = pytest.mark.skipif(cuda_problem() is None, reason="a GPU is visible")


def run(*args, timeout=300):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@NO_GPU
@pytest.mark.parametrize("args", [
    ["tune", "matmul:64x64x64:f32", "--target", "cuda"],
    ["collect", "--workloads", "matmul:64x64x64:f32", "--target", "cuda", "--db", "unused.db"],
])
def test_target_cuda_without_a_gpu_is_one_line_exit_2(args, tmp_path):
    r = subprocess.run(CLI + args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: no CUDA device visible to torch: ")
    assert "run on a machine with an NVIDIA GPU or drop --target cuda" in lines[0]
    assert not (tmp_path / "unused.db").exists()


def test_unknown_target_kind():
    r = run(*CLI, "tune", "matmul:64x64x64:f32", "--target", "tpu")
    assert r.returncode == 2 and "--target 'tpu': use cpu or cuda" in r.stderr


def _synthetic_gpu_store(path, target):
    """GPU records whose latencies are the GPU roofline times a per-schedule factor (a stand-in
    for measurements: this tests the training path, not the model's accuracy)."""
    rng = np.random.default_rng(0)
    roof = create_model("roofline")
    records = []
    for text in ("matmul:512x512x512:f32", "matmul:1024x256x512:f32", "matmul:256x1024x1024:f32",
                 "matmul:2048x512x256:f32", "batch_matmul:8x256x256x64:f32"):
        w = Workload.parse(text)
        space = space_for(w, target, SpaceOptions(1, ("lower",)))
        scheds = list({space.sample(rng) for _ in range(40)})
        base = roof.predict([Candidate(w, s) for s in scheds], target)
        for s, t in zip(scheds, base):
            times = tuple(float(t * f) for f in rng.lognormal(0.3, 0.2, 5))
            records.append(Record(w, target, s, Measurement("ok", "", times, 1e-3)))
    with open_store(str(path)) as store:
        store.append(records)
    return records


def test_train_target_cuda_uses_gpu_records_without_a_gpu(tmp_path, sm90):
    db = tmp_path / "gpu.db"
    _synthetic_gpu_store(db, sm90)
    out = tmp_path / "gpu.twmodel"
    r = run(*CLI, "train", "--db", str(db), "--target", "cuda", "--model", "xgb", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["features"] == "gpu_analytic" and rep["n_test_workloads"] >= 1
    assert np.isfinite(rep["metrics"]["spearman"]) and out.exists()
    assert rep["baseline"]["name"] == "roofline"
    cpu_only = tmp_path / "cpu.db"
    with open_store(str(cpu_only)):
        pass
    r = run(*CLI, "train", "--db", str(cpu_only), "--target", "cuda")
    assert r.returncode == 2 and "no record measured on a cuda target" in r.stderr


@NO_GPU
def test_study_without_a_gpu_says_so(tmp_path):
    r = run(sys.executable, STUDY, "--out", str(tmp_path / "s"))
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "no CUDA device visible to torch" in lines[0]
    assert "--dry-run" in lines[0]


def test_study_dry_run_runs_every_stage(tmp_path):
    out = tmp_path / "study"
    r = run(sys.executable, STUDY, "--dry-run", "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "study.json").read_text())
    assert result["dry_run"] and result["target"]["kind"] == "cuda"
    assert result["n_records"] >= 40 and result["by_status"].get("ok", 0) >= 30
    for name in ("xgb", "rf"):
        assert set(result["model"][name]["metrics"]) >= {"r2", "mape", "spearman", "top1"}
    assert result["model"]["gpperf"]["r2"] == 0.98
    (tuned,) = result["tuning"]
    assert tuned["model_measurements"] <= tuned["exhaustive_measurements"] and 0 < tuned["fraction_of_best"] <= 1
    assert result["vs_torch"] and all(row["torch_status"] == "ok" for row in result["vs_torch"])
    with gzip.open(out / "records.jsonl.gz", "rt") as fh:
        back = [Record.loads(line) for line in fh]
    assert len(back) == result["n_records"] and all(b.target.kind == "cuda" for b in back)
    assert "GPPerf" in (out / "report.md").read_text()


def test_report_on_gpu_records(tmp_path, sm90):
    from tilewise.frontends.report import ReportOptions, build
    db = tmp_path / "gpu.db"
    records = _synthetic_gpu_store(db, sm90)
    model = create_model("xgb", features="gpu_analytic").fit(records[:120])
    model.save(tmp_path / "gpu.twmodel")
    with open_store(str(db)) as store:
        plain = build(store, ReportOptions(roofline=False))          # the embedded CPU model: no section
        scored = build(store, ReportOptions(roofline=False, model_path=str(tmp_path / "gpu.twmodel")))
    (section,) = plain["targets"]
    assert section["cost_model"] is None and plain["n_records"] == len(records)
    assert {row["workload"] for row in section["workloads"]} >= {"matmul:512x512x512:f32"}
    quality = scored["targets"][0]["cost_model"]
    assert quality["features"] == "gpu_analytic" and quality["n_records"] == len(records)
