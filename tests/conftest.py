import numpy as np
import pytest

from tilewise.core.target import detect


@pytest.fixture(scope="session")
def target():
    return detect()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _private_tuning_db(tmp_path, monkeypatch):
    """``tilewise tune`` records into a default database under ~/.cache; tests get their own."""
    monkeypatch.setenv("TILEWISE_DB", str(tmp_path / "tuning.db"))


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on loopback for this test session (tests/pg_server.py): the shared
    record store's contract tests and the cluster tests use it.  ``.new_database()`` -> URL."""
    from tests.pg_server import PostgresServer, PostgresUnavailable
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
