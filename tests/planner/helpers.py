"""Hand-built models and clusters the planner tests cost by hand."""
from tilewise.planner.cluster import Cluster
from tilewise.planner.model import Layer, ModelSpec, Op


def cpu(dev_id: str, node: str = "n0", memory: float = 1e9) -> dict:
    return {"id": dev_id, "node": node, "kind": "cpu", "memory_bytes": memory, "peak_flops": 1e10,
            "memory_bandwidth_bytes_per_s": 1e10}


def cluster(n: int = 2, bw: float = 1e9, lat: float = 1e-4, memory: float = 1e9, backend: str = "gloo") -> Cluster:
    ids = [f"d{i}" for i in range(n)]
    links = [{"a": a, "b": b, "bandwidth_bytes_per_s": bw, "latency_s": lat}
             for i, a in enumerate(ids) for b in ids[i + 1:]]
    return Cluster.from_json({"schema_version": 1, "name": "hand", "backend": backend,
                              "devices": [cpu(i, memory=memory) for i in ids], "links": links})


def hand_model() -> ModelSpec:
    """embedding, two blocks, head; every figure a round number the tests multiply out by hand."""
    block = Layer("block", ops=(Op("linear", "column", tokens=4, k=8, n=16), Op("linear", "row", tokens=4, k=16, n=8),
                                Op("pointwise", "none", bytes=1000)),
                  params_split=500, params_replicated=100, act_split_bytes=2000, act_replicated_bytes=1000,
                  out_bytes=500, tp_allreduces=2, temp_bytes=800)
    emb = Layer("embedding", ops=(Op("pointwise", bytes=400),), params_replicated=200, act_replicated_bytes=100,
                out_bytes=500, temp_bytes=300)
    head = Layer("head", ops=(Op("linear", "none", tokens=4, k=8, n=32),), params_replicated=300,
                 act_replicated_bytes=600, temp_bytes=1000)
    return ModelSpec("hand", layers=(emb, block, block, head), seq_len=4, hidden=8, heads=2)
