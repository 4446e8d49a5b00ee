import pytest

from tests.ir.checks import check_random_schedules

pytestmark = pytest.mark.jit


@pytest.mark.parametrize("dtype", ["f32", "bf16", "f16", "i8"])
@pytest.mark.parametrize("op,shape", [("matmul", "37x45x29"), ("batch_matmul", "3x19x40x23")])
def test_random_schedules_match_reference(op, shape, dtype, target):
    schedules = check_random_schedules(f"{op}:{shape}:{dtype}", target)
    assert len(schedules) >= 20


@pytest.mark.parametrize("op,shape", [("matmul", "24x40x32"), ("batch_matmul", "2x16x32x24")])
def test_lower_precision_schedules_within_their_bound(op, shape, target):
    check_random_schedules(f"{op}:{shape}:f32", target, n=12, precisions=("bf16", "f16"))
