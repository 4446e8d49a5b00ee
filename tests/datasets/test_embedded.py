"""Building the shipped dataset: pooling independent collections, thinning timings."""
from __future__ import annotations

import dataclasses

import pytest

from tilewise.datasets.embedded import embedded_records, pool_collections, write_records
from tilewise.core.measurement import Measurement

from .records import GOLDEN_TARGET, make_record


def test_pool_collections_pools_each_schedule_and_keeps_order(tmp_path):
    a = [make_record(i, target=GOLDEN_TARGET) for i in range(4)]
    b = [dataclasses.replace(r, measurement=Measurement("ok", "", (9.0, 10.0), 5e-7, 0.2)) for r in a[::-1]]
    b[0] = dataclasses.replace(b[0], measurement=Measurement("timeout", "ran past 1 s"))   # schedule 3
    pooled = pool_collections(a, b)
    assert [r.schedule_key for r in pooled] == [r.schedule_key for r in a]
    assert pooled[0].measurement.times_s == a[0].measurement.times_s + (9.0, 10.0)
    assert pooled[0].measurement.rel_error == 5e-7
    assert pooled[3].measurement.status == "timeout", "a schedule failing in any collection is failed"
    write_records(pooled, tmp_path / "d.jsonl.gz", max_times=3)
    back = list(embedded_records(tmp_path / "d.jsonl.gz"))
    assert len(back) == 4 and len(back[0].measurement.times_s) == 3
    assert back[0].measurement.times_s[0] == min(pooled[0].measurement.times_s)


def test_pool_collections_refuses_different_schedules():
    a = [make_record(i, target=GOLDEN_TARGET) for i in range(3)]
    with pytest.raises(ValueError, match="same schedules"):
        pool_collections(a, a[:2])
    with pytest.raises(ValueError, match="measured twice"):
        pool_collections(a, a + a[:1])


def test_the_second_cpus_records_are_the_same_schedules_on_another_target():
    """embedded_zen4_v1 re-measures embedded_v4's schedules on a Zen 4: every (workload, schedule)
    of one file is in the other, each file is one target, and the two targets' keys differ."""
    from tilewise.datasets.embedded import DATA_DIR, EMBEDDED_DATASET
    first = list(embedded_records(EMBEDDED_DATASET))
    second = list(embedded_records(DATA_DIR / "embedded_zen4_v1.jsonl.gz"))
    assert len(second) == len(first)
    assert ({(r.workload_key, r.schedule_key) for r in second}
            == {(r.workload_key, r.schedule_key) for r in first})
    targets = [{r.target_key for r in recs} for recs in (first, second)]
    assert all(len(t) == 1 for t in targets) and targets[0] != targets[1]
    assert second[0].target.cpuid is not None and second[0].target.cpuid != first[0].target.cpuid
    assert all(r.measurement.status == "ok" and r.measurement.times_s for r in second)


def test_embedded_all_pools_every_shipped_file():
    from tilewise.costmodel.training import EMBEDDED_ALL, load_records
    from tilewise.datasets.embedded import SHIPPED_DATASETS
    records = load_records(EMBEDDED_ALL)
    assert len(SHIPPED_DATASETS) >= 2
    assert len({r.target_key for r in records}) == len(SHIPPED_DATASETS)
    assert len(records) == sum(1 for p in SHIPPED_DATASETS for _ in embedded_records(p))


def test_every_shipped_cpu_has_its_measured_ceilings():
    """datasets/data/targets.json holds each shipped CPU's measured ceilings; the records of
    embedded_records() carry them (their keys unchanged), which the ``ceilings`` features read."""
    from tilewise.datasets.embedded import SHIPPED_DATASETS, shipped_ceilings
    table = shipped_ceilings()
    for path in SHIPPED_DATASETS:
        r = next(iter(embedded_records(path)))
        figures = table[r.target_key]
        assert f"fma_f32_{r.target.simd_bits}b_1t_flops_per_s" in figures
        assert dict(r.target.peaks) == figures
        assert r.target.key() == dataclasses.replace(r.target, peaks=()).key()
