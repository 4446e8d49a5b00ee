"""GPU search space of ``matmul`` and ``batch_matmul``: Triton GEMM configs (see
:mod:`tilewise.ir.triton_gemm` for what each knob means).

Legality on a target (:func:`illegal_reason`; the space's constraint is ``reason is None``):

- shared memory: ``(block_m * block_k + block_k * block_n) * num_stages * element bytes`` within
  the target's opt-in shared memory per block (Triton's pipeliner keeps one A and one B tile per
  stage);
- registers: the f32 accumulator tile spread over the block's threads, ``block_m * block_n /
  (32 * num_warps)``, at most 128 per thread (of 255: the rest hold addresses and the A/B
  fragments; beyond it Triton spills or fails), and each warp owns at least a 16 x 16 piece of it
  (``block_m * block_n >= 256 * num_warps``: an MMA tile per warp);
- tiles no larger than the problem needs (the next power of two >= the dim, at least 16), and
  ``block_k * split_k <= K`` (every k-slice has work); an activation does not follow split-K;
- precision by compute capability: ``tf32``/``bf16`` from sm_80, ``f8e4m3`` from sm_89 (needs
  ``block_k >= 32``); ``f16`` everywhere.

Precisions follow the CPU tuner's error-budget rule (:func:`tilewise.tuner.space.precisions`): the
workload's own (``f32`` = IEEE fp32) always; the lower ones only when the user gave an error budget
(``SpaceOptions.precisions`` non-empty), and every result is then checked against that budget
(``wrong_result`` above it), so a variant earns its way in by measurement.  The epilogue is not
searched: it is what the kernel computes, fixed per run (``GpuSpaceOptions.epilogues``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tilewise.ir.triton_gemm import ELEMENT_BYTES, EPILOGUES
from tilewise.tuner.space import Space, SpaceOptions, register_gpu_space

BLOCK_MN = (16, 32, 64, 128, 256)
BLOCK_K = (16, 32, 64, 128)
GROUP_M = (1, 4, 8)
NUM_WARPS = (1, 2, 4, 8)
NUM_STAGES = (2, 3, 4, 5)
SPLIT_K = (1, 2, 4, 8)
MAX_ACC_REGS_PER_THREAD = 128
#: GPU precisions lower than the workload's dtype, in order of decreasing accuracy
LOWER_PRECISIONS = {"f32": ("tf32", "bf16", "f16", "f8e4m3"), "bf16": ("f8e4m3",), "f16": ("f8e4m3",)}


@dataclass(frozen=True)
class GpuSpaceOptions:
    """Ranges of the GPU space; the defaults are the full space, the study uses a smaller one."""
    block_mn: tuple[int, ...] = BLOCK_MN
    block_k: tuple[int, ...] = BLOCK_K
    group_m: tuple[int, ...] = GROUP_M
    num_warps: tuple[int, ...] = NUM_WARPS
    num_stages: tuple[int, ...] = NUM_STAGES
    split_k: tuple[int, ...] = SPLIT_K
    epilogues: tuple[str, ...] = ("none",)


def capability(target) -> int:
    """``sm_90`` -> 90."""
    try:
        return int(target.arch.removeprefix("sm_"))
    except ValueError:
        return 0


def precision_available(precision: str, target) -> bool:
    cc = capability(target)
    return {"f32": True, "f16": cc >= 53, "tf32": cc >= 80, "bf16": cc >= 80, "f8e4m3": cc >= 89}[precision]


def gpu_precisions(w, target, options: SpaceOptions) -> list[str]:
    """The workload's dtype, then the lower precisions the GPU has, when a budget admits them."""
    lower = [p for p in LOWER_PRECISIONS.get(w.dtype, ()) if precision_available(p, target)]
    return [w.dtype] + (lower if options.precisions else [])


def smem_bytes(s: Mapping[str, Any]) -> int:
    per_stage = s["block_m"] * s["block_k"] + s["block_k"] * s["block_n"]
    return per_stage * s["num_stages"] * ELEMENT_BYTES[s["precision"]]


