"""A throw-away PostgreSQL server on loopback for the tests (shared record store, Optuna storage).

``PostgresServer.start()`` runs ``initdb`` and ``pg_ctl start`` from the Debian ``postgresql``
package (``make sysdeps`` installs it) in a fresh temporary directory, listening on 127.0.0.1 on a
free port, trust authentication for the ``postgres`` superuser; ``stop()`` kills it and removes the
directory.  PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` system user
the Debian package creates.  ``new_database()`` gives each test a database of its own.

``TILEWISE_TEST_POSTGRES_URL`` (an admin URL of an existing server, e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``) makes the tests use that server instead.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise PostgresUnavailable("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: run `make sysdeps` "
                                  "(installs the Debian package postgresql) or set TILEWISE_TEST_POSTGRES_URL")
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, admin_url: str, directory: str | None = None, as_user: list[str] | None = None):
        self.admin_url = admin_url          # .../postgres as the superuser
        self.directory = directory
        self._as_user = as_user or []
        self._bin = _bin_dir() if directory else ""

    @classmethod
    def start(cls) -> "PostgresServer":
        if os.environ.get("TILEWISE_TEST_POSTGRES_URL"):
            return cls(os.environ["TILEWISE_TEST_POSTGRES_URL"])
        bin_dir = _bin_dir()
        directory = tempfile.mkdtemp(prefix="tilewise-pg-")
        as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable("running as root and there is no `postgres` user to run the server as")
            os.chown(directory, pw.pw_uid, pw.pw_gid)
            as_user = ["runuser", "-u", "postgres", "--"]
        server = cls("", directory, as_user)
        server._bin = bin_dir
        data = os.path.join(directory, "data")
        try:
            server._sh([f"{bin_dir}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync", "--no-instructions"], timeout=120)
            for _ in range(5):          # a port taken between picking and binding: try another
                port = _free_port()
                try:
                    server._sh([f"{bin_dir}/pg_ctl", "-D", data, "-l", os.path.join(directory, "log"), "-w",
                                "-t", "60", "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {directory} "
                                "-c fsync=off -c max_connections=200", "start"], timeout=90)
                    break
                except PostgresUnavailable:
                    continue
            else:
                raise PostgresUnavailable("the PostgreSQL server did not start: " + server.log_tail())
        except BaseException:
            server.stop()
            raise
        server.admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return server

    def _sh(self, argv: list[str], timeout: float) -> None:
        r = subprocess.run(self._as_user + argv, capture_output=True, text=True, timeout=timeout,
                           cwd=self.directory, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise PostgresUnavailable(f"{os.path.basename(argv[0])} failed: {(r.stderr or r.stdout).strip()[-800:]}")

    def log_tail(self) -> str:
        try:
            with open(os.path.join(self.directory or "", "log")) as fh:
                return fh.read()[-800:]
        except OSError:
            return ""

    def url(self, database: str) -> str:
        base, _, _ = self.admin_url.rpartition("/")
        return f"{base}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg
        name = f"tw_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if not self.directory:
            return
        data = os.path.join(self.directory, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            try:
                self._sh([f"{self._bin}/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"], timeout=60)
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
