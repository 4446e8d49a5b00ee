"""The Triton kernels' correctness in Triton's interpreter (TRITON_INTERPRET=1, numpy on the CPU),
through the same runner a GPU uses: a worker process, float64 reference, failures as data."""
import pytest

from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig, _failure, make_gemm_problem

CASES = [
    # (workload, knobs, budget): tiny shapes with ragged edges so every mask matters
    ("matmul:37x45x70:f32", dict(block_m=16, block_n=16, block_k=16), None),
    ("matmul:70x45x70:f32", dict(block_m=16, block_n=16, block_k=32, group_m=2), None),      # GROUP_M swizzle
    ("matmul:37x45x70:f32", dict(block_m=32, block_n=16, block_k=16, split_k=3), None),      # split-K atomics
    ("matmul:37x45x70:f32", dict(block_m=16, block_n=32, block_k=16, split_k=2, epilogue="bias"), None),
    ("matmul:37x45x70:f32", dict(block_m=16, block_n=16, block_k=16, epilogue="bias_gelu"), None),
    ("batch_matmul:3x20x40x33:f32", dict(block_m=16, block_n=32, block_k=16, epilogue="bias_relu",
                                         group_m=4), None),
    ("matmul:37x45x70:f32", dict(block_m=16, block_n=16, block_k=16, precision="f16"), 4e-3),
    ("matmul:37x45x70:f32", dict(block_m=32, block_n=16, block_k=16, precision="bf16",
                                 epilogue="bias_gelu"), 3e-2),
    ("batch_matmul:2x33x20x40:bf16", dict(block_m=16, block_n=16, block_k=16, precision="bf16",
                                          split_k=2), None),
    ("matmul:37x45x70:f32", dict(block_m=16, block_n=16, block_k=32, precision="f8e4m3"), 6e-2),
]


@pytest.fixture(scope="module")
def runs():
    """One worker for all cases, checked against the loosest budget; each case's own bound is
    asserted below."""
    cands = [Candidate(Workload.parse(w), Schedule(dict(k))) for w, k, _ in CASES]
    loosest = max(b for _, _, b in CASES if b is not None)
    with GpuRunner(GpuRunnerConfig(device="interpret", max_rel_error=loosest, interpret_repeats=1)) as r:
        return r.run(cands)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{w}-{k}" for w, k, _ in CASES])
def test_kernel_matches_float64_reference(runs, i):
    w, knobs, budget = CASES[i]
    m = runs[i]
    assert m.status == "ok", m.error_msg
    bound = budget if budget is not None else Workload.parse(w).kind.tolerance(Workload.parse(w), Workload.parse(w).dtype)
    assert m.rel_error <= bound and m.times_s and m.median_s > 0
    if knobs.get("precision") in ("bf16", "f16", "f8e4m3") and Workload.parse(w).dtype == "f32":
        assert m.rel_error > 1e-6          # the lower precision's rounding is really charged


def test_failures_are_data():
    w = Workload.parse("matmul:37x45x70:f32")
    cands = [Candidate(w, Schedule(dict(block_m=16, block_n=16, block_k=16, precision="bf16"))),  # no budget
             Candidate(w, Schedule(dict(block_m=16, block_n=16))),
             Candidate(w, Schedule(dict(block_m=16, block_n=16, block_k=16, precision="f64"))),
             Candidate(w, Schedule(dict(block_m=16, block_n=16, block_k=16)))]
    with GpuRunner(GpuRunnerConfig(device="interpret", interpret_repeats=1)) as r:
        got = r.run(cands)
        ref = r.reference(w, "f32", "bias_relu")
    assert [m.status for m in got] == ["wrong_result", "invalid", "invalid", "ok"]
    assert "exceeds" in got[0].error_msg and got[0].rel_error > 1e-4
    assert ref.ok and ref.rel_error < 1e-5


def test_failure_classification():
    class OutOfResources(Exception):
        pass

    class CompilationError(Exception):
        pass
    assert _failure(OutOfResources("shared memory, Required: 262144, Hardware limit: 232448")).status == "runtime_error"
    assert _failure(OutOfResources("x")).error_msg.startswith("out of resources:")
    assert _failure(CompilationError("bad")).status == "compile_error"
    assert _failure(RuntimeError("illegal memory access")).status == "runtime_error"


def test_problem_inputs_are_rounded_to_the_workload_dtype():
    p = make_gemm_problem(Workload.parse("batch_matmul:2x8x8x8:bf16"), seed=1)
    import numpy as np
    bits = p.a.astype(np.float32).view(np.uint32)
    assert p.batched and np.all(bits & 0xFFFF == 0)         # exactly representable in bf16
    assert p.reference("bias_relu").min() >= 0


def test_parallel_precompile_then_measure():
    w = Workload.parse("matmul:40x24x48:f32")
    cands = [Candidate(w, Schedule(dict(block_m=16, block_n=16, block_k=bk, split_k=sk)))
             for bk in (16, 32) for sk in (1, 2)] + [Candidate(w, Schedule(dict(block_m=16)))]
    with GpuRunner(GpuRunnerConfig(device="interpret", interpret_repeats=1, compile_workers=2)) as r:
        assert r.precompile(cands) == 4               # the malformed one does not compile
        got = r.run(cands)
    assert [m.status for m in got] == ["ok"] * 4 + ["invalid"]


def test_cuda_errors_restart_the_worker_but_out_of_resources_does_not():
    from tilewise.profiling.gpu_worker import _poisoned
    assert _poisoned({"status": "runtime_error", "error_msg": "RuntimeError: CUDA error: an illegal memory access"})
    assert not _poisoned({"status": "runtime_error", "error_msg": "out of resources: shared memory, Required: 1"})
    assert not _poisoned({"status": "wrong_result", "error_msg": "relative error 1 exceeds 0.0001"})
