"""The profile report: run logs persisted by the store, the data gathered from it, Markdown, HTML,
the measured roofline and the ``tilewise report`` command.  No JIT except the one tuning test."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tilewise.datasets.base import open_store
from tilewise.datasets.runs import RunError, TuningRun
from tilewise.core.workload import Workload
from tilewise.frontends.report import ReportOptions, build, data, html, markdown, roofline
from tilewise.frontends.report.data import UNATTRIBUTED

from . import report_data as D

GOLDEN = Path(__file__).parents[1] / "datasets" / "golden"


@pytest.fixture(scope="module")
def built(tmp_path_factory, target):
    folder = tmp_path_factory.mktemp("report")
    D.fake_roofline(target, folder / "roofline")
    trace = folder / "trace.json"
    D.model_trace(target).save(trace)
    store = D.build_store(folder / "r.db", target)
    options = ReportOptions(roofline_cache=str(folder / "roofline"), model_trace=str(trace))
    with store:
        rep = build(store, options, target=target)
    return folder, rep


def _section(rep, local=True):
    return next(s for s in rep["targets"] if s["local"] == local)


def test_runs_round_trip_through_the_store(tmp_path, target):
    with D.build_store(tmp_path / "r.db", target) as store:
        runs = store.runs()
    assert [r.strategy for r in runs] == ["model", "random"]
    assert len(runs[0].trials) == 12 and runs[0].trials[3].status == "compile_error"
    assert TuningRun.loads(runs[1].dumps()) == runs[1]
    assert runs[1].config["prior_records"] == 12
    d = runs[1].to_json()
    with pytest.raises(RunError, match="^tuning run JSON lacks the field 'strategy'$"):
        TuningRun.from_json({k: v for k, v in d.items() if k != "strategy"})
    with pytest.raises(RunError, match="^tuning run: target schema version 3 is not supported"):
        TuningRun.from_json(dict(d, target=dict(d["target"], schema_version=3)))


def test_golden_store_without_run_table_still_opens(tmp_path):
    path = tmp_path / "store_v1.sqlite"
    shutil.copy(GOLDEN / "store_v1.sqlite", path)
    with open_store(path) as s:
        assert s.runs() == [] and len(s) == 7
        rep = data.gather(s.iter(), s.runs(), store=str(path))
    assert rep["n_records"] == 7 and rep["targets"][0]["workloads"]


def test_gathered_numbers(built, target):
    _, rep = built
    assert rep["n_runs"] == 2 and len(rep["targets"]) == 2
    local = _section(rep)
    assert local["key"] == target.key() and local["roofline"]["fma_gflops"]["1"] == 200.0
    rows = {r["workload"]: r for r in local["workloads"]}
    tuned = rows[D.TUNED]
    assert tuned["best"]["source"] == "ab" and tuned["strategies"] == ["model", "random"]
    assert tuned["speedup_vs_default"] == pytest.approx(1.8) and tuned["ratio_vs_reference"] == pytest.approx(1.25)
    assert rows[D.COLLECTED]["best"]["source"] == "record" and rows[D.COLLECTED]["reference"] is None
    w = Workload.parse(D.TUNED)
    assert tuned["bytes"] == 3 * 256 * 256 * 4 and tuned["intensity"] == pytest.approx(w.flops / tuned["bytes"])
    curves = [c for c in local["curves"] if c["workload"] == D.TUNED]
    assert [c["strategy"] for c in curves] == ["model", "random"]
    for c in curves:
        assert len(c["best_gflops"]) == 12 and c["trial_gflops"][3] is None if c["strategy"] == "model" else True
        vals = [v for v in c["best_gflops"] if v is not None]
        assert vals == sorted(vals) and vals[-1] == max(v for v in c["trial_gflops"] if v is not None)
    assert "warm start" in curves[1]["label"]
    assert [c["strategy"] for c in local["curves"] if c["workload"] == D.COLLECTED] == [UNATTRIBUTED]
    (prec,) = local["precision"]
    assert prec["workload"] == D.PRECISION and {s["precision"] for s in prec["summary"]} >= {"f32", "bf16"}
    front = [p for p in prec["points"] if p["pareto"]]
    assert front[0]["latency_s"] == min(p["latency_s"] for p in prec["points"])
    assert [p["rel_error"] for p in front] == sorted((p["rel_error"] for p in front), reverse=True)


def test_cost_model_section(built):
    _, rep = built
    cm = _section(rep)["cost_model"]
    assert cm["model"] == "xgb" and cm["n_records"] == 12 * 2 - 2 + 10 + 30
    assert set(cm["metrics"]) >= {"r2", "spearman", "top1", "top5"}
    assert all(-1 <= cm["metrics"][k] <= 1 for k in ("spearman", "top1", "top5"))
    assert len(cm["points"]) == cm["n_records"] and len(cm["importances"]) == 15
    assert abs(sum(v for _, v in cm["importances"])) <= 1.0 + 1e-9


def test_foreign_target_has_no_roofline(built):
    _, rep = built
    foreign = _section(rep, local=False)
    assert foreign["name"] == "Other Test CPU" and foreign["roofline"] is None and foreign["n_records"] == 6


def test_model_trace_section(built):
    _, rep = built
    mt = rep["model_trace"]
    assert mt["n_kernels"] == 2 and mt["n_eager"] == 2 and mt["n_untimed"] == 1
    assert mt["time_per_call_s"]["kernel"] == pytest.approx(3.2e-4)
    assert mt["tilewise_fraction"] == pytest.approx(3.2e-4 / 3.7e-4)


def test_markdown_has_the_key_numbers(built):
    _, rep = built
    md = markdown.render(rep)
    assert md.startswith("# tilewise profile report")
    assert "| matmul:256x256x256:f32 | 1 | 24 | model, random |" in md
    assert "1.80×" in md and "1.25×" in md                       # speedup vs default, vs numpy
    assert "| 1 | 200.0 | 100.0 | 20.0 | 80.0 | 10.00 |" in md    # roofline row: ridge 200/20
    assert "Cost model xgb" in md and "Spearman ρ" in md
    assert "| matmul:128x256x128:f32 | bf16 |" in md
    assert "graph0/group1 | eager | layer_norm" in md and "layer_norm has no tilewise op" in md
    assert "Other Test CPU" in md and "_No roofline" in md
    for line in md.splitlines():                                  # every table row is well formed
        if line.startswith("|"):
            assert line.endswith("|")


def test_html_is_self_contained_with_every_chart(built, tmp_path):
    _, rep = built
    path = html.write(rep, tmp_path / "report.html")
    text = Path(path).read_text()
    import re
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?:""", text)   # nothing fetched
    assert len(text) > 3_000_000 and "Plotly.newPlot" in text                        # plotly.js inlined
    assert text.count('class="plotly-graph-div"') == text.count("Plotly.newPlot")
    # local target: roofline + bars, 3 tuning curves, model scatter + importances, precision;
    # foreign target: bars, 1 curve, model scatter + importances; the model trace
    assert text.count('<div id="chart-') == 2 + 3 + 2 + 1 + 4 + 1
    for needle in ("Roofline (measured ceilings)", "Tuning curve", "matmul:256x256x256:f32", "Precision trade-off",
                   "TinyMLP", "Feature importances", "numpy (reference)", "1.80×"):
        assert needle in text, needle


