"""The embedded record store: one SQLite file in WAL mode.

Concurrency (see the contract on :class:`RecordStore`): SQLite allows one writer at a time and, in
WAL mode, readers that never block it nor are blocked by it.  Every ``append`` is one
``BEGIN IMMEDIATE`` transaction (it takes the write lock up front, so two writers queue on
``busy_timeout`` instead of failing half-way with a lock upgrade error).  That suits many tuning
processes appending a batch after seconds of measurement each; it is not a lock server for many
workers writing all the time (use a server database for that, STYLE.md).

Durability: ``synchronous=FULL``.  In WAL mode a committed transaction is in the WAL file once
``COMMIT`` returns; ``NORMAL`` already makes that survive SIGKILL of the process (the OS page cache
holds the write), and only power loss or a kernel crash could roll back the last transactions.
``FULL`` also fsyncs the WAL at every commit, so an acknowledged record survives power loss too.
It costs ~0.3 ms per append here, nothing beside the measurements an append records.

Schema (version 1, in ``meta``)::

    meta(name TEXT PRIMARY KEY, value TEXT)          -- store_schema_version, created_by
    records(id INTEGER PRIMARY KEY,                   -- insertion order
            workload_key, target_key, schedule_key TEXT NOT NULL,  UNIQUE together
            op TEXT, workload TEXT,                   -- "matmul", "matmul:512x512x512:f32"
            status TEXT, median_s REAL,               -- NULL when there are no timings
            created REAL,                             -- Record.timestamp (unix seconds)
            record TEXT)                              -- Record.to_json(): the source of truth
    INDEX records_lookup(workload_key, target_key, status, median_s)
    tuning_runs(id INTEGER PRIMARY KEY,               -- one row per `tune` call (datasets/runs.py)
                workload_key, target_key TEXT, created REAL, run TEXT)   -- TuningRun.to_json()

The columns beside ``record`` are copies for SQL to filter and sort on; a new record schema
changes the JSON, not the table.  ``tuning_runs`` was added without a new store schema version: it
is created on open when missing (stores written before it stay readable, and older tilewise
versions ignore the table).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from importlib import metadata
from typing import Iterable

from tilewise.datasets.base import STORES, RecordStore, StoreError
from tilewise.datasets.sql_reads import SqlRecordReads
from tilewise.core.record import Record, workload_key
from tilewise.datasets.runs import TuningRun

STORE_SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    workload_key TEXT NOT NULL,
    target_key TEXT NOT NULL,
    schedule_key TEXT NOT NULL,
    op TEXT NOT NULL,
    workload TEXT NOT NULL,
    status TEXT NOT NULL,
    median_s REAL,
    created REAL NOT NULL,
    record TEXT NOT NULL,
    UNIQUE (workload_key, target_key, schedule_key)
);
CREATE INDEX IF NOT EXISTS records_lookup ON records (workload_key, target_key, status, median_s);
"""

_RUNS_SCHEMA = """CREATE TABLE IF NOT EXISTS tuning_runs (
    id INTEGER PRIMARY KEY, workload_key TEXT NOT NULL, target_key TEXT NOT NULL,
    created REAL NOT NULL, run TEXT NOT NULL)"""



def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


@STORES.register("sqlite")
class SQLiteStore(SqlRecordReads, RecordStore):
    TABLE = 'records'
    PARAM = '?'

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 60.0):
        self.path = os.fspath(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        self._check_file()
        self._connection()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- connection ------------------------------------------------------------------------------
    def _check_file(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        except OSError as e:
            raise StoreError(f"cannot open record store {self.path}: {e.strerror}") from None
        if head and head != _SQLITE_MAGIC:
            raise StoreError(f"{self.path} is not a tilewise record store: it is not an SQLite database")

    def _connection(self) -> sqlite3.Connection:
        self._live_connection()
        if self._conn is None:
            # Switching a fresh file to WAL and creating the schema take locks for which SQLite
            # does not always call the busy handler (a writer racing another's first open gets
            # SQLITE_BUSY at once), so setting up is retried here until the busy timeout.
            deadline = time.monotonic() + self.busy_timeout_s
            delay = 0.005
            while True:
                try:
                    self._conn = self._connect()
                    break
                except sqlite3.OperationalError as e:
                    if not _is_busy(e) or time.monotonic() + delay > deadline:
                        raise StoreError(f"cannot open record store {self.path}: {e}") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.25)
                except sqlite3.DatabaseError as e:
                    raise StoreError(f"cannot open record store {self.path}: {e}") from None
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._refuse_foreign(conn)      # before WAL: switching journal mode rewrites the header
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"record store {self.path} cannot use WAL journaling (got {mode!r}); "
                                 "is it on a network filesystem?")
            conn.execute("PRAGMA synchronous = FULL")
            self._init_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise StoreError(f"{self.path} is an SQLite database but not a tilewise record store "
                             f"(it has tables {', '.join(sorted(tables))} and no meta table)")

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            try:
                version = metadata.version("tilewise")
            except metadata.PackageNotFoundError:
                version = "unknown"
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany("INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
                                 [("store_schema_version", str(STORE_SCHEMA_VERSION)),
                                  ("created_by", f"tilewise {version}")])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        row = conn.execute("SELECT value FROM meta WHERE name = 'store_schema_version'").fetchone()
        found = row[0] if row else None
        if found != str(STORE_SCHEMA_VERSION):
            raise StoreError(f"{self.path} is a record store of schema version {found}; this tilewise "
                             f"reads version {STORE_SCHEMA_VERSION} (a newer tilewise wrote it: upgrade)")
        if "tuning_runs" not in tables:
            conn.execute(_RUNS_SCHEMA)

    # -- writes ----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self):
        """One write transaction (``_lock`` held): committed whole or rolled back; a write lock not
        had within the busy timeout is a one-line StoreError."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StoreError(f"record store {self.path}: no write lock after "
                             f"{self.busy_timeout_s:g} s ({e}): another process holds it") from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def append(self, records: Iterable[Record]) -> int:
        rows = self._record_rows(records)
        if not rows:
            return 0
        with self._lock, self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO records (workload_key, target_key, schedule_key, op, workload,"
                " status, median_s, created, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            added = conn.total_changes - before
        return added

    def append_run(self, run: TuningRun) -> bool:
        with self._lock, self._write() as conn:
            conn.execute("INSERT INTO tuning_runs (workload_key, target_key, created, run) VALUES (?, ?, ?, ?)",
                         (workload_key(run.workload), run.target.key(), run.finished, run.dumps()))
        return True

    def runs(self) -> list[TuningRun]:
        return [TuningRun.loads(text) for (text,) in self._rows("SELECT run FROM tuning_runs ORDER BY id")]

    # -- reads -----------------------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

