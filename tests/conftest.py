import numpy as np
import pytest

from tilewise.core.target import detect


@pytest.fixture(scope="session")
def target():
    return detect()


@pytest.fixture(scope="session")
def fixed_target():
    """A 512-bit, 2-core CPU descriptor that is not this machine: tests that only build spaces and
    propose schedules (nothing compiled or timed) plan for it, so what they count and draw is the
    same on every CPU (an AVX2 machine offers 8- and 16-lane vectors, an AVX-512 one 16 only)."""
    from tilewise.core.target import Target
    return Target(kind="cpu", name="Fixed Test CPU", arch="x86_64", isa=("avx", "avx2", "avx512f", "fma"),
                  cores=2, simd_bits=512, cache_bytes=(("L1d", 32768), ("L2", 1048576), ("L3", 33554432)))


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
