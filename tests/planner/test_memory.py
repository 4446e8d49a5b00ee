"""The memory estimator against numbers multiplied out by hand, and the tracer's parameter and
activation accounting of a tiny GPT against counts from its definition."""
from tilewise.planner import Plan, load_model
from tilewise.planner.memory import stage_memory
from tilewise.planner.space import stage_layers
from tests.planner.helpers import hand_model


def test_dp_tp_plan_by_hand():
    m = hand_model()
    plan = Plan(dp=2, tp=2, pp=1, micro_batch=2, micro_batches=1)
    est = stage_memory(m, plan, stage_layers(m, 1)[0], 0)
    P = 200 + 2 * (500 / 2 + 100) + 300                       # 1200 parameters on a TP rank
    assert est.weights_bytes == 4 * P and est.grads_bytes == 4 * P and est.optimizer_bytes == 8 * P
    assert est.activations_bytes == 2 * (100 + 2 * (2000 / 2 + 1000) + 600)
    assert est.workspace_bytes == 2 * 2 * max(300, 800 / 2, 1000)
    assert est.total_bytes == 4 * P + 4 * P + 8 * P + 9400 + 4000


def test_zero_stages_shard_over_dp():
    m = hand_model()
    layers = stage_layers(m, 1)[0]
    P = 200 + 2 * 600 + 300
    z = {k: stage_memory(m, Plan(2, 1, 1, 1, 1, zero=k), layers, 0) for k in range(4)}
    assert z[1].optimizer_bytes == 8 * P / 2 and z[1].grads_bytes == 4 * P
    assert z[2].grads_bytes == 4 * P / 2 and z[2].weights_bytes == 4 * P
    assert z[3].weights_bytes == 4 * P / 2 + 4 * 600           # plus the biggest layer gathered


def test_pipeline_in_flight_and_recompute():
    m = hand_model()
    plan = Plan(1, 1, 2, micro_batch=1, micro_batches=4)
    stages = stage_layers(m, 2)
    assert [list(s) for s in stages] == [[0, 1], [2, 3]]
    first = stage_memory(m, plan, stages[0], 0)
    last = stage_memory(m, plan, stages[1], 1)
    assert first.activations_bytes == 2 * (100 + 3000)      # 1F1B: stage 0 of 2 holds 2 micro-batches
    assert last.activations_bytes == 1 * (3000 + 600)
    rc = stage_memory(m, Plan(1, 1, 2, 1, 4, recompute=True), stages[0], 0)
    assert rc.activations_bytes == 2 * 500 + 3000            # block inputs kept, one block recomputed


def test_mixed_precision_is_16_bytes_per_parameter():
    m = hand_model()
    m = type(m)(**{**m.__dict__, "dtype_bytes": 2})
    est = stage_memory(m, Plan(1, 1, 1, 1, 1), range(4), 0)
    P = 1700
    assert (est.weights_bytes, est.grads_bytes, est.optimizer_bytes) == (2 * P, 2 * P, 12 * P)


def test_traced_tiny_gpt_counts():
    """gpt-cpu-tiny: hidden 64, 2 blocks, ffn 256, vocabulary 512, sequence 32, f32."""
    spec = load_model("gpt-cpu-tiny")
    h, s, v, f = 64, 32, 512, 256
    emb, b0, b1, head = spec.layers
    assert emb.params == v * h + s * h and head.params == 2 * h + h * v
    # column GEMMs (qkv, fc1) split weight and bias, row GEMMs (proj, fc2) their weight
    assert b0.params_split == (h * 3 * h + 3 * h) + h * h + (h * f + f) + f * h
    # replicated: two LayerNorms' weight and bias, and the row GEMMs' biases (added after the all-reduce)
    assert b0.params_replicated == 4 * h + 2 * h
    # replicated saved tensors: the two LayerNorms' inputs, their outputs (the column GEMMs' inputs),
    # and their per-row mean and rstd
    assert b0.act_replicated_bytes == 4 * s * h * 4 + 2 * 2 * s * 4
    assert b0.out_bytes == s * h * 4 and b0.tp_allreduces == 2
    gemms = [(op.split, op.tokens, op.k, op.n) for op in b0.ops if op.kind == "linear"]
    assert gemms == [("column", s, h, 3 * h), ("row", s, h, h), ("column", s, h, f), ("row", s, f, h)]
    assert [op.batch for op in b0.ops if op.kind == "attention"] == [2]
    assert b0.to_json() == b1.to_json() | {"name": "block0"}
    assert spec.params == 167680
