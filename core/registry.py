"""Name -> implementation registries: one idiom for every pluggable part of tilewise.

An implementation registers itself in its own module with a decorator (``@STRATEGIES.register("random")``,
``@OP_KINDS.register("matmul")``); a lookup first imports the module that holds the built-in entries,
so they are there even when some other implementation registered first.  ``builtins`` is either one
module (imported on the first lookup of any name) or a ``{name: module}`` table (a module is imported
only when one of its names is looked up: ``create("roofline")`` does not import xgboost, ``create("random")``
does not import optuna).

Entries are whatever the decorator decorates: a class (strategies, runners, cost models, record
stores), a function (search-space builders) or an instance (op kinds: ``register`` with
``instantiate=True``).  A registry that names its entries (``name_attr``) sets that attribute on a
registered class, so an implementation knows the name it was registered under.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


class Registry:
    def __init__(self, kind: str, builtins: str | Mapping[str, str] = (), *, name_attr: str | None = "name",
                 instantiate: bool = False):
        self.kind = kind                      # what the error message calls an entry: "strategy", ...
        self._all_builtins = builtins if isinstance(builtins, str) else None
        self._lazy: dict[str, str] = {} if isinstance(builtins, str) else dict(builtins)
        self._name_attr = name_attr
        self._instantiate = instantiate
        self._entries: dict[str, Any] = {}

    # -- filling ---------------------------------------------------------------------------------
    def register(self, *names: str) -> Callable[[Any], Any]:
        """Decorator: file the decorated object under each of ``names``; returns it unchanged."""
        if not names:
            raise TypeError("register() needs at least one name")

        def deco(obj):
            entry = obj() if self._instantiate else obj
            if self._name_attr and (self._instantiate or isinstance(obj, type)):
                setattr(entry, self._name_attr, names[0])
            for name in names:
                self._entries[name] = entry
            return obj
        return deco

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    # -- lookup ----------------------------------------------------------------------------------
    def _load(self, name: str | None = None) -> None:
        if self._all_builtins is not None:
            importlib.import_module(self._all_builtins)
        if name is None:
            for module in dict.fromkeys(self._lazy.values()):
                importlib.import_module(module)
        elif name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])

    def names(self) -> list[str]:
        """Every registered name and every built-in one (the latter without importing its module)."""
        if self._all_builtins is not None:
            importlib.import_module(self._all_builtins)
        return sorted(set(self._entries) | set(self._lazy))

    def find(self, name: str) -> Any | None:
        """The entry registered under ``name``, or None."""
        self._load(name)
        return self._entries.get(name)

    def get(self, name: str) -> Any:
        """The entry registered under ``name``; ValueError naming the available ones otherwise."""
        entry = self.find(name)
        if entry is None:
            raise ValueError(f"unknown {self.kind} {name!r}: available are {', '.join(self.names())}")
        return entry

    def entries(self) -> dict[str, Any]:
        """Every entry, built-ins loaded: ``{name: entry}``."""
        self._load()
        return dict(self._entries)
