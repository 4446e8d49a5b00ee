"""Several processes and SIGKILL: the store stays consistent and keeps what it acknowledged.

The writers are child processes (``python -c``) that build records without compiling anything and
append them one per transaction, printing each schedule key after its ``append`` returned: a
printed key is an acknowledged record.
"""
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tilewise.datasets import open_store
from tilewise.core.workload import Workload

from .records import MATMUL

ROOT = Path(__file__).resolve().parents[2]          # the repository root: `tests` is importable from it

WRITER = """
import sys
from tests.datasets.records import make_record
from tilewise.datasets import open_store
path, start, stop, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open_store(path) as store:
    records = [make_record(i) for i in range(start, stop)]
    held = store.keys(records[0].workload, records[0].target)      # resume: skip what is stored
    todo = [r for r in records if r.schedule_key not in held]
    print("ready", len(todo), flush=True)
    for k in range(0, len(todo), batch):
        chunk = todo[k:k + batch]
        store.append(chunk)
        for r in chunk:
            print(r.schedule_key, flush=True)
print("done", flush=True)
"""


def writer(path, start, stop, batch=1) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(start), str(stop), str(batch)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def acknowledged(procs, timeout: float) -> set[str]:
    """Wait for writers that must all finish: every key they acknowledged (printed after commit)."""
    acked: set[str] = set()
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        lines = out.split()
        assert lines[-1] == "done"
        acked |= set(lines[2:-1])
    return acked


def check_consistent(path, expected_keys):
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        dups = db.execute("SELECT workload_key, target_key, schedule_key, count(*) FROM records "
                          "GROUP BY workload_key, target_key, schedule_key HAVING count(*) > 1").fetchall()
        assert dups == []
        stored = {k for (k,) in db.execute("SELECT schedule_key FROM records")}
    missing = expected_keys - stored
    assert not missing, f"{len(missing)} acknowledged records are gone"
    return stored


def test_concurrent_writers_all_land(tmp_path, target):
    path = tmp_path / "r.db"                 # fresh: both writers also race to create the schema
    acked = acknowledged([writer(path, 0, 300, batch=5), writer(path, 150, 450, batch=3)], timeout=60)
    stored = check_consistent(path, acked)
    assert len(stored) == len(acked) == 450
    with open_store(path) as s:
        assert len(s) == 450 and len(s.query(Workload.parse(MATMUL), target)) == 450


@pytest.mark.slow
def test_sigkill_mid_run_and_resume(tmp_path, target):
    path, total, rounds = tmp_path / "r.db", 1500, 5
    rng = random.Random(int(os.environ.get("TILEWISE_TEST_SEED", time.time_ns() % 2**32)))
    acked: set[str] = set()
    kills = 0
    for _ in range(rounds):
        p = writer(path, 0, total)
        assert p.stdout.readline().startswith("ready")
        for _ in range(rng.randint(1, 200)):
            line = p.stdout.readline().strip()
            if not line or line == "done":
                break
            acked.add(line)
        time.sleep(rng.uniform(0, 0.005))      # land the kill anywhere: mid-transaction, mid-print
        p.send_signal(signal.SIGKILL)
        rest, _ = p.communicate(timeout=30)
        kills += p.returncode == -signal.SIGKILL
        acked |= {k for k in rest.split() if k != "done"}  # printed before the kill: acknowledged too
        check_consistent(path, acked)
    assert kills == rounds, "the writer finished before it could be killed: make `total` larger"
    # the last run resumes from the survivors and completes
    survivors = len(check_consistent(path, acked))
    assert survivors < total, "the writers stored everything before a kill: make `total` larger"
    p = writer(path, 0, total)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    lines = out.split()
    assert lines[-1] == "done" and int(lines[1]) == total - survivors
    stored = check_consistent(path, acked | set(lines[2:-1]))
    assert len(stored) == total
    with open_store(path) as s:
        assert len(s) == total
