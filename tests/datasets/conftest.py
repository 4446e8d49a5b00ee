import dataclasses

import pytest

from tilewise.datasets import open_store
from tilewise.profiling.target import detect

# Every RecordStore backend runs the contract suite: name -> (tmp_path -> location for open_store).
# A PostgreSQL backend adds an entry here (skipping when no server is configured).
BACKENDS = {
    "sqlite": lambda tmp_path: str(tmp_path / "records.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
def store_url(request, tmp_path):
    return BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(store_url):
    with open_store(store_url) as s:
        yield s


@pytest.fixture(scope="session")
def other_target():
    """The detected target under another CPU name: records measured on it must stay apart."""
    return dataclasses.replace(detect(), name="Some Other CPU @ 9.99GHz")
