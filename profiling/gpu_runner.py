"""Measuring Triton GEMM schedules on a GPU (or, for tests, in Triton's interpreter).

:func:`measure_gpu` is one candidate: inputs drawn in float64 and rounded to the workload's dtype,
the float64 reference (``act(A @ B + bias)`` for a fused epilogue), the kernel's inputs stored in
the schedule's precision (its rounding is charged to it, as on the CPU), one checked run into a
NaN-poisoned C, then timing with CUDA events: ``triton.testing.do_bench(..., return_mode="all")``
(L2 flushed before every run), every run kept so the record's median and quartiles are real.
Failures are data: a schedule that names no kernel is ``invalid``, a Triton compile failure
``compile_error``, out of shared memory or registers (``OutOfResources``) and any other launch
failure ``runtime_error``, a result beyond the error bound (:func:`~tilewise.profiling.measure.error_bound`:
the budget given, else the op's tolerance for the workload's dtype) ``wrong_result``.

:class:`GpuRunner` runs candidates in one worker process (:mod:`~tilewise.profiling.gpu_worker`;
a CUDA error that poisons the context, a hang or a crash costs that candidate a
``runtime_error``/``timeout`` and the worker is restarted), optionally compiling each batch first
in ``compile_workers`` processes in parallel.  ``device="interpret"`` sets ``TRITON_INTERPRET=1`` in the worker before triton is
imported (the interpreter is chosen at import time, process-wide): the same kernels run by numpy
on CPU tensors, timed with ``perf_counter`` -- for tests and ``--dry-run``, not for data.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from tilewise.ir.dtypes import round_to
from tilewise.ir.triton_gemm import PRECISIONS
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.candidate import Candidate
from tilewise.profiling.base import Runner, register_runner
from tilewise.core.measurement import Measurement
from tilewise.profiling.measure import error_bound, rel_error, time_runs

DEVICES = ("cuda", "interpret")


@dataclass(frozen=True)
class GpuRunnerConfig:
    device: str = "cuda"                 # cuda | interpret
    max_rel_error: float | None = None   # None: the op's tolerance for the workload's dtype
    seed: int = 0
    warmup_ms: float = 10.0              # do_bench's warm-up and timed budgets
    rep_ms: float = 50.0
    interpret_repeats: int = 3
    timeout_s: float = 120.0             # one candidate: compile + check + timing
    compile_workers: int = 1             # > 1: compile a batch in that many processes first

    def __post_init__(self):
        if self.device not in DEVICES:
            raise ValueError(f"device {self.device!r}: use one of {', '.join(DEVICES)}")


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


@dataclass
class GemmProblem:
    """float64 values (as the workload's dtype holds them) and the reference result."""
    a: np.ndarray
    b: np.ndarray
    bias: np.ndarray
    batched: bool
    _references: dict = field(default_factory=dict, repr=False, compare=False)

    def reference(self, epilogue: str) -> np.ndarray:
        """The float64 result with ``epilogue`` (computed once per epilogue; do not modify it)."""
        if epilogue not in self._references:
            out = np.matmul(self.a, self.b)
            if epilogue != "none":
                out = out + self.bias
            if epilogue == "bias_relu":
                out = np.maximum(out, 0.0)
            elif epilogue == "bias_gelu":
                out = gelu_tanh(out)
            self._references[epilogue] = out
        return self._references[epilogue]


def make_gemm_problem(w: Workload, seed: int = 0) -> GemmProblem:
    if w.op not in ("matmul", "batch_matmul"):
        raise ValueError(f"the GPU path runs matmul and batch_matmul, not {w.op}")
    d = w.loop_dims
    pre = (d["b"],) if "b" in d else ()
    rng = np.random.default_rng(seed)
    a = round_to(rng.uniform(-1.0, 1.0, pre + (d["m"], d["k"])), w.dtype)
    b = round_to(rng.uniform(-1.0, 1.0, pre + (d["k"], d["n"])), w.dtype)
    bias = round_to(rng.uniform(-1.0, 1.0, (d["n"],)), "f32")
    return GemmProblem(a, b, bias, bool(pre))


def _failure(e: BaseException) -> Measurement:
    name = type(e).__name__
    text = " ".join(str(e).split())[:500]
    if name == "OutOfResources":
        return Measurement("runtime_error", f"out of resources: {text}")
    if name in ("CompilationError", "CompileTimeAssertionFailure") or "compil" in name.lower():
        return Measurement("compile_error", f"{name}: {text}")
    return Measurement("runtime_error", f"{name}: {text}")


def _time(run, config: GpuRunnerConfig, interpret_warmup: int) -> list[float]:
    """Seconds per call of ``run``: triton's ``do_bench`` (every run, ms -> s) on the device, or
    ``interpret_repeats`` plain timed calls in interpreter mode (no device to synchronize)."""
    if config.device == "interpret":
        return time_runs(run, repeats=config.interpret_repeats, min_time_s=0.0, warmup=interpret_warmup)
    from triton.testing import do_bench
    return [t * 1e-3 for t in do_bench(run, warmup=config.warmup_ms, rep=config.rep_ms, return_mode="all")]


def measure_gpu(w: Workload, s: Schedule, config: GpuRunnerConfig = GpuRunnerConfig(),
                problem: GemmProblem | None = None) -> Measurement:
    """One candidate on the device (module docstring); never raises for a bad schedule."""
    from tilewise.ir.triton_gemm import GemmConfig, GemmLauncher, TritonScheduleError
    try:
        cfg = GemmConfig.from_schedule(s)
    except (TritonScheduleError, TypeError) as e:
        return Measurement("invalid", str(e))
    import torch
    interpret = config.device == "interpret"
    dev = "cpu" if interpret else "cuda"
    problem = problem or make_gemm_problem(w, config.seed)
    dt = getattr(torch, PRECISIONS[cfg.precision][0])
    try:
        a = torch.from_numpy(problem.a).to(dev).to(dt)
        b = torch.from_numpy(problem.b).to(dev).to(dt)
        bias = torch.from_numpy(problem.bias).to(dev).to(torch.float32)
        c = torch.full(problem.a.shape[:-1] + (problem.b.shape[-1],), float("nan"), device=dev)
        launcher = GemmLauncher(cfg, problem.batched, interpret=interpret)
        bias_arg = bias if cfg.has_bias else None
        t0 = time.perf_counter()
        launcher(a, b, c, bias_arg)
        if not interpret:
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - t0
    except Exception as e:            # compile errors, out of resources, launch failures: data
        return _failure(e)
    rel = rel_error(c.double().cpu().numpy(), problem.reference(cfg.epilogue))
    bound = error_bound(w, config.max_rel_error)
    if not rel <= bound:
        return Measurement("wrong_result", f"relative error {rel:.3g} exceeds {bound:.3g}",
                           rel_error=rel, compile_time_s=compile_s)

    def run():
        launcher(a, b, c, bias_arg)

    try:
        times = _time(run, config, interpret_warmup=0)
    except Exception as e:
        return _failure(e)
    if not times or min(times) <= 0:
        return Measurement("runtime_error", "non-positive timing: the clock or the kernel is broken",
                           rel_error=rel, compile_time_s=compile_s)
    return Measurement("ok", "", tuple(times), rel, compile_s)


def measure_torch(w: Workload, precision: str, epilogue: str = "none",
                  config: GpuRunnerConfig = GpuRunnerConfig(), problem: GemmProblem | None = None) -> Measurement:
    """The library baseline: ``torch.matmul`` (cuBLAS) of the same problem in ``precision``
    (``tf32`` through ``allow_tf32``; ``f8e4m3`` through ``torch._scaled_mm``), with the epilogue
    as separate torch ops, checked and timed like a candidate."""
    import torch
    interpret = config.device == "interpret"
    dev = "cpu" if interpret else "cuda"
    problem = problem or make_gemm_problem(w, config.seed)
    dt = getattr(torch, PRECISIONS[precision][0])
    a = torch.from_numpy(problem.a).to(dev).to(dt)
    b = torch.from_numpy(problem.b).to(dev).to(dt)
    bias = torch.from_numpy(problem.bias).to(dev).to(torch.float32)
    one = torch.ones((), device=dev)

    def run():
        if precision == "f8e4m3":
            out = torch._scaled_mm(a, b.t().contiguous().t(), scale_a=one, scale_b=one, out_dtype=torch.float32)
        else:
            out = torch.matmul(a, b)
        if epilogue != "none":
            out = out.float() + bias
        if epilogue == "bias_relu":
            out = torch.relu(out)
        elif epilogue == "bias_gelu":
            out = torch.nn.functional.gelu(out, approximate="tanh")
        return out

    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        out = run()
        rel = rel_error(out.double().cpu().numpy(), problem.reference(epilogue))
        times = _time(run, config, interpret_warmup=1)
    except Exception as e:
        return _failure(e)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return Measurement("ok", "", tuple(times), rel, 0.0)


def precompile(w: Workload, s: Schedule, config: GpuRunnerConfig = GpuRunnerConfig()) -> bool:
    """Compile ``s`` for ``w`` into Triton's on-disk cache without launching it (the arguments
    have the shapes, dtypes and alignment of :func:`measure_gpu`'s, so its launch hits the cache).
    False when it does not compile (the timed run records why)."""
    from tilewise.ir.triton_gemm import GemmConfig, GemmLauncher, TritonScheduleError
    try:
        cfg = GemmConfig.from_schedule(s)
    except (TritonScheduleError, TypeError):
        return False
    import torch
    interpret = config.device == "interpret"
    dev = "cpu" if interpret else "cuda"
    d = w.loop_dims
    pre = (d["b"],) if "b" in d else ()
    dt = getattr(torch, PRECISIONS[cfg.precision][0])
    try:
        a = torch.empty(pre + (d["m"], d["k"]), device=dev, dtype=torch.float32).to(dt)
        b = torch.empty(pre + (d["k"], d["n"]), device=dev, dtype=torch.float32).to(dt)
        c = torch.empty(pre + (d["m"], d["n"]), device=dev)
        bias = torch.empty((d["n"],), device=dev) if cfg.has_bias else None
        GemmLauncher(cfg, bool(pre), interpret=interpret).warmup(a, b, c, bias)
        return True
    except Exception:
        return False


# -- the runner ------------------------------------------------------------------------------------
@register_runner("gpu")
class GpuRunner(Runner):
    """Candidates in, measurements out, on one GPU (or the interpreter); see the module docstring.

    With ``compile_workers > 1`` a batch is first compiled by that many worker processes in
    parallel (Triton's on-disk cache), then measured one at a time by the timing worker: the
    compiles, which take longer than the timing, leave the GPU's timing alone and use the host's
    cores."""

    def __init__(self, config: GpuRunnerConfig = GpuRunnerConfig()):
        from tilewise.profiling.gpu_worker import WorkerProcess
        self.config = config
        self._timer = WorkerProcess(config.device)
        self._pool = [WorkerProcess(config.device) for _ in range(config.compile_workers)] \
            if config.compile_workers > 1 else []
        self._closed = False

    def _ask(self, request: dict) -> Measurement:
        from tilewise.profiling.gpu_worker import WorkerDied, WorkerTimeout
        try:
            return Measurement.from_json(self._timer.request(request, self.config.timeout_s))
        except WorkerTimeout as e:
            return Measurement("timeout", str(e))
        except WorkerDied as e:
            return Measurement("runtime_error", str(e))

    def _request(self, c: Candidate, op: str) -> dict:
        return {"op": op, "workload": c.workload.to_json(), "schedule": c.schedule.to_json(),
                "config": asdict(self.config)}

    def reference(self, w: Workload, precision: str | None = None, epilogue: str = "none",
                  threads: int = 1) -> Measurement:
        """:func:`measure_torch` in the timing worker: torch.matmul of ``w`` in ``precision``
        (``threads``: the contract's, a GPU has no use for it).  ``time_ab`` is the contract's
        default: every round the named schedules as one ``run`` batch, then this."""
        if self._closed:
            raise RuntimeError("GpuRunner is closed")
        return self._ask({"op": "reference", "workload": w.to_json(), "config": asdict(self.config),
                          "precision": precision or w.dtype, "epilogue": epilogue})

    def reference_name(self, w: Workload) -> str:
        return "torch.matmul"

    def precompile(self, candidates: Sequence[Candidate]) -> int:
        """Compile ``candidates`` on the compile workers; returns how many compiled."""
        import select
        from tilewise.profiling.gpu_worker import WorkerDied
        queue, busy, compiled = list(candidates), {}, 0
        while queue or busy:
            for wk in self._pool:
                if wk not in busy and queue:
                    try:
                        wk.send(self._request(queue.pop(0), "precompile"))
                        busy[wk] = time.monotonic()
                    except WorkerDied:
                        pass
            if not busy:
                continue
            ready, _, _ = select.select([wk.stdout for wk in busy], [], [], 1.0)
            for wk in list(busy):
                if wk.stdout in ready:
                    try:
                        compiled += bool(wk.read().get("ok"))
                    except WorkerDied:
                        pass
                    del busy[wk]
                elif time.monotonic() - busy[wk] > self.config.timeout_s:
                    wk.stop()
                    del busy[wk]
        return compiled

    def run(self, candidates: Sequence[Candidate]) -> list[Measurement]:
        if self._closed:
            raise RuntimeError("GpuRunner is closed")
        if self._pool and len(candidates) > 1:
            self.precompile(candidates)
        return [self._ask(self._request(c, "measure")) for c in candidates]

    def close(self) -> None:
        for wk in [self._timer, *self._pool]:
            wk.close()
        self._closed = True

