import numpy as np
import pytest

from tilewise.profiling.target import detect


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
