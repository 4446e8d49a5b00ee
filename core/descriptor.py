"""Where a target's measured descriptor (profiling/hardware.py) is cached, and reading it back.

Here on the ground floor so that what reads the ceilings (features relative to the hardware) and
what measures them (profiling) agree on one file, ``$XDG_CACHE_HOME/tilewise/targets/<key>.json``:
``{"schema_version", "target_key", "name", "measured_at", "measured": {figure: value}}``.
"""
from __future__ import annotations

import json
import os

from tilewise.core.paths import cache_home
from tilewise.core.target import Target

SCHEMA_VERSION = 1


def descriptor_path(target: Target, folder: str | None = None) -> str:
    return os.path.join(folder or cache_home("targets"), f"{target.key()}.json")


def cached_descriptor(target: Target, folder: str | None = None) -> dict[str, float] | None:
    """The figures measured for ``target`` on this machine, or None when none are cached."""
    try:
        with open(descriptor_path(target, folder)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if data.get("schema_version") != SCHEMA_VERSION or data.get("target_key") != target.key():
        return None
    return {str(k): float(v) for k, v in data["measured"].items()}


def measured_figures(target: Target) -> dict[str, float]:
    """``target``'s measured figures: those it carries (``peaks``: a record's target, written where
    it was measured), else this machine's cached descriptor of it, else none."""
    return dict(target.peaks) or cached_descriptor(target) or {}
