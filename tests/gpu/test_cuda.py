"""On a real NVIDIA GPU only (marked ``cuda``: skipped without one)."""
import pytest

from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig

pytestmark = pytest.mark.cuda


def test_measures_checks_and_records_failures():
    w = Workload.parse("matmul:512x512x512:f32")
    ok = dict(block_m=64, block_n=64, block_k=32, num_warps=4, num_stages=3)
    cands = [Candidate(w, Schedule(ok)),
             Candidate(w, Schedule(dict(ok, split_k=4, epilogue="bias"))),
             Candidate(w, Schedule(dict(ok, precision="bf16"))),                       # no budget: wrong_result
             Candidate(w, Schedule(dict(block_m=256, block_n=256, block_k=128, num_warps=8, num_stages=5)))]
    with GpuRunner(GpuRunnerConfig(rep_ms=20)) as r:
        got = r.run(cands)
        ref = r.reference(w, "f32")
    assert got[0].ok and got[1].ok and len(got[0].times_s) >= 5 and got[0].median_s < 1e-2
    assert got[2].status == "wrong_result"
    assert got[3].status == "runtime_error" and "out of resources" in got[3].error_msg
    assert ref.ok and ref.rel_error < 1e-4


def test_tune_on_the_gpu_end_to_end(tmp_path):
    from tilewise.datasets.base import open_store
    from tilewise.profiling.cuda_target import detect_cuda_target
    from tilewise.tuner.tune import TuneConfig, tune
    target = detect_cuda_target()
    w = Workload.parse("matmul:1024x1024x1024:f32")
    with open_store(str(tmp_path / "t.db")) as store:
        res = tune(w, target, TuneConfig(trials=12, strategy="model", max_rel_error=3e-2, ab_rounds=2),
                   store=store)
        assert len(store) >= 12
    assert res.best is not None and res.reference.median_s > 0 and res.to_json()["reference"]["name"] == "torch.matmul"