def test_roofline_is_measured_and_cached(tmp_path, target):
    steps = []
    r = roofline.roofline(target, folder=str(tmp_path), on_step=steps.append)
    assert steps == ["FMA loop", "SGEMM", "memory bandwidth"]
    assert r.threads == sorted({1, target.cores})
    for t in r.threads:
        assert r.fma_gflops[t] > 1 and r.sgemm_gflops[t] > 1 and r.bandwidth_gbs[t] > 0.5
        assert r.cache_bandwidth_gbs[t] > 0.5
        assert r.peak_gflops(t) == r.fma_gflops[t]
    again = roofline.roofline(target, folder=str(tmp_path), on_step=steps.append)
    assert again == r and len(steps) == 3                       # cached: nothing measured


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tilewise.frontends.cli", *args], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture
def cli_env(built, monkeypatch):
    import os
    folder, _ = built
    # the CLI reads the roofline from the XDG cache: give it the fake one
    cache = folder / "xdg"
    if not (cache / "tilewise" / "roofline").exists():
        shutil.copytree(folder / "roofline", cache / "tilewise" / "roofline")
    return dict(os.environ, XDG_CACHE_HOME=str(cache))


def test_cli_report_markdown_json_and_html(built, cli_env, tmp_path):
    folder, _ = built
    db = str(folder / "r.db")
    md = _cli("report", "--db", db, "--format", "md", "--no-model", env=cli_env)
    assert md.returncode == 0, md.stderr
    assert "| matmul:256x256x256:f32 | 1 | 24 | model, random |" in md.stdout and "Cost model" not in md.stdout
    out = tmp_path / "r.html"
    js = _cli("report", "--db", db, "--out", str(out), "--json", "--model-trace", str(folder / "trace.json"),
              env=cli_env)
    assert js.returncode == 0, js.stderr
    payload = json.loads(js.stdout)
    assert payload["out"] == str(out) and out.stat().st_size > 1_000_000 and payload["model_trace"]["n_eager"] == 2
    plain = _cli("report", "--db", db, "--out", str(out), "--no-model", env=cli_env)
    assert plain.returncode == 0 and f"report: {out}" in plain.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--db", "/nonexistent/x.db"], "no record store at /nonexistent/x.db"),
    (["--format", "pdf"], "unknown --format 'pdf'"),
    (["--model-trace", "/nonexistent/t.json"], "no model trace at"),
    (["--model", "/nonexistent/m.twmodel"], "m.twmodel"),
])
def test_cli_report_errors_are_one_line(built, cli_env, args, fragment):
    folder, _ = built
    if "--db" not in args:
        args = ["--db", str(folder / "r.db"), *args]
    r = _cli("report", *args, env=cli_env)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], r.stderr


