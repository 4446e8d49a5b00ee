"""Schedule application, lowering to LLVM and JIT compilation.

``compile(workload, schedule) -> Kernel``.  Every failure (an illegal schedule, a transform that
does not apply, a pass that fails, the JIT refusing the module) raises :class:`CompileError` with a
one-line message; :func:`try_compile` returns it as data instead.
"""
from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Sequence

import numpy as np
from torch_mlir import execution_engine, ir, passmanager

from tilewise.ir.build import KERNEL_NAME, build_module
from tilewise.ir.ops.base import ArgSpec, ScheduleError
from tilewise.core.schedule import Schedule
from tilewise.ir.script import Script
from tilewise.core.workload import Workload


class CompileError(RuntimeError):
    """The schedule could not be applied, lowered or JIT-compiled (message says which stage)."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage}: {message}")


_BUFFERS = "buffer-deallocation-pipeline,convert-bufferization-to-memref"
_TO_LLVM_TAIL = ("expand-strided-metadata,lower-affine,finalize-memref-to-llvm,convert-scf-to-cf,"
                 "convert-vector-to-llvm{{reassociate-fp-reductions=true{x86}}},finalize-memref-to-llvm,convert-math-to-llvm,"
                 "convert-math-to-libm,convert-index-to-llvm,convert-ub-to-llvm,convert-func-to-llvm,"
                 "convert-arith-to-llvm,convert-cf-to-llvm,{omp}reconcile-unrealized-casts")


@functools.lru_cache(maxsize=1)
def _host_converts_bf16() -> bool:
    """Whether the JIT's host CPU rounds f32 to bf16 in hardware (``avx512_bf16``:
    ``vcvtneps2bf16``).  Without it LLVM calls ``__truncsfbf2``, which the JIT cannot resolve."""
    from tilewise.core.target import detect
    return "avx512_bf16" in detect().isa


def lowering_pipeline(threads: int, *, native_bf16: bool | None = None, x86: bool = False) -> str:
    """Pass pipeline from the scheduled (bufferized, vectorized) module to the LLVM dialect.

    ``finalize-memref-to-llvm`` precedes ``convert-scf-to-cf`` so that the OpenMP path works
    (MLIR_NOTES, "Parallel").  On a CPU without ``avx512_bf16`` (``native_bf16`` False; None: the
    host's), bf16 arithmetic is done in f32 and ``arith-expand{include-bf16}`` rewrites the f32 -> bf16
    rounding into vector integer ops (round to nearest even, as the hardware does) instead of a
    libcall per element.  ``x86``: the ``x86`` dialect's ops (``x86.avx512.dot``, ...) lower to
    their intrinsics (``convert-vector-to-llvm{enable-x86}``; :mod:`tilewise.ir.dot_units`).
    """
    if native_bf16 is None:
        native_bf16 = _host_converts_bf16()
    bf16 = "" if native_bf16 else (",arith-emulate-unsupported-floats{source-types=bf16 target-type=f32},"
                                   "arith-expand{include-bf16=true}")
    loops = f"func.func(convert-linalg-to-loops,convert-vector-to-scf{{full-unroll=true}}{bf16})"
    x86_option = " enable-x86=true" if x86 else ""
    if threads > 1:
        head = f"func.func(scf-forall-to-parallel),convert-scf-to-openmp{{num-threads={threads}}},{loops}"
        tail = _TO_LLVM_TAIL.format(omp="convert-openmp-to-llvm,", x86=x86_option)
    else:
        head = f"func.func(scf-forall-to-for),{loops}"
        tail = _TO_LLVM_TAIL.format(omp="", x86=x86_option)
    return f"builtin.module({_BUFFERS},{head},{tail})"


#: tilewise's libgomp adapter: the ``__kmpc_*`` entry points of MLIR's OpenMP lowering over GNU
#: libgomp, the runtime PyTorch's CPU build runs its own ops on (one thread team for both)
KMPC_ADAPTER_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gomp_kmpc.c")


@functools.lru_cache(maxsize=1)
def openmp_runtime() -> str:
    """The shared library multi-thread kernels get their ``__kmpc_*`` entry points from.

    The libgomp adapter (``gomp_kmpc.c``, built once per source and compiler under
    ``~/.cache/tilewise/runtime``), linked so that it resolves ``libgomp.so.1`` to the copy torch
    ships: kernels and torch's eager ops then share one OpenMP thread team, and no environment
    variable is needed for the two not to fight over the cores.  Where no C compiler with OpenMP
    is at hand: ``libiomp5.so`` of the ``intel-openmp`` wheel (a second runtime, as before).
    ``TILEWISE_OPENMP=libiomp5`` picks libiomp5 anyway (for A/B measurements of the two)."""
    if os.environ.get("TILEWISE_OPENMP", "").lower() == "libiomp5":
        return _libiomp5()
    try:
        return kmpc_adapter()
    except CompileError as e:
        import warnings
        warnings.warn(f"tilewise: {e}; multi-thread kernels use libiomp5, a second OpenMP runtime beside "
                      f"torch's", RuntimeWarning, stacklevel=2)
        return _libiomp5()


def _torch_lib_dir() -> str | None:
    """torch's bundled-library folder (its libgomp.so.1), found without importing torch."""
    import importlib.util
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return None
    lib = os.path.join(os.path.dirname(spec.origin), "lib")
    return lib if os.path.exists(os.path.join(lib, "libgomp.so.1")) else None


def kmpc_adapter(cache: str | None = None) -> str:
    """Path of the built libgomp adapter (built now when missing); raises CompileError("link")."""
    import hashlib
    import tempfile
    from tilewise.core.paths import cache_home
    with open(KMPC_ADAPTER_SOURCE, "rb") as f:
        source = f.read()
    torch_lib = _torch_lib_dir()
    try:
        compiler = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError("link", f"no C compiler for the OpenMP adapter: {_one_line(e)}") from None
    digest = hashlib.sha256(source + compiler.encode() + str(torch_lib).encode()).hexdigest()[:16]
    folder = cache or cache_home("runtime")
    path = os.path.join(folder, f"libtilewise_kmpc-{digest}.so")
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    cmd = ["gcc", "-O2", "-fPIC", "-shared", "-fopenmp", "-o", tmp, KMPC_ADAPTER_SOURCE]
    if torch_lib:                            # libgomp.so.1 is torch's copy, whichever loads first
        cmd += [f"-Wl,-rpath,{torch_lib}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise CompileError("link", "building the OpenMP adapter failed: "
                                       + _one_line(RuntimeError(done.stderr or done.stdout)))
        os.replace(tmp, path)               # atomic: a concurrent build finds a whole library or none
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _libiomp5() -> str:
    """Path of ``libiomp5.so`` from the installed ``intel-openmp`` wheel (exports ``__kmpc_*``)."""
    try:
        files = metadata.files("intel-openmp") or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "libiomp5.so":
            return str(f.locate().resolve())
    raise CompileError("jit", "the OpenMP runtime libiomp5.so was not found: install the "
                              "'intel-openmp' package (pip install intel-openmp)")


# --- calling kernels ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=None)
def _descriptor_type(rank: int):
    """The ctypes struct of a rank-``rank`` memref descriptor (one class per rank: building a
    ctypes class costs microseconds, more than a small kernel's call)."""
    fields = [("allocated", ctypes.c_void_p), ("aligned", ctypes.c_void_p), ("offset", ctypes.c_longlong)]
    if rank:
        fields += [("sizes", ctypes.c_longlong * rank), ("strides", ctypes.c_longlong * rank)]
    return type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})


