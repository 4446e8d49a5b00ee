import os

import pytest

from tilewise.datasets import StoreError, open_store
from tilewise.datasets.parquet import export_parquet, import_parquet, read_parquet

from .records import MATMUL, RELU, golden_records_v1, make_record

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed: Parquet export/import is untested")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def records(target):
    return ([make_record(i, MATMUL, target) for i in range(5)] + [make_record(i, RELU, target, "timeout")
                                                                   for i in range(3)] + golden_records_v1())


def test_round_trip(store, records, tmp_path):
    store.append(records)
    out = tmp_path / "records.parquet"
    assert export_parquet(store, out) == len(records)
    assert list(read_parquet(out)) == records
    with open_store(tmp_path / "copy.db") as copy:
        assert import_parquet(out, copy) == len(records)
        assert list(copy.iter()) == records
        assert import_parquet(out, copy) == 0                     # duplicates ignored
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_columns(store, records, tmp_path):
    store.append(records)
    out = tmp_path / "records.parquet"
    export_parquet(store, out)
    table = pq.read_table(out)
    assert table.column_names == ["workload_key", "target_key", "schedule_key", "op", "workload", "dtype", "target",
                                  "status", "median_s", "min_s", "rel_error", "compile_time_s", "timestamp",
                                  "schedule", "times_s", "record"]
    rows = table.to_pylist()
    for r, row in zip(records, rows):
        assert (row["workload_key"], row["target_key"], row["schedule_key"]) == r.keys
        assert row["workload"] == str(r.workload) and row["op"] == r.workload.op and row["dtype"] == r.workload.dtype
        assert row["target"] == r.target.name and row["status"] == r.measurement.status
        assert row["times_s"] == list(r.measurement.times_s) and row["schedule"] == r.schedule.dumps()
        if r.measurement.times_s:
            assert row["median_s"] == r.measurement.median_s and row["min_s"] == r.measurement.min_s
        else:
            assert row["median_s"] is None and row["min_s"] is None
    assert table.schema.metadata[b"tilewise.parquet_schema_version"] == b"1"


def test_export_replaces_atomically_and_handles_empty(store, tmp_path, target):
    out = tmp_path / "records.parquet"
    out.write_bytes(b"old contents")
    assert export_parquet(store, out) == 0 and list(read_parquet(out)) == []
    store.append([make_record(0, target=target)])
    assert export_parquet(store, out) == 1 and len(list(read_parquet(out))) == 1
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []


def test_foreign_files_are_refused(store, tmp_path):
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    with pytest.raises(StoreError, match="not a tilewise record export"):
        import_parquet(other, store)
    text = tmp_path / "notes.txt"
    text.write_text("not parquet")
    with pytest.raises(StoreError, match="is not a Parquet file"):
        import_parquet(text, store)


def test_failed_export_leaves_the_old_file(store, tmp_path, target):
    out = tmp_path / "records.parquet"
    store.append([make_record(i, target=target) for i in range(3)])
    export_parquet(store, out)
    before = out.read_bytes()

    class Failing:
        def iter(self):
            yield make_record(7, target=target)
            raise OSError("disk went away")
    with pytest.raises(OSError, match="disk went away"):
        export_parquet(Failing(), out)
    assert out.read_bytes() == before
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
