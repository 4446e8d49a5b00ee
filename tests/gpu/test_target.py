"""The cuda Target: detection from device properties, measured peaks outside the key, and CPU
targets unchanged by the optional field."""
import hashlib
import json
from dataclasses import asdict, replace

import pytest

from tilewise.profiling.cuda_target import (CudaUnavailable, capability_isa, cuda_problem, detect_cuda_target,
                                            load_cached_peaks, store_cached_peaks)
from tilewise.core.target import Target, detect


def test_cpu_target_json_and_key_are_what_they_were():
    """A schema-1 CPU target (a record written before ``cpuid``) loads and keeps its key; a detected
    target's JSON is schema 1's plus ``cpuid`` (no ``peaks``), and ``cpuid`` joins the key."""
    t = detect()
    d = t.to_json()
    assert "peaks" not in d and d["schema_version"] == 2
    assert set(d["cpuid"]) == {"vendor", "family", "model", "stepping"}
    legacy = asdict(t)                      # the schema-1 to_json: every field, lists for tuples
    legacy.pop("peaks")
    legacy.pop("cpuid")
    legacy.update(isa=list(t.isa), cache_bytes=dict(t.cache_bytes), versions=dict(t.versions), schema_version=1)
    old = Target.from_json(legacy)
    assert old.cpuid == () and old.key() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()
    assert {k: v for k, v in d.items() if k not in ("cpuid", "schema_version")} == \
        {k: v for k, v in legacy.items() if k != "schema_version"}
    assert t.key() != old.key() and old == replace(t, cpuid=())
    assert Target.from_json(d) == t and Target.from_json(d).key() == t.key()
    with pytest.raises(ValueError, match="schema version 3"):
        Target.from_json(dict(d, schema_version=3))


def test_peaks_travel_in_json_but_not_in_key_or_equality(sm90):
    measured = replace(sm90, peaks=(("bf16_flops_per_s", 7.0e14), ("dram_bytes_per_s", 3.0e12)))
    assert measured.key() == sm90.key() and measured == sm90
    d = measured.to_json()
    assert d["peaks"] == {"bf16_flops_per_s": 7.0e14, "dram_bytes_per_s": 3.0e12}
    back = Target.from_json(json.loads(json.dumps(d)))
    assert back.peaks == measured.peaks and back.peak("dram_bytes_per_s") == 3.0e12
    assert back.peak("f8e4m3_flops_per_s") == 0.0


def test_descriptor_from_device_properties(sm90, sm75):
    assert sm90.kind == "cuda" and sm90.arch == "sm_90" and sm90.cores == 132
    assert sm90.isa == ("bf16", "fp8", "sm_90", "tensor_cores")
    c = sm90.caches
    assert c["smem_per_block_optin"] == 227 * 1024 and c["smem_per_block"] == 48 * 1024
    assert c["regfile_per_sm"] == 65536 * 4 and c["L2"] == 50 << 20
    assert sm90.simd_lanes() == 32
    assert capability_isa(7, 5) == ("sm_75", "tensor_cores") and sm75.key() != sm90.key()
    assert capability_isa(8, 9) == ("bf16", "fp8", "sm_89", "tensor_cores")


def test_peak_cache_by_target_key(tmp_path, sm90, sm80):
    path = str(tmp_path / "peaks.json")
    assert load_cached_peaks(sm90, path) is None
    store_cached_peaks(sm90, {"f32_flops_per_s": 5.0e13}, path)
    store_cached_peaks(sm80, {"f32_flops_per_s": 1.9e13}, path)
    assert load_cached_peaks(sm90, path) == {"f32_flops_per_s": 5.0e13}
    assert load_cached_peaks(sm80, path) == {"f32_flops_per_s": 1.9e13}


@pytest.mark.skipif(cuda_problem() is None, reason="a GPU is visible")
def test_no_cuda_is_one_clear_error():
    with pytest.raises(CudaUnavailable) as e:
        detect_cuda_target()
    msg = str(e.value)
    assert msg.startswith("no CUDA device visible to torch: ") and "drop --target cuda" in msg
    assert "\n" not in msg


@pytest.mark.cuda
def test_real_gpu_is_detected_with_peaks(tmp_path):
    t = detect_cuda_target(cache_path=str(tmp_path / "p.json"))
    assert t.kind == "cuda" and t.cores > 0 and t.caches["smem_per_block_optin"] >= 48 * 1024
    assert t.peak("f32_flops_per_s") > 1e12 and t.peak("dram_bytes_per_s") > 1e11
    again = detect_cuda_target(cache_path=str(tmp_path / "p.json"))     # from the cache
    assert again.peaks == t.peaks and again.key() == t.key()
