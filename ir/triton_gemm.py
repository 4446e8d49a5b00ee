"""GPU schedules of ``matmul`` / ``batch_matmul`` realised as Triton kernels.

A GPU schedule is a plain :class:`~tilewise.core.schedule.Schedule` with these knobs (Triton's
``Config`` plus what the kernel computes in):

``block_m``, ``block_n``, ``block_k``  the thread block's output tile and its k step
``group_m``     GROUP_M swizzle: row-blocks launched together so their B panels stay in L2
``num_warps``   warps per thread block
``num_stages``  software-pipelining depth of the k loop (shared-memory buffers)
``split_k``     programs that share one output tile along k (partial sums added atomically)
``precision``   what A and B are stored and multiplied in: ``f32`` (IEEE fp32 MMA), ``tf32``
                (fp32 storage, tf32 tensor cores), ``bf16``, ``f16``, ``f8e4m3`` (fp8); the
                accumulator is always f32 and so is C (the workload dtype's accumulator)
``epilogue``    ``none`` | ``bias`` | ``bias_relu`` | ``bias_gelu``: fused ``act(A @ B + bias)``
                (gelu in its tanh form); with an epilogue the kernel computes that function and
                is checked against it

The *structure* of a kernel (batch or not, split-K, precision, epilogue) is rendered into Triton
source text (:func:`render_source`, compared as text by the tests); the tile knobs are Triton
``constexpr`` launch meta-parameters.  The source is written once to a file named by its sha256
(``triton.jit`` reads the source of what it compiles) and imported from there.

Nothing here imports triton or torch at module import; :func:`load_kernel` does.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping

#: precision knob -> (torch dtype name of A/B, tl.dot input_precision or None)
PRECISIONS: dict[str, tuple[str, str | None]] = {
    "f32": ("float32", "ieee"),
    "tf32": ("float32", "tf32"),
    "bf16": ("bfloat16", None),
    "f16": ("float16", None),
    "f8e4m3": ("float8_e4m3fn", None),
}
ELEMENT_BYTES = {"f32": 4, "tf32": 4, "bf16": 2, "f16": 2, "f8e4m3": 1}
EPILOGUES = ("none", "bias", "bias_relu", "bias_gelu")
KNOBS = ("block_m", "block_n", "block_k", "group_m", "num_warps", "num_stages", "split_k",
         "precision", "epilogue")
#: sqrt(2/pi) * 2: x * sigmoid(2 z) == 0.5 x (1 + tanh z), the tanh form of GELU
_GELU_2C = 1.5957691216057308
_GELU_A = 0.044715


class TritonScheduleError(ValueError):
    """A GPU schedule that names no kernel (unknown precision, epilogue, missing knob)."""


@dataclass(frozen=True)
class GemmConfig:
    """The knobs of one GPU GEMM schedule, checked for form (not for the target: see
    :mod:`tilewise.tuner.spaces.gpu_gemm` for legality on a device)."""
    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    split_k: int = 1
    precision: str = "f32"
    epilogue: str = "none"

    def __post_init__(self):
        for name in ("block_m", "block_n", "block_k"):
            v = getattr(self, name)
            if v < 16 or v & (v - 1):
                raise TritonScheduleError(f"{name}={v}: Triton's tl.dot needs a power of two >= 16")
        if self.group_m < 1 or self.split_k < 1 or self.num_stages < 1:
            raise TritonScheduleError("group_m, split_k and num_stages must be >= 1")
        if self.num_warps not in (1, 2, 4, 8, 16):
            raise TritonScheduleError(f"num_warps={self.num_warps}: use 1, 2, 4, 8 or 16")
        if self.precision not in PRECISIONS:
            raise TritonScheduleError(f"precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.epilogue not in EPILOGUES:
            raise TritonScheduleError(f"epilogue {self.epilogue!r}: use one of {', '.join(EPILOGUES)}")
        if self.split_k > 1 and self.epilogue in ("bias_relu", "bias_gelu"):
            raise TritonScheduleError("an activation cannot follow split-K partial sums (they are added atomically)")

    @classmethod
    def from_schedule(cls, s: Mapping[str, Any]) -> "GemmConfig":
        missing = [k for k in ("block_m", "block_n", "block_k") if k not in s]
        if missing:
            raise TritonScheduleError(f"GPU schedule lacks {', '.join(missing)}")
        unknown = sorted(set(s) - set(KNOBS))
        if unknown:
            raise TritonScheduleError(f"GPU schedule has unknown knobs {', '.join(unknown)}")
        return cls(**{k: s[k] for k in KNOBS if k in s})

    @property
    def has_bias(self) -> bool:
        return self.epilogue != "none"

    @property
    def activation(self) -> str:
        return self.epilogue.removeprefix("bias_") if self.epilogue.startswith("bias_") else "none"

    def meta(self) -> dict[str, int]:
        """Triton launch meta-parameters (constexprs plus num_warps / num_stages)."""
        return {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_K": self.block_k,
                "GROUP_M": self.group_m, "SPLIT_K": self.split_k,
                "num_warps": self.num_warps, "num_stages": self.num_stages}


# -- source --------------------------------------------------------------------------------------
_HEADER = '''"""Generated by tilewise.ir.triton_gemm (do not edit): {variant}."""
import triton.language as tl


def gemm_kernel(a_ptr, b_ptr, c_ptr, bias_ptr, M, N, K,
                stride_ab, stride_am, stride_ak, stride_bb, stride_bk, stride_bn,
                stride_cb, stride_cm, stride_cn,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr):
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_b = tl.program_id(2)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    # GROUP_M swizzle: GROUP_M row-blocks sweep the column-blocks together (L2 reuse of B)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + pid_b * stride_ab + rm[:, None] * stride_am + rk[None, :] * stride_ak
    b_ptrs = b_ptr + pid_b * stride_bb + rk[:, None] * stride_bk + rn[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K * SPLIT_K)):
        k_left = K - k * BLOCK_K * SPLIT_K
        a = tl.load(a_ptrs, mask=(rm[:, None] < M) & (rk[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(rk[:, None] < k_left) & (rn[None, :] < N), other=0.0)
{dot}
        a_ptrs += BLOCK_K * SPLIT_K * stride_ak
        b_ptrs += BLOCK_K * SPLIT_K * stride_bk
'''

_BIAS = '''    bias = tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)
{bias_add}
'''
_STORE = '''    c_ptrs = c_ptr + pid_b * stride_cb + rm[:, None] * stride_cm + rn[None, :] * stride_cn
    c_mask = (rm[:, None] < M) & (rn[None, :] < N)
{store}
'''


def variant(cfg: GemmConfig, batched: bool) -> str:
    """The structural part of a schedule: what selects one generated source."""
    return (f"{'batch_matmul' if batched else 'matmul'}, precision {cfg.precision}, "
            f"epilogue {cfg.epilogue}, {'split-K' if cfg.split_k > 1 else 'no split-K'}")


def render_source(cfg: GemmConfig, batched: bool = False, interpret: bool = False) -> str:
    """Triton source of the kernel for ``cfg``'s structure (tile sizes are launch meta).

    ``interpret``: the source for Triton's interpreter, which differs in one place: triton 3.9's
    interpreter multiplies bf16 tiles as their raw uint16 bit patterns (``create_dot`` in
    ``triton/runtime/interpreter.py`` widens fp8 to fp16 but passes bf16's uint16 storage to
    ``np.matmul``), so there a bf16 tile is widened to f32 before ``tl.dot``: the same products
    (a bf16 x bf16 product is exact in f32) and the same f32 accumulation as the tensor cores."""
    _, input_precision = PRECISIONS[cfg.precision]
    if input_precision is not None:
        dot = f'        acc = tl.dot(a, b, acc, input_precision="{input_precision}")'
    elif interpret and cfg.precision == "bf16":
        dot = ("        # interpreter only: bf16 widened to f32 (exact products), see render_source\n"
               "        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc)")
    else:
        dot = "        acc = tl.dot(a, b, acc)"
    body = _HEADER.format(variant=variant(cfg, batched), dot=dot)
    if cfg.has_bias:
        # with split-K only the first k-slice adds the bias (the slices are summed atomically)
        bias_add = ("    acc += bias[None, :] * (pid_k == 0).to(tl.float32)" if cfg.split_k > 1
                    else "    acc += bias[None, :]")
        body += _BIAS.format(bias_add=bias_add)
    if cfg.activation == "relu":
        body += "    acc = tl.maximum(acc, 0.0)\n"
    elif cfg.activation == "gelu":
        body += (f"    acc = acc * tl.sigmoid({_GELU_2C!r} * (acc + {_GELU_A!r} * acc * acc * acc))\n")
    store = ("    tl.atomic_add(c_ptrs, acc, mask=c_mask)" if cfg.split_k > 1
             else "    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=c_mask)")
    return body + _STORE.format(store=store)


def source_key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def _source_dir() -> str:
    base = os.environ.get("TILEWISE_TRITON_SRC") or os.path.join(tempfile.gettempdir(), f"tilewise-triton-{os.getuid()}")
    os.makedirs(base, exist_ok=True)
    return base


def interpret_mode() -> bool:
    """Whether kernels run in Triton's interpreter (``TRITON_INTERPRET=1``: numpy on the CPU)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


