import dataclasses

import pytest

from tilewise.datasets import open_store
from tilewise.core.target import detect

# Every RecordStore backend runs the contract suite: name -> (request, tmp_path) -> location for
# open_store.  PostgreSQL: a fresh database per test on the session's loopback server
# (tests/conftest.py: postgres_server, started by the tests themselves).
BACKENDS = {
    "sqlite": lambda request, tmp_path: str(tmp_path / "records.db"),
    "postgresql": lambda request, tmp_path: request.getfixturevalue("postgres_server").new_database(),
}


@pytest.fixture(params=sorted(BACKENDS))
def store_url(request, tmp_path):
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(store_url):
    with open_store(store_url) as s:
        yield s


@pytest.fixture(scope="session")
def other_target():
    """The detected target under another CPU name: records measured on it must stay apart."""
    return dataclasses.replace(detect(), name="Some Other CPU @ 9.99GHz")
