"""Plan enumeration: every plan uses all devices and divides what it splits; pins and their errors."""
import pytest

from tilewise.planner import Plan, PlanError, enumerate_plans, load_model
from tilewise.planner.space import check_plan, stage_layers


@pytest.fixture(scope="module")
def tiny():
    return load_model("gpt-cpu-tiny")          # 2 heads, 2 blocks, hidden 64, ffn 256


def test_every_plan_is_legal(tiny):
    plans = list(enumerate_plans(tiny, 4, 8))
    assert plans and len(set(plans)) == len(plans)
    for p in plans:
        assert p.devices == 4 and p.global_batch == 8
        assert p.tp in (1, 2) and p.pp in (1, 2)             # tp 4 would split 2 heads; pp 4 > 2 blocks
        assert p.zero == 0 or p.dp > 1
    assert {(p.dp, p.tp, p.pp) for p in plans} == {(4, 1, 1), (2, 2, 1), (2, 1, 2), (1, 2, 2)}
    # dp4: micro-batch 1 or 2; dp2: 1, 2 or 4; dp1: 1, 2, 4 or 8 -- x ZeRO x recompute
    assert len(plans) == 2 * 4 * 2 + 2 * (3 * 4 * 2) + 4 * 2


def test_pins_and_their_errors(tiny):
    assert {p.tp for p in enumerate_plans(tiny, 4, 8, tp=2)} == {2}
    assert {(p.micro_batch, p.dp) for p in enumerate_plans(tiny, 4, 8, dp=4, micro_batch=2)} == {(2, 4)}
    with pytest.raises(PlanError, match="global batch 3 is not divisible by 2 data-parallel ways"):
        list(enumerate_plans(tiny, 2, 3, dp=2))
    with pytest.raises(PlanError, match="--tp 3 does not divide"):
        list(enumerate_plans(tiny, 4, 8, tp=3))
    with pytest.raises(PlanError, match="not divisible by micro-batch 3"):
        list(enumerate_plans(tiny, 2, 8, dp=2, micro_batch=3))
    with pytest.raises(PlanError, match="tp 4 does not divide the attention heads"):
        list(enumerate_plans(tiny, 4, 8, tp=4))


def test_check_plan_and_stages(tiny):
    with pytest.raises(PlanError, match="zero 1"):
        check_plan(tiny, Plan(1, 2, 1, 8, 1, zero=1), 2)
    with pytest.raises(PlanError, match="2 blocks"):
        stage_layers(tiny, 3)
    assert [list(r) for r in stage_layers(tiny, 2)] == [[0, 1], [2, 3]]
    p = Plan(2, 2, 2, 1, 1)
    assert p.tp_group(1, 1) == [6, 7] and p.dp_group(1, 0) == [1, 3]
    assert Plan.from_json(p.to_json()) == p
