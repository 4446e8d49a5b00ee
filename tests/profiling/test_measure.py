import pytest

from tilewise.ir import Schedule, Workload
from tilewise.profiling.measure import check, make_problem, measure, time_runs
from tilewise.core.target import detect

pytestmark = pytest.mark.jit


def test_measure_reports_times_and_error():
    w = Workload.parse("matmul:64x48x32:f32")
    m = measure(w, Schedule(tile=[0, 16, 32], promote=True, reg_tile=[4, 16]), repeats=10, min_time_s=0.01)
    assert m.status == "ok", m.error_msg
    assert len(m.times_s) >= 10 and all(t > 0 for t in m.times_s)
    assert m.min_s <= m.median_s and m.rel_error < 1e-5


def test_illegal_and_failing_schedules_are_data_not_exceptions():
    w = Workload.parse("matmul:64x48x32:f32")
    m = measure(w, Schedule(reg_tile=[4, 0]))
    assert m.status == "invalid" and "reg_tile" in m.error_msg


def test_poisoned_outputs_catch_a_kernel_that_writes_nothing():
    w = Workload.parse("matmul:16x16x16:f32")
    problem = make_problem(w)

    class Noop:
        def __call__(self, *arrays):
            pass
    assert check(Noop(), problem) == float("inf")


def test_error_budget_turns_a_bad_result_into_wrong_result():
    w = Workload.parse("matmul:64x64x64:f32")
    m = measure(w, Schedule(reg_tile=[4, 16], precision="bf16"))   # bf16 inputs: ~1e-3 error
    assert m.status == "wrong_result" and "exceeds" in m.error_msg
    ok = measure(w, Schedule(reg_tile=[4, 16], precision="bf16"), max_rel_error=0.05, repeats=2, min_time_s=0)
    assert ok.status == "ok" and 1e-5 < ok.rel_error < 0.05


def test_time_runs_honours_minimum_repeats_and_time():
    calls = []
    times = time_runs(lambda: calls.append(1), repeats=5, min_time_s=0.0, warmup=3)
    assert len(times) == 5 and len(calls) == 8


def test_target_is_detected():
    t = detect()
    assert t.cores >= 1 and t.simd_bits in (128, 256, 512)
    assert t.simd_lanes() == t.simd_bits // 32
    assert len(t.key()) == 64
    assert t.key() == type(t).from_json(t.to_json()).key()
