"""Write the golden files of the current record/store schema version.  Run once per new version:

    cd /work/main && .venv/bin/python -m tests.datasets.golden.make_golden

It refuses to overwrite an existing golden file: those are data, kept so old files stay loadable.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.datasets.records import golden_records_v1
from tilewise.core.record import Record
from tilewise.datasets.sqlite_store import STORE_SCHEMA_VERSION, SQLiteStore

HERE = Path(__file__).parent


def main() -> int:
    jsonl = HERE / f"records_v{Record.schema_version}.jsonl"
    store = HERE / f"store_v{STORE_SCHEMA_VERSION}.sqlite"
    existing = [p for p in (jsonl, store) if p.exists()]
    if existing:
        print(f"refusing to overwrite {', '.join(map(str, existing))}", file=sys.stderr)
        return 1
    records = golden_records_v1()
    jsonl.write_text("".join(r.dumps() + "\n" for r in records))
    with SQLiteStore(store) as s:
        s.append(records)
        s._connection().execute("VACUUM")     # small file; closing the last connection removes the WAL
    for suffix in ("-wal", "-shm"):
        assert not os.path.exists(str(store) + suffix)
    print(f"wrote {jsonl} ({jsonl.stat().st_size} B) and {store} ({store.stat().st_size} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
