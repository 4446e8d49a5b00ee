import numpy as np
import pytest

from tilewise.ir import Workload
from tilewise.tuner.base import create
from tilewise.tuner.space import SpaceOptions, space_for


@pytest.mark.parametrize("text", ["matmul:512x512x512:f32", "matmul:37x45x29:i8", "batch_matmul:3x19x40x23:bf16",
                                  "matmul:384x1000x768:f32"])
def test_space_never_proposes_an_illegal_schedule(text, target):
    w = Workload.parse(text)
    space = space_for(w, target, SpaceOptions(max_threads=2))
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = space.sample(rng)
        w.kind.validate(w, s)
        assert s["threads"] <= 2


def test_precisions_only_with_an_error_budget(target):
    w = Workload.parse("matmul:64x64x64:f32")
    assert space_for(w, target).knobs["precision"] == ["f32"]
    assert space_for(w, target, SpaceOptions(precisions=("bf16", "f16"))).knobs["precision"] == ["f32", "bf16", "f16"]


def test_register_budget_respected(target):
    w = Workload.parse("matmul:512x512x512:f32")
    space = space_for(w, target)
    lanes = target.simd_lanes()
    for s in list(space)[:2000]:
        mr, nr = s["reg_tile"]
        assert mr * max(1, nr // lanes) <= target.vector_registers - 2


def test_random_strategy_never_repeats(target):
    w = Workload.parse("matmul:64x64x64:f32")
    strategy = create("random", space_for(w, target), seed=1)
    seen = []
    for _ in range(5):
        batch = strategy.propose(8)
        strategy.observe(batch, [None] * len(batch))
        seen += batch
    assert len(seen) == len(set(seen)) == 40
