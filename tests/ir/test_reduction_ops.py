import numpy as np
import pytest

from tests.ir.checks import check_random_schedules
from tilewise.ir import Schedule, ScheduleError, Workload, WorkloadError, compile
from tilewise.profiling.measure import check, make_problem

pytestmark = pytest.mark.jit


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16", "i8"])
@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max"])
def test_reductions_match_reference(op, dtype, target):
    # 13 rows of 37: neither the row tile nor the vector width divides them (partial tiles)
    schedules = check_random_schedules(f"{op}:13x37:{dtype}", target)
    assert len(schedules) >= 20


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16"])
def test_softmax_matches_reference(dtype, target):
    # 13 rows of 37 columns: partial row tiles and partial vector chunks
    schedules = check_random_schedules(f"softmax:13x37:{dtype}", target)
    assert len(schedules) >= 20


@pytest.mark.parametrize("text", ["reduce_sum:2x3x4x21:f32", "reduce_max:3x5x19:i8", "softmax:2x3x4x19:bf16"])
def test_other_ranks(text, target):
    check_random_schedules(text, target, n=4)


def test_output_dtypes():
    for text, out in [("reduce_sum:4x8:i8", "i32"), ("reduce_sum:4x8:bf16", "f32"), ("reduce_max:4x8:f16", "f32"), ("reduce_max:4x8:i8", "i8"),
                      ("softmax:4x8:bf16", "bf16")]:
        w = Workload.parse(text)
        assert w.kind.args(w, w.dtype)[-1].dtype == out
        assert w.kind.args(w, w.dtype)[-1].shape == ((4,) if w.op != "softmax" else (4, 8))


def test_i8_sum_does_not_wrap():
    w = Workload.parse("reduce_sum:2x64:i8")
    k = compile(w, Schedule(tile=1, vector=16, vectorize=True, threads=1))
    p = make_problem(w)
    p.inputs[0][:] = 100
    p.expected[0][:] = 6400
    assert check(k, p) == 0.0


def test_softmax_is_stable_for_large_inputs():
    w = Workload.parse("softmax:4x40:f32")
    k = compile(w, Schedule(tile=2, vector=16, vectorize=True, threads=1))
    p = make_problem(w)
    p.inputs[0][:] += np.float32(1000.0)                 # exp(1000) overflows f32: needs the max shift
    p.expected = w.kind.reference(w, [p.inputs[0].astype(np.float64)])
    assert check(k, p) <= 1e-4


@pytest.mark.parametrize("text,schedule,knob", [
    ("reduce_sum:13x37:f32", dict(vector=0), "vector"),
    ("reduce_sum:13x37:f32", dict(vector=38), "vector"),
    ("reduce_max:13x37:f32", dict(tile=14), "tile"),
    ("reduce_max:13x37:f32", dict(threads=0), "threads"),
    ("reduce_max:13x37:f32", dict(precision="bf16"), "precision"),
    ("softmax:12x37:f32", dict(tile=24), "tile"),
    ("softmax:12x37:f32", dict(vector=0), "vector"),
    ("softmax:12x37:f32", dict(unroll=2), "unroll"),
])
def test_validate_rejects_impossible_schedules(text, schedule, knob):
    w = Workload.parse(text)
    with pytest.raises(ScheduleError, match=knob):
        w.kind.validate(w, Schedule(schedule))


@pytest.mark.parametrize("text", ["reduce_sum:37:f32", "reduce_max:1x2x3x4x5:f32", "softmax:37:f32",
                                  "softmax:13x37:i8", "reduce_sum:13x37,13x37:f32", "reduce_sum:13x0:f32"])
def test_malformed_workloads_rejected(text):
    with pytest.raises(WorkloadError):
        Workload.parse(text)
