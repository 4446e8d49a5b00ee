"""The target descriptor's micro-benchmarks: measured once per target key, cached, outside the key."""
import json
import os

import pytest

from tilewise.core.target import detect
from tilewise.profiling import hardware

pytestmark = pytest.mark.jit


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("targets"))
    steps: list[str] = []
    return folder, hardware.descriptor(detect(), folder=folder, on_step=steps.append), steps


def test_every_figure_is_measured_for_this_cpu(measured):
    _, m, steps = measured
    t = detect()
    assert steps == ["FMA per vector width", "load bandwidth per cache level", "DRAM copy bandwidth",
                     "OpenMP fork/join"]
    threads = sorted({1, t.cores})
    widths = sorted({128, 256, t.simd_bits} & set(range(0, t.simd_bits + 1)))
    expected = {f"fma_f32_{b}b_{n}t_flops_per_s" for b in widths for n in threads}
    expected |= {f"load_{lv}_bytes_per_s" for lv in ("L1d", "L2", "L3") if lv in t.caches} | {"load_dram_bytes_per_s"}
    expected |= {f"stream_dram_{n}t_bytes_per_s" for n in threads} | {f"omp_fork_join_{n}t_s" for n in threads if n > 1}
    assert set(m) == expected
    assert all(v > 0 for k, v in m.items() if not k.startswith("omp_")) and all(v >= 0 for v in m.values())


def test_cached_per_key_and_refreshed_on_demand(measured, monkeypatch):
    folder, m, _ = measured
    t = detect()
    path = os.path.join(folder, f"{t.key()}.json")
    data = json.load(open(path))
    assert data["target_key"] == t.key() and data["schema_version"] == hardware.SCHEMA_VERSION
    calls = []
    monkeypatch.setattr(hardware, "measure_descriptor", lambda target, on_step=None: calls.append(1) or {"x": 1.0})
    assert hardware.descriptor(t, folder=folder) == m and not calls          # a hit: nothing measured
    assert hardware.descriptor(t, folder=folder, refresh=True) == {"x": 1.0} and calls == [1]
    with open(path, "w") as f:
        f.write("{not json")
    assert hardware.cached_descriptor(t, folder) is None                      # a broken file is measured again
    assert hardware.descriptor(t, folder=folder) == {"x": 1.0} and calls == [1, 1]


def test_measured_figures_are_not_identity(measured):
    _, m, _ = measured
    t = detect()
    held = hardware.with_descriptor(t, m)
    assert held == t and held.key() == t.key() and dict(held.peaks) == m
    assert held.peak(f"fma_f32_{t.simd_bits}b_1t_flops_per_s") == m[f"fma_f32_{t.simd_bits}b_1t_flops_per_s"]
