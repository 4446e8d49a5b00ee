"""collect and tune on a cuda target, measured by the interpreter runner (no GPU needed): the
loop, the store and the reports are the same ones a GPU run uses."""
import pytest

from tilewise.datasets.base import open_store
from tilewise.core.workload import Workload
from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig
from tilewise.tuner.collect import CollectConfig, collect
from tilewise.tuner.tune import TuneConfig, tune

W = Workload.parse("matmul:32x48x64:f32")


@pytest.fixture(scope="module")
def runner():
    with GpuRunner(GpuRunnerConfig(device="interpret", interpret_repeats=1, max_rel_error=3e-2)) as r:
        yield r


def test_collect_on_a_cuda_target_is_resumable(tmp_path, sm90, runner):
    with open_store(str(tmp_path / "c.db")) as store:
        p = collect([W], sm90, store, runner, CollectConfig(samples=4, batch_size=2))
        assert p.done == 4 and sum(p.by_status.values()) == 4
        again = collect([W], sm90, store, runner, CollectConfig(samples=4, batch_size=2))
        assert again.skipped == 4
        recs = list(store.iter())
    assert len(recs) == 4 and all(r.target.kind == "cuda" and "block_m" in r.schedule for r in recs)


@pytest.mark.parametrize("strategy", ["random", "model"])
def test_tune_on_a_cuda_target_records_and_answers_from_the_store(tmp_path, sm90, runner, strategy):
    config = TuneConfig(trials=4, strategy=strategy, batch_size=2, max_rel_error=3e-2, ab_rounds=1, top_k=2)
    with open_store(str(tmp_path / "t.db")) as store:
        res = tune(W, sm90, config, runner=runner, store=store)
        assert len(store) == 4 and res.searched
        assert len(store.runs()) == 1 and store.runs()[0].reference.name == "torch.matmul"   # the run log
        assert res.best is not None and res.reference.name == "torch.matmul" and res.reference.median_s > 0
        assert res.best.rel_error <= 3e-2
        precisions = {t.schedule["precision"] for t in res.trials}
        assert precisions <= {"f32", "tf32", "bf16", "f16", "f8e4m3"}
        d = res.to_json()
        assert d["target"]["kind"] == "cuda" and d["best"]["gflops"] > 0
        again = tune(W, sm90, config, runner=runner, store=store)
        assert not again.searched and again.prior and len(store) == 4


def test_tune_refuses_a_target_of_no_registered_kind(sm90):
    import dataclasses
    with pytest.raises(ValueError, match="target kind 'tpu'"):
        tune(W, dataclasses.replace(sm90, kind="tpu"), TuneConfig(trials=1))
