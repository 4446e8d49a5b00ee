"""Collective formulas, the 1F1B critical path on a hand example, roofline op costs, a step's sum."""
import pytest

from tilewise.planner import Estimator, Plan
from tilewise.planner import collectives as C
from tilewise.planner.cluster import Cluster, Device
from tilewise.planner.model import Op
from tilewise.planner.opcost import RooflineCosts, shard
from tilewise.planner.pipeline import closed_form, order, simulate
from tests.planner.helpers import cluster, cpu, hand_model


def _ring4(backend="nccl"):
    ids = ["a", "b", "c", "d"]
    links = [{"a": x, "b": y, "bandwidth_bytes_per_s": 1e9, "latency_s": 1e-5} for i, x in enumerate(ids)
             for y in ids[i + 1:]]
    links[-1] = {"a": "c", "b": "d", "bandwidth_bytes_per_s": 2.5e8, "latency_s": 4e-5}     # one slow hop
    return Cluster.from_json({"schema_version": 1, "name": "ring", "backend": backend,
                              "devices": [cpu(i) for i in ids], "links": links})


def test_ring_collectives_run_at_the_slowest_hop():
    c, S = _ring4(), 1e8
    assert C.ring(c, ["a", "b", "c", "d"]) == (2.5e8, 4e-5)
    assert C.all_reduce_s(c, ["a", "b", "c", "d"], S) == pytest.approx(2 * 3 / 4 * S / 2.5e8 + 2 * 3 * 4e-5)
    assert C.all_gather_s(c, ["a", "b", "c", "d"], S) == pytest.approx(3 / 4 * S / 2.5e8 + 3 * 4e-5)
    assert C.reduce_scatter_s(c, ["a", "b", "c", "d"], S) == C.all_gather_s(c, ["a", "b", "c", "d"], S)
    assert C.all_reduce_s(c, ["a", "b"], S) == pytest.approx(S / 1e9 + 2 * 1e-5)    # the fast pair alone
    assert C.all_reduce_s(c, ["a"], S) == 0.0
    assert C.p2p_s(c, "a", "b", S) == pytest.approx(S / 1e9 + 1e-5)


def test_gloo_has_no_reduce_scatter_and_p2p_figures():
    c = _ring4("gloo")
    assert C.reduce_scatter_s(c, ["a", "b"], 1e6) == C.all_reduce_s(c, ["a", "b"], 1e6)
    d = Cluster.from_json({"schema_version": 1, "name": "x", "devices": [cpu("a"), cpu("b")],
                           "links": [{"a": "a", "b": "b", "bandwidth_bytes_per_s": 1e9, "latency_s": 1e-4,
                                      "p2p_bandwidth_bytes_per_s": 2e9, "p2p_latency_s": 3e-4}]})
    assert C.p2p_s(d, "a", "b", 2e6) == pytest.approx(2e6 / 2e9 + 3e-4)
    assert C.all_reduce_s(d, ["a", "b"], 2e6) == pytest.approx(2e6 / 1e9 + 2e-4)


def test_1f1b_order():
    assert order(0, 2, 3) == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)]
    assert order(1, 2, 3) == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]
    assert order(0, 4, 2) == [("F", 0), ("F", 1), ("B", 0), ("B", 1)]


def test_1f1b_critical_path_by_hand():
    # stage 0: F0 0-1, F1 1-2; stage 1: F0 1.5-2.5, B0 2.5-4.5, F1 4.5-5.5, B1 5.5-7.5;
    # stage 0: B0 5-7, F2 7-8, B1 8-10; stage 1: F2 8.5-9.5, B2 9.5-11.5; stage 0: B2 12-14
    assert simulate([1, 1], [2, 2], [0.5], 3) == [14.0, 11.5]
    assert simulate([1, 1], [2, 2], [0.0], 4)[0] == (4 + 2 - 1) * 3       # balanced: (m + p - 1)(F + B)
    assert simulate([2], [3], [], 4) == [20.0]
    # an unbalanced pipeline runs at its slowest stage once full
    assert simulate([1, 3], [2, 6], [0.0], 8)[0] == pytest.approx(1 + 8 * 9 + 2)


def test_roofline_op_times_and_shard():
    dev = Device("g", "n", "a100", memory_bytes=8e10, peak_flops=1e12, memory_bandwidth_bytes_per_s=1e11,
                 gemm_efficiency=0.5)
    r = RooflineCosts(dev)
    op = Op("linear", "column", tokens=1024, k=1024, n=4096)
    f, b = r.op_times(op, 2, 2)
    assert f == pytest.approx(2 * 2048 * 1024 * 4096 / 5e11) and b == 2 * f
    assert shard(op, 4).n == 1024 and shard(Op("linear", "row", tokens=8, k=64, n=8), 4).k == 16
    assert shard(Op("attention", "heads", tokens=8, k=4, batch=8), 2).batch == 4
    assert r.op_times(Op("pointwise", bytes=1e6), 3, 2) == pytest.approx((3e6 / 1e11, 6e6 / 1e11))


