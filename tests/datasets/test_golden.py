"""Files written by earlier versions stay loadable: one golden file per schema version.

``golden/records_v1.jsonl`` (Record JSON, schema 1) and ``golden/store_v1.sqlite`` (SQLite store,
schema 1) were written once by ``golden/make_golden.py`` from ``records.golden_records_v1()`` and are
data: never regenerate them for a new version; add ``*_v2`` files beside them.
"""
import json
import shutil
import sqlite3
from pathlib import Path

from tilewise.datasets import Record, open_store
from tilewise.core.workload import Workload

from .records import GOLDEN_TARGET, golden_records_v1

GOLDEN = Path(__file__).parent / "golden"


def test_records_v1_jsonl_loads_to_the_expected_records():
    lines = (GOLDEN / "records_v1.jsonl").read_text().splitlines()
    loaded = [Record.from_json(json.loads(line)) for line in lines]
    assert loaded == golden_records_v1()
    assert [r.measurement.status for r in loaded] == [
        "ok", "ok", "compile_error", "ok", "wrong_result", "timeout", "invalid"]
    assert str(loaded[4].workload) == "conv2d_nhwc:1x8x8x16,3x3x16x16:f32:pad=1,stride=2"
    assert loaded[0].measurement.median_s == 3.0e-05 and loaded[0].schedule["interchange"] == (0, 2, 1)
    assert loaded[5].versions == (("tilewise", "0.0.9"),)


def test_records_v1_are_still_written_byte_for_byte():
    # while 1 is the current record schema, writing must reproduce the golden lines exactly
    if Record.schema_version == 1:
        assert "".join(r.dumps() + "\n" for r in golden_records_v1()) == (GOLDEN / "records_v1.jsonl").read_text()


def test_store_v1_opens_and_answers(tmp_path):
    path = tmp_path / "store_v1.sqlite"
    shutil.copy(GOLDEN / "store_v1.sqlite", path)           # opening writes (-wal, -shm): never in tests/
    expected = golden_records_v1()
    with open_store(path) as s:
        assert len(s) == len(expected)
        assert list(s.iter()) == expected
        mm = Workload.parse("matmul:64x64x64:f32")
        assert s.query(mm, GOLDEN_TARGET) == [expected[0], expected[1]]
        assert s.query(mm, GOLDEN_TARGET, status=None) == expected[:3]
        assert s.append(expected) == 0
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
