"""Schedule -> Triton source: the structure a schedule selects, compared as text."""
import os

import pytest

from tilewise.core.schedule import Schedule
from tilewise.ir.triton_gemm import GemmConfig, TritonScheduleError, grid, render_source, source_key

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


@pytest.mark.parametrize("name,cfg,batched", [
    ("gemm_f32_plain.py.txt", GemmConfig(64, 64, 32), False),
    ("gemm_bf16_splitk_bias_batched.py.txt", GemmConfig(64, 128, 32, split_k=4, precision="bf16",
                                                         epilogue="bias"), True),
    ("gemm_tf32_gelu.py.txt", GemmConfig(128, 64, 32, precision="tf32", epilogue="bias_gelu"), False),
])
def test_source_matches_golden(name, cfg, batched):
    with open(os.path.join(GOLDEN, name)) as fh:
        assert render_source(cfg, batched) == fh.read()


def test_structure_follows_the_knobs():
    plain = render_source(GemmConfig(64, 64, 32))
    assert 'input_precision="ieee"' in plain and "tl.store(c_ptrs" in plain and "atomic_add" not in plain
    assert "bias" not in plain.split("def gemm_kernel")[1].split("BLOCK_M: tl.constexpr")[1]
    split = render_source(GemmConfig(64, 64, 32, split_k=2, epilogue="bias"))
    assert "tl.atomic_add(c_ptrs, acc, mask=c_mask)" in split and "(pid_k == 0)" in split
    assert 'input_precision="tf32"' in render_source(GemmConfig(64, 64, 32, precision="tf32"))
    f16 = render_source(GemmConfig(64, 64, 32, precision="f16", epilogue="bias_relu"))
    assert "acc = tl.dot(a, b, acc)\n" in f16 and "tl.maximum(acc, 0.0)" in f16
    assert "tl.sigmoid" in render_source(GemmConfig(64, 64, 32, epilogue="bias_gelu"))
    # the tile sizes are launch meta: one source for every tiling of one structure
    assert render_source(GemmConfig(16, 256, 128, group_m=1, num_warps=8, num_stages=5)) == plain
    assert source_key(plain) != source_key(split)


def test_interpreter_source_widens_bf16_only():
    cfg = GemmConfig(32, 32, 32, precision="bf16")
    assert render_source(cfg, interpret=True) != render_source(cfg)
    assert "a.to(tl.float32), b.to(tl.float32)" in render_source(cfg, interpret=True)
    for p in ("f32", "tf32", "f16", "f8e4m3"):
        c = GemmConfig(32, 32, 32, precision=p)
        assert render_source(c, interpret=True) == render_source(c)


def test_every_variant_is_python():
    for p in ("f32", "tf32", "bf16", "f16", "f8e4m3"):
        for e in ("none", "bias", "bias_relu", "bias_gelu"):
            for sk in (1, 2):
                if sk > 1 and e in ("bias_relu", "bias_gelu"):
                    continue
                for batched in (False, True):
                    compile(render_source(GemmConfig(32, 32, 32, split_k=sk, precision=p, epilogue=e), batched),
                            "<gemm>", "exec")


@pytest.mark.parametrize("knobs,fragment", [
    ({"block_m": 24, "block_n": 32, "block_k": 32}, "power of two"),
    ({"block_m": 8, "block_n": 32, "block_k": 32}, "power of two"),
    ({"block_m": 32, "block_n": 32, "block_k": 32, "precision": "f64"}, "precision"),
    ({"block_m": 32, "block_n": 32, "block_k": 32, "epilogue": "silu"}, "epilogue"),
    ({"block_m": 32, "block_n": 32, "block_k": 32, "split_k": 2, "epilogue": "bias_relu"}, "split-K"),
    ({"block_m": 32, "block_n": 32}, "lacks block_k"),
    ({"block_m": 32, "block_n": 32, "block_k": 32, "tile": [1, 2, 3]}, "unknown knobs"),
    ({"block_m": 32, "block_n": 32, "block_k": 32, "num_warps": 3}, "num_warps"),
])
def test_malformed_schedules_are_refused(knobs, fragment):
    with pytest.raises(TritonScheduleError, match=fragment):
        GemmConfig.from_schedule(Schedule(knobs))


def test_grid_and_meta():
    cfg = GemmConfig(64, 32, 32, group_m=4, split_k=2, num_warps=8, num_stages=4)
    assert grid(cfg, 100, 65, batch=3) == (2 * 3, 2, 3)
    assert cfg.meta() == {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 32, "GROUP_M": 4, "SPLIT_K": 2,
                          "num_warps": 8, "num_stages": 4}
