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


@pytest.mark.parametrize("op,shape", [("matmul", "37x45x29"), ("batch_matmul", "3x19x40x23")])
def test_two_d_thread_grids_match_reference(op, shape, target):
    """parallel_dim "mn" (a tm x tn grid of threads) at thread counts beyond this machine's cores."""
    schedules = check_random_schedules(f"{op}:{shape}:f32", target, n=10, max_threads=6)
    assert any(s.get("parallel_dim") == "mn" for s in schedules)


def test_thread_grid():
    from tilewise.ir.ops.matmul import thread_grid
    assert [thread_grid(t) for t in (1, 2, 4, 6, 8, 9, 16)] == [(1, 1), (1, 2), (2, 2), (2, 3), (2, 4), (3, 3), (4, 4)]


def test_bf16_without_the_cpus_bf16_unit(target, monkeypatch):
    """On a CPU without ``avx512_bf16`` (an AVX2 EPYC) LLVM rounds scalar f32 -> bf16 through
    compiler-rt's ``__truncsfbf2``, which the JIT lacks: the lowering emulates bf16 arithmetic in
    f32, expands the rounding to integer ops and defines the routine.  Forced here on any CPU."""
    from tilewise.ir import compiler
    monkeypatch.setattr(compiler, "_host_converts_bf16", lambda: False)
    assert "arith-expand{include-bf16=true}" in compiler.lowering_pipeline(1)
    assert "arith-expand" not in compiler.lowering_pipeline(1, native_bf16=True)
    # promote=True gathers a 6x1 column of bf16 elements: the scalar path that needs the routine
    check_random_schedules("matmul:37x45x29:bf16", target, n=6, seed=3)
    check_random_schedules("gelu:13x37:bf16", target, n=4)
