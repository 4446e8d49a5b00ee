"""The compile cache: a *plan* per graph, keyed by graph structure + input shapes + target.

The key hashes the aten graph's code (its ops, their order and constant arguments), every input's
shape, strides, dtype and whether it is a parameter, the target, the backend options that change
decisions (mode, threads, error budget, database) and the tool versions.  The plan holds each
fusion group's decision (schedule, where it came from, kernel or eager and why); the kernels
themselves are shared libraries keyed by (workload, schedule, target) in ``kernels.py``.  A second
``torch.compile`` of the same model in a new process finds both and neither searches nor compiles
MLIR.  Plain JSON with a schema version, written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import torch

from tilewise.frontends.torch_backend import kernels
from tilewise.frontends.torch_backend.options import BackendOptions

SCHEMA_VERSION = 1


def plan_key(ag, example_inputs, opts: BackendOptions) -> str:
    from tilewise import __version__ as tw_version
    parts = [ag.code, kernels.target().key(), tw_version, torch.__version__, opts.mode,
             str(opts.resolved_threads()), repr(opts.max_rel_error), str(opts.db), f"fuse={opts.fuse}",
             f"rowwise={opts.rowwise}"]
    for x in example_inputs:
        if isinstance(x, torch.Tensor):
            parts.append(f"{tuple(x.shape)}|{tuple(x.stride())}|{x.dtype}|{isinstance(x, torch.nn.Parameter)}")
        else:                   # a size dynamo passes as an int (a graph lowered per shape)
            parts.append(f"{type(x).__name__}={x!r}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _path(opts: BackendOptions, key: str) -> str | None:
    folder = opts.cache_dir()
    return None if folder is None else os.path.join(folder, "plans", key + ".json")


def load_plan(opts: BackendOptions, key: str) -> dict[str, Any] | None:
    path = _path(opts, key)
    if path is None or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("schema_version") != SCHEMA_VERSION or data.get("key") != key:
        return None
    return data.get("groups")


def save_plan(opts: BackendOptions, key: str, groups: dict[str, Any]) -> None:
    path = _path(opts, key)
    if path is None:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".plan-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"schema_version": SCHEMA_VERSION, "key": key, "groups": groups}, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
