import numpy as np
import pytest

from tilewise.profiling.target import detect


@pytest.fixture(scope="session")
def target():
    return detect()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
