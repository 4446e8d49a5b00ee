"""`tilewise collect` end to end: progress, resume after SIGKILL, Parquet export."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.jit, pytest.mark.slow]

CLI = [sys.executable, "-m", "tilewise.frontends.cli"]
WORKLOADS = "matmul:48x40x32:f32,relu:64x96:f32,softmax:8x40:f32"
SAMPLES = 12


def _count(db) -> int:
    if not os.path.exists(db):
        return 0
    with sqlite3.connect(db, timeout=30) as c:
        try:
            return c.execute("select count(*) from records").fetchone()[0]
        except sqlite3.OperationalError:     # schema not created yet
            return 0


def _keys(db) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as c:
        return c.execute("select workload_key, target_key, schedule_key from records").fetchall()


def test_collect_survives_sigkill_and_resumes(tmp_path):
    db = str(tmp_path / "c.db")
    cmd = CLI + ["collect", "--workloads", WORKLOADS, "--samples", str(SAMPLES), "--db", db]
    seen: set[tuple] = set()
    kills = 0
    for attempt in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        before = _count(db)
        deadline = time.time() + 120
        # kill once a few new records have been committed (acknowledged) in this attempt
        while time.time() < deadline and proc.poll() is None and _count(db) < before + 3 + attempt:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        acknowledged = set(_keys(db))
        assert seen <= acknowledged, "a record committed before a kill was lost"
        seen = acknowledged
    assert kills >= 2, "collect finished before it could be killed: use more samples"
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    with sqlite3.connect(db) as c:
        assert c.execute("pragma integrity_check").fetchone()[0] == "ok"
        rows = _keys(db)
    assert len(rows) == len(set(rows)) == 3 * SAMPLES, "duplicates or missing records"
    assert seen <= set(rows)
    assert summary["records_in_store"] == 3 * SAMPLES and summary["skipped"] == len(seen)

    # a second run measures nothing new
    again = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=600)
    assert json.loads(again.stdout)["measured"] == 0

    parquet = tmp_path / "c.parquet"
    exp = subprocess.run(CLI + ["dataset", "export", "--db", db, "--format", "parquet", "--out", str(parquet)],
                         capture_output=True, text=True, timeout=300)
    assert exp.returncode == 0, exp.stderr
    import pyarrow.parquet as pq
    table = pq.read_table(parquet)
    assert table.num_rows == 3 * SAMPLES and "median_s" in table.column_names


def test_collect_rejects_bad_input(tmp_path):
    r = subprocess.run(CLI + ["collect", "--workloads", "suite:nope", "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "unknown suite" in r.stderr
    bad = tmp_path / "notadb.db"
    bad.write_text("hello")
    r = subprocess.run(CLI + ["collect", "--workloads", "relu:8x8:f32", "--db", str(bad)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a tilewise record store" in r.stderr
    for source, says in ((str(tmp_path / "missing.db"), "no record store at"),
                         ("embedded", "embedded holds no schedule of relu:8x8:f32: collect without --schedules-of")):
        r = subprocess.run(CLI + ["collect", "--workloads", "relu:8x8:f32", "--schedules-of", source,
                                  "--db", str(tmp_path / "y.db")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.startswith("error:") and says in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.db").exists()
