import subprocess
import sys

import numpy as np
import pytest

from tilewise.core.schedule import Schedule
from tilewise.ir import Workload
from tilewise.tuner.base import create
from tilewise.tuner.space import MAX_ENUMERATED, Space, SpaceOptions, space_for


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


def _tiny():
    return Space({"a": [1, 2, 3], "b": [True, False], "c": [(1, 2), (2, 2), (1, 4), (2, 4)]},
                 lambda s: not (s["a"] == 3 and s["c"][1] == 4) and not (s["a"] == 1 and s["c"] == (1, 2)))


def test_knob_kinds_and_levels(target):
    space = space_for(Workload.parse("matmul:256x256x256:f32"), target, SpaceOptions(max_threads=2))
    kinds = {k: space.knob_kind(k) for k in space.knobs}
    assert kinds == {"tile": "product", "interchange": "category", "promote": "category", "reg_tile": "product",
                     "vectorize": "category", "unroll": "number", "threads": "number",
                     "parallel_dim": "category", "precision": "category"}
    assert space.knob_levels("unroll") == [[1, 2]]
    assert [len(c) for c in space.knob_levels("tile")] == [len({t[j] for t in space.knobs["tile"]}) for j in range(3)]
    # not a full product of its components, and tuples of other lengths: categories
    odd = Space({"p": [(1, 2), (2, 1)], "q": [(1,), (1, 2)], "r": [1, True], "s": [0.5, 2]})
    assert [odd.knob_kind(k) for k in odd.knobs] == ["category", "category", "category", "number"]


def test_legal_points_only_for_small_spaces(target):
    tiny = _tiny()
    assert tiny.legal_points() == list(tiny) and len(tiny.legal_points()) == 18
    big = space_for(Workload.parse("matmul:512x512x512:f32"), target)
    assert big.raw_size > MAX_ENUMERATED and big.legal_points() is None


def test_repair_is_a_legal_local_move():
    tiny = _tiny()
    rng = np.random.default_rng(0)
    legal = {"a": 2, "b": True, "c": (1, 2)}
    assert tiny.repair(legal, rng) == Schedule(legal)
    state = rng.bit_generator.state
    assert tiny.repair(legal, rng) is not None and rng.bit_generator.state == state   # no draw spent
    for _ in range(20):
        s = tiny.repair({"a": 3, "b": False, "c": (2, 4)}, rng)
        assert s is not None and tiny.is_legal(s)
    unseen = tiny.repair(legal, rng, accept=lambda s: s != Schedule(legal))
    assert unseen is not None and unseen != Schedule(legal) and tiny.is_legal(unseen)
    assert tiny.repair(legal, rng, accept=lambda s: False) is None
    impossible = Space({"a": [1, 2]}, lambda s: False)
    assert impossible.repair({"a": 1}, rng) is None


def test_random_strategy_imports_neither_optuna_nor_xgboost():
    code = ("import sys; from tilewise.tuner.base import create; from tilewise.tuner.space import Space; "
            "s = create('random', Space({'a': [1, 2]}), seed=0); assert len(s.propose(2)) == 2; "
            "print(sorted(m for m in ('optuna', 'xgboost') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
