"""The PostgreSQL store beyond the shared contract: many writer processes at once, SIGKILL of one,
a lost connection, and fork.  The server is the session's loopback one (tests/pg_server.py)."""
import os
import signal

import psycopg

from tilewise.datasets import open_store
from tilewise.datasets.postgres_store import PostgresStore
from tilewise.core.workload import Workload

from .records import MATMUL, make_record
from .test_durability import acknowledged, writer


def stored_keys(url) -> list[str]:
    with psycopg.connect(url) as conn:
        dups = conn.execute("SELECT workload_key, target_key, schedule_key FROM tilewise_records "
                            "GROUP BY 1, 2, 3 HAVING count(*) > 1").fetchall()
        assert dups == []
        return [k for (k,) in conn.execute("SELECT schedule_key FROM tilewise_records")]


def test_open_store_picks_postgres(postgres_server):
    url = postgres_server.new_database()
    with open_store(url) as s:
        assert isinstance(s, PostgresStore) and len(s) == 0
    with open_store(url.replace("postgresql://", "postgres://")) as s:
        assert isinstance(s, PostgresStore)


def test_concurrent_writers_overlapping(postgres_server, target):
    url = postgres_server.new_database()        # fresh: the writers also race to create the schema
    procs = [writer(url, 0, 200, batch=5), writer(url, 100, 300, batch=3), writer(url, 50, 250, batch=7)]
    acked = acknowledged(procs, timeout=90)
    keys = stored_keys(url)
    assert len(keys) == len(set(keys)) == 300 and set(keys) == acked
    with open_store(url) as s:
        assert len(s) == 300 and len(s.query(Workload.parse(MATMUL), target)) == 300


def test_sigkill_keeps_acknowledged_then_resume(postgres_server):
    url = postgres_server.new_database()
    p = writer(url, 0, 2000)
    assert p.stdout.readline().startswith("ready")
    acked = {p.stdout.readline().strip() for _ in range(40)}
    p.send_signal(signal.SIGKILL)
    rest, _ = p.communicate(timeout=30)
    assert p.returncode == -signal.SIGKILL
    acked |= {k for k in rest.split() if k != "done"}
    keys = set(stored_keys(url))
    assert acked <= keys and len(keys) < 2000
    resumed = writer(url, 0, 300)                                # resumes: skips what is stored
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert int(out.split()[1]) == 300 - len(keys & {make_record(i).schedule_key for i in range(300)})
    keys = stored_keys(url)
    assert len(keys) == len(set(keys)) and set(keys) >= {make_record(i).schedule_key for i in range(300)}


def test_reconnects_after_the_server_drops_the_connection(postgres_server, target):
    url = postgres_server.new_database()
    with open_store(url) as s:
        s.append([make_record(0, target=target)])
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert s.append([make_record(1, target=target)]) == 1
        assert len(s) == 2


def test_forked_child_reconnects_and_parent_keeps_its_session(postgres_server, target):
    url = postgres_server.new_database()
    with open_store(url) as s:
        s.append([make_record(0, target=target)])
        pid = os.fork()
        if pid == 0:                       # child: its own connection; the parent's is left alone
            try:
                s.append([make_record(1, target=target)])
                os._exit(0 if len(s) == 2 else 1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert s.append([make_record(2, target=target)]) == 1 and len(s) == 3
