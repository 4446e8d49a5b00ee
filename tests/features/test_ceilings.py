"""``ceilings``: ideal times against the target's measured ceilings (features/ceilings.py)."""
import dataclasses
import math

import numpy as np
import pytest

from tests.features.helpers import TARGET
from tilewise.core.candidate import Candidate
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.features.base import create

MATMUL = Workload.parse("matmul:128x768x768:f32")
ADD = Workload.parse("add:512x768:f32")
#: what `tilewise info` measured on two CPUs with the same flags and vector width (Zen 5, Zen 4)
FULL_WIDTH = {"fma_f32_512b_1t_flops_per_s": 240e9, "stream_dram_1t_bytes_per_s": 40e9,
              "stream_dram_2t_bytes_per_s": 60e9, "load_L1d_bytes_per_s": 300e9, "omp_fork_join_2t_s": 0.6e-6}
DOUBLE_PUMPED = {**FULL_WIDTH, "fma_f32_512b_1t_flops_per_s": 114e9, "stream_dram_1t_bytes_per_s": 31e9,
                 "stream_dram_2t_bytes_per_s": 36e9}


@pytest.fixture(autouse=True)
def _no_cached_descriptors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))       # this machine's descriptors stay out


def with_peaks(peaks):
    return dataclasses.replace(TARGET, peaks=tuple(sorted(peaks.items())))


def rows(target, workload=MATMUL, threads=1):
    s = Schedule.from_json({**workload.kind.default_schedule(workload, TARGET).to_json(), "threads": threads})
    e = create("ceilings")
    return dict(zip(e.names(), e.extract([Candidate(workload, s)], target)[0].astype(np.float64)))


def test_the_same_schedule_on_two_descriptors_differs_where_the_ceilings_do():
    a, b = rows(with_peaks(FULL_WIDTH)), rows(with_peaks(DOUBLE_PUMPED))
    assert a["measured"] == b["measured"] == 1.0
    # compute: 2x fewer FMAs per second -> log10(240/114) longer
    assert b["log10_compute_peak_s"] - a["log10_compute_peak_s"] == pytest.approx(math.log10(240 / 114), abs=1e-5)
    assert b["log10_dram_s"] - a["log10_dram_s"] == pytest.approx(math.log10(40 / 31), abs=1e-5)
    assert a["log10_l1_s"] == pytest.approx(b["log10_l1_s"])                   # the same L1 figure
    flops = 2.0 * 128 * 768 * 768
    assert a["log10_compute_peak_s"] == pytest.approx(math.log10(flops / 240e9), abs=1e-5)
    # the keys and the analytic features do not see the measured numbers
    assert with_peaks(FULL_WIDTH).key() == with_peaks(DOUBLE_PUMPED).key() == TARGET.key()
    s = MATMUL.kind.default_schedule(MATMUL, TARGET)
    analytic = create("analytic")
    assert np.array_equal(analytic.extract([Candidate(MATMUL, s)], with_peaks(FULL_WIDTH)),
                          analytic.extract([Candidate(MATMUL, s)], with_peaks(DOUBLE_PUMPED)))


def test_threads_use_the_measured_bandwidth_and_fork_join_of_that_count():
    one, two = rows(with_peaks(FULL_WIDTH), ADD, 1), rows(with_peaks(FULL_WIDTH), ADD, 2)
    assert one["log10_fork_join_s"] == pytest.approx(-9.0) and two["log10_fork_join_s"] == pytest.approx(
        math.log10(0.6e-6), abs=1e-5)
    assert one["log10_dram_bytes_per_s"] == pytest.approx(math.log10(40e9), abs=1e-5)
    assert two["log10_dram_bytes_per_s"] == pytest.approx(math.log10(60e9), abs=1e-5)
    # add is memory-bound: its roofline is the DRAM time (plus fork/join on two threads)
    assert one["log10_measured_roofline_s"] == pytest.approx(one["log10_dram_s"], abs=1e-5)


def test_an_unmeasured_target_falls_back_to_analytics_nominal_machine():
    r = rows(TARGET)
    s = MATMUL.kind.default_schedule(MATMUL, TARGET)
    a = create("analytic")
    nominal = dict(zip(a.names(), a.extract([Candidate(MATMUL, s)], TARGET)[0].astype(np.float64)))
    assert r["measured"] == 0.0
    assert r["log10_compute_peak_s"] == pytest.approx(nominal["log10_compute_s"], abs=1e-5)
    assert r["log10_dram_s"] == pytest.approx(nominal["log10_memory_s"], abs=1e-5)


def test_this_machines_cached_descriptor_is_read(tmp_path):
    import json
    from tilewise.core.descriptor import SCHEMA_VERSION, descriptor_path
    path = descriptor_path(TARGET)
    import os
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"schema_version": SCHEMA_VERSION, "target_key": TARGET.key(), "measured": DOUBLE_PUMPED}, f)
    assert rows(TARGET) == pytest.approx(rows(with_peaks(DOUBLE_PUMPED)))


def test_the_default_margin_is_the_measured_roofline():
    from tilewise.costmodel.base import create as create_model
    assert create_model("xgb", features="analytic,ceilings")._margin_column == \
        create_model("xgb", features="analytic,ceilings").feature_names.index("ceilings.log10_measured_roofline_s")
    plain = create_model("xgb", features="analytic")
    assert plain.feature_names[plain._margin_column] == "log10_roofline_s"


def test_beside_analytic_the_view_is_built_once_and_the_columns_are_the_same(monkeypatch):
    from tilewise.features import analytic as analytic_module
    cands = [Candidate(MATMUL, MATMUL.kind.default_schedule(MATMUL, TARGET)),
             Candidate(ADD, ADD.kind.default_schedule(ADD, TARGET))]
    target = with_peaks(FULL_WIDTH)
    apart = np.concatenate([create("analytic").extract(cands, target), create("ceilings").extract(cands, target)], axis=1)
    calls = []
    real = analytic_module.build_view
    monkeypatch.setattr(analytic_module, "build_view", lambda items: calls.append(1) or real(items))
    together = create("analytic,ceilings").extract(cands, target)
    assert len(calls) == 1 and np.array_equal(together, apart)
    create("analytic,ceilings").extract(cands, target)
    assert len(calls) == 2                       # nothing is kept between extractions
