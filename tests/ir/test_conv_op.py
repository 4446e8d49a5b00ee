import itertools

import numpy as np
import pytest

from tests.ir.checks import check_random_schedules
from tilewise.ir import Workload
from tilewise.ir.compiler import transformed_ir
from tilewise.ir.ops import ScheduleError
from tilewise.core.schedule import Schedule
from tilewise.core.workload import WorkloadError

pytestmark = pytest.mark.jit

# partial tiles everywhere: OW=15, F=40, C=20 divide none of the register/cache tile candidates
PARTIAL = "conv2d_nhwc:1x13x17x20,3x3x20x40:f32"
STRIDED = "conv2d_nhwc:1x9x11x5,3x3x5x12:{dt}:stride=2,pad=1"


def _naive(x, k, stride, pad):
    n, h, w, c = x.shape
    kh, kw, _, f = k.shape
    xp = np.zeros((n, h + 2 * pad, w + 2 * pad, c))
    xp[:, pad:pad + h, pad:pad + w] = x
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, oh, ow, f))
    for b, i, j, o in itertools.product(range(n), range(oh), range(ow), range(f)):
        patch = xp[b, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
        out[b, i, j, o] = np.sum(patch * k[..., o])
    return out


@pytest.mark.parametrize("text,stride,pad", [
    ("conv2d_nhwc:2x7x8x3,3x2x3x4:f32:stride=2,pad=1", 2, 1),
    ("conv2d_nhwc:1x6x5x2,3x3x2x3:f32:pad=2", 1, 2),
    ("conv2d_nhwc:1x10x9x2,2x3x2x3:f32:stride=3", 3, 0),
])
def test_reference_matches_naive_loops(text, stride, pad, rng):
    w = Workload.parse(text)
    x, k = w.kind.sample_inputs(w, rng)
    (got,) = w.kind.reference(w, [x, k])
    assert got.shape == w.kind.args(w, "f32")[2].shape
    np.testing.assert_allclose(got, _naive(x, k, stride, pad), rtol=1e-12, atol=1e-12)


def test_geometry_and_flops():
    w = Workload.parse("conv2d_nhwc:1x56x56x64,3x3x64x128:f32:stride=2,pad=1")
    assert w.loop_dims == {"n": 1, "oh": 28, "ow": 28, "f": 128, "kh": 3, "kw": 3, "c": 64}
    assert w.flops == 2.0 * 28 * 28 * 128 * 9 * 64
    assert [a.shape for a in w.kind.args(w, "f32")] == [(1, 56, 56, 64), (3, 3, 64, 128), (1, 28, 28, 128)]
    wi = Workload.parse("conv2d_nhwc:1x4x4x8,1x1x8x8:i8")
    assert [a.dtype for a in wi.kind.args(wi, "i8")] == ["i8", "i8", "i32"]


@pytest.mark.parametrize("text", [PARTIAL, STRIDED.format(dt="f32"),
                                  "conv2d_nhwc:2x6x10x7,2x3x7x24:f32:pad=2"])
def test_random_f32_schedules_match_reference(text, target):
    assert len(check_random_schedules(text, target)) >= 20


@pytest.mark.parametrize("dtype", ["bf16", "f16", "i8"])
def test_random_schedules_each_dtype(dtype, target):
    assert len(check_random_schedules(STRIDED.format(dt=dtype).replace("1x9", "2x9"), target)) >= 20


def test_lower_precision_schedules_within_their_bound(target):
    schedules = check_random_schedules("conv2d_nhwc:1x8x10x16,3x3x16x24:f32:pad=1", target, n=12,
                                       precisions=("bf16", "f16"))
    assert {s["precision"] for s in schedules if "precision" in s} >= {"bf16", "f16"}


def test_default_is_vectorized_and_untuned_is_plain_loops(target):
    w = Workload.parse(STRIDED.format(dt="f32"))
    assert "vector.fma" in transformed_ir(w, w.kind.default_schedule(w, target))
    untuned = transformed_ir(w, w.kind.untuned_schedule(w))
    assert "vector." not in untuned and "linalg.conv_2d_nhwc_hwcf" in untuned


@pytest.mark.parametrize("knobs,fragment", [
    ({"tile": [6, 0, 0, 0]}, "tile[0]=6"),                  # OH is 5
    ({"tile": [0, 0, 0]}, "tile="),
    ({"reg_tile": [0, 4]}, "reg_tile[0]=0"),
    ({"reg_tile": [2, 13]}, "reg_tile[1]=13"),              # F is 12
    ({"tile": [0, 2, 0, 0], "reg_tile": [3, 4]}, "reg_tile ow=3"),
    ({"c_tile": 0}, "c_tile"),
    ({"c_tile": 6}, "c_tile"),                              # C is 5
    ({"tile": [0, 0, 0, 2], "c_tile": 4}, "c_tile=4"),
    ({"threads": 0}, "threads"),
    ({"threads": 6, "parallel_dim": "oh"}, "threads=6"),
    ({"parallel_dim": "kh"}, "parallel_dim"),
    ({"precision": "i8"}, "precision"),
    ({"unroll": 2}, "no knob 'unroll'"),
])
def test_validate_rejects_impossible_schedules(knobs, fragment):
    w = Workload.parse(STRIDED.format(dt="f32"))
    with pytest.raises(ScheduleError, match=None) as e:
        w.kind.validate(w, Schedule(knobs))
    assert fragment in str(e.value)


@pytest.mark.parametrize("text,fragment", [
    ("conv2d_nhwc:1x8x8x4,3x3x5x8:f32", "channels"),
    ("conv2d_nhwc:1x2x8x4,3x3x4x8:f32", "empty"),
    ("conv2d_nhwc:1x2x8x4,3x3x4x8:f32:stride=0", "stride"),
    ("conv2d_nhwc:1x8x8x4,3x3x4x8:f32:pad=-1", "pad"),
    ("conv2d_nhwc:1x8x8x4,3x3x4x8:f32:dilation=2", "dilation"),
    ("conv2d_nhwc:8x8x4,3x3x4x8:f32", "NxHxWxC"),
    ("conv2d_nhwc:1x8x8x4:f32", "NxHxWxC"),
    ("conv2d_nhwc:1x8x8x4,3x3x4x8:f64", "dtype"),
])
def test_malformed_workloads_raise(text, fragment):
    with pytest.raises(WorkloadError) as e:
        Workload.parse(text)
    assert fragment in str(e.value)
