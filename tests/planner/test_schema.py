"""Cluster and model files: round trips, the version, the compact node form, missing links."""
import json

import pytest

from tilewise.planner import ClusterError, ModelError, load_cluster
from tilewise.planner.cluster import SCHEMA_VERSION, Cluster
from tilewise.planner.model import ModelSpec
from tests.planner.helpers import cluster, hand_model


def test_cluster_round_trip(tmp_path):
    c = cluster(3)
    path = tmp_path / "c.json"
    c.save(path)
    d = json.loads(path.read_text())
    assert d["schema_version"] == SCHEMA_VERSION == 1
    back = load_cluster(path)
    assert back.devices == c.devices and back.links == c.links and back.to_json() == d


def test_compact_nodes_and_scopes():
    d = {"schema_version": 1, "name": "dgx", "nodes": [{"name": "dgx", "count": 3, "devices_per_node": 8,
                                                         "device": {"kind": "a100", "memory_bytes": 8e10,
                                                                    "peak_flops": 3.12e14,
                                                                    "memory_bandwidth_bytes_per_s": 2e12}}],
         "links": [{"scope": "intra_node", "bandwidth_bytes_per_s": 3e11, "latency_s": 3e-6},
                   {"scope": "inter_node", "bandwidth_bytes_per_s": 2.5e10, "latency_s": 6e-6},
                   {"a": "dgx0/0", "b": "dgx2/7", "bandwidth_bytes_per_s": 1e9, "latency_s": 1e-5, "measured": True}]}
    c = Cluster.from_json(d)
    assert c.size == 24 and c.devices[9].id == "dgx1/1" and c.devices[9].compute_source == "roofline"
    assert c.link("dgx0/0", "dgx0/5").bandwidth_bytes_per_s == 3e11
    assert c.link("dgx0/0", "dgx1/5").bandwidth_bytes_per_s == 2.5e10
    assert c.link("dgx2/7", "dgx0/0").bandwidth_bytes_per_s == 1e9          # a measured pair wins
    assert Cluster.from_json(c.to_json()).devices == c.devices


@pytest.mark.parametrize("edit,fragment", [
    (lambda d: d.update(schema_version=2), "schema_version 2"),
    (lambda d: d["links"].pop(), "no link between d1 and d2"),
    (lambda d: d["devices"][0].pop("memory_bytes"), "lacks memory_bytes"),
    (lambda d: d["links"][0].update(a="zz"), "does not have"),
    (lambda d: d["devices"][1].update(kind="h100", compute="probe"), "cannot use compute: probe"),
    (lambda d: d.update(backend="mpi"), "backend 'mpi'"),
])
def test_bad_cluster_files(edit, fragment):
    d = cluster(3).to_json()
    edit(d)
    with pytest.raises(ClusterError, match=fragment):
        Cluster.from_json(d)


def test_unreadable_cluster_files(tmp_path):
    with pytest.raises(ClusterError, match="no cluster file"):
        load_cluster(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ClusterError, match="not JSON"):
        load_cluster(tmp_path / "bad.json")


def test_model_spec_round_trip():
    m = hand_model()
    back = ModelSpec.from_json(json.loads(json.dumps(m.to_json())))
    assert back.layers == m.layers and back.params == m.params == 1700
    with pytest.raises(ModelError, match="schema_version"):
        ModelSpec.from_json(dict(m.to_json(), schema_version=9))