class _FixedCosts(RooflineCosts):
    """1 ms forward and 2 ms backward per GEMM, 1 ms an optimizer step, pointwise free."""
    def __init__(self):
        pass

    def op_times(self, op, b, dtype_bytes):
        return (1e-3 * b, 2e-3 * b) if op.kind == "linear" else (0.0, 0.0)

    def optimizer_s(self, params):
        return 1e-3


def test_step_time_adds_up():
    m, c = hand_model(), cluster(2, bw=1e6, lat=1e-4)
    est = Estimator(m, c, _FixedCosts())
    dp = est.evaluate(Plan(2, 1, 1, 1, 2))
    compute = 2 * (5 * 1e-3 + 5 * 2e-3)                   # 2 micro-batches x 5 GEMMs (emb has none)
    grads = 4 * 1700
    assert dp.step_s == pytest.approx(compute + grads / 1e6 + 2e-4 + 1e-3)
    assert dp.dominant == "compute"
    tp = est.evaluate(Plan(1, 2, 1, 2, 1))
    ar = 2 * 500 / 1e6 + 2e-4                               # a block's output all-reduced, micro-batch 2
    assert tp.breakdown["tp_comm"] == pytest.approx(2 * 2 * 2 * ar)   # 2 blocks x 2 fwd + 2 bwd
    pp = est.evaluate(Plan(1, 1, 2, 1, 2))
    hop = 500 / 1e6 + 1e-4
    f0, b0, f1, b1 = 2e-3, 4e-3, 3e-3, 6e-3
    assert pp.step_s == pytest.approx(simulate([f0, f1], [b0, b1], [hop], 2)[0] + 1e-3)


def test_closed_form_matches_the_simulation():
    assert closed_form([1, 1, 1], [2, 2, 2], [0, 0], 8) == simulate([1, 1, 1], [2, 2, 2], [0, 0], 8)[0]
    f, b, hop = [1.0, 1.2, 0.9, 1.5], [2.0, 2.4, 1.8, 3.0], [0.1, 0.1, 0.1]
    sim, closed = simulate(f, b, hop, 16)[0], closed_form(f, b, hop, 16)
    assert abs(closed - sim) <= max(x + y for x, y in zip(f, b))


def test_tilewise_source_costs_gemms_from_the_store_then_the_cost_model(tmp_path):
    """``compute: tilewise``: a GEMM with a verified record in the store costs that record's median;
    one without costs the cost model's best prediction (positive, finite); the backward adds the
    data- and weight-gradient GEMMs; a GPU device cannot use it."""
    import math

    import pytest
    from tilewise.core.measurement import Measurement
    from tilewise.core.record import Record
    from tilewise.core.schedule import Schedule
    from tilewise.core.target import detect
    from tilewise.core.workload import Workload
    from tilewise.datasets.base import open_store
    from tilewise.planner.cluster import ClusterError, Device
    from tilewise.planner.model import Op
    from tilewise.planner.opcost import TilewiseCosts, costs_for
    db = str(tmp_path / "records.db")
    w = Workload.parse("matmul:8x16x32:f32")
    store = open_store(db)
    store.append([Record(w, detect(), Schedule(threads=1), Measurement("ok", times_s=(2e-3, 2e-3, 2e-3), rel_error=1e-7))])
    store.close()
    dev = Device(id="d0", node="n0", kind="cpu", memory_bytes=1e9, peak_flops=1e10,
                 memory_bandwidth_bytes_per_s=1e10, compute="tilewise")
    costs = TilewiseCosts(dev, db=db, samples=8)
    assert type(costs_for(dev)) is TilewiseCosts
    fwd, bwd = costs.op_times(Op("linear", tokens=8, k=32, n=16), 1, 4)
    assert fwd == pytest.approx(2e-3)
    assert math.isfinite(bwd) and bwd > 0
    f2, _ = costs.op_times(Op("linear", tokens=8, k=48, n=16), 1, 4)     # no record: the model's guess
    assert math.isfinite(f2) and f2 > 0
    with pytest.raises(ClusterError, match="tilewise"):
        from tests.planner.helpers import cpu
        from tilewise.planner.cluster import Cluster
        Cluster.from_json({"schema_version": 1, "name": "x", "devices": [
            {**cpu("g0"), "kind": "a100", "compute": "tilewise"}], "links": []})
