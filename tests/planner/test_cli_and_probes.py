"""``tilewise plan`` end to end: bad input (one error line, exit 2), a plan table from a hand
cluster, the op probe's cache, and a real two-process gloo run of ``--measure-links``."""
import json
import subprocess
import sys

import pytest

from tilewise.planner import Cluster, load_model, plan
from tilewise.planner.cluster import Device
from tilewise.planner.model import Op
from tilewise.planner.opcost import ProbeCosts
from tests.planner.helpers import cluster

CLI = [sys.executable, "-m", "tilewise.frontends.cli", "plan"]


def run(*args):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=300)


def one_error_line(r, fragment):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], r.stderr


@pytest.fixture
def hand_cluster(tmp_path):
    def write(**kw):
        path = tmp_path / f"c{len(list(tmp_path.iterdir()))}.json"
        cluster(**kw).save(path)
        return path
    return write


def test_missing_link(tmp_path, hand_cluster):
    d = json.loads(hand_cluster(n=3).read_text())
    d["links"] = d["links"][:2]
    (tmp_path / "missing.json").write_text(json.dumps(d))
    one_error_line(run("gpt-cpu-tiny", "--cluster", tmp_path / "missing.json"), "no link between d1 and d2")


def test_model_that_fits_no_plan(hand_cluster):
    one_error_line(run("gpt-cpu-tiny", "--cluster", hand_cluster(memory=2e5), "-b", "4"),
                   "no plan of gpt-cpu-tiny fits")


def test_batch_not_divisible(hand_cluster):
    one_error_line(run("gpt-cpu-tiny", "--cluster", hand_cluster(), "-b", "3", "--dp", "2"),
                   "global batch 3 is not divisible by 2 data-parallel ways")


def test_other_bad_input(hand_cluster, tmp_path):
    one_error_line(run("nope", "--cluster", hand_cluster()), "MODEL 'nope'")
    one_error_line(run("gpt-cpu-tiny"), "--cluster CLUSTER.json is required")
    one_error_line(run("--measure-links"), "needs --out")


def test_api_ranks_fitting_plans_first(tmp_path):
    """Roofline devices (no probing): the best plan is first, memory-rejected plans are counted."""
    d = cluster(2, memory=2.2e6).to_json()
    for dev in d["devices"]:
        dev["compute"] = "roofline"
    r = plan(load_model("gpt-cpu-tiny"), Cluster.from_json(d), 8, top_k=50)
    steps = [e.step_s for e in r.top]
    assert steps == sorted(steps) and r.rejected > 0 and all(e.fits for e in r.top)
    assert all(e.memory_bytes <= 2.2e6 for e in r.top)
    assert r.considered == len(r.all) and r.to_json()["plans"][0]["dominant"] in r.top[0].breakdown


def test_probe_times_ops_here_and_caches(tmp_path):
    dev = Device("d", "n", "cpu", memory_bytes=1e9, peak_flops=1e10, memory_bandwidth_bytes_per_s=1e10)
    path = tmp_path / "probe.json"
    probe = ProbeCosts(dev, cache=str(path), repeats=3)
    f, b = probe.op_times(Op("linear", "column", tokens=16, k=32, n=32), 2, 4)
    assert 0 < f < 1 and 0 < b < 1
    probe.save()
    again = ProbeCosts(dev, cache=str(path))
    assert again.op_times(Op("linear", "column", tokens=16, k=32, n=32), 2, 4) == (f, b)   # from the file
    assert json.loads(path.read_text())["schema_version"] == 1


def test_measure_links_two_gloo_ranks(tmp_path):
    """A real two-process gloo run with tiny messages: a loadable cluster with one measured link."""
    from tilewise.planner.linkprobe import measure_links
    d = measure_links(2, sizes=(1 << 10, 1 << 14), repeats=2, timeout_s=120)
    c = Cluster.from_json(d)
    assert c.size == 2 and c.backend == "gloo" and len(c.links) == 1 and c.links[0].measured
    ln = c.links[0]
    assert ln.bandwidth_bytes_per_s > 0 and ln.p2p[0] > 0 and ln.latency_s >= 0
    assert [x["bytes"] for x in d["collectives"]] == [1 << 10, 1 << 14]
    assert all(x["measured_s"] > 0 and x["ring_model_s"] > 0 for x in d["collectives"])


def test_cli_plan_table(hand_cluster):
    r = run("gpt-cpu-tiny", "--cluster", hand_cluster(), "-b", "4", "--top", "2", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["global_batch"] == 4 and len(d["plans"]) == 2 and d["plans"][0]["step_s"] <= d["plans"][1]["step_s"]
