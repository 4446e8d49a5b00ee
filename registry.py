"""Name -> implementation registries (strategies, runners, feature extractors).

Implementations register with a decorator in their own module; a lookup first imports the module
of built-ins (a no-op after the first time), so the built-ins are there even when some other
implementation registered first.
"""
from __future__ import annotations

import importlib


class Registry:
    def __init__(self, kind: str, builtins: str):
        self.kind = kind              # what the error message calls an entry: "strategy", ...
        self._builtins = builtins     # module whose import registers the built-in entries
        self._classes: dict[str, type] = {}

    def register(self, name: str):
        def deco(cls):
            cls.name = name
            self._classes[name] = cls
            return cls
        return deco

    def unregister(self, name: str) -> None:
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        importlib.import_module(self._builtins)
        return sorted(self._classes)

    def get(self, name: str) -> type:
        importlib.import_module(self._builtins)
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}: available are {', '.join(self.names())}") from None
