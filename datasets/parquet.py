"""Parquet export and import of a record store: for pandas/polars/DuckDB analysis, and for moving
records between stores.

One row per record.  The ``record`` column holds :meth:`Record.to_json` and is what
:func:`import_parquet` reads; the other columns are flat copies for analysis tools::

    workload_key, target_key, schedule_key   string   the record's identity (record.py)
    op, workload, dtype                       string   "matmul", "matmul:512x512x512:f32", "f32"
    target                                    string   the target's name (CPU model)
    status                                    string   ok | compile_error | ... (profiling.measure)
    median_s, min_s                           double   null without timings
    rel_error, compile_time_s                 double   rel_error null when not checked
    timestamp                                 double   unix seconds
    schedule                                  string   canonical schedule JSON
    times_s                                   list<double>
    record                                    string   the whole record, JSON

The file's key-value metadata carries ``tilewise.parquet_schema_version`` (this layout) and
``tilewise.record_schema_version``.  pyarrow is imported inside the functions.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Iterable, Iterator

from tilewise.datasets.base import RecordStore, StoreError
from tilewise.core.record import Record

PARQUET_SCHEMA_VERSION = 1
_BATCH = 2000


def _schema():
    import pyarrow as pa
    s, f = pa.string(), pa.float64()
    fields = [("workload_key", s), ("target_key", s), ("schedule_key", s), ("op", s), ("workload", s),
              ("dtype", s), ("target", s), ("status", s), ("median_s", f), ("min_s", f), ("rel_error", f),
              ("compile_time_s", f), ("timestamp", f), ("schedule", s), ("times_s", pa.list_(f)),
              ("record", s)]
    meta = {"tilewise.parquet_schema_version": str(PARQUET_SCHEMA_VERSION),
            "tilewise.record_schema_version": str(Record.schema_version)}
    return pa.schema(fields, metadata=meta)


def _row(r: Record) -> dict:
    m = r.measurement
    timed = bool(m.times_s)
    return {"workload_key": r.workload_key, "target_key": r.target_key, "schedule_key": r.schedule_key,
            "op": r.workload.op, "workload": str(r.workload), "dtype": r.workload.dtype,
            "target": r.target.name, "status": m.status,
            "median_s": m.median_s if timed else None, "min_s": m.min_s if timed else None,
            "rel_error": m.rel_error, "compile_time_s": m.compile_time_s, "timestamp": r.timestamp,
            "schedule": r.schedule.dumps(), "times_s": list(m.times_s), "record": r.dumps()}


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for r in records:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def export_parquet(store: RecordStore, path: str | os.PathLike) -> int:
    """Write every record of ``store`` to the Parquet file ``path``; return how many.

    Atomic: written to a temporary file beside ``path`` and renamed over it, so a reader (or a
    kill) never sees half a file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.fspath(path)
    schema = _schema()
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    count = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            with pq.ParquetWriter(fh, schema) as writer:
                for batch in _batches(store.iter(), _BATCH):
                    writer.write_table(pa.Table.from_pylist([_row(r) for r in batch], schema=schema))
                    count += len(batch)
                if count == 0:
                    writer.write_table(schema.empty_table())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return count


def read_parquet(path: str | os.PathLike) -> Iterator[Record]:
    """The records of a Parquet file written by :func:`export_parquet`, in file order."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(os.fspath(path))
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except Exception as e:   # pyarrow raises its own ArrowInvalid for a file that is not Parquet
        raise StoreError(f"{path} is not a Parquet file: {e}") from None
    meta = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items()}
    version = meta.get("tilewise.parquet_schema_version")
    if version is None or "record" not in pf.schema_arrow.names:
        raise StoreError(f"{path} is a Parquet file but not a tilewise record export")
    if version != str(PARQUET_SCHEMA_VERSION):
        raise StoreError(f"{path} is a tilewise record export of layout version {version}; this tilewise "
                         f"reads version {PARQUET_SCHEMA_VERSION} (a newer tilewise wrote it: upgrade)")
    for batch in pf.iter_batches(batch_size=_BATCH, columns=["record"]):
        for text in batch.column(0).to_pylist():
            yield Record.from_json(json.loads(text))


def import_parquet(path: str | os.PathLike, store: RecordStore) -> int:
    """Append the records of the Parquet file ``path`` to ``store`` (one transaction per batch of
    rows; duplicates ignored, as for any append); return how many were new."""
    return sum(store.append(batch) for batch in _batches(read_parquet(path), _BATCH))
