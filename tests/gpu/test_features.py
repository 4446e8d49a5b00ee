"""gpu_analytic features and the roofline on a cuda target."""
import math
from dataclasses import replace

import numpy as np

from tilewise.costmodel.base import create as create_model
from tilewise.features.base import create
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate

W = Workload.parse("matmul:1000x1000x512:f32")


def cand(w=W, **kw):
    s = dict(block_m=128, block_n=64, block_k=32, group_m=8, num_warps=4, num_stages=3, split_k=1,
             precision="bf16", epilogue="none")
    s.update(kw)
    return Candidate(w, Schedule(s))


def row(c, target):
    ex = create("gpu_analytic")
    return dict(zip(ex.names(), ex.extract([c], target)[0].tolist()))


def test_registered_shape_and_names(sm90):
    ex = create("gpu_analytic")
    X = ex.extract([cand(), cand(precision="f32"), cand(w=Workload.parse("batch_matmul:4x64x64x64:f32"),
                                                        block_m=64, block_n=64)], sm90)
    assert X.shape == (3, len(ex.names())) and X.dtype == np.float32 and np.all(np.isfinite(X))
    assert len(set(ex.names())) == len(ex.names())


def test_tiles_waves_and_occupancy(sm90):
    r = row(cand(), sm90)
    programs = 8 * 16                          # ceil(1000/128) x ceil(1000/64)
    assert r["log2_programs"] == math.log2(programs)
    assert r["util_m"] == np.float32(1000 / 1024) and r["util_n"] == np.float32(1000 / 1024)
    smem = (128 * 32 + 32 * 64) * 3 * 2
    assert r["log2_smem_bytes"] == np.float32(math.log2(smem))
    assert r["acc_regs_per_thread"] == 128 * 64 / 128
    blocks = r["blocks_per_sm"]
    assert 1 <= blocks <= 16 and r["occupancy"] == np.float32(min(1.0, blocks * 4 / 64))
    assert r["waves"] == math.ceil(programs / (132 * blocks))
    assert r["precision_bf16"] == 1 and r["precision_f32"] == 0 and r["elt_bytes"] == 2
    split = row(cand(split_k=4), sm90)
    assert split["log2_programs"] == math.log2(programs * 4) and split["log2_split_k"] == 2
    assert split["log2_global_bytes"] > r["log2_global_bytes"]          # atomics on C
    assert row(cand(epilogue="bias_gelu"), sm90)["act_gelu"] == 1


def test_target_columns_and_measured_peaks(sm90, sm75):
    a, b = row(cand(precision="f16"), sm90), row(cand(precision="f16"), sm75)
    assert a["log2_sms"] == np.float32(math.log2(132)) and b["log2_sms"] == np.float32(math.log2(40))
    assert a["capability"] == np.float32(9.0) and b["capability"] == np.float32(7.5)
    fast = replace(sm90, peaks=(("f16_flops_per_s", 1e15), ("dram_bytes_per_s", 3e12)))
    c = row(cand(precision="f16"), fast)
    assert c["log10_peak_flops"] == np.float32(15.0) and c["log10_peak_bytes_per_s"] == np.float32(math.log10(3e12))


def test_non_gpu_schedule_gets_problem_and_target_only(sm90):
    r = row(Candidate(W, Schedule({"tile": [64, 64, 64]})), sm90)
    assert r["log2_m"] == np.float32(math.log2(1000)) and r["log2_block_m"] == 0 and r["log2_sms"] > 0


def test_roofline_uses_the_gpu_bound_on_cuda(sm90):
    roof = create_model("roofline")
    small = roof.predict([cand(w=Workload.parse("matmul:256x256x256:f32"))], sm90)[0]
    big = roof.predict([cand(w=Workload.parse("matmul:4096x4096x4096:f32"))], sm90)[0]
    assert 0 < small < big
    f32, bf16 = roof.predict([cand(precision="f32"), cand(precision="bf16")], sm90)
    assert f32 > bf16                            # fp32 peak is below the tensor cores'
