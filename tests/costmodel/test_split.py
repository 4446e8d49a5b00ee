import random

import pytest

from tilewise.costmodel.data import workload_name
from tilewise.costmodel.split import by_target, by_workload, split_records

from .conftest import ELEMENTWISE, MATMULS, OTHER_TARGET, synthetic_records


def test_no_workload_on_both_sides_and_every_family_on_both(records):
    s = by_workload(records, test_fraction=0.25, seed=0)
    assert s.train_workloads.isdisjoint(s.test_workloads)
    assert len(s.train) + len(s.test) == len(records)
    assert {r.workload.op for r in s.test} == {r.workload.op for r in s.train} == {"matmul", "relu", "add"}
    # round(0.25 * 8) matmuls, round(0.25 * 2) -> at least one relu and one add
    assert len(s.test_workloads) == 4


def test_deterministic_and_independent_of_record_order(records):
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    assert by_workload(records, seed=3).test_workloads == by_workload(shuffled, seed=3).test_workloads
    assert len({frozenset(by_workload(records, seed=s).test_workloads) for s in range(5)}) > 1


def test_one_workload_per_family_still_holds_some_out():
    rs = synthetic_records([MATMULS[0], ELEMENTWISE[0], ELEMENTWISE[2]], per_workload=2)
    s = by_workload(rs, test_fraction=0.3)
    assert len(s.test_workloads) == 1 and len(s.train_workloads) == 2


def test_split_by_target():
    rs = synthetic_records(MATMULS[:3], per_workload=4) + synthetic_records(MATMULS[:3], per_workload=4,
                                                                              target=OTHER_TARGET)
    s = by_target(rs, test_targets=[OTHER_TARGET.name])
    assert {r.target for r in s.test} == {OTHER_TARGET} and OTHER_TARGET not in {r.target for r in s.train}
    assert len(split_records(rs, "target", seed=1).test) == 12
    with pytest.raises(ValueError, match="at least two targets"):
        by_target(rs[:12])
    with pytest.raises(ValueError, match="unknown split"):
        split_records(rs, "shape")
    with pytest.raises(ValueError, match="test_fraction"):
        by_workload(rs, test_fraction=1.0)


def test_workload_identity_is_the_canonical_string(records):
    assert workload_name(records[0]) == "matmul:64x64x64:f32"


def test_split_by_target_few_shot_moves_that_many_held_out_records_to_training():
    rs = synthetic_records(MATMULS[:3], per_workload=4) + synthetic_records(MATMULS[:3], per_workload=4,
                                                                              target=OTHER_TARGET)
    s = by_target(rs, test_targets=[OTHER_TARGET.name], few_shot=5, seed=3)
    assert len(s.test) == 7 and len(s.train) == 17 and s.describe()["few_shot"] == 5
    shots = [r for r in s.train if r.target == OTHER_TARGET]
    assert len(shots) == 5 and not {id(r) for r in shots} & {id(r) for r in s.test}
    assert [r.schedule_key for r in shots] == [r.schedule_key for r in
                                               by_target(rs, test_targets=[OTHER_TARGET.name], few_shot=5,
                                                         seed=3).train if r.target == OTHER_TARGET]
    assert "few_shot" not in by_target(rs, test_targets=[OTHER_TARGET.name]).describe()
    with pytest.raises(ValueError, match="leave none"):
        by_target(rs, test_targets=[OTHER_TARGET.name], few_shot=12)
    with pytest.raises(ValueError, match="few_shot must be"):
        by_target(rs, test_targets=[OTHER_TARGET.name], few_shot=-1)
