"""The roofline against hand computation (target: 8 f32 lanes, 16 vector registers, 3 GHz)."""
import pytest

from tilewise.costmodel import create
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate

from .conftest import TARGET

MM = Workload.parse("matmul:64x64x64:f32")        # 2 * 64^3 = 524288 flops, 3 * 64^2 * 4 = 49152 bytes
PEAK = 8 * 2 * 2 * 3e9                             # lanes * FMA flops * FMA units * clock


def latency(**knobs) -> float:
    return float(create("roofline").predict([Candidate(MM, Schedule(knobs))], TARGET)[0])


def test_a_full_register_tile_runs_at_peak():
    # 4 x 16 tile: 8 accumulators keep 2 FMA pipes of latency 4 busy; 6 loads take 3 cycles < 4
    assert latency(reg_tile=[4, 16]) == pytest.approx(524288 / PEAK + 1e-6)


def test_a_thin_tile_is_latency_bound_and_wastes_lanes():
    # 1 x 4: one accumulator (0.5 cycles of issue per 4-cycle step) in a half-empty vector
    assert latency(reg_tile=[1, 4]) == pytest.approx(524288 / (PEAK * 0.125 * 0.5) + 1e-6)


def test_scalar_code_loses_the_lanes_and_spills():
    # vectorize=False: 1 lane; 4 x 16 scalars = 64 accumulators > 16 registers -> spill penalty 0.5
    assert latency(reg_tile=[4, 16], vectorize=False) == pytest.approx(524288 / (PEAK / 8 * 0.5) + 1e-6)


def test_threads_divide_compute_and_cost_a_fork_join():
    assert latency(reg_tile=[4, 16], threads=2) == pytest.approx(524288 / (2 * PEAK) + 1e-6 + 5e-6)
    assert latency(reg_tile=[4, 16], threads=8) == latency(reg_tile=[4, 16], threads=2)   # 2 cores


def test_memory_bound_ops_use_the_bandwidth_of_where_they_fit():
    big = Workload.parse("add:4096x4096:f32")        # 3 * 64 MiB: beyond L3 -> 20 GB/s
    t = create("roofline").predict([Candidate(big, Schedule(vector=8))], TARGET)[0]
    assert t == pytest.approx(3 * 4096 * 4096 * 4 / 20e9 + 1e-6)


def test_a_measured_peak_replaces_the_nominal_one():
    m = create("roofline", peak_flops_per_core=48e9)
    t = m.predict([Candidate(MM, Schedule(reg_tile=[4, 16]))], TARGET)[0]
    assert t == pytest.approx(524288 / 48e9 + 1e-6)