def _fit(dim: int) -> int:
    """The largest useful tile for a dim: its next power of two, at least 16."""
    return max(16, 1 << max(0, dim - 1).bit_length())


def illegal_reason(s: Mapping[str, Any], dims: Mapping[str, int], target) -> str | None:
    """Why ``s`` cannot run on ``target`` for a problem of ``dims`` (None: it can)."""
    bm, bn, bk = s["block_m"], s["block_n"], s["block_k"]
    if bm > _fit(dims["m"]) or bn > _fit(dims["n"]) or bk > _fit(dims["k"]):
        return "a tile larger than the problem"
    if s.get("split_k", 1) > 1 and bk * s["split_k"] > dims["k"]:
        return f"split_k {s['split_k']} leaves k-slices without work"
    if s.get("split_k", 1) > 1 and s.get("epilogue", "none") in ("bias_relu", "bias_gelu"):
        return "an activation cannot follow split-K"
    if not precision_available(s["precision"], target):
        return f"precision {s['precision']} needs a newer GPU than {target.arch}"
    if s["precision"] == "f8e4m3" and bk < 32:
        return "fp8 needs block_k >= 32"
    smem = target.caches.get("smem_per_block_optin") or target.caches.get("smem_per_block", 48 * 1024)
    if smem_bytes(s) > smem:
        return f"shared memory {smem_bytes(s)} B exceeds {smem} B per block"
    warps = s["num_warps"]
    if bm * bn < 256 * warps:
        return f"{warps} warps on a {bm}x{bn} tile: less than a 16x16 MMA tile per warp"
    if bm * bn / (32 * warps) > MAX_ACC_REGS_PER_THREAD:
        return f"{bm * bn // (32 * warps)} accumulator registers per thread"
    return None


def gemm_space(w, target, options: SpaceOptions, gpu: GpuSpaceOptions | None = None) -> Space:
    gpu = gpu or GpuSpaceOptions()
    dims = w.loop_dims
    if not precision_available(w.dtype, target):
        raise ValueError(f"{w.dtype} needs a GPU of compute capability 8.0 or newer; {target.name} is {target.arch}")
    unknown = [e for e in gpu.epilogues if e not in EPILOGUES]
    if unknown:
        raise ValueError(f"unknown epilogue {unknown[0]!r}: use one of {', '.join(EPILOGUES)}")
    mn_m = [b for b in gpu.block_mn if b <= _fit(dims["m"])]
    mn_n = [b for b in gpu.block_mn if b <= _fit(dims["n"])]
    ks = [b for b in gpu.block_k if b <= _fit(dims["k"])]
    return Space(
        {
            "block_m": mn_m or [16],
            "block_n": mn_n or [16],
            "block_k": ks or [16],
            "group_m": list(gpu.group_m),
            "num_warps": list(gpu.num_warps),
            "num_stages": list(gpu.num_stages),
            "split_k": [v for v in gpu.split_k if v == 1 or v * 16 <= dims["k"]],
            "precision": gpu_precisions(w, target, options),
            "epilogue": list(gpu.epilogues),
        },
        lambda s: illegal_reason(s, dims, target) is None,
    )


@register_gpu_space("matmul", "batch_matmul")
def default_gemm_space(w, target, options: SpaceOptions) -> Space:
    return gemm_space(w, target, options)


def default_schedule(w, target) -> dict[str, Any]:
    """What an untuned Triton GEMM uses (the tutorial's config, cut to the problem and target)."""
    dims = w.loop_dims
    s = {"block_m": min(128, _fit(dims["m"])), "block_n": min(128, _fit(dims["n"])),
         "block_k": min(32, _fit(dims["k"])), "group_m": 8, "num_warps": 4, "num_stages": 3,
         "split_k": 1, "precision": w.dtype, "epilogue": "none"}
    while illegal_reason(s, dims, target) is not None and s["num_stages"] > 1:
        s["num_stages"] -= 1
    while illegal_reason(s, dims, target) is not None and s["num_warps"] > 1:
        s["num_warps"] //= 2
    return s
