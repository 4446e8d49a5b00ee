"""The libgomp adapter (ir/gomp_kmpc.c): MLIR's ``__kmpc_*`` calls over the OpenMP runtime torch
runs on, so kernels and torch's eager ops share one thread team."""
import ctypes
import subprocess
import sys
import textwrap

import pytest

from tilewise.ir import compiler

pytestmark = pytest.mark.jit

MICRO = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int32), ctypes.c_void_p)


def _partition(lib, threads: int, lower: int, upper: int, schedtype: int = 34, chunk: int = 0):
    """What each thread of a ``threads``-wide fork gets from __kmpc_for_static_init_8u."""
    seen = []

    def micro(gtid, btid, arg):
        lo, hi, stride, last = ctypes.c_uint64(lower), ctypes.c_uint64(upper), ctypes.c_int64(0), ctypes.c_int32(-1)
        lib.__kmpc_for_static_init_8u(None, gtid[0], schedtype, ctypes.byref(last), ctypes.byref(lo),
                                      ctypes.byref(hi), ctypes.byref(stride), ctypes.c_int64(1), ctypes.c_int64(chunk))
        lib.__kmpc_for_static_fini(None, gtid[0])
        seen.append((gtid[0], lo.value, hi.value, stride.value, last.value, arg))
        lib.__kmpc_barrier(None, gtid[0])
    callback = MICRO(micro)
    lib.__kmpc_push_num_threads(None, 0, threads)
    lib.__kmpc_fork_call(None, 1, callback, ctypes.c_void_p(1234))
    return sorted(seen)


@pytest.fixture(scope="module")
def adapter():
    return ctypes.CDLL(compiler.kmpc_adapter())


def test_static_schedule_covers_every_iteration_once(adapter):
    for threads, n in ((3, 100), (2, 7), (4, 2), (1, 5)):
        parts = _partition(adapter, threads, 0, n - 1)
        assert [p[0] for p in parts] == list(range(threads))            # one call per team member
        assert all(p[5] == 1234 for p in parts)                         # the captured argument arrives
        got = [i for _, lo, hi, *_ in parts for i in range(lo, hi + 1) if lo <= hi]
        assert got == list(range(n)), (threads, n, parts)
        sizes = [hi - lo + 1 if lo <= hi else 0 for _, lo, hi, *_ in parts]
        assert max(sizes) - min(sizes) <= 1                             # balanced blocks
        assert [p[4] for p in parts].count(1) == 1                      # one thread has the last iteration
        assert next(p for p in parts if p[4] == 1)[2] == n - 1


def test_chunked_static_schedule(adapter):
    parts = _partition(adapter, 2, 0, 9, schedtype=33, chunk=3)
    covered = []
    for _, lo, hi, stride, _, _ in parts:
        while lo <= 9:
            covered += range(lo, min(hi, 9) + 1)
            lo, hi = lo + stride, hi + stride
    assert sorted(covered) == list(range(10))


def test_torch_and_kernels_share_one_openmp_runtime(tmp_path):
    """In a process that imported torch, a 2-thread kernel loads no second runtime: the adapter's
    libgomp.so.1 is torch's, and libiomp5 is not loaded."""
    script = textwrap.dedent("""
        import torch
        from tilewise.ir import Workload, compile
        from tilewise.core.schedule import Schedule
        from tilewise.core.target import detect
        from tilewise.profiling.measure import check, make_problem
        w = Workload.parse("matmul:67x45x29:f32")
        s = Schedule.from_json({**w.kind.default_schedule(w, detect()).to_json(), "threads": 2})
        assert check(compile(w, s), make_problem(w, "f32", seed=1)) < 1e-5
        libs = {l.split()[-1] for l in open("/proc/self/maps") if any(k in l.split()[-1].rsplit("/", 1)[-1] for k in ("omp", "kmpc"))}
        print(sorted(libs))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    libs = eval(done.stdout.strip().splitlines()[-1])
    assert not any("iomp" in lib for lib in libs), libs
    gomps = [lib for lib in libs if "libgomp" in lib]
    assert len(gomps) == 1 and "/torch/lib/" in gomps[0], libs
    assert any("libtilewise_kmpc" in lib for lib in libs), libs
