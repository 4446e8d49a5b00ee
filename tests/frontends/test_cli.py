import json
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "tilewise.frontends.cli"]


def run(*args, timeout=600):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,fragment", [
    (["tune", "matmul:512x512:f32"], "expects shapes MxNxK"),
    (["tune", "conv:1x2:f32"], "unknown op"),
    (["tune", "matmul:8x8x8:f32", "--strategy", "nope"], "unknown strategy"),
    (["measure", "matmul:64x64x64:f32", "-s", '{"tile": [128, 0, 0], "reg_tile": [4, 16]}'], "tile[0]=128"),
    (["measure", "matmul:64x64x64:f32", "-s", '{"reg_tile": [4, 0]}'], "reg_tile[1]=0"),
    (["measure", "matmul:64x64x64:f32", "-s", "not json"], "not a JSON object"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    r = run(*args)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], r.stderr


def test_malformed_mlir_file(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @f(%a: tensor<4x4xf32>\n")
    r = run("tune", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "not valid MLIR" in r.stderr
    missing = run("tune", str(tmp_path / "missing.mlir"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_mlir_file_without_supported_ops(tmp_path):
    f = tmp_path / "noop.mlir"
    f.write_text("func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> { return %a : tensor<4xf32> }\n")
    r = run("tune", str(f))
    assert r.returncode == 2 and "no supported linalg op" in r.stderr


def test_info_json():
    r = run("info", "--json")
    assert r.returncode == 0
    d = json.loads(r.stdout)
    assert d["kind"] == "cpu" and d["cores"] >= 1 and len(d["key"]) == 64
    assert set(d["cpuid"]) == {"vendor", "family", "model", "stepping"}
    assert d["measured"][f"fma_f32_{d['simd_bits']}b_1t_flops_per_s"] > 0 and d["measured"]["load_dram_bytes_per_s"] > 0


@pytest.mark.jit
def test_tune_json_contract(tmp_path):
    r = run("tune", "matmul:96x80x64:f32", "--trials", "6", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # DESIGN's keys, plus what the tuning database adds (searched, prior_records, store, wall_time_s)
    assert set(d) >= {"workload", "target", "trials", "best", "default", "reference"}
    assert d["workload"] == "matmul:96x80x64:f32" and d["trials"] == 6
    assert set(d["best"]) == {"schedule", "latency_s", "gflops", "rel_error"}
    assert d["best"]["rel_error"] <= 1e-4 and d["best"]["latency_s"] > 0
    assert set(d["reference"]) == {"name", "latency_s", "gflops"} and d["reference"]["name"] == "numpy"
    assert d["default"]["gflops"] > 0


@pytest.mark.jit
def test_tune_mlir_file(tmp_path):
    f = tmp_path / "mm.mlir"
    f.write_text("""
func.func @f(%a: tensor<32x24xf32>, %b: tensor<24x40xf32>, %c: tensor<32x40xf32>) -> tensor<32x40xf32> {
  %0 = linalg.matmul ins(%a, %b : tensor<32x24xf32>, tensor<24x40xf32>) outs(%c : tensor<32x40xf32>) -> tensor<32x40xf32>
  return %0 : tensor<32x40xf32>
}
""")
    r = run("tune", str(f), "--trials", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["workload"] == "matmul:32x40x24:f32"