@functools.lru_cache(maxsize=64)
def _load(source: str, interpret: bool):
    key = source_key(source)
    path = os.path.join(_source_dir(), f"gemm_{key[:24]}.py")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            fh.write(source)
        os.replace(tmp, path)              # atomic: concurrent writers write the same text
    spec = importlib.util.spec_from_file_location(f"tilewise_triton_gemm_{key[:24]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if interpret:
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction
        if not isinstance(tl.cdiv, InterpretedFunction):
            raise RuntimeError("Triton's interpreter is chosen when triton is first imported: set "
                               "TRITON_INTERPRET=1 before that (GpuRunner(device='interpret') does)")
        return InterpretedFunction(module.gemm_kernel)
    import triton
    return triton.jit(module.gemm_kernel)


def load_kernel(cfg: GemmConfig, batched: bool = False, interpret: bool | None = None):
    """The Triton kernel for ``cfg``'s structure: a ``JITFunction``, or in interpreter mode an
    ``InterpretedFunction`` (the same source run by numpy, for CPU tests)."""
    interpret = interpret_mode() if interpret is None else interpret
    return _load(render_source(cfg, batched, interpret), interpret)


def grid(cfg: GemmConfig, m: int, n: int, batch: int = 1) -> tuple[int, int, int]:
    return (-(-m // cfg.block_m) * -(-n // cfg.block_n), cfg.split_k, batch)


class GemmLauncher:
    """``launcher(a, b, c, bias=None)``: C = epilogue(A @ B) on torch tensors of shape
    ``[B,] M x K``, ``[B,] K x N``, ``[B,] M x N`` (C float32, zeroed here first under split-K)."""

    def __init__(self, cfg: GemmConfig, batched: bool, interpret: bool | None = None):
        self.cfg, self.batched = cfg, batched
        self.kernel = load_kernel(cfg, batched, interpret)
        self.interpret = interpret_mode() if interpret is None else interpret

    def __call__(self, a, b, c, bias=None):
        g, args, meta = self._launch(a, b, c, bias)
        if self.cfg.split_k > 1:
            c.zero_()
        self.kernel[g](*args, **meta)
        return c

    def warmup(self, a, b, c, bias=None) -> None:
        """Compile for these arguments (Triton's cache) without launching."""
        g, args, meta = self._launch(a, b, c, bias)
        self.kernel.warmup(*args, grid=g, **meta)

    def _launch(self, a, b, c, bias):
        cfg = self.cfg
        if self.batched:
            nb, m, k = a.shape
            n = b.shape[2]
            sa, sb, sc = a.stride(), b.stride(), c.stride()
        else:
            (m, k), n, nb = a.shape, b.shape[1], 1
            sa, sb, sc = (0, *a.stride()), (0, *b.stride()), (0, *c.stride())
        if cfg.has_bias and bias is None:
            raise ValueError(f"epilogue {cfg.epilogue!r} needs a bias vector of length N")
        meta = cfg.meta()
        if self.interpret:      # the interpreter takes no num_warps / num_stages
            meta.pop("num_warps"), meta.pop("num_stages")
        args = (a, b, c, bias if bias is not None else c, m, n, k, *sa, *sb, *sc)
        return grid(cfg, m, n, nb), args, meta
