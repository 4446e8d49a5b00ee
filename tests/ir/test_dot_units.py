"""bf16 on the dot-product unit (vdpbf16ps): the lowering is generated and compiled on any CPU;
it runs only where the CPU has avx512_bf16 (the test that needs to says so and skips elsewhere)."""
import ctypes
import re
import shutil
import subprocess

import numpy as np
import pytest

from tilewise.core.target import detect
from tilewise.ir.dot_units import bf16_dot_engine, bf16_dot_llvm_ir, bf16_dot_module, dot_unit_gap
from tilewise.ir.dtypes import from_storage, to_storage

HOST = detect()


def test_the_contraction_becomes_x86_avx512_dot():
    ctx, module = bf16_dot_module(4, 32, 64)
    text = str(module)
    assert "x86.avx512.dot" in text and "vector<32xbf16> -> vector<16xf32>" in text
    assert "vector.contract" not in text


def test_the_llvm_ir_calls_the_dpbf16ps_intrinsic():
    ir_text = bf16_dot_llvm_ir(2, 16, 32)
    assert set(re.findall(r"llvm\.x86\.[a-z0-9_.]+", ir_text)) == {"llvm.x86.avx512bf16.dpbf16ps.512"}


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not installed")
def test_the_assembly_for_an_avx512_bf16_cpu_has_vdpbf16ps(tmp_path):
    _, engine = bf16_dot_engine(4, 32, 64)           # compiled, never run here
    obj = tmp_path / "kernel.o"
    engine.dump_to_object_file(str(obj))
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True).stdout
    assert re.search(r"vdpbf16ps\s+%zmm", asm)


def test_the_gap_names_the_missing_flag():
    assert dot_unit_gap(HOST, "bf16") == (None if "avx512_bf16" in HOST.isa else f"no avx512_bf16 on {HOST.name}")
    assert "avx512_vnni / avx_vnni" in (dot_unit_gap(HOST, "i8") or "avx512_vnni / avx_vnni")
    assert dot_unit_gap(HOST, "f16") == "no dot-product unit computes f16"


@pytest.mark.skipif("avx512_bf16" not in HOST.isa,
                    reason=f"needs avx512_bf16 to execute vdpbf16ps; {HOST.name} has {' '.join(HOST.isa)}")
def test_the_dot_kernel_matches_the_reference_where_the_unit_exists(rng):
    from tilewise.ir.compiler import _descriptor
    m, n, k = 3, 32, 64
    a, b = rng.uniform(-1, 1, (m, k)), rng.uniform(-1, 1, (k, n))
    a16, b16 = to_storage(a, "bf16"), to_storage(b, "bf16")
    packed_a = np.ascontiguousarray(a16.reshape(m, k // 2, 2))
    packed_b = np.ascontiguousarray(b16.reshape(k // 2, 2, n).transpose(0, 2, 1))    # VNNI: [K/2, N, 2]
    c = np.full((m, n), np.nan, np.float32)
    _, engine = bf16_dot_engine(m, n, k, for_host=True)
    descs = [_descriptor(x) for x in (packed_a, packed_b, c)]          # as compiler.Kernel.bind calls kernels
    ptrs = [ctypes.pointer(d) for d in descs]
    pptrs = [ctypes.pointer(p) for p in ptrs]
    engine.lookup("kernel")((ctypes.c_void_p * 3)(*[ctypes.cast(p, ctypes.c_void_p) for p in pptrs]))
    ref = from_storage(a16, "bf16") @ from_storage(b16, "bf16")
    assert np.max(np.abs(c - ref)) / np.max(np.abs(ref)) < 1e-5
