"""The record store interface, and ``open_store`` which picks a backend from a URL or path.

Backends register by URL scheme (``@STORES.register("postgresql", "postgres")``); the module that
implements one is imported only when a store of that scheme is opened (a PostgreSQL driver is not
imported to open a SQLite file).
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Iterable, Iterator

from tilewise.core.record import Record
from tilewise.core.registry import Registry
from tilewise.core.schedule import Schedule
from tilewise.core.target import Target
from tilewise.core.workload import Workload
from tilewise.datasets.runs import TuningRun


class StoreError(ValueError):
    """A store that cannot be opened or used: a message for the user, one line, no traceback."""


class RecordStore(ABC):
    """Persistent set of :class:`Record`, keyed by (workload_key, target_key, schedule_key).

    Contract, which every backend passes (``tests/datasets/test_store_contract.py``):

    * **Process-safe.** Any number of processes (and threads) may open the same store and read and
      append concurrently; readers see every append acknowledged before their query began.
      Coordination is the backend's business (SQLite: one writer at a time, readers never block).
    * **Atomic, durable appends.** ``append`` stores all of its records or none of them, and once
      it has returned they stay stored even if the process is killed (SIGKILL) at any moment; a
      kill mid-append leaves the store consistent, holding either all or none of that batch.
    * **Duplicates are ignored, the first kept.** A record whose three keys are already stored (or
      repeat earlier in the same batch) is dropped, not an error and not an update: a store is an
      append-only log of what was measured, and re-measuring a schedule does not rewrite history.
    * **Target-aware.** Queries name a target; a record measured on another target (another CPU, or
      another compiler version, which ``Target.key`` includes) is never returned.
    * Records come back equal (``==``) to what was appended.
    * ``close`` releases the store; a closed store raises :class:`StoreError` on use.  Stores are
      context managers.  A store opened before ``fork`` must not be used by both processes: a
      backend reconnects in the child or refuses.
    """

    @abstractmethod
    def append(self, records: Iterable[Record]) -> int:
        """Store ``records`` in one transaction; return how many were new (duplicates ignored)."""

    @abstractmethod
    def query(self, workload: Workload, target: Target, top_k: int | None = None,
              status: str | None = "ok") -> list[Record]:
        """Records of ``workload`` on ``target`` with ``status`` (``None``: any status), fastest
        first (by ``median_s``; records without timings last), at most ``top_k`` of them."""

    @abstractmethod
    def keys(self, workload: Workload, target: Target) -> set[str]:
        """Schedule keys stored for ``workload`` on ``target``, any status: what not to measure again."""

    @abstractmethod
    def iter(self) -> Iterator[Record]:
        """Every record, in insertion order (streamed, not loaded at once)."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of records stored."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; idempotent."""

    def contains(self, workload: Workload, target: Target, schedule: Schedule) -> bool:
        return schedule.key() in self.keys(workload, target)

    # -- tuning runs (optional: what the profile report draws curves and A/B bars from) ---------
    def append_run(self, run: "TuningRun") -> bool:
        """Keep one :class:`~tilewise.datasets.runs.TuningRun` (same atomicity as ``append``);
        ``False`` when this backend does not keep runs (the default: reports then use records only)."""
        return False

    def runs(self) -> list["TuningRun"]:
        """Every tuning run kept, in the order they were appended; ``[]`` when none or unsupported."""
        return []

    def __iter__(self) -> Iterator[Record]:
        return self.iter()

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: record store classes by URL scheme; the built-in backends' modules are imported on first use
STORES = Registry("record store URL scheme", {"sqlite": "tilewise.datasets.sqlite_store",
                                              "postgresql": "tilewise.datasets.postgres_store",
                                              "postgres": "tilewise.datasets.postgres_store"}, name_attr=None)


def default_location() -> str:
    """Where ``tune`` and ``best`` keep their tuning database when no ``--db`` is given:
    ``$TILEWISE_DB``, else ``$XDG_CACHE_HOME/tilewise/records.db`` (``~/.cache/...``)."""
    if os.environ.get("TILEWISE_DB"):
        return os.environ["TILEWISE_DB"]
    from tilewise.core.paths import cache_home
    return cache_home("records.db")


def open_store(url_or_path: str | os.PathLike, **options) -> RecordStore:
    """Open (creating if needed) the record store at ``url_or_path``.

    * a plain path, or ``sqlite:///PATH`` (SQLAlchemy's spelling: ``sqlite:///rel/x.db`` is relative,
      ``sqlite:////abs/x.db`` absolute): the embedded SQLite store;
    * ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME`` (or ``postgres://``): the shared
      PostgreSQL store (postgres_store.py), for many writers on many machines.
    """
    text = os.fspath(url_or_path)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, location = "sqlite", text
    elif scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise StoreError(f"malformed SQLite URL {text!r}: expected sqlite:///PATH")
        location = rest[1:]
    else:
        location = text
    if scheme not in STORES.names():
        supported = ", ".join(f"{s}://" for s in STORES.names())
        raise StoreError(f"unknown record store URL scheme {scheme!r} in {text!r}: use a file path or {supported}")
    try:
        implementation = STORES.get(scheme)
    except ImportError as e:
        raise StoreError(f"{scheme}:// record stores need the {e.name} package: pip install tilewise "
                         "(it is a dependency)") from None
    return implementation(location, **options)
