import pytest

from tests.ir.checks import check_random_schedules
from tilewise.ir import Schedule, ScheduleError, Workload, WorkloadError, compile
from tilewise.profiling.measure import check, make_problem
from tilewise.tuner.space import SpaceOptions, space_for

pytestmark = pytest.mark.jit

CASES = [(op, dt) for op in ("add", "mul", "relu") for dt in ("f32", "bf16", "f16", "i8")] + \
        [("gelu", dt) for dt in ("f32", "bf16", "f16")]


@pytest.mark.parametrize("op,dtype", CASES)
def test_random_schedules_match_reference(op, dtype, target):
    # 13 rows x 37 columns: no tile or vector width divides them, so every nest has partial tiles
    schedules = check_random_schedules(f"{op}:13x37:{dtype}", target)
    assert len(schedules) >= 20


@pytest.mark.parametrize("text", ["add:77:f32", "gelu:3x5x7x19:bf16", "mul:2x3x21:i8"])
def test_other_ranks(text, target):
    check_random_schedules(text, target, n=4)


def test_i8_add_wraps_like_torch():
    w = Workload.parse("add:4x8:i8")
    k = compile(w, Schedule(tile=1, vector=8, vectorize=True, threads=1))
    p = make_problem(w)
    p.inputs[0][:] = 100
    p.inputs[1][:] = 100
    p.expected[0][:] = -56            # 200 wraps to -56
    assert check(k, p) == 0.0


@pytest.mark.parametrize("schedule,knob", [
    (dict(vector=0), "vector"), (dict(vector=38), "vector"), (dict(tile=14), "tile"),
    (dict(tile=0), "tile"), (dict(tile=True), "tile"), (dict(threads=0), "threads"),
    (dict(precision="bf16"), "precision"), (dict(reg_tile=[1, 1]), "reg_tile"),
])
def test_validate_rejects_impossible_schedules(schedule, knob):
    w = Workload.parse("relu:13x37:f32")
    with pytest.raises(ScheduleError, match=knob):
        w.kind.validate(w, Schedule(schedule))


def test_validate_bounds_the_block():
    w = Workload.parse("relu:64x512:f32")
    w.kind.validate(w, Schedule(tile=2, vector=512))
    with pytest.raises(ScheduleError, match="tile \\* vector"):
        w.kind.validate(w, Schedule(tile=4, vector=512))


def test_rank1_has_no_row_tile():
    w = Workload.parse("relu:37:f32")
    with pytest.raises(ScheduleError, match="tile"):
        w.kind.validate(w, Schedule(tile=2))


@pytest.mark.parametrize("text", ["gelu:13x37:i8", "add:1x2x3x4x5:f32", "relu:13x0:f32",
                                  "add:13x37,13x37:f32"])
def test_malformed_workloads_rejected(text):
    with pytest.raises(WorkloadError):
        Workload.parse(text)


@pytest.mark.parametrize("text", ["add:13x37:f32", "gelu:77:f16", "relu:2x3x5x9:i8", "reduce_sum:13x37:f32",
                                  "reduce_max:3x1x4:i8", "softmax:12x37:bf16", "softmax:2x7x3:f32"])
def test_spaces_yield_only_valid_schedules(text, target):
    w = Workload.parse(text)
    space = space_for(w, target, SpaceOptions(max_threads=4))
    schedules = list(space)
    assert schedules
    for s in schedules:
        w.kind.validate(w, s)
