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



@pytest.mark.parametrize("op,shape,parallel_dim,threads", [
    ("matmul", "37x45x29", "n", 2), ("matmul", "37x45x29", "m", 2), ("matmul", "37x45x29", "mn", 6),
    ("batch_matmul", "3x19x40x23", "b", 2), ("batch_matmul", "3x19x40x23", "m", 4)])
def test_threads_that_do_not_divide_a_dim(op, shape, parallel_dim, threads):
    """A dim the threads split unevenly is cut (``structured.split``) into a part each thread gets
    an equal static share of and a rest of fewer rows/columns than threads, run by one thread.
    Without the cut every thread's tile had a dynamic size and lost its vectorized main loops (the
    GPT-2 LM head ran 2x slower on 2 threads than on 1); here no buffer has a dynamic size and the
    result matches the reference."""
    import re
    from tilewise.ir import Schedule, Workload, compile, transformed_ir
    from tilewise.profiling.measure import check, make_problem
    w = Workload.parse(f"{op}:{shape}:f32")
    s = Schedule(tile=[0, 16, 16], reg_tile=[4, 8], promote=True, vectorize=True, unroll=1,
                 threads=threads, parallel_dim=parallel_dim, precision="f32")
    text = transformed_ir(w, s)
    assert "scf.forall" in text and "vector.fma" in text
    assert not re.findall(r"memref<(?:\d+x)*\?", text), "a dynamically sized buffer"
    assert check(compile(w, s), make_problem(w, "f32", seed=1)) <= w.kind.tolerance(w, "f32")
