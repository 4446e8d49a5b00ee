"""What SQL record stores share: the read half of the :class:`RecordStore` contract, the row each
record becomes, and closing — written once for every SQL backend.

SQLite and PostgreSQL stores keep records in one table with the same columns (``id``,
``workload_key``, ``target_key``, ``schedule_key``, ``status``, ``median_s``, ``record``); they
differ in the table's name and the parameter placeholder (``?`` vs ``%s``).  A backend mixes in
:class:`SqlRecordReads`, sets ``TABLE`` and ``PARAM``, and implements ``_rows(sql, args)``
(its own locking and reconnection) over ``_lock``/``_conn``/``_pid``/``_closed``.  Queries here are
written with ``?`` placeholders and ``{t}`` for the table.
"""
from __future__ import annotations

import os
from typing import ClassVar, Iterable, Iterator

from tilewise.datasets.base import StoreError
from tilewise.core.record import Record, workload_key
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.measurement import STATUSES
from tilewise.core.target import Target

# Connections inherited across fork are never closed by the child: closing one could checkpoint or
# unlink the parent's SQLite WAL, or end the parent's PostgreSQL session on the shared socket.  They
# are parked here for the life of the process instead.
_INHERITED: list = []

PAGE = 500    # records per page of iter(): no cursor stays open across yields


class SqlRecordReads:
    TABLE: ClassVar[str]
    PARAM: ClassVar[str]

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    @staticmethod
    def _record_rows(records: Iterable[Record]) -> list[tuple]:
        """(workload_key, target_key, schedule_key, op, workload, status, median_s, timestamp, JSON)."""
        return [(*r.keys, r.workload.op, str(r.workload), r.measurement.status,
                 r.measurement.median_s if r.measurement.times_s else None, r.timestamp, r.dumps())
                for r in records]

    def _live_connection(self):
        """The open connection of this process, or None (``_lock`` held): raises once closed; one
        inherited across fork is parked, never used or closed, and the child reconnects."""
        if self._closed:
            raise StoreError(f"record store {self.path} is closed")
        if self._conn is not None and self._pid != os.getpid():
            _INHERITED.append(self._conn)
            self._conn, self._pid = None, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()      # a forked child never closes its parent's connection
            self._conn, self._closed = None, True

    def _select(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._rows(sql.replace("{t}", self.TABLE).replace("?", self.PARAM), args)

    def query(self, workload: Workload, target: Target, top_k: int | None = None,
              status: str | None = "ok") -> list[Record]:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}: use one of {', '.join(STATUSES)} or None")
        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0, not {top_k}")
        sql = "SELECT record FROM {t} WHERE workload_key = ? AND target_key = ?"
        args: tuple = (workload_key(workload), target.key())
        if status is not None:
            sql, args = sql + " AND status = ?", args + (status,)
        sql += " ORDER BY median_s IS NULL, median_s, id"
        if top_k is not None:
            sql, args = sql + " LIMIT ?", args + (top_k,)
        return [Record.loads(text) for (text,) in self._select(sql, args)]

    def keys(self, workload: Workload, target: Target) -> set[str]:
        rows = self._select("SELECT schedule_key FROM {t} WHERE workload_key = ? AND target_key = ?",
                            (workload_key(workload), target.key()))
        return {k for (k,) in rows}

    def contains(self, workload: Workload, target: Target, schedule: Schedule) -> bool:
        return bool(self._select("SELECT 1 FROM {t} WHERE workload_key = ? AND target_key = ? AND "
                                 "schedule_key = ? LIMIT 1", (workload_key(workload), target.key(), schedule.key())))

    def iter(self) -> Iterator[Record]:
        # pages by id: no cursor stays open across yields, so appends may interleave with iteration
        last = 0
        while True:
            page = self._select("SELECT id, record FROM {t} WHERE id > ? ORDER BY id LIMIT ?", (last, PAGE))
            for _, text in page:
                yield Record.loads(text)
            if len(page) < PAGE:
                return
            last = page[-1][0]

    def __len__(self) -> int:
        return self._select("SELECT count(*) FROM {t}")[0][0]
