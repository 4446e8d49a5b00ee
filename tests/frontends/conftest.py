import pytest


@pytest.fixture
def opts(tmp_path):
    """Backend options for torch.compile tests: a plan/kernel cache and a tuning database of the test's
    own, and dynamo's caches reset around the test."""
    import torch
    torch._dynamo.reset()
    yield {"cache": str(tmp_path / "cache"), "db": str(tmp_path / "records.db")}
    torch._dynamo.reset()
