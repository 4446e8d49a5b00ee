"""CUDA targets: an NVIDIA GPU as torch sees it, with its measured peaks.

The descriptor is a :class:`~tilewise.core.target.Target` of kind ``"cuda"`` in the existing
fields (so records, stores and keys need nothing new):

``name``         the device name (``NVIDIA H100 80GB HBM3``)
``arch``, ``isa``  the compute capability, ``sm_90`` (isa also lists ``tensor_cores``, ``bf16``
                 from sm_80, ``fp8`` from sm_89)
``cores``        streaming multiprocessors
``simd_bits``    a warp: 32 lanes of 32 bits
``cache_bytes``  ``L2``, ``smem_per_block`` (the default 48 KiB), ``smem_per_block_optin`` (what a
                 kernel may ask for: the legality bound), ``smem_per_sm``, ``regfile_per_sm``
                 (32-bit registers x 4 bytes), ``regs_per_block`` (x 4 bytes)
``versions``     tilewise, torch-mlir, torch, CUDA and triton versions
``peaks``        measured, not identity (not in ``key()``): ``{f32,tf32,bf16,f16,f8e4m3}_flops_per_s``
                 (torch.matmul on 4096^3-ish, the best of a few runs) and ``dram_bytes_per_s``
                 (a device-to-device copy); measured on first use and cached in
                 ``~/.cache/tilewise/cuda_peaks.json`` by target key

Everything imports torch inside functions; without a GPU :func:`detect_cuda_target` raises
:class:`CudaUnavailable` with the one line the CLI prints.
"""
from __future__ import annotations

import json
import os
from typing import Callable

from tilewise.core.paths import cache_home
from tilewise.core.target import Target, _versions

NO_CUDA_HINT = "run on a machine with an NVIDIA GPU or drop --target cuda"


class CudaUnavailable(RuntimeError):
    """No CUDA device visible to torch (the message is one line for the user)."""


def cuda_problem() -> str | None:
    """Why torch sees no CUDA device (None when it sees one)."""
    try:
        import torch
    except ImportError as e:
        return f"torch cannot be imported ({e})"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable GPU or driver"
    return None


def capability_isa(major: int, minor: int) -> tuple[str, ...]:
    cc = major * 10 + minor
    isa = [f"sm_{major}{minor}"]
    if cc >= 70:
        isa.append("tensor_cores")
    if cc >= 80:
        isa.append("bf16")
    if cc >= 89:
        isa.append("fp8")
    return tuple(sorted(isa))


def target_from_properties(p, versions: tuple[tuple[str, str], ...]) -> Target:
    """A cuda :class:`Target` from ``torch.cuda.get_device_properties`` (or anything with the
    same attributes: the tests pass a stand-in)."""
    cc = f"sm_{p.major}{p.minor}"
    smem_block = int(getattr(p, "shared_memory_per_block", 48 * 1024))
    caches = {
        "L2": int(getattr(p, "L2_cache_size", 0)),
        "smem_per_block": smem_block,
        "smem_per_block_optin": int(getattr(p, "shared_memory_per_block_optin", smem_block) or smem_block),
        "smem_per_sm": int(getattr(p, "shared_memory_per_multiprocessor", smem_block) or smem_block),
        "regfile_per_sm": 4 * int(getattr(p, "regs_per_multiprocessor", 65536) or 65536),
    }
    return Target(kind="cuda", name=str(p.name), arch=cc, isa=capability_isa(p.major, p.minor),
                  cores=int(p.multi_processor_count), simd_bits=32 * 32,
                  cache_bytes=tuple(sorted(caches.items())), versions=versions)


def _gpu_versions() -> tuple[tuple[str, str], ...]:
    import torch
    out = dict(_versions())
    out["torch"] = torch.__version__
    out["cuda"] = str(torch.version.cuda)
    try:
        from importlib import metadata
        out["triton"] = metadata.version("triton")
    except Exception:
        out["triton"] = "unknown"
    return tuple(sorted(out.items()))


def describe_cuda(index: int = 0) -> Target | None:
    """The descriptor of GPU ``index`` without peaks, or None when torch sees none."""
    if cuda_problem() is not None:
        return None
    import torch
    if index >= torch.cuda.device_count():
        return None
    return target_from_properties(torch.cuda.get_device_properties(index), _gpu_versions())


# -- peaks -------------------------------------------------------------------------------------
def _cache_path() -> str:
    return cache_home("cuda_peaks.json")


def load_cached_peaks(target: Target, path: str | None = None) -> dict[str, float] | None:
    try:
        with open(path or _cache_path()) as fh:
            entry = json.load(fh).get(target.key())
    except (OSError, ValueError):
        return None
    return {str(k): float(v) for k, v in entry.items()} if isinstance(entry, dict) else None


def store_cached_peaks(target: Target, peaks: dict[str, float], path: str | None = None) -> None:
    path = path or _cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        data = {}
    data[target.key()] = peaks
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def measure_peaks(target: Target, bench: Callable[[Callable[[], object]], float] | None = None,
                  size: int = 4096) -> dict[str, float]:
    """Best-case FLOP/s of torch.matmul per precision the GPU has, and copy bandwidth.

    ``bench(fn) -> seconds`` (default: ``triton.testing.do_bench``'s median) is injected so the
    arithmetic is testable without a device."""
    import torch
    if bench is None:
        from triton.testing import do_bench

        def bench(fn):
            return do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e-3
    dev = "cuda"
    isa = set(target.isa)
    precisions = {"f32": torch.float32, "tf32": torch.float32, "f16": torch.float16}
    if "bf16" in isa:
        precisions["bf16"] = torch.bfloat16
    peaks: dict[str, float] = {}
    flops = 2.0 * size ** 3
    for name, dt in precisions.items():
        a = torch.randn(size, size, device=dev).to(dt)
        b = torch.randn(size, size, device=dev).to(dt)
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        try:
            peaks[f"{name}_flops_per_s"] = flops / bench(lambda: torch.matmul(a, b))
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    if "fp8" in isa and hasattr(torch, "_scaled_mm"):
        try:
            a = torch.randn(size, size, device=dev).to(torch.float8_e4m3fn)
            b = torch.randn(size, size, device=dev).to(torch.float8_e4m3fn).t()
            one = torch.ones((), device=dev)
            peaks["f8e4m3_flops_per_s"] = flops / bench(
                lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
        except Exception:           # an fp8 GEMM this torch cannot run: no peak, not a failure
            pass
    n_bytes = 1 << 30
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    peaks["dram_bytes_per_s"] = 2.0 * n_bytes / bench(lambda: dst.copy_(src))
    return peaks


def detect_cuda_target(index: int = 0, with_peaks: bool = True, cache_path: str | None = None) -> Target:
    """The GPU at ``index`` with its peaks (measured once, then read from the cache); raises
    :class:`CudaUnavailable` when torch sees no GPU."""
    import dataclasses
    problem = cuda_problem()
    if problem is not None:
        raise CudaUnavailable(f"no CUDA device visible to torch: {problem}; {NO_CUDA_HINT}")
    target = describe_cuda(index)
    if target is None:
        raise CudaUnavailable(f"no CUDA device visible to torch: there is no GPU {index}; {NO_CUDA_HINT}")
    if not with_peaks:
        return target
    peaks = load_cached_peaks(target, cache_path)
    if peaks is None:
        import torch
        with torch.cuda.device(index):
            peaks = measure_peaks(target)
        store_cached_peaks(target, peaks, cache_path)
    return dataclasses.replace(target, peaks=tuple(sorted(peaks.items())))

