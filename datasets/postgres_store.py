"""The shared record store: a PostgreSQL database, for many machines and processes writing at once.

Open with ``open_store("postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?options]")`` (any libpq
connection URL; ``postgres://`` too).  This is the adapter module: psycopg (3) is imported here and
nowhere else in tilewise.

Concurrency (the :class:`RecordStore` contract): a real server is the lock manager, so any number of
writers on any number of machines append at once.  Every ``append`` is one statement in one
transaction, ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING``: all of the batch or none
of it, and a record whose keys another writer committed first (or is committing now: the unique
index makes the second writer wait for the first) is skipped, so a key is stored once whoever wins.
Durability is the server's: with its default ``synchronous_commit = on`` a committed ``append``
survives the client's death and the server's crash.

Insertion order is the ``id`` sequence.  With concurrent writers, ids are handed out at insert time
and transactions commit in another order, so a paging ``iter`` that runs *while* others append may
miss a record committed later with a lower id; an ``iter`` after the writers are done sees all.

Schema (version 1, in ``tilewise_meta``; prefixed so the store can share a database)::

    tilewise_meta(name TEXT PRIMARY KEY, value TEXT)
    tilewise_records(id BIGSERIAL PRIMARY KEY,
                     workload_key, target_key, schedule_key TEXT NOT NULL, UNIQUE together,
                     op, workload, status TEXT, median_s DOUBLE PRECISION, created DOUBLE PRECISION,
                     record TEXT)                      -- Record.to_json(): the source of truth
    INDEX tilewise_records_lookup(workload_key, target_key, status, median_s)

The columns mirror the SQLite store's (sqlite_store.py), so the two answer queries alike.
"""
from __future__ import annotations

import os
import re
import threading
from importlib import metadata
from typing import Iterable

import psycopg

from tilewise.datasets.base import STORES, RecordStore, StoreError
from tilewise.datasets.sql_reads import SqlRecordReads
from tilewise.core.record import Record

STORE_SCHEMA_VERSION = 1
#: pg_advisory_xact_lock key taken while creating the schema (two first opens must not race)
_SCHEMA_LOCK = 0x7469_6C65_7769      # "tilewi"

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS tilewise_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS tilewise_records (
        id BIGSERIAL PRIMARY KEY,
        workload_key TEXT NOT NULL,
        target_key TEXT NOT NULL,
        schedule_key TEXT NOT NULL,
        op TEXT NOT NULL,
        workload TEXT NOT NULL,
        status TEXT NOT NULL,
        median_s DOUBLE PRECISION,
        created DOUBLE PRECISION NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (workload_key, target_key, schedule_key))""",
    "CREATE INDEX IF NOT EXISTS tilewise_records_lookup ON tilewise_records "
    "(workload_key, target_key, status, median_s)",
]

_INSERT = """
INSERT INTO tilewise_records (workload_key, target_key, schedule_key, op, workload, status, median_s,
                              created, record)
SELECT wk, tk, sk, op, wl, st, med, cr, rec
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::float8[], %s::float8[], %s::text[]) WITH ORDINALITY
     AS t(wk, tk, sk, op, wl, st, med, cr, rec, ord)
ORDER BY ord
ON CONFLICT (workload_key, target_key, schedule_key) DO NOTHING
"""



def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


@STORES.register("postgresql", "postgres")
class PostgresStore(SqlRecordReads, RecordStore):
    """A :class:`RecordStore` in a PostgreSQL database; see the module docstring."""

    TABLE = 'tilewise_records'
    PARAM = '%s'

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0):
        self.url = url
        self.path = redact(url)             # what the CLI prints as the store's location
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        with self._lock:
            self._connection()

    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"

    # -- connection ------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        """The open connection (called with ``_lock`` held); reconnects after fork or a lost one."""
        self._live_connection()
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None
        if self._conn is None:
            try:
                conn = psycopg.connect(self.url, autocommit=True,
                                       connect_timeout=max(1, int(self.connect_timeout_s)))
            except psycopg.Error as e:
                raise StoreError(f"cannot connect to the record store {self.path}: "
                                 f"{' '.join(str(e).split())}") from None
            try:
                self._init_schema(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _init_schema(self, conn: psycopg.Connection) -> None:
        try:
            version = metadata.version("tilewise")
        except metadata.PackageNotFoundError:
            version = "unknown"
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO tilewise_meta (name, value) VALUES (%s, %s), (%s, %s) "
                             "ON CONFLICT (name) DO NOTHING",
                             ("store_schema_version", str(STORE_SCHEMA_VERSION), "created_by", f"tilewise {version}"))
            row = conn.execute("SELECT value FROM tilewise_meta WHERE name = 'store_schema_version'").fetchone()
        except psycopg.Error as e:
            raise StoreError(f"cannot use the record store {self.path}: {' '.join(str(e).split())}") from None
        found = row[0] if row else None
        if found != str(STORE_SCHEMA_VERSION):
            raise StoreError(f"{self.path} holds a record store of schema version {found}; this tilewise "
                             f"reads version {STORE_SCHEMA_VERSION} (a newer tilewise wrote it: upgrade)")

    def _run(self, fn):
        """``fn(connection)`` under the lock; a connection lost before it is replaced once."""
        with self._lock:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    return fn(conn)
                except psycopg.OperationalError as e:
                    if attempt or not conn.broken:
                        raise StoreError(f"record store {self.path}: {' '.join(str(e).split())}") from None
                    self._conn = None          # the server closed the connection: reconnect and retry

    # -- writes ----------------------------------------------------------------------------------
    def append(self, records: Iterable[Record]) -> int:
        rows = self._record_rows(records)
        if not rows:
            return 0
        columns = [list(c) for c in zip(*rows)]

        def insert(conn) -> int:
            # A retry after a lost connection is safe: a batch that did commit is all duplicates.
            with conn.transaction():
                return conn.execute(_INSERT, columns).rowcount
        return self._run(insert)

    # -- reads -----------------------------------------------------------------------------------
    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._run(lambda conn: conn.execute(sql, args).fetchall())

