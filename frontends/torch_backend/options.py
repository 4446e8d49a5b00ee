"""The backend's options: ``torch.compile(model, backend="tilewise", options={...})``.

``mode``           ``"default"``: each kernel's schedule comes from the tuning database, else the
                   cost model's best prediction (a conv's: the fastest of the recipes and the
                   model's top two, timed once); row-wise and attention groups are timed against
                   eager once; nothing is tuned.
                   ``"max-autotune"``: each kernel is tuned (measured; the trials are recorded in
                   the database) and each fusion group is timed against eager PyTorch, the faster
                   one runs.
``db``             tuning database (path or URL); default ``datasets.base.default_location()``
``threads``        threads per kernel; default ``torch.get_num_threads()``
``max_rel_error``  error budget of a kernel vs float64 (default: the op's f32 tolerance, 1e-4)
``trials``         schedules measured per kernel in max-autotune (default 16)
``trace``          write a :class:`~tilewise.frontends.model_trace.ModelTrace` here
``profile``        time every group and eager op once at compile time, for the trace
``cache``          compile cache folder; default ``~/.cache/tilewise/torch_backend``; ``False``: off
``fuse``           ``True`` (default): an anchor's elementwise epilogue may be fused into its MLIR
                   kernel (the group imported with the torch-mlir FX importer; see ``fused.py``);
                   ``False``: the epilogue always runs as in-place torch ops after the kernel
``rowwise``        ``True`` (default): chains of elementwise ops and last-dim reductions between the
                   kernels (layer/RMS norm, gelu_new, SiLU gating, softmax) become fused MLIR
                   kernels where they match eager and time faster at compile time (``rowwise.py``);
                   ``False``: they stay eager
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from tilewise.core.paths import cache_home

MODES = ("default", "max-autotune")


class OptionsError(ValueError):
    """An option the backend does not know, or a value it cannot use."""


def default_cache_dir() -> str:
    return cache_home("torch_backend")


@dataclass(frozen=True)
class BackendOptions:
    mode: str = "default"
    db: str | None = None
    threads: int | None = None
    max_rel_error: float | None = None
    trials: int = 16
    trace: str | None = None
    profile: bool = False
    cache: str | None = None          # None: the default folder; "" : no cache
    fuse: bool = True
    rowwise: bool = True

    @classmethod
    def parse(cls, mode: str | None, options: Mapping[str, Any] | None) -> "BackendOptions":
        opts = dict(options or {})
        if mode is not None and "mode" not in opts:
            opts["mode"] = mode
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(opts) - known)
        if unknown:
            raise OptionsError(f"tilewise backend: unknown option {unknown[0]!r}; known options are "
                               f"{', '.join(sorted(known))}")
        if opts.get("mode") is None:
            opts["mode"] = "default"
        if opts["mode"] not in MODES:
            raise OptionsError(f"tilewise backend: mode {opts['mode']!r} is not supported: use one of "
                               f"{', '.join(MODES)}")
        if opts.get("cache") is False:
            opts["cache"] = ""
        for flag in ("fuse", "rowwise"):
            if not isinstance(opts.get(flag, True), bool):
                raise OptionsError(f"tilewise backend: {flag}={opts[flag]!r}: must be True or False")
        threads = opts.get("threads")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise OptionsError(f"tilewise backend: threads={threads!r}: must be an integer >= 1")
        return cls(**opts)

    def resolved_threads(self) -> int:
        if self.threads is not None:
            return self.threads
        import torch
        return max(1, torch.get_num_threads())

    def cache_dir(self) -> str | None:
        if self.cache == "":
            return None
        return self.cache or default_cache_dir()
