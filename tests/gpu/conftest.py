"""GPU-path fixtures: stand-in cuda targets (no device needed) and the ``cuda`` marker's skip."""
from types import SimpleNamespace

import pytest

from tilewise.profiling.cuda_target import cuda_problem, target_from_properties
from tilewise.core.target import _versions


def stand_in(major: int, minor: int, sms: int = 132, optin_kib: int = 227):
    """A cuda Target as ``torch.cuda.get_device_properties`` of such a GPU would describe it."""
    p = SimpleNamespace(name=f"stand-in sm_{major}{minor}", major=major, minor=minor,
                        multi_processor_count=sms, L2_cache_size=50 << 20,
                        shared_memory_per_block=48 << 10, shared_memory_per_block_optin=optin_kib << 10,
                        shared_memory_per_multiprocessor=(optin_kib + 1) << 10, regs_per_multiprocessor=65536)
    return target_from_properties(p, _versions())


@pytest.fixture(scope="session")
def sm90():
    return stand_in(9, 0)


@pytest.fixture(scope="session")
def sm80():
    return stand_in(8, 0, sms=108, optin_kib=163)


@pytest.fixture(scope="session")
def sm75():
    return stand_in(7, 5, sms=40, optin_kib=64)


def pytest_collection_modifyitems(config, items):
    problem = cuda_problem()
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"needs an NVIDIA GPU: {problem}")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
