"""A workload whose buffers cannot fit in this machine's memory is refused up front: one line, exit 2."""
import subprocess
import sys

import pytest

from tilewise.core.workload import Workload
from tilewise.profiling import memory
from tilewise.profiling.memory import BuffersTooLarge, buffer_bytes, check_buffers_fit

CLI = [sys.executable, "-m", "tilewise.frontends.cli"]
HUGE = "matmul:99999999x99999x9999:f32"          # 40 TiB of f32 buffers


def run(*args, cwd=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300, cwd=cwd)


def _one_line_refusal(r, workload=HUGE):
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr
    assert lines[0].startswith(f"error: {workload} needs 40.02 TiB of buffers; this machine has ")
    assert lines[0].endswith(" available: use smaller shapes")


@pytest.mark.parametrize("args", [
    ["tune", HUGE, "--no-db"],
    ["tune", HUGE, "--json", "--no-db"],
    ["measure", HUGE, "-s", "default"],
])
def test_tune_and_measure_refuse_a_workload_too_large_for_memory(args):
    r = run(*args)
    _one_line_refusal(r)
    assert r.stdout == ""


def test_collect_refuses_a_list_holding_a_workload_too_large_for_memory(tmp_path):
    r = run("collect", "--workloads", f"relu:8x8:f32,{HUGE}", "--samples", "2", "--db", "c.db", cwd=tmp_path)
    _one_line_refusal(r)
    assert not (tmp_path / "c.db").exists(), "refused before the store is opened or anything measured"


def test_shapes_past_int64_are_refused_too():
    r = run("tune", "relu:9999999999x9999999999:f32", "--no-db")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Warning" not in r.stderr, r.stderr
    assert lines[0].startswith("error: relu:9999999999x9999999999:f32 needs 693.89 EiB of buffers; ")


def test_buffer_bytes_are_the_argument_buffers():
    w = Workload.parse("matmul:1024x512x256:f32")              # A 1024x256, B 256x512, C 1024x512
    assert buffer_bytes(w) == 4 * (1024 * 256 + 256 * 512 + 1024 * 512)
    assert buffer_bytes(w, "f16") < buffer_bytes(w)


def test_check_names_need_and_what_is_available(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 1 << 20)
    w = Workload.parse("matmul:1024x1024x1024:f32")
    with pytest.raises(BuffersTooLarge, match=r"^matmul:1024x1024x1024:f32 needs 12.00 MiB of buffers; "
                                              r"this machine has 1.00 MiB available: use smaller shapes$"):
        check_buffers_fit(w)
    check_buffers_fit(Workload.parse("relu:64x64:f32"))        # 32 KiB fit
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: None)
    check_buffers_fit(w)                                       # a machine that does not say is not refused


def test_python_path_refuses_before_allocating():
    """make_problem (under tune()'s final A/B, measure() and the workers) refuses with the same line
    instead of numpy's MemoryError."""
    from tilewise.profiling.measure import make_problem
    with pytest.raises(BuffersTooLarge, match="use smaller shapes"):
        make_problem(Workload.parse(HUGE))
