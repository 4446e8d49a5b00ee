"""The GPU space: legality on a target, precisions by capability and error budget."""
import numpy as np
import pytest

from tilewise.ir.triton_gemm import GemmConfig
from tilewise.core.workload import Workload
from tilewise.core.target import detect
from tilewise.tuner.space import SpaceOptions, space_for
from tilewise.tuner.spaces.gpu_gemm import (GpuSpaceOptions, default_schedule, gemm_space, illegal_reason,
                                            smem_bytes)

W = Workload.parse("matmul:1024x1024x1024:f32")
BUDGET = SpaceOptions(1, ("lower",))


def knobs(**kw):
    s = dict(block_m=64, block_n=64, block_k=32, group_m=8, num_warps=4, num_stages=3, split_k=1,
             precision="f32", epilogue="none")
    s.update(kw)
    return s


def test_cuda_target_gets_the_gpu_space_and_cpu_keeps_its_own(sm90):
    gpu = space_for(W, sm90)
    assert set(gpu.knobs) == {"block_m", "block_n", "block_k", "group_m", "num_warps", "num_stages",
                              "split_k", "precision", "epilogue"}
    cpu = space_for(W, detect())
    assert "tile" in cpu.knobs and "block_m" not in cpu.knobs


def test_shared_memory_rule(sm90, sm75):
    big = knobs(block_m=256, block_n=256, block_k=64, num_stages=4, num_warps=8)
    assert smem_bytes(big) == (256 * 64 + 64 * 256) * 4 * 4 == 524288
    assert "shared memory" in illegal_reason(big, W.loop_dims, sm90)
    fits = knobs(block_m=128, block_n=128, block_k=32, num_stages=3, num_warps=8, precision="bf16")
    assert smem_bytes(fits) == (128 * 32 + 32 * 128) * 3 * 2 == 49152
    assert illegal_reason(fits, W.loop_dims, sm90) is None
    assert "shared memory" in illegal_reason(knobs(block_m=128, block_n=128, block_k=64, num_stages=3,
                                                    num_warps=8, precision="f16"), W.loop_dims, sm75)


def test_warps_and_registers(sm90):
    assert "accumulator registers" in illegal_reason(knobs(block_m=256, block_n=256, num_warps=4), W.loop_dims, sm90)
    assert illegal_reason(knobs(block_m=256, block_n=128, num_warps=8, num_stages=2, block_k=32,
                                precision="bf16"), W.loop_dims, sm90) is None
    assert "16x16 MMA tile per warp" in illegal_reason(knobs(block_m=16, block_n=32, num_warps=4), W.loop_dims, sm90)


def test_problem_bounds_and_split_k(sm90):
    small = Workload.parse("matmul:20x64x48:f32").loop_dims
    assert "larger than the problem" in illegal_reason(knobs(block_m=64), small, sm90)
    assert illegal_reason(knobs(block_m=32, block_n=64, block_k=32, num_warps=2), small, sm90) is None
    assert "without work" in illegal_reason(knobs(block_m=32, block_n=64, block_k=32, split_k=2, num_warps=2),
                                            small, sm90)
    assert "activation" in illegal_reason(knobs(split_k=2, epilogue="bias_gelu"), W.loop_dims, sm90)


def test_precisions_follow_capability_and_budget(sm90, sm80, sm75):
    assert space_for(W, sm90).knobs["precision"] == ["f32"]            # no budget: the dtype only
    assert space_for(W, sm90, BUDGET).knobs["precision"] == ["f32", "tf32", "bf16", "f16", "f8e4m3"]
    assert space_for(W, sm80, BUDGET).knobs["precision"] == ["f32", "tf32", "bf16", "f16"]
    assert space_for(W, sm75, BUDGET).knobs["precision"] == ["f32", "f16"]
    assert space_for(Workload.parse("matmul:64x64x64:bf16"), sm90, BUDGET).knobs["precision"] == ["bf16", "f8e4m3"]
    assert "newer GPU" in illegal_reason(knobs(precision="bf16"), W.loop_dims, sm75)
    assert "block_k >= 32" in illegal_reason(knobs(precision="f8e4m3", block_k=16), W.loop_dims, sm90)


def test_sampled_schedules_are_legal_and_build_configs(sm90, sm75):
    rng = np.random.default_rng(0)
    for target in (sm90, sm75):
        space = space_for(Workload.parse("batch_matmul:8x512x384x768:f32"), target, BUDGET)
        optin = target.caches["smem_per_block_optin"]
        for _ in range(200):
            s = space.sample(rng)
            assert smem_bytes(s) <= optin
            assert s["block_m"] * s["block_n"] / (32 * s["num_warps"]) <= 128
            GemmConfig.from_schedule(s)        # every legal schedule names a kernel


def test_space_size_is_enumerable(sm90):
    space = gemm_space(W, sm90, BUDGET, GpuSpaceOptions(block_mn=(64, 128), block_k=(32,), group_m=(8,),
                                                         num_warps=(4,), num_stages=(3,), split_k=(1,)))
    legal = list(space)
    assert 0 < len(legal) <= space.raw_size == 4 * 5
    with pytest.raises(ValueError, match="epilogue"):
        gemm_space(W, sm90, BUDGET, GpuSpaceOptions(epilogues=("silu",)))


@pytest.mark.parametrize("text", ["matmul:16x4096x11008:f32", "matmul:4096x4096x4096:f32",
                                  "batch_matmul:96x512x64x512:bf16", "matmul:20x20x20:f32"])
def test_default_schedule_is_legal(text, sm90, sm75):
    w = Workload.parse(text)
    for target in (sm90, sm75):
        if w.dtype == "bf16" and target is sm75:
            with pytest.raises(ValueError, match="bf16 needs"):
                space_for(w, target)
            continue
        s = default_schedule(w, target)
        assert illegal_reason(s, w.loop_dims, target) is None, s
