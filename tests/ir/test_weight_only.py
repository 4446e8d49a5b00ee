"""Weight-only quantized matmul (``matmul:MxNxK:w4a32:g128``): the format, the workload grammar,
kernels against the float64 reference of the dequantized weights, schedule validation."""
import numpy as np
import pytest

from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload, WorkloadError
from tilewise.ir import compile, quant
from tilewise.ir.ops.base import ScheduleError
from tilewise.profiling.measure import check, make_problem, measure
from tests.ir.checks import check_random_schedules


# -- the format ----------------------------------------------------------------------------------
def test_int4_packing_round_trips_every_value(rng):
    q = rng.integers(-7, 8, (64, 7)).astype(np.int8)
    q[:30, 0] = np.repeat(np.arange(-7, 8), 2)
    q[1:30:2, 0] = np.arange(-7, 8)[::-1]                 # every value in both rows, every pairing sign
    packed = quant.pack_int4(q)
    assert packed.shape == (32, 7) and packed.dtype == np.int8
    assert np.array_equal(quant.unpack_int4(packed), q)
    assert int(packed[0, 0]) == 16 * int(q[1, 0]) + int(q[0, 0])          # 16 hi + lo, lo the even row


def test_pack_rejects_out_of_range_and_odd_rows():
    with pytest.raises(ValueError, match="-7, 7"):
        quant.pack_int4(np.full((2, 1), -8, np.int8))
    with pytest.raises(ValueError, match="even K"):
        quant.pack_int4(np.zeros((3, 1), np.int8))


@pytest.mark.parametrize("bits,group", [(8, 32), (4, 64), (4, 128)])
def test_quantization_error_is_half_a_step(rng, bits, group):
    w = rng.standard_normal((256, 9))
    stored, scale = quant.quantize(w, bits, group)
    assert scale.shape == (256 // group, 9) and scale.dtype == np.float32
    assert stored.shape == (quant.stored_rows(256, bits), 9)
    err = np.abs(quant.dequantize(stored, scale, bits, group) - w).reshape(256 // group, group, 9)
    assert np.all(err <= scale.astype(np.float64)[:, None, :] * 0.5 * (1 + 1e-6))


# -- the workload grammar ------------------------------------------------------------------------
def test_workload_string_round_trips_with_the_short_group():
    w = Workload.parse("matmul:1x4096x4096:w4a32:g128")
    assert (w.op, w.dtype, w.attr("group", 0)) == ("matmul", "w4a32", 128)
    assert str(w) == "matmul:1x4096x4096:w4a32:g128"
    assert Workload.parse("matmul:1x4096x4096:w4a32:group=128") == w
    assert Workload.from_json(w.to_json()) == w
    assert w.kind.weight_only and not Workload.parse("matmul:8x8x8:f32").kind is w.kind


@pytest.mark.parametrize("text,message", [
    ("matmul:1x64x64:w3a32:g32", "does not support dtype 'w3a32': use one of f32, bf16, f16, i8, w8a32, w4a32"),
    ("matmul:1x64x64:w4a32", "needs a group size along K: no group given, use one of g32, g64, g128"),
    ("matmul:1x64x64:w4a32:g48", "group 48 given"),
    ("matmul:1x64x96:w8a32:g64", "the group 64 does not divide K=96"),
    ("matmul:1x64x64:w4a32:x64", "malformed attribute 'x64'.*g<integer> \\(group\\)"),
    ("matmul:1x64x64:w4a32:g64,pad=1", "no attribute 'pad'"),
    ("matmul:64x64:w4a32:g32", "expects shapes MxNxK"),
])
def test_bad_workloads_are_one_line_errors(text, message):
    with pytest.raises(WorkloadError, match=message) as e:
        Workload.parse(text)
    assert "\n" not in str(e.value)


def test_bytes_moved_counts_the_weights_at_their_width():
    w = Workload.parse("matmul:1x4096x4096:w4a32:g128")
    assert w.kind.bytes_moved(w) == 4096 * 4 + 4096 * 4096 // 2 + 32 * 4096 * 4 + 4096 * 4
    w8 = Workload.parse("matmul:2x64x256:w8a16:g32")
    assert w8.kind.bytes_moved(w8) == 2 * 256 * 2 + 256 * 64 + 8 * 64 * 4 + 2 * 64 * 4


# -- kernels -------------------------------------------------------------------------------------
SHAPES = ["matmul:1x37x96:w4a32:g32",        # odd N, K of three groups
          "matmul:3x45x160:w8a32:g32",       # K not a power of two, M a remainder of the register tile
          "matmul:2x24x128:w4a16:g64",       # bf16 activations
          "matmul:5x19x64:w8a16:g64"]


@pytest.mark.parametrize("text", SHAPES)
def test_random_schedules_match_the_reference(text, fixed_target):
    check_random_schedules(text, fixed_target, n=4, seed=3)


@pytest.mark.parametrize("knobs", [
    dict(tile=[0, 0, 8], interchange=[0, 2, 1], reg_tile=[1, 16], unroll=2),
    dict(tile=[2, 16, 64], interchange=[2, 0, 1], reg_tile=[2, 8], unroll=4),
    dict(tile=[0, 0, 32], interchange=[0, 1, 2], reg_tile=[3, 32], threads=2, parallel_dim="n"),
    dict(reg_tile=[2, 8], threads=2, parallel_dim="m"),
    dict(vectorize=False, threads=1),
])
def test_int4_schedules_match_the_reference(knobs):
    w = Workload.parse("matmul:3x37x192:w4a32:g64")
    kernel = compile(w, Schedule(knobs, precision="w4a32"))
    assert check(kernel, make_problem(w, seed=2)) <= w.kind.tolerance(w, w.dtype)


def test_the_kernel_is_checked_against_the_dequantized_weights(rng):
    """The reference is A @ dequantize(stored): a kernel that ignored the scales would fail."""
    w = Workload.parse("matmul:2x16x64:w8a32:g32")
    problem = make_problem(w, seed=0)
    a, stored, scale = (x.astype(np.float64) for x in problem.inputs)
    np.testing.assert_allclose(problem.expected[0], a @ (stored.reshape(2, 32, 16) * scale[:, None, :]).reshape(64, 16))
    assert not np.allclose(scale, 1.0)
    m = measure(w, w.kind.default_schedule(w, _target()), repeats=2, min_time_s=0.0)
    assert m.status == "ok" and m.rel_error <= 1e-4


def _target():
    from tilewise.core.target import detect
    return detect()


@pytest.mark.parametrize("knobs,message", [
    (dict(tile=[0, 0, 48]), "multiple or a divisor of the group 64"),
    (dict(tile=[0, 0, 4], reg_tile=[1, 8], nibbles=2), "has no knob 'nibbles'"),
    (dict(unroll=3), "unroll=3"),
    (dict(parallel_dim="k", threads=2), "parallel_dim='k'"),
    (dict(precision="f32"), "precision='f32' is not available"),
    (dict(promote=True), "has no knob 'promote'"),
])
def test_illegal_schedules_name_the_knob(knobs, message):
    w = Workload.parse("matmul:1x32x128:w4a32:g64")
    with pytest.raises(ScheduleError, match=message):
        w.kind.validate(w, Schedule(knobs))
