"""Where tilewise keeps its own files between runs."""
from __future__ import annotations

import os


def cache_home(*parts: str) -> str:
    """``$XDG_CACHE_HOME/tilewise/<parts...>`` (``~/.cache/tilewise/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tilewise", *parts)