def _descriptor(a: np.ndarray):
    if not a.flags.c_contiguous:
        raise ValueError("kernel arguments must be C-contiguous arrays")
    d = _descriptor_type(a.ndim)()
    d.allocated = d.aligned = a.ctypes.data
    d.offset = 0
    if a.ndim:
        d.sizes[:] = a.shape
        d.strides[:] = [s // a.itemsize for s in a.strides]
    return d


def _descriptors(specs: Sequence[ArgSpec], arrays: Sequence[np.ndarray]) -> list:
    """Memref descriptors for ``arrays``, checked against the kernel's argument specs."""
    if len(arrays) != len(specs):
        raise ValueError(f"kernel takes {len(specs)} arrays, got {len(arrays)}")
    for a, spec in zip(arrays, specs):
        if tuple(a.shape) != spec.shape:
            raise ValueError(f"argument shape {a.shape} != expected {spec.shape}")
    return [_descriptor(a) for a in arrays]


@dataclass
class Kernel:
    """A compiled kernel: call it with numpy arrays (inputs, then outputs), written in place."""

    workload: Workload
    schedule: Schedule
    arg_specs: list[ArgSpec]
    compile_time_s: float
    _engine: execution_engine.ExecutionEngine = field(repr=False)
    _context: ir.Context = field(repr=False)
    _fn: object = field(default=None, repr=False)

    def __post_init__(self):
        self._fn = self._engine.lookup(KERNEL_NAME)

    def bind(self, arrays: Sequence[np.ndarray]):
        """Pre-build the argument block; returns a zero-argument callable (for timing loops)."""
        descs = _descriptors(self.arg_specs, arrays)
        ptrs = [ctypes.pointer(d) for d in descs]
        pptrs = [ctypes.pointer(p) for p in ptrs]
        packed = (ctypes.c_void_p * len(pptrs))(*[ctypes.cast(p, ctypes.c_void_p) for p in pptrs])
        fn = self._fn
        keep = (self, arrays, descs, ptrs, pptrs)   # the engine must outlive the callable

        def call(_keep=keep):
            fn(packed)
        return call

    def __call__(self, *arrays: np.ndarray) -> None:
        self.bind(arrays)()


# --- the pipeline ------------------------------------------------------------------------------
def _run(pipeline: str, module: ir.Module, stage: str) -> None:
    try:
        passmanager.PassManager.parse(pipeline).run(module.operation)
    except ir.MLIRError as e:
        raise CompileError(stage, _one_line(e)) from None


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 400 else text[:397] + "..."


def _strip_transform(module: ir.Module) -> None:
    for op in list(module.body.operations):
        if op.operation.name == "transform.named_sequence":
            op.operation.erase()
    if "transform.with_named_sequence" in module.operation.attributes:
        del module.operation.attributes["transform.with_named_sequence"]


def _drop_returned_outputs(module: ir.Module) -> None:
    """Kernels write their outputs in place: drop results that alias an argument buffer.

    ``drop-equivalent-buffer-results`` only touches private functions (a public ABI is kept), so
    the kernel is private for the duration of the pass."""
    funcs = [op.operation for op in module.body.operations if op.operation.name == "func.func"]
    for f in funcs:
        f.attributes["sym_visibility"] = ir.StringAttr.get("private")
    _run("builtin.module(drop-equivalent-buffer-results)", module, "bufferize")
    for f in funcs:
        del f.attributes["sym_visibility"]
    kernel = funcs[0].attributes["function_type"]
    if ir.FunctionType(ir.TypeAttr(kernel).value).results:
        raise CompileError("bufferize", "an output was not bufferized in place into its argument")


def apply_schedule(module: ir.Module, emit: Callable[[Script], None], *, what: str = "transform script",
                   passthrough: tuple[type[BaseException], ...] = ()) -> ir.Module:
    """Build a transform script over ``module`` with ``emit(script)``, run it, and leave the
    bufferized kernel in place (script erased, in-place outputs no longer returned).  This is the
    one schedule -> transform step of every kernel: a tuned op (``w.kind.schedule``) and a fused
    group of the torch backend alike.  ScheduleError and ``passthrough`` errors of ``emit`` pass
    through; any other is a bug in the script builder, reported as ``CompileError("schedule")``."""
    script = Script(module, consumes_root=True)
    try:
        emit(script)
        script.finish()
    except (ScheduleError, *passthrough):
        raise
    except Exception as e:
        raise CompileError("schedule", f"building the {what} failed: {_one_line(e)}") from None
    _run("builtin.module(transform-interpreter)", module, "transform")
    _strip_transform(module)
    _drop_returned_outputs(module)
    return module


#: LLVM rounds a scalar f32 to bf16 through this compiler-rt routine on a CPU without
#: ``avx512_bf16`` (for instance where it builds a vector from bf16 elements); neither the JIT nor
#: GCC 12's libgcc has it, so each module defines it (weak: kernels linked together share one),
#: as ``arith.truncf``, which the lowering expands to integer ops (round to nearest even).
_BF16_ROUNDING = """
func.func @__truncsfbf2(%x: f32) -> bf16 attributes {llvm.linkage = #llvm.linkage<weak>} {
  %r = arith.truncf %x : f32 to bf16
  return %r : bf16
}"""


def _define_bf16_rounding(module: ir.Module) -> None:
    defined = {ir.StringAttr(op.attributes["sym_name"]).value for op in module.body.operations
               if "sym_name" in op.attributes}
    if "__truncsfbf2" not in defined:
        routine = ir.Module.parse(_BF16_ROUNDING, context=module.context)
        for op in list(routine.body.operations):
            module.body.append(op.detach_from_parent())


def jit_engine(module: ir.Module, threads: int, *, opt_level: int = 3, lookup: bool = False):
    """Lower the scheduled ``module`` to LLVM and JIT it (with the OpenMP runtime for ``threads``
    > 1); ``lookup`` resolves the kernel now, so its object code exists.  Raises CompileError."""
    if not _host_converts_bf16():
        _define_bf16_rounding(module)
    _run(lowering_pipeline(threads), module, "lower")
    libs = [openmp_runtime()] if threads > 1 else []
    try:
        engine = execution_engine.ExecutionEngine(module, opt_level=opt_level, shared_libs=libs)
        if lookup:
            engine.lookup(KERNEL_NAME)
    except Exception as e:
        raise CompileError("jit", _one_line(e)) from None
    return engine


def write_shared_library(engine, library_path: str, threads: int) -> None:
    """Dump a JIT engine's object code and link it into ``library_path`` (:func:`link_shared_library`)."""
    object_path = library_path + ".o"
    try:
        engine.dump_to_object_file(object_path)
        link_shared_library(object_path, library_path, threads=threads)
    finally:
        if os.path.exists(object_path):
            os.remove(object_path)


def scheduled_module(w: Workload, s: Schedule, ctx_module) -> ir.Module:
    """Apply ``s`` to the module of ``w`` (in place); returns the bufferized, scheduled module."""
    _, module = ctx_module
    return apply_schedule(module, lambda script: w.kind.schedule(script, w, s))


def transformed_ir(w: Workload, s: Schedule) -> str:
    """The scheduled module as text (after the transform script, before lowering to LLVM)."""
    w.kind.validate(w, s)
    with build_module(w, s.get("precision", w.dtype)) as cm:
        return str(scheduled_module(w, s, cm))


def compile(w: Workload, s: Schedule, *, opt_level: int = 3) -> Kernel:
    """Validate, schedule, lower and JIT ``w`` under ``s``.  Raises ScheduleError or CompileError."""
    w.kind.validate(w, s)
    t0 = time.perf_counter()
    precision = s.get("precision", w.dtype)
    threads = int(s.get("threads", 1))
    cm = build_module(w, precision)
    ctx, module = cm.__enter__()
    try:
        scheduled_module(w, s, (ctx, module))
        engine = jit_engine(module, threads, opt_level=opt_level)
        kernel = Kernel(w, s, w.kind.args(w, precision), 0.0, engine, ctx)
        kernel.compile_time_s = time.perf_counter() - t0
        return kernel
    finally:
        cm.__exit__(None, None, None)


def try_compile(w: Workload, s: Schedule, **kw) -> tuple[Kernel | None, str | None]:
    """``compile`` with failures as data: ``(kernel, None)`` or ``(None, message)``."""
    try:
        return compile(w, s, **kw), None
    except (ScheduleError, CompileError) as e:
        return None, str(e)


# --- shared libraries: build in one process, run in another ------------------------------------
#: the C interface a kernel library exports: ``void _mlir_ciface_kernel(desc *, desc *, ...)``, one
#: memref descriptor pointer per argument, inputs then outputs (outputs written in place)
C_INTERFACE_SYMBOL = f"_mlir_ciface_{KERNEL_NAME}"


def link_shared_library(object_path: str, library_path: str, *, threads: int = 1) -> None:
    """Link a kernel object into a shared library with ``gcc -shared``; raises CompileError("link").

    JIT objects use the large code model and are not position independent, so the library carries
    text relocations (``-z notext``: accepted, no warning).  A multi-thread kernel is linked against
    :func:`openmp_runtime` with an rpath, so the library loads on its own."""
    cmd = ["gcc", "-shared", "-o", library_path, object_path, "-Wl,-z,notext", "-lm"]
    if threads > 1:
        omp = openmp_runtime()
        cmd += [f"-L{os.path.dirname(omp)}", f"-l:{os.path.basename(omp)}", f"-Wl,-rpath,{os.path.dirname(omp)}"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CompileError("link", _one_line(e)) from None
    if done.returncode:
        raise CompileError("link", _one_line(RuntimeError(done.stderr or done.stdout)))


def compile_to_shared_library(w: Workload, s: Schedule, library_path: str, *, opt_level: int = 3) -> float:
    """``compile`` ``w`` under ``s``, then write the kernel as a shared library at ``library_path``
    (exporting :data:`C_INTERFACE_SYMBOL`); returns the build time in seconds.

    Raises ScheduleError or CompileError, as ``compile`` does (stage "link" when linking fails)."""
    t0 = time.perf_counter()
    kernel = compile(w, s, opt_level=opt_level)    # looks the kernel up: its object code now exists
    write_shared_library(kernel._engine, library_path, int(s.get("threads", 1)))
    return time.perf_counter() - t0


class LibraryKernel:
    """A kernel loaded from a shared library that exports :data:`C_INTERFACE_SYMBOL`; called like
    :class:`Kernel`.  ``close()`` unloads the library (no callable bound from it may run after)."""

    def __init__(self, library_path: str, arg_specs: Sequence[ArgSpec]):
        self.arg_specs = list(arg_specs)
        self._lib = ctypes.CDLL(library_path, mode=ctypes.RTLD_LOCAL)
        try:
            self._fn = getattr(self._lib, C_INTERFACE_SYMBOL)
        except AttributeError:
            self.close()
            raise
        self._fn.argtypes = [ctypes.c_void_p] * len(self.arg_specs)
        self._fn.restype = None

    def bind(self, arrays: Sequence[np.ndarray]):
        """Pre-build the descriptors; returns a zero-argument callable (for timing loops)."""
        descs = _descriptors(self.arg_specs, arrays)
        ptrs = [ctypes.addressof(d) for d in descs]
        fn = self._fn
        keep = (self, arrays, descs)

        def call(_keep=keep):
            fn(*ptrs)
        return call

    def __call__(self, *arrays: np.ndarray) -> None:
        self.bind(arrays)()

    def close(self) -> None:
        import _ctypes
        if self._lib is not None:
            _ctypes.dlclose(self._lib._handle)
            self._lib = self._fn = None
