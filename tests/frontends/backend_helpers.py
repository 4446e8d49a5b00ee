"""Helpers of the backend's group tests (row-wise, attention): deterministic compile-time timing
and the plan entries a compile wrote."""
import json

from tilewise.frontends.torch_backend import profile


def force_timing(monkeypatch, kernel_faster: bool) -> list:
    """The compile-time kernel-vs-eager timing, made deterministic (the kernel, or eager, measures
    faster); returns the list each timing appends to."""
    calls = []

    def timed(a, b, rounds=9):
        calls.append(1)
        return (1.0, 2.0) if kernel_faster else (2.0, 1.0)
    monkeypatch.setattr(profile, "interleaved_s", timed)
    return calls


def plan_entries(cache, prefix: str) -> list[dict]:
    """The cached plans' entries of the groups named ``prefix...`` (``cache``: the compile cache)."""
    out = []
    for p in (cache / "plans").glob("*.json"):
        out += [e for k, e in json.loads(p.read_text())["groups"].items() if k.startswith(prefix)]
    return out
