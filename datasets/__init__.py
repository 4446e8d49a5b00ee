"""Records and record stores.

``Record`` (record.py) is one measurement of one schedule of one workload on one target; a
``RecordStore`` (base.py) holds them, keyed by (workload_key, target_key, schedule_key).
``open_store(path_or_url)`` opens the embedded SQLite store (sqlite_store.py) for a path or
``sqlite:///PATH``, the shared PostgreSQL store (postgres_store.py) for ``postgresql://...``;
Parquet export/import is in parquet.py.
"""
from tilewise.datasets.base import RecordStore, StoreError, open_store  # noqa: F401
from tilewise.core.record import Record, RecordError  # noqa: F401