@pytest.mark.jit
def test_tune_logs_its_run(tmp_path, target):
    from tilewise.tuner.tune import TuneConfig, tune
    w = Workload.parse("matmul:32x32x32:f32")
    with open_store(tmp_path / "t.db") as store:
        result = tune(w, target, TuneConfig(trials=4, strategy="random", batch_size=2, repeats=3, min_time_s=0.0,
                                            ab_rounds=2, ab_runs_per_round=2), store=store)
        (run,) = store.runs()
        keys = store.keys(w, target)
    assert run.strategy == "random" and run.searched and run.workload == w
    assert [t.schedule_key for t in run.trials] == [t.schedule.key() for t in result.trials]
    assert {t.schedule_key for t in run.trials} <= keys
    assert run.best.median_s == result.best.median_s and run.default.median_s == result.default.median_s
    assert run.reference.name == result.reference.name and len(run.reference.times_s) == 4


def test_default_schedule_record_stands_in_for_a_run(tmp_path, target):
    from tilewise.core.record import Record
    from tilewise.datasets.sqlite_store import SQLiteStore
    w = Workload.parse(D.COLLECTED)
    default = w.kind.default_schedule(w, target)
    others = [s for s in D._samples(w, target, 6, seed=9) if s != default][:5]
    with SQLiteStore(tmp_path / "c.db") as store:
        store.append([Record(w, target, s, D._measure(w, s), D.T0 + i) for i, s in enumerate([default, *others])])
        rep = data.gather(store.iter(), store.runs(), local_target=target)
    (row,) = rep["targets"][0]["workloads"]
    assert row["default"]["schedule"] == default.to_json() and row["default"]["source"] == "record"
    assert row["speedup_vs_default"] == pytest.approx(row["default"]["latency_s"] / row["best"]["latency_s"])
    assert row["reference"] is None
