"""What the SQLite backend promises beyond the contract: pragmas, schema, versioning, clear errors."""
import sqlite3
import threading

import pytest

from tilewise.datasets import StoreError, open_store
from tilewise.datasets.sqlite_store import STORE_SCHEMA_VERSION, SQLiteStore
from tilewise.core.workload import Workload

from .records import MATMUL, make_record


def test_wal_full_sync_and_schema(tmp_path, target):
    path = tmp_path / "r.db"
    with SQLiteStore(path) as s:
        s.append([make_record(0, target=target)])
        conn = s._connection()
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2          # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60000
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"           # persistent in the file
    assert dict(db.execute("SELECT name, value FROM meta"))["store_schema_version"] == str(STORE_SCHEMA_VERSION)
    cols = [r[1] for r in db.execute("PRAGMA table_info(records)")]
    assert cols == ["id", "workload_key", "target_key", "schedule_key", "op", "workload", "status", "median_s",
                    "created", "record"]
    plan = " ".join(str(r) for r in db.execute(
        "EXPLAIN QUERY PLAN SELECT record FROM records WHERE workload_key = ? AND target_key = ? AND status = ? "
        "ORDER BY median_s", ("a", "b", "ok")))
    assert "records_lookup" in plan
    row = db.execute("SELECT op, workload, status, median_s FROM records").fetchone()
    assert row == ("matmul", MATMUL, "ok", make_record(0).measurement.median_s)


def test_newer_store_version_is_refused(tmp_path):
    path = tmp_path / "r.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '2' WHERE name = 'store_schema_version'")
    with pytest.raises(StoreError, match="schema version 2; this tilewise reads version 1 .*upgrade"):
        open_store(path)


def test_not_a_database_is_a_one_line_error(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not records\n" * 100)
    with pytest.raises(StoreError) as e:
        open_store(path)
    assert str(e.value) == f"{path} is not a tilewise record store: it is not an SQLite database"
    assert isinstance(e.value, ValueError)


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(StoreError, match="an SQLite database but not a tilewise record store"):
        open_store(path)
    with sqlite3.connect(path) as db:               # and it was left as it was
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_unopenable_path(tmp_path):
    with pytest.raises(StoreError, match="cannot open record store"):
        open_store(tmp_path / "no" / "such" / "dir" / "r.db")


def test_open_store_urls(tmp_path, target):
    path = tmp_path / "r.db"
    with open_store(f"sqlite:///{path}") as s:          # sqlite:////abs/path
        assert isinstance(s, SQLiteStore) and s.path == str(path)
        s.append([make_record(0, target=target)])
    with open_store(str(path)) as s:
        assert len(s) == 1
    with pytest.raises(StoreError, match=r"cannot connect to the record store postgresql://user:\*\*\*@127.0.0.1:1/db"):
        open_store("postgresql://user:secret@127.0.0.1:1/db")       # nothing listens on port 1
    with pytest.raises(StoreError, match="unknown record store URL scheme 'mysql'.*sqlite://"):
        open_store("mysql://host/db")
    with pytest.raises(StoreError, match="malformed SQLite URL"):
        open_store("sqlite://r.db")


def test_threads_share_a_store(tmp_path, target):
    with SQLiteStore(tmp_path / "r.db") as s:
        def work(start):
            for i in range(start, start + 20):
                s.append([make_record(i, target=target)])
                s.query(Workload.parse(MATMUL), target, top_k=1)
        threads = [threading.Thread(target=work, args=(k * 10,)) for k in range(4)]   # overlapping ranges
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(s) == 50
